"""The one data path: folder -> (paths, labels) -> uint8 array (cached on disk) -> batches on the device.

Labels come from the file name (`LABEL.png`, `LABEL_anything.png`) or from a `labels.tsv` beside the
images (`file<TAB>label` per line). Every problem is collected and reported once, naming the files.
"""
import hashlib
import multiprocessing as mp
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SHOW_FILES = 5  # offending files named per problem


class DataError(Exception):
    """A problem with the user's data, reported as one readable message (no traceback)."""


def _problem(what, files):
    shown = ", ".join(files[:SHOW_FILES]) + (", ..." if len(files) > SHOW_FILES else "")
    return f"  {len(files)} {what}: {shown}"


class Codec:
    """Text <-> class ids.

    Fixed-length heads predict `max_len` positions over the charset, plus a padding class (the last id)
    when labels vary in length. CTC heads use id 0 as the blank and 1..len(charset) for characters.
    """

    def __init__(self, charset, length, case_sensitive=True):
        charset = charset if case_sensitive else "".join(dict.fromkeys(charset.upper()))
        if len(set(charset)) != len(charset):
            raise DataError(f"CHARSET has repeated characters: {charset!r}")
        if not charset:
            raise DataError("CHARSET is empty")
        self.charset, self.case_sensitive = charset, case_sensitive
        self.length = tuple(length) if isinstance(length, (tuple, list)) else (length, length)
        self.max_len = self.length[1]
        self.variable = self.length[0] != self.length[1]
        self.index = {c: i for i, c in enumerate(charset)}
        self.pad = len(charset)

    @property
    def fixed_classes(self):
        return len(self.charset) + self.variable

    @property
    def ctc_classes(self):
        return len(self.charset) + 1

    def normalize(self, text):
        """The label as the model learns it: upper-cased when the codec folds case."""
        return text if self.case_sensitive else text.upper()

    def check(self, text):
        """Why `text` (normalised) is not a valid label, or None."""
        bad = sorted({c for c in text if c not in self.index})
        if bad:
            return f"characters not in CHARSET {''.join(bad)!r}"
        if not self.length[0] <= len(text) <= self.length[1]:
            want = self.length[0] if not self.variable else f"{self.length[0]}-{self.length[1]}"
            return f"length {len(text)}, expected {want}"
        return None

    def encode(self, text):
        """(max_len,) ids padded with `pad`; serves both heads (CTC adds 1 and uses the lengths)."""
        return [self.index[c] for c in text] + [self.pad] * (self.max_len - len(text))

    def decode(self, ids):
        return "".join(self.charset[i] for i in ids if i < len(self.charset))


def read_labels(folder):
    """[(path, label)] for the images in `folder`, from labels.tsv if present, else from file names."""
    if not os.path.isdir(folder):
        raise DataError(f"no such folder: {folder}")
    tsv = os.path.join(folder, "labels.tsv")
    items = []
    if os.path.exists(tsv):
        with open(tsv, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                name, sep, label = line.partition("\t")
                if not sep:
                    raise DataError(f"{tsv}:{n}: expected 'file<TAB>label', got {line!r}")
                items.append((os.path.join(folder, name), label))
    else:
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                items.append((os.path.join(folder, name), stem.split("_")[0]))
    if not items:
        raise DataError(f"{folder}: no images found (expected LABEL.png, LABEL_anything.png or a "
                        f"labels.tsv beside the images; extensions {', '.join(IMAGE_EXTENSIONS)})")
    return items


def infer_codec(folder, charset, length, case_sensitive=True):
    """A Codec for `folder`'s labels: charset "infer" reads the characters from the labels (sorted), length 0
    reads (shortest, longest). Returns (codec, what was inferred, as text for the user; "" if nothing)."""
    if charset != "infer" and length:
        return Codec(charset, length, case_sensitive), ""
    texts = [t if case_sensitive else t.upper() for _, t in read_labels(folder)]
    texts = [t for t in texts if t]
    if not texts:
        raise DataError(f"{folder}: every label is empty; cannot infer CHARSET / LENGTH")
    said = []
    if charset == "infer":
        charset = "".join(sorted(set("".join(texts))))
        said.append(f"CHARSET inferred from {len(texts)} labels in {folder}: {charset!r} ({len(charset)} characters)")
    if not length:
        lo, hi = min(map(len, texts)), max(map(len, texts))
        length = lo if lo == hi else (lo, hi)
        said.append(f"LENGTH inferred: {length}")
    return Codec(charset, length, case_sensitive), "\n".join(said)


def load_image(source, width, height, channels):
    """uint8 array (H, W, C) from a path, file object or PIL image; raises OSError/ValueError if unreadable."""
    image = source if isinstance(source, Image.Image) else Image.open(source)
    image.load()
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def _decode(task):
    path, width, height, channels = task
    try:
        return load_image(path, width, height, channels)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"


def _cache_key(items, width, height, channels):
    h = hashlib.sha1(f"{width}x{height}x{channels}".encode())
    for path, label in items:
        st = os.stat(path) if os.path.exists(path) else None
        h.update(f"{path}\0{label}\0{st and st.st_size}\0{st and st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class CaptchaSet:
    """A decoded folder: images (N, H, W, C) uint8, labels (N, max_len) int64, texts, paths."""

    def __init__(self, paths, texts, images, codec):
        self.paths, self.texts, self.images, self.codec = paths, texts, images, codec
        self.labels = np.array([codec.encode(t) for t in texts], dtype=np.int64).reshape(len(texts), -1)

    def __len__(self):
        return len(self.paths)

    def tensors(self, device):
        """(images (N, C, H, W) uint8, labels (N, max_len) int64, lengths (N,)) on `device`."""
        images = torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous()
        lengths = torch.tensor([len(t) for t in self.texts], dtype=torch.int64)
        return images.to(device), torch.from_numpy(self.labels).to(device), lengths.to(device)


def load_folder(folder, codec, width, height, channels, cache_dir=None, skip_bad=False, quiet=False):
    """Scan, check and decode a folder into a CaptchaSet; raises DataError naming bad files."""
    items = [(p, codec.normalize(t)) for p, t in read_labels(folder)]
    missing = [p for p, _ in items if not os.path.exists(p)]
    bad_labels = {}
    for path, text in items:
        why = codec.check(text)
        if why:
            bad_labels.setdefault(why, []).append(os.path.basename(path) + (f" ({text!r})" if text else ""))

    key = _cache_key(items, width, height, channels)
    cache = cache_dir and os.path.join(cache_dir, f"{key}.npz")
    unreadable = []
    if cache and os.path.exists(cache):
        with np.load(cache) as z:
            images, ok = z["images"], z["ok"]
    else:
        tasks = [(p, width, height, channels) for p, _ in items]
        processes = min(os.cpu_count(), max(1, len(tasks) // 2000))
        if processes > 1:
            with mp.get_context("fork").Pool(processes) as pool:
                decoded = pool.map(_decode, tasks, chunksize=256)
        else:
            decoded = [_decode(t) for t in tasks]
        ok = np.array([not isinstance(d, str) for d in decoded])
        images = np.zeros((len(items), height, width, channels), dtype=np.uint8)
        for i, d in enumerate(decoded):
            if ok[i]:
                images[i] = d
            elif os.path.exists(items[i][0]):
                unreadable.append(f"{os.path.basename(items[i][0])} ({d})")
        if cache and ok.all():
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{cache}.{os.getpid()}.tmp.npz"
            np.savez(tmp, images=images, ok=ok)
            os.replace(tmp, cache)

    problems = [_problem("listed files are missing", [os.path.basename(p) for p in missing])] if missing else []
    problems += [_problem(f"labels with {why}", files) for why, files in bad_labels.items()]
    if unreadable:
        problems.append(_problem("unreadable images", unreadable))
    keep = ok & np.array([codec.check(t) is None for _, t in items])
    if problems:
        report = f"{folder}: {len(items) - int(keep.sum())} of {len(items)} files are unusable\n" + "\n".join(problems)
        if not skip_bad or not keep.any():
            raise DataError(report + "\nFix or remove them, or run with --skip_bad=1 to leave them out.")
        if not quiet:
            print(f"warning: {report}\nleaving them out (SKIP_BAD)")
    paths = [p for (p, _), k in zip(items, keep) if k]
    texts = [t for (_, t), k in zip(items, keep) if k]
    return CaptchaSet(paths, texts, images[keep], codec)


def batches(n, batch_size, device, generator=None, drop_last=False):
    """Index tensors covering range(n): shuffled when a torch.Generator is given, else in order."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


class Augment:
    """Random training-time changes of a float batch (B, C, H, W) in [-1, 1], all on its device, in batch.

    affine: shift / scale / rotation / shear (1.0 = a few px and degrees); perspective: corners move by up to
    6 % x strength; blur: probability of a Gaussian blur (sigma 0.3-1.2); noise: std of Gaussian pixel noise;
    contrast: contrast / brightness (and, for colour, per-channel gain) jitter. 0 switches a part off.
    Geometry is one homography and one grid_sample, so affine + perspective cost one resampling.
    """

    def __init__(self, affine=0.0, perspective=0.0, blur=0.0, noise=0.0, contrast=0.0):
        self.affine, self.perspective, self.blur, self.noise, self.contrast = affine, perspective, blur, noise, contrast

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.AUGMENT, cfg.PERSPECTIVE, cfg.BLUR, cfg.NOISE, cfg.CONTRAST)

    def __bool__(self):
        return any((self.affine, self.perspective, self.blur, self.noise, self.contrast))

    def __repr__(self):
        parts = [f"{k} {v:g}" for k, v in vars(self).items() if v]
        return ", ".join(parts) or "off"

    def __call__(self, x):
        if self.affine or self.perspective:
            x = self.warp(x)
        if self.contrast:
            x = self.jitter_contrast(x)
        if self.blur:
            x = self.gaussian_blur(x)
        if self.noise:
            x = (x + torch.randn_like(x) * self.noise).clamp_(-1, 1)
        return x

    def warp(self, x):
        b, dev = x.shape[0], x.device
        r = torch.rand(b, 5, device=dev) * 2 - 1  # uniform in [-1, 1]
        s = self.affine
        angle, shear = r[:, 0] * 0.05 * s, r[:, 1] * 0.1 * s  # radians
        scale = 1 + r[:, 2] * 0.05 * s
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zero, one = torch.zeros(b, device=dev), torch.ones(b, device=dev)
        m = torch.stack([torch.stack([cos, -sin + shear, r[:, 3] * 0.06 * s], 1),
                         torch.stack([sin, cos, r[:, 4] * 0.1 * s], 1),
                         torch.stack([zero, zero, one], 1)], 1)  # (B, 3, 3): output -> input coordinates
        if self.perspective:
            m = m @ _random_homography(b, 0.12 * self.perspective, dev)  # 0.12 of the [-1, 1] span = 6 %
        h, w = x.shape[2:]
        ys, xs = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=dev), torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=dev)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # (1, HW, 3)
        src = pts @ m.transpose(1, 2)  # (B, HW, 3)
        grid = (src[..., :2] / src[..., 2:].clamp(min=1e-3)).reshape(b, h, w, 2)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    def jitter_contrast(self, x):
        b, c = x.shape[:2]
        s = self.contrast
        r = torch.rand(b, 2 + c, 1, 1, device=x.device) * 2 - 1
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        gain = 1 + 0.4 * s * r[:, :1]  # contrast
        shift = 0.2 * s * r[:, 1:2]    # brightness
        if c > 1:
            gain = gain * (1 + 0.15 * s * r[:, 2:])  # colour: per-channel gain
        return ((x - mean) * gain + mean + shift).clamp_(-1, 1)

    def gaussian_blur(self, x, size=5):
        b, c, h, w = x.shape
        sigma = 0.3 + 0.9 * torch.rand(b, device=x.device)
        t = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
        k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)  # (B, size)
        delta = (t == 0).to(x.dtype).expand(b, size)
        k = torch.where((torch.rand(b, 1, device=x.device) < self.blur), k, delta)
        k = k.repeat_interleave(c, 0)  # (B*C, size): one kernel per sample, all its channels
        y = F.pad(x.reshape(1, b * c, h, w), (size // 2,) * 4, mode="replicate")
        y = F.conv2d(y, k[:, None, None, :], groups=b * c)
        y = F.conv2d(y, k[:, None, :, None], groups=b * c)
        return y.reshape(b, c, h, w)


def _random_homography(b, amount, device):
    """(B, 3, 3) homographies mapping the [-1, 1] square to one with corners moved by up to `amount`."""
    corners = torch.tensor([[-1., -1.], [1., -1.], [1., 1.], [-1., 1.]], device=device).expand(b, 4, 2)
    moved = corners + (torch.rand(b, 4, 2, device=device) * 2 - 1) * amount
    # solve for h (8 unknowns, h33 = 1) mapping corners -> moved
    x, y = corners[..., 0], corners[..., 1]
    u, v = moved[..., 0], moved[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # (B, 8, 8)
    rhs = torch.cat([u, v], 1)[..., None]  # (B, 8, 1)
    h = torch.linalg.solve(a, rhs)[..., 0]
    return torch.cat([h, torch.ones(b, 1, device=device)], 1).reshape(b, 3, 3)


def augment(x, strength=1.0):
    """Random small affine jitter of a float batch (B, C, H, W), on its device (Augment(affine=strength))."""
    return Augment(affine=strength)(x)


def to_float(images):
    """uint8 (B, C, H, W) -> float in [-1, 1]; done on the device, in batch."""
    return images.float().mul_(2 / 255).sub_(1)


# --- training batches: device-resident, or streamed from pinned host memory ------------------------------

def epoch_order(n, batch_size, generator, rank=0, world=1):
    """This rank's indices (CPU int64) for one epoch of `n` images.

    A permutation of range(n) drawn from `generator` (seeded alike on every rank), cut to whole global batches
    of batch_size * world; rank r takes the r-th batch_size indices of each. The ranks' shares are disjoint and
    equally long, so every rank takes the same number of steps. With world = 1 the batches are those of
    batches(n, batch_size, device, generator, drop_last=True).
    """
    order = torch.randperm(n, generator=generator)
    steps = n // (batch_size * world)
    return order[:steps * batch_size * world].view(steps, world, batch_size)[:, rank].reshape(-1)


def resident_batches(tensors, order, batch_size):
    """(images, labels, lengths) batches of device-resident tensors in `order`: index slices on the device."""
    images, labels, lengths = tensors
    order = order.to(images.device)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        yield images[idx], labels[idx], lengths[idx]


def fits_on_device(nbytes, device, share=0.5):
    """Whether `nbytes` of data may live on `device`: on CUDA when they take at most `share` of the free memory
    (the rest is for the model and its activations); elsewhere always (CPU data is in memory already)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def host_tensors(tensors, device):
    """CPU copies of (images, labels, lengths) for stream_batches, in pinned (page-locked) memory for CUDA."""
    tensors = tuple(t.cpu() for t in tensors)
    return tuple(t.pin_memory() for t in tensors) if device.type == "cuda" else tensors


def stream_batches(tensors, order, batch_size, device, chunk_batches=16):
    """The batches of resident_batches for a set kept in host memory (too large for the device).

    A thread gathers each chunk of `chunk_batches` batches on the CPU into pinned memory and, on CUDA, starts
    its non_blocking copy on a side stream; the next chunk is gathered and copied while the current one
    computes. The compute stream waits for the copy's event, never the host.
    """
    from concurrent.futures import ThreadPoolExecutor

    images, labels, lengths = tensors  # on the CPU (pinned for CUDA)
    cuda = device.type == "cuda"
    copy_stream = torch.cuda.Stream(device) if cuda else None
    size = batch_size * chunk_batches
    chunks = [order[i:i + size] for i in range(0, len(order), size)]

    def load(idx):
        if not cuda:
            return images[idx], labels[idx], lengths[idx], None
        host = [torch.empty((len(idx),) + t.shape[1:], dtype=t.dtype, pin_memory=True) for t in tensors]
        for t, out in zip(tensors, host):
            torch.index_select(t, 0, idx, out=out)
        with torch.cuda.device(device), torch.cuda.stream(copy_stream):
            # the pinned blocks go back to torch's host allocator only once these copies are done
            moved = [h.to(device, non_blocking=True) for h in host]
            done = torch.cuda.Event()
            done.record(copy_stream)
        return (*moved, done)

    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(load, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            *chunk, done = ahead.result()
            if k + 1 < len(chunks):
                ahead = pool.submit(load, chunks[k + 1])
            if cuda:
                current = torch.cuda.current_stream(device)
                current.wait_event(done)
                for t in chunk:  # allocated on the copy stream, used on this one
                    t.record_stream(current)
            for i in range(0, len(chunk[0]), batch_size):
                yield tuple(t[i:i + batch_size] for t in chunk)
