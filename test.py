"""Accuracy of a checkpoint on a folder, with the mistakes it makes.

    python test.py                                   # the newest weights/*_best.pt, else weights/default.pt, on TEST_DIR
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
    preds, confs = predictor.read(ds.images, batch_size)
    char_acc, seq_acc = torch_util.accuracy(ds.texts, preds)
    return dict(seq_acc=seq_acc, char_acc=char_acc, paths=ds.paths, truths=ds.texts, preds=preds, confs=confs,
                model=c["model_name"])


def check_labels(codec, folder, path):
    """One line, with the fix, when the folder's labels cannot be read by the model: another case or charset."""
    texts = [t for _, t in data.read_labels(folder)]
    outside = sorted({c for t in texts for c in codec.normalize(t) if c not in codec.index})
    if not outside:
        return
    folded = sorted({c for c in outside if c.swapcase() in codec.index})
    if folded and len(folded) == len(outside):
        case = "lower" if all(c.islower() for c in folded) else "mixed"
        raise data.DataError(f"{folder}: its labels are {case}-case, {path}'s charset {codec.charset!r} is not: "
                             f"train a model on such labels (labels keep their case), or train with "
                             f"--case_sensitive=0 to fold case")
    bad = sum(any(c in outside for c in codec.normalize(t)) for t in texts)
    raise data.DataError(f"{folder}: {bad} of {len(texts)} labels hold characters {''.join(outside)!r} that {path} "
                         f"cannot read (its charset {codec.charset!r}): test on captchas of the kind it was trained on, "
                         f"or train a model on this folder (python train.py --train_dir=...)")


def shorten(text, chars):
    """`text` cut in the middle to at most `chars` characters, so a long file name still shows both ends."""
    return text if len(text) <= chars else text[:chars // 2 - 1] + "..." + text[-(chars - chars // 2 - 2):]


def contact_sheet(r, wrong, path, columns=4, cell=(210, 90)):
    """A PNG of the wrong images, each captioned with its file name and `truth ... predicted ...` on two lines,
    to see at a glance whether the model or the label is wrong."""
    from PIL import Image, ImageDraw
    w, h = cell
    caption, chars = 28, w // 6  # two text lines; the default bitmap font is 6 px a character
    rows = max(1, (len(wrong) + columns - 1) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(wrong):
        x, y = (k % columns) * w, (k // columns) * (h + caption)
        sheet.paste(Image.fromarray(data.load_image(r["paths"][i], w, h, 3)), (x, y))
        draw.text((x + 2, y + h + 2), shorten(os.path.basename(r["paths"][i]), chars), fill="black")
        draw.text((x + 2, y + h + 14), shorten(f"truth {r['truths'][i]}  predicted {r['preds'][i]}", chars),
                  fill="firebrick")
    sheet.save(path)


def main():
    positional, opts = config.parse(show=20, sheet="", wrong="")
    path = positional[0] if positional else torch_util.default_checkpoint()
    torch_util.set_threads(config.THREADS)
    predictor = torch_util.Predictor(path, torch_util.pick_device(config.DEVICE), config.THREADS)
    folder = config.test_dir()
    if not folder:
        raise config.ConfigError(f"no test folder: name one with --test_dir=FOLDER (TEST_DIR is \"\" and there is no "
                                 f"'test' folder beside TRAIN_DIR={config.TRAIN_DIR})")
    check_labels(predictor.codec, folder, path)
    r = run_test(predictor, folder, skip_bad=config.SKIP_BAD)
    n = len(r["truths"])
    wrong = [i for i in range(n) if r["truths"][i] != r["preds"][i]]
    print(f"{path} ({r['model']}, trained {predictor.ckpt.get('epoch', '?')} epochs) on {folder}: {n} images")
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
