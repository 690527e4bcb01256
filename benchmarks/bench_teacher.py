"""How well a pretrained teacher (core/teacher.py) labels captchas with no labels given.

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher.py --threads=1           # the two shared test sets
    python benchmarks/bench_teacher.py --sets=../shared/datasets/henan_digits/test,my_captchas --trials=50

For each folder (labels from its labels.tsv, else from the file names: `LABEL.png`, `LABEL_anything.png`),
read in place, one image at a time, the teacher's session on --threads threads:

1. zero-shot: every image read with any character the teacher knows; sequence accuracy (upper and lower case
   count the same where the folder's labels are all of one case), and images/s of that pass;
2. inferred: infer_charset_length on those readings (the charset, the length(s), the case), compared with the
   labels' own; and how often it infers them right from --trials seeded samples of --sample images;
3. usefulness(readings): the verdict and its message;
4. restricted: every image read again with the inferred charset (Teacher.read(charset=...)); accuracy;
5. confidence: for both passes, at each of --thresholds, the readings kept by filter_readings (confidence at
   least the threshold; for the restricted pass also of an inferred length) and how many of them are right:
   precision (right / kept) and coverage (kept / images). Informative confidence: precision rises with it.

The teacher is optional: `pip install -r requirements-ddddocr.txt`.
"""
import argparse
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

from core import data  # noqa: E402
from core.teacher import TeacherError, filter_readings, infer_charset_length, load_teacher, usefulness  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "datasets")
DEFAULT_SETS = [os.path.join(SHARED, "captcha_images_v2", "test"), os.path.join(SHARED, "henan_digits", "test")]


def single_case(labels):
    letters = [c for label in labels for c in label if c.lower() != c.upper()]
    return not letters or all(c.islower() for c in letters) or all(c.isupper() for c in letters)


def fraction(part, whole):
    return f"{part}/{whole} ({100 * part / whole:.2f} %)" if whole else f"{part}/0"


def confidence_rows(readings, labels, same, thresholds, lengths=None, charset=None):
    """[(threshold, right, kept)] of the readings filter_readings keeps at each threshold."""
    rows = []
    for threshold in thresholds:
        kept = filter_readings(readings, threshold, lengths, charset)
        rows.append((threshold, sum(same(readings[i].text, labels[i]) for i in kept), len(kept)))
    return rows


def trials(readings, true_charset, true_lengths, fold, count, size, seed=0):
    """(charset right, lengths right, both right) over `count` seeded samples of `size` readings."""
    rng = random.Random(seed)
    size = min(size, len(readings))
    hits = [0, 0, 0]
    for _ in range(count):
        charset, lengths, _, _ = infer_charset_length(rng.sample(readings, size))
        ok_charset, ok_lengths = fold(charset) == true_charset, tuple(lengths) == true_lengths
        hits[0] += ok_charset
        hits[1] += ok_lengths
        hits[2] += ok_charset and ok_lengths
    return hits


def bench(teacher, folder, opts):
    pairs = sorted(data.read_labels(folder))
    if not pairs:
        sys.exit(f"error: no labelled images in {folder}")
    paths, labels = [p for p, _ in pairs], [label for _, label in pairs]
    n = len(paths)
    caseless = single_case(labels)
    letters = any(c.lower() != c.upper() for label in labels for c in label)
    fold = str.lower if caseless else str
    same = (lambda a, b: a.lower() == b.lower()) if caseless else (lambda a, b: a == b)
    true_charset = "".join(sorted(set(fold("".join(labels)))))
    true_lengths = tuple(sorted({len(label) for label in labels}))

    start = time.perf_counter()
    zero = teacher.read(paths)
    seconds = time.perf_counter() - start
    inferred = infer_charset_length(zero)
    ok, reason = usefulness(zero, name=teacher.name)
    restricted = teacher.read(paths, charset=inferred.charset) if inferred.charset else zero
    hits = trials(zero, true_charset, true_lengths, fold, opts.trials, opts.sample)

    name = os.path.relpath(folder, os.path.dirname(ROOT)) if folder.startswith(os.path.dirname(ROOT)) else folder
    print(f"\n## {name}: {n} images, labels {true_charset!r}, length {', '.join(map(str, true_lengths))}"
          f"{', compared case-insensitively' if caseless and letters else ''}")
    print(f"zero-shot read: {fraction(sum(map(same, (r.text for r in zero), labels)), n)} right, "
          f"{n / seconds:.1f} images/s on {opts.threads} thread(s) ({1000 * seconds / n:.1f} ms an image)")
    print(f"inferred from all {n}: {inferred.description}")
    print(f"  charset {'matches' if fold(inferred.charset) == true_charset else 'DIFFERS from'} the labels', "
          f"length {'matches' if inferred.lengths == true_lengths else 'DIFFERS'}; from {opts.trials} seeded samples "
          f"of {min(opts.sample, n)}: charset right {hits[0]}/{opts.trials}, length right {hits[1]}/{opts.trials}, "
          f"both {hits[2]}/{opts.trials}")
    print(f"usefulness: {'ok' if ok else 'NOT useful'}: {reason}")
    right = sum(map(same, (r.text for r in restricted), labels))
    print(f"restricted to the inferred charset: {fraction(right, n)} right")
    print("| reading | confidence >= | right / kept | precision | coverage |")
    print("|---|--:|--:|--:|--:|")
    groups = [("zero-shot, any length", confidence_rows(zero, labels, same, opts.thresholds)),
              ("restricted, inferred length", confidence_rows(restricted, labels, same, opts.thresholds,
                                                              inferred.lengths, inferred.charset))]
    for title, rows in groups:
        for threshold, right, kept in rows:
            precision = f"{100 * right / kept:.2f} %" if kept else "-"
            print(f"| {title} | {threshold:g} | {right}/{kept} | {precision} | {100 * kept / n:.2f} % |")
    if opts.check:
        check_against_ddddocr(paths, zero)
    return dict(n=n, zero=zero, restricted=restricted)


def check_against_ddddocr(paths, readings):
    """How many zero-shot texts equal DdddOcr(show_ad=False).classification's, exactly and ignoring case."""
    import ddddocr

    ocr = ddddocr.DdddOcr(show_ad=False)
    exact = caseless = 0
    for path, reading in zip(paths, readings):
        with open(path, "rb") as f:
            text = ocr.classification(f.read())
        exact += text == reading.text
        caseless += text.lower() == reading.text.lower()
    print(f"same text as DdddOcr.classification: {exact}/{len(paths)} exactly, {caseless}/{len(paths)} ignoring case")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma list of labelled folders")
    parser.add_argument("--teacher", default="ddddocr")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (0: every core)")
    parser.add_argument("--thresholds", default="0,0.5,0.8,0.9,0.95",
                        type=lambda s: [float(x) for x in s.split(",") if x])
    parser.add_argument("--trials", type=int, default=20, help="seeded samples to infer the charset/length from")
    parser.add_argument("--sample", type=int, default=100, help="images in each sample")
    parser.add_argument("--check", type=int, default=0, help="1: compare the texts with ddddocr's classification")
    opts = parser.parse_args()
    folders = [s for s in opts.sets.split(",") if s]
    missing = [f for f in folders if not os.path.isdir(f)]
    if missing:
        sys.exit(f"error: not a folder: {', '.join(missing)}")
    try:
        teacher = load_teacher(opts.teacher, threads=opts.threads)
    except TeacherError as e:
        sys.exit(f"error: {e}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"teacher {teacher.name}, {opts.threads} thread(s), {os.cpu_count()} CPUs (load average {load} at the "
          f"start); every image read one at a time from its file")
    for folder in folders:
        try:
            bench(teacher, os.path.abspath(folder), opts)
        except data.DataError as e:
            sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
