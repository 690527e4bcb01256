"""Multi-process training: torchrun with 2 CPU processes (gloo) on a tiny set, the epoch shards, torch.compile."""
import os
import subprocess
import sys

import pytest
import torch

from core.batches import epoch_order
from core.checkpoint import load_checkpoint, model_from_checkpoint, state_digest
from core.files import read_results
from conftest import DIGITS, ROOT, digit_sets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return digit_sets(tmp_path_factory.mktemp("ddp"), 256, 60)


def args(base, out):
    return [f"--train_dir={base}/train", f"--test_dir={base}/test", f"--cache_dir={base}/cache",
            f"--weights_dir={out}/weights", f"--results={out}/results.txt", f"--charset={DIGITS}", "--threads=1",
            "--show=2", "--target_accuracy=0"]


def test_epoch_order_gives_disjoint_equal_shards():
    n, batch, world = 103, 8, 3
    shards = [epoch_order(n, batch, torch.Generator().manual_seed(5), r, world) for r in range(world)]
    assert {len(s) for s in shards} == {n // (batch * world) * batch}
    together = torch.cat(shards)
    assert len(set(together.tolist())) == len(together)  # disjoint
    # step k of every rank together is the k-th global batch of one permutation
    whole = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.stack([s.view(-1, batch) for s in shards], 1).reshape(-1), whole[:len(together)])
    # one process: the permutation's whole batches, in order
    single = epoch_order(n, batch, torch.Generator().manual_seed(5))
    assert torch.equal(single, whole[:n // batch * batch])


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tiny, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # --RUN, not --run: torchrun would take --run for an abbreviation of its own --run-path
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "train.py",
           *args(tiny, tmp_path), "--epochs=2", "--batch_size=16", "--RUN=ddp", f"--state_hash={tmp_path / 'state'}"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:]
    out = p.stdout
    assert "x 2 processes" in out and out.count("epoch 1/2:") == 1 and out.count("epoch 2/2:") == 1, out[-3000:]
    hashes = [(tmp_path / f"state.rank{r}").read_text().strip() for r in (0, 1)]
    assert hashes[0] == hashes[1], "the two processes ended with different weights"
    rows = read_results(tmp_path / "results.txt")
    assert [r["epoch"] for r in rows] == ["1", "2"] and {r["run"] for r in rows} == {"ddp"}
    assert sorted(os.listdir(tmp_path / "weights")) == ["ddp_best.pt", "ddp_last.pt"]
    last = load_checkpoint(str(tmp_path / "weights" / "ddp_last.pt"))
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in last["model"])
    assert state_digest(last["model"]) == hashes[0]  # what rank 0 saved is what both hold
    # 2 processes x 16 = 32 images a step: (256 - 26 validation) // 32 = 7 steps, not 14
    assert "2 epochs of 7 steps, batch 16 x 2" in out


@pytest.mark.slow
def test_torchrun_with_a_teacher_the_lead_reads_and_the_other_finds_its_readings(tiny, tmp_path):
    """A few labels and the teacher under torchrun: rank 0 reads the unlabelled images first while the other
    waits at a barrier, then the other finds the readings kept in CACHE_DIR. Checked: no process waits for ever
    (the barriers pair up), one line of pseudo-labels (rank 0's), the same weights in both, the readings kept."""
    pytest.importorskip("ddddocr", reason="the teacher is the optional ddddocr package")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = [a for a in args(tiny, tmp_path) if not a.startswith("--cache_dir")] + [f"--cache_dir={tmp_path / 'c'}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "train.py", *run,
           f"--unlabeled_dir={tiny}/train", "--limit=40", "--teacher=ddddocr", "--epochs=1", "--batch_size=16",
           "--RUN=ddpt", f"--state_hash={tmp_path / 'state'}"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:]
    assert p.stdout.count("pseudo-labels from the teacher") == 1, p.stdout[-3000:]  # rank 0's line
    hashes = [(tmp_path / f"state.rank{r}").read_text().strip() for r in (0, 1)]
    assert hashes[0] == hashes[1], "the two processes ended with different weights"
    assert [f for f in os.listdir(tmp_path / "c") if f.startswith("teacher-")], "no teacher readings kept"


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_keys(tiny, tmp_path):
    # the "eager" backend traces with dynamo (what COMPILE wraps) without minutes of C++ code generation
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "train.py", *args(tiny, tmp_path), "--epochs=1", "--batch_size=32", "--run=c",
           "--compile=1", "--compile_backend=eager"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0 and "torch.compile" in p.stdout, p.stdout[-3000:]
    ckpt = load_checkpoint(str(tmp_path / "weights" / "c_best.pt"))
    model_from_checkpoint(ckpt)  # strict load: keys without wrapper prefixes
    assert not any("_orig_mod" in k for k in ckpt["model"])
