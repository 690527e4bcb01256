"""Which images to label next? Least confident first against a random order, simulated with known labels.

    python benchmarks/label_order.py                                       # both shared sets
    python benchmarks/label_order.py --sets=henan_digits --start=50 --step=50 --most=500 --round_epochs=30

Each set's training folder plays an unlabelled folder whose labels a person gives on request. Both orders start
from the same seeded `start` labelled images; each round trains (`python train.py`, the one own-data command with
a fixed --epochs=ROUND_EPOCHS for every round, so that rounds compare), reads the test folder, and asks for `step` more labels:
the images the round's model reads with the lowest sequence confidence (what the labelling page offers first), or
`step` images drawn at random. Rounds go on until the test accuracy reaches 99 % or `most` labels.

Prints each round, then how many labels each order needed to reach 95 % and 99 % on the test folder, and writes
a plot (bench_real/label_order.png). The labelled subset of a round is a labels.tsv that names images of the set
by their absolute paths (bench_real/label_order/<set>/<order>/<labels>/data/labels.tsv).
"""
import os
import random
import re
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from core import data  # noqa: E402
from core.device import cpu_count  # noqa: E402
from core.inference import Predictor  # noqa: E402

OUT = os.path.abspath(os.path.join("bench_real", "label_order"))
SETS = ("captcha_images_v2", "henan_digits")
GOALS = (0.95, 0.99)
ORDERS = ("least_confident", "random")
BEST = re.compile(r"best: (\S+) \(epoch")


def train_round(labelled, folder, epochs, threads):
    """Train on `labelled` [(path, label)] (a labels.tsv in folder/data); returns the kept checkpoint's path."""
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    with open(os.path.join(folder, "data", data.LABELS_FILE), "w") as f:
        f.write("file\tlabel\n" + "".join(f"{p}\t{t}\n" for p, t in labelled))
    args = [f"--train_dir={folder}/data", f"--weights_dir={folder}", f"--results={folder}/results.txt",
            f"--cache_dir={OUT}/cache", f"--epochs={epochs}", "--show=0", f"--threads={threads}"]
    with open(os.path.join(folder, "train.log"), "w") as log:
        p = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    text = open(os.path.join(folder, "train.log")).read()
    if p.returncode:
        sys.exit(f"error: train.py failed (exit {p.returncode}); see {folder}/train.log:\n{text[-1500:]}")
    return BEST.search(text)[1]


def simulate(name, root, order, start, step, most, epochs, threads, seed):
    """[(labels given, test sequence accuracy)] for one set and one order."""
    items = data.read_labels(os.path.join(root, name, "train"))
    tests = data.read_labels(os.path.join(root, name, "test"))
    rng = random.Random(seed)
    pool = list(range(len(items)))
    rng.shuffle(pool)
    chosen, pool = pool[:start], pool[start:]
    curve, cached = [], {}
    while True:
        folder = os.path.join(OUT, name, order, str(len(chosen)))
        ckpt = train_round([items[i] for i in chosen], folder, epochs, threads)
        predictor = Predictor(ckpt, "cpu", threads)
        size = (predictor.width, predictor.height, predictor.channels)
        if size not in cached:  # the set's images at the model's size, decoded once
            cached[size] = [data.decode_images([p for p, _ in s], *size, os.path.join(OUT, "cache"), quiet=True)[0]
                            for s in (items, tests)]
        train_images, test_images = cached[size]
        texts, _ = predictor.read(test_images)
        accuracy = float(np.mean([t == predictor.codec.normalize(truth) for t, (_, truth) in zip(texts, tests)]))
        curve.append((len(chosen), accuracy))
        print(f"  {name} {order}: {len(chosen)} labels -> test {accuracy:.2%}", flush=True)
        if accuracy >= GOALS[-1] or len(chosen) >= most or not pool:
            return curve
        if order == "random":
            picked = pool[:step]
        else:
            _, confs = predictor.read(train_images[pool])
            picked = [pool[i] for i in np.argsort(confs, kind="stable")[:step]]
        chosen += picked
        taken = set(picked)
        pool = [i for i in pool if i not in taken]


def needed(curve, goal):
    return next((n for n, acc in curve if acc >= goal), None)


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (name, order), curve in curves.items():
        ax.plot(*zip(*curve), marker="o", linestyle="-" if order == ORDERS[0] else "--", label=f"{name}, {order}")
    ax.set_xlabel("labels given (validation part included)")
    ax.set_ylabel("test sequence accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main():
    _, opts = config.parse(sets=",".join(SETS), root=os.path.join("..", "shared", "datasets"), start=50, step=50,
                           most=500, round_epochs=30, order_seed=0)
    root = os.path.abspath(opts["root"])
    names = [s for s in opts["sets"].split(",") if s]
    missing = [s for s in names if not os.path.isdir(os.path.join(root, s, "train"))]
    if missing:
        raise config.ConfigError(f"{', '.join(missing)} not found under {root} (give --root=...)")
    threads = config.THREADS or cpu_count()
    torch.set_num_threads(threads)
    curves = {}
    for name in names:
        for order in ORDERS:
            curves[name, order] = simulate(name, root, order, opts["start"], opts["step"], opts["most"],
                                           opts["round_epochs"], threads, opts["order_seed"])
    print(f"\nlabels needed (start {opts['start']}, {opts['step']} more a round, {opts['round_epochs']} epochs a round):")
    print("| set | order | " + " | ".join(f"to {g:.0%}" for g in GOALS) + " | best (labels) |")
    print("|---|---|" + "--:|" * (len(GOALS) + 1))
    for (name, order), curve in curves.items():
        best = max(curve, key=lambda c: c[1])
        cells = [str(needed(curve, g) or f"> {curve[-1][0]}") for g in GOALS]
        print(f"| {name} | {order} | {' | '.join(cells)} | {best[1]:.2%} ({best[0]}) |")
    print(f"plot: {plot(curves, os.path.join(OUT, '..', 'label_order.png'))}")


if __name__ == "__main__":
    cli.run(main)
