"""Cells of an annotation table read as values (numbers, coordinates, colours, codes): each bad cell
is a _RowError saying what is wrong with it (csv_table reports it against its row)."""
from __future__ import annotations

import math
import re
from typing import List, Tuple

import numpy as np

from ..core.model import Code
from ..dicom.evaluations import parse_code
from .csv_shapes import _RowError

_SEPARATORS = re.compile(r"[\s,;()\[\]]+")
_TO_SPACES = str.maketrans(",;()[]", "      ")  # with str.split(): splits as _SEPARATORS does (\s is isspace)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{what} {text!r} is not a number") from None
    if not np.isfinite(value):
        raise _RowError(f"{what} {text!r} is not a finite number")
    return value


def _integer(text: str, what: str) -> int:
    value = _number(text, what)
    if not value.is_integer():
        raise _RowError(f"{what} {text!r} is not an integer")
    return int(value)


def _coordinates(text: str) -> List[float]:
    tokens = text.translate(_TO_SPACES).split()
    if not tokens:
        raise _RowError("no coordinates")
    try:
        numbers = list(map(float, tokens))
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise _RowError(f"coordinate {bad!r} is not a number") from None
    # a finite sum has finite terms (an infinite or NaN term makes it infinite or NaN; an infinite sum
    # of finite terms is looked at term by term)
    bad = None if math.isfinite(sum(numbers)) else next((t for t, v in zip(tokens, numbers) if not math.isfinite(v)),
                                                         None)
    if bad is not None:
        raise _RowError(f"coordinate {bad!r} is not a finite number")
    return numbers


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _fmt(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _color(text: str) -> Tuple[float, float, float]:
    text = text.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        return tuple(int(text[n:n + 2], 16) / 255.0 for n in (1, 3, 5))
    parts = [p for p in _SEPARATORS.split(text) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise _RowError(f"color {text!r} is not #rrggbb or three numbers 0-255")
    return tuple(v / 255.0 for v in values)


def _code_cell(text: str, what: str) -> Code:
    code = parse_code(text)
    if code is None or not code.meaning:
        raise _RowError(f"{what} {text!r} is not a code (value, scheme, \"meaning\")")
    return code
