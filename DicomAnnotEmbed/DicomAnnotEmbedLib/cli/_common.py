"""What every command group of the command line shares: option parsers and the usage error."""
from __future__ import annotations

import argparse
from typing import List

EXIT_CODES = """exit codes:
  0  success
  2  bad command line
  3  bad input (file, series, geometry, too many segments)
  4  output cannot be written (not empty, read-only)
  5  network: an archive cannot be reached, refused us, or did not store every file
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
CSV_FORMATS = ("overlay", "seg", "sr", "rtstruct", "gsps")


def format_list(text: str) -> List[str]:
    formats = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [f for f in formats if f not in CSV_FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(CSV_FORMATS)}, got {text!r}")
    return formats


def add_node_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Options shared by every command that talks to an archive node (``pacs ...``, ``--send``)."""
    parser.add_argument(f"--{prefix}calling-aet", metavar="AET",
                        help="our AE title for DIMSE nodes (default DICOMANNOTEMBED, or the node config's)")
    parser.add_argument(f"--{prefix}timeout", type=float, metavar="SECONDS",
                        help="network timeout (default 30 s DIMSE, 60 s DICOMweb)")
    parser.add_argument(f"--{prefix}retries", type=int, default=3, metavar="N",
                        help="tries again after a lost connection, at most N times (default 3)")
    parser.add_argument(f"--{prefix}nodes", metavar="FILE",
                        help="node config file (default $DICOMANNOTEMBED_NODES or ~/.config/dicomannotembed/nodes.json)")


def node_options(args: argparse.Namespace, prefix: str = "") -> dict:
    """Keyword arguments of services.pacs calls from :func:`add_node_options`'s options."""
    options = {"calling_aet": getattr(args, f"{prefix}calling_aet"), "timeout": getattr(args, f"{prefix}timeout")}
    nodes = getattr(args, f"{prefix}nodes")
    if nodes:
        import os

        os.environ["DICOMANNOTEMBED_NODES"] = nodes
    return options


def add_send_option(parser: argparse.ArgumentParser) -> None:
    """``--send NODE``: after the outputs are written and verified, store them on an archive."""
    group = parser.add_argument_group("sending the results")
    group.add_argument("--send", metavar="NODE",
                       help="store the written DICOM files on NODE (AET@HOST:PORT, a DICOMweb URL or a configured "
                            "name) after they are written; a failed send keeps the files and exits with code 5")
    group.add_argument("--send-calling-aet", metavar="AET", help="our AE title for a DIMSE --send node")
    group.add_argument("--send-timeout", type=float, metavar="SECONDS", help="network timeout of --send")
    group.add_argument("--send-retries", type=int, default=3, metavar="N", help="--send retries (default 3)")
    group.add_argument("--send-nodes", metavar="FILE", help="node config file for --send")


def send_outputs(args: argparse.Namespace, paths, progress=None) -> None:
    """Send ``paths`` (the DICOM files or folders a command wrote) to ``--send`` NODE, if given.

    Prints what was stored; raises NetworkError (exit 5) listing each file not stored.
    """
    node = getattr(args, "send", None)
    if not node:
        return
    from ..services import pacs

    report = pacs.send(node, [str(p) for p in paths], retries=args.send_retries, progress=progress, check=False,
                       **node_options(args, "send_"))
    finish_send(report, "sent to ")


def finish_send(report, prefix: str = "") -> None:
    """Print what a send stored, and on stderr each file that was not stored and why; then raise
    the NetworkError (exit 5) when anything was not stored."""
    import sys

    print(f"{prefix}{report.node}: {report.summary()}")
    for line in report.failure_lines():
        print(line, file=sys.stderr)
    report.raise_for_failures()


def plural(count: int, word: str, words: str = "") -> str:
    """``1 segment``, ``2 segments``, ``0 series`` (``words``: the plural when not ``word + "s"``)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"
