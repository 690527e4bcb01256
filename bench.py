"""How fast the configured model trains on this device, and whether the data path keeps up with it:

    python bench.py                                  # config.py's model, batch size, device
    python bench.py --model=resnet18 --batch_size=256 --seconds=20
    python bench.py --online=1                       # the pipeline is ONLINE's generator processes

- model only: a fixed batch already on the device, the whole training step (normalise, augment, forward,
  loss, backward, optimizer), as train.py runs it;
- full pipeline: the same step fed the way train.py feeds it: TRAIN_DIR -> uint8 cache -> tensors on the
  device (or streamed from host memory when they do not fit) -> index batches; with ONLINE=1, chunks from
  the generator processes. Without TRAIN_DIR, a small set is generated first;
- their ratio (1.0: the data path costs nothing), measured in alternating blocks so that a change in load
  on the machine hits both alike;
- captcha generation images/s with 1..N processes (in memory, --gen_images per process), and the peak memory.
"""
import itertools
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time

import torch

import captchaGenerator
import config
import data
import online
import torch_util
import train

GEN_TASK = 50  # images per generation task: small tasks share the work evenly between processes


def load_set(codec, batch_size, say):
    """(CaptchaSet, where it came from): TRAIN_DIR, else a small generated set (4 batches, at least 256)."""
    size = (config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS)
    if os.path.isdir(config.TRAIN_DIR):
        return data.load_folder(config.TRAIN_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet=True), \
            config.TRAIN_DIR
    count = max(256, 4 * batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        say(f"no {config.TRAIN_DIR}: generating {count} captchas into {folder} (removed once decoded)")
        captchaGenerator.generate(folder, count, 1, config.CHARSET, config.LENGTH, *size[:2], config.FONTS, quiet=True)
        return data.load_folder(folder, codec, *size, None, False, quiet=True), f"{count} captchas (generated)"


def rate(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def endless(epoch_batches):
    """epoch_batches(epoch) for epoch 1, 2, ... as one stream of batches."""
    for epoch in itertools.count(1):
        yield from epoch_batches(epoch)


def interleaved(sources, steps, seconds, device):
    """{name: (images/s, images per CPU-second of this process)} of each `steps(source, n)` (n steps, returns
    images), run in alternating blocks until each has run `seconds`; a block lasts about a second (at least one
    step). CPU time counts only this process's work: on a CPU shared with other jobs it is the steadier figure."""
    first = next(iter(sources))
    t0 = time.perf_counter()
    steps(sources[first], 1)
    torch_util.sync(device)
    block = max(1, round(min(1.0, seconds / 4) / max(time.perf_counter() - t0, 1e-6)))
    spent, cpu = dict.fromkeys(sources, 0.0), dict.fromkeys(sources, 0.0)
    images = dict.fromkeys(sources, 0)
    while min(spent.values()) < seconds:
        for name, source in sources.items():
            t0, c0 = time.perf_counter(), time.process_time()
            images[name] += steps(source, block)
            torch_util.sync(device)
            spent[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    return {name: (images[name] / spent[name], images[name] / max(cpu[name], 1e-9)) for name in sources}


def generation_rates(max_processes, per_process, seed="bench"):
    """{processes: (images/s, images per CPU-second of one process)} rendering captchas in memory
    (online.render_chunk), `per_process` images for each process."""
    shape = (config.CHARSET, config.LENGTH, config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS)
    rates = {}
    for p in range(1, max_processes + 1):
        size = (config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.FONTS)
        with mp.get_context("fork").Pool(p, online._init, size) as pool:
            pool.map(online.render_chunk, [(seed, 10**6 + i, 1) + shape for i in range(p)], chunksize=1)  # load fonts
            count = max(GEN_TASK, per_process * p // GEN_TASK * GEN_TASK)
            tasks = [(seed, i, GEN_TASK) + shape for i in range(0, count, GEN_TASK)]
            t0 = time.perf_counter()
            done = pool.map(online.render_chunk, tasks, chunksize=1)
            rates[p] = count / (time.perf_counter() - t0), count / sum(d[3] for d in done)
    return rates


def main():
    _, opts = config.parse(seconds=6.0, warmup=3, gen_images=300, processes=0, channels_last="auto")
    torch_util.set_threads(config.THREADS)
    device = torch_util.pick_device(config.DEVICE)
    say = print
    batch_size = config.BATCH_SIZE
    load = os.getloadavg()
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{cpu_name()}, {torch.get_num_threads()} thread" + "s" * (torch.get_num_threads() > 1)
    say(f"bench: {config.MODEL} on {device} ({where}), torch {torch.__version__}, {torch_util.cpu_count()} cores, "
        f"load average {load[0]:.2f}")

    if not config.ONLINE and not os.path.isdir(config.TRAIN_DIR) and (config.CHARSET == "infer" or not config.LENGTH):
        raise config.ConfigError(f"no {config.TRAIN_DIR} to infer CHARSET / LENGTH from: set them")
    codec = train.make_codec(quiet=True) if config.ONLINE or os.path.isdir(config.TRAIN_DIR) else \
        data.Codec(config.CHARSET, config.LENGTH, config.CASE_SENSITIVE)
    dataset, origin = load_set(codec, batch_size, say)
    tensors, streamed = train.place(dataset, device, train.STREAM, say=lambda *a: None)
    fixed = tuple(t[:batch_size].to(device) for t in tensors)
    if len(dataset) < batch_size:
        sys.exit(f"error: {origin} has {len(dataset)} images, fewer than one batch ({batch_size})")

    torch_util.seed_everything(config.SEED)
    layout = {"auto": None, "1": True, "0": False}[opts["channels_last"]]
    model, _, loss_fn, channels_last = train.make_model(codec, device, channels_last=layout)
    optimizer = train.make_optimizer(model, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    net = torch.compile(model, backend=train.COMPILE_BACKEND) if config.COMPILE else model
    augment = data.Augment.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    say(f"model {params / 1e6:.2f} M parameters, batch {batch_size}, {config.IMAGE_WIDTH}x{config.IMAGE_HEIGHT}x"
        f"{config.CHANNELS}, bf16 autocast {'on' if device.type == 'cuda' else 'off'}, channels_last "
        f"{'on' if channels_last else 'off'}, torch.compile {'on' if config.COMPILE else 'off'}, fused AdamW "
        f"{'on' if device.type == 'cuda' else 'off'}, augmentation {augment}")

    producer = None
    if config.ONLINE:
        workers = train.online_workers(device)
        producer = online.Producer(config.SEED, config.ONLINE_COUNT, batch_size, config.CHARSET, config.LENGTH,
                                   config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS, config.FONTS, workers,
                                   1, 10**6)
        pipeline = endless(lambda epoch: train.online_batches(producer, batch_size, device, codec))
        origin = f"ONLINE: {workers} generator process{'es' if workers > 1 else ''}, chunks of {producer.chunk}"
    else:
        def epoch_batches(epoch):
            order = data.epoch_order(len(dataset), batch_size, torch.Generator().manual_seed(epoch))
            return (data.stream_batches(tensors, order, batch_size, device) if streamed
                    else data.resident_batches(tensors, order, batch_size))
        pipeline = endless(epoch_batches)
        kept = "streamed from pinned host memory" if streamed else f"resident on {device}"
        origin = f"{origin}: {len(dataset)} images, {dataset.images.nbytes / 2**30:.2f} GiB uint8, {kept}"
    sources = {"model": itertools.repeat(fixed), "pipeline": pipeline}

    def steps(source, n):
        train.train_one_epoch(net, optimizer, scheduler, loss_fn, itertools.islice(source, n), n, device, "",
                              augment, channels_last, bar=False)
        return n * batch_size

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for source in sources.values():  # first steps allocate, pick kernels, compile
            steps(source, opts["warmup"])
        torch_util.sync(device)
        if producer:  # one after the other: the generators would fill their queue during the model's blocks
            rates = {name: interleaved({name: source}, steps, opts["seconds"], device)[name]
                     for name, source in sources.items()}
        else:
            rates = interleaved(sources, steps, opts["seconds"], device)
    finally:
        if producer:
            producer.close()
    (model_rate, model_cpu), (pipe_rate, pipe_cpu) = rates["model"], rates["pipeline"]
    say(f"model only:    {rate(model_rate):>8} img/s  (a fixed batch already on the device, full training step)")
    say(f"full pipeline: {rate(pipe_rate):>8} img/s  ({origin})")
    say(f"ratio:         {pipe_rate / model_rate:8.3f}")
    if device.type == "cpu":
        say(f"CPU time:      {rate(model_cpu):>8} and {rate(pipe_cpu)} images per CPU-second of this process, ratio "
            f"{pipe_cpu / model_cpu:.3f} (the same work counted without the time other processes took)")
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB on {device} (max_memory_allocated)"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        peak = f"{rss / 2**30:.2f} GiB (max resident set of this process)"
    say(f"peak memory:   {peak}")

    processes = opts["processes"] or torch_util.cpu_count()
    gen = generation_rates(processes, opts["gen_images"])
    say("generation:    " + ", ".join(f"{p}: {r:.0f}" for p, (r, _) in gen.items()) + " img/s by processes "
        f"({opts['gen_images']} images each, in memory)")
    say("               " + ", ".join(f"{p}: {c:.0f}" for p, (_, c) in gen.items()) + " images per CPU-second of one "
        "process (flat = no contention inside; the wall rate scales with the cores that are free)")
    if processes > 1:
        say(f"scaling:       {gen[processes][0] / (processes * gen[1][0]):8.3f} of {processes} x one process")
    load = os.getloadavg()
    say(f"load average at the end {load[0]:.2f} (other processes share these cores: compare figures taken alike)")


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, data.DataError) as e:
        sys.exit(f"error: {e}")
