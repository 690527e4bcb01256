"""benchmarks/bench_suite.py: the few-labels benchmark's points, its table and its refusals, on a tiny set."""
import json
import os

import pytest

from conftest import run_script
from test_owndata import own_set


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """A suite folder holding one set, `tiny`, laid out as real_sets.py writes them (train/ and test/)."""
    base = tmp_path_factory.mktemp("suite")
    own_set(str(base / "sets" / "tiny" / "train"), 60, 41, labels_tsv=True, charset="ab12")
    own_set(str(base / "sets" / "tiny" / "test"), 20, 42, labels_tsv=True, charset="ab12")
    return base


@pytest.mark.slow
def test_points_are_tested_once_on_the_kept_checkpoint(tiny_suite):
    out = tiny_suite / "runs"
    p = run_script("benchmarks/bench_suite.py", f"--real_sets={tiny_suite / 'sets'}", f"--out={out}", "--sets=tiny",
                   "--labels=30,all", "--epochs=1", "--threads=1", "--batch_size=16")
    lines = p.stdout.splitlines()
    assert any(line.startswith("tiny") and "30 labels: test" in line for line in lines), p.stdout
    assert "| tiny |" in p.stdout and "| **worst** |" in p.stdout and "| **median** |" in p.stdout
    point = out / "tiny" / "n30-epochs1-batch_size16"
    few = json.loads((point / "point.json").read_text())
    assert few["labels"] == "30" and few["test_images"] == "20 images" and 0 <= few["test_right"] <= 20
    assert "--limit=30" in few["command"] and "--unlabeled_dir=" in few["command"]
    assert abs(few["test_seq"] - few["test_right"] / 20) < 1e-3
    # read once (--tta=1) and as test.py reads by default (TTA), both kept and in the table as `once / TTA`
    assert "--tta=1" in few["test_command"] and "--tta" not in few["tta_command"] and 0 <= few["tta_right"] <= 20
    assert "read again as 5 shifted copies" in (point / "test_tta.log").read_text()
    assert f"| {few['test_seq']:.2%} / {few['tta_seq']:.2%} |" in p.stdout, p.stdout
    log = (point / "train.log").read_text()
    assert "no test folder (TEST_DIR)" in log and "test seq acc" not in log  # trained without the per-epoch test
    assert "20 images" in (point / "test.log").read_text()
    written = os.path.getmtime(point / "train.log")
    again = run_script("benchmarks/bench_suite.py", f"--real_sets={tiny_suite / 'sets'}", f"--out={out}",
                       "--sets=tiny", "--labels=30", "--epochs=1", "--threads=1", "--batch_size=16")
    assert f"{few['test_seq']:.2%}" in again.stdout  # a measured point is read back, not run again
    assert os.path.getmtime(point / "train.log") == written


@pytest.mark.slow
def test_refusals(tiny_suite):
    for args, message in ((["--sets=nope"], "unknown set nope"),
                          (["--labels=ten"], "--labels=ten: each entry is a number of labelled images"),
                          (["bogus"], "bogus: options are --sets=")):
        p = run_script("benchmarks/bench_suite.py", f"--real_sets={tiny_suite / 'sets'}",
                       f"--out={tiny_suite / 'x'}", *args, check=False)
        assert p.returncode == 1 and message in p.stdout and "Traceback" not in p.stdout, p.stdout


def test_help_prints_the_usage_and_runs_nothing(tmp_path):
    p = run_script("benchmarks/bench_suite.py", "--help", f"--out={tmp_path / 'runs'}")
    assert p.stdout.startswith("The few-labels benchmark") and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_bench_ddddocr_reads_a_labelled_folder(tiny_suite):
    pytest.importorskip("ddddocr")
    test = tiny_suite / "sets" / "tiny" / "test"
    p = run_script("benchmarks/bench_ddddocr.py", "--checkpoint=weights/pretrained.pt", f"--test_dir={test}",
                   "--count=8", "--teacher=ddddocr2")
    assert f"the first 8 images of {test}" in p.stdout, p.stdout
    rows = [line for line in p.stdout.splitlines() if line.startswith(("| ddddocr", "| the teacher"))
            or "pretrained.pt" in line]
    assert len(rows) == 4 and all(len(r.split("|")) == 6 for r in rows), p.stdout  # ours read once and with TTA
    assert "ddddocr2" in rows[1] and "TTA=1)" in rows[2] and "TTA=5)" in rows[3], p.stdout


def test_missing_chars_draws_labels_as_limit_does_and_refuses_unknown_sets(tiny_suite):
    """benchmarks/missing_chars.py: draw K is LIMIT's seeded sample with seed K (train.py's --seed=K-1), the rest
    unlabelled; an unknown set is one line naming the known ones."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.missing_chars import draw, seeds
    from core import data

    assert seeds("1-3,7") == [1, 2, 3, 7] and seeds(2) == [2]
    folder = str(tiny_suite / "sets" / "tiny" / "train")
    items = data.read_labels(folder)
    labelled, unlabelled = draw(items, 10, 3)
    assert labelled == [items[i] for i in data.sample_indices(len(items), 10, 3)]
    assert len(unlabelled) == 50 and not {p for p, _ in labelled} & set(unlabelled)
    p = run_script("benchmarks/missing_chars.py", f"--real_sets={tiny_suite / 'sets'}", "--sets=nope", check=False)
    assert p.returncode == 1 and "unknown set(s) nope; known: " in p.stdout and "tiny" in p.stdout, p.stdout


@pytest.mark.slow
def test_page_loop_labels_the_pages_order_round_by_round(tiny_suite):
    """benchmarks/page_loop.py: the set's training images copied without labels, the first round's labels the
    first images the page offers (file-name order without a teacher), the next round's the ones the round's model
    reads least surely; each round trained and tested, a measured round read back."""
    out = tiny_suite / "loop"
    args = ["benchmarks/page_loop.py", f"--set={tiny_suite / 'sets' / 'tiny'}", f"--out={out}", "--rounds=20,30",
            "--teacher=", "--epochs=1", "--threads=1", "--batch_size=16", f"--cache_dir={tiny_suite / 'cache'}"]
    p = run_script(*args)
    assert "tiny: 20 labels, the page's order:" in p.stdout and "tiny: 30 labels" in p.stdout, p.stdout
    folder = out / "tiny" / "folder"
    images = sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
    assert len(images) == 60 and not (folder / "labels.tsv").is_symlink()
    first = (out / "tiny" / "round20" / "labels.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in first] == images[:20]
    both = (folder / "labels.tsv").read_text().splitlines()
    assert len(both) == 30 and both[:20] == first and len({line.split("\t")[0] for line in both}) == 30
    truth = dict(line.split("\t") for line in (tiny_suite / "sets" / "tiny" / "train" / "labels.tsv")
                 .read_text().splitlines() if "\t" in line)
    assert all(truth[name] == label for name, label in (line.split("\t") for line in both))
    point = json.loads((out / "tiny" / "round30" / "point.json").read_text())
    assert point["tta"][1] == 20 and point["once"][1] == 20 and 0 <= point["tta"][0] <= 20
    assert "27 training images, 3 validation" in (out / "tiny" / "round30" / "train.log").read_text()
    again = run_script(*args)
    assert again.stdout.count("labels, the page's order") == 2  # read back
