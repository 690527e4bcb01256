"""Accuracy of a checkpoint on a folder, with the mistakes it makes.

    python test.py                                   # this run's _best.pt, else weights/default.pt, else the newest, on TEST_DIR
    python test.py weights/cnn_best.pt --test_dir=../shared/datasets/captcha_images_v2/test
    python test.py weights/cnn_best.onnx             # a model written by export.py, run by onnxruntime
    python test.py --sheet=wrong.png --wrong=wrong.tsv  # also a picture and a list of every wrong prediction

The model is rebuilt from the checkpoint alone; the folder is read with the checkpoint's charset, label
length and image size, whatever config.py says now.
"""
import collections
import os
import sys

import numpy as np

import config
import data
import torch_util
from train import accuracy


def confusions(truths, preds):
    """Counter of (true char, predicted char) over same-length predictions."""
    pairs = collections.Counter()
    for t, p in zip(truths, preds):
        if len(t) == len(p):
            pairs.update((a, b) for a, b in zip(t, p) if a != b)
    return pairs


def run_test(predictor, folder, batch_size=512, skip_bad=False, quiet=False):
    """{seq_acc, char_acc, paths, truths, preds, confs} for a folder."""
    c = predictor.ckpt
    ds = data.load_folder(folder, predictor.codec, predictor.width, predictor.height, predictor.channels,
                          config.CACHE_DIR, skip_bad, quiet)
    preds, confs = [], []
    for i in range(0, len(ds), batch_size):
        texts, conf, _ = predictor.predict_arrays(ds.images[i:i + batch_size])
        preds += texts
        confs += conf
    char_acc, seq_acc = accuracy(ds.texts, preds)
    return dict(seq_acc=seq_acc, char_acc=char_acc, paths=ds.paths, truths=ds.texts, preds=preds, confs=confs,
                model=c["model_name"])


def contact_sheet(r, wrong, path, columns=4, cell=(210, 90)):
    """A PNG of the wrong images, each captioned `file truth=... predicted=...`, to see at a glance whether
    the model or the label is wrong."""
    from PIL import Image, ImageDraw
    w, h = cell
    rows = max(1, (len(wrong) + columns - 1) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(wrong):
        x, y = (k % columns) * w, (k // columns) * (h + 16)
        with Image.open(r["paths"][i]) as im:
            sheet.paste(im.convert("RGB").resize(cell), (x, y))
        draw.text((x + 2, y + h + 2), f"{os.path.basename(r['paths'][i])} truth={r['truths'][i]} "
                                      f"pred={r['preds'][i]}", fill="black")
    sheet.save(path)


def main():
    positional, opts = config.parse(show=20, sheet="", wrong="")
    path = positional[0] if positional else torch_util.default_checkpoint()
    torch_util.set_threads(config.THREADS)
    predictor = torch_util.Predictor(path, torch_util.pick_device(config.DEVICE), config.THREADS)
    r = run_test(predictor, config.TEST_DIR, skip_bad=config.SKIP_BAD)
    n = len(r["truths"])
    wrong = [i for i in range(n) if r["truths"][i] != r["preds"][i]]
    print(f"{path} ({r['model']}, trained {predictor.ckpt.get('epoch', '?')} epochs) on {config.TEST_DIR}: {n} images")
    print(f"sequence accuracy {r['seq_acc']:.4f} ({n - len(wrong)}/{n}), character accuracy {r['char_acc']:.4f}")
    pairs = confusions(r["truths"], r["preds"]).most_common(10)
    if pairs:
        print("most confused (truth -> predicted: count): " + ", ".join(f"{a}->{b}: {k}" for (a, b), k in pairs))
    if wrong:
        print(f"wrong ({len(wrong)}, showing {min(len(wrong), opts['show'])}, least confident first):")
        for i in sorted(wrong, key=lambda i: r["confs"][i])[:opts["show"]]:
            print(f"  {os.path.basename(r['paths'][i])}\ttruth {r['truths'][i]}\tpredicted {r['preds'][i]}"
                  f"\tconfidence {r['confs'][i]:.3f}")
    if opts["wrong"]:  # every wrong prediction, for auditing labels
        with open(opts["wrong"], "w") as f:
            f.write("file\ttruth\tpredicted\tconfidence\n")
            f.writelines(f"{os.path.basename(r['paths'][i])}\t{r['truths'][i]}\t{r['preds'][i]}\t{r['confs'][i]:.3f}\n"
                         for i in wrong)
        print(f"wrong predictions -> {opts['wrong']}")
    if opts["sheet"] and wrong:
        contact_sheet(r, wrong, opts["sheet"])
        print(f"contact sheet of the {len(wrong)} wrong images -> {opts['sheet']}")
    conf = np.array(r["confs"])
    ok = np.array([t == p for t, p in zip(r["truths"], r["preds"])])
    if len(conf) and (~ok).any():
        print(f"mean confidence: right {conf[ok].mean() if ok.any() else 0:.3f}, wrong {conf[~ok].mean():.3f}")


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, data.DataError, torch_util.CheckpointError) as e:
        sys.exit(f"error: {e}")
