"""How right are a model's confident readings? The share of a labelled folder read at or above each confidence,
and how many of those are right: what PSEUDO_THRESHOLD would give as pseudo-labels.

    python benchmarks/pseudo_threshold.py weights/mysite_best.pt --test_dir=labelled_folder
    python benchmarks/pseudo_threshold.py bench_real/henan_digits/n100/cnn_ctc_best.pt \
        --test_dir=../shared/datasets/henan_digits/train --thresholds=0.5,0.9,0.99
    python benchmarks/pseudo_threshold.py weights/mysite_best.pt --test_dir=labelled_folder --temperature=1

Confidences are read at the checkpoint's temperature (the one train.py fitted; 1 for older checkpoints), as
train.py's pseudo-labels read them, or at --temperature (1: the raw scores).

Read a folder the model did not train on with known labels (for a run with --limit, its TRAIN_DIR: the images
not sampled are most of it). Prints one line per threshold.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from core.device import pick_device, set_threads  # noqa: E402
from core.inference import Predictor, run_test  # noqa: E402


def main():
    positional, opts = config.parse(thresholds="0.5,0.9,0.95,0.99,0.999", temperature=0.0)
    if len(positional) != 1 or not config.TEST_DIR:
        sys.exit(__doc__.split("\n\n")[1])
    temperature = float(opts["temperature"])
    if temperature < 0:
        raise config.ConfigError(f"--temperature={temperature:g}: a temperature is above 0 (1: the raw scores; leave "
                                 f"it out for the checkpoint's own)")
    set_threads(config.THREADS)
    predictor = Predictor(positional[0], pick_device(config.DEVICE), config.THREADS,
                          temperature=temperature or None)
    r = run_test(predictor, config.TEST_DIR, skip_bad=config.SKIP_BAD, quiet=True)  # test.py's reading
    right = np.array([t == p for t, p in zip(r["truths"], r["preds"])])
    confs = np.array(r["confs"])
    print(f"{positional[0]} on {config.TEST_DIR}: {len(right)} images, {right.mean():.2%} read right; "
          f"confidences at temperature {predictor.temperature:.3g}")
    for threshold in (float(t) for t in str(opts["thresholds"]).split(",")):
        chosen = confs >= threshold
        share = chosen.mean()
        precision = f"{right[chosen].mean():.2%} right" if chosen.any() else "none"
        print(f"  confidence >= {threshold}: {share:.2%} of the images, {precision}")


if __name__ == "__main__":
    cli.run(main)
