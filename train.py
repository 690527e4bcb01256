"""Train a model on TRAIN_DIR; keep the checkpoint that reads a held-out validation part of it best.

    python train.py                                   # config.py as it is (generated captchas in dataset/)
    python train.py --train_dir=my_captchas           # your own labelled images: everything else is inferred
    python train.py --train_dir=a/train --test_dir=a/test --epochs=30
    python train.py --resume=1                        # continue the newest run of this name (weights/<RUN>_last.pt)
    python train.py --online=1                        # fresh generated captchas every epoch
    torchrun --nproc_per_node=4 train.py              # DistributedDataParallel: one process per GPU (gloo on CPU)

Three sets, three jobs: the training images; a seeded VALIDATION part held out from TRAIN_DIR, which picks the
best checkpoint and decides when to stop; TEST_DIR, only reported (after every epoch and at the end). The
length of a run follows the data (EPOCHS = 0: about IMAGES_SEEN images, more of smaller ones, a small set many
more times) and it stops early once validation stops improving (PATIENCE). A run never replaces another run's
checkpoints.

The decoded uint8 set sits on the device when it fits (batches are index slices; normalisation and
augmentation run there, in batch); otherwise it stays in pinned host memory and chunks stream in ahead of
the compute. Under torchrun each process takes its share of every epoch (BATCH_SIZE is per process), and
only rank 0 prints, writes results.txt and checkpoints.
"""
import contextlib

import torch
import torch.distributed as dist

import config
from core import cli
from core.checkpoint import state_digest
from core.device import cpu_count, distributed, local_world, pick_device, set_threads
from core.engine import online_workers
from core.plan import Settings
from core.run import train


def main():
    # resume: continue weights/<RUN>_last.pt; stream: "1" keeps the set in host memory even when it fits on the
    # device; compile_backend: torch.compile's backend; state_hash: a path, each rank writes the SHA-256 of the
    # weights it would save (with EMA: the average)
    _, opts = config.parse(arguments=0, folder_option="train_dir", resume=False, stream="auto",
                           compile_backend="inductor", state_hash="")
    s = Settings()
    rank, world, local_rank = distributed()
    device = pick_device(s.DEVICE, local_rank)
    threads = s.THREADS
    if not threads and s.ONLINE and device.type == "cpu":  # the generator processes keep their cores
        threads = max(1, cpu_count() // local_world() - online_workers(s, device))
    set_threads(threads, local_world())
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        with contextlib.ExitStack() as closing:
            run = train(s, opts, rank, world, device, closing)
        if opts["state_hash"]:
            with open(f"{opts['state_hash']}.rank{rank}", "w") as f:
                f.write(state_digest(run.shown.state_dict()) + "\n")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    cli.run(main)
