"""ddddocr (the popular pretrained captcha OCR) and our model on the same generated captchas: accuracy and
the time to read one image, on one CPU thread.

    python benchmarks/bench_ddddocr.py            # the newest weights/*_best.pt, else weights/default.pt
    python benchmarks/bench_ddddocr.py --checkpoint=weights/cnn_best.onnx --count=500
    python benchmarks/bench_ddddocr.py --checkpoint=runs/x_best.pt --test_dir=real_sets/amazon/test --count=300
    python benchmarks/bench_ddddocr.py --checkpoint=runs/x_best.pt --test_dir=F --teacher=ddddocr2   # + the pair

Our model is timed twice: each image read once (TTA=1), and as predict.py, test.py and the API read it (TTA: an
image read with confidence under 0.95 read again as 5 shifted copies that vote, by default).

The images: COUNT captchas of 4 characters from 0-9A-Z, 160x60, generated with seed 777 (no other script
uses it) into dataset/ddddocr_bench the first time. Both readers get each PNG file's bytes, one image at a
time, and are timed from bytes to text (decoding the PNG included). Accuracy: the whole label right,
upper and lower case counted the same (ddddocr answers in lower case). With TEST_DIR, the first COUNT images of
that labelled folder (labels.tsv or file names, as test.py reads them) instead: a checkpoint trained on a real
set against ddddocr on the same files.

ddddocr is optional and not in requirements.txt: `pip install ddddocr==1.6.1` (its models are in the
wheel; it adds opencv-python-headless and uses the onnxruntime, numpy and pillow already pinned).
"""
import contextlib
import io
import os
import statistics
import string
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

from core.checkpoint import default_checkpoint  # noqa: E402
from core.data import read_labels  # noqa: E402
from core.generate import generate  # noqa: E402
from core.inference import Predictor  # noqa: E402
import config  # noqa: E402
from core import cli  # noqa: E402

SEED = 777
CHARSET = string.digits + string.ascii_uppercase
LENGTH, WIDTH, HEIGHT = 4, 160, 60
WARMUP = 20  # calls before the timed pass, per reader


def bench_images(folder, count, processes=None):
    """[(label, PNG bytes)] of captchas 0..count-1 of seed SEED, generated into `folder` where missing."""
    def present():  # file names are LABEL_SEED-INDEX.png
        names = os.listdir(folder) if os.path.isdir(folder) else []
        return sorted(f for f in names if f.endswith(".png") and int(f[:-4].rpartition("-")[2]) < count)

    if len(present()) < count:
        generate(folder, count, SEED, CHARSET, LENGTH, WIDTH, HEIGHT, processes=processes)
    return [(name.split("_")[0], open(os.path.join(folder, name), "rb").read()) for name in present()]


@contextlib.contextmanager
def onnxruntime_threads(threads):
    """ddddocr opens its onnxruntime sessions with every core; make the sessions it opens here use `threads`."""
    import onnxruntime

    original = onnxruntime.InferenceSession

    def session(path, sess_options=None, providers=None, **kwargs):
        options = sess_options or onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return original(path, options, providers=providers, **kwargs)

    onnxruntime.InferenceSession = session
    try:
        yield
    finally:
        onnxruntime.InferenceSession = original


def ddddocr_reader(beta=False):
    """bytes -> text with ddddocr's bundled model (beta=True: its newer 'beta' model), on one thread."""
    try:
        import ddddocr
    except ImportError:
        sys.exit("error: ddddocr is not installed. It is optional (not in requirements.txt): "
                 "pip install ddddocr==1.6.1")
    with onnxruntime_threads(1):
        ocr = ddddocr.DdddOcr(show_ad=False, beta=beta)

    def read(raw):
        text = ocr.classification(raw)
        return text if isinstance(text, str) else ""  # it answers {'error': ...} for an unreadable image

    return read


def teacher_reader(name):
    """bytes -> text with the project's teacher `name` (core.teacher: ddddocr2 is the pair TEACHER "auto" picks,
    each image read by both of ddddocr's models), on one thread, as a run reads its unlabelled images."""
    from core.teacher import TeacherError, load_teacher
    try:
        teacher = load_teacher(name, threads=1)
    except TeacherError as e:
        sys.exit(f"error: {e}")

    def read(raw):
        return teacher.read([raw])[0].text

    return read


def our_reader(path, copies=1):
    """bytes -> text with our model (.pt on torch, .onnx on onnxruntime), on one thread; `copies` > 1: an unsure
    reading is replaced by the vote of that many shifted copies of the image (TTA)."""
    predictor = Predictor(path, "cpu", threads=1, copies=copies)

    def read(raw):
        return predictor.predict_arrays(predictor.load(io.BytesIO(raw))[None])[0][0]

    return read, predictor


def folder_images(folder, count):
    """[(label, file bytes)] of the first `count` images of a labelled folder (in file-name order)."""
    return [(label, open(path, "rb").read()) for path, label in sorted(read_labels(folder))[:count]]


def run(read, images):
    """(accuracy, median ms, p90 ms): each image read alone, timed from bytes to text."""
    for _, raw in images[:WARMUP]:
        read(raw)
    right, times = 0, []
    for label, raw in images:
        start = time.perf_counter()
        text = read(raw)
        times.append((time.perf_counter() - start) * 1000)
        right += text.upper() == label.upper()
    return right / len(images), statistics.median(times), statistics.quantiles(times, n=10)[-1]


def main():
    _, opts = config.parse(checkpoint="", count=2000, dir=os.path.join(config.DATASET_DIR, "ddddocr_bench"),
                           beta=False, test_dir="", teacher="")
    torch.set_num_threads(1)
    path = opts["checkpoint"] or default_checkpoint()
    readers = [("ddddocr 1.6.1", ddddocr_reader())]
    if opts["beta"]:
        readers.append(("ddddocr 1.6.1 beta=True", ddddocr_reader(beta=True)))
    if opts["teacher"]:
        readers.append((f"the teacher {opts['teacher']} (core.teacher)", teacher_reader(opts["teacher"])))
    for copies in sorted({1, config.TTA}):  # read once, and as predict.py, test.py and the API read (TTA)
        ours, predictor = our_reader(path, copies)
        readers.append((f"{os.path.basename(path)} ({predictor.ckpt['model_name']}, {predictor.runtime}, "
                        f"TTA={copies})", ours))
    if opts["test_dir"]:
        images = folder_images(opts["test_dir"], opts["count"])
        print(f"the first {len(images)} images of {opts['test_dir']}; one image at a time, one CPU thread, "
              f"bytes -> text")
    else:
        images = bench_images(opts["dir"], opts["count"], config.THREADS or None)
        print(f"{len(images)} captchas in {opts['dir']} (seed {SEED}, {LENGTH} characters from 0-9A-Z, "
              f"{WIDTH}x{HEIGHT}); one image at a time, one CPU thread, bytes -> text")
    width = max(len(name) for name, _ in readers)
    print(f"| {'reader':<{width}} | accuracy | median ms | p90 ms |")
    print(f"| {'-' * width} | -------: | --------: | -----: |")
    for name, read in readers:
        accuracy, median, p90 = run(read, images)
        print(f"| {name:<{width}} | {accuracy:8.4f} | {median:9.2f} | {p90:6.2f} |", flush=True)


if __name__ == "__main__":
    cli.run(main)
