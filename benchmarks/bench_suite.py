"""The few-labels benchmark on the real-set suite: each set at a few numbers of labelled images, the rest of its
training images given as unlabelled ones, and one table of test accuracy (with its worst and median set).

    python benchmarks/bench_suite.py                                   # every set at 0, 50, 100, 300 and all labels
    python benchmarks/bench_suite.py --sets=amazon,dotted_digits --labels=100,300 --threads=1
    python benchmarks/bench_suite.py --labels=0 --teacher=ddddocr      # zero labels: the teacher's readings
    python benchmarks/bench_suite.py --labels=100 --teacher=ddddocr --epochs=60   # other --NAME=value: to train.py
    python benchmarks/bench_suite.py --real_sets=other/ --out=runs/      # sets built elsewhere; points kept in runs/

A point with N labels runs `python train.py --train_dir=<set>/train --limit=N --unlabeled_dir=<set>/train` (the N
sampled images labelled, the others unlabelled; `all`: every label, no unlabelled images), then `python test.py`
on its kept checkpoint with `--test_dir=<set>/test`: the test part is read once, not after every epoch (train.py
is given the training folder through a link, bench_suite/<set>/labelled/train, so that it finds no `test` folder
beside it; the test part is never used to choose, so the figure is the one a per-epoch test would end on). A point
with 0 labels needs TEACHER: it trains on a folder of links to the training images without their labels.tsv
(bench_suite/<set>/unlabelled). The suite: the two sets in ../shared/datasets and the sets `python
benchmarks/real_sets.py` builds into real_sets/ (docs/real_sets.md). The test part is read twice: each image once
(`--tta=1`, as every point measured before TTA), then as test.py reads by default (TTA: an unsure image read
again as five shifted copies that vote); the table gives both, `once / TTA`. Each point's logs (train.log,
test.log, test_tta.log), checkpoint, results and wrong readings (wrong.tsv, wrong_tta.tsv) are kept in
bench_suite/<set>/<point>/; a point already measured is read back, not run again.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "datasets")
OUT = os.path.abspath("bench_suite")  # --out: every point's folder, under the folder it is run from by default
FINAL = re.compile(r"best: (\S+) \(epoch (\d+)\)")
TESTED = re.compile(r"sequence accuracy ([\d.]+) \((\d+)/(\d+)\), character accuracy ([\d.]+)")
DEFAULT_LABELS = "0,50,100,300,all"


def suite(real_sets):
    """{name: folder holding train/ and test/}: the shared sets, then those built into `real_sets`."""
    sets = {n: os.path.join(SHARED, n) for n in ("captcha_images_v2", "henan_digits")
            if os.path.isdir(os.path.join(SHARED, n, "train"))}
    if os.path.isdir(real_sets):
        sets.update({n: os.path.join(real_sets, n) for n in sorted(os.listdir(real_sets))
                     if os.path.isdir(os.path.join(real_sets, n, "train"))})
    return sets


def unlabelled_folder(name, folder):
    """A folder of links to the set's training images, without labels: what a user without labels has."""
    out = os.path.join(OUT, name, "unlabelled")
    os.makedirs(out, exist_ok=True)
    train = os.path.abspath(os.path.join(folder, "train"))
    for f in os.listdir(train):
        link = os.path.join(out, f)
        if f != "labels.tsv" and not os.path.lexists(link) and not f.startswith("."):
            os.symlink(os.path.join(train, f), link)
    return out


def labelled_folder(name, folder):
    """The set's training folder under another parent (a link), so train.py finds no `test` folder beside it:
    the point is tested once, on its kept checkpoint, instead of after every epoch (the test part is never used
    to choose, so the figure is the same; on colour_lines' 4000 test images the per-epoch test was half the
    run's time)."""
    link = os.path.join(OUT, name, "labelled", "train")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(folder, "train")), link)
    return link


def point_args(name, folder, labels, extra):
    if labels == "0":
        if "--teacher" not in " ".join(extra):
            return None  # nothing to learn from
        u = unlabelled_folder(name, folder)
        return [f"--train_dir={u}", f"--unlabeled_dir={u}"]
    train = labelled_folder(name, folder)
    args = [f"--train_dir={train}"]
    if labels != "all":
        args += [f"--limit={labels}", f"--unlabeled_dir={train}"]
    return args


def run_point(name, folder, labels, extra):
    tag = "-".join([f"n{labels}"] + [a.lstrip("-").replace("=", "").replace("/", "_") for a in extra
                                      if not a.startswith("--threads")])
    out = os.path.join(OUT, name, tag)
    done = os.path.join(out, "point.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    args = point_args(name, folder, labels, extra)
    if args is None:
        return None
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, "train.py", *args, f"--weights_dir={out}", f"--results={out}/results.txt",
           f"--cache_dir={os.path.join(OUT, '.cache')}", *extra]
    start = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(os.path.join(out, "train.log"), "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    minutes = round((time.time() - start) / 60, 1)
    m = FINAL.search(open(os.path.join(out, "train.log")).read())
    if code or not m:
        print(f"{name} {labels}: train.py failed (exit {code}); see {out}/train.log", file=sys.stderr)
        return None
    threads = [a for a in extra if a.startswith("--threads")]
    # read twice: each image once (as every point before TTA, and training's own test line), then as test.py
    # reads by default (TTA: an unsure image read again as shifted copies that vote)
    tests = {}
    for log_name, suffix, tta in (("test.log", "", ["--tta=1"]), ("test_tta.log", "_tta", [])):
        test = [sys.executable, "test.py", m[1], f"--test_dir={os.path.join(folder, 'test')}",
                f"--cache_dir={os.path.join(OUT, '.cache')}", f"--wrong={out}/wrong{suffix}.tsv",
                f"--coverage={out}/coverage{suffix}.png", "--show=0", *threads, *tta]
        with open(os.path.join(out, log_name), "w") as log:
            code = subprocess.run(test, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        t = TESTED.search(open(os.path.join(out, log_name)).read())
        if code or not t:
            print(f"{name} {labels}: test.py failed (exit {code}); see {out}/{log_name}", file=sys.stderr)
            return None
        tests[log_name] = test, t
    (test, t), (test_tta, tta) = tests["test.log"], tests["test_tta.log"]
    point = dict(set=name, labels=labels, test_seq=float(t[1]), test_char=float(t[4]), epoch=int(m[2]),
                 minutes=minutes, command=" ".join(cmd[1:]), test_command=" ".join(test[1:]),
                 test_images=f"{t[3]} images", test_right=int(t[2]), tta_seq=float(tta[1]), tta_right=int(tta[2]),
                 tta_command=" ".join(test_tta[1:]))
    with open(done, "w") as f:
        json.dump(point, f, indent=1)
    return point


def table(points, labels):
    """One row per set, one column per number of labels; then the worst and the median set."""
    sets = sorted({p["set"] for p in points})
    at = {(p["set"], p["labels"]): p for p in points}
    lines = ["| set | " + " | ".join(f"{n} labels" for n in labels) + " |", "|---|" + "--:|" * len(labels)]
    cell = lambda p: f"{p['test_seq']:.2%}" + (f" / {p['tta_seq']:.2%}" if "tta_seq" in p else "")
    for s in sets:
        cells = [cell(at[s, n]) if (s, n) in at else "" for n in labels]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    for what, fn in (("worst", min), ("median", statistics.median)):
        cells = []
        for n in labels:
            values = [at[s, n]["test_seq"] for s in sets if (s, n) in at]
            voted = [at[s, n]["tta_seq"] for s in sets if (s, n) in at and "tta_seq" in at[s, n]]
            cells.append((f"{fn(values):.2%}" if values else "")
                         + (f" / {fn(voted):.2%}" if voted and len(voted) == len(values) else ""))
        lines.append(f"| **{what}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    global OUT
    opts = dict(sets="", labels=DEFAULT_LABELS, real_sets=os.path.join(ROOT, "real_sets"), out=OUT)
    extra = []
    for arg in sys.argv[1:]:
        if arg in ("-h", "--help"):
            print(__doc__)
            return
        key, _, value = arg.lstrip("-").partition("=")
        if key in opts:
            opts[key] = value
        elif arg.startswith("--"):
            extra.append(arg)  # for train.py
        else:
            sys.exit(f"error: {arg}: options are --sets=, --labels=, --real_sets=, --out= and train.py's --NAME=value")
    OUT = os.path.abspath(opts["out"])
    sets = suite(opts["real_sets"])
    if opts["sets"]:
        unknown = [s for s in opts["sets"].split(",") if s not in sets]
        if unknown:
            sys.exit(f"error: unknown set {', '.join(unknown)}; the suite: {', '.join(sets)} "
                     f"(python benchmarks/real_sets.py builds real_sets/)")
        sets = {s: sets[s] for s in opts["sets"].split(",")}
    labels = opts["labels"].split(",")
    bad = [n for n in labels if n != "all" and not n.isdigit()]
    if bad:
        sys.exit(f"error: --labels={opts['labels']}: each entry is a number of labelled images (0 = none, with "
                 f"--teacher) or all")
    points = []
    for name, folder in sets.items():
        for n in labels:
            p = run_point(name, folder, n, extra)
            if p:
                points.append(p)
                print(f"{name:18s} {n:>4s} labels: test {p['test_seq']:.2%} (char {p['test_char']:.2%})"
                      + (f", with TTA {p['tta_seq']:.2%}" if "tta_seq" in p else "")
                      + f", epoch {p['epoch']}, {p['minutes']} min", flush=True)
    print(table(points, labels))


if __name__ == "__main__":
    main()
