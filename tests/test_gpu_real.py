"""benchmarks/pack_set.py and benchmarks/gpu_real.py: a set packed to carry reads as the set does, and the GPU
script's smoke mode trains and tests it end to end on the CPU."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import DIGITS, run_script, smoke_run
from core import data
from core.generate import generate

PARTS = ["== 1 environment", "== 2 bench", "== 3 training", "test: ", "== done in"]


def colour_set(base, train=60, test=20):
    """4-digit colour captchas of two sizes (so the test part is read resized), train/ and test/."""
    generate(str(base / "train"), train, 1, DIGITS, 4, 120, 40, processes=1, quiet=True)
    generate(str(base / "test"), test, 2, DIGITS, 4, 150, 50, processes=1, quiet=True)
    for path in list((base / "train").glob("*.png"))[::3]:  # a third coloured and transparent, as colour_lines is
        rgba = Image.open(path).convert("RGBA")
        rgba.putalpha(Image.eval(rgba.convert("L"), lambda v: 255 - v))
        rgba.save(path)
    return base


def test_a_packed_set_reads_as_the_set_does(tmp_path):
    base = colour_set(tmp_path / "set")
    out = tmp_path / "packed"
    printed = run_script("benchmarks/pack_set.py", str(base), f"--out={out}", "--test=7").stdout
    geometry = data.infer_geometry([p for p, _ in data.read_labels(str(base / "train"))])
    assert f"{geometry[0]}x{geometry[1]}" in printed and "train: 60 images" in printed and "test: 7 images" in printed
    assert data.infer_geometry([p for p, _ in data.read_labels(str(out / "train"))]) == geometry
    for part, count in (("train", 60), ("test", 7)):
        source, packed = data.read_labels(str(base / part))[:count], data.read_labels(str(out / part))
        assert [t for _, t in source] == [t for _, t in packed]
        for (a, _), (b, _) in zip(source, packed):
            assert b.endswith(".webp") and np.array_equal(data.load_image(a, *geometry), data.load_image(b, *geometry))
    again = run_script("benchmarks/pack_set.py", str(base), f"--out={out}", check=False)
    assert again.returncode and "is not empty" in again.stdout


@pytest.mark.slow
def test_smoke_run_trains_and_tests_a_set_with_all_its_labels(tmp_path):
    base = colour_set(tmp_path / "set")
    out = tmp_path / "out"
    text = smoke_run("benchmarks/gpu_real.py", out, PARTS, f"--set={base}")
    assert re.search(r"cnn_ctc, 0\.\d\d M parameters, batch \d+: \d+ img/s fed from", text)
    assert re.search(r"plan: 200 training images \(smoke\); python train.py --train_dir=\S+/train --images_seen=200",
                     text)
    assert re.search(r"test: \d+\.\d\d% \(\d+/20\), character", text)
    assert re.search(r"with TTA \(test.py's default reading\) \d+\.\d\d% \(\d+\)", text)
    assert sorted(p.name for p in out.iterdir()) == ["cnn_ctc_best.pt", "point.json", "summary.json", "summary.txt",
                                                    "test.log", "train.log"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["point"]["labels"] == "all" and summary["bench"]["pipeline_images_per_s"] > 0
    missing = run_script("benchmarks/gpu_real.py", "--smoke=1", f"--out={tmp_path}/o2", f"--set={tmp_path}",
                         check=False)
    assert missing.returncode and "holding train/ and test/" in missing.stdout
