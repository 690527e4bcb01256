"""A real set made small enough to carry to another machine, read there exactly as here:

    python benchmarks/pack_set.py real_sets/colour_lines --out=real_sets/packed/colour_lines

Every image of `<set>/train` (and the first --test of `<set>/test`, 0 = all) is decoded the way train.py decodes
it before resizing (transparency on white, 8 bits, grey or colour as train.py infers for `<set>/train`, or
CHANNELS given as --NAME=value) and written at its own size as a lossless WebP, with a labels.tsv beside it: a
run on the packed folder sees the same pixels as a run on the set (each image is read back at the inferred size,
or IMAGE_WIDTH x IMAGE_HEIGHT, and compared with its source before the next is written; the inferred size is the
same). colour_lines' 20 000 PNGs (91 MB) pack into 42.0 MiB, about 2.1 KB an image.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import config  # noqa: E402
from core import cli, data  # noqa: E402
from core.files import atomic_write  # noqa: E402
from core.plan import Settings, resolve_data  # noqa: E402


def pack_part(source, target, geometry, count=0):
    """Write `source`'s labelled images (the first `count`; 0 = all) into `target` as lossless WebP of their own
    size, as train.py decodes them before resizing (alpha on white, 8 bits, `geometry`'s channels), with
    labels.tsv; each is checked to read at `geometry` (width, height, channels) exactly as its source does.
    Returns (images, bytes written)."""
    pairs = data.read_labels(source)
    pairs = pairs[:count] if count else pairs
    os.makedirs(target, exist_ok=True)
    lines, size = [], 0
    for n, (path, label) in enumerate(pairs):
        own = data.load_image(path, 0, 0, geometry[2])  # its own size: flat colours, before resizing blurs them
        name = f"{n:05d}.webp"
        out = os.path.join(target, name)
        Image.fromarray(own[:, :, 0] if geometry[2] == 1 else own).save(out, "WEBP", lossless=True, quality=100,
                                                                          method=2)
        if not np.array_equal(data.load_image(out, *geometry), data.load_image(path, *geometry)):
            raise data.DataError(f"{out}: the packed image does not read back as {path} does")
        lines.append(f"{name}\t{label}\n")
        size += os.path.getsize(out)
    atomic_write(os.path.join(target, data.LABELS_FILE), "".join(lines), "w")
    return len(pairs), size


def main():
    positional, opts = config.parse(out="", test=0)
    if len(positional) != 1 or not opts["out"]:
        raise config.ConfigError("usage: python benchmarks/pack_set.py <set folder> --out=FOLDER [--test=N]")
    folder, s = positional[0], Settings()
    if os.path.isdir(opts["out"]) and os.listdir(opts["out"]):
        raise config.ConfigError(f"--out={opts['out']} is not empty: name another folder")
    s, _ = resolve_data(s.replace(TRAIN_DIR=os.path.join(folder, "train"), ONLINE=False), say=lambda *a: None)
    geometry = (s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS)  # as train.py resolves them
    print(f"{folder}: {geometry[0]}x{geometry[1]}, {'grey' if geometry[2] == 1 else 'colour'}")
    total = 0
    for part, count in (("train", 0), ("test", opts["test"])):
        images, size = pack_part(os.path.join(folder, part), os.path.join(opts["out"], part), geometry, count)
        total += size
        print(f"  {part}: {images} images, {size / 2**20:.1f} MiB")
    print(f"{opts['out']}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    cli.run(main)
