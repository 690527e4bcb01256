"""Accuracy of a checkpoint on a folder, with the mistakes it makes.

    python test.py                                   # the newest weights/*_best.pt, else weights/default.pt, on TEST_DIR
    python test.py weights/cnn_best.pt --test_dir=../shared/datasets/captcha_images_v2/test
    python test.py weights/cnn_best.onnx             # a model written by export.py, run by onnxruntime
    python test.py --sheet=wrong.png --wrong=wrong.tsv  # also a picture and a list of every wrong prediction
    python test.py --coverage=coverage.png           # accuracy against coverage (the default file; "" = no plot)
    python test.py --tta=1                           # each image read once (TTA: unsure ones re-read as 5 copies)

It prints sequence and character accuracy, the confused characters, the wrong files, and a table of accuracy
against coverage at a few MIN_CONFIDENCE thresholds (drawn in coverage.png), so a deployment can abstain on
unsure readings. With ANSWER "arith" (stored by train.py) it also prints the accuracy of the computed answers.

The model is rebuilt from the checkpoint alone; the folder is read with the checkpoint's charset, label
length and image size, whatever config.py says now.
"""
import os

import numpy as np

import config
from core import cli
from core import data
from core.answers import parse
from core.checkpoint import default_checkpoint
from core.coverage import coverage_table, format_table, plot_coverage
from core.device import pick_device, set_threads
from core.inference import REREAD_BELOW, Predictor, check_labels, run_test
from core.metrics import case_only, confusions, one_confusion


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
    positional, opts = config.parse(arguments=1, folder_option="test_dir", show=20, sheet="", wrong="",
                                    coverage="coverage.png")
    path = positional[0] if positional else default_checkpoint()
    set_threads(config.THREADS)
    answer = config.ANSWER if "ANSWER" in config.given() else None  # else what the checkpoint was trained for
    predictor = Predictor(path, pick_device(config.DEVICE), config.THREADS, answer=answer, copies=config.TTA)
    folder = config.test_dir()
    if not folder:
        raise config.ConfigError(f"no test folder: name one with --test_dir=FOLDER (TEST_DIR is \"\" and there is no "
                                 f"'test' folder beside TRAIN_DIR={config.TRAIN_DIR})")
    try:
        check_labels(predictor.codec, folder, path)
    except data.NoLabelsError as e:  # its advice is for a folder to train on; a test folder needs its labels
        raise data.DataError(f"{folder}: {e.what}, so they hold no labels to test against: a test folder needs "
                             f"its images' labels, in {os.path.join(folder, data.LABELS_FILE)} (file<TAB>label) or "
                             f"typed on the labelling page (python app.py --label_dir={folder}){e.hint}") from None
    r = run_test(predictor, folder, skip_bad=config.SKIP_BAD)
    n = len(r["truths"])
    wrong = [i for i in range(n) if r["truths"][i] != r["preds"][i]]
    print(f"{path} ({r['model']}, epoch {predictor.ckpt.get('epoch', '?')} of its run) on {folder}: {n} images"
          + (f"; those read with confidence below {REREAD_BELOW} read again as {predictor.copies} shifted copies that "
             f"vote (TTA={predictor.copies}; --tta=1 reads each once, as training's own test line does)"
             if predictor.copies > 1 else ""))
    print(f"sequence accuracy {r['seq_acc']:.4f} ({n - len(wrong)}/{n}), character accuracy {r['char_acc']:.4f}")
    by_case = case_only(r["truths"], r["preds"]) if predictor.codec.case_sensitive else 0
    if by_case:
        print(f"case ignored {(n - len(wrong) + by_case) / n:.4f} ({n - len(wrong) + by_case}/{n}): {by_case} of the "
              f"{len(wrong)} wrong readings differ from their label in a letter's case alone (a site that takes its "
              f"answer without case accepts them)")
    if predictor.answer == "arith":  # a wrong reading may still give the right answer (3x4 read 4x3)
        right = sum(parse(p).ok and parse(p).value == parse(t).value for t, p in zip(r["truths"], r["preds"]))
        print(f"answer accuracy {right / max(1, n):.4f} ({right}/{n}): the computed answer of the reading is the "
              f"label's (ANSWER=arith)")
    confused = confusions(r["truths"], r["preds"])
    pairs = confused.most_common(10)
    if pairs:
        print("most confused (truth -> predicted: count): " + ", ".join(f"{a}->{b}: {k}" for (a, b), k in pairs))
        advice = one_confusion(confused)
        if advice:
            print(advice)
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
    if n:
        print("accuracy against coverage (answer only readings of at least MIN_CONFIDENCE; the rest marked unsure):")
        print(format_table(coverage_table(r["confs"], ok.tolist())))
        if opts["coverage"]:
            print(f"accuracy against coverage -> {plot_coverage(r['confs'], ok.tolist(), opts['coverage'])}")


if __name__ == "__main__":
    cli.run(main)
