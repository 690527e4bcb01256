"""Write labelled ImageCaptcha PNGs: dataset/<split>/<LABEL>_<seed>-<index>.png

    python captchaGenerator.py --split=train --count=20000 --seed=1
    python captchaGenerator.py --split=test --count=2000 --seed=2 --length=(4,6)

The same seed gives byte-identical files: each image draws from its own random.Random(seed, index), so the
result does not depend on how many processes share the work. Files are written to a temporary name and
renamed, and existing files are never overwritten: an interrupted run is completed by running it again.
"""
import multiprocessing as mp
import os
import random
import sys
import time

from tqdm import tqdm

import config


class SeededSecrets:
    """Stands in for the `secrets` module inside captcha.image, drawing from a seeded random.Random."""

    def __init__(self, rng):
        self.randbelow = lambda n: rng.randrange(n)
        self.randbits = rng.getrandbits
        self.choice = rng.choice


def random_label(rng, charset, length):
    n = rng.randint(*length) if isinstance(length, tuple) else length
    return "".join(rng.choice(charset) for _ in range(n))


def file_name(label, seed, index):
    return f"{label}_{seed}-{index:07d}.png"


_captcha = None


def _init_worker(width, height, fonts):
    global _captcha
    from captcha.image import ImageCaptcha
    _captcha = ImageCaptcha(width=width, height=height, fonts=list(fonts) or None)


def make_one(task):
    """Draw image `index` of `seed` and write it to `out_dir`; returns 1 if written, 0 if it existed."""
    import captcha.image
    out_dir, seed, index, charset, length = task
    rng = random.Random(f"{seed}-{index}")
    label = random_label(rng, charset, length)
    path = os.path.join(out_dir, file_name(label, seed, index))
    if os.path.exists(path):
        return 0
    captcha.image.secrets = SeededSecrets(rng)
    image = _captcha.generate_image(label)
    tmp = f"{path}.{os.getpid()}.tmp"
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return 1


def generate(out_dir, count, seed, charset, length, width, height, fonts=(), processes=None, quiet=False):
    """Generate `count` captchas into out_dir; returns the number of files written."""
    os.makedirs(out_dir, exist_ok=True)
    for stale in os.listdir(out_dir):  # leftovers of a killed run
        if stale.endswith(".tmp"):
            os.remove(os.path.join(out_dir, stale))
    processes = processes or os.cpu_count()
    tasks = [(out_dir, seed, i, charset, length) for i in range(count)]
    written = 0
    start = time.time()
    with mp.get_context("fork").Pool(processes, _init_worker, (width, height, tuple(fonts))) as pool:
        bar = tqdm(pool.imap_unordered(make_one, tasks, chunksize=64), total=count, unit="img",
                   desc=f"generate {out_dir}", disable=quiet, file=sys.stdout)
        for n in bar:
            written += n
    rate = count / max(time.time() - start, 1e-9)
    if not quiet:
        print(f"{written} written, {count - written} already there, {rate:.0f} images/s "
              f"with {processes} processes -> {out_dir}")
    return written


def main():
    _, opts = config.parse(split="train", count=1000, seed=-1, processes=0)
    seed = opts["seed"] if opts["seed"] >= 0 else random.SystemRandom().randrange(2**31)
    out_dir = os.path.join(config.DATASET_DIR, opts["split"])
    print(f"seed {seed}, {opts['count']} captchas of {config.LENGTH} chars from {config.CHARSET!r}, "
          f"{config.IMAGE_WIDTH}x{config.IMAGE_HEIGHT}")
    generate(out_dir, opts["count"], seed, config.CHARSET, config.LENGTH, config.IMAGE_WIDTH,
             config.IMAGE_HEIGHT, config.FONTS, opts["processes"] or None)


if __name__ == "__main__":
    try:
        main()
    except config.ConfigError as e:
        sys.exit(f"error: {e}")
