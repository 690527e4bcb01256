"""Write labelled ImageCaptcha PNGs: dataset/<split>/<LABEL>_<seed>-<index>.png

    python captchaGenerator.py --split=train --count=20000 --seed=1
    python captchaGenerator.py --split=test --count=2000 --seed=2 --gen_length=(4,6)
    python captchaGenerator.py --split=sums --count=5000 --answer=arith   # sums like 12+7=?, labels in labels.tsv
    python captchaGenerator.py --split=big --count=100000 --gen_style=varied --gen_length=(3,8)  # many fonts, colours

The same seed gives byte-identical files: each image draws from its own random.Random(seed, index), so the
result does not depend on how many processes share the work. Files are written to a temporary name and
renamed, and existing files are never overwritten: an interrupted run is completed by running it again. Several
runs may share a folder at once (core/generate.py).
"""
import os
import random

import config
from core import cli
from core.generate import generate


def main():
    _, opts = config.parse(arguments=0, split="train", count=1000, seed=-1, processes=0)
    seed = opts["seed"] if opts["seed"] >= 0 else random.SystemRandom().randrange(2**31)
    out_dir = os.path.join(config.DATASET_DIR, opts["split"])
    what = ("sums like '12+7=?' (ANSWER=arith; labels in labels.tsv)" if config.ANSWER == "arith"
            else f"{config.GEN_LENGTH} chars from {config.GEN_CHARSET!r}")
    size = (f"{config.GEN_HEIGHT} px tall, as wide as the text (GEN_STYLE varied)" if config.GEN_STYLE == "varied"
            else f"{config.GEN_WIDTH}x{config.GEN_HEIGHT}")
    print(f"seed {seed}, {opts['count']} captchas of {what}, {size}")
    if opts["count"] < 0 or opts["processes"] < 0:
        raise config.ConfigError("--count and --processes are 0 or more")
    generate(out_dir, opts["count"], seed, config.GEN_CHARSET, config.GEN_LENGTH, config.GEN_WIDTH,
             config.GEN_HEIGHT, config.FONTS, opts["processes"] or None, answer=config.ANSWER, style=config.GEN_STYLE)
    return 0


if __name__ == "__main__":
    cli.run(main)
