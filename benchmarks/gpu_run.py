"""One run on one GPU that measures what only a GPU can, printed as one summary whose parts appear as soon as
they are known (a run cut short still reports what it measured):

    make wheels                                          # once, with network: the captcha wheel travels in wheels/
    python benchmarks/gpu_run.py --out=gpu_run           # or `make gpu-run`: about 7 minutes, one GPU, 16 cores
    python benchmarks/gpu_run.py --smoke=1 --out=/tmp/s  # the same script on the CPU at a tiny scale (a minute)

1. environment: the GPU, torch / torchvision / Python / captcha versions, the CPU and its cores, the date;
2. generation: captchas rendered per second in memory (fresh.render_chunk) by 1, 2, 4, 8 ... processes and by
   one per core, and how far each count falls short of that many times one process;
3. bench: benchmarks/bench.py's full-pipeline / model-only ratio (1.0: the data path costs nothing) for the
   default model (cnn_ctc, no sequence model), for resnet18, and for the recipe's model fed as it trains
   (ONLINE, with --recipe's settings: the rate the training is planned on), with the peak GPU memory of each;
4. recipe: `train.py --online=1` with --recipe's settings trains cnn_ctc on fresh captchas rendered by every core
   but one while the GPU trains, for the time the budget leaves, from nothing: the time until validation reads
   >= 99 %, then the kept checkpoint's accuracy on 10 000 fresh captchas of seed 99 (no training renders it; it is
   the set `make pretrained-model` writes as dataset/fresh10k), with weights/default.pt read on the same captchas
   beside it. The recipe (RECIPE): channels twice as wide (WIDEN=2), batch 256, and ONLINE_REPLAY, so that the
   GPU trains at its own speed on the captchas the generators render instead of waiting for them;
   --recipe="" is the plain recipe of before (cnn_ctc as shipped, batch 128, every step waits for fresh ones);
5. resnet18 with torch.compile in bench.py, when the budget leaves a minute for it.

OUT receives summary.txt (what is printed), summary.json (rewritten after each part), train.log, results.txt,
results.png and the trained checkpoint (<run>_best.pt). Any other --NAME=value (config.py) applies to the bench
and to the training run; --train_args="--lr=2e-3 --batch_size=256" goes to the training run alone, last.

Where `import captcha` fails (a machine without network), the wheel in wheels/ is installed into
wheels/site first: `make wheels` puts it there (pip download captcha==0.7.1).
"""
import datetime
import gc
import glob
import json
import os
import platform
import re
import shlex
import string
import subprocess
import sys
import threading
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import numpy as np  # noqa: E402
import torch  # noqa: E402

import config  # noqa: E402
from core import cli  # noqa: E402
from core import fresh  # noqa: E402
from core.checkpoint import CheckpointError, DEFAULT_CHECKPOINT  # noqa: E402
from core.device import cpu_count, pick_device, set_threads  # noqa: E402
from core.files import atomic_write  # noqa: E402
from core.inference import Predictor  # noqa: E402
from core.metrics import accuracy, confusions  # noqa: E402
from core.plan import Settings, plan_batch  # noqa: E402
from benchmarks import bench  # noqa: E402

WHEELS = os.path.join(ROOT, "wheels")
CAPTCHA_WHEEL = "captcha==0.7.1"  # the version requirements.txt pins
# the seed's task: 4 characters from 0-9A-Z on 160x60 ImageCaptcha images
TASK = dict(charset=string.digits + string.ascii_uppercase, length=4, width=160, height=60, channels=1)
RECIPE_MODEL = ["--model=cnn_ctc", "--sequence=none"]  # the default model, named in full
RECIPE = "--widen=2 --batch_size=256 --online_replay=3000000"  # --recipe's default (the docstring's point 4)
BENCH_MODELS = {"cnn_ctc (default)": RECIPE_MODEL, "resnet18": ["--model=resnet18"]}
TARGET = 0.99             # the recipe's first mark: validation sequence accuracy
FINAL_SEED = 99           # captchas no training renders (ONLINE renders string seeds "online<SEED>.<epoch>")
REPLAY_SAFETY = 0.95      # the same with ONLINE_REPLAY, planned on the bench's fed rate of the recipe (evaluation
                          # and checkpoints are not in it)
SAFETY = 0.9              # share of the estimated images/s the training schedule plans on (an epoch that would
                          # pass TIME_LIMIT cuts the one-cycle schedule before its low-LR end); on an H100 with
                          # 16 cores training ran at 1.04-1.28 x the estimate (BENCHMARKS.md, GPU figures)
EPOCH_SECONDS = 15        # about this long per epoch: the resolution of the time to TARGET

# per scale: images per process for the generation rate, bench batch / seconds / warm-up steps, captchas in the
# final test, and the time kept for the final test and the end of train.py
SCALES = {
    "gpu": dict(gen_images=400, bench_batch=256, bench_seconds=5.0, warmup=5, final=10_000, reserve=60),
    "smoke": dict(gen_images=50, bench_batch=4, bench_seconds=0.3, warmup=1, final=200, reserve=20),
}
SMOKE_TRAIN = ["--online_count=128", "--epochs=2", "--batch_size=32", "--online_test=100", "--online_workers=1",
               "--threads=1"]


class Summary:
    """Prints each line at once (flushed) and keeps it in OUT/summary.txt; summary.json is rewritten per part."""

    def __init__(self, out):
        self.out, self.data, self.start = out, {}, time.time()

    def say(self, text=""):
        print(text, flush=True)
        with open(os.path.join(self.out, "summary.txt"), "a") as f:
            f.write(text + "\n")

    def part(self, number, title):
        self.say(f"== {number} {title} ({time.time() - self.start:.0f} s) ==")

    def record(self, key, value):
        self.data[key] = value
        self.data["seconds"] = round(time.time() - self.start, 1)
        atomic_write(os.path.join(self.out, "summary.json"), json.dumps(self.data, indent=1) + "\n", "w")


# --- the captcha package on a machine without network ------------------------------------------------------

def ensure_wheel(module="captcha", requirement=CAPTCHA_WHEEL, wheels=WHEELS):
    """Import `module`; where it is missing, install `requirement` from the wheels in `wheels` into wheels/site
    (pip, offline; where pip fails, the pure-Python wheel unzipped) and put that folder on sys.path and on
    PYTHONPATH (for train.py). Returns how the module came to be there."""
    try:
        __import__(module)
        return "already installed"
    except ImportError:
        pass
    found = sorted(glob.glob(os.path.join(wheels, f"{module}-*.whl")))
    if not found:
        raise SystemExit(f"error: the {module} package is missing and {wheels} holds no {module} wheel: run "
                         f"`make wheels` where the network is, and bring wheels/ along")
    site = os.path.join(wheels, "site")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                          "--disable-pip-version-check", "--find-links", wheels, "--target", site, requirement],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    how = f"pip installed {os.path.basename(found[-1])} into {site}"
    if pip.returncode:  # a wheel of pure Python is a zip of the package and its metadata
        with zipfile.ZipFile(found[-1]) as z:
            z.extractall(site)
        how = f"{os.path.basename(found[-1])} unzipped into {site} (pip: {pip.stdout.strip()[-200:]})"
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    __import__(module)
    return how


# --- parts -------------------------------------------------------------------------------------------------

def environment(device, captcha_how):
    import importlib.metadata
    try:
        import torchvision
        vision = torchvision.__version__
    except ImportError:
        vision = "not installed"

    env = dict(torch=torch.__version__, torchvision=vision, python=platform.python_version(),
               captcha=importlib.metadata.version("captcha"), captcha_from=captcha_how, cpu=bench.cpu_name(),
               cores=cpu_count(), date=datetime.datetime.now(datetime.timezone.utc).strftime(
                   "%Y-%m-%d %H:%M UTC"), command=shlex.join(["python", *sys.argv]))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda)
    else:
        env["gpu"] = "none (CPU)"
    return env


def generation(cores, per_process):
    counts = sorted({1, cores} | {2 ** k for k in range(1, 8) if 2 ** k < cores})
    rates = bench.generation_rates(counts, per_process, seed="gpu-run")
    one, every = rates[1][0], rates[cores][0]
    return dict(processes=cores, images_per_s=round(every), one_process=round(one),
                scaling=round(every / (cores * one), 3),
                by_processes={p: dict(images_per_s=round(r), scaling=round(r / (p * one), 3))
                              for p, (r, _) in rates.items()})


def with_args(settings, args):
    """`settings` with the `--NAME=value` settings of `args` applied (config.py's parsing; config is not written)."""
    valid = {n.lower(): n for n in config.names()}
    changes = {}
    for arg in args:
        key, sep, raw = arg[2:].partition("=")
        name = valid.get(key.lower().replace("-", "_"))
        if not arg.startswith("--") or not sep or not name:
            raise config.ConfigError(f"{arg}: not a --NAME=value setting")
        changes[name] = config.coerce(name, raw, getattr(settings, name))
    return settings.replace(**changes)


def bench_model(args, device, scale, settings):
    """bench.measure for the model of `args` (over `settings`), on a set rendered in memory (as ONLINE renders
    it)."""
    # no folder: bench renders its set in memory
    settings = with_args(settings, args + [f"--batch_size={scale['bench_batch']}"]).replace(TRAIN_DIR="")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        r = bench.measure(settings, device, scale["bench_seconds"], scale["warmup"], say=lambda *a, **k: None)
    finally:
        gc.collect()
    return bench_figures(r)


def bench_figures(r):
    """bench.measure's result `r` as a summary records it."""
    return dict(model_images_per_s=round(r["model"]), pipeline_images_per_s=round(r["pipeline"]),
                ratio=round(r["ratio"], 3), peak_gib=round(r["peak_bytes"] / 2**30, 2), peak=r["peak"],
                parameters=r["parameters"], batch=r["batch_size"], pipeline=r["pipeline_origin"])


def plan_recipe(seconds, images_per_s, batch_size, safety=SAFETY):
    """(epochs, images per epoch) so that the whole one-cycle schedule fits `seconds` at safety x images_per_s,
    in epochs of about EPOCH_SECONDS."""
    epochs = max(2, min(40, round(seconds / EPOCH_SECONDS)))
    per_epoch = int(safety * images_per_s * seconds / epochs) // batch_size * batch_size
    return epochs, max(batch_size, per_epoch)


def train_command(out, args):
    """The recipe's train.py command line (run in the repository root); `args` come last and win."""
    return [sys.executable, "train.py", *RECIPE_MODEL, "--online=1",
            f"--charset={TASK['charset']}", f"--length={TASK['length']}", f"--image_width={TASK['width']}",
            f"--image_height={TASK['height']}", f"--channels={TASK['channels']}", "--patience=-1", "--show=4",
            # ONLINE reads no TRAIN_DIR; naming OUT keeps a dataset/test beside dataset/train from being tested on
            f"--train_dir={out}", "--run=gpu_cnn_ctc", f"--weights_dir={out}",
            f"--results={os.path.join(out, 'results.txt')}", *args]


EPOCH_LINE = re.compile(r"^epoch (\d+)(?:/\d+)?: .*?seq acc ([\d.]+)")


def train_run(cmd, log_path, hard_seconds, on_epoch):
    """Run train.py with its output to log_path; on_epoch(epoch, validation accuracy, seconds since start) at each
    epoch line; killed after hard_seconds. Returns (exit code, seconds)."""
    start = time.time()
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        watchdog = threading.Timer(hard_seconds, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                m = EPOCH_LINE.match(line.split("\r")[-1])
                if m:
                    on_epoch(int(m[1]), float(m[2]), time.time() - start)
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, time.time() - start


def fresh_captchas(count, seed, processes):
    """(uint8 (N, H, W, C) colour images at the task's size, labels): captchas `seed`-0 .. of the task."""
    images, texts = fresh.render_set(seed, count, TASK["charset"], TASK["length"], TASK["width"], TASK["height"],
                                      3, processes=processes)
    return images.transpose(0, 2, 3, 1), texts


def read_fresh(path, images, texts, device):
    """{accuracy, char_accuracy, o0_errors, errors} of a checkpoint on the fresh captchas."""
    from PIL import Image

    predictor = Predictor(path, device)
    preds = []
    for i in range(0, len(images), 1000):
        batch = np.stack([predictor.load(Image.fromarray(im)) for im in images[i:i + 1000]])  # its size, channels
        preds += predictor.predict_arrays(batch)[0]
    char_acc, seq_acc = accuracy(texts, preds)
    pairs = confusions(texts, preds)
    return dict(accuracy=seq_acc, char_accuracy=round(char_acc, 5), errors=sum(t != p for t, p in zip(texts, preds)),
                o0_errors=pairs[("O", "0")] + pairs[("0", "O")])


# --- the four parts, as printed ------------------------------------------------------------------------------

def part_environment(s, device):
    s.part(1, "environment")
    how = ensure_wheel()
    env = environment(device, how)
    s.record("environment", env)
    gpu = env["gpu"] + (f", {env['gpu_memory_gib']} GiB, CUDA {env['cuda']}" if device.type == "cuda" else "")
    s.say(f"GPU:      {gpu}")
    s.say(f"software: torch {env['torch']}, torchvision {env['torchvision']}, Python {env['python']}, "
          f"captcha {env['captcha']} ({how})")
    s.say(f"CPU:      {env['cpu']}, {env['cores']} cores; {env['date']}")
    s.say(f"command:  {env['command']}")


def part_generation(s, cores, scale):
    """The generation rates, or None when they could not be measured (the run goes on)."""
    s.part(2, "captcha generation")
    try:
        gen = generation(cores, scale["gen_images"])
    except Exception as e:  # a part that fails is reported, and the next one runs
        s.say(f"FAILED: {type(e).__name__}: {e}")
        return None
    s.record("generation", gen)
    s.say(f"{gen['images_per_s']} captchas/s with {cores} processes ({gen['one_process']} with one: scaling "
          f"{gen['scaling']:.2f} of {cores} x one); {TASK['width']}x{TASK['height']}, in memory, "
          f"{scale['gen_images']} per process")
    s.say("by processes: " + ", ".join(f"{p}: {r['images_per_s']} ({r['scaling']:.2f})"
                                       for p, r in gen["by_processes"].items()))
    return gen


def part_bench(s, device, scale, settings, recipe):
    """{model: bench figures} of the models that could be measured; "recipe" (when --recipe is not empty): the
    recipe's model fed as it trains, by the ONLINE generators."""
    s.part(3, "bench: full pipeline / model only")
    benches = {}
    models = dict(BENCH_MODELS, **({"recipe": RECIPE_MODEL + recipe + ["--online=1"]} if recipe else {}))
    for name, args in models.items():
        try:
            r = bench_model(args, device, scale, settings)
        except Exception as e:
            s.say(f"{name}: FAILED: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            continue
        benches[name] = r
        s.record("bench", benches)
        shown = f"{name} ({' '.join(args[len(RECIPE_MODEL):])})" if name == "recipe" else name
        s.say(f"{shown}: ratio {r['ratio']:.3f} (pipeline {r['pipeline_images_per_s']} / model only "
              f"{r['model_images_per_s']} img/s, batch {r['batch']}, {r['parameters'] / 1e6:.2f} M parameters), "
              f"peak memory {r['peak_gib']:.2f} GiB ({r['peak']})")
    return benches


def part_recipe(s, device, scale, cores, recipe, train_args, seconds, images_per_s, settings):
    """Train, then read the kept checkpoint on fresh captchas; True when both went through."""
    s.part(4, "recipe: cnn_ctc on fresh captchas (train.py --online=1)")
    out = s.out
    planned_settings = with_args(settings, recipe)
    replay = planned_settings.ONLINE_REPLAY > 0
    epochs, per_epoch = plan_recipe(seconds, images_per_s, plan_batch(planned_settings, None),
                                    REPLAY_SAFETY if replay else SAFETY)
    if scale is SCALES["smoke"]:
        planned = SMOKE_TRAIN
        s.say(f"plan: smoke scale ({' '.join(SMOKE_TRAIN)})")
    else:
        planned = [f"--epochs={epochs}", f"--online_count={per_epoch}", f"--time_limit={int(seconds)}"]
        rate = ("the recipe's bench, fed by the generators, replaying" if replay else
                f"the slower of generation on {cores - 1} cores and the model alone")
        s.say(f"plan: {seconds:.0f} s of training at about {REPLAY_SAFETY if replay else SAFETY:.0%} of "
              f"{images_per_s:.0f} img/s ({rate}): {epochs} epochs of {per_epoch} "
              + ("captchas, fresh or replayed" if replay else "fresh captchas"))
    cmd = train_command(out, recipe + planned + train_args)
    shown = shlex.join(["python", *cmd[1:]])
    s.say(f"$ {shown}")
    recipe = dict(command=shown, planned_seconds=round(seconds), epochs=[])

    def on_epoch(epoch, accuracy, at):
        recipe["epochs"].append(dict(epoch=epoch, validation=accuracy, seconds=round(at, 1)))
        first = accuracy >= TARGET and "target_seconds" not in recipe
        if first:
            recipe.update(target_seconds=round(at, 1), target_epoch=epoch)
        s.say(f"  epoch {epoch}: validation {accuracy:.4f} at {at:.0f} s" + (f"  <- >= {TARGET:.0%}" if first else ""))
        s.record("recipe", recipe)

    started = time.time()
    code, took = train_run(cmd, os.path.join(out, "train.log"), seconds + scale["reserve"], on_epoch)
    recipe.update(exit_code=code, train_seconds=round(took, 1))
    if code:
        with open(os.path.join(out, "train.log")) as f:
            s.say(f"train.py exited {code}; the end of {out}/train.log:\n" + "".join(f.readlines()[-15:]).rstrip())
    if "target_seconds" in recipe:
        s.say(f">= {TARGET:.0%} validation after {recipe['target_seconds']:.0f} s from nothing (epoch "
              f"{recipe['target_epoch']}, generation included)")
    else:
        best = max((e["validation"] for e in recipe["epochs"]), default=0.0)
        s.say(f">= {TARGET:.0%}: not reached in {took:.0f} s (best validation {best:.4f})")
    s.record("recipe", recipe)
    for last in glob.glob(os.path.join(out, "*_last.pt")):  # optimizer state for --resume: not worth collecting
        os.remove(last)
    found = sorted(glob.glob(os.path.join(out, "*_best.pt")), key=os.path.getmtime)
    if not found:
        s.say(f"final: no checkpoint in {out} (train.py exited {code})")
        return False
    checkpoint = found[-1]
    images, texts = fresh_captchas(scale["final"], FINAL_SEED, cores)
    final = read_fresh(checkpoint, images, texts, device)
    recipe.update(checkpoint=os.path.basename(checkpoint), final=final, final_seconds=round(time.time() - started, 1))
    s.say(f"final: {final['accuracy']:.4f} on {len(texts)} fresh captchas (seed {FINAL_SEED}): {final['errors']} "
          f"wrong, {final['o0_errors']} of them O/0 swaps, character accuracy {final['char_accuracy']}; "
          f"{recipe['final_seconds']:.0f} s from nothing; {checkpoint}")
    shipped = os.path.join(ROOT, "weights", DEFAULT_CHECKPOINT)
    if os.path.exists(shipped):
        try:
            recipe["default_pt"] = ref = read_fresh(shipped, images, texts, device)
            s.say(f"       weights/default.pt on the same captchas: {ref['accuracy']:.4f}, {ref['o0_errors']} O/0 "
                  f"swaps")
        except (CheckpointError, KeyError, ValueError) as e:
            s.say(f"       weights/default.pt: not comparable ({e})")
    s.record("recipe", recipe)
    return not code


COMPILE_SECONDS = 75  # kept from the budget for part 5 (compiling resnet18 takes most of it)


def part_compile(s, device, scale, settings):
    """resnet18 with torch.compile: bench.py's ratio, the row BENCHMARKS still lists to measure."""
    s.part(5, "bench: resnet18 with torch.compile")
    if device.type != "cuda":
        s.say("skipped on the CPU (compiling takes minutes there)")
        return
    try:
        r = bench_model(BENCH_MODELS["resnet18"] + ["--compile=1"], device, scale, settings)
    except Exception as e:  # the last part: what failed is reported, the rest stands
        s.say(f"resnet18 compiled: FAILED: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return
    s.record("compile", r)
    s.say(f"resnet18 compiled: ratio {r['ratio']:.3f} (pipeline {r['pipeline_images_per_s']} / model only "
          f"{r['model_images_per_s']} img/s, batch {r['batch']}), peak memory {r['peak_gib']:.2f} GiB")


def begin(script, scales):
    """The start of a GPU script whose own options are `script` (defaults): (opts, the config.py --NAME=value
    settings passed, which apply to the bench in this process and to train.py, the scale of `scales`, the
    settings, the device, the Summary in --out, the cores). Refuses a machine without a GPU unless --smoke=1,
    and an --out that holds an earlier run's files."""
    _, opts = config.parse(**script)
    out, smoke = os.path.abspath(opts["out"]), opts["smoke"]
    passed = [a for a in sys.argv[1:] if a[2:].partition("=")[0].lower().replace("-", "_") not in script]
    scale = scales["smoke" if smoke else "gpu"]
    settings = Settings()
    if smoke:
        settings = settings.replace(DEVICE="cpu")
        passed.append("--device=cpu")
    set_threads(settings.THREADS or (1 if smoke else 0))
    device = pick_device(settings.DEVICE)
    if device.type != "cuda" and not smoke:
        raise config.ConfigError("no GPU here (torch.cuda.is_available() is False): --smoke=1 runs the CPU check")
    if os.path.isdir(out) and os.listdir(out):
        raise config.ConfigError(f"--out={out} holds files of an earlier run: name another folder")
    os.makedirs(out, exist_ok=True)
    return opts, passed, scale, settings, device, Summary(out), cpu_count()


def main():
    script = dict(out="gpu_run", smoke=False, budget=420.0, train_args="", recipe=RECIPE, compile_bench=True)
    opts, passed, scale, settings, device, s, cores = begin(script, SCALES)
    out = s.out

    recipe = shlex.split(opts["recipe"])
    part_environment(s, device)
    gen = part_generation(s, cores, scale)
    benches = part_bench(s, device, scale, settings, recipe)
    # the training plan: with ONLINE_REPLAY the recipe's fed rate (it never waits for the generators); else the
    # slower of the generators (every core but the trainer's) and the model alone
    if "recipe" in benches and with_args(settings, recipe).ONLINE_REPLAY:
        rates = [benches["recipe"]["pipeline_images_per_s"]]
    else:
        rates = [gen["images_per_s"] * (cores - 1) / cores] if gen and cores > 1 else []
        rates += [r["model_images_per_s"] for name, r in benches.items()
                  if name == "recipe" or not recipe and BENCH_MODELS.get(name) == RECIPE_MODEL]
    compile_seconds = COMPILE_SECONDS if opts["compile_bench"] and device.type == "cuda" else 0
    seconds = max(10.0, opts["budget"] - (time.time() - s.start) - scale["reserve"] - compile_seconds)
    ok = part_recipe(s, device, scale, cores, recipe, passed + shlex.split(opts["train_args"]), seconds,
                     min(rates) if rates else 1000.0, settings)
    if opts["compile_bench"]:
        part_compile(s, device, scale, settings)
    s.say(f"== done in {time.time() - s.start:.0f} s: {', '.join(sorted(os.listdir(out)))} in {out} ==")
    return 0 if ok else 1


if __name__ == "__main__":
    cli.run(main)
