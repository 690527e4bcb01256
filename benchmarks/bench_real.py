"""Real-captcha benchmark: the one own-data command, nothing tuned per set, on each shared set.

    python benchmarks/bench_real.py                                  # both sets, all training images
    python benchmarks/bench_real.py --sizes=100,250,500,1000,all     # a learning curve: labelled images -> accuracy
    python benchmarks/bench_real.py --sets=henan_digits --threads=1  # other --NAME=value go to every train.py
    python benchmarks/bench_real.py --sizes=100,all --reuse=1        # keep points already measured (point.json)
    python benchmarks/bench_real.py --sizes=100,250 --unlabeled=1    # the rest of each train folder as UNLABELED_DIR
    python benchmarks/bench_real.py --sizes=100 --init=              # from random weights: bench_real/<set>/n100-scratch/

Each point runs exactly `python train.py --train_dir=<set>/train --test_dir=<set>/test` (plus --limit=N for a
learning-curve point, and output paths under bench_real/<set>/), then test.py on the kept checkpoint, which
writes every wrong prediction (wrong.tsv, wrong.png) to audit the labels. The sets (../shared/datasets/README.md):
captcha_images_v2 (832 train / 208 test, 5 lower-case letters and digits) and henan_digits (7453 / 2000
university login captchas, 4 digits, labels.tsv; test labels corrected by hand).

Prints per point: validation and test sequence accuracy, test character accuracy, training time, epochs; and
with several sizes a table of every point measured so far and a plot (bench_real/learning_curve.png) of the
points of the options given (e.g. `--ema=0.999`: the `-ema0.999` points) beside those from random weights.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from core import data  # noqa: E402
from core.files import read_results  # noqa: E402

OUT = os.path.abspath("bench_real")  # in the folder it is run from
SETS = {"captcha_images_v2": 0.995, "henan_digits": 0.999}  # set -> goal (test sequence accuracy)
FINAL = re.compile(r"best: (\S+) \(epoch (\d+)\), validation seq acc ([\d.]+) \(char ([\d.]+)\)"
                   r"(?:, test seq acc ([\d.]+) \(char ([\d.]+)\))?")
PSEUDO = re.compile(r"^==> (unlabeled: .*)$", re.M)
TESTED = re.compile(r"sequence accuracy ([\d.]+) \((\d+)/(\d+)\), character accuracy ([\d.]+)")


def run(cmd, log):
    """Run a project script with its output going to `log` as it comes (tail -f it); returns the output."""
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with open(log) as f:
        text = f.read()
    if p.returncode:
        sys.exit(f"error: {cmd[0]} failed (exit {p.returncode}); see {log}:\n{text[-2000:]}")
    return text


def variant(overrides, unlabeled=False):
    """A point's name beyond its size: the options it was run with that change results ("" = the defaults)."""
    parts = ["scratch" if k == "init" and not v else f"{k}{v}" for k, v in sorted(overrides.items()) if k != "threads"]
    return "".join(f"-{p}" for p in parts + ["unlabeled"] * unlabeled).replace("/", "_")


def bench(name, root, size, overrides, reuse=False, unlabeled=False):
    """Train and test one point; returns its figures. With reuse, a point whose point.json exists is not run
    again, and one whose training finished (train.log's final line) is only tested."""
    folder = os.path.join(root, name)
    tag = variant(overrides, unlabeled)
    out = os.path.join(OUT, name, f"n{size}{tag}")
    point = os.path.join(out, "point.json")
    if reuse and os.path.exists(point):
        with open(point) as f:
            print(f"{name} ({size} labelled{tag}): reusing {point}", flush=True)
            return json.load(f)
    args = [f"--train_dir={folder}/train", f"--test_dir={folder}/test", f"--cache_dir={OUT}/cache",
            f"--weights_dir={out}", f"--results={out}/results.txt", "--show=0"]
    args += [f"--limit={size}"] * (size != "all") + [f"--{k}={v}" for k, v in overrides.items()]
    args += [f"--unlabeled_dir={folder}/train"] * unlabeled  # with LIMIT: the images not sampled, labels hidden
    log = f"{out}/train.log"
    finished = reuse and os.path.exists(log) and FINAL.search(open(log).read())
    if finished:
        print(f"{name} ({size} labelled{tag}): training finished before; testing it", flush=True)
        text = open(log).read()
        seconds = sum(float(r["seconds"]) for r in read_results(f"{out}/results.txt"))
    else:
        shutil.rmtree(out, ignore_errors=True)  # a fresh run each time (never `<run>-2` beside an old one)
        os.makedirs(out)
        print(f"{name} ({size} labelled): python train.py {' '.join(args)}\n  (log: {log})", flush=True)
        start = time.time()
        text = run(["train.py", *args], log)
        seconds = time.time() - start
    final = FINAL.search(text)
    epochs = len(re.findall(r"^epoch \d+/\d+:", text, re.M))
    pseudo = PSEUDO.search(text)
    test_args = [f"--test_dir={folder}/test", f"--cache_dir={OUT}/cache", "--show=10", f"--sheet={out}/wrong.png",
                 f"--wrong={out}/wrong.tsv"]
    tested = TESTED.search(run(["test.py", final[1], *test_args], f"{out}/test.log"))
    row = dict(set=name, size=size, variant=tag[1:] or "default", seconds=seconds, epochs=epochs,
               kept=int(final[2]), val=float(final[3]), seq=float(tested[1]), right=int(tested[2]),
               n=int(tested[3]), char=float(tested[4]), goal=SETS[name], overrides=overrides,
               pseudo=pseudo[1] if pseudo else "")
    with open(point, "w") as f:
        json.dump(row, f, indent=1)
    return row


def plot(rows, path, own="default"):
    """Test accuracy against labelled images, a line per (set, variant); the command's own variant is named by its
    set alone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for line in dict.fromkeys((r["set"], r["variant"]) for r in rows):
        points = sorted((r["train_images"], r["seq"]) for r in rows if (r["set"], r["variant"]) == line)
        ax.plot(*zip(*points), marker="o", label=" ".join(line) if line[1] != own else line[0])
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images (validation part included)")
    ax.set_ylabel("test sequence accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def collect(names, available):
    """Every finished point (point.json) of these sets, for the table and the plot."""
    rows = []
    for name in names:
        folder = os.path.join(OUT, name)
        for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            point = os.path.join(folder, entry, "point.json")
            if os.path.exists(point):
                with open(point) as f:
                    row = json.load(f)
                row.setdefault("variant", "default")
                row["train_images"] = available[name] if row["size"] == "all" else row["size"]
                rows.append(row)
    return sorted(rows, key=lambda r: (r["set"], r["variant"], r["train_images"]))


def main():
    _, opts = config.parse(sets=",".join(SETS), root=os.path.join("..", "shared", "datasets"), sizes="all", reuse=0, unlabeled=0)
    opts["root"] = os.path.abspath(opts["root"])  # train.py runs in the repository root
    names = [s for s in opts["sets"].split(",") if s]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        raise config.ConfigError(f"unknown set {', '.join(unknown)}; known: {', '.join(SETS)}")
    missing = [s for s in names if not os.path.isdir(os.path.join(opts["root"], s, "train"))]
    if missing:
        raise config.ConfigError(f"{', '.join(missing)} not found under {opts['root']} (give --root=...)")
    sizes = [s if s == "all" else int(s) for s in str(opts["sizes"]).split(",") if s]
    overrides = {}  # options given on the command line go to every train.py (e.g. --threads=1)
    for arg in sys.argv[1:]:
        key, _, value = arg[2:].partition("=")
        if arg.startswith("--") and key.lower() not in ("sets", "root", "sizes", "reuse", "unlabeled"):
            overrides[key.lower()] = value
    available = {name: len(data.read_labels(os.path.join(opts["root"], name, "train"))) for name in names}
    for name in names:
        for size in sizes:
            if size != "all" and size >= available[name]:
                continue
            if opts["unlabeled"] and size == "all":
                continue  # every training image is labelled: none is left to use without labels
            row = bench(name, opts["root"], size, overrides, reuse=bool(opts["reuse"]), unlabeled=bool(opts["unlabeled"]))
            print(f"  -> test {row['seq']:.2%} ({row['right']}/{row['n']}), validation {row['val']:.2%}, "
                  f"{row['seconds'] / 60:.1f} min, {row['epochs']} epochs" + (f"\n  {row['pseudo']}" * bool(row.get("pseudo"))),
                  flush=True)
    rows = collect(names, available)
    print("\nevery point measured so far (bench_real/<set>/n<size>[-variant]/point.json):")
    print("| set | variant | labelled images | validation seq acc | test seq acc | test char acc | train time "
          "| epochs (kept) | goal |")
    print("|---|---|--:|--:|--:|--:|--:|--:|---|")
    for r in rows:
        goal = (f"{r['goal']:.1%} {'met' if r['seq'] >= r['goal'] else 'NOT met'}"
                if r["size"] == "all" and r["variant"] == "default" else "")
        size = r["size"] if r["size"] != "all" else f"all ({r['train_images']})"
        print(f"| {r['set']} | {r['variant']} | {size} | {r['val']:.2%} | {r['seq']:.2%} ({r['right']}/{r['n']}) "
              f"| {r['char']:.2%} | {r['seconds'] / 60:.1f} min | {r['epochs']} ({r['kept']}) | {goal} |")
    # the plot: this command's points (its options' variant) and, for reference, those from random weights
    own = variant(overrides, opts["unlabeled"])[1:] or "default"
    shown = [r for r in rows if r["variant"] in (own, "scratch")]
    if len({r["train_images"] for r in shown}) > 1:
        print(f"plot: {plot(shown, os.path.join(OUT, 'learning_curve.png'), own)}")


if __name__ == "__main__":
    cli.run(main)
