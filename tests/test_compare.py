"""compare.py end to end on a few hundred small generated captchas: two models and an entry that fails, the
files and their rows, a rerun that skips the finished entries, a one-variant ablation, and user errors."""
import csv
import importlib
import json
import os
import sys

import pytest
import torch

import compare
import config
from core import data
from core.files import RESULT_COLUMNS, append_row
from conftest import DIGITS, digit_sets, run_script

FAILING = "cnn --batch_size=100000"  # train.py exits 1: fewer images than one batch


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """320 training and 100 test 4-digit captchas at 96x32."""
    return digit_sets(tmp_path_factory.mktemp("compare"), 320, 100, 96, 32)


def options(base):
    """The data, a tiny budget, one thread; every file under `base`."""
    return [f"--train_dir={base}/train", f"--test_dir={base}/test", f"--cache_dir={base}/cache",
            f"--compare_dir={base}/out", f"--charset={DIGITS}", "--image_width=96", "--image_height=32",
            "--batch_size=32", "--compare_epochs=1", "--threads=1", "--show=2"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def cli(monkeypatch, capsys):
    """compare.main() in this process: (exit code, output), or ("error", message) for a user error."""
    def run(*args):
        monkeypatch.setattr(sys, "argv", ["compare.py", *args])
        capsys.readouterr()
        try:
            return compare.main(), capsys.readouterr().out
        except (config.ConfigError, data.DataError) as e:
            return "error", str(e)
        finally:
            importlib.reload(config)  # undo the overrides
    return run


@pytest.fixture(scope="module")
def swept(small):
    """The comparison run once, as a user runs it: cnn, cnn_ctc with an option and an entry whose train.py fails."""
    models = f"--compare_models=cnn,cnn_ctc --pool=max,{FAILING}"
    return small, models, run_script("compare.py", *options(small), models, check=False)


@pytest.mark.slow
def test_comparison_files_rows_and_failure(swept):
    base, _, first = swept
    out = base / "out"
    assert first.returncode == 1, first.stdout[-3000:]  # one entry failed, the sweep went on
    assert "1 of 3 entries did not finish: cnn-batch_size100000" in first.stdout
    rows = read_csv(out / "comparison.csv")
    assert [r["entry"] for r in rows][-1] == "cnn-batch_size100000"  # failed entries last
    by_entry = {r["entry"]: r for r in rows}
    assert set(by_entry) == {"cnn", "cnn_ctc-max", "cnn-batch_size100000"}
    for name, head in (("cnn", "fixed"), ("cnn_ctc-max", "ctc")):
        row = by_entry[name]
        assert row["status"] == "done" and row["head"] == head and row["epochs"] == "1", row
        assert int(row["parameters"]) > 1000 and float(row["cpu_latency_ms"]) > 0
        assert float(row["device_latency_ms"]) > 0 and float(row["device_images_per_s"]) > 0
        assert 0 <= float(row["best_seq_acc"]) <= 1 and row["best_epoch"] == "1" and float(row["train_seconds"]) > 0
        assert 0 <= float(row["test_seq_acc"]) <= float(row["test_char_acc"]) <= 1
        assert row["input"] in ("96x32x1", "96x32x3")  # channels: as the images are (grey or colour)
        assert (out / name / f"{name}_best.pt").exists() and not (out / name / f"{name}_last.pt").exists()
    assert by_entry["cnn_ctc-max"]["tricks"] == "max" and by_entry["cnn"]["tricks"] == "-"
    done = [float(r["best_seq_acc"]) for r in rows[:2]]
    assert done == sorted(done, reverse=True)

    bad = by_entry["cnn-batch_size100000"]
    assert bad["status"] == "failed" and "exit code 1" in bad["error"] and "fewer than one batch" in bad["error"]
    record = json.loads((out / "cnn-batch_size100000" / "failed.json").read_text())
    assert record["returncode"] == 1 and any("lower --batch_size" in line for line in record["tail"])

    md = (out / "comparison.md").read_text()
    assert "| cnn | fixed |" in md and "| cnn_ctc-max | ctc | max |" in md
    assert "| val seq acc | val char acc | test seq acc |" in md and "input 96x32x" in md
    assert "`cnn-batch_size100000`: failed (exit code 1" in md and "320 images, 10% held out for validation" in md
    assert (out / "comparison.png").stat().st_size > 10_000


@pytest.mark.slow
def test_rerun_skips_finished_entries(swept, cli):
    base, models, _ = swept
    out = base / "out"
    logs = {name: (out / name / "log.txt").stat().st_mtime_ns for name in ("cnn", "cnn_ctc-max")}
    failed_log = (out / "cnn-batch_size100000" / "log.txt").stat().st_mtime_ns
    code, text = cli(*options(base), models)
    assert code == 1 and "2 already finished or recorded, 1 to train" in text
    assert {n: (out / n / "log.txt").stat().st_mtime_ns for n in logs} == logs  # not trained again
    assert (out / "cnn-batch_size100000" / "log.txt").stat().st_mtime_ns != failed_log  # the failure is retried
    code, text = cli(*options(base), models, "--retry_failed=0")
    assert code == 1 and "3 already finished or recorded, 0 to train" in text
    assert [r["status"] for r in read_csv(out / "comparison.csv")] == ["done", "done", "failed"]
    # the same folder with another budget is refused rather than mixed
    other = [o for o in options(base) if not o.startswith("--compare_epochs")] + ["--compare_epochs=2"]
    code, text = cli(*other, models)
    assert code == "error" and "finished with other settings: cnn, cnn_ctc-max" in text


@pytest.mark.slow
def test_ablation_entry(small, cli):
    code, text = cli(*options(small), "--ablation=1", "--compare_models=cnn", "--variants=dual", "--compare_seeds=1")
    assert code == 0 and "left out of the ablation (options cnn does not take): ibn, cbam, se" in text
    rows = read_csv(small / "out" / "ablation.csv")
    assert [(r["entry"], r["variant"], r["seed"], r["status"], r["tricks"]) for r in rows] == [
        ("cnn-dual-s1", "dual", "1", "done", "dual")]
    assert "--pool=dual" in (small / "out" / "ablation" / "cnn-dual-s1" / "log.txt").read_text().splitlines()[0]
    md = (small / "out" / "ablation.md").read_text()
    assert next(line for line in md.splitlines() if line.startswith("| + dual pooling | dual | 1 |"))
    assert (small / "out" / "ablation.png").stat().st_size > 5_000


def test_ablation_table_mean_and_spread(tmp_path, monkeypatch):
    """Two variants x two seeds written as finished entries: the table's mean, sample std, range and difference."""
    monkeypatch.setattr(config, "COMPARE_DIR", str(tmp_path))
    monkeypatch.setattr(config, "COMPARE_SEEDS", 2)
    entries = []
    for variant, tricks, accs in (("baseline", {}, (0.5, 0.7)), ("dual", {"POOL": "dual"}, (0.8, 0.8))):
        for seed, acc in zip((1, 2), accs):
            entry = compare.Entry(f"cnn-{variant}-s{seed}", "cnn", tricks, seed, str(tmp_path / f"{variant}{seed}"),
                                  variant, args=[f"--seed={seed}"])
            os.makedirs(entry.folder)
            compare.write_json(entry.path("done.json"), dict(args=entry.args, wall_seconds=9, parameters=2_000_000,
                                                             cpu_latency_ms=1.5, device="cpu"))
            for epoch, seq in ((1, acc / 2), (2, acc)):
                append_row(entry.path("results.txt"), RESULT_COLUMNS, dict(
                    run=entry.name, epoch=epoch, train_loss=1.0, val_loss=1.0, char_acc=seq + 0.1, seq_acc=seq,
                    test_char_acc="nan", test_seq_acc="nan", lr=1e-3, seconds=3.0, images_per_s=100))
            entries.append(entry)
    compare.write_ablation(entries, 2, 0, torch.device("cpu"))
    md = (tmp_path / "ablation.md").read_text()
    assert "| baseline | - | 2 | 0.6000 ± 0.1414 | 0.5000 - 0.7000 | - | 0.7000 ± 0.1414 | 2.00 | 1.50 | 100 |" in md
    assert "| + dual pooling | dual | 2 | 0.8000 ± 0.0000 | 0.8000 - 0.8000 | +0.2000 |" in md


def test_user_errors(cli, small, tmp_path):
    code, unknown = cli(*options(small), "--compare_models=cnn,resnet19,foo")
    assert code == "error" and "unknown models in COMPARE_MODELS: resnet19, foo" in unknown
    assert "registered: cnn, cnn_ctc" in unknown
    assert "NECK=64 does not apply to cnn_ctc" in cli("--compare_models=cnn,cnn_ctc --neck=64")[1]
    # the same run twice: an option at its neutral value names no other run
    assert "lists an entry twice: cnn_ctc" in cli("--compare_models=cnn_ctc,cnn_ctc --sequence=none", "--dry_run=1")[1]
    code, no_data = cli(f"--train_dir={tmp_path}/none", f"--compare_dir={tmp_path}/out")
    assert f"TRAIN_DIR {tmp_path}/none does not exist" in no_data
    assert "python captchaGenerator.py --split=train" in no_data
    assert not (tmp_path / "out").exists()
    assert "use --compare_epochs" in cli("--epochs=3")[1]
    assert "choose from quick, full" in cli("--compare_preset=fast")[1]
