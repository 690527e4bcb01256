"""How fast the configured model trains on this device, and whether the data path keeps up with it:

    python benchmarks/bench.py                       # config.py's model, batch size, device
    python benchmarks/bench.py --model=resnet18 --batch_size=256 --seconds=20
    python benchmarks/bench.py --online=1            # the pipeline is ONLINE's generator processes

- model only: a fixed batch already on the device, the whole training step (normalise, augment, forward,
  loss, backward, optimizer, the weight average when EMA > 0), as train.py runs it;
- full pipeline: the same step fed the way train.py feeds it: TRAIN_DIR -> uint8 cache -> tensors on the
  device (or streamed from host memory when they do not fit) -> index batches; with ONLINE=1, chunks from
  the generator processes (with ONLINE_REPLAY, a batch drawn from the captchas they rendered so far whenever
  the next chunk is not ready, as train.py does). Without TRAIN_DIR, a small set is rendered in memory first;
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
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from core import data  # noqa: E402
from core import fresh, varied  # noqa: E402
from core.augment import Augment  # noqa: E402
from core.batches import ReplayPool, epoch_order, resident_batches, stream_batches  # noqa: E402
from core.device import cpu_count, pick_device, seed_everything, set_threads, sync  # noqa: E402
from core.engine import (WeightAverage, make_model, make_optimizer, online_batches, online_workers, place,  # noqa: E402
                         train_one_epoch)
from core.plan import Settings, plan_batch, resolve_data, resolve_small_set  # noqa: E402

GEN_TASK = 50  # images per generation task: small tasks share the work evenly between processes


def load_set(s, say):
    """(settings, codec, CaptchaSet, where it came from, the batch size train.py takes for it), with train.py's
    charset, label length and image size resolved into the settings: TRAIN_DIR's images; without TRAIN_DIR, or
    with ONLINE, a small set rendered in memory (4 batches, at least 256) of the captchas ONLINE training renders
    (GEN_* unless CHARSET / LENGTH / IMAGE_* are set), standing for fresh data."""
    quiet = lambda *a, **k: None  # noqa: E731
    if not s.ONLINE and os.path.isdir(s.TRAIN_DIR):
        s, codec = resolve_data(s, say=quiet)
        dataset = data.load_folder(s.TRAIN_DIR, codec, *geometry(s), s.CACHE_DIR, s.SKIP_BAD, quiet=True)
        return s, codec, dataset, s.TRAIN_DIR, plan_batch(s, len(dataset))
    resolved, codec = resolve_data(s.replace(ONLINE=True), say=quiet)
    s = resolved.replace(ONLINE=s.ONLINE)
    batch_size = plan_batch(s, None)
    count = max(256, 4 * batch_size)
    say(f"no {s.TRAIN_DIR}: generating {count} captchas in memory" if not s.ONLINE else
        f"model-only batch: {count} captchas generated in memory")
    images, texts = fresh.render_set("bench", count, codec.charset, codec.length, *geometry(s), s.FONTS,
                                     processes=cpu_count(), style=s.GEN_STYLE)
    texts = [codec.normalize(t) for t in texts]
    dataset = data.CaptchaSet([f"bench-{i}" for i in range(count)], texts, images.transpose(0, 2, 3, 1), codec)
    return s, codec, dataset, f"{count} captchas (generated)", batch_size


def geometry(s):
    """(IMAGE_WIDTH, IMAGE_HEIGHT, CHANNELS) as resolve_data resolved them."""
    return s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS


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
    sync(device)
    block = max(1, round(min(1.0, seconds / 4) / max(time.perf_counter() - t0, 1e-6)))
    spent, cpu = dict.fromkeys(sources, 0.0), dict.fromkeys(sources, 0.0)
    images = dict.fromkeys(sources, 0)
    while min(spent.values()) < seconds:
        for name, source in sources.items():
            t0, c0 = time.perf_counter(), time.process_time()
            images[name] += steps(source, block)
            sync(device)
            spent[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    return {name: (images[name] / spent[name], images[name] / max(cpu[name], 1e-9)) for name in sources}


def generation_rates(process_counts, per_process, seed="bench"):
    """{processes: (images/s, images per CPU-second of one process)} for each number of processes, rendering the
    captchas captchaGenerator.py writes (GEN_*) in memory (fresh.render_chunk), `per_process` images each."""
    fonts = varied.style_fonts(config.FONTS, config.GEN_STYLE)
    shape = (config.GEN_CHARSET, fresh.label_length(config.GEN_LENGTH), config.GEN_WIDTH, config.GEN_HEIGHT,
             config.CHANNELS or 1, config.GEN_STYLE)
    rates = {}
    for p in process_counts:
        size = (config.GEN_WIDTH, config.GEN_HEIGHT, fonts, config.GEN_STYLE)
        with mp.get_context("fork").Pool(p, fresh._init, size) as pool:
            pool.map(fresh.render_chunk, [(seed, 10**6 + i, 1) + shape for i in range(p)], chunksize=1)  # load fonts
            count = max(GEN_TASK, per_process * p // GEN_TASK * GEN_TASK)
            tasks = [(seed, i, GEN_TASK) + shape for i in range(0, count, GEN_TASK)]
            t0 = time.perf_counter()
            done = pool.map(fresh.render_chunk, tasks, chunksize=1)
            rates[p] = count / (time.perf_counter() - t0), count / sum(d[3] for d in done)
    return rates


def measure(s, device, seconds=6.0, warmup=3, channels_last=None, compile_backend="inductor", say=print):
    """Model-only and full-pipeline training images/s of s.MODEL (with the settings `s`) on `device`,
    measured as the module docstring says. Returns a dict: model / pipeline (images/s), model_cpu / pipeline_cpu
    (images per CPU-second of this process), ratio, peak_bytes and peak (what the peak counts), pipeline_origin,
    parameters, batch_size."""
    s, codec, dataset, origin, batch_size = load_set(s, say)
    if len(dataset) < batch_size:
        raise data.DataError(f"{origin} has {len(dataset)} images, fewer than one batch ({batch_size})")
    s = resolve_small_set(s, None if s.ONLINE else len(dataset))  # AUGMENT, LABEL_SMOOTHING
    tensors, streamed = place(dataset, device, "auto", say=lambda *a: None)
    fixed = tuple(t[:batch_size].to(device) for t in tensors)

    seed_everything(s.SEED)
    model, _, loss_fn, channels_last = make_model(s, codec, device, channels_last=channels_last)
    optimizer = make_optimizer(s, model, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    net = torch.compile(model, backend=compile_backend) if s.COMPILE else model
    augment = Augment.from_config(s)
    average = WeightAverage(model, s.EMA) if s.EMA else None
    params = sum(p.numel() for p in model.parameters())
    say(f"model {params / 1e6:.2f} M parameters, batch {batch_size}, {s.IMAGE_WIDTH}x{s.IMAGE_HEIGHT}x"
        f"{s.CHANNELS}, bf16 autocast {'on' if device.type == 'cuda' else 'off'}, channels_last "
        f"{'on' if channels_last else 'off'}, torch.compile {'on' if s.COMPILE else 'off'}, fused AdamW "
        f"{'on' if device.type == 'cuda' else 'off'}, augmentation {augment}, weight average "
        f"{f'EMA {s.EMA:g}' if average else 'off'}")

    producer = None
    if s.ONLINE:
        workers = online_workers(s, device)
        producer = fresh.Producer(s.SEED, s.ONLINE_COUNT, batch_size, codec.charset, codec.length,
                                  *geometry(s), s.FONTS, workers, 1, 10**6, style=s.GEN_STYLE)
        # a few seconds render far fewer captchas than a run: the pool holds what they can fill
        pool = (ReplayPool(min(s.ONLINE_REPLAY, 100_000), tuple(fixed[0].shape[1:]), codec.max_len, device)
                if s.ONLINE_REPLAY else None)
        pipeline = endless(lambda epoch: online_batches(producer, batch_size, device, codec, pool))
        origin = (f"ONLINE: {workers} generator process{'es' if workers > 1 else ''}, chunks of {producer.chunk}"
                  + (f", ONLINE_REPLAY={s.ONLINE_REPLAY}" if pool else ""))
    else:
        def epoch_batches(epoch):
            order = epoch_order(len(dataset), batch_size, torch.Generator().manual_seed(epoch))
            return (stream_batches(tensors, order, batch_size, device) if streamed
                    else resident_batches(tensors, order, batch_size))
        pipeline = endless(epoch_batches)
        kept = "streamed from pinned host memory" if streamed else f"resident on {device}"
        origin = f"{origin}: {len(dataset)} images, {dataset.images.nbytes / 2**30:.2f} GiB uint8, {kept}"
    sources = {"model": itertools.repeat(fixed), "pipeline": pipeline}

    def steps(source, n):
        train_one_epoch(net, optimizer, scheduler, loss_fn, itertools.islice(source, n), n, device, "",
                        augment, channels_last, bar=False, average=average)
        return n * batch_size

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for source in sources.values():  # first steps allocate, pick kernels, compile
            steps(source, warmup)
        sync(device)
        if producer:  # one after the other: the generators would fill their queue during the model's blocks
            rates = {name: interleaved({name: source}, steps, seconds, device)[name]
                     for name, source in sources.items()}
        else:
            rates = interleaved(sources, steps, seconds, device)
    finally:
        if producer:
            producer.close()
    (model_rate, model_cpu), (pipe_rate, pipe_cpu) = rates["model"], rates["pipeline"]
    if device.type == "cuda":
        peak_bytes, peak = torch.cuda.max_memory_allocated(device), f"on {device} (max_memory_allocated)"
    else:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        peak = "max resident set of this process"
    return dict(model=model_rate, pipeline=pipe_rate, ratio=pipe_rate / model_rate, model_cpu=model_cpu,
                pipeline_cpu=pipe_cpu, peak_bytes=peak_bytes, peak=peak, pipeline_origin=origin, parameters=params,
                batch_size=batch_size)


def main():
    _, opts = config.parse(seconds=6.0, warmup=3, gen_images=300, processes=0, channels_last="auto",
                           compile_backend="inductor")
    s = Settings()
    set_threads(s.THREADS)
    device = pick_device(s.DEVICE)
    say = print
    load = os.getloadavg()
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{cpu_name()}, {torch.get_num_threads()} thread" + "s" * (torch.get_num_threads() > 1)
    say(f"bench: {s.MODEL} on {device} ({where}), torch {torch.__version__}, {cpu_count()} cores, "
        f"load average {load[0]:.2f}")
    layout = {"auto": None, "1": True, "0": False}[opts["channels_last"]]
    r = measure(s, device, opts["seconds"], opts["warmup"], layout, opts["compile_backend"], say)
    say(f"model only:    {rate(r['model']):>8} img/s  (a fixed batch already on the device, full training step)")
    say(f"full pipeline: {rate(r['pipeline']):>8} img/s  ({r['pipeline_origin']})")
    say(f"ratio:         {r['ratio']:8.3f}")
    if device.type == "cpu":
        say(f"CPU time:      {rate(r['model_cpu']):>8} and {rate(r['pipeline_cpu'])} images per CPU-second of this "
            f"process, ratio {r['pipeline_cpu'] / r['model_cpu']:.3f} (the same work counted without the time other "
            f"processes took)")
    say(f"peak memory:   {r['peak_bytes'] / 2**30:.2f} GiB ({r['peak']})")

    processes = opts["processes"] or cpu_count()
    gen = generation_rates(range(1, processes + 1), opts["gen_images"])
    say("generation:    " + ", ".join(f"{p}: {r:.0f}" for p, (r, _) in gen.items()) + " img/s by processes "
        f"({opts['gen_images']} images each, in memory)")
    say("               " + ", ".join(f"{p}: {c:.0f}" for p, (_, c) in gen.items()) + " images per CPU-second of one "
        "process (flat = no contention inside; the wall rate scales with the cores that are free)")
    if processes > 1:
        say(f"scaling:       {gen[processes][0] / (processes * gen[1][0]):8.3f} of {processes} x one process")
    load = os.getloadavg()
    say(f"load average at the end {load[0]:.2f} (other processes share these cores: compare figures taken alike)")


if __name__ == "__main__":
    cli.run(main)
