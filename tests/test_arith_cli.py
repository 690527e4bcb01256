"""Arithmetic captchas and unsure readings from the command line: the generator's sums, ANSWER stored in the
checkpoint, predict.py's answer and unsure fields, test.py's answer accuracy and accuracy against coverage."""
import json
import os

import pytest
import torch

import models
from conftest import run_script
from core import data
from core.checkpoint import save_checkpoint
from core.generate import generate

CHARSET = "0123456789+-x=?"
pytestmark = pytest.mark.slow  # runs predict.py and test.py


def sums_checkpoint(path, answer="arith", spread=1000):
    """An untrained CTC model for sums, saved as train.py would (its config holds ANSWER)."""
    torch.manual_seed(0)
    codec = data.Codec(CHARSET, (5, 8))
    classes = models.head("cnn_ctc").num_classes(codec)
    build_args = dict(name="cnn_ctc", in_channels=1, num_classes=classes, positions=8, height=60, width=160)
    model = models.build_model(**build_args).eval()
    with torch.no_grad():  # spread the logits: a range of confidences, for the coverage table
        [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight.mul_(spread)
    save_checkpoint(str(path), model, build_args, codec, epoch=1, accuracy=0.0, config={"ANSWER": answer})
    return str(path)


@pytest.fixture(scope="module")
def sums(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arith") / "sums"
    generate(str(folder), 24, 4, CHARSET, 4, 160, 60, processes=1, quiet=True, answer="arith")
    return folder


def test_the_generator_draws_sums_labelled_in_labels_tsv(sums):
    rows = dict(line.rstrip("\n").split("\t") for line in open(sums / "labels.tsv") if not line.startswith("file"))
    assert len(rows) == 24 and all(os.path.exists(sums / f) for f in rows)
    from core.answers import parse
    assert all(parse(label).ok and label.endswith("=?") for label in rows.values())


def test_predict_gives_the_answer_the_checkpoint_was_trained_for(tmp_path, sums):
    ckpt = sums_checkpoint(tmp_path / "sums.pt")
    out = run_script("predict.py", ckpt, str(sums), "--json=1", "--threads=1").stdout
    readings = json.loads(out[out.index("["):])
    assert len(readings) == 24
    for r in readings:  # every reading has an answer, or why it has none; nothing is evaluated
        assert "answer" in r and (r["answer"] is not None or r["answer_error"]), r
    # read once: this barely trained model's copies disagree, and TTA's vote would mark every reading unsure
    tsv = run_script("predict.py", ckpt, str(sums), "--threads=1", "--min_confidence=0.5",
                     "--tta=1").stdout.splitlines()
    lines = [line for line in tsv if line.startswith(str(sums))]
    assert len(lines) == 24
    unsure = 0
    for line in lines:
        fields = line.split("\t")
        assert fields[3].startswith(("answer=", "no answer: ")), line
        confident = float(fields[2]) >= 0.5
        assert (fields[-1] == "unsure") == (not confident), line
        unsure += not confident
    assert 0 < unsure < 24  # both kinds of reading were seen


def test_predict_answer_none_overrides_the_checkpoint(tmp_path, sums):
    ckpt = sums_checkpoint(tmp_path / "sums.pt")
    out = run_script("predict.py", ckpt, str(sums), "--threads=1", "--answer=none").stdout
    assert all(len(line.split("\t")) == 3 for line in out.splitlines() if line.startswith(str(sums)))


def test_test_py_reports_answer_accuracy_and_coverage(tmp_path, sums):
    ckpt = sums_checkpoint(tmp_path / "sums.pt")
    png = tmp_path / "coverage.png"
    out = run_script("test.py", ckpt, f"--test_dir={sums}", f"--coverage={png}", "--threads=1").stdout
    seq = float(out.split("sequence accuracy ")[1].split()[0])
    answer = float(out.split("answer accuracy ")[1].split()[0])
    assert answer >= seq  # a right reading is a right answer; a wrong one may still be
    assert "MIN_CONFIDENCE  answered  coverage  accuracy  errors" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_min_confidence_out_of_range_is_one_line(tmp_path, sums):
    p = run_script("predict.py", sums_checkpoint(tmp_path / "s.pt"), str(sums), "--min_confidence=1.5", check=False)
    assert p.returncode == 1 and "MIN_CONFIDENCE" in p.stdout.strip().splitlines()[-1] and "Traceback" not in p.stdout
