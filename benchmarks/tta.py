"""Test-time augmentation, measured: a checkpoint reads each test image and copies of it shifted by a few
pixels; the copies vote (each reading weighted by its confidence) and the text with the most weight wins.

    python benchmarks/tta.py weights/default.pt --test_dir=dataset/fresh10k --threads=1

Prints the accuracy of each shifted copy alone, then of each vote, with its `O`/`0` swaps: which shifts
the model is robust to, and what reading 3 or 7 copies buys against reading one. A shift rolls the image
(pixels leaving one side come back on the other: a few columns or rows of background). Every image's copies vote
here; predict.py, test.py and the API (TTA = 5) give the vote of the first five (none, up 2, down 2, left 2,
right 2) only to an image they read with confidence under core.inference.REREAD_BELOW.
"""
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from core import data  # noqa: E402
from core.device import pick_device, set_threads  # noqa: E402
from core import inference  # noqa: E402
from core.inference import Predictor  # noqa: E402
from core.metrics import confusions  # noqa: E402

SHIFTS = dict(zip(("none", "up 2", "down 2", "left 2", "right 2", "left 4", "right 4"), inference.SHIFTS))
VOTES = [("none", "left 2", "right 2"), ("none", "up 2", "down 2"), ("none", "up 2", "down 2", "left 2", "right 2"),
         ("none", "left 2", "right 2", "left 4", "right 4"), tuple(SHIFTS)]


def vote(readings, names):
    """The winning text of each image over the copies `names` (core.inference.vote: the largest summed confidence;
    the first copy named wins a tie): what predict.py, test.py and the API read for an unsure image with
    TTA = len(names) when `names` are the first SHIFTS."""
    texts = [t for name in names for t in readings[name][0]]
    confidences = [c for name in names for c in readings[name][1]]
    picked, _ = inference.vote(texts, confidences, len(names))
    return [texts[j] for j in picked]


def report(label, truths, texts, seconds=None):
    right = sum(t == p for t, p in zip(truths, texts))
    pairs = confusions(truths, texts)
    took = f", {seconds:.0f} s" if seconds is not None else ""
    print(f"{label:<62} {right / len(truths):.4f} ({right}/{len(truths)}), O/0 swaps "
          f"{pairs[('O', '0')] + pairs[('0', 'O')]}{took}", flush=True)


def main():
    args, _ = config.parse()
    if len(args) != 1:
        raise config.ConfigError("name one checkpoint: python benchmarks/tta.py weights/default.pt --test_dir=FOLDER")
    set_threads(config.THREADS)
    predictor = Predictor(args[0], pick_device(config.DEVICE))
    files, truths = zip(*data.read_labels(config.TEST_DIR))
    images = np.stack([predictor.load(path) for path in files])
    print(f"{args[0]} on {config.TEST_DIR}: {len(files)} images; each copy alone, then the votes:")
    readings = {}
    for name, (rows, columns) in SHIFTS.items():
        start = time.time()
        readings[name] = predictor.read(np.roll(images, (rows, columns), axis=(1, 2)))
        report(f"shifted {name}", truths, readings[name][0], time.time() - start)
    for names in VOTES:
        report(f"vote of {len(names)}: {', '.join(names)}", truths, vote(readings, names))


if __name__ == "__main__":
    cli.run(main)
