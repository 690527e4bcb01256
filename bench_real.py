"""Real-captcha benchmark: train on each shared set's train split only, then test on its test split.

    python bench_real.py                                  # both sets, read from ../shared/datasets
    python bench_real.py --sets=henan_digits --epochs=5   # one set; --NAME=value goes to every train.py

The sets (../shared/datasets/README.md): captcha_images_v2 (832 train / 208 test, 5 lower-case letters and
digits, the Keras OCR example's set) and henan_digits (7453 / 2000 university login captchas, 4 digits,
labels.tsv). Each trains a fixed number of epochs with the settings below; its test split is evaluated
after every epoch for the log only (TARGET_ACCURACY is off, so it never stops or selects anything), and the
figure reported is the last epoch's checkpoint run through test.py. Runs, logs, and every wrong prediction
(wrong.tsv, and wrong.png: the images captioned with label and prediction, to audit the labels) go to
bench_real/<set>/.
"""
import os
import re
import subprocess
import sys
import time

import config

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = "bench_real"

# per set: the goal (sequence accuracy on its test split) and the train.py options that reach it
SETS = {
    "captcha_images_v2": dict(goal=0.98, options=dict(
        charset="infer", length=0, image_width=200, image_height=50, channels=1,
        model="cnn_ctc", sequence="gru", hidden=128, epochs=150, batch_size=32, lr=3e-3,
        augment=1.0, perspective=0.5, blur=0.2, noise=0.03, contrast=0.5)),
    "henan_digits": dict(goal=0.995, options=dict(
        charset="infer", length=0, image_width=96, image_height=40, channels=3,
        model="cnn_ctc", sequence="none", epochs=12, batch_size=64, lr=3e-3,
        augment=0.5, contrast=0.5)),
}


def run(cmd, log):
    """Run a project script with its output going to `log` as it comes (tail -f it); returns the output."""
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with open(log) as f:
        text = f.read()
    if p.returncode:
        sys.exit(f"error: {cmd[0]} failed (exit {p.returncode}); see {log}:\n{text[-2000:]}")
    return text


def bench(name, root, overrides):
    spec = SETS[name]
    folder = os.path.join(root, name)
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    for old in (f"{out}/results.txt", f"{out}/{name}_last.pt", f"{out}/{name}_best.pt"):  # a fresh run each time
        if os.path.exists(old):
            os.remove(old)
    options = {**spec["options"], **overrides}
    paths = dict(train_dir=f"{folder}/train", test_dir=f"{folder}/test", cache_dir=f"{out}/cache",
                 weights_dir=out, results=f"{out}/results.txt", run=name, target_accuracy=2.0, show=0)
    args = [f"--{k}={v}" for k, v in {**paths, **options}.items()]
    print(f"{name}: python train.py {' '.join(args)}\n  (log: {out}/train.log)", flush=True)
    start = time.time()
    run(["train.py", *args], f"{out}/train.log")
    seconds = time.time() - start
    test_args = [f"--test_dir={folder}/test", f"--cache_dir={out}/cache", "--show=10", f"--sheet={out}/wrong.png",
                 f"--wrong={out}/wrong.tsv"]
    text = run(["test.py", f"{out}/{name}_last.pt", *test_args], f"{out}/test.log")
    m = re.search(r"sequence accuracy ([\d.]+) \((\d+)/(\d+)\), character accuracy ([\d.]+)", text)
    print(text, flush=True)
    return dict(set=name, model=options["model"], epochs=options["epochs"], seconds=seconds, seq=float(m[1]),
                right=int(m[2]), n=int(m[3]), char=float(m[4]), goal=spec["goal"])


def main():
    _, opts = config.parse(sets=",".join(SETS), root=os.path.join("..", "shared", "datasets"))
    names = [s for s in opts["sets"].split(",") if s]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        raise config.ConfigError(f"unknown set {', '.join(unknown)}; known: {', '.join(SETS)}")
    missing = [s for s in names if not os.path.isdir(os.path.join(opts["root"], s, "train"))]
    if missing:
        raise config.ConfigError(f"{', '.join(missing)} not found under {opts['root']} (give --root=...)")
    # options given on the command line go to every train.py (e.g. --epochs=5 --threads=1)
    overrides = {}
    for arg in sys.argv[1:]:
        key, _, value = arg[2:].partition("=")
        if key.lower() not in ("sets", "root"):
            overrides[key.lower()] = value
    rows = [bench(name, opts["root"], overrides) for name in names]
    print("| set | model | epochs | train time | test images | sequence accuracy | character accuracy | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['model']} | {r['epochs']} | {r['seconds'] / 60:.1f} min | {r['n']} | "
              f"{r['seq']:.2%} ({r['right']}/{r['n']}) | {r['char']:.2%} | {r['goal']:.1%} "
              f"{'met' if r['seq'] >= r['goal'] else 'NOT met'} |")


if __name__ == "__main__":
    try:
        main()
    except config.ConfigError as e:
        sys.exit(f"error: {e}")
