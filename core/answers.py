"""Answers to arithmetic captchas: the model reads "12+32=?", the site wants "44" typed into a box.

The setting `ANSWER` chooses what is done with a reading; its allowed values are ANSWER_KINDS:

    "none"   the reading itself is the answer (ordinary text captchas)
    "arith"  the reading is an expression `a op b`; the answer is its value (parse / answer_text)

API:
    parse(text) -> Answer                     value of "a op b" (or why there is none); never evaluates code
    answer_text(text) -> (str | None, str | None)   (answer to type, reason it has none)
    random_expression(rng, max_operand=20, ops="+-x") -> str   a label such as "12+7=?" for generators
    check_answer_kind(kind) -> str            validates a value of the setting ANSWER
    ANSWER_KINDS = ("none", "arith")

Accepted expressions: two non-negative integers of 1 to 4 ASCII (or full-width) digits around one operator:
    +  ＋                      addition
    -  －  −                   subtraction (the result may be negative: "3-5" -> -2)
    x  X  *  ×  ＊  ｘ  Ｘ     multiplication ("x" counts only where an operator is expected, between numbers)
    /  ÷  ／                   division: exact -> int; inexact -> float rounded half up to 2 decimals
Spaces and "_" (padding) may surround the numbers and the operator; trailing "=", "?", "＝", "？" are ignored.
Everything else (a unary minus, a second operator, letters, brackets, a 5-digit number) gives no answer and a
short reason. The text is only matched with regular expressions and converted with int(): nothing in it is
ever evaluated, so a reading such as "__import__('os')" is just text without an operator.
"""
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Tuple, Union

ANSWER_KINDS = ("none", "arith")
"""The allowed values of the setting ANSWER: "none" (the reading is the answer) or "arith" (its value is)."""

MAX_DIGITS = 4
# a reading of a captcha is short; a long string is refused before any regular expression touches it
MAX_TEXT = 64

_FULL_WIDTH = {ord("０") + i: str(i) for i in range(10)}
_FULL_WIDTH.update({ord(k): v for k, v in {
    "＋": "+", "－": "-", "−": "-", "＊": "*", "／": "/", "＝": "=", "？": "?", "　": " ", "ｘ": "x", "Ｘ": "X",
}.items()})
_CANONICAL_OP = {"+": "+", "-": "-", "x": "*", "X": "*", "*": "*", "×": "*", "/": "/", "÷": "/"}
_OP_RE = re.compile(r"([+\-xX*×/÷])")
_PAD = " _\t"
_TRAILER = _PAD + "=?"
_DIGITS_RE = re.compile(r"[0-9]+")  # ASCII only: int() would also take Arabic-Indic or other script digits


@dataclass(frozen=True)
class Answer:
    """The answer to one arithmetic reading.

    value: int for +, -, x and exact division ("12/4" -> 3); float rounded half up to 2 decimals for inexact
           division ("1/8" -> 0.13, "10/3" -> 3.33); None when the text has no answer.
    reason: None when parsed, else a short reason for a person ("no operator", "two operators",
           "division by zero", "not a number: 'l2'", ...).
    expression: the expression read, canonical ASCII ("12*3", "7/2"), or None when there is none.
    """
    value: Optional[Union[int, float]]
    reason: Optional[str] = None
    expression: Optional[str] = None

    @property
    def ok(self):
        """True when the text had an answer."""
        return self.reason is None

    @property
    def text(self):
        """The answer as a user types it ("44", "-2", "3.5", "0.33"), or None."""
        return None if self.value is None else str(self.value)


def _refuse(reason):
    return Answer(None, reason)


def _round_half_up(q):
    """A non-negative Fraction rounded half up to 2 decimals, as a float (round() would give 1/8 -> 0.12)."""
    return float(Fraction(math.floor(q * 100 + Fraction(1, 2)), 100))


def parse(text):
    """The value of an arithmetic reading such as "12+32=?" -> Answer(44, None, "12+32").

    Returns an Answer; on text with no answer, Answer(None, reason) (it never raises on any str, nor on None
    or other non-text values, which give reason "not text"). See the module docstring for what is accepted.
    """
    if not isinstance(text, str):
        return _refuse("not text")
    if len(text) > MAX_TEXT:
        return _refuse(f"too long ({len(text)} characters)")
    body = text.translate(_FULL_WIDTH).strip().strip(_PAD).rstrip(_TRAILER)
    if not body:
        return _refuse("empty")
    if "=" in body or "?" in body:
        return _refuse("'=' or '?' before the end")
    parts = _OP_RE.split(body)  # operand, operator, operand, ...
    operands = [p.strip(_PAD) for p in parts[0::2]]
    ops = [_CANONICAL_OP[p] for p in parts[1::2]]
    if ops and ops[0] == "-" and not operands[0]:
        return _refuse("negative numbers are not accepted")
    if not ops:
        return _refuse("no operator")
    if len(ops) > 1:
        return _refuse("two operators" if len(ops) == 2 else f"{len(ops)} operators")
    for operand, which in zip(operands, ("first", "second")):
        if not operand:
            return _refuse(f"no {which} number")
        if not _DIGITS_RE.fullmatch(operand):
            return _refuse(f"not a number: {operand!r}")
        if len(operand) > MAX_DIGITS:
            return _refuse(f"number too long: {operand!r} (at most {MAX_DIGITS} digits)")
    a, b = int(operands[0]), int(operands[1])
    op = ops[0]
    expression = f"{a}{op}{b}"
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    elif b == 0:
        return _refuse("division by zero")
    elif a % b == 0:
        value = a // b
    else:
        value = _round_half_up(Fraction(a, b))
    return Answer(value, None, expression)


def answer_text(text):
    """(answer to type, None) for a reading with an answer, else (None, reason). E.g. "7/2=?" -> ("3.5", None),
    "1+2+3" -> (None, "two operators")."""
    answer = parse(text)
    return answer.text, answer.reason


_DRAWABLE_OPS = "+-xX*×/÷"


def random_expression(rng, max_operand=20, ops="+-x"):
    """The label of one arithmetic captcha, "a op b=?" (e.g. "12+7=?"), drawn with `rng` (a random.Random).

    a and b are integers in [0, max_operand] (1 <= max_operand <= 9999, so at most 4 digits); the operator is
    one character of `ops` (any of "+-xX*×/÷"), drawn uniformly, and written as given. "-" never gives a
    negative result (the larger number comes first); "/" and "÷" give only exact divisions by 1..max_operand.
    The same seed gives the same sequence of labels. parse() answers every label drawn.
    Raises ValueError on an empty or unknown `ops` or a max_operand out of range.
    """
    if not ops or any(op not in _DRAWABLE_OPS for op in ops):
        raise ValueError(f"ops must be characters of {_DRAWABLE_OPS!r}, got {ops!r}")
    largest = 10 ** MAX_DIGITS - 1
    if isinstance(max_operand, bool) or not isinstance(max_operand, int) or not 1 <= max_operand <= largest:
        raise ValueError(f"max_operand must be an integer from 1 to {largest}, got {max_operand!r}")
    op = rng.choice(ops)
    if _CANONICAL_OP[op] == "/":
        b = rng.randint(1, max_operand)
        a = b * rng.randint(0, max_operand // b)
    else:
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if _CANONICAL_OP[op] == "-" and a < b:
            a, b = b, a
    return f"{a}{op}{b}=?"


def check_answer_kind(kind):
    """`kind` if it is one of ANSWER_KINDS, else ValueError with a one-line message naming ANSWER."""
    if kind not in ANSWER_KINDS:
        raise ValueError(f"ANSWER must be one of {', '.join(repr(k) for k in ANSWER_KINDS)}, got {kind!r}")
    return kind
