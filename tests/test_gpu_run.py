"""benchmarks/gpu_run.py: its smoke mode end to end on the CPU (every part of the summary, in order, and the
files it leaves), the training plan it makes from the measured rates, and the offline install of a wheel."""
import json
import os
import re
import sys
import zipfile

import pytest

from benchmarks import gpu_run
from conftest import run_script, smoke_run

PARTS = ["== 1 environment", "== 2 captcha generation", "== 3 bench: full pipeline / model only",
         "== 4 recipe: cnn_ctc on fresh captchas", "== done in"]


@pytest.mark.slow
def test_smoke_run_prints_every_part_in_order(tmp_path):
    out = tmp_path / "out"
    text = smoke_run("benchmarks/gpu_run.py", out, PARTS)
    assert re.search(r"GPU: +none \(CPU\)", text) and "torchvision" in text and "cores" in text
    assert re.search(r"\d+ captchas/s with \d+ processes", text)
    for model in gpu_run.BENCH_MODELS:
        assert re.search(rf"{re.escape(model)}: ratio \d+\.\d+ .* peak memory \d+\.\d+ GiB", text), model
    assert "python train.py --model=cnn_ctc --sequence=none --online=1" in text
    assert re.search(r"recipe \(--widen=2 --batch_size=256 --online_replay=3000000 --online=1\): ratio \d", text)
    assert re.search(r"by processes: 1: \d+ \(1\.00\), 2: \d+", text)
    log = (out / "train.log").read_text()  # the recipe trains with ONLINE_REPLAY, the widened model
    assert "fresh as the generators render them, else drawn from the last 256 rendered (ONLINE_REPLAY)" in log
    assert re.search(r"of its images fresh, the rest drawn again from the \d+ rendered so far", log)
    assert "0.99 M parameters" in log
    assert re.search(r"  epoch 2: validation \d\.\d{4} at \d+ s", text)
    assert re.search(r"final: \d\.\d{4} on 200 fresh captchas \(seed 99\)", text)
    assert (out / "summary.txt").read_text().strip() == text.strip()
    summary = json.loads((out / "summary.json").read_text())
    assert [k for k in summary if k != "seconds"] == ["environment", "generation", "bench", "recipe"]
    recipe = summary["recipe"]
    assert recipe["exit_code"] == 0 and [e["epoch"] for e in recipe["epochs"]] == [1, 2]
    assert 0 <= recipe["final"]["accuracy"] <= 1 and recipe["final_seconds"] >= recipe["train_seconds"]
    assert (out / recipe["checkpoint"]).exists() and (out / "train.log").exists()
    assert not list(out.glob("*_last.pt"))  # only what is worth collecting
    again = run_script("benchmarks/gpu_run.py", "--smoke=1", f"--out={out}", check=False)
    assert again.returncode != 0 and "holds files of an earlier run" in again.stdout


def test_plan_fits_the_schedule_in_the_time():
    epochs, per_epoch = gpu_run.plan_recipe(300, 8000, 128)
    assert epochs == 20 and per_epoch % 128 == 0
    assert epochs * per_epoch <= gpu_run.SAFETY * 8000 * 300  # the whole one-cycle schedule fits
    assert gpu_run.plan_recipe(10, 10, 128) == (2, 128)  # at least two epochs of one batch


def fake_wheel(folder, name, version):
    """A pure-Python wheel of a package `name` holding VALUE = 1."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", "VALUE = 1\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.parametrize("requirement, how", [("offlinepkg==0.1", "pip installed"), ("offlinepkg==9.9", "unzipped")])
def test_a_missing_package_is_installed_from_its_wheel(tmp_path, monkeypatch, requirement, how):
    """No network: pip installs the wheel from the folder; where pip refuses (here: another version), the wheel
    is unzipped. Either way the package imports here and the folder is on PYTHONPATH for child processes."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    fake_wheel(tmp_path, "offlinepkg", "0.1")
    try:
        said = gpu_run.ensure_wheel("offlinepkg", requirement, str(tmp_path))
        assert said.startswith(how) or how in said
        assert sys.modules["offlinepkg"].VALUE == 1
        assert os.environ["PYTHONPATH"] == str(tmp_path / "site")
        assert gpu_run.ensure_wheel("offlinepkg", requirement, str(tmp_path)) == "already installed"
    finally:
        sys.modules.pop("offlinepkg", None)
    with pytest.raises(SystemExit, match="make wheels"):
        gpu_run.ensure_wheel("nowheel", "nowheel==1.0", str(tmp_path))
