"""One training run, from the settings to the kept checkpoint: resolve the plan, load the sets, build the model,
train epoch by epoch (evaluating, keeping, saving and deciding when to stop), and report.

train.py calls train(); rank 0 prints, writes results.txt and checkpoints. Everything an epoch needs travels in
one Run value: the resolved settings (`s`, stored in every checkpoint as its "config"), the sets and their
tensors, the model and its optimizer, the keeper and the plan's numbers.
"""
import functools
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

import config
import models
from core import data, fresh
from core.augment import Augment
from core.batches import ReplayPool, epoch_order, fits_on_device, resident_batches, stream_batches
from core.checkpoint import host_state, load_checkpoint, save_checkpoint
from core.device import lead_first, seed_everything
from core.engine import (Keeper, WeightAverage, cooldown_schedule, evaluate, make_model, make_optimizer,
                         online_batches, online_workers, place, show_samples, train_one_epoch)
from core.files import RESULT_COLUMNS, append_row
from core.metrics import accuracy, rare_readings
from core.plot import plot_results
from core.plan import (PERFECT_COOLDOWN, SMALL_VALIDATION, adopt_model, check_resume, describe_data, plan_cooldown,
                       plan_epochs, plan_patience, planned_images, resolve_batch, resolve_data, resolve_init)
from core.pseudo import few_confident, load_unlabeled, unlabeled_folder
from core.teach import (SAMPLE, both_cases, first_pseudo_labels, missing_from_labels, resolve_margin,
                        resolve_teacher, teach_unlabelled, teacher_candidates, zero_labels)
from core.runs import check_paths, choose_run, restore_row, run_paths, unfinished
from core.sets import labelled_items, load_data, say_test_copies, test_folder


@dataclass
class Run:
    """What an epoch needs; `s` holds the resolved settings."""
    s: Any
    say: Callable
    device: torch.device
    rank: int
    world: int
    name: str
    best_path: str
    last_path: str
    codec: Any
    train_set: Any = None
    val_set: Any = None
    test_set: Any = None
    pseudo: Any = None
    producer: Any = None
    pool: Any = None             # ONLINE_REPLAY: the captchas rendered so far, on the device
    tensors: Any = None          # the training images, labels, lengths (device or pinned host)
    streamed: bool = False
    val: Any = None
    test: Any = None
    epochs: int = 0
    start_epoch: int = 1
    patience: Any = None
    steps: int = 0
    model: Any = None            # plain, uncompiled: evaluated and saved (through `shown`)
    net: Any = None              # what training calls (DDP / compiled wrappers of `model`)
    shown: Any = None            # the weight average's module, or `model`
    average: Any = None
    build_args: Any = None
    loss_fn: Any = None
    channels_last: bool = True
    optimizer: Any = None
    scheduler: Any = None
    keeper: Any = None
    augment: Any = None
    samples: Any = None          # (truths, readings) of the kept epoch's validation, for the table at the end
    trained_seconds: float = 0.0


def resolve_start(s, resume, say, lead):
    """(settings, init checkpoint, resume checkpoint, run name): TEACHER "auto" resolved, the starting point (INIT),
    the run's name and the checkpoint a --resume=1 continues; the model and its options come from whichever
    checkpoint is continued."""
    test_folder(s)  # the training folder named as the test folder is refused before anything is written
    check_paths(s)
    s = resolve_teacher(s, say)  # before INIT: a run with unlabelled images and no teacher starts elsewhere
    s = s.replace(INIT=resolve_init(s, resume, say))
    init = load_checkpoint(s.INIT) if s.INIT else None
    if init:  # fine-tuning: the checkpoint's model and options; this run's data (size, charset)
        s = adopt_model(s, init)
        say(f"INIT {s.INIT}: model {s.MODEL}, options {models.model_options(s.MODEL, s.as_dict())}")
    base = s.run_name()
    name = choose_run(s, base, resume)
    if name != base and not resume and lead:
        left = unfinished(s, base)
        say(f"run {base!r} exists in {s.WEIGHTS_DIR}/: this run is {name!r} "
            + (f"({base!r} stopped after epoch {left[0]} of {left[1]}: --resume=1 instead continues it; "
               f"--run=NAME names a run)" if left else "(--resume=1 continues the newest; --run=NAME names a run)"))
    last_path = run_paths(s, name)[1]
    before = load_checkpoint(last_path) if resume else None
    if before:
        if "MODEL" in config.given() and before["model_name"] != s.MODEL:
            raise config.ConfigError(f"--resume=1 continues {last_path}, a {before['model_name']} run: "
                                     f"--model={s.MODEL} cannot continue it. Resume without --model, or start a "
                                     f"new run from it: --init={last_path} --model={s.MODEL}")
        s = adopt_model(s, before).replace(EPOCHS=s.EPOCHS or before.get("planned_epochs", 0))
    return s, init, before, name


def load_sets(r, opts, closing, lead, taught=None):
    """Load the sets, plan the epochs, batch and regularisation (into r.s), and put the tensors in place."""
    s, say = r.s, r.say
    with lead_first(lead, r.device):  # rank 0 decodes first and fills the cache; the others then read it
        if s.TEACHER and not taught and config.CHARSET == "infer" and unlabeled_folder(s):  # a set CHARSET: the user's
            s, r.codec = add_missing(s, r.codec, say)
            r.s = s
        r.train_set, r.val_set, r.test_set = load_data(s, r.codec, quiet=not lead, taught=taught)
        r.pseudo, unlabeled = load_unlabeled(s, r.train_set, r.val_set, r.test_set, r.codec, quiet=not lead)
    if lead:
        say_test_copies(r.test_set, [p for part in (r.train_set, r.val_set, r.pseudo) if part for p in part.paths], say)
    n_train = len(r.train_set) if r.train_set else None
    budget = s.EPOCHS
    r.epochs = plan_epochs(s, r.pseudo.epoch_images if r.pseudo else n_train if n_train else s.ONLINE_COUNT)
    r.s = s = resolve_batch(s, n_train, r.epochs)  # EPOCHS, BATCH_SIZE, AUGMENT, LABEL_SMOOTHING: in the checkpoint
    n_val = len(r.val_set) if r.val_set else 0
    r.patience = plan_patience(s, r.epochs, n_val if r.val_set else None)
    if r.val_set and n_val < SMALL_VALIDATION:
        say(f"  choose    the validation part holds {n_val} image{'' if n_val == 1 else 's'}, too few to choose an epoch "
            f"on (under {SMALL_VALIDATION}): the run follows its schedule and keeps its last epoch")
    if s.ONLINE:  # the processes render (PIL, numpy) and never touch the device
        r.producer = closing.enter_context(fresh.Producer(
            s.SEED, s.ONLINE_COUNT, s.BATCH_SIZE, r.codec.charset, r.codec.length, s.IMAGE_WIDTH,
            s.IMAGE_HEIGHT, s.CHANNELS, s.FONTS, online_workers(s, r.device), r.start_epoch, r.epochs,
            r.rank, r.world, style=s.GEN_STYLE))
        source = (f"ONLINE {r.producer.steps * s.BATCH_SIZE * r.world} fresh captchas per epoch from "
                  f"{r.producer.workers} generator process{'es' if r.producer.workers > 1 else ''}"
                  + (" per training process" * (r.world > 1)))
        if s.ONLINE_REPLAY:
            r.pool = replay_pool(s, r)
            source = source.replace(" fresh captchas per epoch", " captchas per epoch, fresh as the generators "
                                    f"render them, else drawn from the last {r.pool.capacity} rendered "
                                    "(ONLINE_REPLAY),")
    else:
        total = n_train + (len(r.val_set) if r.val_set else 0)
        whole = s.LIMIT > total and not s.SKIP_BAD  # LIMIT past the folder's labelled images takes them all
        source = f"{n_train} training images" + (
            f" (LIMIT={s.LIMIT} is more than the {total} labelled images: all of them)" if s.LIMIT and whole else
            f" (a sample: LIMIT={s.LIMIT})" if s.LIMIT else "")
    say(f"  split     {source}, {len(r.val_set) if r.val_set else 0} validation"
        + (f" (VALIDATION={s.VALIDATION}, SEED={s.SEED})" if not s.ONLINE else "")
        + (f", test {test_folder(s)}: {len(r.test_set)} images (reported, never used to choose)" if r.test_set
           else ", no test folder (TEST_DIR)"))
    if r.pseudo is not None:
        share = min(r.pseudo.extra, len(r.pseudo))  # the rest of the epoch's extra images are labelled fillers
        fill = r.pseudo.extra - share
        say(f"  unlabeled {len(r.pseudo)} images from {s.UNLABELED_DIR} (UNLABELED_DIR): up to "
            f"{share} pseudo-labelled images an epoch (PSEUDO_RATIO={s.PSEUDO_RATIO}"
            + (f"; {fill} more labelled ones fill the epoch" if fill else "") + "), read with "
            f"confidence >= {s.PSEUDO_THRESHOLD} by the "
            + ("weight average at every step, trained on strongly augmented (PSEUDO_MODE=online), "
               if s.PSEUDO_MODE == "online" else "kept model ")
            + (f"once it reads {s.PSEUDO_FROM:.0%} of validation" if s.PSEUDO_FROM else "from the first epoch on")
            + " (PSEUDO_THRESHOLD, PSEUDO_FROM)")
        if len(r.pseudo):  # one set: the labelled images, then the unlabelled ones (label rows filled by refreshes)
            r.train_set = data.CaptchaSet(r.train_set.paths + r.pseudo.paths,
                                          r.train_set.texts + [""] * len(r.pseudo),
                                          np.concatenate([r.train_set.images, unlabeled]), r.codec)
        else:
            r.pseudo = None
    r.tensors, r.streamed = place(r.train_set, r.device, opts["stream"], say) if r.train_set else (None, False)
    if r.pseudo:
        r.pseudo.attach(r.tensors)
    if r.pseudo and s.TEACHER and not taught:  # the teacher's readings: pseudo-labels from the first epoch
        labelled = r.train_set.paths[:n_train], r.train_set.texts[:n_train]
        with lead_first(lead, r.device):  # rank 0 reads with the teacher first; the others find its readings kept
            r.pseudo.seed(first_pseudo_labels(s, r.pseudo.paths, r.codec, say), r.tensors,
                          lambda line: say("==> " + line), teacher_candidates(s, *labelled, r.codec, say))
    held = lambda part: part.tensors(r.device if fits_on_device(part.images.nbytes, r.device) else torch.device("cpu"))
    r.val, r.test = (held(part) if part else None for part in (r.val_set, r.test_set))
    r.steps = (r.producer.steps if r.producer else
               (r.pseudo.epoch_images if r.pseudo else n_train) // (s.BATCH_SIZE * r.world))
    if r.steps == 0:
        what = f"ONLINE_COUNT={s.ONLINE_COUNT}" if r.producer else f"{s.TRAIN_DIR}: {n_train}"
        more = "" if r.producer else (" or label more images (a model needs dozens at the least; 100 with the rest "
                                      "of a folder given as --unlabeled_dir read 90-100 % on most real sets)")
        raise data.DataError(f"{what} training images, fewer than one batch (BATCH_SIZE={s.BATCH_SIZE}"
                             + (f" x {r.world} processes" if r.world > 1 else "") + f"); lower --batch_size{more}")
    return budget


def add_missing(s, codec, say):
    """(settings, codec): the characters of a kind the labels hold that the teacher reads in the unlabelled images
    and no label holds (core.teach.missing_from_labels) added to the charset, before the sets are loaded, so that
    the labels (the test folder's too) are checked against it and the teacher's readings teach them (a few labels
    may lack a rare character)."""
    items = labelled_items(s)
    test = test_folder(s)
    exclude = [p for p, _ in items] + ([p for p, _ in data.read_labels(test)] if test else [])
    paths = [p for p, _ in data.unlabeled_images(s.UNLABELED_DIR, exclude)]
    found = missing_from_labels(s, paths, [t for _, t in items], codec, say) if paths else []
    if not found:
        return s, codec
    cased = both_cases(codec)  # the labels hold letters in both cases: a letter they lack joins in both
    added = {c for c, _ in found} | ({c.upper() for c, _ in found} if cased else set())
    codec = data.Codec("".join(sorted(set(codec.charset) | added)), codec.length, codec.case_sensitive)
    one = len(found) == 1
    say(f"  charset   + {''.join(sorted(added))!r}: the teacher reads "
        f"{', '.join(f'{c!r} in {k}' for c, k in found)}{' (either case)' if cased else ''} of "
        f"{min(SAMPLE, len(paths))} unlabelled images, "
        f"{'a character' if one else 'characters'} of a kind the labels hold that none of them holds: its readings "
        f"teach {'it' if one else 'them'} (label some images that show {'it' if one else 'them'} to be sure: "
        f"python app.py --label_dir={s.UNLABELED_DIR}; --charset=... sets the characters yourself)")
    return s.replace(CHARSET=codec.charset), codec


def replay_pool(s, r):
    """The ReplayPool of ONLINE_REPLAY: as many captchas as it says, or as this run renders, whichever is fewer;
    a ConfigError when they would not fit in half the device's free memory."""
    planned = r.producer.steps * s.BATCH_SIZE * (r.epochs - r.start_epoch + 1)
    capacity = min(s.ONLINE_REPLAY, planned)
    shape = (s.CHANNELS, s.IMAGE_HEIGHT, s.IMAGE_WIDTH)
    per_image = math.prod(shape) + 8 * (r.codec.max_len + 1)
    if not fits_on_device(capacity * per_image, r.device):
        free = torch.cuda.mem_get_info(r.device)[0]
        raise config.ConfigError(f"ONLINE_REPLAY={s.ONLINE_REPLAY}: {capacity} captchas take "
                                 f"{capacity * per_image / 2**30:.1f} GiB on {r.device}, more than half its free "
                                 f"memory ({free / 2**30:.1f} GiB); at most {int(free / 2 / per_image)} fit")
    return ReplayPool(capacity, shape, r.codec.max_len, r.device)


def labelled_part(train_set, most=512):
    """The first (up to `most`) labelled images of the training set, which holds its labelled images first and
    then any unlabelled ones (no text); None without any."""
    if not train_set:
        return None
    n = next((i for i, text in enumerate(train_set.texts[:most]) if not text), min(most, len(train_set)))
    return data.CaptchaSet(train_set.paths[:n], train_set.texts[:n], train_set.images[:n], train_set.codec) if n \
        else None


def build(r, init, resume, opts):
    """The model, optimizer, schedule, keeper and weight average; a resumed run's state restored into them."""
    s, say = r.s, r.say
    seed_everything(s.SEED)
    r.model, r.build_args, r.loss_fn, r.channels_last = make_model(
        s, r.codec, r.device, init, say, candidates=bool(r.pseudo and r.pseudo.candidates),
        labelled=labelled_part(r.train_set) if init and not resume else None)
    r.optimizer = make_optimizer(s, r.model, r.device)
    r.scheduler = torch.optim.lr_scheduler.OneCycleLR(r.optimizer, s.LR, total_steps=r.epochs * r.steps,
                                                      pct_start=0.15)
    n_val = len(r.val_set) if r.val_set else 0
    r.keeper = Keeper(n_val, resume.get("keeper") if resume else None, chooses=n_val >= SMALL_VALIDATION)
    if resume:  # with EMA the checkpoint's "model" is the average, "trained" the weights the optimizer steps
        r.model.load_state_dict(resume.get("trained") or resume["model"])
        r.optimizer.load_state_dict(resume["optimizer"])
        if r.keeper.cool_until is not None:  # stopped during the cool-down: its schedule (steps) is in the state
            r.scheduler = cooldown_schedule(r.optimizer, 1)
        r.scheduler.load_state_dict(resume["scheduler"])
        if r.rank == 0 and resume.get("row"):
            restore_row(s, resume["row"])
        kept = r.keeper.kept
        if r.pseudo and os.path.exists(r.best_path):  # the kept model's weights and the temperature it reads with
            best = load_checkpoint(r.best_path)
            r.pseudo.kept_state, r.pseudo.temperature = best["model"], best.get("temperature", 1.0)
        say(f"resumed {r.last_path} after epoch {resume['epoch']}" + (
            f" (kept epoch {kept['epoch']}, validation sequence accuracy {kept['seq']:.4f})" if kept else ""))
    # made from the (resumed) trained weights, then given the saved average where the checkpoint holds one
    r.average = WeightAverage(r.model, s.EMA, resume.get("average_updates", 0) if resume else 0) if s.EMA else None
    if r.average and resume and "trained" in resume:
        r.average.module.load_state_dict(resume["model"])
    r.shown = r.average.module if r.average else r.model
    if r.rank:  # the same weights everywhere (DDP also broadcasts them), but each process its own augmentations
        torch.manual_seed(s.SEED + 7919 * r.rank)
    r.net = r.model
    if r.world > 1:
        # a 1-channel stem's weight (C, 1, 3, 3) gets its gradient with another stride on the size-1 axis: the
        # same memory layout, but DDP warns about it
        warnings.filterwarnings("ignore", "Grad strides do not match bucket view strides")
        ids = [r.device.index] if r.device.type == "cuda" else None
        r.net = torch.nn.parallel.DistributedDataParallel(r.model, device_ids=ids)
    if s.COMPILE:
        r.net = torch.compile(r.net, backend=opts["compile_backend"])
    r.augment = Augment.from_config(s)


def describe_plan(r, budget):
    s = r.s
    params = sum(p.numel() for p in r.model.parameters())
    times = f" x {r.world}" if r.world > 1 else ""
    r.say(f"run {r.name}: model {s.MODEL}, {params / 1e6:.2f} M parameters, on {r.device}"
          + (f" x {r.world} processes" if r.world > 1 else "")
          + f"\n  plan      {r.epochs} epochs" + ("" if budget else f" (EPOCHS=0: about {planned_images(s)} images)")
          + f" of {r.steps} steps, batch {s.BATCH_SIZE}{times}"
          + (f", stop after {r.patience} epochs without progress on validation" if r.patience else "")
          + f"\n  augment   {r.augment}" + (f", label smoothing {s.LABEL_SMOOTHING:g}" * (s.LABEL_SMOOTHING > 0))
          + (", torch.compile" if s.COMPILE else "") + (", channels_last" if r.channels_last else ""))


def epoch_batches(r, epoch):
    if r.producer:
        r.producer.reset_stats()
        if r.pool:
            r.pool.reset_stats()
        return online_batches(r.producer, r.s.BATCH_SIZE, r.device, r.codec, r.pool)
    shuffle = torch.Generator().manual_seed(r.s.SEED * 1000 + epoch)  # the same on every rank
    order = (r.pseudo.order(shuffle, r.s.BATCH_SIZE, r.rank, r.world) if r.pseudo
             else epoch_order(len(r.train_set), r.s.BATCH_SIZE, shuffle, r.rank, r.world))
    return (stream_batches(r.tensors, order, r.s.BATCH_SIZE, r.device) if r.streamed
            else resident_batches(r.tensors, order, r.s.BATCH_SIZE))


def run_epoch(r, epoch, bar):
    """Train one epoch, evaluate, offer it to the keeper, print its line; returns its figures."""
    t0 = time.time()
    kind = models.head(r.s.MODEL)
    relabel = functools.partial(r.pseudo.relabel, r.shown, kind.decode) if r.pseudo and r.pseudo.online else None
    loss, rate = train_one_epoch(r.net, r.optimizer, r.scheduler, r.loss_fn, epoch_batches(r, epoch), r.steps,
                                 r.device, f"epoch {epoch}/{r.epochs}", r.augment, r.channels_last, bar=bar,
                                 average=r.average, relabel=relabel)
    r.trained_seconds += time.time() - t0
    generation = r.producer.report(time.time() - t0, rate, r.pool) if r.producer else ""
    if r.world > 1:  # BatchNorm statistics differ by process (DDP sends rank 0's before each forward): align them
        for buffer in [*r.model.buffers(), *(r.average.module.buffers() if r.average else ())]:
            dist.broadcast(buffer, 0)
    if not math.isfinite(loss):
        raise RuntimeError(f"loss became {loss} at epoch {epoch}; lower --lr")
    f = dict(loss=loss, rate=rate, val_loss=float("nan"), val_char=math.nan, val_seq=math.nan, temperature=1.0,
             test_char=math.nan, test_seq=math.nan)
    if r.val_set:
        val_preds, f["val_loss"], f["temperature"] = evaluate(r.shown, r.val, r.codec, kind.decode, r.device, 512,
                                                              kind.loss)
        f["val_char"], f["val_seq"] = accuracy(r.val_set.texts, val_preds)
    if r.test_set:
        test_preds = evaluate(r.shown, r.test, r.codec, kind.decode, r.device, 512)[0]
        f["test_char"], f["test_seq"] = accuracy(r.test_set.texts, test_preds)
    f["seconds"] = time.time() - t0
    f["improved"] = r.keeper.offer(epoch, f["val_seq"], f["val_char"], f["val_loss"],
                                   (f["test_seq"], f["test_char"]) if r.test_set else None)
    if f["improved"] and r.val_set:
        r.samples = (r.val_set.texts, val_preds)
    r.say(f"epoch {epoch}/{r.epochs}: loss {loss:.4f}"
          + (f", validation seq acc {f['val_seq']:.4f} (char {f['val_char']:.4f}, loss {f['val_loss']:.4f})"
             if r.val_set else "")
          + (f", test seq acc {f['test_seq']:.4f}" if r.test_set else "")
          + f", {rate:.0f} img/s, {f['seconds']:.0f}s" + (" *" if f["improved"] else "")
          + (f"\n{generation}" if generation else ""))
    if r.pseudo:
        line = r.pseudo.report()
        if line:
            r.say("==> " + line)
        r.pseudo.trained_since += r.steps * r.s.BATCH_SIZE * r.world
        if f["improved"]:
            r.pseudo.keep(r.shown, f["temperature"])
        if r.pseudo.due(r.keeper.kept):
            r.pseudo.refresh(r.shown, r.tensors, kind.decode, r.device, r.keeper.kept["epoch"],
                             lambda line: r.say("==> " + line))
    return f


def save_epoch(r, epoch, f, finished=False):
    """The kept and last checkpoints (atomic) and the results row of this epoch; `finished`: the run ends here."""
    row = dict(run=r.name, epoch=epoch, train_loss=f"{f['loss']:.5f}", val_loss=f"{f['val_loss']:.5f}",
               char_acc=f"{f['val_char']:.5f}", seq_acc=f"{f['val_seq']:.5f}", test_char_acc=f"{f['test_char']:.5f}",
               test_seq_acc=f"{f['test_seq']:.5f}", lr=f"{r.scheduler.get_last_lr()[0]:.3e}",
               seconds=f"{f['seconds']:.1f}", images_per_s=f"{f['rate']:.0f}")
    meta = dict(epoch=epoch, accuracy=f["val_seq"], char_accuracy=f["val_char"], test_accuracy=f["test_seq"],
                test_char_accuracy=f["test_char"], temperature=f["temperature"], config=shareable(r.s))
    if f["improved"]:
        save_checkpoint(r.best_path, r.shown, r.build_args, r.codec, **meta)
    # the last checkpoint carries its results row: a run killed before the row is written writes it on resume
    trained = dict(trained=host_state(r.model), average_updates=r.average.updates) if r.average else {}
    save_checkpoint(r.last_path, r.shown, r.build_args, r.codec, **meta, keeper=r.keeper.state(),
                    planned_epochs=r.epochs, finished=finished, row=row, optimizer=r.optimizer.state_dict(),
                    scheduler=r.scheduler.state_dict(), **trained)
    append_row(r.s.RESULTS, RESULT_COLUMNS, row)


# settings that name this machine's folders and files: a checkpoint someone shares carries the plan, not them
LOCAL_PATHS = ("TRAIN_DIR", "TEST_DIR", "UNLABELED_DIR", "WEIGHTS_DIR", "RESULTS", "CACHE_DIR", "DATASET_DIR",
               "INIT", "PRETRAINED", "FONTS")


def shareable(s):
    """The settings a checkpoint records: the resolved plan, with this machine's paths reduced to their last part."""
    values = s.as_dict()
    for name in LOCAL_PATHS:
        value = values.get(name)
        if isinstance(value, str) and value:
            values[name] = os.path.basename(os.path.normpath(value))
        elif isinstance(value, (tuple, list)):
            values[name] = type(value)(os.path.basename(str(v)) for v in value)
    return values


def stop_reason(r, epoch, f):
    """(why the run stops after this epoch or "", epochs of cool-down to start now)."""
    s, keeper = r.s, r.keeper
    cooling = keeper.cool_until is not None
    if s.TARGET_ACCURACY and f["val_seq"] >= s.TARGET_ACCURACY:
        return f"validation reached TARGET_ACCURACY {s.TARGET_ACCURACY}", 0
    if cooling and epoch >= keeper.cool_until and epoch < r.epochs:
        return f"cool-down finished: stopping after epoch {epoch}", 0
    if r.patience and r.val_set and keeper.since >= r.patience and epoch < r.epochs and not cooling:
        why = (f"no progress on validation (errors, character accuracy, loss) for {keeper.since} "
               f"epoch{'s' * (keeper.since > 1)} (PATIENCE {r.patience})")
        cool = plan_cooldown(s, r.epochs, epoch)
        if not cool:
            return f"{why}: stopping after epoch {epoch}", 0
        r.say(f"{why}: the learning rate now falls to 0 over {cool} epoch{'s' * (cool > 1)} (COOLDOWN "
              f"{s.COOLDOWN}), then the run stops")
        return "", cool
    if r.val_set and keeper.chooses and f["val_seq"] >= 1 and epoch < r.epochs and not cooling:
        cool = min(max(1, round(PERFECT_COOLDOWN * r.epochs)), r.epochs - epoch)
        r.say(f"validation read all {len(r.val_set)} images right: the learning rate now falls to 0 over {cool} "
              f"epoch{'s' * (cool > 1)}, then the run stops")
        return "", cool
    if s.TIME_LIMIT and r.trained_seconds >= s.TIME_LIMIT and epoch < r.epochs:
        return f"TIME_LIMIT {s.TIME_LIMIT:g}s reached after epoch {epoch}", 0
    return "", 0


def run_epochs(r, bar):
    for epoch in range(r.start_epoch, r.epochs + 1):
        f = run_epoch(r, epoch, bar)
        stop, cool = stop_reason(r, epoch, f)
        if r.rank == 0:  # a run that stops here on purpose is finished: --resume=1 prefers one that was cut short
            save_epoch(r, epoch, f, finished=bool(stop) or epoch == r.epochs)
        if r.world > 1:  # rank 0 decides for every process (its clock, its cool-down)
            flag = torch.tensor([float(bool(stop)), float(cool)], device=r.device)
            dist.broadcast(flag, 0)
            stop = stop or ("rank 0 stops" if flag[0].item() else "")
            cool = int(flag[1].item())
        if stop:
            r.say(stop)
            break
        if cool:
            r.scheduler = cooldown_schedule(r.optimizer, cool * r.steps)
            r.keeper.cool_until = epoch + cool


def report(r):
    """The plot, the sample table, the pseudo-label outcome and the kept checkpoint: the lines a user looks for."""
    s, say = r.s, r.say
    if r.rank == 0:
        say(f"plot: {plot_results(s.RESULTS, os.path.splitext(s.RESULTS)[0] + '.png')}")
    if r.samples and s.SHOW:
        say(show_samples(*r.samples, s.SHOW, 0))
    if r.pseudo and r.pseudo.online and r.pseudo.kept_state is not None:  # what the kept model makes of them
        r.pseudo.refresh(r.shown, r.tensors, models.head(s.MODEL).decode, r.device, r.keeper.kept["epoch"],
                         lambda line: say("==> unlabeled: read at every step (PSEUDO_MODE=online); at the end " + line))
    elif r.pseudo:
        say(f"==> unlabeled: {r.pseudo.refreshes} refreshes; last {r.pseudo.last}" if r.pseudo.refreshes else
            f"==> unlabeled: no pseudo-labels (the kept model never read {s.PSEUDO_FROM:.0%} of validation: "
            f"PSEUDO_FROM)")
    little = r.pseudo and r.pseudo.refreshes and few_confident(r.pseudo, s.TEACHER, s.TRAIN_DIR)
    if little:
        say("==> " + little)
    if r.pseudo and r.pseudo.readings and not zero_labels(s):  # a character the labels hold few of, read as another
        labels = [t for part in (r.train_set, r.val_set) if part for t in part.texts]
        advice = rare_readings(labels, r.pseudo.readings, folder=s.TRAIN_DIR)
        if advice:
            say("==> " + advice)
    kept = r.keeper.kept
    result = f"==> best: {r.best_path} (epoch {kept['epoch']})"
    if r.val_set:
        result += f", validation seq acc {kept['seq']:.4f} (char {kept['char']:.4f})"
    if kept["test"]:
        result += f", test seq acc {kept['test'][0]:.4f} (char {kept['test'][1]:.4f})"
    say(result)


def resume_args():
    """This command's own arguments, without --resume: what a --resume=1 repeats."""
    return " ".join(a for a in sys.argv[1:] if not a.lower().startswith("--resume")).strip()


def train(s, opts, rank, world, device, closing):
    """Train with the settings `s` (a core.plan.Settings); `opts`: train.py's own options. Returns the Run."""
    lead = rank == 0
    say = print if lead else (lambda *a, **k: None)
    s, init, resume, name = resolve_start(s, opts["resume"], say, lead)
    with lead_first(lead, device):  # torchrun: rank 0 reads with the teacher first; the others find its readings
        s = resolve_margin(s, say)
        taught = None
        if zero_labels(s):  # TEACHER, and no labels at all: its confident readings are the training labels
            s, codec, *taught = teach_unlabelled(s, say)
            describe_data(f"{s.TRAIN_DIR} (labels read by {s.TEACHER})", codec, {"CHARSET", "LENGTH", "IMAGE"},
                          (s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS), say)
        else:
            s, codec = resolve_data(s, say)
    best_path, last_path = run_paths(s, name)
    r = Run(s=s, say=say, device=device, rank=rank, world=world, name=name, best_path=best_path,
            last_path=last_path, codec=codec, start_epoch=resume["epoch"] + 1 if resume else 1)
    budget = load_sets(r, opts, closing, lead, taught)
    if resume:
        check_resume(r.s, resume, last_path, r.codec, r.epochs)
    build(r, init, resume, opts)
    describe_plan(r, budget)
    try:
        run_epochs(r, bar=lead and sys.stdout.isatty())  # a log file gets one line per epoch, not progress bars
    except KeyboardInterrupt:
        kept = r.keeper.kept
        raise KeyboardInterrupt(
            (f"kept {best_path} (epoch {kept['epoch']}); " if kept else "nothing kept yet; ")
            + (f"`python train.py --resume=1 {resume_args()}` continues after the last finished epoch"
               if os.path.exists(last_path) else "no epoch finished, nothing to resume")) from None
    report(r)
    return r
