import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import DIGITS, ROOT, run_script
from core.checkpoint import load_checkpoint
from core.files import RESULT_COLUMNS, read_results
from core.inference import Predictor

pytestmark = pytest.mark.slow  # every test here trains or reads what a training run wrote

MIN_SEQ_ACC = 0.5  # 4 digits: chance is 1e-4


def test_short_training_learns(trained):
    base, out = trained
    rows = read_results(base / "results.txt")
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, 4)] and {r["run"] for r in rows} == {"t"}
    assert set(RESULT_COLUMNS) <= set(rows[0])
    best = max(float(r["seq_acc"]) for r in rows)
    assert best >= MIN_SEQ_ACC, out[-2000:]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert "truth" in out and out.count("| ok") == 1  # the sample table: once, at the end
    assert "charset   '0123456789' (10 characters) (inferred)" in out and "length    4 (inferred)" in out
    assert "image     160x60, colour (inferred)" in out and "batch 128" in out
    assert (base / "results.png").stat().st_size > 10_000
    ckpt = load_checkpoint(str(base / "weights" / "t_best.pt"))
    assert abs(ckpt["accuracy"] - best) < 1e-4 and ckpt["charset"] == DIGITS  # chosen on validation
    assert 0.5 <= ckpt["temperature"] <= 2.83 and Predictor(str(base / "weights" / "t_best.pt")).temperature \
        == ckpt["temperature"]  # fitted on the validation part; what predict.py, test.py and app.py read with
    assert out.strip().splitlines()[-1].startswith(f"==> best: {base}/weights/t_best.pt (epoch ")
    assert "validation seq acc" in out.splitlines()[-1] and "test seq acc" in out.splitlines()[-1]
    assert "validation" in out and "reported, never used to choose" in out
    assert ckpt["config"]["EPOCHS"] == 3 and "optimizer" not in ckpt
    # the resolved plan (2000 images: a small set), and this machine's paths reduced to their last part
    planned = {k: ckpt["config"][k] for k in ("BATCH_SIZE", "AUGMENT", "LABEL_SMOOTHING", "CHARSET", "LENGTH",
                                              "TRAIN_DIR", "WEIGHTS_DIR", "RESULTS", "INIT")}
    assert planned == dict(BATCH_SIZE=128, AUGMENT=0.5, LABEL_SMOOTHING=0.1, CHARSET=DIGITS, LENGTH=4,
                           TRAIN_DIR="train", WEIGHTS_DIR="weights", RESULTS="results.txt", INIT="pretrained.pt")
    assert "optimizer" in load_checkpoint(str(base / "weights" / "t_last.pt"))


def test_test_script_reports_accuracy_and_mistakes(trained):
    base, _ = trained
    # config defaults (36-char charset) differ from the checkpoint: test.py must use the checkpoint's
    out = run_script("test.py", str(base / "weights" / "t_best.pt"), f"--test_dir={base}/test",
                     f"--cache_dir={base}/cache").stdout
    assert "sequence accuracy" in out and "character accuracy" in out and "300 images" in out
    assert "read again as 5 shifted copies that vote (TTA=5" in out
    once = run_script("test.py", str(base / "weights" / "t_best.pt"), f"--test_dir={base}/test",
                      f"--cache_dir={base}/cache", "--tta=1").stdout
    tested = load_checkpoint(str(base / "weights" / "t_best.pt"))["test_accuracy"]
    assert f"sequence accuracy {tested:.4f}" in once  # read once: what train.py reported for the kept checkpoint
    assert "shifted copies" not in once
    if tested < 1:
        assert "wrong (" in out and "least confident first" in out


def test_predict_script(trained, tmp_path):
    base, _ = trained
    ckpt = f"--checkpoint={base}/weights/t_best.pt"
    files = sorted(os.listdir(base / "test"))[:5]
    out = run_script("predict.py", *[str(base / "test" / f) for f in files], ckpt).stdout
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert [os.path.basename(line[0]) for line in lines] == files
    # a 5-epoch model: most readings are right, every one is digits with a confidence
    assert all(set(line[1]) <= set(DIGITS) and 0 <= float(line[2]) <= 1 for line in lines)
    assert sum(os.path.basename(line[0]).startswith(line[1] + "_") for line in lines) >= 2
    as_json = json.loads(run_script("predict.py", f"{base}/test/{files[0][:2]}*.png", ckpt, "--json=1").stdout)
    assert len(as_json) >= 1 and {"file", "text", "confidence", "chars"} <= set(as_json[0])
    (tmp_path / "bad.png").write_bytes(b"nope")
    bad = run_script("predict.py", str(tmp_path / "bad.png"), str(tmp_path / "missing.png"), ckpt, check=False)
    assert bad.returncode != 0 and "bad.png: not a readable image" in bad.stdout
    assert "missing.png: no such file" in bad.stdout and "Traceback" not in bad.stdout
    none = run_script("predict.py", "x.png", f"--checkpoint={tmp_path}/none.pt", check=False)
    assert "no checkpoint at" in none.stdout and "Traceback" not in none.stdout


def test_rare_readings_script(trained):
    """benchmarks/rare_readings.py: the labels' and the readings' share of each character, and train.py's advice
    (none for a model that reads every digit about as often as its labels hold it)."""
    base, _ = trained
    out = run_script("benchmarks/rare_readings.py", f"{base}/weights/t_best.pt", f"--train_dir={base}/train",
                     "--limit=200", f"--cache_dir={base}/cache").stdout.splitlines()
    assert out[0] == "200 labelled images, 1800 read; per character: share of the labels -> of the readings"
    assert len(out) == 12 and all(re.fullmatch(r"  '\d': 0\.\d{4} -> 0\.\d{4} \([\d.]+ times\)", line) for line in out[1:11])
    assert out[-1] == "advice: ''"


def test_plot_script(trained, tmp_path):
    base, _ = trained
    run_script("torch_util.py", str(base / "results.txt"), f"--out={tmp_path}/p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_sigkill_then_resume_continues(digits_data, tmp_path):
    # the 300 test images as a small training set: ~1 s epochs
    args = [f"--train_dir={digits_data}/test", "--test_dir=", f"--cache_dir={digits_data}/cache",
            f"--weights_dir={tmp_path}/w", f"--results={tmp_path}/r.txt", f"--charset={DIGITS}", "--epochs=8",
            "--run=k", "--batch_size=32", "--patience=-1"]  # 300 images get learnt by heart: never stop early
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "r.txt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 3:  # epoch 2 done
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = read_results(results)
    assert 2 <= len(done) < 8, "training finished before it could be killed"
    last = load_checkpoint(str(tmp_path / "w" / "k_last.pt"))["epoch"]
    assert last in (len(done), len(done) + 1)  # killed after a checkpoint, maybe before its row
    out = run_script("train.py", *args, "--resume=1").stdout
    assert "resumed" in out and f"after epoch {last}" in out
    epochs = [int(r["epoch"]) for r in read_results(results)]
    assert epochs == list(range(1, 9))  # a row lost to the kill (after its checkpoint) is written on resume
    assert load_checkpoint(str(tmp_path / "w" / "k_last.pt"))["epoch"] == 8
