"""Does a trained model read some character far more rarely than its labels hold it? What train.py says at the end
of a run with unlabelled images (core.metrics.rare_readings), for a checkpoint and the folder it was trained on.

    python benchmarks/rare_readings.py CHECKPOINT.pt --train_dir=FOLDER --limit=100 --seed=2

The labelled images are the run's seeded LIMIT sample of FOLDER (as train.py draws it with the same LIMIT and
SEED; LIMIT 0: every image); the model reads the folder's other images. Prints each character's share of the
labels' characters and of the readings, lowest ratio first, then the advice train.py would print ("" = none).
"""
import collections
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli, data  # noqa: E402
from core.inference import Predictor  # noqa: E402
from core.metrics import rare_readings  # noqa: E402
from core.sets import limit_draw  # noqa: E402


def main():
    args, _ = config.parse()
    if len(args) != 1:
        raise config.ConfigError("name one checkpoint: python benchmarks/rare_readings.py CHECKPOINT.pt "
                                 "--train_dir=FOLDER [--limit=N --seed=S]")
    if config.THREADS:
        torch.set_num_threads(config.THREADS)
    predictor = Predictor(args[0], "cpu", config.THREADS)
    items = data.read_labels(config.TRAIN_DIR)
    count, seed = limit_draw(config)
    labelled = (set(data.sample_indices(len(items), count, seed).tolist()) if 0 < count < len(items)
                else set(range(len(items))))
    rest = [i for i in range(len(items)) if i not in labelled]
    if not rest:
        raise config.ConfigError(f"{config.TRAIN_DIR}: no image is left out of the labelled ones to read (give --limit)")
    size = (predictor.width, predictor.height, predictor.channels)
    images, ok, _ = data.decode_images([items[i][0] for i in rest], *size, config.CACHE_DIR, quiet=True)
    readings, _ = predictor.read(images[ok])
    labels = [predictor.codec.normalize(items[i][1]) for i in sorted(labelled)]
    held = collections.Counter(c for t in labels for c in t)
    read = collections.Counter(c for t in readings for c in t)
    n_held, n_read = sum(held.values()), sum(read.values())
    print(f"{len(labels)} labelled images, {len(readings)} read; per character: share of the labels -> of the readings")
    ratio = {c: (read[c] / n_read) / (held[c] / n_held) for c in held}
    for c in sorted(held, key=lambda c: (ratio[c], c)):
        print(f"  {c!r}: {held[c] / n_held:.4f} -> {read[c] / n_read:.4f} ({ratio[c]:.2f} times)")
    print(f"advice: {rare_readings(labels, readings)!r}")


if __name__ == "__main__":
    cli.run(main)
