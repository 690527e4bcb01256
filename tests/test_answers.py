"""core.answers (the value of an arithmetic reading, never evaluated as code; labels for arithmetic captchas)
and core.coverage (accuracy against coverage, the MIN_CONFIDENCE rule, its table and plot)."""
import builtins
import math
import os
import random

import pytest

from core import answers, coverage
from core.answers import Answer, answer_text, parse, random_expression
from core.coverage import coverage_table, format_table, is_unsure, plot_coverage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---- answers: what is accepted

@pytest.mark.parametrize("text, value", [
    ("12+32", 44), ("12-7", 5), ("7-12", -5), ("0-0", 0),
    ("6x7", 42), ("6X7", 42), ("6*7", 42), ("6×7", 42), ("12/4", 3), ("12÷4", 3),
    ("6＋7", 13), ("9－2", 7), ("9−2", 7), ("6＊7", 42), ("12／4", 3),
    ("１２＋３", 15),  # full-width digits
    ("9999x9999", 99980001), ("0+0", 0), ("0007+1", 8),
])
def test_every_operator_and_full_width_form(text, value):
    answer = parse(text)
    assert answer == Answer(value, None, answer.expression)
    assert answer.ok and type(answer.value) is int


@pytest.mark.parametrize("text", [
    "12+32=?", "12+32=", "12+32?", "12+32＝？", "12+32＝?", "12+32=？", "12+32 = ?", "  12+32=?  ",
    "12 + 32", "_12_+_32_=?__", "12+32=?____", "\t12+32=?\n", "12+32==??", "12　+　32",
])
def test_trailing_equals_question_mark_and_padding_are_ignored(text):
    assert parse(text) == Answer(44, None, "12+32")
    assert answer_text(text) == ("44", None)


def test_division_exact_inexact_and_by_zero():
    assert parse("12/4=?") == Answer(3, None, "12/4") and type(parse("12/4").value) is int
    assert parse("0/5").value == 0 and type(parse("0/5").value) is int
    assert parse("7/2").value == 3.5 and answer_text("7/2") == ("3.5", None)
    assert parse("10/3").value == 3.33 and answer_text("10/3") == ("3.33", None)
    assert parse("2/3").value == 0.67  # rounded, not truncated
    assert parse("1/8").value == 0.13  # half up, where round(0.125, 2) gives 0.12
    assert parse("9999/7").value == 1428.43
    assert isinstance(parse("1/3").value, float) and answer_text("1/3") == ("0.33", None)
    for text in ("5/0", "5÷0=?", "0/0", "5／0"):
        assert parse(text) == Answer(None, "division by zero"), text
    assert answer_text("5/0") == (None, "division by zero")


def test_the_expression_read_is_canonical_ascii():
    assert parse("６×７＝？").expression == "6*7"
    assert parse("12÷4").expression == "12/4"
    assert parse("007+1").expression == "7+1"


def test_answer_is_a_frozen_dataclass():
    answer = parse("1+1")
    with pytest.raises(Exception):
        answer.value = 3
    assert Answer(2).reason is None and Answer(2).ok and Answer(None, "x").text is None


# ---- answers: what is refused, always with a reason

@pytest.mark.parametrize("text, reason", [
    ("1+2+3", "two operators"),
    ("1+2+3+4", "3 operators"),
    ("2x3x4=?", "two operators"),
    ("1+-2", "two operators"),
    ("+5", "no first number"),
    ("x5", "no first number"),
    ("5+", "no second number"),
    ("5+=?", "no second number"),
    ("-5", "negative numbers are not accepted"),
    ("-3+4", "negative numbers are not accepted"),
    ("－3+4", "negative numbers are not accepted"),
    ("12", "no operator"),
    ("12=?", "no operator"),
    ("", "empty"),
    ("=?", "empty"),
    ("  __ ", "empty"),
    ("ab+1", "not a number: 'ab'"),
    ("l2+1", "not a number: 'l2'"),
    ("1+O", "not a number: 'O'"),
    ("1 2+3", "not a number: '1 2'"),
    ("1.5+2", "not a number: '1.5'"),
    ("٣+1", "not a number: '٣'"),  # an Arabic-Indic digit: int() would take it, a captcha does not draw it
    ("12345+1", "number too long: '12345' (at most 4 digits)"),
    ("1+99999", "number too long: '99999' (at most 4 digits)"),
    ("1=2+3", "'=' or '?' before the end"),
    ("1+2=3", "'=' or '?' before the end"),
    ("1+2=?4", "'=' or '?' before the end"),
    ("__import__('os')", "no operator"),
    ("(1+2)", "not a number: '(1'"),
    ("2**8", "two operators"),
    ("9**9**9", "4 operators"),
    ("1e3+1", "not a number: '1e3'"),
    ("0x1F+1", "two operators"),
    ("1_000+1", "not a number: '1_000'"),
    ("a" * 65, "too long (65 characters)"),
    ("1+1" + " " * 70, "too long (73 characters)"),
    (None, "not text"),
    (12, "not text"),
    (b"1+2", "not text"),
])
def test_no_answer_and_a_reason(text, reason):
    assert parse(text) == Answer(None, reason)
    assert answer_text(text) == (None, reason)


HOSTILE = [
    "__import__('os')", "__import__('os').system('touch /tmp/pwned')", "exec('1')", "eval('2+2')",
    "open('/etc/passwd').read()", "lambda: 1", "1 if True else 2", "[1]*2", "{1:2}", "globals()", "().__class__",
    "1+2;import os", "1+2\n__import__('os')", "2**99999999", "9"*9 + "**" + "9"*9, "1+2#", "%s" % "\x00", "\u202e1+2",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_give_no_answer(text):
    answer = parse(text)
    assert answer.value is None and answer.reason and not answer.ok


def test_nothing_is_evaluated(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("evaluated")

    import ast
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)
    monkeypatch.setattr(ast, "literal_eval", refuse)
    assert parse("12+32=?") == Answer(44, None, "12+32")
    assert parse("7/2").value == 3.5
    assert answer_text("６×７＝？") == ("42", None)
    for text in HOSTILE:
        assert parse(text).value is None
    assert calls == []


# ---- answers: labels for arithmetic captchas

def test_random_expression_is_deterministic():
    first = [random_expression(random.Random(7), 50, "+-x/") for _ in range(3)]
    assert first[0] == first[1] == first[2]
    a, b = random.Random(3), random.Random(3)
    assert [random_expression(a) for _ in range(50)] == [random_expression(b) for _ in range(50)]
    c, d = random.Random(3), random.Random(4)
    assert [random_expression(c) for _ in range(50)] != [random_expression(d) for _ in range(50)]


@pytest.mark.parametrize("ops", ["+-x", "+-x/", "/", "-", "÷", "×*X", "+"])
@pytest.mark.parametrize("max_operand", [1, 9, 20, 9999])
def test_every_drawn_label_is_answered_and_never_negative(ops, max_operand):
    rng = random.Random(max_operand)
    seen = set()
    for _ in range(300):
        label = random_expression(rng, max_operand, ops)
        assert label.endswith("=?")
        answer = parse(label)
        assert answer.ok, (label, answer.reason)
        assert type(answer.value) is int and answer.value >= 0, label  # "/" only exact, "-" never below 0
        a, op, b = label[:-2].partition(next(o for o in label[1:] if o in "+-xX*×/÷"))
        assert 0 <= int(a) <= max_operand and 0 <= int(b) <= max_operand and op in ops
        seen.add(op)
    assert seen == set(ops)  # every operator is drawn


def test_random_expression_draws_varied_labels():
    rng = random.Random(1)
    labels = [random_expression(rng, 20, "+-x/") for _ in range(400)]
    assert len(set(labels)) > 150
    assert any(parse(label).value > 20 for label in labels)  # operands, not results, are bounded


@pytest.mark.parametrize("kwargs", [dict(ops=""), dict(ops="+%"), dict(ops="a"), dict(max_operand=0),
                                    dict(max_operand=10000), dict(max_operand=2.5), dict(max_operand=True)])
def test_random_expression_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        random_expression(random.Random(0), **kwargs)


def test_answer_kinds():
    assert answers.ANSWER_KINDS == ("none", "arith")
    assert answers.check_answer_kind("arith") == "arith"
    with pytest.raises(ValueError, match="ANSWER must be one of 'none', 'arith', got 'math'"):
        answers.check_answer_kind("math")


# ---- coverage

# confidences and correctness of 8 readings, hand-checked below
CONF = [0.30, 0.50, 0.60, 0.80, 0.90, 0.95, 0.99, 1.00]
OK = [False, True, False, True, False, True, True, True]


def test_coverage_table_exact_numbers():
    rows = coverage_table(CONF, OK)
    assert [tuple(r) for r in rows] == [
        # threshold, answered, coverage, accuracy, errors (answered: confidence >= threshold)
        (0.0, 8, 1.0, 5 / 8, 3),
        (0.5, 7, 7 / 8, 5 / 7, 2),   # 0.30 left out
        (0.8, 5, 5 / 8, 4 / 5, 1),   # 0.50, 0.60 left out; 0.80 kept (boundary is answered)
        (0.9, 4, 4 / 8, 3 / 4, 1),
        (0.95, 3, 3 / 8, 1.0, 0),
        (0.99, 2, 2 / 8, 1.0, 0),
    ]
    assert rows[2].threshold == 0.8 and rows[2].answered == 5 and rows[2].errors == 1


def test_coverage_table_none_answered_and_no_readings():
    rows = coverage_table([0.1, 0.2], [True, False], thresholds=(0.0, 0.5, 1.0))
    assert [tuple(r) for r in rows] == [(0.0, 2, 1.0, 0.5, 1), (0.5, 0, 0.0, None, 0), (1.0, 0, 0.0, None, 0)]
    assert [tuple(r) for r in coverage_table([], [], thresholds=(0.0, 0.9))] == [(0.0, 0, None, None, 0),
                                                                               (0.9, 0, None, None, 0)]


def test_coverage_table_agrees_with_is_unsure():
    rng = random.Random(5)
    conf = [rng.random() for _ in range(200)] + [0.5, 0.9, float("nan")]
    ok = [rng.random() < c for c in conf]
    for row in coverage_table(conf, ok, thresholds=(0.0, 0.25, 0.5, 0.9, 1.0)):
        assert row.answered == sum(not is_unsure(c, row.threshold) for c in conf)


def test_coverage_table_refuses_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        coverage_table([0.5, 0.6], [True])
    with pytest.raises(ValueError, match="MIN_CONFIDENCE"):
        coverage_table([0.5], [True], thresholds=(0.5, 1.5))


def test_format_table():
    text = format_table(coverage_table(CONF, OK))
    lines = text.splitlines()
    assert len(lines) == 7
    assert lines[0].split() == ["MIN_CONFIDENCE", "answered", "coverage", "accuracy", "errors"]
    assert lines[1].split() == ["0.00", "8", "100.0%", "62.50%", "3"]
    assert lines[3].split() == ["0.80", "5", "62.5%", "80.00%", "1"]
    assert lines[6].split() == ["0.99", "2", "25.0%", "100.00%", "0"]
    assert len({len(line) for line in lines}) == 1  # aligned
    none = format_table(coverage_table([0.1], [True], thresholds=(0.5,))).splitlines()[1].split()
    assert none == ["0.50", "0", "0.0%", "-", "0"]


def test_curve_one_point_per_distinct_confidence():
    thresholds, cov, acc = coverage.curve([0.9, 0.5, 0.9, 0.2], [True, False, False, True])
    assert list(thresholds) == [0.9, 0.5, 0.2]
    assert list(cov) == [0.5, 0.75, 1.0]
    assert list(acc) == [0.5, 1 / 3, 0.5]


def test_plot_coverage_writes_a_png(tmp_path):
    path = str(tmp_path / "plots" / "coverage.png")  # the folder is created
    assert plot_coverage(CONF, OK, path) == path
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.listdir(tmp_path / "plots") == ["coverage.png"]  # no temp file left behind
    rng = random.Random(0)
    conf = [rng.random() for _ in range(2000)]
    plot_coverage(conf, [rng.random() < c for c in conf], path)  # over it, many points
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.listdir(tmp_path / "plots") == ["coverage.png"]
    with pytest.raises(ValueError):
        plot_coverage([], [], str(tmp_path / "empty.png"))
    assert not os.path.exists(tmp_path / "empty.png")


def test_plot_coverage_keeps_the_old_file_when_drawing_fails(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    path = tmp_path / "coverage.png"
    path.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(OSError, match="disk full"):
        plot_coverage(CONF, OK, str(path))
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["coverage.png"]


def test_is_unsure_boundaries():
    assert not is_unsure(0.0, 0)  # 0: never unsure
    assert not is_unsure(float("nan"), 0.0)
    assert is_unsure(0.899, 0.9) and not is_unsure(0.9, 0.9) and not is_unsure(0.901, 0.9)
    assert is_unsure(0.999, 1) and not is_unsure(1.0, 1.0)
    assert is_unsure(float("nan"), 0.5)
    assert not is_unsure(0.5, 0.5) and is_unsure(0.0, 1e-9)


@pytest.mark.parametrize("bad", [-0.01, 1.01, 2, float("nan"), float("inf"), "0.5", None, "high"])
def test_is_unsure_refuses_a_min_confidence_out_of_range(bad):
    with pytest.raises(ValueError) as info:
        is_unsure(0.5, bad)
    message = str(info.value)
    assert "MIN_CONFIDENCE" in message and "0 to 1" in message and "\n" not in message


def test_check_min_confidence():
    assert coverage.check_min_confidence(0) == 0.0 and coverage.check_min_confidence(1) == 1.0
    assert math.isclose(coverage.check_min_confidence(0.9), 0.9)
