"""The labelling loop a new user follows, with a set's known labels typed in for them: how well does it read after
each round?

    python benchmarks/page_loop.py --set=real_sets/swust_mixed --rounds=100,150 --threads=1
    python benchmarks/page_loop.py --set=real_sets/receita --rounds=100 --out=bench_loop
    python benchmarks/page_loop.py --set=S --rounds=50,100 --images_seen=60000   # other --NAME=value: to train.py
    python benchmarks/page_loop.py --set=S --rounds=100 --wait=0   # label as the page opens, before it reads all

The set's training images are copied, without their labels, into a folder of their own (OUT/<set>/folder: the
labelling page lists a folder's own files only). Round 1 opens that folder as `python app.py --label_dir=F`
does with no model yet: the teacher (TEACHER "auto": ddddocr where installed) reads every image (a large
folder's in part before the page opens, the rest while it is open: `--wait=1` takes the order once it has read
them all, `--wait=0` the order as the page opens) and the page offers the least confident first; the first N of
that order get their known labels in labels.tsv, as a person answering the page would. Then the README's
command, `python train.py --train_dir=F --unlabeled_dir=F`, and `python test.py` on the set's test part (read
as test.py reads by default, and once: `--tta=1`). Each later round opens the page with the model the round
before trained (least confident first), labels the next images up to its count, trains and tests again. Every
round's logs and checkpoint are kept in OUT/<set>/round<N>/; a round already measured is read back. Prints one
line per round.
"""
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli, data  # noqa: E402

BEST = re.compile(r"best: (\S+) \(epoch")
TESTED = re.compile(r"sequence accuracy ([\d.]+) \((\d+)/(\d+)\)")


def copy_images(source, folder):
    """The set's training images copied into `folder` (no labels.tsv): what a user's folder of captchas is."""
    os.makedirs(folder, exist_ok=True)
    for name in data.image_names(source):
        if not os.path.exists(os.path.join(folder, name)):
            shutil.copy2(os.path.join(source, name), os.path.join(folder, name))


def offer(folder, checkpoint, threads, wait=True):
    """The unanswered images of `folder` in the order the labelling page offers them: read by `checkpoint`, or by
    the teacher when there is none yet. A large folder's teacher reads a part before the page opens and the rest
    while it is open (serve.labelling.TEACHER_FIRST): wait, the order once it has read them all (a person who
    labels while it reads); else the order as the page opens, the rest left unread (one who labels at once)."""
    from core.inference import Predictor
    from serve.labelling import LabelQueue
    predictor = Predictor(checkpoint, threads=threads) if checkpoint else None
    queue = LabelQueue(folder, predictor=predictor, say=lambda line: print("  " + line))
    order = list(queue.order)
    queue.wait(stop=not wait)
    return list(queue.order) if wait else order


def answer(folder, names, truth):
    """Append each name's known label to labels.tsv, as the page writes an answer."""
    with open(os.path.join(folder, data.LABELS_FILE), "a", encoding="utf-8") as f:
        f.write("".join(f"{n}\t{truth[n]}\n" for n in names))


def run(cmd, log):
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True)
    text = open(log).read()
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}); its output: {log}\n{text[-2000:]}")
    return text


def tested(text):
    m = TESTED.search(text)
    return (int(m.group(2)), int(m.group(3))) if m else None


def main():
    _, opts = config.parse(arguments=0, set="", rounds="100,150", out="bench_loop", wait=1)
    if not opts["set"] or not os.path.isdir(os.path.join(opts["set"], "train")):
        raise config.ConfigError("--set=FOLDER: a set with train/ and test/ folders of labelled images "
                                 "(benchmarks/real_sets.py builds them into real_sets/)")
    counts = [int(c) for c in str(opts["rounds"]).split(",") if c.strip()]
    if not counts or counts != sorted(set(counts)) or counts[0] < 1:
        raise config.ConfigError(f"--rounds={opts['rounds']}: label counts, rising, e.g. 100,150")
    name = os.path.basename(os.path.normpath(opts["set"]))
    base = os.path.abspath(os.path.join(opts["out"], name))
    folder, cache = os.path.join(base, "folder"), config.CACHE_DIR  # the page keeps the teacher's readings there too
    truth = {os.path.basename(p): t for p, t in data.read_labels(os.path.join(opts["set"], "train"))}
    copy_images(os.path.join(opts["set"], "train"), folder)
    threads = str(config.THREADS)
    own = ("set", "rounds", "out", "threads", "cache_dir", "wait")
    extra = [a for a in sys.argv[1:] if a.startswith("--") and a[2:].partition("=")[0].lower() not in own]
    checkpoint = None
    for count in counts:
        point = os.path.join(base, f"round{count}")
        os.makedirs(point, exist_ok=True)
        record = os.path.join(point, "point.json")
        if os.path.exists(record):
            result = json.load(open(record))
        else:
            have = len(data.read_tsv(folder, os.path.join(folder, data.LABELS_FILE))) if os.path.exists(
                os.path.join(folder, data.LABELS_FILE)) else 0
            answer(folder, offer(folder, checkpoint, int(threads) or 1, int(opts["wait"]))[:count - have], truth)
            shutil.copyfile(os.path.join(folder, data.LABELS_FILE), os.path.join(point, data.LABELS_FILE))
            common = [f"--cache_dir={cache}", f"--threads={threads}"]
            trained = run(["train.py", f"--train_dir={folder}", f"--unlabeled_dir={folder}", f"--weights_dir={point}",
                           f"--results={os.path.join(point, 'results.txt')}", *common, *extra],
                          os.path.join(point, "train.log"))
            best = BEST.search(trained).group(1)
            test = [os.path.join(opts["set"], "test")]
            read = [tested(run(["test.py", best, f"--test_dir={test[0]}", "--coverage=", "--show=0", *common, *tta],
                               os.path.join(point, f"test{suffix}.log")))
                    for tta, suffix in (([], ""), (["--tta=1"], "_once"))]
            result = dict(labels=count, checkpoint=best, tta=read[0], once=read[1])
            json.dump(result, open(record, "w"), indent=1)
        checkpoint = result["checkpoint"]
        (right, n), (once, _) = result["tta"], result["once"]
        print(f"{name}: {count} labels, the page's order: {right}/{n} ({right / n:.2%}) as test.py reads, "
              f"{once}/{n} ({once / n:.2%}) read once")


if __name__ == "__main__":
    cli.run(main)
