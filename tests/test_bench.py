"""bench.py: model-only and full-pipeline images/s, their ratio, generation by processes, peak memory."""
import re

import captchaGenerator
from conftest import DIGITS, run_script


def numbers(out, label):
    line = next(line for line in out.splitlines() if line.startswith(label))
    return [float(x) for x in re.findall(r"\d+\.?\d*", line.split(":", 1)[1])]


def test_bench_reports_rates_ratio_generation_memory(tmp_path):
    captchaGenerator.generate(str(tmp_path / "train"), 64, 1, DIGITS, 4, 160, 60, processes=1, quiet=True)
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
