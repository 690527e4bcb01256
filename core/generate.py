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
import signal
import sys
import time

from tqdm import tqdm

from core.answers import random_expression
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
_fonts = ()


def _init_worker(width, height, fonts):
    global _captcha, _fonts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent answers it, the workers just end
    from captcha.image import ImageCaptcha
    _captcha = ImageCaptcha(width=width, height=height, fonts=list(fonts) or None)
    _fonts = tuple(fonts)


def make_one(task):
    """Draw image `index` of `seed` and write it to `out_dir`: (1 if written, 0 if it existed; file name; label).
    answer "arith": the label is a sum ("12+7=?", core.answers.random_expression) and the file is named
    <seed>-<index>.png (a sum does not belong in a file name: labels.tsv holds it)."""
    import captcha.image
    out_dir, seed, index, charset, length, answer, style, height = task
    rng = random.Random(f"{seed}-{index}")
    if answer == "arith":
        label, name = random_expression(rng), f"{seed}-{index:07d}.png"
    else:
        label = random_label(rng, charset, length)
        name = file_name(label, seed, index)
    path = os.path.join(out_dir, name)
    if os.path.exists(path):
        return 0, name, label
    captcha.image.secrets = SeededSecrets(rng)
    if style == "varied":
        from core import varied
        image = varied.draw(label, rng, height, _fonts, charset)
    else:
        image = _captcha.generate_image(label)
    # no fsync (a lost file is made again by a rerun) and no folder scan per file: generate() sweeps once
    atomic_write(path, lambda f: image.save(f, format="PNG"), fsync=False, clean=False)
    return 1, name, label


def write_labels(out_dir, labels):
    """Merge {file name: label} into out_dir/labels.tsv (written whole, atomically; earlier lines kept)."""
    path = os.path.join(out_dir, "labels.tsv")
    merged = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            merged = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line and line != "file\tlabel\n")
    merged.update(labels)
    atomic_write(path, "file\tlabel\n" + "".join(f"{n}\t{t}\n" for n, t in sorted(merged.items())), mode="w")


def generate(out_dir, count, seed, charset, length, width, height, fonts=(), processes=None, quiet=False,
             answer="none", style="imagecaptcha"):
    """Generate `count` captchas into out_dir; returns the number of files written. answer "arith": sums
    ("12+7=?") labelled in out_dir/labels.tsv instead of the characters of `charset`. style "varied": the
    drawing of core.varied (each character its own font, colour, case and angle; the width follows the text)."""
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temps(out_dir)  # killed runs' leftovers; a concurrent run's temps are left alone
    processes = processes or os.cpu_count()
    from core import varied
    fonts = varied.style_fonts(fonts, style)  # found once, here, not in every process
    tasks = [(out_dir, seed, i, charset, length, answer, style, height) for i in range(count)]
    written, labels = 0, {}
    start = time.time()
    with mp.get_context("fork").Pool(processes, _init_worker, (width, height, tuple(fonts))) as pool:
        bar = tqdm(pool.imap_unordered(make_one, tasks, chunksize=64), total=count, unit="img",
                   desc=f"generate {out_dir}", disable=quiet or not sys.stdout.isatty(), file=sys.stdout)
        try:
            for n, name, label in bar:
                written += n
                labels[name] = label
        except KeyboardInterrupt:
            if answer == "arith":
                write_labels(out_dir, labels)
            raise KeyboardInterrupt(f"{written} captchas written to {out_dir}; the same command again completes "
                                    f"the set (files already there are kept)") from None
    if answer == "arith":
        write_labels(out_dir, labels)
    rate = count / max(time.time() - start, 1e-9)
    if not quiet:
        print(f"{written} written, {count - written} already there, {rate:.0f} images/s "
              f"with {processes} processes -> {out_dir}")
    return written
