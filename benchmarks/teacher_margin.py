"""How the teacher reads each set of the suite with each border of core.teacher.MARGINS, and which one a run chooses.

    python benchmarks/teacher_margin.py --threads=1                       # every built set + the shared two
    python benchmarks/teacher_margin.py --sets=jaccount,amazon --count=200
    python benchmarks/teacher_margin.py --sets=swust_mixed --teacher=ddddocr2

For each set, --count images drawn across its training part (--part=test: its test part; the labels only score
the readings) are read by the teacher (core.teacher: ddddocr, or --teacher=ddddocr2) the way a run without labels
reads them, once per border: with no charset (the sample a run judges the teacher on), then restricted to the
charset and lengths inferred from that reading (core.teacher.infer_charset_length, as core.teach.teach_unlabelled
infers them). Per border it prints:

- mean conf: the mean sequence confidence of the unrestricted readings, what core.teacher.choose_margin compares;
- right: restricted readings equal to the label (case ignored where the labels are all of one case);
- labels / wrong: the readings a run would train on (confidence >= TEACHER_THRESHOLD, an inferred length and the
  charset: core.teacher.filter_readings) and how many of them are wrong.

The chosen border is marked `*`. The sets: benchmarks/real_sets.py (build them first) and ../shared/datasets.
ddddocr is optional: `pip install -r requirements-ddddocr.txt`.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from benchmarks import real_sets  # noqa: E402
from benchmarks.bench_teacher_zero import single_case  # noqa: E402
from core import data  # noqa: E402
from core.teacher import MARGINS, choose_margin, filter_readings, infer_charset_length, load_teacher  # noqa: E402


def sample(folder, count, part="train"):
    """[(path, label)]: `count` of the part's labelled images, drawn across it (seed 0); all of them for 0."""
    return data.take_sample(data.read_labels(os.path.join(folder, part)), count, 0)


def measure(teacher, pairs, threshold):
    """{margin: (mean confidence, right, labels, wrong)} and the margin choose_margin picks."""
    from PIL import Image

    images = []
    for path, _ in pairs:
        with Image.open(path) as im:
            im.load()
            images.append(im.copy())
    labels = [label for _, label in pairs]
    fold = single_case(labels)
    same = (lambda a, b: a.lower() == b.lower()) if fold else (lambda a, b: a == b)
    free = {m: teacher.read(images, margin=m) for m in MARGINS}
    chosen, _ = choose_margin(free)
    rows = {}
    for m, readings in free.items():
        inferred = infer_charset_length(readings, min_length_share=0.3)  # as a run without labels infers them
        restricted = teacher.read(images, charset=inferred.charset, margin=m) if inferred.charset else readings
        kept = filter_readings(restricted, threshold, inferred.lengths, inferred.charset)
        mean = sum(r.confidence for r in readings) / max(1, len(readings))
        right = sum(same(r.text, label) for r, label in zip(restricted, labels))
        wrong = sum(not same(restricted[i].text, labels[i]) for i in kept)
        rows[m] = (mean, right, len(kept), wrong)
    return rows, chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="real_sets", help="where benchmarks/real_sets.py wrote the sets")
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared", "datasets"))
    parser.add_argument("--sets", default="", help="comma list (default: every set found)")
    parser.add_argument("--count", type=int, default=500, help="images read per set (0: all)")
    parser.add_argument("--part", default="train", choices=("train", "test"), help="the part they are drawn from")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--teacher", default="ddddocr", help="ddddocr, or ddddocr2 (its two models, where they agree)")
    args = parser.parse_args(argv)

    teacher = load_teacher(args.teacher, threads=args.threads)
    wanted = [n for n in args.sets.split(",") if n]
    head = f"{'set':<18} {'images':>6}  " + "  ".join(f"{'border ' + format(m, 'g'):>28}" for m in MARGINS)
    print(head)
    print(f"{'':<18} {'':>6}  " + "  ".join(f"{'mean conf right labels/wrong':>28}" for _ in MARGINS))
    for name, record, *_, folder in real_sets.suite(args.out, args.shared):
        if (wanted and name not in wanted) or not os.path.isdir(os.path.join(folder, args.part)):
            if wanted and name in wanted:
                print(f"{name}: no {args.part} folder in {folder} (build it: python benchmarks/real_sets.py)")
            continue
        pairs = sample(folder, args.count, args.part)
        rows, chosen = measure(teacher, pairs, config.TEACHER_THRESHOLD)
        cells = []
        for m in MARGINS:
            mean, right, kept, wrong = rows[m]
            cells.append(f"{'*' if m == chosen else ' '}{mean:.3f} {right:5d} {kept:5d}/{wrong:<4d}".rjust(28))
        print(f"{name:<18} {len(pairs):>6}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
