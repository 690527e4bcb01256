"""Where a run computes: the device, bf16 autocast, CPU threads, seeds, and the torchrun process layout."""
import contextlib
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist

import config


def pick_device(name="auto", index=None):
    """DEVICE as a torch.device; `index` (torchrun's LOCAL_RANK) picks this process's GPU for "auto" / "cuda".
    A device this machine lacks is refused in one line (config.ConfigError), never as torch's traceback."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise config.ConfigError(f"DEVICE={name!r}: this machine has no CUDA GPU torch can use (torch "
                                 f"{torch.__version__}); --device=auto takes the best one there is, --device=cpu the CPU")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise config.ConfigError(f"DEVICE={name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                                 f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise config.ConfigError("DEVICE='mps': this machine has no Apple GPU torch can use; --device=auto or --device=cpu")
    if name == "cuda" or name == "auto" and torch.cuda.is_available():
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    if name != "auto":
        return torch.device(name)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device):
    """Wait for the device's queued work (CUDA, MPS), so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.inference_mode()
def timed_runs(model, x, device, min_runs, max_runs, max_seconds):
    """Seconds of each forward pass of x (under autocast), after two warm-up passes: max_runs of them, or as many
    as fit in max_seconds, min_runs at least."""
    with autocast(device):
        for _ in range(2):
            model(x)
        sync(device)
        times = []
        while len(times) < max_runs and (len(times) < min_runs or sum(times) < max_seconds):
            start = time.perf_counter()
            model(x)
            sync(device)
            times.append(time.perf_counter() - start)
    return times


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_count():
    """Cores this process may run on (its affinity mask: a container's share, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads=0, processes=1):
    """Intra-op threads for CPU work: `threads`, or (0) this process's share of the cores when `processes` run
    on the machine (torchrun's LOCAL_WORLD_SIZE). One inter-op thread: nothing here runs ops concurrently."""
    torch.set_num_threads(threads or max(1, cpu_count() // processes))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # settable once, before any parallel work: a second call in the same process
        pass


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


@contextlib.contextmanager
def lead_first(lead, device):
    """Under torchrun, rank 0 (`lead`) runs the block first while the others wait, then they run it: what it
    writes to the cache (decoded images, the teacher's readings) they find there. One process: the block alone."""
    if not lead:
        barrier(device)
    yield
    if lead:
        barrier(device)
