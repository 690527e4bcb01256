"""The run engine: one optimizer step, one epoch, evaluation (with the fitted temperature), the weight
average, the keeper that chooses the epoch to keep and counts epochs without progress, the model and
optimizer of a run, and its batches (resident, streamed, or fresh captchas)."""
import copy
import math
import sys
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

import config
import models
from core.batches import fits_on_device, host_tensors, to_float
from core.checkpoint import load_matching
from core.device import autocast, cpu_count, local_world


# the grid a checkpoint's temperature is fitted on, 0.5-2.8: a validation part read without a mistake would pull
# it as low as the grid goes (sharper is always better there), so the grid stops a little below where models
# trained with LABEL_SMOOTHING 0.1 land on images they did not train on (about 0.6)
TEMPERATURES = 2.0 ** (torch.arange(-4, 7) / 4)
PLAIN = TEMPERATURES.tolist().index(1.0)  # the grid holds 1 exactly: its loss is the plain validation loss
SLACK = 0.002               # validation errors (a fraction of the part, at least 1 image) within which a later epoch
                            # with a lower validation loss is kept: a one-image difference is noise, not a better model


def train_batch(model, optimizer, loss_fn, images, labels, lengths, device, augment=None, channels_last=False,
                relabel=None):
    """One optimizer step on a uint8 batch (B, C, H, W) already on the device; returns the loss as a detached
    device tensor (no host sync). `augment`: a Augment (or None), applied on the device. `relabel`: None, or
    (x, labels, lengths, augment) -> (x, labels, lengths, scale), which reads the batch's unlabelled rows and
    augments it (PseudoLabels.relabel, PSEUDO_MODE "online")."""
    x = to_float(images)
    scale = 1.0
    if relabel:
        x, labels, lengths, scale = relabel(x, labels, lengths, augment)
    elif augment:
        x = augment(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device):
        logits = model(x)
    loss = loss_fn(logits, labels, lengths) * scale
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_one_epoch(model, optimizer, scheduler, loss_fn, batches, steps, device, desc, augment=None,
                    channels_last=False, bar=True, average=None, relabel=None):
    """One pass over `batches` ((images, labels, lengths) on the device, `steps` of them); returns (mean loss,
    images/s). Under torchrun: the mean over every process, and the images of every process. `average`: a
    WeightAverage updated after every step, or None; `relabel`: see train_batch."""
    model.train()
    total = torch.zeros((), device=device)
    done = seen = 0
    start = time.time()
    progress = tqdm(batches, total=steps, desc=desc, unit="batch", file=sys.stdout, leave=False, disable=not bar)
    for images, labels, lengths in progress:
        total += train_batch(model, optimizer, loss_fn, images, labels, lengths, device, augment, channels_last,
                             relabel)
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
        with autocast(device):
            logits = model(to_float(batch[0]))
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

    def __init__(self, n_val, state=None, chooses=True):
        # chooses False (a validation part too small to choose on): every epoch is kept, so the last one is
        self.n_val, self.slack, self.chooses = n_val, max(1, round(SLACK * n_val)), chooses
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
        keep = (not self.n_val or not self.chooses or errors < self.fewest
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


def cooldown_schedule(optimizer, steps):
    """The learning rate once PATIENCE has run out: from each group's current rate linearly to 0 over `steps`
    optimizer steps (it takes over from the one-cycle scheduler)."""
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=steps)


def online_workers(s, device):
    """ONLINE_WORKERS, or (0) the cores the training processes on this machine leave: with a GPU every core but
    one for each process; on the CPU half the cores (rendering a captcha costs about what a CNN step on it costs)."""
    if s.ONLINE_WORKERS:
        return s.ONLINE_WORKERS
    cores, world = cpu_count(), local_world()
    return max(1, (cores - world) // world if device.type != "cpu" else cores // (2 * world))


def online_batches(producer, batch_size, device, codec, pool=None):
    """One epoch of the producer's chunks as (images, labels, lengths) batches on the device.

    `pool` (a ReplayPool, ONLINE_REPLAY): every chunk is also written to it, and a step whose next chunk is not
    rendered yet trains on a batch drawn from the pool instead of waiting; the epoch is as many steps either way
    (the producer's steps), and a chunk left over at its end stays in the pool for the epochs after."""
    if pool is None:
        for _ in producer.sizes:
            yield from _chunk_batches(producer, batch_size, device, codec)
        return
    steps = 0
    while steps < producer.steps:
        if pool.filled and not producer.ready():
            steps += 1
            yield pool.draw(batch_size)
            continue
        for batch in _chunk_batches(producer, batch_size, device, codec, pool):
            if steps < producer.steps:
                steps += 1
                yield batch


def _chunk_batches(producer, batch_size, device, codec, pool=None):
    images, texts = producer.next_chunk()
    texts = [codec.normalize(t) for t in texts]
    chunk = (torch.from_numpy(images), torch.tensor([codec.encode(t) for t in texts], dtype=torch.int64),
             torch.tensor([len(t) for t in texts], dtype=torch.int64))
    if device.type == "cuda":
        chunk = [t.pin_memory().to(device, non_blocking=True) for t in chunk]
    if pool is not None:
        pool.add(*chunk)
    for i in range(0, len(texts), batch_size):
        yield tuple(t[i:i + batch_size] for t in chunk)


def place(dataset, device, stream="auto", say=print):
    """(tensors, streamed): the set's tensors on the device when they fit (or stream="0"), else on the host,
    pinned, for core.batches.stream_batches."""
    nbytes = dataset.images.nbytes
    if stream == "1" or stream != "0" and not fits_on_device(nbytes, device):
        say(f"{len(dataset)} images ({nbytes / 2**30:.2f} GiB) stay in host memory and stream to {device} in chunks")
        return host_tensors(dataset.tensors("cpu"), device), True
    return dataset.tensors(device), False


def make_model(s, codec, device, init=None, say=print, channels_last=None, candidates=False, labelled=None):
    """(model on `device`, build_args, loss_fn, channels_last) for s.MODEL with its options read from the settings
    `s`; `init`: a checkpoint to start from (fine-tuning); `labelled`: a CaptchaSet of labelled training images on
    which a classifier carried over from `init` must fit better than a fresh one (keep_fitting_classifier);
    `candidates`: the training labels may hold candidates (models.losses). channels_last (None: on) puts the
    weights in NHWC, the layout fast convolutions use on GPUs and, with oneDNN, on CPUs (BENCHMARKS.md "Thread
    settings")."""
    name = s.MODEL
    try:  # an unknown model, a trick it does not take, or an unusable weight file: a configuration error
        kind = models.head(name)
        classes = kind.num_classes(codec)
        build_args = dict(name=name, in_channels=s.CHANNELS, num_classes=classes,
                          positions=codec.max_len, height=s.IMAGE_HEIGHT, width=s.IMAGE_WIDTH,
                          **models.model_options(name, s.as_dict()))
        model = models.build_model(**build_args)
        if s.PRETRAINED:
            say(models.load_pretrained(model, s.PRETRAINED))
        check = init and labelled is not None and len(labelled)  # the fresh classifier kept to compare with
        fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.fc.")} if check else None
        if init:
            say(load_matching(model, init, codec))
        channels_last = True if channels_last is None else channels_last
        model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        if check:
            keep_fitting_classifier(model, fresh, labelled, codec, kind, device, say)
        loss_fn = models.losses.make_loss(kind.loss, model, classes, s.LABEL_SMOOTHING, s.CENTER_LOSS, s.CENTER_LR,
                                          candidates)
    except (KeyError, ValueError) as e:
        raise config.ConfigError(e.args[0]) from None
    return model, build_args, loss_fn, channels_last


def keep_fitting_classifier(model, fresh, labelled, codec, kind, device, say=print):
    """A classifier (head.fc) carried over from the starting checkpoint stays only where it reads the labelled
    training images better than the freshly initialised one `fresh` does (a lower loss on them before any
    training); otherwise the fresh one replaces it. A checkpoint of another style can read a set confidently wrong:
    `pretrained.pt`'s rows resampled to henan_digits' 32-pixel images scored a loss of 9.9 against a fresh
    classifier's 3.9, and started from, read 11 of 2000 test images fewer (BENCHMARKS.md)."""
    state = model.state_dict()
    carried = {k: v.clone() for k, v in state.items() if k in fresh}
    if not carried or all(torch.equal(carried[k].cpu(), fresh[k]) for k in carried):
        return  # nothing was carried over
    tensors = labelled.tensors(device)
    loss = evaluate(model, tensors, codec, kind.decode, device, 256, kind.loss)[1]
    model.load_state_dict(fresh, strict=False)
    afresh = evaluate(model, tensors, codec, kind.decode, device, 256, kind.loss)[1]
    model.train()
    if loss < afresh:
        model.load_state_dict(carried, strict=False)
    say(f"  head.fc: the checkpoint's classifier reads the first {len(labelled)} labelled training images with a loss "
        f"of {loss:.3f}, a fresh one {afresh:.3f}: " + ("kept" if loss < afresh else "it starts afresh"))


def make_optimizer(s, model, device):
    """AdamW; the fused (one kernel) implementation on CUDA."""
    return torch.optim.AdamW(model.parameters(), lr=s.LR, weight_decay=s.WEIGHT_DECAY,
                             fused=device.type == "cuda")
