"""What every command group of the command line shares: option parsers and the usage error."""
from __future__ import annotations

import argparse
from typing import List

EXIT_CODES = """exit codes:
  0  success
  2  bad command line
  3  bad input (file, series, geometry, too many segments)
  4  output cannot be written (not empty, read-only)
  1  unexpected internal error (run again with --debug for the traceback)"""


class UsageError(Exception):
    """A combination of options that argparse cannot express (exit 2, with the usage line)."""


def slice_list(text: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated slice indices, got {text!r}") from None


#: api.csv_pipeline.FORMATS, kept here as a constant so that parsing arguments imports nothing
#: heavy (a test checks that the two are the same).
CSV_FORMATS = ("overlay", "seg", "sr")


def format_list(text: str) -> List[str]:
    formats = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [f for f in formats if f not in CSV_FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(CSV_FORMATS)}, got {text!r}")
    return formats
