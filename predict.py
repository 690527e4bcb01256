"""Read captchas: files, folders or globs -> `file<TAB>text<TAB>confidence` per line (or JSON).

    python predict.py dataset/test/*.png                   # the newest weights/*_best.pt, else weights/default.pt
    python predict.py weights/cnn_best.onnx some_folder    # a model first: a .pt checkpoint or an export.py .onnx
    python predict.py some_folder --checkpoint=weights/cnn_best.pt --json=1
    python predict.py sums/ --answer=arith --min_confidence=0.9   # also the computed answer; unsure readings marked

A line gets `<TAB>answer=VALUE` (or `<TAB>no answer: WHY`) with ANSWER "arith", and `<TAB>unsure` when its
confidence is below MIN_CONFIDENCE. A tab, newline, carriage return or backslash in a file name is written
as \\t, \\n, \\r, \\\\ so that every reading stays one line of three or more fields.
"""
import glob
import json
import os
import sys

import numpy as np

import config
from core import data
from core import cli
from core.checkpoint import default_checkpoint
from core.coverage import check_min_confidence
from core.device import pick_device, set_threads
from core.inference import Predictor, reading

MODEL_EXTENSIONS = (".pt", ".onnx")  # a first argument ending so is the model, not an image
TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_field(text):
    """`text` as one TSV field: backslash, tab, newline and carriage return escaped."""
    return text.translate(TSV_ESCAPES)


def tsv_line(path, r):
    """One reading as a TSV line: file, text, confidence, then the answer and the unsure mark where asked for."""
    fields = [tsv_field(path), tsv_field(r["text"]), f"{r['confidence']:.4f}"]
    if "answer" in r:
        fields.append(f"answer={r['answer']}" if r["answer"] is not None else f"no answer: {r['answer_error']}")
    if r.get("unsure"):
        fields.append("unsure")
    return "\t".join(fields)


def expand(sources):
    """Image paths from files, folders and glob patterns, in order; and a warning for each source that gave none."""
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
        if not found and os.path.isdir(source):
            missing.append(f"{source}: a folder without images ({', '.join(data.IMAGE_EXTENSIONS)})"
                           + data.subfolder_hint(source))
        elif not found:
            missing.append(f"{source}: no such file, folder or matching image")
    return paths, missing


def main():
    sources, opts = config.parse(checkpoint="", json=False, batch_size=256)
    if sources and not opts["checkpoint"] and sources[0].endswith(MODEL_EXTENSIONS):
        opts["checkpoint"] = sources.pop(0)
    if not sources:
        sys.exit("usage: python predict.py [MODEL.pt|MODEL.onnx] IMAGE|FOLDER|GLOB ... [--json=1]")
    if opts["batch_size"] < 1:
        raise config.ConfigError(f"--batch_size={opts['batch_size']}: images read at once, at least 1 (e.g. 256)")
    try:
        min_confidence = check_min_confidence(config.MIN_CONFIDENCE)
    except ValueError as e:
        raise config.ConfigError(str(e)) from None
    set_threads(config.THREADS)
    say = lambda text: print(text, file=sys.stderr)  # stdout carries only the readings
    answer = config.ANSWER if "ANSWER" in config.given() else None  # else what the checkpoint was trained for
    predictor = Predictor(opts["checkpoint"] or default_checkpoint(say), pick_device(config.DEVICE), config.THREADS,
                          answer=answer, copies=config.TTA)
    paths, missing = expand(sources)
    for m in missing:
        print(f"warning: {m}", file=sys.stderr)
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
            r = reading(t, c, predictor.answer, min_confidence)
            results.append(dict(file=p, **r, chars=[round(x, 4) for x in pc]))
            if not opts["json"]:
                print(tsv_line(p, r), flush=True)
    if opts["json"]:
        print(json.dumps(results, indent=1))
    if failed:
        print(f"{failed} of {len(paths)} files could not be read (named above)", file=sys.stderr)
    if failed or missing or not results:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
