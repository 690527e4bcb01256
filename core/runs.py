"""A run's files: its name and checkpoint paths (never another run's), the output paths checked before any
training, and the results row a killed run did not write."""
import os
import re

import torch

import config
from core.checkpoint import CheckpointError
from core.files import RESULT_COLUMNS, append_row, read_results


def run_paths(s, run):
    return (os.path.join(s.WEIGHTS_DIR, f"{run}_best.pt"), os.path.join(s.WEIGHTS_DIR, f"{run}_last.pt"))


def taken(s, run):
    return any(os.path.exists(p) for p in run_paths(s, run))


def choose_run(s, base, resume):
    """The run name: a new run takes `base`, or base-2, base-3, ... when that is taken (never replacing another run's
    checkpoints); --resume=1 continues the newest of them that was cut short (killed, Ctrl-C), else the newest."""
    if resume:
        pattern = re.compile(re.escape(base) + r"(-\d+)?_last\.pt")
        found = [f for f in os.listdir(s.WEIGHTS_DIR) if pattern.fullmatch(f)] if os.path.isdir(
            s.WEIGHTS_DIR) else []
        if not found:
            raise CheckpointError(f"--resume=1: no {run_paths(s, base)[1]} to continue (RUN={base!r}); "
                                  f"start a new run without --resume")
        found.sort(key=lambda f: os.path.getmtime(os.path.join(s.WEIGHTS_DIR, f)), reverse=True)
        names = [f[:-len("_last.pt")] for f in found]
        return next((n for n in names if unfinished(s, n)), names[0])
    return next(n for n in [base] + [f"{base}-{k}" for k in range(2, 100_000)] if not taken(s, n))


def unfinished(s, run):
    """(epoch, planned epochs) of a run cut short (killed, or Ctrl-C): its last checkpoint short of its planned
    epochs and not marked finished (a stop by PATIENCE, TIME_LIMIT or TARGET_ACCURACY is); else None (finished, or
    no readable last checkpoint)."""
    path = run_paths(s, run)[1]
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # two numbers: no tensor is read
        epoch, planned = int(ckpt["epoch"]), int(ckpt["planned_epochs"])
    except Exception:  # missing, damaged, or from before planned_epochs was kept
        return None
    return (epoch, planned) if epoch < planned and not ckpt.get("finished") else None


def check_paths(s):
    """Refuse unusable output paths before any training time is spent."""
    if os.path.exists(s.WEIGHTS_DIR) and not os.path.isdir(s.WEIGHTS_DIR):
        raise config.ConfigError(f"WEIGHTS_DIR={s.WEIGHTS_DIR} is a file, not a folder: name a folder "
                                 f"(--weights_dir=weights)")
    if os.path.isdir(s.RESULTS):
        raise config.ConfigError(f"RESULTS={s.RESULTS} is a folder: name a file (--results=results.txt)")
    try:
        os.makedirs(s.WEIGHTS_DIR, exist_ok=True)
    except OSError as e:
        raise config.ConfigError(f"WEIGHTS_DIR={s.WEIGHTS_DIR} cannot be created ({e.strerror})") from None
    for path in (s.WEIGHTS_DIR, os.path.dirname(os.path.abspath(s.RESULTS))):
        if not os.access(path, os.W_OK):
            raise config.ConfigError(f"{path} is not writable: choose another WEIGHTS_DIR / RESULTS")
    if os.path.exists(s.RESULTS) and not os.access(s.RESULTS, os.W_OK):
        raise config.ConfigError(f"RESULTS={s.RESULTS} is not writable (read-only file): make it writable "
                                 f"(chmod u+w {s.RESULTS}) or name another file (--results=PATH)")


def restore_row(s, row):
    """Append the resumed checkpoint's results row if results.txt lacks it (the run was killed in between)."""
    try:
        rows = read_results(s.RESULTS) if os.path.exists(s.RESULTS) else []
    except (OSError, ValueError):
        rows = []
    if not any(r.get("run") == row["run"] and r.get("epoch") == str(row["epoch"]) for r in rows):
        append_row(s.RESULTS, RESULT_COLUMNS, row)
