"""ddddocr's zero-shot sequence accuracy on the test part of every set of the real-set suite.

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_zero.py                  # all built sets + the shared two
    python benchmarks/bench_teacher_zero.py --sets=amazon,henan_digits --limit=100

ddddocr 1.6.1 as it comes (`ddddocr.DdddOcr(show_ad=False)`, `classification(image bytes)`, no character
range set), one image at a time, its onnxruntime sessions on --threads threads. A prediction is right when it
equals the whole label; upper and lower case count the same only where the set's labels are all of one case
(ddddocr answers in lower case). For sets whose images have an alpha channel it also reports
`classification(bytes, png_fix=True)` (ddddocr's fix for transparent PNGs) in a second column.

The sets: benchmarks/real_sets.py (build them first; --list shows the suite) and ../shared/datasets. ddddocr
is optional: `pip install ddddocr==1.6.1`.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import real_sets  # noqa: E402  (the suite's records and its label reader; no project module)
from bench_ddddocr import onnxruntime_threads  # noqa: E402



def test_items(folder, limit=0):
    """[(label, bytes)] of a set's test/ folder (labels.tsv, else file names)."""
    pairs = real_sets.read_folder_labels(os.path.join(folder, "test"))
    if limit:
        pairs = pairs[:limit]
    return [(label, open(path, "rb").read()) for path, label in pairs]


def single_case(labels):
    text = "".join(labels)
    return text == text.lower() or text == text.upper()


def has_alpha(data):
    from PIL import Image
    import io
    with Image.open(io.BytesIO(data)) as im:
        return im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info


def score(ocr, items, fold, png_fix=False):
    """(right, seconds per image)."""
    right, start = 0, time.perf_counter()
    for label, data in items:
        guess = ocr.classification(data, png_fix=png_fix) if png_fix else ocr.classification(data)
        right += (guess.lower() == label.lower()) if fold else (guess == label)
    return right, (time.perf_counter() - start) / max(len(items), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="real_sets", help="where benchmarks/real_sets.py wrote the sets")
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(real_sets.ROOT), "shared", "datasets"))
    parser.add_argument("--sets", default="", help="comma list (default: every set found)")
    parser.add_argument("--limit", type=int, default=0, help="read only the first N test images of each set")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    args = parser.parse_args(argv)

    import ddddocr
    with onnxruntime_threads(args.threads):
        ocr = ddddocr.DdddOcr(show_ad=False)
    wanted = [n for n in args.sets.split(",") if n]
    rows = []
    for name, record, *_ , folder in real_sets.suite(args.out, args.shared):
        if (wanted and name not in wanted) or not os.path.isdir(os.path.join(folder, "test")):
            if wanted and name in wanted:
                print(f"{name}: no test folder in {folder} (build it: python benchmarks/real_sets.py)")
            continue
        items = test_items(folder, args.limit)
        fold = single_case([label for label, _ in items])
        right, per = score(ocr, items, fold)
        fixed = ""
        if items and has_alpha(items[0][1]):
            right_fix, _ = score(ocr, items, fold, png_fix=True)
            fixed = f"{right_fix}/{len(items)} ({right_fix / len(items):.2%})"
        rows.append([name, f"{right}/{len(items)}", f"{right / max(len(items), 1):.2%}",
                     "yes" if fold else "no", f"{per * 1000:.1f}", fixed or "-"])
        print(f"{name}: {rows[-1][1]} = {rows[-1][2]} ({rows[-1][4]} ms/image)", flush=True)
    head = ["set", "right/test", "seq acc", "case folded", "ms/image", "png_fix=True"]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    print()
    for r in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
