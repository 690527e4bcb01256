"""Accuracy against coverage: answer only the readings the model is confident about, abstain on the rest.

A reading is answered when its confidence is at least MIN_CONFIDENCE, and "unsure" otherwise. Raising
MIN_CONFIDENCE answers fewer captchas (coverage falls) and gets more of the answered ones right (accuracy
rises); the table and the plot below show that trade on a labelled test set, so a user can pick the setting.

API:
    coverage_table(confidences, correct, thresholds=THRESHOLDS) -> [CoverageRow]   one row per threshold
    format_table(rows) -> str                      an aligned text table of those rows
    plot_coverage(confidences, correct, path, thresholds=THRESHOLDS) -> path   accuracy (y) against coverage (x)
    is_unsure(confidence, min_confidence) -> bool  confidence below MIN_CONFIDENCE (0: never unsure)
    check_min_confidence(value) -> float           validates a value of the setting MIN_CONFIDENCE

The rule is the same everywhere: answered <=> confidence >= threshold, compared as float64 (a NaN confidence
is never answered, except with threshold 0, which answers everything).
"""
import os
import tempfile
from typing import NamedTuple, Optional

import numpy as np

THRESHOLDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


class CoverageRow(NamedTuple):
    """One threshold's outcome. coverage: answered / all (None for no readings at all); accuracy: right /
    answered (None when none is answered); errors: answered readings that are wrong."""
    threshold: float
    answered: int
    coverage: Optional[float]
    accuracy: Optional[float]
    errors: int


def check_min_confidence(value):
    """`value` as a float when 0 <= value <= 1, else ValueError with a one-line message naming MIN_CONFIDENCE."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, (str, bytes)) or number is None or not 0.0 <= number <= 1.0:  # NaN fails the range
        raise ValueError(f"MIN_CONFIDENCE must be a number from 0 to 1 (0: never unsure), got {value!r}")
    return number


def is_unsure(confidence, min_confidence):
    """True when a reading of `confidence` should not be answered under MIN_CONFIDENCE = `min_confidence`:
    confidence < min_confidence (or NaN). min_confidence 0 means never unsure. Raises ValueError unless
    0 <= min_confidence <= 1."""
    threshold = check_min_confidence(min_confidence)
    if threshold == 0.0:
        return False
    return not float(confidence) >= threshold


def _arrays(confidences, correct):
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct).reshape(-1)
    if conf.shape != ok.shape:
        raise ValueError(f"confidences and correct differ in length: {conf.size} and {ok.size}")
    return conf, ok.astype(bool)


def _answered(conf, threshold):
    return np.ones(conf.shape, bool) if threshold == 0.0 else conf >= threshold


def coverage_table(confidences, correct, thresholds=THRESHOLDS):
    """One CoverageRow per threshold (in the order given) for readings of `confidences` (floats in [0, 1]),
    `correct` (bools, the same length): how many would be answered with MIN_CONFIDENCE = threshold, what
    share that is, and the accuracy and number of errors among them. Thresholds must lie in [0, 1]
    (ValueError otherwise, as for MIN_CONFIDENCE)."""
    conf, ok = _arrays(confidences, correct)
    rows = []
    for t in thresholds:
        t = check_min_confidence(t)
        answered = _answered(conf, t)
        n = int(answered.sum())
        right = int((answered & ok).sum())
        rows.append(CoverageRow(t, n, n / conf.size if conf.size else None, right / n if n else None, n - right))
    return rows


def format_table(rows):
    """The rows of coverage_table as an aligned text table, one line per threshold under a header, e.g.

        MIN_CONFIDENCE  answered  coverage  accuracy  errors
                  0.00      2000    100.0%    96.25%      75
                  0.90      1850     92.5%    99.46%      10
    """
    header = ("MIN_CONFIDENCE", "answered", "coverage", "accuracy", "errors")
    lines = [[f"{r.threshold:.2f}", str(r.answered), "-" if r.coverage is None else f"{100 * r.coverage:.1f}%",
              "-" if r.accuracy is None else f"{100 * r.accuracy:.2f}%", str(r.errors)] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(cells, widths)) for cells in [header, *lines])


def curve(confidences, correct):
    """(thresholds, coverage, accuracy) arrays, one point per distinct confidence from the highest down: the
    outcome of answering every reading at least that confident. The last point answers everything."""
    conf, ok = _arrays(confidences, correct)
    key = np.where(np.isnan(conf), -np.inf, conf)  # NaN: answered only when everything is
    order = np.argsort(-key, kind="stable")
    key, right = key[order], np.cumsum(ok[order])
    ends = np.flatnonzero(np.append(key[1:] != key[:-1], True))  # last index of each run of equal confidences
    counts = ends + 1
    return key[ends], counts / conf.size, right[ends] / counts


def plot_coverage(confidences, correct, path, thresholds=THRESHOLDS):
    """Draw accuracy among answered readings (y) against coverage (x), a point per distinct confidence, with
    the `thresholds` of the table marked and labelled; write it to `path` (format from its extension, png
    when it has none; the folder is created) all at once: a temp file in the same folder renamed over `path`.
    Returns `path`. ValueError when there are no readings."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conf, ok = _arrays(confidences, correct)
    if conf.size == 0:
        raise ValueError("no readings to plot accuracy against coverage")
    _, cov, acc = curve(conf, ok)
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global backend or figure list
    ax = fig.add_subplot()
    ax.plot(cov, acc, marker="." if cov.size <= 50 else None)
    for row in coverage_table(conf, ok, thresholds):
        if row.answered:
            ax.plot(row.coverage, row.accuracy, "o", color="C3")
            ax.annotate(f"{row.threshold:g}", (row.coverage, row.accuracy), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.set_xlim(0, 1.06)
    ax.set_xlabel("coverage (share of captchas answered)")
    ax.set_ylabel("accuracy among answered")
    ax.set_title(f"accuracy against coverage ({conf.size} readings; red: MIN_CONFIDENCE)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=fmt, dpi=100)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a plot is for reading (and serving)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path
