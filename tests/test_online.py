"""ONLINE training data: in-memory captchas equal to the generator's files, chunk order and shards, the run;
and the streaming path for sets that do not fit on the device."""
import os
import subprocess
import sys

import pytest
import torch

from core.batches import epoch_order, fits_on_device, host_tensors, resident_batches, stream_batches
from core.checkpoint import load_checkpoint
from core.files import read_results
from core.generate import file_name, generate
from core import data
from core import fresh
from conftest import DIGITS, ROOT, digit_sets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return digit_sets(tmp_path_factory.mktemp("online"), 200, 60)


def run(*args, env=()):
    p = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1", **dict(env)})
    assert p.returncode == 0, p.stdout[-3000:]
    return p.stdout


@pytest.mark.parametrize("channels,length", [(1, 4), (3, (3, 5))])
def test_rendered_in_memory_equals_generated_file(tmp_path, channels, length):
    generate(str(tmp_path), 6, 7, DIGITS + "AB", length, 160, 60, processes=1, quiet=True)
    images, labels = fresh.render_set(7, 6, DIGITS + "AB", length, 160, 60, channels)
    assert images.shape == (6, channels, 60, 160)
    for i in range(6):
        name = file_name(labels[i], 7, i)
        decoded = data.load_image(str(tmp_path / name), 160, 60, channels)
        assert (images[i] == decoded.transpose(2, 0, 1)).all()


def test_producer_chunks_do_not_depend_on_processes_and_ranks_are_disjoint(monkeypatch):
    monkeypatch.setattr(fresh, "CHUNK_IMAGES", 8)  # 2 batches of 4 per chunk
    shape = (DIGITS, 4, 160, 60, 1)
    sizes, chunk = fresh.chunk_plan(44, 4)
    assert sizes == [8] * 5 + [4] and chunk == 8  # 11 whole batches
    assert fresh.chunk_plan(44, 4, world=2)[0] == [8, 8, 4]  # 5 batches for each of 2 ranks

    def epochs(workers, rank=0, world=1):
        with fresh.Producer(3, 20, 4, *shape, workers=workers, first_epoch=1, last_epoch=2, rank=rank,
                             world=world) as p:
            return [p.next_chunk() for _ in range(2 * len(p.sizes))]

    one, two = epochs(1), epochs(2)
    assert [c[1] for c in one] == [c[1] for c in two] and all((a[0] == b[0]).all() for a, b in zip(one, two))
    whole, labels = fresh.render_set(fresh.epoch_seed(3, 1), 16, *shape)
    assert (one[0][0] == whole[:8]).all() and one[0][1] == labels[:8]
    assert one[0][1] + one[1][1] + one[2][1] == fresh.render_set(fresh.epoch_seed(3, 1), 20, *shape)[1]
    assert one[3][1] != one[0][1]  # epoch 2: other captchas
    rank1 = epochs(1, rank=1, world=2)
    assert rank1[0][1] == labels[8:16]  # rank 1 takes the second chunk of each epoch


def test_replay_pool_keeps_the_last_captchas_in_a_ring():
    from core.batches import ReplayPool
    pool = ReplayPool(5, (1, 2, 3), 4, torch.device("cpu"))
    chunk = lambda first, n: (torch.arange(first, first + n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 3),
                              torch.arange(first, first + n).view(n, 1).expand(n, 4), torch.full((n,), 4))
    pool.add(*chunk(0, 3))
    assert pool.filled == 3 and set(pool.draw(64)[1][:, 0].tolist()) == {0, 1, 2} and pool.drawn == 64
    pool.add(*chunk(3, 4))  # wraps: 5 and 6 overwrite 0 and 1
    assert pool.filled == 5 and sorted(pool.labels[:, 0].tolist()) == [2, 3, 4, 5, 6]
    images, labels, lengths = pool.draw(200)
    assert (images[:, 0, 0, 0].long() == labels[:, 0]).all() and set(labels[:, 0].tolist()) == {2, 3, 4, 5, 6}
    pool.add(*chunk(10, 7))  # more than it holds: the last 5
    assert sorted(pool.labels[:, 0].tolist()) == [12, 13, 14, 15, 16]


def test_replay_trains_on_the_pool_while_the_next_chunk_renders():
    """ONLINE_REPLAY: a step whose chunk is not ready draws from the pool; every chunk still comes, in order."""
    from core.batches import ReplayPool
    from core.engine import online_batches
    from core.data import Codec

    class Producer:  # chunks of 8 captchas (2 batches of 4), ready on every third look
        steps, looks, served = 6, 0, []

        def ready(self):
            self.looks += 1
            return self.looks % 3 == 0

        def next_chunk(self):
            n = len(self.served)
            self.served.append(n)
            return torch.full((8, 1, 2, 3), n, dtype=torch.uint8).numpy(), ["1234"] * 8

    codec = Codec(DIGITS, 4)
    pool = ReplayPool(100, (1, 2, 3), 4, torch.device("cpu"))
    producer = Producer()
    batches = list(online_batches(producer, 4, torch.device("cpu"), codec, pool))
    # the empty pool waits for chunk 0 (2 batches); two looks find chunk 1 not ready (2 draws); the third takes it
    assert len(batches) == 6 and producer.served == [0, 1] and pool.drawn == 8 and pool.filled == 16
    assert [int(b[0].float().mean()) for b in batches[:2] + batches[4:]] == [0, 0, 1, 1]
    assert all(set(b[0].flatten().tolist()) == {0} for b in batches[2:4])  # drawn from chunk 0, the pool then
    assert batches[2][1].tolist() == [codec.encode("1234")] * 4


@pytest.mark.slow
def test_online_training_run(tiny, tmp_path):
    out = run("--online=1", "--online_count=160", "--online_workers=1", "--epochs=2", "--batch_size=32",
              "--test_dir=", "--online_test=64", f"--charset={DIGITS}", "--threads=1", "--run=on", "--show=2",
              f"--weights_dir={tmp_path}/w", f"--results={tmp_path}/r.txt", "--target_accuracy=0")
    assert "ONLINE 160 fresh captchas per epoch from 1 generator process, 64 validation, no test folder" in out
    assert out.count("  online: generation ") == 2 and "is the bottleneck" in out
    rows = read_results(tmp_path / "r.txt")
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert load_checkpoint(str(tmp_path / "w" / "on_last.pt"))["charset"] == DIGITS


def test_stream_batches_are_the_resident_batches():
    n, batch = 50, 4
    images = torch.randint(0, 256, (n, 1, 6, 8), dtype=torch.uint8)
    tensors = (images, torch.randint(0, 10, (n, 4)), torch.full((n,), 4))
    order = epoch_order(n, batch, torch.Generator().manual_seed(1))
    resident = list(resident_batches(tensors, order, batch))
    streamed = list(stream_batches(host_tensors(tensors, torch.device("cpu")), order, batch,
                                        torch.device("cpu"), chunk_batches=5))
    assert len(resident) == len(streamed) == n // batch
    assert all(torch.equal(a, b) for r, s in zip(resident, streamed) for a, b in zip(r, s))
    assert fits_on_device(10**15, torch.device("cpu"))


@pytest.mark.slow
def test_streaming_training_equals_resident(tiny, tmp_path):
    common = [f"--train_dir={tiny}/train", f"--test_dir={tiny}/test", f"--cache_dir={tiny}/cache",
              f"--charset={DIGITS}", "--threads=1", "--epochs=1", "--batch_size=32", "--show=0", "--run=s"]
    rows = {}
    for mode in ("0", "1"):
        out = run(*common, f"--weights_dir={tmp_path}/{mode}", f"--results={tmp_path}/{mode}.txt", f"--stream={mode}")
        assert ("stay in host memory and stream" in out) == (mode == "1")
        rows[mode] = [{k: r[k] for k in ("train_loss", "char_acc", "seq_acc")}
                      for r in read_results(tmp_path / f"{mode}.txt")]
    assert rows["0"] == rows["1"]
