"""Labelled ImageCaptcha files: <LABEL>_<seed>-<index>.png, byte-identical for the same seed.

Each image draws from its own random.Random(seed, index), so the result does not depend on how many processes
share the work. Files are written to a temporary name and renamed (core.files.atomic_write), and existing files
are never overwritten: an interrupted run is completed by running it again. Several runs may share a folder at
once: temp names are unique per process, and a run removes only temp files left by killed runs (old, and their
process gone), never those of a run still writing. No torch here: writing files needs only PIL.
"""
import multiprocessing as mp
import os
import random
import sys
import time

from tqdm import tqdm

from core.files import atomic_write, remove_stale_temps


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
    # no fsync (a lost file is made again by a rerun) and no folder scan per file: generate() sweeps once
    atomic_write(path, lambda f: image.save(f, format="PNG"), fsync=False, clean=False)
    return 1


def generate(out_dir, count, seed, charset, length, width, height, fonts=(), processes=None, quiet=False):
    """Generate `count` captchas into out_dir; returns the number of files written."""
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temps(out_dir)  # killed runs' leftovers; a concurrent run's temps are left alone
    processes = processes or os.cpu_count()
    tasks = [(out_dir, seed, i, charset, length) for i in range(count)]
    written = 0
    start = time.time()
    with mp.get_context("fork").Pool(processes, _init_worker, (width, height, tuple(fonts))) as pool:
        bar = tqdm(pool.imap_unordered(make_one, tasks, chunksize=64), total=count, unit="img",
                   desc=f"generate {out_dir}", disable=quiet or not sys.stdout.isatty(), file=sys.stdout)
        for n in bar:
            written += n
    rate = count / max(time.time() - start, 1e-9)
    if not quiet:
        print(f"{written} written, {count - written} already there, {rate:.0f} images/s "
              f"with {processes} processes -> {out_dir}")
    return written
