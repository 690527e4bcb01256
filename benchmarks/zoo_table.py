"""The model zoo table (README, "Model zoo"): for every registered model, its parameters, the feature map
its backbone ends with, CPU single-image latency, and the accuracy it reaches after one equal training budget.

    python captchaGenerator.py --dataset_dir=/tmp/zoo3 --split=train --count=5000 --seed=1
    python captchaGenerator.py --dataset_dir=/tmp/zoo3 --split=test --count=200 --seed=2
    python benchmarks/zoo_table.py --train_dir=/tmp/zoo3/train --test_dir=/tmp/zoo3/test --cache_dir=/tmp/zoo3/cache \
        --seconds=60 --batch_size=16 --threads=2 [--models=cnn,crnn] [--out=table.md]

Every model trains for the same wall-clock `seconds` on the same data, through train.py's model, loss and
training loop: a one-cycle schedule (AdamW, peak LR) over as many steps as fit, measured on its first steps.
`--steps=N` trains every model N steps instead, whatever they take: the same table on any machine or load.
The accuracy is read on the test folder (TEST_DIR; then the whole of TRAIN_DIR trains), else on train.py's
validation part of TRAIN_DIR. Config options (tricks, head settings) apply to every model that takes them,
so `--bnneck=1` gives the table with BNNeck.
"""
import itertools
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import data  # noqa: E402
import models  # noqa: E402
from models.adapt import output_shape  # noqa: E402
from core.augment import Augment  # noqa: E402
from core.batches import epoch_order, resident_batches, to_float  # noqa: E402
from core.device import pick_device, seed_everything, set_threads, timed_runs  # noqa: E402
from core.engine import evaluate, make_model, make_optimizer, train_one_epoch  # noqa: E402
from core.metrics import accuracy  # noqa: E402
from core.plan import Settings, plan_batch, resolve_data, resolve_small_set  # noqa: E402
from core.sets import load_data  # noqa: E402

COLUMNS = ["model", "head", "params (M)", "feature map", "CPU latency (ms)", "train images", "char acc", "seq acc"]
LATENCY_SECONDS = 3.0  # a slow model stops its latency repeats after this long (5 at least)


def latency_ms(model, image, repeats):
    """Median wall time of one forward pass on one image (B = 1) on the CPU, after a warm-up."""
    model.eval()
    return 1000 * statistics.median(timed_runs(model, image, torch.device("cpu"), 5, repeats,
                                                          LATENCY_SECONDS))


def endless_batches(tensors, batch_size, generator):
    """Batches of the device-resident (images, labels, lengths), epoch after epoch, in train.py's order."""
    while True:
        order = epoch_order(len(tensors[0]), batch_size, generator)
        yield from resident_batches(tensors, order, batch_size)


def train_for(s, model, loss_fn, train_tensors, batch_size, device, seconds, generator, fixed_steps=0):
    """Train for about `seconds` of wall-clock with train.py's loop (or `fixed_steps` steps, when above 0); returns
    the number of training images seen."""
    optimizer = make_optimizer(s, model, device)
    for group in optimizer.param_groups:  # two steps at the one-cycle schedule's starting LR time a step
        group["lr"] = s.LR / 25
    batches = endless_batches(train_tensors, batch_size, generator)
    augment = Augment.from_config(s)

    def run(scheduler, steps):
        train_one_epoch(model, optimizer, scheduler, loss_fn, itertools.islice(batches, steps), steps, device,
                        "", augment, bar=False)

    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    start = time.time()
    run(constant, 1)  # the first step also allocates: not timed
    timed = time.time()
    run(constant, 1)
    per_step = time.time() - timed
    # the steps left: fixed_steps - 2, or those that fit in `seconds` (0: the two steps spent the budget)
    steps = max(0, fixed_steps - 2 if fixed_steps else int((seconds - (time.time() - start)) / per_step))
    if steps:  # the schedule spans the steps that fit
        run(torch.optim.lr_scheduler.OneCycleLR(optimizer, s.LR, total_steps=steps, pct_start=0.15), steps)
    return (2 + steps) * batch_size


def measure(s, name, codec, train_tensors, batch_size, test_set, test_tensors, device, seconds, repeats, steps=0):
    seed_everything(s.SEED)
    head = models.head(name)
    # train.py's model and loss (label smoothing, center loss), NCHW; the shape and latency are taken on the CPU
    model, _, loss_fn, _ = make_model(options_for(s, name), codec, device, channels_last=False)
    model.cpu()
    params = sum(p.numel() for p in model.parameters())
    c, h, w = output_shape(model.features, s.CHANNELS, s.IMAGE_HEIGHT, s.IMAGE_WIDTH)
    image = to_float(torch.from_numpy(test_set.images[:1]).permute(0, 3, 1, 2))
    ms = latency_ms(model, image, repeats)
    model.to(device)
    generator = torch.Generator().manual_seed(s.SEED)
    seen = train_for(s, model, loss_fn, train_tensors, batch_size, device, seconds, generator, steps)
    preds = evaluate(model, test_tensors, codec, head.decode, device, 256)[0]
    char_acc, seq_acc = accuracy(test_set.texts, preds)
    return [name, head.kind, f"{params / 1e6:.2f}", f"{c}x{h}x{w}", f"{ms:.1f}", str(seen), f"{char_acc:.3f}",
            f"{seq_acc:.3f}"]


def options_for(s, name):
    """The settings for model `name`, with the model options it does not take at their neutral values: an option on
    the command line applies to every model that takes it (`--sequence=none` changes the CTC models, the fixed ones
    run as they are)."""
    takes = models.MODELS[name].options
    return s.replace(MODEL=name, **{o.upper(): off for o, off in models.OPTIONS.items() if o not in takes})


def check_options(s, names):
    """An option set away from its neutral value that none of `names` takes is an error, not a silent no-op."""
    for option, neutral in models.OPTIONS.items():
        value = getattr(s, option.upper())
        if value != neutral and not any(option in models.MODELS[n].options for n in names):
            raise ValueError(f"{option.upper()}={value!r} applies to none of {', '.join(names)}")


def markdown(rows):
    align = ["---"] * 2 + ["--:"] * (len(COLUMNS) - 2)  # names left, numbers right
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [COLUMNS, align] + rows)


def main():
    _, opts = config.parse(seconds=60.0, steps=0, models="", repeats=20, out="")
    if opts["steps"] < 0:
        raise config.ConfigError(f"--steps={opts['steps']}: 0 (train for --seconds) or a number of steps")
    s = Settings()
    set_threads(s.THREADS)
    device = pick_device(s.DEVICE)
    names = opts["models"].split(",") if opts["models"] else list(models.MODELS)
    for name in names:
        models.head(name)  # an unknown name fails before any work
    check_options(s, names)
    s, codec = resolve_data(s)
    if s.test_dir():
        s = s.replace(VALIDATION=0.0)  # the test folder reads the accuracy: every training image trains
    train_set, val_set, test_set = load_data(s, codec, quiet=True)
    test_set, tested_on = (test_set, "test") if test_set else (val_set, "validation")
    if test_set is None:
        raise config.ConfigError("nothing to read the accuracy on: name a test folder (--test_dir) or keep "
                                 "VALIDATION above 0")
    # AUGMENT, LABEL_SMOOTHING = -1 and BATCH_SIZE = 0: by the set's size, as train.py decides
    s = resolve_small_set(s, len(train_set))
    batch_size = plan_batch(s, len(train_set))
    train_tensors, test_tensors = train_set.tensors(device), test_set.tensors(device)
    budget = f"{opts['steps']} steps" if opts["steps"] else f"{opts['seconds']:g} s"
    print(f"{len(names)} models, {budget} of training each on {len(train_set)} images (batch "
          f"{batch_size}, augmentation {Augment.from_config(s)}), "
          f"{len(test_set)} {tested_on} images, {torch.get_num_threads()} CPU threads, training on {device}",
          flush=True)
    rows, start = [], time.time()
    for name in names:
        rows.append(measure(s, name, codec, train_tensors, batch_size, test_set, test_tensors, device, opts["seconds"],
                            opts["repeats"], opts["steps"]))
        print("  ".join(rows[-1]), f"({time.time() - start:.0f} s so far)", flush=True)
    table = markdown(rows)
    print(table)
    if opts["out"]:
        with open(opts["out"], "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, data.DataError) as e:
        sys.exit(f"error: {e}")
    except (KeyError, ValueError) as e:  # an unknown model, or an option a model does not take
        sys.exit(f"error: {e.args[0]}")
