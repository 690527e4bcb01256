"""Read captchas: files, folders or globs -> `file<TAB>text<TAB>confidence` per line (or JSON).

    python predict.py dataset/test/*.png                   # this run's _best.pt, else weights/default.pt, else the newest
    python predict.py weights/cnn_best.onnx some_folder    # a model first: a .pt checkpoint or an export.py .onnx
    python predict.py some_folder --checkpoint=weights/cnn_best.pt --json=1
"""
import glob
import json
import os
import sys

import numpy as np

import config
from core import data
from core.checkpoint import CheckpointError, default_checkpoint
from core.device import pick_device, set_threads
from core.inference import Predictor

MODEL_EXTENSIONS = (".pt", ".onnx")  # a first argument ending so is the model, not an image

def expand(sources):
    """Image paths from files, folders and glob patterns, in order; and the sources that matched nothing."""
    paths, missing = [], []
    for source in sources:
        if os.path.isdir(source):
            found = [os.path.join(source, f) for f in sorted(os.listdir(source))
                     if os.path.splitext(f)[1].lower() in data.IMAGE_EXTENSIONS]
        elif os.path.exists(source):
            found = [source]
        else:
            found = sorted(glob.glob(source))
        paths += found
        if not found:
            missing.append(source)
    return paths, missing


def main():
    sources, opts = config.parse(checkpoint="", json=False, batch_size=256)
    if sources and not opts["checkpoint"] and sources[0].endswith(MODEL_EXTENSIONS):
        opts["checkpoint"] = sources.pop(0)
    if not sources:
        sys.exit("usage: python predict.py [MODEL.pt|MODEL.onnx] IMAGE|FOLDER|GLOB ... [--json=1]")
    set_threads(config.THREADS)
    say = lambda text: print(text, file=sys.stderr)  # stdout carries only the readings
    predictor = Predictor(opts["checkpoint"] or default_checkpoint(say),
                                     pick_device(config.DEVICE), config.THREADS)
    paths, missing = expand(sources)
    for m in missing:
        print(f"warning: {m}: no such file, folder or matching image", file=sys.stderr)
    results, failed = [], 0
    for i in range(0, len(paths), opts["batch_size"]):
        chunk, arrays = [], []
        for p in paths[i:i + opts["batch_size"]]:
            try:
                arrays.append(predictor.load(p))  # data.load_image: a FIFO, a bomb, a broken file -> ImageError
                chunk.append(p)
            except data.ImageError as e:  # it names the file; skip it and go on
                failed += 1
                print(f"warning: {e.name}: not a readable image ({e.reason}); skipped", file=sys.stderr)
        if not chunk:
            continue
        texts, confs, chars = predictor.predict_arrays(np.stack(arrays))
        for p, t, c, pc in zip(chunk, texts, confs, chars):
            results.append(dict(file=p, text=t, confidence=round(c, 4), chars=[round(x, 4) for x in pc]))
            if not opts["json"]:
                print(f"{p}\t{t}\t{c:.4f}", flush=True)
    if opts["json"]:
        print(json.dumps(results, indent=1))
    if failed:
        print(f"{failed} of {len(paths)} files could not be read (named above)", file=sys.stderr)
    if failed or missing or not results:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, CheckpointError) as e:
        sys.exit(f"error: {e}")
