"""bench.py: model-only and full-pipeline images/s, their ratio, generation by processes, peak memory."""
import os
import re

import pytest

from core.checkpoint import DEFAULT_CHECKPOINT
from core.generate import generate
from conftest import DIGITS, run_script

pytestmark = pytest.mark.slow  # each test runs a benchmark script


def numbers(out, label):
    line = next(line for line in out.splitlines() if line.startswith(label))
    return [float(x) for x in re.findall(r"\d+\.?\d*", line.split(":", 1)[1])]


def test_bench_reports_rates_ratio_generation_memory(tmp_path):
    generate(str(tmp_path / "train"), 64, 1, DIGITS, 4, 160, 60, processes=1, quiet=True)
    out = run_script("benchmarks/bench.py", f"--train_dir={tmp_path}/train", f"--cache_dir={tmp_path}/cache",
                     f"--charset={DIGITS}", "--threads=1", "--batch_size=16", "--seconds=1", "--warmup=1",
                     "--gen_images=50", "--processes=2").stdout
    model, pipeline, ratio = numbers(out, "model only")[0], numbers(out, "full pipeline")[0], numbers(out, "ratio")[0]
    assert model > 0 and pipeline > 0 and abs(ratio - pipeline / model) < 0.01, out
    assert "64 images" in out and "resident on cpu" in out
    assert numbers(out, "generation")[:4:2] == [1, 2] and "scaling" in out
    assert "GiB" in out.split("peak memory:")[1].splitlines()[0]


def test_bench_without_a_training_folder_generates_one(tmp_path):
    out = run_script("benchmarks/bench.py", f"--train_dir={tmp_path}/none", f"--charset={DIGITS}", "--threads=1",
                     "--batch_size=16", "--seconds=0.5", "--warmup=1", "--gen_images=20", "--processes=1").stdout
    assert "generating 256 captchas" in out and "(generated)" in out and "ratio" in out
    assert "scaling" not in out  # one process: nothing to compare


def test_tta_prints_every_copy_and_vote(tmp_path):
    """benchmarks/tta.py: one line per shifted copy and per vote, each with an accuracy in range; a folder without
    images is one error line naming it."""
    checkpoint = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                              DEFAULT_CHECKPOINT)
    folder = tmp_path / "t"
    generate(str(folder), 12, 5, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4, 160, 60, processes=1,
                              quiet=True)
    out = run_script("benchmarks/tta.py", checkpoint, f"--test_dir={folder}", "--threads=1").stdout
    lines = re.findall(r"^(shifted|vote of \d+).* (\d\.\d{4}) \((\d+)/12\), O/0 swaps \d+", out, re.M)
    assert [kind for kind, _, _ in lines].count("shifted") == 7 and len(lines) == 12, out
    assert all(0 <= float(acc) <= 1 for _, acc, _ in lines)
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run_script("benchmarks/tta.py", checkpoint, f"--test_dir={empty}", check=False)
    assert bad.returncode != 0 and "no images found" in bad.stdout and "Traceback" not in bad.stdout
