"""Train every model of a list on the same data, budget and seed, one after another, and compare them:
COMPARE_DIR/comparison.md, comparison.csv and comparison.png.

    python compare.py                                    # the "quick" preset: a CPU look
    python compare.py --compare_preset=full              # every registered model, a GPU budget
    python compare.py --compare_models="cnn,crnn,resnet18 --ibn=1" --compare_epochs=5
    python compare.py --ablation=1                       # resnet18 + each trick, COMPARE_SEEDS seeds each
    python compare.py --dry_run=1                        # the plan and its train.py commands, nothing run

Each entry is its own `train.py` process, its output in COMPARE_DIR/<entry>/log.txt, so a failure (out of
memory, a bug) is recorded and the sweep goes on. A finished entry is skipped when the command is run again;
a failed or interrupted one is trained again from the start (--retry_failed=0 keeps recorded failures).
Any other --NAME=value (--train_dir, --batch_size, --device, --threads, --bnneck=1, ...) goes to every entry.

The file has three parts: planning (the entries and their train.py command lines), running (one train.py
process per entry, then its measurements: done.json / failed.json), and reporting (the rows, tables and
figures, read back from each entry's folder alone, so a report can be written again without training).
"""
import ast
import csv
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

import config
from core import data
import models
from core.checkpoint import load_checkpoint, model_from_checkpoint
from core.device import pick_device, set_threads, timed_runs
from core.files import RESULT_COLUMNS, atomic_write, read_results

ROOT = os.path.dirname(os.path.abspath(__file__))

# The preset's models and epochs, unless COMPARE_MODELS / COMPARE_EPOCHS say otherwise.
PRESETS = {
    # light models that learn something on a CPU: ~15-20 min with 2 cores on 10k 160x60 captchas
    "quick": dict(models=("cnn", "cnn_ctc --sequence=none", "cnn_ctc --sequence=lstm",
                          "mobilenet_v3_small_ctc --sequence=lstm"), epochs=3),
    # every registered model (fixed and CTC head), long enough to converge on 30k captchas
    "full": dict(models=tuple(models.MODELS), epochs=20),
}

# --ablation=1: (name, label, options added to the base model). "all" is every other one that applies, CBAM
# for the attention. A model that takes NECK (a fixed head) needs that per-character feature for the center
# loss; a CTC head's columns are one already.
ABLATION = [
    ("baseline", "baseline", {}),
    ("ibn", "+ IBN-a", {"IBN": True}),
    ("cbam", "+ CBAM", {"ATTENTION": "cbam"}),
    ("se", "+ SE", {"ATTENTION": "se"}),
    ("dual", "+ dual pooling", {"POOL": "dual"}),
    ("bnneck", "+ BNNeck", {"BNNECK": True}),
    ("center", "+ center loss", {"CENTER_LOSS": 0.01}),
    ("ls", "+ label smoothing", {"LABEL_SMOOTHING": 0.1}),
    ("all", "all together", None),
]
ABLATION_MODEL = "resnet18"  # unless COMPARE_MODELS names one
CENTER_NECK = 128            # NECK the center loss gets on a model that takes one

# set per entry by compare.py: a user override of these would be silently replaced, so it is refused
PER_ENTRY = {"MODEL": "--compare_models", "EPOCHS": "--compare_epochs", "TIME_LIMIT": "--compare_seconds",
             "RUN": None, "RESULTS": None, "WEIGHTS_DIR": None, "INIT": None}
TAIL_LINES = 15          # lines of a failed entry's log kept in failed.json
LATENCY_RUNS = 50        # latency: median of at most this many single-image passes ...
MEASURE_SECONDS = 2.0    # ... or as many as fit in this time (5 at least); the same time for throughput
THROUGHPUT_RUNS = 20     # throughput: at most this many batches of the entry's batch size (2 at least)
MEASURE_BATCH = 128      # the throughput's batch size where the checkpoint does not record the one it trained with

COLUMNS = ["entry", "model", "head", "tricks", "status", "parameters", "epochs", "train_seconds",
           "train_images_per_s", "best_seq_acc", "best_char_acc", "test_seq_acc", "test_char_acc", "best_epoch",
           "input", "batch", "cpu_latency_ms", "device", "device_latency_ms", "device_images_per_s", "wall_seconds",
           "error"]


@dataclass
class Entry:
    name: str                  # run name and folder name
    model: str
    options: dict              # config NAME -> value, on top of the user's overrides
    seed: int
    folder: str
    variant: str = ""          # ablation only
    args: list = field(default_factory=list)  # the train.py command line (after the script)

    def path(self, name):
        return os.path.join(self.folder, name)


# --- planning ------------------------------------------------------------------------------------------------

def split_entries(text):
    """'cnn,resnet18 --length=(4,6)' -> ['cnn', 'resnet18 --length=(4,6)']: commas inside brackets stay."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in parts + [current] if p.strip()]


def parse_spec(spec):
    """'resnet18 --ibn=1 --attention=cbam' -> ('resnet18', {'IBN': True, 'ATTENTION': 'cbam'})."""
    words = shlex.split(spec)
    model, options = words[0], {}
    valid = {n.lower(): n for n in config.names()}
    for word in words[1:]:
        key, sep, raw = word.lstrip("-").partition("=")
        name = valid.get(key.lower().replace("-", "_"))
        if not word.startswith("--") or not sep or not name:
            raise config.ConfigError(f"COMPARE_MODELS entry {spec!r}: {word!r} is not --NAME=value with NAME in "
                                     f"config.py")
        if name in PER_ENTRY or name.startswith("COMPARE_"):
            raise config.ConfigError(f"COMPARE_MODELS entry {spec!r}: {word} is set by compare.py")
        options[name] = config.coerce(name, raw, getattr(config, name))
    return model, options


def as_arg(name, value):
    if isinstance(value, bool):
        value = int(value)
    return f"--{name.lower()}={value}"


def entry_name(model, options):
    """The entry's run name: models.describe's name for the model and its model options (those changed from
    neutral), then every other option the entry sets: resnet18-ibn-cbam-lr0.001."""
    parts = [models.describe(model, {k.lower(): v for k, v in options.items() if k.lower() in models.OPTIONS})]
    for name, value in options.items():
        if name.lower() in models.OPTIONS:
            continue
        if isinstance(value, bool):
            parts.append(name.lower() if value else f"no{name.lower()}")
        else:
            parts.append(f"{name.lower()}{value:g}" if isinstance(value, float) else f"{name.lower()}{value}")
    return re.sub(r"[^\w.=+-]", "", "-".join(parts))


def user_overrides(argv, script_options):
    """The command line's --NAME=value for config names other than COMPARE_*: they go to every train.py."""
    passed = []
    for arg in argv:
        key = arg[2:].partition("=")[0].lower().replace("-", "_")
        if not arg.startswith("--") or key in script_options or key.startswith("compare_"):
            continue
        name = key.upper()
        if name in PER_ENTRY:
            hint = f"; use {PER_ENTRY[name]}" if PER_ENTRY[name] else ""
            raise config.ConfigError(f"--{key} is set by compare.py for each entry{hint}")
        passed.append(arg)
    return passed


def check_models(names):
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
        raise config.ConfigError(f"unknown model{'s' * (len(unknown) > 1)} in COMPARE_MODELS: {', '.join(unknown)}\n"
                                 f"registered: {', '.join(models.MODELS)}")


def check_options(model, options):
    """A ValueError (with the models that take it) when an option does not apply to the model."""
    models.model_options(model, {**config.as_dict(), **options})


def check_data():
    for what, folder in (("TRAIN_DIR", config.TRAIN_DIR), ("TEST_DIR", config.test_dir())):
        if what == "TRAIN_DIR" and config.ONLINE or not folder:
            continue  # ONLINE: fresh captchas each epoch, TRAIN_DIR is not read; no test folder: validation only
        problem = ("does not exist" if not os.path.isdir(folder) else
                   "is empty" if not any(os.scandir(folder)) else "")
        if problem:
            raise data.DataError(
                f"{what} {folder} {problem}. Generate captchas first, e.g.\n"
                f"  python captchaGenerator.py --split=train --count=10000 --seed=1\n"
                f"  python captchaGenerator.py --split=test --count=2000 --seed=2\n"
                f"or point --train_dir / --test_dir at your labelled images.")


def budget():
    preset = PRESETS[config.COMPARE_PRESET]
    return config.COMPARE_EPOCHS or preset["epochs"], config.COMPARE_SECONDS


def listed_entries():
    given = config.COMPARE_MODELS
    if isinstance(given, str) and given.strip().startswith(("(", "[")):  # ("cnn", "crnn"): a Python tuple
        try:
            given = ast.literal_eval(given)
        except (ValueError, SyntaxError):
            raise config.ConfigError(f"COMPARE_MODELS={given!r}: write names separated by commas, "
                                     f"e.g. \"cnn,crnn,resnet18 --ibn=1\"") from None
    specs = split_entries(given) if isinstance(given, str) else [str(s) for s in given]
    return [parse_spec(s) for s in specs] if specs else None


def plan_comparison():
    specs = listed_entries() or [parse_spec(m) for m in PRESETS[config.COMPARE_PRESET]["models"]]
    check_models([m for m, _ in specs])
    entries, problems = [], []
    for model, options in specs:
        try:
            check_options(model, options)
        except ValueError as e:
            problems.append(str(e))
        name = entry_name(model, options)
        entries.append(Entry(name, model, options, config.SEED, os.path.join(config.COMPARE_DIR, name)))
    if problems:
        raise config.ConfigError("\n".join(problems))
    return entries


def ablation_variants(model, base):
    """[(name, label, options)] of the ABLATION variants that apply to `model` and the ones left out."""
    variants, left_out = [], []
    for name, label, options in ABLATION[:-1]:
        options = dict(options)
        if name == "center" and "neck" in models.MODELS[model].options:
            options["NECK"] = CENTER_NECK
        try:
            check_options(model, {**base, **options})
            variants.append((name, label, options))
        except ValueError:
            left_out.append(name)
    together = {k: v for n, _, o in variants if n != "se" for k, v in o.items()}
    name, label, _ = ABLATION[-1]
    variants.append((name, label, together))
    return variants, left_out


def plan_ablation(selected):
    specs = listed_entries() or [(ABLATION_MODEL, {})]
    if len(specs) != 1:
        raise config.ConfigError(f"--ablation=1 takes one model (COMPARE_MODELS); got {len(specs)}")
    (model, base), = specs
    check_models([model])
    check_options(model, base)
    variants, left_out = ablation_variants(model, base)
    if left_out:
        print(f"left out of the ablation (options {model} does not take): {', '.join(left_out)}")
    if selected:
        names = [n for n, _, _ in ABLATION]
        wrong = [v for v in selected if v not in names]
        if wrong:
            raise config.ConfigError(f"--variants: unknown {', '.join(wrong)}; choose from {', '.join(names)}")
        if set(selected) & set(left_out):
            wrong = sorted(set(selected) & set(left_out))
            raise config.ConfigError(f"--variants: {', '.join(wrong)} does not apply to {model}")
        variants = [v for v in variants if v[0] in selected]
    if config.COMPARE_SEEDS < 1:
        raise config.ConfigError("COMPARE_SEEDS must be 1 or more")
    entries = []
    prefix = entry_name(model, base)
    for name, label, options in variants:
        for seed in range(config.SEED, config.SEED + config.COMPARE_SEEDS):
            run = f"{prefix}-{name}-s{seed}"
            # a trick's effect against the plain model: label smoothing only where the variant adds it (not by size)
            entries.append(Entry(run, model, {"LABEL_SMOOTHING": 0.0, **base, **options}, seed,
                                 os.path.join(config.COMPARE_DIR, "ablation", run), variant=name))
    return entries


def train_args(entry, epochs, seconds, overrides):
    """train.py's command line: the entry's model, run, seed and budget (every epoch: no early stop, unless the
    user's --patience says otherwise), the user's overrides, its options."""
    return ([f"--model={entry.model}", f"--run={entry.name}", f"--seed={entry.seed}", f"--epochs={epochs}", "--init=",
             f"--time_limit={seconds}", "--patience=-1", f"--results={entry.path('results.txt')}",
             f"--weights_dir={entry.folder}"] + overrides + [as_arg(k, v) for k, v in entry.options.items()])


# --- running -------------------------------------------------------------------------------------------------

def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=1), "w")


def finished(entry):
    """done.json, if the entry finished with the arguments planned now."""
    done = read_json(entry.path("done.json"))
    return done if done and done.get("args") == entry.args else None


def failed(entry):
    """failed.json, if the entry failed with the arguments planned now."""
    record = read_json(entry.path("failed.json"))
    return record if record and record.get("args") == entry.args else None


def epoch_rows(entry):
    path = entry.path("results.txt")
    if not os.path.exists(path):
        return []
    by_epoch = {int(r["epoch"]): r for r in read_results(path)  # a row being written is left out
                if r.get("run") == entry.name and all(r.get(c) for c in RESULT_COLUMNS)}
    return [by_epoch[e] for e in sorted(by_epoch)]


def log_tail(path, n=TAIL_LINES):
    """The last n lines of a log, progress-bar redraws (\\r) reduced to their final state."""
    with open(path, errors="replace") as f:
        lines = [line.split("\r")[-1].rstrip() for line in f.read().split("\n")]
    return [line for line in lines if line.strip()][-n:]


def measure(checkpoint, device):
    """Parameters, CPU single-image latency (1 thread) and, on `device` (with THREADS on a CPU), single-image
    latency and throughput at the batch size it trained with, of the checkpoint's model in eval mode; and the
    epoch train.py kept it from."""
    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(ckpt, "cpu")
    (h, w), c = ckpt["image_size"], ckpt["channels"]
    result = dict(parameters=sum(p.numel() for p in model.parameters()), device=str(device), input=f"{w}x{h}x{c}",
                  batch=ckpt.get("config", {}).get("BATCH_SIZE") or MEASURE_BATCH, kept_epoch=ckpt.get("epoch"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = torch.device("cpu")
        one = torch.zeros(1, c, h, w)
        times = timed_runs(model, one, cpu, 5, LATENCY_RUNS, MEASURE_SECONDS)
        result["cpu_latency_ms"] = 1000 * statistics.median(times)
        set_threads(config.THREADS)
        model.to(device)
        one = torch.zeros(1, c, h, w, device=device)
        times = timed_runs(model, one, device, 5, LATENCY_RUNS, MEASURE_SECONDS)
        result["device_latency_ms"] = 1000 * statistics.median(times)
        batch = torch.zeros(result["batch"], c, h, w, device=device)
        times = timed_runs(model, batch, device, 2, THROUGHPUT_RUNS, MEASURE_SECONDS)
        result["device_images_per_s"] = result["batch"] * len(times) / sum(times)
    except RuntimeError as e:  # out of memory on the device: the training result still stands
        result["measure_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    finally:
        torch.set_num_threads(threads)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def run_entry(entry, epochs, device):
    """Train one entry in its own process; done.json (with the measurements) or failed.json. True if done."""
    os.makedirs(entry.folder, exist_ok=True)
    for stale in ("done.json", "failed.json", "results.txt", "results.png", f"{entry.name}_best.pt",
                  f"{entry.name}_last.pt"):
        if os.path.exists(entry.path(stale)):
            os.remove(entry.path(stale))  # an interrupted or failed attempt starts over
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *entry.args]
    log_path = entry.path("log.txt")
    start = time.time()
    bar = tqdm(total=epochs, desc=f"  {entry.name}", unit="epoch", position=1, leave=False, file=sys.stdout,
               disable=not sys.stdout.isatty())
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                rows = epoch_rows(entry)
                if len(rows) > bar.n:
                    bar.update(len(rows) - bar.n)
                    bar.set_postfix(seq_acc=rows[-1]["seq_acc"])
        except BaseException:  # Ctrl-C: stop the child too; the entry is trained again on the next run
            proc.kill()
            proc.wait()
            raise
        finally:
            bar.close()
    wall = time.time() - start
    checkpoint = entry.path(f"{entry.name}_best.pt")
    error = ""
    if proc.returncode > 0:
        error = f"exit code {proc.returncode}"
    elif proc.returncode < 0:
        error = f"killed by signal {-proc.returncode}" + " (out of memory?)" * (proc.returncode == -9)
    elif not os.path.exists(checkpoint):
        error = "train.py exited 0 but wrote no checkpoint"
    if error:
        tail = log_tail(log_path)
        write_json(entry.path("failed.json"), dict(args=entry.args, returncode=proc.returncode, wall_seconds=wall,
                                                   error=f"{error}: {tail[-1] if tail else 'no output'}", tail=tail))
        return False
    done = dict(args=entry.args, wall_seconds=wall, **measure(checkpoint, device))
    last = entry.path(f"{entry.name}_last.pt")
    if os.path.exists(last):
        os.remove(last)  # optimizer state for --resume: an entry is never resumed, and it is 2-3x the model
    write_json(entry.path("done.json"), done)
    return True


# --- reporting -----------------------------------------------------------------------------------------------

def tricks_text(entry):
    """The options an entry trains with that differ from neutral, as its run name gives them (config.run_name
    without RUN): ibn-cbam-center0.01; "-" for none."""
    name = config.run_name({**config.as_dict(), **entry.options, "MODEL": entry.model, "RUN": ""})
    return name[len(entry.model) + 1:] or "-"


def number(text):
    """A results.txt figure as a float; None for "nan" or a missing one (no test folder, no validation part)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value else None


def entry_row(entry):
    """One row of comparison.csv for the entry, finished or not."""
    row = dict(entry=entry.name, model=entry.model, head=models.head(entry.model).kind, tricks=tricks_text(entry))
    done, failure = finished(entry), failed(entry)
    rows = epoch_rows(entry)
    if done:
        row.update(status="done", **{k: v for k, v in done.items() if k in COLUMNS})
        row["error"] = done.get("measure_error", "")
    elif failure:
        row.update(status="failed", wall_seconds=failure["wall_seconds"], error=failure["error"])
    else:
        row["status"] = "not run"
    if rows and row["status"] != "not run":
        # the epoch train.py kept (its checkpoint says which); without one, the first with the best accuracy
        kept = {int(r["epoch"]): r for r in rows}.get((done or {}).get("kept_epoch"))
        best = kept or max(rows, key=lambda r: float(r["seq_acc"]))
        row.update(epochs=len(rows), train_seconds=sum(float(r["seconds"]) for r in rows),
                   train_images_per_s=statistics.median(float(r["images_per_s"]) for r in rows),
                   best_seq_acc=float(best["seq_acc"]), best_char_acc=float(best["char_acc"]),
                   test_seq_acc=number(best.get("test_seq_acc")), test_char_acc=number(best.get("test_char_acc")),
                   best_epoch=int(best["epoch"]))
    return row


def sort_key(row):
    return (row["status"] != "done", -row.get("best_seq_acc", -1), -row.get("best_char_acc", -1))


def fmt(value, spec):
    return "-" if value in (None, "") else format(value, spec)


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def setup_text(epochs, seconds, device, rows):
    """What every entry shared: data, budget, seed, device; for the head of the Markdown files."""
    if config.ONLINE:
        data_text = (f"online captchas, {config.ONLINE_COUNT} per epoch, validated on {config.ONLINE_TEST} rendered "
                     f"with their own seed")
    else:
        data_text = (f"`{config.TRAIN_DIR}` ({count_images(config.TRAIN_DIR)} images, {config.VALIDATION:.0%} held "
                     f"out for validation)")
    test = config.test_dir()
    if test:
        data_text += f", tested on `{test}` ({count_images(test)} images)"
    inputs = sorted({r["input"] for r in rows if r.get("input")})
    if inputs:
        data_text += f", input {' / '.join(inputs)} (width x height x channels)"
    limit = f", stopped after the epoch that passes {seconds} s of training" if seconds else ""
    batches = " / ".join(sorted({str(r["batch"]) for r in rows if r.get("batch")})) or config.BATCH_SIZE or "auto"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return (f"- data: {data_text}\n"
            f"- budget: {epochs} epoch{'s' * (epochs != 1)}{limit}, batch {batches}, LR {config.LR:g} "
            f"(one-cycle over the epochs), seed {config.SEED}\n"
            f"- device: {name}, {config.THREADS or os.cpu_count()} CPU thread(s); measured "
            f"{time.strftime('%Y-%m-%d')}\n")


def count_images(folder):
    return sum(f.lower().endswith(data.IMAGE_EXTENSIONS) for f in os.listdir(folder)) if os.path.isdir(folder) else 0


def write_comparison(entries, epochs, seconds, device):
    pairs = sorted(((entry_row(e), e) for e in entries), key=lambda pair: sort_key(pair[0]))
    rows = [row for row, _ in pairs]
    out = config.COMPARE_DIR
    write_csv(os.path.join(out, "comparison.csv"), rows, COLUMNS)
    threads = config.THREADS or os.cpu_count()
    dev = {"cpu": f"CPU {threads}-thread", "cuda": "GPU"}.get(device.type, device.type.upper())
    same = device.type == "cpu" and threads == 1  # the device latency is the 1-thread CPU latency: shown once
    tested = any(r.get("test_seq_acc") is not None for r in rows)
    head = (["model", "head", "tricks", "params (M)", "epochs", "train s", "train img/s", "val seq acc",
             "val char acc"] + ["test seq acc"] * tested + ["best epoch", "CPU 1-thread ms"]
            + [f"{dev} ms"] * (not same) + [f"{dev} img/s"])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * 3 + ["--:"] * (len(head) - 3)) + " |"]
    for r in rows:
        if r["status"] != "done":
            continue
        cells = [r["entry"], r["head"], r["tricks"], fmt(r["parameters"] / 1e6, ".2f"), fmt(r.get("epochs"), "d"),
                 fmt(r.get("train_seconds"), ".1f"), fmt(r.get("train_images_per_s"), ".0f"),
                 fmt(r.get("best_seq_acc"), ".4f"), fmt(r.get("best_char_acc"), ".4f")]
        cells += [fmt(r.get("test_seq_acc"), ".4f")] * tested + [fmt(r.get("best_epoch"), "d"),
                                                                 fmt(r.get("cpu_latency_ms"), ".2f")]
        cells += [fmt(r.get("device_latency_ms"), ".2f")] * (not same)
        lines.append("| " + " | ".join(cells + [fmt(r.get("device_images_per_s"), ".0f")]) + " |")
    problems = [f"- `{r['entry']}`: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
                for r in rows if r["status"] != "done" or r.get("error")]
    text = (f"# Model comparison\n\n{setup_text(epochs, seconds, device, rows)}\n" + "\n".join(lines) + "\n\n"
            + ("Not finished or not fully measured (logs in the entries' folders):\n\n" + "\n".join(problems) + "\n\n"
               if problems else "")
            + "Sorted by validation sequence accuracy (whole label right) at the epoch whose checkpoint train.py kept; "
              "character accuracy is 1 - normalised edit distance at that epoch"
            + ("; test: the test folder at that epoch, never used to choose" if tested else "")
            + ". train s: training and per-epoch evaluation, summed "
              f"over the epochs. Latency: one image, eval mode, median of up to {LATENCY_RUNS} passes after a "
              f"warm-up; img/s: batches of the training batch size on the training device.\n\n"
              "![comparison](comparison.png)\n")
    with open(os.path.join(out, "comparison.md"), "w") as f:
        f.write(text)
    plot_comparison([(row, epoch_rows(e)) for row, e in pairs if row["status"] == "done"],
                    os.path.join(out, "comparison.png"))
    return rows


def plot_comparison(done, out):
    """Left: sequence accuracy per epoch, a line per entry; right: accuracy vs CPU latency, size ~ parameters."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (curves, scatter) = plt.subplots(1, 2, figsize=(15, 5.5))
    colours = plt.get_cmap("tab20")
    biggest = max([r.get("parameters", 1) for r, _ in done] + [1])
    for i, (row, epochs) in enumerate(done):
        colour = colours(2 * i % 20 + i // 10 % 2)  # the 10 dark colours of tab20 first, then the light ones
        curves.plot([int(e["epoch"]) for e in epochs], [float(e["seq_acc"]) for e in epochs], marker=".",
                    color=colour, linestyle="-" if i < 20 else "--", label=row["entry"])
        if row.get("cpu_latency_ms"):
            scatter.scatter(row["cpu_latency_ms"], row["best_seq_acc"], s=30 + 600 * row["parameters"] / biggest,
                            color=colour, alpha=0.6, edgecolors="black")
            scatter.annotate(row["entry"], (row["cpu_latency_ms"], row["best_seq_acc"]), fontsize=7,
                             xytext=(4, 4), textcoords="offset points")
    curves.set(title="sequence accuracy per epoch", xlabel="epoch", ylabel="sequence accuracy")
    scatter.set(title="best sequence accuracy vs CPU latency (marker area ~ parameters)",
                xlabel="CPU latency, 1 image, 1 thread (ms)", ylabel="best sequence accuracy", xscale="log")
    scatter.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    scatter.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 2, 5, 10 ms rather than 2x10^0
    curves.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    scatter.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (curves, scatter):
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    if done:
        curves.legend(fontsize=7, ncol=1 + len(done) // 16)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def spread(values):
    """(mean, sample standard deviation) of the seeds' values; std 0 for one seed."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values):
    """'0.9120 ± 0.0080' (sample std over the seeds); the mean alone for one seed."""
    mean, std = spread(values)
    return f"{mean:.4f} ± {std:.4f}" if len(values) > 1 else f"{mean:.4f}"


def median_of(rows, key):
    values = [r[key] for r in rows if r.get(key) not in (None, "")]
    return statistics.median(values) if values else None


def write_ablation(entries, epochs, seconds, device):
    rows = [entry_row(e) for e in entries]
    out = config.COMPARE_DIR
    write_csv(os.path.join(out, "ablation.csv"),
              [dict(r, variant=e.variant, seed=e.seed) for r, e in zip(rows, entries)], ["variant", "seed"] + COLUMNS)
    labels = {name: label for name, label, _ in ABLATION}
    variants = list(dict.fromkeys(e.variant for e in entries))
    table, base_mean = [], None
    for variant in variants:
        group = [r for r, e in zip(rows, entries) if e.variant == variant]
        ok = [r for r in group if r["status"] == "done"]
        summary = dict(variant=variant, label=labels[variant], tricks=group[0]["tricks"], seeds=len(group),
                       done=len(ok), seq=[r["best_seq_acc"] for r in ok], char=[r["best_char_acc"] for r in ok])
        if ok:
            summary.update(params=ok[0]["parameters"], cpu_ms=median_of(ok, "cpu_latency_ms"),
                           rate=median_of(ok, "train_images_per_s"))
            if variant == "baseline":
                base_mean = statistics.mean(summary["seq"])
        table.append(summary)
    head = ["variant", "options", "seeds", "seq acc (mean ± std)", "min - max", "vs baseline",
            "char acc (mean ± std)", "params (M)", "CPU ms", "train img/s"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * 2 + ["--:"] * (len(head) - 2)) + " |"]
    for v in table:
        seeds = f"{v['done']}" + (f" of {v['seeds']}" if v["done"] < v["seeds"] else "")
        if not v["done"]:
            lines.append(f"| {v['label']} | {v['tricks']} | {seeds} | - | - | - | - | - | - | - |")
            continue
        delta = ("-" if base_mean is None or v["variant"] == "baseline" else
                 f"{statistics.mean(v['seq']) - base_mean:+.4f}")
        lines.append(f"| {v['label']} | {v['tricks']} | {seeds} | {mean_std(v['seq'])} | {min(v['seq']):.4f} - "
                     f"{max(v['seq']):.4f} | {delta} | {mean_std(v['char'])} | {v['params'] / 1e6:.2f} | "
                     f"{fmt(v['cpu_ms'], '.2f')} | {fmt(v['rate'], '.0f')} |")
    problems = [f"- `{r['entry']}`: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
                for r in rows if r["status"] != "done"]
    model = entries[0].model
    text = (f"# Ablation: {model} and its tricks\n\n{setup_text(epochs, seconds, device, rows)}"
            f"- seeds: {config.COMPARE_SEEDS} per variant: {config.SEED} to "
            f"{config.SEED + config.COMPARE_SEEDS - 1}\n\n"
            + "\n".join(lines) + "\n\n"
            + ("Not finished (logs in the entries' folders):\n\n" + "\n".join(problems) + "\n\n" if problems else "")
            + "Validation sequence accuracy at each seed's best epoch; ± is the sample standard deviation over the "
              "seeds (n - 1), min - max their range; \"vs baseline\" the difference of the means.\n\n"
              "![ablation](ablation.png)\n")
    with open(os.path.join(out, "ablation.md"), "w") as f:
        f.write(text)
    plot_ablation(table, os.path.join(out, "ablation.png"))
    return rows


def plot_ablation(table, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.5))
    for i, v in enumerate(table):
        if v["seq"]:
            mean, std = spread(v["seq"])
            ax.barh(i, mean, xerr=std, color="tab:blue", alpha=0.4, capsize=4)
            ax.scatter(v["seq"], [i] * len(v["seq"]), color="black", s=12, zorder=3)
    ax.set_yticks(range(len(table)), [v["label"] for v in table])
    ax.invert_yaxis()
    ax.set(xlabel="best sequence accuracy (bar: mean ± std over seeds; dots: seeds)", xlim=(0, 1.02))
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------------------------------

def main():
    script_options = dict(ablation=False, variants="", retry_failed=True, dry_run=False)
    _, opts = config.parse(arguments=0, **script_options)
    overrides = user_overrides(sys.argv[1:], script_options)
    if config.COMPARE_PRESET not in PRESETS:
        raise config.ConfigError(f"COMPARE_PRESET={config.COMPARE_PRESET!r}: choose from {', '.join(PRESETS)}")
    entries = plan_ablation(split_entries(opts["variants"])) if opts["ablation"] else plan_comparison()
    names = [e.name for e in entries]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise config.ConfigError(f"COMPARE_MODELS lists an entry twice: {', '.join(twice)}")
    epochs, seconds = budget()
    for entry in entries:
        entry.args = train_args(entry, epochs, seconds, overrides)
    if opts["dry_run"]:
        for entry in entries:
            print(f"{entry.name}: {shlex.join(['python', 'train.py', *entry.args])}")
        return 0
    check_data()
    device = pick_device(config.DEVICE)
    os.makedirs(config.COMPARE_DIR, exist_ok=True)

    stale = [e.name for e in entries if os.path.exists(e.path("done.json")) and not finished(e)]
    if stale:
        raise config.ConfigError(
            f"{config.COMPARE_DIR} holds entries finished with other settings: {', '.join(stale)}.\n"
            f"Their train.py arguments are in <entry>/done.json. Use another --compare_dir, or delete those folders "
            f"to train them again.")
    todo = [e for e in entries if not finished(e) and (opts["retry_failed"] or not failed(e))]
    what = "ablation" if opts["ablation"] else f"comparison ({config.COMPARE_PRESET} preset)"
    print(f"{what}: {len(entries)} entries, {epochs} epochs each"
          + (f" (or to the epoch past {seconds} s)" if seconds else "")
          + f", training on {device}; {len(entries) - len(todo)} already finished or recorded, {len(todo)} to train "
          f"-> {config.COMPARE_DIR}", flush=True)
    overall = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=what.split(" ")[0], unit="entry",
                   position=0, file=sys.stdout, disable=not sys.stdout.isatty())
    for entry in entries:
        if entry not in todo:
            continue
        overall.set_postfix_str(entry.name)
        try:
            ok = run_entry(entry, epochs, device)
        except KeyboardInterrupt:
            overall.close()
            print(f"\ninterrupted: {entry.name} starts over on the next run; finished entries are kept")
            return 130
        row = entry_row(entry)
        overall.write(f"{entry.name}: " + (
            f"seq acc {row.get('best_seq_acc', 0):.4f} (epoch {row.get('best_epoch', '-')}), "
            f"{row['wall_seconds'] / 60:.1f} min, CPU latency {fmt(row.get('cpu_latency_ms'), '.2f')} ms"
            if ok else f"FAILED, {row['error']} (log: {entry.path('log.txt')})"))
        overall.update(1)
    overall.close()

    rows = (write_ablation if opts["ablation"] else write_comparison)(entries, epochs, seconds, device)
    unfinished = [r["entry"] for r in rows if r["status"] != "done"]
    prefix = "ablation" if opts["ablation"] else "comparison"
    print(f"wrote {', '.join(os.path.join(config.COMPARE_DIR, prefix + ext) for ext in ('.md', '.csv', '.png'))}")
    if unfinished:
        print(f"{len(unfinished)} of {len(entries)} entries did not finish: {', '.join(unfinished)}")
    return 1 if unfinished else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (config.ConfigError, data.DataError) as e:
        sys.exit(f"error: {e}")
    except (KeyError, ValueError) as e:  # an unknown model, or an option a model does not take
        sys.exit(f"error: {e.args[0]}")
