"""What every command group of the command line shares: option parsers and the usage error."""
from __future__ import annotations

import argparse
import contextlib
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


def add_node_options(parser, prefix: str = "", what: str = "") -> None:
    """Options shared by every command that talks to an archive node (``pacs ...``; with
    ``prefix="send-"`` the ``--send-...`` options of ``--send``)."""
    parser.add_argument(f"--{prefix}calling-aet", metavar="AET",
                        help=f"our AE title for a DIMSE{what} node (default $DICOMANNOTEMBED_CALLING_AET, "
                             "DICOMANNOTEMBED, or the node config's)")
    parser.add_argument(f"--{prefix}timeout", type=float, metavar="SECONDS",
                        help="network timeout (default 30 s DIMSE, 60 s DICOMweb)")
    parser.add_argument(f"--{prefix}retries", type=int, default=3, metavar="N",
                        help="tries again after a lost connection, at most N times (default 3)")
    parser.add_argument(f"--{prefix}nodes", metavar="FILE",
                        help="node config file (default $DICOMANNOTEMBED_NODES or ~/.config/dicomannotembed/nodes.json)")
    parser.add_argument(f"--{prefix}tls-ca", metavar="FILE",
                        help="CA certificates (PEM) that the archive's certificate is verified with; for a DIMSE "
                             "node this turns DICOM TLS on")
    parser.add_argument(f"--{prefix}tls-cert", metavar="FILE",
                        help="our client certificate (PEM) for TLS; turns DICOM TLS on for a DIMSE node")
    parser.add_argument(f"--{prefix}tls-key", metavar="FILE", help=f"the private key (PEM) of --{prefix}tls-cert")


def node_from_args(text: str, args: argparse.Namespace, prefix: str = ""):
    """The node ``text`` names, with :func:`add_node_options`'s options (``prefix``: "send_")."""
    from ..services.pacs import parse_node

    def option(name):
        return getattr(args, prefix + name, None)

    return parse_node(text, calling_aet=option("calling_aet"), timeout=option("timeout"), config=option("nodes"),
                      tls_ca=option("tls_ca"), tls_cert=option("tls_cert"), tls_key=option("tls_key"))


def add_send_option(parser: argparse.ArgumentParser) -> None:
    """``--send NODE``: after the outputs are written and verified, store them on an archive."""
    group = parser.add_argument_group("sending the results")
    group.add_argument("--send", metavar="NODE",
                       help="store the written DICOM files on NODE (AET@HOST:PORT, a DICOMweb URL or a configured "
                            "name) after they are written; a failed send keeps the files and exits with code 5")
    add_node_options(group, "send-", " --send")


def send_outputs(args: argparse.Namespace, paths, progress=None) -> None:
    """Send ``paths`` (the DICOM files or folders a command wrote) to ``--send`` NODE, if given.

    Prints what was stored; raises NetworkError (exit 5) listing each file not stored.
    """
    node = getattr(args, "send", None)
    if not node:
        return
    from ..services import pacs

    report = pacs.send(node_from_args(node, args, "send_"), [str(p) for p in paths], retries=args.send_retries,
                       progress=progress, check=False)
    finish_send(report, "sent to ")


#: Arguments that name image series folders; each may instead name a series (or a study) on a
#: node (services.pacs.remote): ``--series`` of every command but ``pacs``, and the inputs of
#: ``convert`` and ``export-ml``.
SERIES_ARGUMENTS = {"series": "--series", "inputs": "INPUT"}


@contextlib.contextmanager
def remote_series(args: argparse.Namespace, progress=None):
    """Replace a ``--series`` (or input) that names a series on a node with a temporary folder
    holding it (retrieved before the command runs, removed after it)."""
    if getattr(args, "command", None) == "pacs":
        yield
        return
    named = {name: getattr(args, name) for name in SERIES_ARGUMENTS if getattr(args, name, None)}
    if not any(_may_be_remote(v) for value in named.values() for v in (value if isinstance(value, list) else [value])):
        yield  # nothing to look at: no imports
        return
    from ..core.errors import InputError
    from ..services.pacs import remote

    retrieved = []
    # Tables that outlive the temporary folder (export-ml's) name retrieved files on the archive.
    args.source_names = lambda path: remote.reference_name(path, retrieved)
    with contextlib.ExitStack() as stack:
        for name, value in named.items():
            option = SERIES_ARGUMENTS[name]
            texts = value if isinstance(value, list) else [value]
            try:
                refs = [remote.parse_series_ref(text, option=option) for text in texts]
            except InputError as exc:
                raise UsageError(exc.problem) from None
            if not any(refs):
                continue
            local = stack.enter_context(remote.fetched_inputs(texts, option=option, progress=progress,
                                                              whole_study=isinstance(value, list),
                                                              retrieved=retrieved))
            setattr(args, name, local if isinstance(value, list) else local[0])
        yield


def describe_remote_series(parser: argparse.ArgumentParser, seen=None) -> None:
    """Say in the help of every ``--series`` (and ``convert``/``export-ml`` INPUT) that it may name
    a series on a node (one place for all commands)."""
    seen = set() if seen is None else seen
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name != "pacs" and id(sub) not in seen:
                    seen.add(id(sub))
                    describe_remote_series(sub, seen)
        elif action.dest in SERIES_ARGUMENTS and action.help and "on a node" not in action.help:
            action.help += ("; or a series on a node: NODE/STUDY_UID[/SERIES_UID] (NODE: AET@HOST:PORT or a "
                            "configured name) or a DICOMweb URL BASE/studies/UID[/series/UID], retrieved into a "
                            "temporary folder")


def _may_be_remote(text) -> bool:
    return isinstance(text, str) and "/" in text and not text.startswith(("/", ".", "~"))


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
