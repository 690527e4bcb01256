"""A folder that mixes several suite sets' styles, as a site with several captcha styles gives them: the
BENCHMARKS section "A folder that mixes three styles".

    python benchmarks/mix_sets.py                        # henan_digits, wp_simple, dotted_digits -> real_sets_mix/mixed
    python benchmarks/mix_sets.py --sets=amazon,lzu_digits --per_set=1000 --test=200 --out=real_sets_mix/two

From each set's training part (a seeded sample of --per_set images, in name order first, so the same sets give the
same mix on any machine) --test images go to `<out>/test/`, the rest to `<out>/train/`, each under a name that
starts with its set's first letter (`h00012.jpg`), labels in lower case in a `labels.tsv` beside them (a site
that mixes styles rarely keeps case apart). Read like any suite set: `python benchmarks/bench_suite.py
--real_sets=real_sets_mix --sets=mixed --labels=100`.
"""
import argparse
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.bench_suite import suite  # noqa: E402
from core import data  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="henan_digits,wp_simple,dotted_digits")
    p.add_argument("--per_set", type=int, default=1500)
    p.add_argument("--test", type=int, default=300, help="of each set's images, this many go to test/")
    p.add_argument("--real_sets", default="real_sets")
    p.add_argument("--out", default="real_sets_mix/mixed")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    known = suite(a.real_sets)
    names = [n for n in a.sets.split(",") if n]
    missing = [n for n in names if n not in known]
    if missing:
        sys.exit(f"error: {', '.join(missing)}: not in the suite ({', '.join(known) or 'none built'}); "
                 f"python benchmarks/real_sets.py builds real_sets/")
    if len({n[0] for n in names}) < len(names):
        sys.exit("error: --sets: each set must start with a letter of its own (file names say where an image is from)")
    if os.path.exists(a.out):
        sys.exit(f"error: {a.out} exists; remove it or name another --out")
    rows = {"train": [], "test": []}
    for name in names:
        folder = os.path.join(known[name], "train")
        items = sorted(data.read_labels(folder))
        random.Random(a.seed).shuffle(items)
        if len(items) < a.per_set:
            sys.exit(f"error: {name} has {len(items)} training images, fewer than --per_set={a.per_set}")
        for i, (path, label) in enumerate(items[:a.per_set]):
            part = "test" if i < a.test else "train"
            out = f"{name[0]}{i:05d}{os.path.splitext(path)[1].lower()}"
            os.makedirs(os.path.join(a.out, part), exist_ok=True)
            shutil.copyfile(path, os.path.join(a.out, part, out))
            rows[part].append((out, label.lower()))
    for part, items in rows.items():
        with open(os.path.join(a.out, part, "labels.tsv"), "w") as f:
            f.writelines(f"{n}\t{t}\n" for n, t in sorted(items))
        print(f"{a.out}/{part}: {len(items)} images")


if __name__ == "__main__":
    main()
