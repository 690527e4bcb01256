"""How a reader does on each verdict of a person's audit of a set: the images a person reads, those whose label
a person can only guess, those nobody can read.

    python benchmarks/audit_reads.py --audit=docs/colour_lines_audit.tsv --set=real_sets/colour_lines \
        --reader=ddddocr
    python benchmarks/audit_reads.py --audit=docs/colour_lines_audit.tsv --set=real_sets/packed/colour_lines \
        --reader=weights/x_best.pt

The audit is a TSV with a header and `file<TAB>label<TAB>verdict<TAB>why` lines, `file` relative to the set's
folder (docs/colour_lines_audit.tsv: 60 test images of colour_lines drawn at random, seed 7). A reading is right
when it equals the label, upper and lower case counted the same when the labels are all of one case (ddddocr
answers in lower case). `--reader` is `ddddocr` (the optional extra, `pip install ddddocr==1.6.1`) or a
checkpoint written by train.py or export.py. A checkpoint trained on a packed copy of the set
(benchmarks/pack_set.py) reads the packed file of the same name (`.webp`) when `--set` names the packed copy.
Prints one line per verdict, `verdict: right/images`, and the images each reader got wrong with `--show=1`.
"""
import argparse
import collections
import contextlib
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

from benchmarks.bench_teacher_zero import single_case  # noqa: E402


def read_audit(path):
    """[(file, label, verdict)] of an audit TSV (its header line skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 3:
            raise SystemExit(f"{path}:{number}: expected file<TAB>label<TAB>verdict[<TAB>why], got {line!r}")
        rows.append((fields[0], fields[1], fields[2]))
    if not rows:
        raise SystemExit(f"{path}: no audited images")
    return rows


def image_path(folder, name):
    """The audited file in `folder`, or its packed copy (same stem, .webp) where the folder is a packed set."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        packed = os.path.splitext(path)[0] + ".webp"
        path = packed if os.path.exists(packed) else path
    if not os.path.exists(path):
        raise SystemExit(f"{path}: not found (--set is the folder the audit's file names are relative to)")
    return path


def make_reader(name):
    """A function: image path -> text."""
    if name == "ddddocr":
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                import ddddocr
                ocr = ddddocr.DdddOcr(show_ad=False)
        except ImportError:
            raise SystemExit("--reader=ddddocr needs the optional extra: pip install -r requirements-ddddocr.txt")
        return lambda path: ocr.classification(open(path, "rb").read())
    from core.checkpoint import CheckpointError
    from core.inference import Predictor

    try:
        predictor = Predictor(name, threads=1)
    except CheckpointError as e:
        raise SystemExit(f"--reader: {e}")
    return lambda path: predictor.predict_arrays(predictor.load(path)[None])[0][0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit", required=True)
    parser.add_argument("--set", required=True, help="the folder the audit's file names are relative to")
    parser.add_argument("--reader", default="ddddocr", help="ddddocr, or a checkpoint (.pt / .onnx)")
    parser.add_argument("--show", type=int, default=0, help="1: list the images read wrong")
    args = parser.parse_args(argv)
    rows = read_audit(args.audit)
    fold = single_case([label for _, label, _ in rows])
    read = make_reader(args.reader)
    right, total = collections.Counter(), collections.Counter()
    for name, label, verdict in rows:
        text = read(image_path(args.set, name))
        ok = (text.upper() == label.upper()) if fold else text == label
        total[verdict] += 1
        right[verdict] += ok
        if args.show and not ok:
            print(f"  {name}\t{verdict}\tlabel {label}\tread {text}")
    for verdict in total:
        print(f"{verdict}: {right[verdict]}/{total[verdict]}")
    print(f"all: {sum(right.values())}/{len(rows)} ({args.reader})")


if __name__ == "__main__":
    main()
