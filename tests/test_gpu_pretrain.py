"""benchmarks/gpu_pretrain.py: its smoke mode end to end on the CPU (every part in order, the checkpoint it leaves
and that own-data training can start from it)."""
import json
import re

import pytest

from conftest import run_script, smoke_run

PARTS = ["== 1 environment", "== 2 varied captcha generation", "== 3 bench: the model fed as it trains",
         "== 4 training: cnn_ctc on varied captchas", "== 5 final", "== done in"]


@pytest.mark.slow
def test_smoke_run_trains_a_starting_point_on_varied_captchas(tmp_path):
    out = tmp_path / "out"
    text = smoke_run("benchmarks/gpu_pretrain.py", out, PARTS)
    assert re.search(r"fonts: +\d+ Latin fonts", text) and re.search(r"\d+ varied captchas/s with \d+ processes", text)
    assert re.search(r"fed \d+ img/s, model only \d+ img/s .* 0\.26 M parameters", text)
    assert "--online=1 --gen_style=varied" in text and "'--length=(3,8)'" in text
    assert re.search(r"  epoch 2: validation \d\.\d{4} at \d+ s", text)
    assert re.search(r"final: \d\.\d{4} of 40 varied captchas", text)
    log = (out / "train.log").read_text()
    assert "image     192x64, colour" in log and "length    3-8" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training"]["exit_code"] == 0 and 0 <= summary["training"]["final"]["accuracy"] <= 1
    assert (out / "pretrained_varied.pt").exists() and not list(out.glob("*_last.pt"))
    # where own-data training starts from it: every tensor carried over at its height (64)
    own = tmp_path / "own"
    run_script("captchaGenerator.py", "--split=own", "--count=40", "--seed=4", f"--dataset_dir={own}",
               "--gen_height=64", "--gen_width=192")
    trained = run_script("train.py", f"--train_dir={own}/own", f"--init={out}/pretrained_varied.pt", "--epochs=1",
                         "--charset=0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "--image_height=64", "--image_width=192",
                         "--channels=3",
                         f"--weights_dir={tmp_path}/w", f"--results={tmp_path}/r.txt", "--threads=1").stdout
    assert re.search(r"initialised (\d+) of \1 tensors from the checkpoint", trained), trained[-2000:]
