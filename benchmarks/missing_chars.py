"""Few labels that lack a character of the set, and whether the run finds it: for each suite set and draw, N of
its training images are the labels (a labels.tsv listing them is all a user would have: the charset comes from
them), the others unlabelled; prints what the labels lack and what `core.teach.missing_from_labels` finds (what a
run with the teacher adds to its charset before training, and says), one row per draw.

    python benchmarks/missing_chars.py --sets=swust_mixed --labels=50 --seeds=1-6
    python benchmarks/missing_chars.py --labels=100 --seeds=1              # every suite set, one draw each

Needs the teacher (pip install -r requirements-ddddocr.txt); its readings are cached in --cache_dir
(bench_suite/.cache), so a second run reads none again. Draw K is data.sample_indices(n, N, K) of the folder's
n labelled images: LIMIT's seeded sample, the one `train.py --limit=N --seed=K-1` takes (core.sets.limit_draw
draws with SEED + 1).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

from benchmarks.bench_suite import suite  # noqa: E402
from core import cli, data, teach  # noqa: E402
from core.plan import Settings  # noqa: E402


def seeds(text):
    """'1-6' -> [1, ..., 6]; '1,3' -> [1, 3]."""
    out = []
    for part in str(text).split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def draw(items, labels, seed):
    """(labelled [(path, text)], unlabelled paths) of one draw of `labels` of a folder's labelled `items`
    (data.read_labels)."""
    picked = set(data.sample_indices(len(items), labels, seed).tolist())
    return [items[i] for i in sorted(picked)], [p for i, (p, _) in enumerate(items) if i not in picked]


def main():
    opts = dict(sets="", labels=100, seeds="1", real_sets=os.path.join(ROOT, "real_sets"),
                cache_dir=os.path.join(ROOT, "bench_suite", ".cache"), threads=0)
    for arg in sys.argv[1:]:
        key, _, value = arg.lstrip("-").partition("=")
        if key not in opts:
            sys.exit(f"error: {arg}: options are {', '.join('--' + k for k in opts)}")
        opts[key] = value
    sets = suite(opts["real_sets"])
    names = [n for n in opts["sets"].split(",") if n] or list(sets)
    unknown = [n for n in names if n not in sets]
    if unknown:
        sys.exit(f"error: unknown set(s) {', '.join(unknown)}; known: {', '.join(sets)}")
    s = Settings().replace(TEACHER=teach.AUTO, CACHE_DIR=opts["cache_dir"], THREADS=int(opts["threads"]))
    print("| set | labels | seed | the labels lack | the run adds |\n|---|--:|--:|---|---|")
    for name in names:
        train = os.path.join(sets[name], "train")
        items = data.read_labels(train)  # read once: every draw of the set is a sample of them
        every = {c for _, t in items for c in t}
        for seed in seeds(opts["seeds"]):
            labelled, unlabelled = draw(items, int(opts["labels"]), seed)
            texts = [t for _, t in labelled]
            codec = data.Codec("".join(sorted({c for t in texts for c in t})),
                               (min(map(len, texts)), max(map(len, texts))))
            found = teach.missing_from_labels(s.replace(UNLABELED_DIR=train), unlabelled, texts, codec,
                                              say=lambda line: None)
            lack = "".join(sorted(every - set(codec.charset))) or "-"
            named = ", ".join(f"{c!r} ({k} of {min(teach.SAMPLE, len(unlabelled))})" for c, k in found) or "-"
            print(f"| {name} | {opts['labels']} | {seed} | {lack} | {named} |", flush=True)


if __name__ == "__main__":
    cli.run(main)
