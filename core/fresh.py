"""Fresh captchas in memory for ONLINE training: generator processes render chunks of uint8 images ahead of
the trainer, so every epoch sees new captchas and no PNG file is written or decoded.

Image `index` of seed `seed` is the same captcha captchaGenerator.py would write for them (same label, same
pixels after decoding; GEN_STYLE "varied" draws at the image's height and its width follows the text, so it is
resized to the model's width), so a chunk does not depend on which process rendered it. Epoch seeds are strings
(`online<SEED>.<epoch>`): they can never coincide with a folder generated with an integer --seed, such as
the test set. Processes are forked (like a DataLoader's workers): they only use PIL and numpy.
"""
import collections
import multiprocessing as mp
import random
import time

import numpy as np

from core import data, varied
from core.generate import SeededSecrets, random_label

CHUNK_IMAGES = 512  # about this many images per task: ~2 s of work for one process, ~5 MB to hand over


def epoch_seed(seed, epoch):
    return f"online{seed}.{epoch}"


_captcha = None  # one ImageCaptcha per process, made by _init
_fonts = ()      # GEN_STYLE "varied": the font files it draws from, set by _init


def label_length(length):
    """What random_label draws for a codec's (min, max): the number itself where both are equal (a folder
    captchaGenerator.py writes with --gen_length=4 holds the same captchas), else the range."""
    lo, hi = (length, length) if isinstance(length, int) else length
    return hi if lo == hi else (lo, hi)


def _init(width, height, fonts, style="imagecaptcha"):
    """A generator process's drawing state; `fonts`: font files as varied.style_fonts resolved them in the parent."""
    global _captcha, _fonts
    if style == "varied":
        _fonts = tuple(fonts)
        return
    from captcha.image import ImageCaptcha
    _captcha = ImageCaptcha(width=width, height=height, fonts=list(fonts) or None)


def render(seed, index, charset, length, width, height, channels, style="imagecaptcha"):
    """(label, uint8 (H, W, C)): captcha `index` of `seed`, as captchaGenerator.py would write it, decoded."""
    import captcha.image
    rng = random.Random(f"{seed}-{index}")
    label = random_label(rng, charset, length)
    captcha.image.secrets = SeededSecrets(rng)
    if style == "varied":
        image = varied.draw(label, rng, height, _fonts, charset)
    else:
        if _captcha is None or (_captcha._width, _captcha._height) != (width, height):
            _init(width, height, ())
        image = _captcha.generate_image(label)
    return label, data.load_image(image, width, height, channels)


def render_chunk(task):
    """Images start .. start+count-1 of `seed`: (uint8 (count, C, H, W), labels, seconds, CPU seconds of work).
    task: (seed, start, count, charset, length, width, height, channels, style)."""
    seed, start, count, charset, length, width, height, channels, style = task
    t0, c0 = time.perf_counter(), time.process_time()
    images = np.empty((count, channels, height, width), dtype=np.uint8)
    labels = []
    for i in range(count):
        label, image = render(seed, start + i, charset, length, width, height, channels, style)
        images[i] = image.transpose(2, 0, 1)
        labels.append(label)
    return images, labels, time.perf_counter() - t0, time.process_time() - c0


def render_set(seed, count, charset, length, width, height, channels, fonts=(), processes=1, style="imagecaptcha"):
    """(uint8 (count, C, H, W), labels): `count` captchas of `seed`, rendered by `processes` processes. length:
    a number, or a codec's (min, max)."""
    fonts = varied.style_fonts(fonts, style)
    tasks = [(seed, s, min(CHUNK_IMAGES, count - s), charset, label_length(length), width, height, channels, style)
             for s in range(0, count, CHUNK_IMAGES)]
    if processes > 1:
        with mp.get_context("fork").Pool(processes, _init, (width, height, fonts, style)) as pool:
            parts = pool.map(render_chunk, tasks)
    else:
        _init(width, height, fonts, style)
        parts = [render_chunk(t) for t in tasks]
    return np.concatenate([p[0] for p in parts]), [label for p in parts for label in p[1]]


def chunk_plan(count, batch_size, world=1):
    """Chunk sizes of one epoch for one rank: whole batches, `count // (batch_size * world)` per rank in all.

    Chunk k of the epoch holds images k*chunk .. of the epoch's seed; rank r takes chunks r, r+world, ...
    Every rank gets the same number of batches (the last chunks may be shorter), so all ranks step together.
    """
    steps = count // (batch_size * world)
    per_chunk = max(1, round(CHUNK_IMAGES / batch_size))  # batches per chunk
    sizes = [per_chunk] * (steps // per_chunk) + [steps % per_chunk] * bool(steps % per_chunk)
    return [n * batch_size for n in sizes], per_chunk * batch_size


class Producer:
    """Generator processes rendering each epoch's chunks ahead of the trainer, at most `ahead` chunks ahead.

    `next_chunk()` returns this rank's chunks in order, epoch after epoch, as (images uint8 (n, C, H, W),
    labels); while the trainer works (and evaluates), the processes render the next ones. It also keeps the
    figures that say which side is the bottleneck: the seconds the trainer waited, and the processes' work.
    """

    def __init__(self, seed, count, batch_size, charset, length, width, height, channels, fonts=(), workers=1,
                 first_epoch=1, last_epoch=1, rank=0, world=1, ahead=None, style="imagecaptcha"):
        self.workers, self.world = max(1, workers), world
        self.sizes, self.chunk = chunk_plan(count, batch_size, world)
        self.steps = sum(self.sizes) // batch_size
        self.ahead = ahead or 2 * self.workers + 2
        fonts = varied.style_fonts(fonts, style)
        shape = (charset, label_length(length), width, height, channels, style)
        self.tasks = ((epoch_seed(seed, e), (k * world + rank) * self.chunk, n) + shape
                      for e in range(first_epoch, last_epoch + 1) for k, n in enumerate(self.sizes))
        self.pool = mp.get_context("fork").Pool(self.workers, _init, (width, height, fonts, style))
        self.pending = collections.deque()
        self.reset_stats()
        self._top_up()

    def _top_up(self):
        while len(self.pending) < self.ahead:
            task = next(self.tasks, None)
            if task is None:
                return
            self.pending.append(self.pool.apply_async(render_chunk, (task,)))

    def reset_stats(self):
        self.waited = self.work = 0.0
        self.images = 0

    def ready(self):
        """Whether the next chunk is rendered (next_chunk would not wait); False when none is left to render."""
        return bool(self.pending) and self.pending[0].ready()

    def next_chunk(self):
        t0 = time.perf_counter()
        images, labels, seconds, _ = self.pending.popleft().get()
        self.waited += time.perf_counter() - t0
        self.work += seconds
        self.images += len(labels)
        self._top_up()
        return images, labels

    def generation_rate(self):
        """Images/s all the processes make together, from their own timing (what they could deliver)."""
        return self.images / max(self.work, 1e-9) * self.workers

    def report(self, seconds, train_rate, pool=None):
        """One line for the epoch: how fast the processes render, how fast training goes when it has images, and
        so which of the two limits the run. Under torchrun, this process's figures times the number of processes.
        With a ReplayPool (ONLINE_REPLAY) training never waits: the line says how many of its images were fresh."""
        gen = self.generation_rate() * self.world  # every training process has as many generators
        plural = "es" if self.workers * self.world > 1 else ""
        processes = f"{self.world} x {self.workers}" if self.world > 1 else self.workers
        if pool is not None:
            fresh = self.images / max(self.images + pool.drawn, 1)
            return (f"  online: generation {gen:.0f} img/s ({processes} process{plural}), training {train_rate:.0f} "
                    f"img/s: {fresh:.0%} of its images fresh, the rest drawn again from the {pool.filled} rendered "
                    f"so far ({self.waited:.1f}s spent waiting for images)")
        fed = self.images / max(seconds - self.waited, 1e-9) * self.world  # training speed while it had images
        which = ("generation is the bottleneck: more ONLINE_WORKERS (cores) would train faster, or ONLINE_REPLAY "
                 "trains on the rendered captchas again meanwhile" if gen < fed else
                 "training is the bottleneck: the generators keep ahead")
        return (f"  online: generation {gen:.0f} img/s ({processes} process{plural}), training {fed:.0f} img/s "
                f"when fed ({train_rate:.0f} overall, {self.waited:.1f}s spent waiting for images): {which}")

    def close(self):
        self.pool.terminate()
        self.pool.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
