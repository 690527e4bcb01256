"""Train a model on TRAIN_DIR, evaluate on TEST_DIR after every epoch, keep the best checkpoint.

    python train.py                         # config.py as it is
    python train.py --model=resnet18 --epochs=10 --run=r18
    python train.py --resume=1              # continue weights/<RUN>_last.pt
    python train.py --online=1              # fresh captchas every epoch, rendered by generator processes
    torchrun --nproc_per_node=4 train.py    # DistributedDataParallel: one process per GPU (gloo on CPU)

The decoded uint8 set sits on the device when it fits (batches are index slices; normalisation and
augmentation run there, in batch); otherwise it stays in pinned host memory and chunks stream in ahead of
the compute. Under torchrun each process takes its share of every epoch (BATCH_SIZE is per process), and
only rank 0 prints, writes results.txt and checkpoints.
"""
import contextlib
import hashlib
import math
import os
import sys
import time
import warnings

import torch
import torch.distributed as dist
from tqdm import tqdm

import config
import data
import models
import online
import torch_util
from models.heads import DECODERS, LOSSES

# private switches for the tests: "1" streams the training set from host memory even when it fits on the device
STREAM = os.environ.get("CAPTCHA_STREAM", "auto")
# a path: at the end each rank writes the SHA-256 of its model's state dict to <path>.rank<N>
STATE_HASH = os.environ.get("CAPTCHA_STATE_HASH", "")
# torch.compile's backend: "eager" lets a test check the compiled path in seconds
COMPILE_BACKEND = os.environ.get("CAPTCHA_COMPILE_BACKEND", "inductor")


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def accuracy(truths, preds):
    """(character accuracy = 1 - normalised edit distance, sequence accuracy)."""
    errors = sum(edit_distance(t, p) for t, p in zip(truths, preds))
    chars = max(1, sum(len(t) for t in truths))
    seq = sum(t == p for t, p in zip(truths, preds)) / max(1, len(truths))
    return max(0.0, 1 - errors / chars), seq


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


def train_step(model, optimizer, loss_fn, train, idx, device, augment=None):
    """train_batch on the batch `idx` of the device-resident (images, labels, lengths)."""
    images, labels, lengths = train
    return train_batch(model, optimizer, loss_fn, images[idx], labels[idx], lengths[idx], device, augment)


def train_one_epoch(model, optimizer, scheduler, loss_fn, batches, steps, device, desc, augment=None,
                    channels_last=False, bar=True):
    """One pass over `batches` ((images, labels, lengths) on the device, `steps` of them); returns (mean loss,
    images/s). Under torchrun: the mean over every process, and the images of every process."""
    model.train()
    total = torch.zeros((), device=device)
    done = seen = 0
    start = time.time()
    progress = tqdm(batches, total=steps, desc=desc, unit="batch", file=sys.stdout, leave=False, disable=not bar)
    for images, labels, lengths in progress:
        total += train_batch(model, optimizer, loss_fn, images, labels, lengths, device, augment, channels_last)
        scheduler.step()
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
def evaluate(model, test, codec, decode, device, batch_size):
    """Predicted texts for the test tensors (on the device, or on the host: then copied batch by batch).

    Under torchrun each process reads its contiguous share and every process gets all the texts, in order."""
    images = test[0]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    lo, hi = len(images) * rank // world, len(images) * (rank + 1) // world
    model.eval()
    texts = []
    for i in range(lo, hi, batch_size):
        with torch_util.autocast(device):
            logits = model(data.to_float(images[i:min(i + batch_size, hi)].to(device, non_blocking=True)))
        texts += decode(logits, codec)[0]
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, texts)
        texts = [t for part in parts for t in part]
    return texts


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


def append_result(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a") as f:
        if new:
            f.write("\t".join(torch_util.RESULT_COLUMNS) + "\n")
        f.write("\t".join(str(row[c]) for c in torch_util.RESULT_COLUMNS) + "\n")


def make_codec(quiet=False):
    """The Codec from CHARSET / LENGTH / CASE_SENSITIVE; "infer" and LENGTH=0 read them from TRAIN_DIR's labels."""
    if config.ONLINE:
        if config.CHARSET == "infer" or not config.LENGTH:
            raise config.ConfigError("ONLINE generates its labels: set CHARSET and LENGTH (not \"infer\" / 0)")
        return data.Codec(config.CHARSET, config.LENGTH, config.CASE_SENSITIVE)
    codec, said = data.infer_codec(config.TRAIN_DIR, config.CHARSET, config.LENGTH, config.CASE_SENSITIVE)
    if said and not quiet:
        print(said)
    return codec


def load_data(codec, quiet=False):
    """(train set, test set) as CaptchaSets; with TEST_DIR = "" a seeded HOLDOUT fraction of TRAIN_DIR is held out.
    ONLINE: no train set (None); with TEST_DIR = "" the test set is ONLINE_TEST captchas rendered in memory."""
    size = (config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS)
    if config.ONLINE:
        if config.TEST_DIR:
            return None, data.load_folder(config.TEST_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet)
        seed = f"online-test{config.SEED}"
        images, texts = online.render_set(seed, config.ONLINE_TEST, config.CHARSET, config.LENGTH, *size, config.FONTS,
                                          processes=max(1, torch_util.cpu_count() // local_world()))
        texts = [codec.normalize(t) for t in texts]
        if not quiet:
            print(f"no TEST_DIR: testing on {config.ONLINE_TEST} captchas rendered with seed {seed!r}")
        return None, data.CaptchaSet([f"{seed}-{i}" for i in range(len(texts))], texts, images.transpose(0, 2, 3, 1),
                                     codec)
    train = data.load_folder(config.TRAIN_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet)
    if config.TEST_DIR:
        return train, data.load_folder(config.TEST_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.SEED)).numpy()
    if not 0 < config.HOLDOUT < 1:
        raise config.ConfigError(f"HOLDOUT={config.HOLDOUT}: with TEST_DIR = \"\" it must be between 0 and 1")
    cut = max(1, round(len(train) * config.HOLDOUT))
    if cut >= len(train):
        raise data.DataError(f"{config.TRAIN_DIR}: {len(train)} images are too few to hold out a test set")
    if not quiet:
        print(f"no TEST_DIR: holding out {cut} of {len(train)} images of {config.TRAIN_DIR} (HOLDOUT={config.HOLDOUT}, "
              f"SEED={config.SEED})")
    pick = lambda ix: data.CaptchaSet([train.paths[i] for i in ix], [train.texts[i] for i in ix],
                                      train.images[ix], codec)
    return pick(order[cut:]), pick(order[:cut])


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
    from `settings` (config.py's). channels_last (None: on CUDA) puts the weights in NHWC, the layout fast GPU
    convolutions use; the CPU keeps the default."""
    name = name or config.MODEL
    try:  # an unknown model, a trick it does not take, or an unusable weight file: a configuration error
        head = models.head_of(name)
        classes = codec.fixed_classes if head == "fixed" else codec.ctc_classes
        build_args = dict(name=name, in_channels=config.CHANNELS, num_classes=classes,
                          positions=codec.max_len, height=config.IMAGE_HEIGHT, width=config.IMAGE_WIDTH,
                          **models.model_options(name, config.as_dict() if settings is None else settings))
        model = models.build_model(**build_args)
        if config.PRETRAINED:
            say(models.load_pretrained(model, config.PRETRAINED))
        if init:
            say(torch_util.load_matching(model, init, codec))
        channels_last = device.type == "cuda" if channels_last is None else channels_last
        model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        loss_fn = models.heads.make_loss(LOSSES[head], model, classes, config.LABEL_SMOOTHING, config.CENTER_LOSS,
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
    _, opts = config.parse(resume=False)
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


def train(opts, rank, world, device, closing):
    lead = rank == 0
    say = print if lead else (lambda *a, **k: None)
    init = torch_util.load_checkpoint(config.INIT) if config.INIT else None
    if init:  # fine-tuning: the checkpoint's model and options; this run's data (size, charset)
        config.MODEL = init["model_name"]
        for option in models.OPTIONS:
            if option in init["build_args"]:
                setattr(config, option.upper(), init["build_args"][option])
        say(f"INIT {config.INIT}: model {config.MODEL}, options {models.model_options(config.MODEL, config.as_dict())}")
    run = config.run_name()
    last_path = os.path.join(config.WEIGHTS_DIR, f"{run}_last.pt")
    best_path = os.path.join(config.WEIGHTS_DIR, f"{run}_best.pt")
    resume = torch_util.load_checkpoint(last_path) if opts["resume"] else None
    start_epoch = resume["epoch"] + 1 if resume else 1
    batch_size = config.BATCH_SIZE

    codec = make_codec(quiet=not lead)
    if not lead:  # rank 0 decodes first and fills the cache; the others then read it
        barrier(device)
    train_set, test_set = load_data(codec, quiet=not lead)
    if lead:
        barrier(device)
    producer = None
    if config.ONLINE:  # the processes render (PIL, numpy) and never touch the device
        producer = closing.enter_context(online.Producer(
            config.SEED, config.ONLINE_COUNT, batch_size, config.CHARSET, config.LENGTH, config.IMAGE_WIDTH,
            config.IMAGE_HEIGHT, config.CHANNELS, config.FONTS, online_workers(device), start_epoch, config.EPOCHS,
            rank, world))
        source = (f"ONLINE {producer.steps * batch_size * world} fresh captchas per epoch from {producer.workers} "
                  f"generator process{'es' if producer.workers > 1 else ''}" + (" per training process" * (world > 1)))
    else:
        source = f"{len(train_set)} train"
    say(f"run {run}: model {config.MODEL} on {device}" + (f" x {world} processes" if world > 1 else "") +
        f", {source} / {len(test_set)} test images {config.IMAGE_WIDTH}x{config.IMAGE_HEIGHT}x{config.CHANNELS}, "
        f"charset {len(codec.charset)}")
    train, streamed = place(train_set, device, STREAM, say) if train_set else (None, False)
    test = test_set.tensors(device if data.fits_on_device(test_set.images.nbytes, device) else torch.device("cpu"))

    torch_util.seed_everything(config.SEED)
    model, build_args, loss_fn, channels_last = make_model(codec, device, init, say)
    decode = DECODERS[models.head_of(config.MODEL)]
    optimizer = make_optimizer(model, device)
    steps_per_epoch = producer.steps if producer else len(train_set) // (batch_size * world)
    if steps_per_epoch == 0:
        what = f"ONLINE_COUNT={config.ONLINE_COUNT}" if producer else f"{config.TRAIN_DIR}: {len(train_set)}"
        raise data.DataError(f"{what} images, fewer than one batch (BATCH_SIZE={batch_size}"
                             + (f" x {world} processes" if world > 1 else "") + "); lower --batch_size")
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.LR, total_steps=config.EPOCHS * steps_per_epoch,
                                                    pct_start=0.15)
    best = -1.0
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        best = resume["best_accuracy"]
        say(f"resumed {last_path} after epoch {resume['epoch']} (best sequence accuracy {best:.4f})")
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
        net = torch.compile(net, backend=COMPILE_BACKEND)
    augment = data.Augment.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    say(f"{params / 1e6:.2f} M parameters, {config.EPOCHS} epochs of {steps_per_epoch} steps, batch {batch_size}"
        + (f" x {world} processes" if world > 1 else "") + f", augmentation {augment}"
        + (", torch.compile" if config.COMPILE else "") + (", channels_last" if channels_last else ""))
    trained_seconds = 0.0

    for epoch in range(start_epoch, config.EPOCHS + 1):
        t0 = time.time()
        if producer:
            producer.reset_stats()
            batches = online_batches(producer, batch_size, device, codec)
        else:
            shuffle = torch.Generator().manual_seed(config.SEED * 1000 + epoch)  # the same on every rank
            order = data.epoch_order(len(train_set), batch_size, shuffle, rank, world)
            batches = (data.stream_batches(train, order, batch_size, device) if streamed
                       else data.resident_batches(train, order, batch_size))
        loss, rate = train_one_epoch(net, optimizer, scheduler, loss_fn, batches, steps_per_epoch, device,
                                     f"epoch {epoch}/{config.EPOCHS}", augment, channels_last, bar=lead)
        trained_seconds += time.time() - t0
        generation = producer.report(time.time() - t0, rate) if producer else ""
        if world > 1:  # BatchNorm statistics differ by process (DDP sends rank 0's before each forward): align them
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)
        preds = evaluate(model, test, codec, decode, device, 512)
        char_acc, seq_acc = accuracy(test_set.texts, preds)
        seconds = time.time() - t0
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} at epoch {epoch}; lower --lr")
        say(f"epoch {epoch}: loss {loss:.4f}, char acc {char_acc:.4f}, seq acc {seq_acc:.4f}, "
            f"{rate:.0f} img/s, {seconds:.0f}s" + (f"\n{generation}" if generation else ""))
        say(show_samples(test_set.texts, preds, config.SHOW, epoch))
        if lead:
            meta = dict(epoch=epoch, accuracy=seq_acc, char_accuracy=char_acc, config=config.as_dict())
            if seq_acc > best:
                torch_util.save_checkpoint(best_path, model, build_args, codec, **meta)
            torch_util.save_checkpoint(last_path, model, build_args, codec, **meta, best_accuracy=max(best, seq_acc),
                                       optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
            # after the checkpoint: a row in results.txt means its epoch can be resumed from
            append_result(config.RESULTS, dict(run=run, epoch=epoch, train_loss=f"{loss:.5f}",
                                               char_acc=f"{char_acc:.5f}", seq_acc=f"{seq_acc:.5f}",
                                               lr=f"{scheduler.get_last_lr()[0]:.3e}", seconds=f"{seconds:.1f}",
                                               images_per_s=f"{rate:.0f}"))
        best = max(best, seq_acc)
        stop = ""
        if seq_acc >= config.TARGET_ACCURACY:
            stop = f"reached TARGET_ACCURACY {config.TARGET_ACCURACY}"
        elif config.TIME_LIMIT and trained_seconds >= config.TIME_LIMIT and epoch < config.EPOCHS:
            stop = f"TIME_LIMIT {config.TIME_LIMIT}s reached after epoch {epoch}"
        if world > 1:  # rank 0's clock decides for every process
            flag = torch.tensor([float(bool(stop))], device=device)
            dist.broadcast(flag, 0)
            stop = stop or ("rank 0 stops" if flag.item() else "")
        if stop:
            say(stop)
            break

    if STATE_HASH:
        with open(f"{STATE_HASH}.rank{rank}", "w") as f:
            f.write(state_digest(model.state_dict()) + "\n")
    say(f"best sequence accuracy {best:.4f} -> {best_path}")
    if lead:
        say(f"plot: {torch_util.plot_results(config.RESULTS, os.path.splitext(config.RESULTS)[0] + '.png')}")


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, data.DataError, torch_util.CheckpointError) as e:
        sys.exit(f"error: {e}")
