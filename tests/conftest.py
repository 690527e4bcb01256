import fcntl
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from core.generate import generate  # noqa: E402

DIGITS = "0123456789"


def run_script(script, *args, check=True, timeout=600):
    """Run a project script as a user would; returns the CompletedProcess (stdout+stderr in .stdout)."""
    cmd = [sys.executable, os.path.join(ROOT, script), *args]
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if check and p.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {p.returncode}:\n{p.stdout[-3000:]}")
    return p


def smoke_run(script, out, parts, *args):
    """A GPU script run with --smoke=1 into `out` (and `args`) on the CPU: its printed summary, once checked to hold
    each of `parts` in that order and no failed part or traceback."""
    text = run_script(script, "--smoke=1", f"--out={out}", *args, timeout=900).stdout
    where = [text.find(part) for part in parts]
    assert -1 not in where and where == sorted(where), text[-3000:]
    assert "FAILED" not in text and "Traceback" not in text, text[-3000:]
    return text


def tmp_paths(base):
    """--NAME=value overrides that keep every file a script writes under `base`."""
    return [f"--train_dir={base}/train", f"--test_dir={base}/test", f"--cache_dir={base}/cache",
            f"--weights_dir={base}/weights", f"--results={base}/results.txt"]


def digit_sets(base, train, test, width=160, height=60):
    """`train` (seed 1) and `test` (seed 2) 4-digit captchas under base/train and base/test; returns base."""
    generate(str(base / "train"), train, 1, DIGITS, 4, width, height, processes=1, quiet=True)
    generate(str(base / "test"), test, 2, DIGITS, 4, width, height, processes=1, quiet=True)
    return base


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory):
    """4-digit captchas: 2000 train (seed 1), 300 test (seed 2)."""
    base = tmp_path_factory.mktemp("digits")
    generate(str(base / "train"), 2000, 1, DIGITS, 4, 160, 60, quiet=True)
    generate(str(base / "test"), 300, 2, DIGITS, 4, 160, 60, quiet=True)
    return base


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A short CPU training run (3 epochs) on 4-digit captchas (2000 train, seed 1; 300 test, seed 2), everything
    else inferred or default (so it starts from the shipped model: INIT auto); returns (base folder, train.py
    output). Under pytest-xdist the workers share one run: the first to ask trains, the others wait for it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder above every worker's own
    base, log = root / "trained", root / "trained.log"
    with open(root / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not log.exists():
            digit_sets(base, 2000, 300)
            # the own-data command: only the folders (and, for the test's time, a run name and 3 epochs)
            out = run_script("train.py", *tmp_paths(base), "--epochs=3", "--run=t", "--show=4")
            log.write_text(out.stdout)
    return base, log.read_text()


@pytest.fixture
def no_teacher(monkeypatch):
    """The labelling page without a teacher: TEACHER = "auto" has ddddocr's two models read the images before any
    model where ddddocr is installed (test_teach.py covers the page with it); these tests check the order and
    answers without it."""
    import config
    monkeypatch.setattr(config, "TEACHER", "")
