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

    def __init__(self, charset, length):
        if len(set(charset)) != len(charset):
            raise DataError(f"CHARSET has repeated characters: {charset!r}")
        self.charset = charset
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

    def check(self, text):
        """Why `text` is not a valid label, or None."""
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
    items = read_labels(folder)
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


def augment(x, strength=1.0):
    """Random small affine jitter (shift, scale, rotation, shear) of a float batch (B, C, H, W), on its device."""
    b = x.shape[0]
    r = torch.rand(b, 5, device=x.device) * 2 - 1  # uniform in [-1, 1]
    angle, shear = r[:, 0] * 0.05 * strength, r[:, 1] * 0.1 * strength  # radians
    scale = 1 + r[:, 2] * 0.05 * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, r[:, 3] * 0.06 * strength], 1),
                         torch.stack([sin, cos, r[:, 4] * 0.1 * strength], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def to_float(images):
    """uint8 (B, C, H, W) -> float in [-1, 1]; done on the device, in batch."""
    return images.float().mul_(2 / 255).sub_(1)
