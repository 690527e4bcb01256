"""A real set trained with all its labels on one GPU, the one own-data command given as many training images as a
time budget allows (a style of many fonts and colours learns slowly: colour_lines read 30.98 % after the
default 400 000 images on a CPU, its training loss still falling), printed as one summary:

    python benchmarks/pack_set.py real_sets/colour_lines --out=real_sets/packed/colour_lines  # here: 42 MiB
    make wheels                                                  # here: the captcha wheel, for the environment
    python benchmarks/gpu_real.py --set=real_sets/packed/colour_lines --out=gpu_real      # there, ~8 minutes
    python benchmarks/gpu_real.py --set=FOLDER --smoke=1 --out=/tmp/s                    # on the CPU, tiny

1. environment: the GPU, versions, the CPU and its cores, the date;
2. bench: benchmarks/bench.py's fed training rate of the command's model on the set's training images (held on
   the device, as train.py holds them);
3. training: benchmarks/bench_suite.py's all-label point, `train.py --train_dir=<set>/train
   --images_seen=N`, N planned to fill the time the budget leaves at SAFETY x that rate (train.py keeps
   MAX_EPOCHS: at most 300 passes), then `test.py` reads `<set>/test` once on the kept checkpoint.

`<set>` holds train/ and test/ (a folder of `benchmarks/real_sets.py`, or one packed by `benchmarks/pack_set.py`
to carry it: lossless WebP, the same pixels at the size train.py infers). OUT receives summary.txt,
summary.json, train.log, test.log, point.json and the kept checkpoint. Any other --NAME=value (config.py) goes to
the bench and to train.py (`--sequence=lstm`, `--widen=2`, `--init=...`).
"""
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from benchmarks import bench, bench_suite, gpu_run  # noqa: E402
from core import cli  # noqa: E402

SAFETY = 0.8  # share of the bench's rate the plan counts on: each epoch also validates and saves a checkpoint
SMOKE_LIMIT = 200  # --smoke=1 trains on a sample of this many of the set's images (a real set's 10 passes take long)
SCALES = {
    "gpu": dict(bench_seconds=5.0, warmup=5, reserve=45),
    "smoke": dict(bench_seconds=0.3, warmup=1, reserve=5),
}


def part_bench(s, device, scale, settings):
    s.part(2, "bench")
    result = gpu_run.bench_figures(bench.measure(settings, device, scale["bench_seconds"], scale["warmup"],
                                                 say=lambda *a, **k: None))
    s.record("bench", result)
    s.say(f"{settings.MODEL}, {result['parameters'] / 1e6:.2f} M parameters, batch {result['batch']}: "
          f"{result['pipeline_images_per_s']} img/s fed from {result['pipeline']} "
          f"(model only {result['model_images_per_s']}, ratio {result['ratio']})")
    return result["pipeline_images_per_s"]


def part_training(s, folder, seconds, rate, passed, smoke):
    s.part(3, "training")
    images = max(1000, int(SAFETY * rate * seconds)) if not smoke else 200
    work = tempfile.mkdtemp(prefix="gpu_real-")
    bench_suite.OUT = work  # the point's folders and the decoded-image cache
    name = os.path.basename(os.path.normpath(folder))
    extra = [f"--images_seen={images}", *passed] + (["--threads=1", f"--limit={SMOKE_LIMIT}"] if smoke else [])
    why = " (smoke)" if smoke else f" in {seconds:.0f} s at {SAFETY} x {rate} img/s"
    s.say(f"plan: {images} training images{why}; "
          f"python train.py --train_dir={folder}/train {' '.join(extra)}")
    start = time.time()
    try:
        point = bench_suite.run_point(name, folder, "all", extra)
        logs = [f for f in os.listdir(os.path.join(work, name)) if f.startswith("nall")]
        where = os.path.join(work, name, logs[0]) if logs else work
        for f in sorted(os.listdir(where)) if os.path.isdir(where) else []:
            if f in ("train.log", "test.log", "point.json") or f.endswith("_best.pt"):
                shutil.copy(os.path.join(where, f), s.out)
    finally:  # the decoded images' cache and the links: nothing of it is kept
        shutil.rmtree(work, ignore_errors=True)
    if point is None:
        s.say(f"the point failed: {', '.join(sorted(os.listdir(s.out)))} in {s.out}")
        return False
    s.record("point", point)
    s.say(f"test: {point['test_seq']:.2%} ({point['test_right']}/{point['test_images'].split()[0]}), character "
          f"{point['test_char']:.2%}; with TTA (test.py's default reading) {point['tta_seq']:.2%} "
          f"({point['tta_right']}); kept epoch {point['epoch']}; {time.time() - start:.0f} s")
    return True


def main():
    script = dict(out="gpu_real", smoke=False, budget=480.0, set="")
    opts, passed, scale, settings, device, s, cores = gpu_run.begin(script, SCALES)
    folder = os.path.abspath(opts["set"]) if opts["set"] else ""
    if not folder or not all(os.path.isdir(os.path.join(folder, p)) for p in ("train", "test")):
        raise config.ConfigError(f"--set={opts['set']}: name a folder holding train/ and test/ (benchmarks/"
                                 f"pack_set.py packs a real set to carry it)")
    from PIL import features
    if not features.check("webp") and any(f.endswith(".webp") for f in os.listdir(os.path.join(folder, "train"))):
        raise config.ConfigError(f"{folder} holds WebP images (benchmarks/pack_set.py) and this Pillow reads no WebP")
    gpu_run.part_environment(s, device)
    settings = gpu_run.with_args(settings, passed).replace(TRAIN_DIR=os.path.join(folder, "train"),
                                                           CACHE_DIR="")
    rate = part_bench(s, device, scale, settings)
    seconds = max(10.0, opts["budget"] - (time.time() - s.start) - scale["reserve"])
    ok = part_training(s, folder, seconds, rate, passed, opts["smoke"])
    s.say(f"== done in {time.time() - s.start:.0f} s: {', '.join(sorted(os.listdir(s.out)))} in {s.out} ==")
    return 0 if ok else 1


if __name__ == "__main__":
    cli.run(main)
