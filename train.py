"""Train a model on TRAIN_DIR; keep the checkpoint that reads a held-out validation part of it best.

    python train.py                                   # config.py as it is (generated captchas in dataset/)
    python train.py --train_dir=my_captchas           # your own labelled images: everything else is inferred
    python train.py --train_dir=a/train --test_dir=a/test --epochs=30
    python train.py --resume=1                        # continue the newest run of this name (weights/<RUN>_last.pt)
    python train.py --online=1                        # fresh generated captchas every epoch
    torchrun --nproc_per_node=4 train.py              # DistributedDataParallel: one process per GPU (gloo on CPU)

Three sets, three jobs: the training images; a seeded VALIDATION part held out from TRAIN_DIR, which picks the
best checkpoint and decides when to stop; TEST_DIR, only reported (after every epoch and at the end). The
length of a run follows the data (EPOCHS = 0: about IMAGES_SEEN images, a small set many more times) and it
stops early once validation stops improving (PATIENCE). A run never replaces another run's checkpoints.

The decoded uint8 set sits on the device when it fits (batches are index slices; normalisation and
augmentation run there, in batch); otherwise it stays in pinned host memory and chunks stream in ahead of
the compute. Under torchrun each process takes its share of every epoch (BATCH_SIZE is per process), and
only rank 0 prints, writes results.txt and checkpoints.
"""
import contextlib
import copy
import hashlib
import math
import os
import re
import sys
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import config
import data
import models
import online
import torch_util

SMALL_SET = 20_000          # training images under which AUGMENT = -1 and LABEL_SMOOTHING = -1 switch on
AUTO_AUGMENT = 0.5          # AUGMENT = -1: the strength used for a small set
AUTO_SMOOTHING = 0.1        # LABEL_SMOOTHING = -1: the weight used for a small set
MIN_EPOCHS, MAX_EPOCHS = 10, 300  # EPOCHS = 0: the range the data-sized budget is kept in
# the grid a checkpoint's temperature is fitted on, 0.5-2.8: a validation part read without a mistake would pull
# it as low as the grid goes (sharper is always better there), so the grid stops a little below where models
# trained with LABEL_SMOOTHING 0.1 land on images they did not train on (about 0.6)
TEMPERATURES = 2.0 ** (torch.arange(-4, 7) / 4)
PLAIN = TEMPERATURES.tolist().index(1.0)  # the grid holds 1 exactly: its loss is the plain validation loss
SLACK = 0.002               # validation errors (a fraction of the part, at least 1 image) within which a later epoch
                            # with a lower validation loss is kept: a one-image difference is noise, not a better model


def train_batch(model, optimizer, loss_fn, images, labels, lengths, device, augment=None, channels_last=False):
    """One optimizer step on a uint8 batch (B, C, H, W) already on the device; returns the loss as a detached
    device tensor (no host sync). `augment`: a data.Augment (or None), applied on the device."""
    x = data.to_float(images)
    if augment:
        x = augment(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch_util.autocast(device):
        logits = model(x)
    loss = loss_fn(logits, labels, lengths)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_one_epoch(model, optimizer, scheduler, loss_fn, batches, steps, device, desc, augment=None,
                    channels_last=False, bar=True, average=None):
    """One pass over `batches` ((images, labels, lengths) on the device, `steps` of them); returns (mean loss,
    images/s). Under torchrun: the mean over every process, and the images of every process. `average`: a
    WeightAverage updated after every step, or None."""
    model.train()
    total = torch.zeros((), device=device)
    done = seen = 0
    start = time.time()
    progress = tqdm(batches, total=steps, desc=desc, unit="batch", file=sys.stdout, leave=False, disable=not bar)
    for images, labels, lengths in progress:
        total += train_batch(model, optimizer, loss_fn, images, labels, lengths, device, augment, channels_last)
        scheduler.step()
        if average:
            average.update()
        done += 1
        seen += len(images)
        if bar and done % 20 == 0:  # the only host sync: a logging point
            progress.set_postfix(loss=f"{total.item() / done:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    progress.close()
    world = dist.get_world_size() if dist.is_initialized() else 1
    if world > 1:
        dist.all_reduce(total)
    loss = total.item() / max(1, done * world)  # waits for the last step: the time below includes it
    return loss, seen * world / max(time.time() - start, 1e-9)


@torch.inference_mode()
def evaluate(model, tensors, codec, decode, device, batch_size, loss_fn=None):
    """(predicted texts, mean loss or nan, temperature) for (images, labels, lengths) on the device, or on the
    host (then copied batch by batch). `loss_fn`: the head's plain loss (logits, labels, lengths), or None.

    The temperature (1.0 without loss_fn) is the one of TEMPERATURES whose scaled scores (logits / temperature)
    give these images' labels the lowest loss: dividing by it makes the reported confidences match how often
    readings are right (temperature scaling, Guo et al. 2017). Label smoothing leaves a model under-confident
    (a temperature below 1), a model that has learnt its training set by heart over-confident (above 1).

    Under torchrun each process reads its contiguous share and every process gets all the texts, in order."""
    images = tensors[0]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    lo, hi = len(images) * rank // world, len(images) * (rank + 1) // world
    model.eval()
    texts, total = [], torch.zeros(len(TEMPERATURES), device=device, dtype=torch.float64)
    for i in range(lo, hi, batch_size):
        batch = [t[i:min(i + batch_size, hi)].to(device, non_blocking=True) for t in tensors]
        with torch_util.autocast(device):
            logits = model(data.to_float(batch[0]))
        if loss_fn is not None:
            scores = logits.float()
            total += torch.stack([loss_fn(scores / t, batch[1], batch[2]) for t in TEMPERATURES.tolist()]).double() \
                * len(batch[0])
        texts += decode(logits, codec)[0]
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, texts)
        texts = [t for part in parts for t in part]
        dist.all_reduce(total)
    if loss_fn is None:
        return texts, float("nan"), 1.0
    return texts, total[PLAIN].item() / max(1, len(images)), TEMPERATURES[int(total.argmin())].item()


def show_samples(truths, preds, n, seed):
    """A short `truth | prediction | ok` table: a few samples, mistakes first."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(truths), generator=g).tolist()
    order.sort(key=lambda i: truths[i] == preds[i])
    width = max(5, max(len(t) for t in truths))
    lines = [f"  {'truth':<{width}} | {'prediction':<{width}} | ok"]
    lines += [f"  {truths[i]:<{width}} | {preds[i]:<{width}} | {'yes' if truths[i] == preds[i] else 'NO'}"
              for i in order[:n]]
    return "\n".join(lines)


class WeightAverage:
    """EMA > 0: an exponential moving average of a model's weights and BatchNorm statistics, updated after every
    optimizer step; `module` is what is evaluated, kept and saved. After n updates the decay is
    min(EMA, (1 + n) / (10 + n)): a short run averages over about its last tenth of steps, a long one over about
    1 / (1 - EMA) steps. The update is one fused in-place lerp on the device (no host sync, nothing copied from
    the host per step); `updates` travels in the last checkpoint, so a resumed run goes on with the same decay."""

    def __init__(self, model, cap, updates=0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.cap, self.updates = cap, updates
        # state_dict tensors share storage with the modules' parameters and buffers: updating them updates both
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self.mine = [a for a, b in pairs if a.is_floating_point()]
        self.theirs = [b for a, b in pairs if a.is_floating_point()]
        self.counts = [(a, b) for a, b in pairs if not a.is_floating_point()]  # BatchNorm's num_batches_tracked

    @torch.no_grad()
    def update(self):
        self.updates += 1
        decay = min(self.cap, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.mine, self.theirs, 1 - decay)
        for a, b in self.counts:
            a.copy_(b)


class Keeper:
    """Chooses, on validation alone, the epoch whose checkpoint is kept, and counts epochs without progress.

    An epoch is kept when it makes fewer validation errors than any before, or when it is within SLACK of the
    fewest and has a lower validation loss than the kept one: on a small validation part one image is noise,
    and the smoother loss then says which model is better. `since` counts the epochs since the last progress,
    for PATIENCE: a kept epoch, or a best-ever validation character accuracy or loss (a CTC model can sit on a
    plateau of empty readings for many epochs while its characters improve, then read whole labels at once).
    Without a validation part the last epoch is kept. During the cool-down (`cool_until`: the epoch it ends
    after, None = not cooling) an epoch within SLACK of the fewest errors is kept whatever its loss: its weights
    were trained at a lower learning rate than any before, and validation cannot tell the two apart."""

    def __init__(self, n_val, state=None):
        self.n_val, self.slack = n_val, max(1, round(SLACK * n_val))
        self.fewest, self.kept, self.since = math.inf, None, 0
        self.best_char, self.best_loss = -math.inf, math.inf
        self.cool_until = None
        if state:
            self.fewest, self.kept, self.since = state["fewest"], state["kept"], state["since"]
            self.best_char, self.best_loss = state.get("best_char", -math.inf), state.get("best_loss", math.inf)
            self.cool_until = state.get("cool_until")

    def offer(self, epoch, seq, char, loss, test=None):
        """Whether this epoch's checkpoint is kept; seq/char: validation accuracies, test: (seq, char) or None."""
        errors = round((1 - seq) * self.n_val) if self.n_val else 0
        keep = (not self.n_val or errors < self.fewest
                or errors <= self.fewest + self.slack and (self.cool_until is not None or loss < self.kept["loss"]))
        progress = keep or char > self.best_char or loss < self.best_loss
        self.fewest = min(self.fewest, errors)
        self.best_char, self.best_loss = max(self.best_char, char), min(self.best_loss, loss)
        if keep:
            self.kept = dict(epoch=epoch, seq=seq, char=char, loss=loss, test=test)
        self.since = 0 if progress else self.since + 1
        return keep

    def state(self):
        return dict(fewest=self.fewest, kept=self.kept, since=self.since, best_char=self.best_char,
                    best_loss=self.best_loss, cool_until=self.cool_until)


class PseudoLabels:
    """UNLABELED_DIR's images and their pseudo-labels: the kept model's readings of at least PSEUDO_THRESHOLD
    sequence confidence, refreshed as better models are kept.

    The first refresh comes once the kept model reads PSEUDO_FROM of validation right; later ones when a newer
    model has been kept and the run has trained on PSEUDO_EVERY times as many images as there are unlabelled ones
    since the last refresh. Each epoch then holds every labelled training image plus up to PSEUDO_RATIO times as
    many pseudo-labelled ones (sampled afresh each epoch; labelled images fill the rest, so every epoch has the
    same number of steps). Validation and test images never get pseudo-labels; labels the folder holds (`truth`)
    are only used to report how many pseudo-labels were right."""

    def __init__(self, paths, truths, codec, n_train):
        self.paths, self.truths, self.codec = paths, truths, codec
        self.n_train, self.chosen = n_train, np.zeros(0, dtype=np.int64)
        self.extra = round(config.PSEUDO_RATIO * n_train)  # pseudo-labelled images (or labelled fillers) per epoch
        self.refreshes, self.refreshed_epoch, self.trained_since, self.last = 0, None, 0, ""
        self.kept_state, self.reader, self.temperature = None, None, 1.0

    def __len__(self):
        return len(self.paths)

    @property
    def epoch_images(self):
        return self.n_train + self.extra

    def keep(self, model, temperature=1.0):
        """Remember a newly kept model's weights and temperature (pseudo-labels come from the kept model, not the
        last one, and its confidences are read as its checkpoint's readers read them)."""
        self.kept_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.temperature = temperature

    def due(self, kept):
        if self.kept_state is None or not kept or not kept["seq"] >= config.PSEUDO_FROM:
            return False
        if self.refreshed_epoch is None:
            return True
        return kept["epoch"] != self.refreshed_epoch and self.trained_since >= config.PSEUDO_EVERY * len(self)

    @torch.no_grad()
    def refresh(self, model, tensors, decode, device, kept_epoch, say):
        """Read the unlabelled images (tensors[0][n_train:]) with the kept model; write the confident readings into
        the label rows of `tensors`."""
        if self.reader is None:
            self.reader = copy.deepcopy(model)
        self.reader.load_state_dict(self.kept_state)
        self.reader.eval()
        images, labels, lengths = tensors
        texts, confidences = [], []
        for i in range(self.n_train, len(images), 512):
            batch = images[i:i + 512].to(device, non_blocking=True)
            with torch_util.autocast(device):
                logits = self.reader(data.to_float(batch))
            t, c, _ = decode(logits, self.codec, self.temperature)
            texts += t
            confidences += c
        lo, hi = self.codec.length
        chosen = [i for i, (t, c) in enumerate(zip(texts, confidences))
                  if c >= config.PSEUDO_THRESHOLD and lo <= len(t) <= hi and self.codec.check(t) is None]
        self.chosen = np.array(chosen, dtype=np.int64)
        if chosen:
            rows = torch.tensor([self.codec.encode(texts[i]) for i in chosen], dtype=torch.int64)
            at = torch.from_numpy(self.chosen + self.n_train).to(labels.device)
            labels[at] = rows.to(labels.device)
            lengths[at] = torch.tensor([len(texts[i]) for i in chosen], dtype=torch.int64, device=lengths.device)
        self.refreshes += 1
        self.refreshed_epoch, self.trained_since = kept_epoch, 0
        self.last = (f"pseudo-labels from the model of epoch {kept_epoch}: {len(chosen)} of {len(self)} unlabelled "
                     f"images read with confidence >= {config.PSEUDO_THRESHOLD}" + self.audit(texts, chosen))
        say(self.last)

    def audit(self, texts, chosen):
        """', right: ...' for the images whose labels the folder knows (none: '')."""
        known = [i for i, t in enumerate(self.truths) if t is not None]
        if not known:
            return ""
        truth = lambda i: self.codec.normalize(self.truths[i])
        picked = [i for i in chosen if self.truths[i] is not None]
        right = sum(texts[i] == truth(i) for i in picked)
        read = sum(texts[i] == truth(i) for i in known)
        return (f"; right: {right} of {len(picked)} with known labels"
                + (f" ({right / len(picked):.2%})" if picked else "")
                + f" (all unlabelled images: {read / len(known):.2%} read right)")

    def order(self, generator, batch_size, rank, world):
        """This rank's indices into the combined tensors for one epoch (see the class's docstring)."""
        take = min(len(self.chosen), self.extra)
        picked = torch.from_numpy(self.chosen)[torch.randperm(len(self.chosen), generator=generator)[:take]]
        fillers = torch.randint(0, self.n_train, (self.extra - take,), generator=generator)
        population = torch.cat([torch.arange(self.n_train), picked + self.n_train, fillers])
        return population[data.epoch_order(len(population), batch_size, generator, rank, world)]


def describe_data(folder, codec, inferred, geometry, say):
    """The one block printed before training: what the data says, and which of it was inferred."""
    mark = lambda name: " (inferred)" if name in inferred else ""
    length = codec.length[0] if not codec.variable else f"{codec.length[0]}-{codec.length[1]}"
    width, height, channels = geometry
    say(f"data {folder}:\n"
        f"  charset   {codec.charset!r} ({len(codec.charset)} characters){mark('CHARSET')}"
        + ("" if codec.case_sensitive else ", case folded (CASE_SENSITIVE=False)") + "\n"
        f"  length    {length}{mark('LENGTH')}\n"
        f"  image     {width}x{height}, {'grey' if channels == 1 else 'colour'}{mark('IMAGE')}")


def resolve_data(say=print):
    """The Codec and image geometry of this run: CHARSET / LENGTH / IMAGE_* / CHANNELS as set, or (\"infer\" / 0)
    read from TRAIN_DIR's labels and images. The resolved values are written back into config, so the checkpoint's
    config records them. ONLINE renders GEN_* captchas."""
    if config.ONLINE:
        charset = config.GEN_CHARSET if config.CHARSET == "infer" else config.CHARSET
        codec = data.Codec(charset, config.LENGTH or config.GEN_LENGTH, config.CASE_SENSITIVE)
        geometry = (config.IMAGE_WIDTH or config.GEN_WIDTH, config.IMAGE_HEIGHT or config.GEN_HEIGHT,
                    config.CHANNELS or 1)
        inferred, folder = (), "ONLINE (generated: GEN_CHARSET, GEN_LENGTH, GEN_WIDTH x GEN_HEIGHT)"
    else:
        folder = config.TRAIN_DIR
        codec, _ = data.infer_codec(folder, config.CHARSET, config.LENGTH, config.CASE_SENSITIVE, config.SKIP_BAD)
        inferred = {n for n, v in (("CHARSET", config.CHARSET == "infer"), ("LENGTH", not config.LENGTH)) if v}
        geometry = (config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS)
        if not all(geometry):
            found = data.infer_geometry([p for p, _ in data.read_labels(folder)], height=config.IMAGE_HEIGHT)
            geometry = tuple(g or f for g, f in zip(geometry, found))
            inferred |= {"IMAGE"}
    config.CHARSET, config.LENGTH = codec.charset, codec.length if codec.variable else codec.length[0]
    config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS = geometry
    describe_data(folder, codec, inferred, geometry, say)
    return codec


def split_validation(train_set, fraction, seed):
    """(training part, validation part): a seeded `fraction` of the set held out; the same split on every rank."""
    if not 0 <= fraction < 1:
        raise config.ConfigError(f"VALIDATION={fraction}: a fraction of TRAIN_DIR, 0 <= VALIDATION < 1")
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed)).numpy()
    cut = max(1, round(len(train_set) * fraction)) if fraction else 0
    if cut and len(train_set) - cut < 1:
        raise data.DataError(f"{config.TRAIN_DIR}: {len(train_set)} images are too few to hold out a validation part")
    pick = lambda ix: data.CaptchaSet([train_set.paths[i] for i in ix], [train_set.texts[i] for i in ix],
                                      train_set.images[ix], train_set.codec)
    return pick(np.sort(order[cut:])), (pick(np.sort(order[:cut])) if cut else None)


def test_folder():
    """The folder reported as the test set ("" = none); ONLINE reads no TRAIN_DIR, so it has no sibling test folder."""
    return config.TEST_DIR if config.ONLINE else config.test_dir()


def load_data(codec, quiet=False):
    """(train, validation, test) CaptchaSets. Validation: a seeded VALIDATION part of TRAIN_DIR (ONLINE:
    ONLINE_TEST captchas rendered with their own seed); test: config.test_dir(), or None. ONLINE: train is None."""
    size = (config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS)
    test_dir = test_folder()
    test = data.load_folder(test_dir, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet) if test_dir else None
    if config.ONLINE:
        seed = f"online-test{config.SEED}"
        images, texts = online.render_set(seed, config.ONLINE_TEST, codec.charset, codec.length[1], *size,
                                          config.FONTS, processes=max(1, torch_util.cpu_count() // local_world()))
        texts = [codec.normalize(t) for t in texts]
        return None, data.CaptchaSet([f"{seed}-{i}" for i in range(len(texts))], texts,
                                     images.transpose(0, 2, 3, 1), codec), test
    train_set = data.load_folder(config.TRAIN_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet,
                                 unlabeled_ok=same_folder(config.UNLABELED_DIR, config.TRAIN_DIR))
    if 0 < config.LIMIT < len(train_set):  # a seeded sample, drawn apart from the validation split's seed
        keep = np.sort(torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.SEED + 1))
                       .numpy()[:config.LIMIT])
        train_set = data.CaptchaSet([train_set.paths[i] for i in keep], [train_set.texts[i] for i in keep],
                                    train_set.images[keep], codec)
    return (*split_validation(train_set, config.VALIDATION, config.SEED), test)


def same_folder(a, b):
    return bool(a and b) and os.path.realpath(a) == os.path.realpath(b)


def load_unlabeled(train_set, val_set, test_set, codec, quiet=False):
    """(PseudoLabels without readings yet, their images (N, H, W, C) uint8), or (None, None) without UNLABELED_DIR.
    Never the run's labelled, validation or test images (UNLABELED_DIR = the test folder is refused)."""
    folder = config.UNLABELED_DIR
    if not folder:
        return None, None
    if config.ONLINE:
        raise config.ConfigError("UNLABELED_DIR is for training on a folder, not with ONLINE (fresh labelled captchas)")
    if same_folder(folder, test_folder()):
        raise config.ConfigError(f"UNLABELED_DIR={folder} is the test folder: test images must never be trained on, "
                                 f"not even with pseudo-labels; name another folder")
    if not config.VALIDATION:
        raise config.ConfigError("UNLABELED_DIR needs a validation part (VALIDATION > 0): it decides when the model "
                                 "is good enough to give pseudo-labels (PSEUDO_FROM)")
    labelled = [p for s in (train_set, val_set, test_set) if s for p in s.paths]
    items = data.unlabeled_images(folder, labelled, truth_from_names=same_folder(folder, config.TRAIN_DIR))
    paths = [p for p, _ in items]
    images, ok, failed = data.decode_images(paths, config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS,
                                            config.CACHE_DIR, quiet)
    if failed and not quiet:
        names = ", ".join(os.path.basename(p) for p in list(failed)[:5]) + (", ..." if len(failed) > 5 else "")
        print(f"warning: {folder}: {len(failed)} unreadable images left out: {names}")
    keep = np.flatnonzero(ok)
    pseudo = PseudoLabels([paths[i] for i in keep], [items[i][1] for i in keep], codec, len(train_set))
    return pseudo, images[keep]


def plan_epochs(n_train):
    """EPOCHS, or (0) enough epochs to see about IMAGES_SEEN images, kept within MIN_EPOCHS..MAX_EPOCHS."""
    if config.EPOCHS:
        return config.EPOCHS
    return max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(config.IMAGES_SEEN / max(1, n_train))))


def plan_cooldown(epochs, epoch):
    """Epochs of cool-down after a PATIENCE stop at `epoch`: COOLDOWN of the planned ones, at least 1, within the
    plan; 0 = none."""
    if config.COOLDOWN <= 0:
        return 0
    return min(max(1, round(config.COOLDOWN * epochs)), epochs - epoch)


def cooldown_schedule(optimizer, steps):
    """The learning rate once PATIENCE has run out: from each group's current rate linearly to 0 over `steps`
    optimizer steps (it takes over from the one-cycle scheduler)."""
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=steps)


def plan_batch(n_train):
    """BATCH_SIZE, or (0) 128, or for a small set the power of 2 nearest a sixteenth of it, 16 to 128."""
    if config.BATCH_SIZE:
        return config.BATCH_SIZE
    if not n_train:
        return 128
    return max(16, min(128, 2 ** round(math.log2(max(1, n_train / 16)))))


def plan_patience(epochs):
    """PATIENCE, or (0) a quarter of the planned epochs, at least 3; None = never stop early."""
    if config.PATIENCE < 0:
        return None
    return config.PATIENCE or max(3, epochs // 4)


def resolve_small_set(n_train):
    """Set AUGMENT and LABEL_SMOOTHING where they are -1 (by the set's size): AUTO_AUGMENT and AUTO_SMOOTHING for a
    set of `n_train` training images under SMALL_SET, else off (as for fresh ONLINE data, n_train None). A small
    set is memorised long before a run ends; both regularise it (BENCHMARKS.md: what each was compared against)."""
    small = n_train is not None and n_train < SMALL_SET
    if config.AUGMENT < 0:
        config.AUGMENT = AUTO_AUGMENT if small else 0.0
    if config.LABEL_SMOOTHING < 0:
        config.LABEL_SMOOTHING = AUTO_SMOOTHING if small else 0.0


def run_paths(run):
    return (os.path.join(config.WEIGHTS_DIR, f"{run}_best.pt"), os.path.join(config.WEIGHTS_DIR, f"{run}_last.pt"))


def taken(run):
    return any(os.path.exists(p) for p in run_paths(run))


def choose_run(base, resume):
    """The run name: a new run takes `base`, or base-2, base-3, ... when that is taken (never replacing another run's
    checkpoints); --resume=1 continues the newest existing one of them."""
    if resume:
        pattern = re.compile(re.escape(base) + r"(-\d+)?_last\.pt")
        found = [f for f in os.listdir(config.WEIGHTS_DIR) if pattern.fullmatch(f)] if os.path.isdir(
            config.WEIGHTS_DIR) else []
        if not found:
            raise torch_util.CheckpointError(f"--resume=1: no {run_paths(base)[1]} to continue (RUN={base!r}); "
                                             f"start a new run without --resume")
        newest = max(found, key=lambda f: os.path.getmtime(os.path.join(config.WEIGHTS_DIR, f)))
        return newest[:-len("_last.pt")]
    return next(n for n in [base] + [f"{base}-{k}" for k in range(2, 100_000)] if not taken(n))


def check_paths():
    """Refuse unusable output paths before any training time is spent."""
    if os.path.exists(config.WEIGHTS_DIR) and not os.path.isdir(config.WEIGHTS_DIR):
        raise config.ConfigError(f"WEIGHTS_DIR={config.WEIGHTS_DIR} is a file, not a folder: name a folder "
                                 f"(--weights_dir=weights)")
    if os.path.isdir(config.RESULTS):
        raise config.ConfigError(f"RESULTS={config.RESULTS} is a folder: name a file (--results=results.txt)")
    try:
        os.makedirs(config.WEIGHTS_DIR, exist_ok=True)
    except OSError as e:
        raise config.ConfigError(f"WEIGHTS_DIR={config.WEIGHTS_DIR} cannot be created ({e.strerror})") from None
    for path in (config.WEIGHTS_DIR, os.path.dirname(os.path.abspath(config.RESULTS))):
        if not os.access(path, os.W_OK):
            raise config.ConfigError(f"{path} is not writable: choose another WEIGHTS_DIR / RESULTS")


def online_workers(device):
    """ONLINE_WORKERS, or (0) the cores the training processes on this machine leave: with a GPU every core but
    one for each process; on the CPU half the cores (rendering a captcha costs about what a CNN step on it costs)."""
    if config.ONLINE_WORKERS:
        return config.ONLINE_WORKERS
    cores, world = torch_util.cpu_count(), local_world()
    return max(1, (cores - world) // world if device.type != "cpu" else cores // (2 * world))


def online_batches(producer, batch_size, device, codec):
    """One epoch of the producer's chunks as (images, labels, lengths) batches on the device."""
    for _ in producer.sizes:
        images, texts = producer.next_chunk()
        texts = [codec.normalize(t) for t in texts]
        chunk = (torch.from_numpy(images), torch.tensor([codec.encode(t) for t in texts], dtype=torch.int64),
                 torch.tensor([len(t) for t in texts], dtype=torch.int64))
        if device.type == "cuda":
            chunk = [t.pin_memory().to(device, non_blocking=True) for t in chunk]
        for i in range(0, len(texts), batch_size):
            yield tuple(t[i:i + batch_size] for t in chunk)


def place(dataset, device, stream="auto", say=print):
    """(tensors, streamed): the set's tensors on the device when they fit (or stream="0"), else on the host,
    pinned, for data.stream_batches."""
    nbytes = dataset.images.nbytes
    if stream == "1" or stream != "0" and not data.fits_on_device(nbytes, device):
        say(f"{len(dataset)} images ({nbytes / 2**30:.2f} GiB) stay in host memory and stream to {device} in chunks")
        return data.host_tensors(dataset.tensors("cpu"), device), True
    return dataset.tensors(device), False


def make_model(codec, device, init=None, say=print, channels_last=None, name=None, settings=None):
    """(model on `device`, build_args, loss_fn, channels_last) for `name` (config.MODEL) with its options read
    from `settings` (config.py's). channels_last (None: on) puts the weights in NHWC, the layout fast
    convolutions use on GPUs and, with oneDNN, on CPUs (BENCHMARKS.md "Thread settings")."""
    name = name or config.MODEL
    try:  # an unknown model, a trick it does not take, or an unusable weight file: a configuration error
        kind = models.head(name)
        classes = kind.num_classes(codec)
        build_args = dict(name=name, in_channels=config.CHANNELS, num_classes=classes,
                          positions=codec.max_len, height=config.IMAGE_HEIGHT, width=config.IMAGE_WIDTH,
                          **models.model_options(name, config.as_dict() if settings is None else settings))
        model = models.build_model(**build_args)
        if config.PRETRAINED:
            say(models.load_pretrained(model, config.PRETRAINED))
        if init:
            say(torch_util.load_matching(model, init, codec))
        channels_last = True if channels_last is None else channels_last
        model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        loss_fn = models.losses.make_loss(kind.loss, model, classes, config.LABEL_SMOOTHING, config.CENTER_LOSS,
                                         config.CENTER_LR)
    except (KeyError, ValueError) as e:
        raise config.ConfigError(e.args[0]) from None
    return model, build_args, loss_fn, channels_last


def make_optimizer(model, device):
    """AdamW; the fused (one kernel) implementation on CUDA."""
    return torch.optim.AdamW(model.parameters(), lr=config.LR, weight_decay=config.WEIGHT_DECAY,
                             fused=device.type == "cuda")


def local_world():
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def distributed():
    """(rank, world size, local rank) under torchrun (RANK / WORLD_SIZE / LOCAL_RANK); (0, 1, None) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None
    return int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"])


def barrier(device):
    if dist.is_initialized():
        dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()


def state_digest(state_dict):
    """SHA-256 of a state dict's names and values: equal digests, equal weights and buffers."""
    h = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main():
    # resume: continue weights/<RUN>_last.pt; stream: "1" keeps the set in host memory even when it fits on the
    # device; compile_backend: torch.compile's backend; state_hash: a path, each rank writes the SHA-256 of the
    # weights it would save (with EMA: the average)
    _, opts = config.parse(resume=False, stream="auto", compile_backend="inductor", state_hash="")
    rank, world, local_rank = distributed()
    device = torch_util.pick_device(config.DEVICE, local_rank)
    threads = config.THREADS
    if not threads and config.ONLINE and device.type == "cpu":  # the generator processes keep their cores
        threads = max(1, torch_util.cpu_count() // local_world() - online_workers(device))
    torch_util.set_threads(threads, local_world())
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        with contextlib.ExitStack() as closing:
            train(opts, rank, world, device, closing)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def restore_row(row):
    """Append the resumed checkpoint's results row if results.txt lacks it (the run was killed in between)."""
    try:
        rows = torch_util.read_results(config.RESULTS) if os.path.exists(config.RESULTS) else []
    except (OSError, ValueError):
        rows = []
    if not any(r.get("run") == row["run"] and r.get("epoch") == str(row["epoch"]) for r in rows):
        torch_util.append_row(config.RESULTS, torch_util.RESULT_COLUMNS, row)


def check_resume(resume, path, codec, epochs):
    """Refuse a --resume=1 whose settings differ from the run it continues (another MODEL, data or EPOCHS)."""
    before = resume.get("config", {})
    now = dict(MODEL=config.MODEL, CHARSET=codec.charset, IMAGE_WIDTH=config.IMAGE_WIDTH,
               IMAGE_HEIGHT=config.IMAGE_HEIGHT, CHANNELS=config.CHANNELS, EMA=config.EMA)
    differ = [f"{k} {before[k]!r} -> {v!r}" for k, v in now.items() if k in before and before[k] != v]
    planned = resume.get("planned_epochs", before.get("EPOCHS"))
    if planned and epochs != planned:
        differ.append(f"EPOCHS {planned} -> {epochs}")
    if differ:
        raise config.ConfigError(f"--resume=1 continues {path}, trained with other settings ({'; '.join(differ)}). "
                                 f"Resume with the run's own settings, or start a new run from it: "
                                 f"--init={path} (fine-tuning, a fresh schedule)")


# INIT auto's starting point: a model trained on rendered captchas with affine augmentation. Not default.pt, the
# best reader of those captchas (trained on fresh ones without augmentation): as a starting point it read fewer
# images of the small real sets (BENCHMARKS.md, "Where own-data training starts")
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", torch_util.PRETRAINED_CHECKPOINT)


def resolve_init(resume, say):
    """INIT, or for INIT = "auto" the shipped model when this run could start from it ("" otherwise): a run that
    reads a folder (not ONLINE), is not resumed, and whose MODEL and options are the shipped model's."""
    if config.INIT != "auto":
        return config.INIT
    if resume or config.ONLINE:
        return ""
    if not os.path.exists(SHIPPED):
        say(f"INIT auto: random weights ({os.path.relpath(SHIPPED)} is missing; `git checkout -- "
            f"{os.path.relpath(SHIPPED)}` restores it, --init=PATH names another starting point)")
        return ""
    shipped = torch_util.load_checkpoint(SHIPPED)
    try:  # an unknown model or a trick it does not take: the same message make_model gives
        ours = models.model_options(config.MODEL, config.as_dict())
    except (KeyError, ValueError) as e:
        raise config.ConfigError(e.args[0]) from None
    theirs = {k: shipped["build_args"].get(k) for k in ours}
    if shipped["model_name"] != config.MODEL or ours != theirs:
        say(f"INIT auto: random weights (the shipped {os.path.relpath(SHIPPED)} is {shipped['model_name']} "
            f"{theirs}, this run {config.MODEL} {ours})")
        return ""
    say(f"INIT auto: starting from the shipped {os.path.relpath(SHIPPED)} (features learnt on generated captchas; "
        f"--init= starts from random weights, --init=PATH from another checkpoint)")
    return SHIPPED


def train(opts, rank, world, device, closing):
    lead = rank == 0
    say = print if lead else (lambda *a, **k: None)
    check_paths()
    config.INIT = resolve_init(opts["resume"], say)
    init = torch_util.load_checkpoint(config.INIT) if config.INIT else None
    if init:  # fine-tuning: the checkpoint's model and options; this run's data (size, charset)
        config.MODEL = init["model_name"]
        for option in models.OPTIONS:
            if option in init["build_args"]:
                setattr(config, option.upper(), init["build_args"][option])
        say(f"INIT {config.INIT}: model {config.MODEL}, options {models.model_options(config.MODEL, config.as_dict())}")
    run = choose_run(config.run_name(), opts["resume"])
    if run != config.run_name() and not opts["resume"] and lead:
        say(f"run {config.run_name()!r} exists in {config.WEIGHTS_DIR}/: this run is {run!r} "
            f"(--resume=1 continues the newest; --run=NAME names a run)")
    best_path, last_path = run_paths(run)
    resume = torch_util.load_checkpoint(last_path) if opts["resume"] else None
    if resume:
        config.EPOCHS = config.EPOCHS or resume.get("planned_epochs", 0)
        config.MODEL = resume["model_name"]
        for option in models.OPTIONS:
            if option in resume["build_args"]:
                setattr(config, option.upper(), resume["build_args"][option])
    start_epoch = resume["epoch"] + 1 if resume else 1

    codec = resolve_data(say)
    if not lead:  # rank 0 decodes first and fills the cache; the others then read it
        barrier(device)
    train_set, val_set, test_set = load_data(codec, quiet=not lead)
    pseudo, unlabeled = load_unlabeled(train_set, val_set, test_set, codec, quiet=not lead)
    if lead:
        barrier(device)
    n_train = len(train_set) if train_set else None
    epochs = plan_epochs(pseudo.epoch_images if pseudo else n_train if n_train else config.ONLINE_COUNT)
    if resume:
        check_resume(resume, last_path, codec, epochs)
    patience = plan_patience(epochs)
    batch_size = config.BATCH_SIZE = plan_batch(n_train)  # resolved values go into the checkpoint's config
    resolve_small_set(n_train)  # AUGMENT, LABEL_SMOOTHING
    producer = None
    if config.ONLINE:  # the processes render (PIL, numpy) and never touch the device
        producer = closing.enter_context(online.Producer(
            config.SEED, config.ONLINE_COUNT, batch_size, codec.charset, codec.length[1], config.IMAGE_WIDTH,
            config.IMAGE_HEIGHT, config.CHANNELS, config.FONTS, online_workers(device), start_epoch, epochs,
            rank, world))
        source = (f"ONLINE {producer.steps * batch_size * world} fresh captchas per epoch from {producer.workers} "
                  f"generator process{'es' if producer.workers > 1 else ''}" + (" per training process" * (world > 1)))
    else:
        source = f"{n_train} training images" + (f" (a sample: LIMIT={config.LIMIT})" if config.LIMIT else "")
    say(f"  split     {source}, {len(val_set) if val_set else 0} validation"
        + (f" (VALIDATION={config.VALIDATION}, SEED={config.SEED})" if not config.ONLINE else "")
        + (f", test {test_folder()}: {len(test_set)} images (reported, never used to choose)" if test_set
           else ", no test folder (TEST_DIR)"))
    if pseudo is not None:
        say(f"  unlabeled {len(pseudo)} images from {config.UNLABELED_DIR} (UNLABELED_DIR): up to "
            f"{pseudo.extra} pseudo-labelled images an epoch (PSEUDO_RATIO={config.PSEUDO_RATIO}), read with "
            f"confidence >= {config.PSEUDO_THRESHOLD} by the kept model once it reads {config.PSEUDO_FROM:.0%} of "
            f"validation (PSEUDO_THRESHOLD, PSEUDO_FROM)")
        if len(pseudo):  # one set: the labelled images, then the unlabelled ones (label rows filled by refreshes)
            train_set = data.CaptchaSet(train_set.paths + pseudo.paths, train_set.texts + [""] * len(pseudo),
                                        np.concatenate([train_set.images, unlabeled]), codec)
        else:
            pseudo = None
    train, streamed = place(train_set, device, opts["stream"], say) if train_set else (None, False)
    held = lambda s: s.tensors(device if data.fits_on_device(s.images.nbytes, device) else torch.device("cpu"))
    val, test = (held(s) if s else None for s in (val_set, test_set))

    torch_util.seed_everything(config.SEED)
    model, build_args, loss_fn, channels_last = make_model(codec, device, init, say)
    kind = models.head(config.MODEL)
    decode, plain_loss = kind.decode, kind.loss
    optimizer = make_optimizer(model, device)
    steps_per_epoch = (producer.steps if producer else
                       (pseudo.epoch_images if pseudo else n_train) // (batch_size * world))
    if steps_per_epoch == 0:
        what = f"ONLINE_COUNT={config.ONLINE_COUNT}" if producer else f"{config.TRAIN_DIR}: {n_train}"
        raise data.DataError(f"{what} training images, fewer than one batch (BATCH_SIZE={batch_size}"
                             + (f" x {world} processes" if world > 1 else "") + "); lower --batch_size")
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.LR, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.15)
    keeper = Keeper(len(val_set) if val_set else 0, resume.get("keeper") if resume else None)
    if resume:  # with EMA the checkpoint's "model" is the average, "trained" the weights the optimizer steps
        model.load_state_dict(resume.get("trained") or resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if keeper.cool_until is not None:  # stopped during the cool-down: its schedule (steps) is in the state
            scheduler = cooldown_schedule(optimizer, 1)
        scheduler.load_state_dict(resume["scheduler"])
        if lead and resume.get("row"):
            restore_row(resume["row"])
        kept = keeper.kept
        if pseudo and os.path.exists(best_path):
            pseudo.kept_state = torch_util.load_checkpoint(best_path)["model"]
        say(f"resumed {last_path} after epoch {resume['epoch']}" + (
            f" (kept epoch {kept['epoch']}, validation sequence accuracy {kept['seq']:.4f})" if kept else ""))
    # made from the (resumed) trained weights, then given the saved average where the checkpoint holds one
    average = WeightAverage(model, config.EMA, resume.get("average_updates", 0) if resume else 0) if config.EMA else None
    if average and resume and "trained" in resume:
        average.module.load_state_dict(resume["model"])
    shown = average.module if average else model  # what is evaluated, kept and saved
    if rank:  # the same weights everywhere (DDP also broadcasts them), but each process its own augmentations
        torch.manual_seed(config.SEED + 7919 * rank)
    net = model  # what training calls; `model` (plain, uncompiled) evaluates and is saved
    if world > 1:
        # a 1-channel stem's weight (C, 1, 3, 3) gets its gradient with another stride on the size-1 axis: the
        # same memory layout, but DDP warns about it
        warnings.filterwarnings("ignore", "Grad strides do not match bucket view strides")
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.COMPILE:
        net = torch.compile(net, backend=opts["compile_backend"])
    augment = data.Augment.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    budget = "" if config.EPOCHS else f" (EPOCHS=0: about {config.IMAGES_SEEN} images)"
    say(f"run {run}: model {config.MODEL}, {params / 1e6:.2f} M parameters, on {device}"
        + (f" x {world} processes" if world > 1 else "") + f"\n  plan      {epochs} epochs{budget} of "
        f"{steps_per_epoch} steps, batch {batch_size}" + (f" x {world}" if world > 1 else "")
        + (f", stop after {patience} epochs without progress on validation" if patience else "")
        + f"\n  augment   {augment}" + (f", label smoothing {config.LABEL_SMOOTHING:g}" * (config.LABEL_SMOOTHING > 0))
        + (", torch.compile" if config.COMPILE else "")
        + (", channels_last" if channels_last else ""))
    bar = lead and sys.stdout.isatty()  # a log file gets one line per epoch, not a flood of progress bars
    trained_seconds = 0.0

    for epoch in range(start_epoch, epochs + 1):
        t0 = time.time()
        if producer:
            producer.reset_stats()
            batches = online_batches(producer, batch_size, device, codec)
        else:
            shuffle = torch.Generator().manual_seed(config.SEED * 1000 + epoch)  # the same on every rank
            order = (pseudo.order(shuffle, batch_size, rank, world) if pseudo
                     else data.epoch_order(n_train, batch_size, shuffle, rank, world))
            batches = (data.stream_batches(train, order, batch_size, device) if streamed
                       else data.resident_batches(train, order, batch_size))
        loss, rate = train_one_epoch(net, optimizer, scheduler, loss_fn, batches, steps_per_epoch, device,
                                     f"epoch {epoch}/{epochs}", augment, channels_last, bar=bar, average=average)
        trained_seconds += time.time() - t0
        generation = producer.report(time.time() - t0, rate) if producer else ""
        if world > 1:  # BatchNorm statistics differ by process (DDP sends rank 0's before each forward): align them
            for buffer in [*model.buffers(), *(average.module.buffers() if average else ())]:
                dist.broadcast(buffer, 0)
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} at epoch {epoch}; lower --lr")
        if val_set:
            val_preds, val_loss, temperature = evaluate(shown, val, codec, decode, device, 512, plain_loss)
            val_char, val_seq = torch_util.accuracy(val_set.texts, val_preds)
        else:  # VALIDATION = 0: the last epoch is kept
            val_preds, val_loss, val_char, val_seq, temperature = None, float("nan"), math.nan, math.nan, 1.0
        test_char = test_seq = math.nan
        if test_set:
            test_preds = evaluate(shown, test, codec, decode, device, 512)[0]
            test_char, test_seq = torch_util.accuracy(test_set.texts, test_preds)
        seconds = time.time() - t0
        improved = keeper.offer(epoch, val_seq, val_char, val_loss, (test_seq, test_char) if test_set else None)
        say(f"epoch {epoch}/{epochs}: loss {loss:.4f}"
            + (f", validation seq acc {val_seq:.4f} (char {val_char:.4f}, loss {val_loss:.4f})" if val_set else "")
            + (f", test seq acc {test_seq:.4f}" if test_set else "")
            + f", {rate:.0f} img/s, {seconds:.0f}s" + (" *" if improved else "")
            + (f"\n{generation}" if generation else ""))
        if val_set and config.SHOW:
            say(show_samples(val_set.texts, val_preds, config.SHOW, epoch))
        if pseudo:
            pseudo.trained_since += steps_per_epoch * batch_size * world
            if improved:
                pseudo.keep(shown, temperature)
            if pseudo.due(keeper.kept):
                pseudo.refresh(shown, train, decode, device, keeper.kept["epoch"], say)
        if lead:
            row = dict(run=run, epoch=epoch, train_loss=f"{loss:.5f}", val_loss=f"{val_loss:.5f}",
                       char_acc=f"{val_char:.5f}", seq_acc=f"{val_seq:.5f}", test_char_acc=f"{test_char:.5f}",
                       test_seq_acc=f"{test_seq:.5f}", lr=f"{scheduler.get_last_lr()[0]:.3e}", seconds=f"{seconds:.1f}",
                       images_per_s=f"{rate:.0f}")
            meta = dict(epoch=epoch, accuracy=val_seq, char_accuracy=val_char, test_accuracy=test_seq,
                        test_char_accuracy=test_char, temperature=temperature, config=config.as_dict())
            if improved:
                torch_util.save_checkpoint(best_path, shown, build_args, codec, **meta)
            # the last checkpoint carries its results row: a run killed before the row is written writes it on resume
            trained = dict(trained=torch_util.host_state(model), average_updates=average.updates) if average else {}
            torch_util.save_checkpoint(last_path, shown, build_args, codec, **meta, keeper=keeper.state(),
                                       planned_epochs=epochs, row=row, optimizer=optimizer.state_dict(),
                                       scheduler=scheduler.state_dict(), **trained)
            torch_util.append_row(config.RESULTS, torch_util.RESULT_COLUMNS, row)
        stop, cool = "", 0
        cooling = keeper.cool_until is not None
        if config.TARGET_ACCURACY and val_seq >= config.TARGET_ACCURACY:
            stop = f"validation reached TARGET_ACCURACY {config.TARGET_ACCURACY}"
        elif cooling and epoch >= keeper.cool_until and epoch < epochs:
            stop = f"cool-down finished: stopping after epoch {epoch}"
        elif patience and val_set and keeper.since >= patience and epoch < epochs and not cooling:
            why = (f"no progress on validation (errors, character accuracy, loss) for {keeper.since} "
                   f"epoch{'s' * (keeper.since > 1)} (PATIENCE {patience})")
            cool = plan_cooldown(epochs, epoch)
            stop = "" if cool else f"{why}: stopping after epoch {epoch}"
            if cool:
                say(f"{why}: the learning rate now falls to 0 over {cool} epoch{'s' * (cool > 1)} (COOLDOWN "
                    f"{config.COOLDOWN}), then the run stops")
        elif config.TIME_LIMIT and trained_seconds >= config.TIME_LIMIT and epoch < epochs:
            stop = f"TIME_LIMIT {config.TIME_LIMIT:g}s reached after epoch {epoch}"
        if world > 1:  # rank 0 decides for every process (its clock, its cool-down)
            flag = torch.tensor([float(bool(stop)), float(cool)], device=device)
            dist.broadcast(flag, 0)
            stop = stop or ("rank 0 stops" if flag[0].item() else "")
            cool = int(flag[1].item())
        if stop:
            say(stop)
            break
        if cool:
            scheduler = cooldown_schedule(optimizer, cool * steps_per_epoch)
            keeper.cool_until = epoch + cool

    if opts["state_hash"]:
        with open(f"{opts['state_hash']}.rank{rank}", "w") as f:
            f.write(state_digest(shown.state_dict()) + "\n")
    if lead:
        say(f"plot: {torch_util.plot_results(config.RESULTS, os.path.splitext(config.RESULTS)[0] + '.png')}")
    if pseudo:
        say(f"unlabeled: {pseudo.refreshes} refreshes; last {pseudo.last}" if pseudo.refreshes else
            f"unlabeled: no pseudo-labels (the kept model never read {config.PSEUDO_FROM:.0%} of validation: "
            f"PSEUDO_FROM)")
    kept = keeper.kept
    result = f"best: {best_path} (epoch {kept['epoch']})"
    if val_set:
        result += f", validation seq acc {kept['seq']:.4f} (char {kept['char']:.4f})"
    if kept["test"]:
        result += f", test seq acc {kept['test'][0]:.4f} (char {kept['test'][1]:.4f})"
    say(result)


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, data.DataError, torch_util.CheckpointError) as e:
        sys.exit(f"error: {e}")
