"""export.py --format=ddddocr checked at scale: the exported model read by ddddocr 1.6.1 itself against the project's
predictor, on the same generated captchas.

    python benchmarks/bench_ddddocr_export.py --checkpoint=weights/default.pt --count=200

The images: COUNT captchas of 4 characters from 0-9A-Z, 160x60, seed 778, generated into
dataset/ddddocr_export_bench the first time. The checkpoint is exported (core/ddddocr_format.py) into a temporary
folder; ddddocr reads each PNG file's bytes with its own preprocessing and decoding, the project's Predictor
reads the same files (data.load_image). Prints how many texts agree and each reader's accuracy.
ddddocr is optional: pip install -r requirements-ddddocr.txt.
"""
import os
import string
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from core import ddddocr_format  # noqa: E402
from core.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from core.device import set_threads  # noqa: E402
from core.generate import generate  # noqa: E402
from core.inference import Predictor  # noqa: E402

SEED = 778
CHARSET = string.digits + string.ascii_uppercase
LENGTH, WIDTH, HEIGHT = 4, 160, 60


def bench_files(folder, count):
    """Paths of captchas 0..count-1 of seed SEED (LABEL_SEED-INDEX.png), generated into `folder` where missing."""
    generate(folder, count, SEED, CHARSET, LENGTH, WIDTH, HEIGHT, quiet=True)
    names = sorted(f for f in os.listdir(folder) if f.endswith(".png") and int(f[:-4].rpartition("-")[2]) < count)
    return [os.path.join(folder, f) for f in names]


def main():
    _, opts = config.parse(checkpoint=os.path.join("weights", "default.pt"), count=200,
                           folder=os.path.join(config.DATASET_DIR, "ddddocr_export_bench"))
    try:
        import ddddocr
    except ImportError:
        sys.exit("error: ddddocr is not installed; it is optional: pip install -r requirements-ddddocr.txt")
    set_threads(1)
    paths = bench_files(opts["folder"], opts["count"])
    truth = [os.path.basename(p).split("_")[0] for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, charsets_path = ddddocr_format.output_paths(os.path.join(tmp, "model.onnx"))
        start = time.time()
        ckpt = load_checkpoint(opts["checkpoint"])
        model, _ = model_from_checkpoint(ckpt, "cpu")
        ddddocr_format.export(ckpt, model, onnx_path, charsets_path)
        print(f"{opts['checkpoint']} -> ddddocr custom model in {time.time() - start:.1f} s")
        ocr = ddddocr.DdddOcr(det=False, ocr=False, show_ad=False, import_onnx_path=onnx_path,
                              charsets_path=charsets_path)
        start = time.time()
        theirs = [ocr.classification(open(p, "rb").read()) for p in paths]
        ddddocr_ms = (time.time() - start) * 1000 / len(paths)
    predictor = Predictor(opts["checkpoint"], "cpu", threads=1)
    ours = predictor.read(np.stack([predictor.load(p) for p in paths]))[0]
    same = sum(a == b for a, b in zip(theirs, ours))
    n = len(paths)
    print(f"{n} captchas (seed {SEED}, {LENGTH} chars of 0-9A-Z, {WIDTH}x{HEIGHT}) in {opts['folder']}")
    print(f"agreement: {same}/{n} same texts (ddddocr 1.6.1 with the exported model vs the project's predictor)")
    for name, texts in (("ddddocr + export", theirs), ("project predictor", ours)):
        right = sum(a == b for a, b in zip(texts, truth))
        print(f"  {name:<18} accuracy {right}/{n} = {right / n:.2%}")
    print(f"  ddddocr {ddddocr_ms:.1f} ms per image (bytes to text, its own onnxruntime session settings)")
    for p, a, b in [(p, a, b) for p, a, b in zip(paths, theirs, ours) if a != b][:10]:
        print(f"  differs: {os.path.basename(p)}: ddddocr {a!r}, predictor {b!r}")
    return 0 if same == n else 1


if __name__ == "__main__":
    cli.run(main)
