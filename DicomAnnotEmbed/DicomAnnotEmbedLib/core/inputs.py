"""Reading input files with one clear error per problem (the message names the file)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import InputError


def read_text_file(path: os.PathLike | str, what: str) -> str:
    """The text of a UTF-8 file (a byte-order mark is tolerated).

    Raises:
        InputError: missing, not a file, unreadable, or not UTF-8 text.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file does not exist; expected {what}", path)
    if not path.is_file():
        raise InputError(f"is not a file; expected {what}", path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"not UTF-8 text; expected {what}", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None


def read_json_file(path: os.PathLike | str, what: str, **loads_options) -> Any:
    """The parsed content of a JSON file.

    Args:
        path: the file.
        what: what the file should be, for messages (e.g. "a Slicer markups file").
        loads_options: passed to :func:`json.loads` (e.g. ``object_pairs_hook``).

    Raises:
        InputError: missing, not a file, unreadable, not UTF-8 text, or invalid JSON.
    """
    text = read_text_file(path, what)
    try:
        return json.loads(text, **loads_options)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}); expected {what}",
                         path) from None


def read_dicom_file(path: os.PathLike | str, what: str, **dcmread_options):
    """A DICOM dataset read by pydicom, pixel data included unless ``stop_before_pixels``.

    Raises:
        InputError: missing, not a file, or not readable as DICOM.
    """
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file does not exist" if not path.exists() else f"is not a file; expected {what}",
                         path)
    try:
        return pydicom.dcmread(path, **dcmread_options)
    except Exception as exc:  # pydicom raises several types for broken files
        raise InputError(f"not a readable DICOM file ({exc})", path) from None
