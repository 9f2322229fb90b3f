"""The ``dicomannotembed`` command line.

One module per command group (``overlay``, ``seg``, ``sr``, ``csv``, ...); each has a
``register(commands, command)`` that adds its sub-commands and sets ``run`` on each, a function
``run(args, progress) -> exit code``. A new group is a new module listed in ``GROUPS``.

Exit codes: 0 success, 2 bad command line, 3 bad input, 4 output cannot be written, 5 network,
1 unexpected internal error (run again with --debug for the traceback).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from .. import __version__
from ..core.errors import PATH_ERRNOS, DicomAnnotEmbedError, InputError, OutputError
from ..core.progress import TqdmProgress
from ._common import EXIT_CODES, UsageError, describe_remote_series, remote_series

log = logging.getLogger("DicomAnnotEmbedLib")

#: Command groups in the order ``--help`` lists them (modules of this package).
GROUPS = ("overlay", "seg", "sr", "rtstruct", "gsps", "convert", "volumes", "csv", "ml", "batch", "pacs")

#: The module of GROUPS that registers each command (a test checks it against the parsers).
COMMAND_GROUPS = {"overlay": "overlay", "seg": "seg", "sr": "sr", "rtstruct": "rtstruct", "gsps": "gsps",
                  "convert": "convert", "dicomize": "volumes", "sample": "volumes", "csv": "csv",
                  "export-ml": "ml", "batch": "batch", "pacs": "pacs"}


def _named_group(argv: Optional[List[str]]) -> Optional[str]:
    """The module of the command ``argv`` names (its first word that is not an option; the shared
    options take no value), or None: no command, or one we do not know (argparse says so)."""
    if argv is None:
        return None
    return COMMAND_GROUPS.get(next((word for word in argv if not word.startswith("-")), None))


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The command line's parser: every command, or with ``argv`` only the command it names when
    that is a known one (the other groups' sub-parsers and imports were 0.014 s of each command's
    start-up; bench_startup.py notes). ``--help`` and unknown commands get every command."""
    # The shared flags are accepted before or after the sub-command; SUPPRESS keeps a sub-command
    # from resetting a flag given earlier (argparse copies sub-parser defaults over the namespace).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bar, only warnings and errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also report what was skipped and why")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of unexpected errors")

    parser = argparse.ArgumentParser(
        prog="dicomannotembed", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Slicer segmentations and markups to DICOM (overlays, SEG, SR) and back. "
                    "Coordinates in files are as the files say (DICOM and .seg.nrrd: LPS; .mrk.json: LPS or RAS).",
        epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group, name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=[common], help=summary, description=description,
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)

    named = _named_group(argv)
    for group in GROUPS if named is None else (named,):
        importlib.import_module(f"{__name__}.{group}").register(commands, command)
    describe_remote_series(parser)
    return parser


#: Options that name outputs; a command with a --force option refuses to replace an existing file
#: or write into a non-empty folder without it (one overwrite policy for exports and imports),
#: checked before any work.
OUTPUT_OPTIONS = ("out", "markups_out", "preview")
_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


def _is_output(filename, args: argparse.Namespace) -> bool:
    outputs = [str(getattr(args, name)) for name in OUTPUT_OPTIONS if getattr(args, name, None)]
    return any(str(filename).startswith(out) for out in outputs)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse existing outputs without --force, before any work (see OUTPUT_OPTIONS)."""
    if not hasattr(args, "force"):
        return  # commands that add to their output folder by design (batch, pacs get)
    from ..core.outputs import remove_leftovers

    for name in OUTPUT_OPTIONS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        if path.is_dir():
            remove_leftovers(path)
            if any(path.iterdir()) and not args.force:
                raise OutputError("output folder is not empty; use --force to write into it", path)
        elif path.exists() and not args.force:
            raise OutputError("exists; use --force to replace it", path)


#: Optional packages that pydicom imports at start-up only for its test-data downloader
#: (pydicom.data.download; it falls back to urllib): requests with urllib3, idna, charset_normalizer
#: and ssl, and tqdm, 0.1 s CPU of every command (bench_seg.py notes, "Command start-up").
_PYDICOM_OPTIONAL = ("requests", "tqdm")

#: Packages that pydicom's pixel decoder plugins import when pydicom is imported, to know which
#: plugins are available: PIL with ImageCms, pylibjpeg (which scans the installed packages' entry
#: points) with its codecs, gdcm; 0.035 s of CPU. Left out only for a command that decodes no
#: pixel data through pydicom (``pydicom_pixels`` below): pydicom then holds those plugins as
#: unavailable for the rest of the process. CharLS (jpeg_ls) is not among them: the SEG and
#: overlay decoders call it themselves.
_PYDICOM_PIXEL_CODECS = ("PIL", "pylibjpeg", "openjpeg", "rle", "libjpeg", "gdcm")


def _import_pydicom(pixel_codecs: bool = True) -> None:
    """Import pydicom without the optional packages it does not need here; they stay importable.
    ``pixel_codecs=False``: also without its pixel codec packages (see _PYDICOM_PIXEL_CODECS)."""
    left_out = _PYDICOM_OPTIONAL + (() if pixel_codecs else _PYDICOM_PIXEL_CODECS)
    if "pydicom" in sys.modules or any(name in sys.modules for name in left_out):
        return
    sys.modules.update(dict.fromkeys(left_out))  # None: "import requests" raises ImportError
    try:
        import pydicom  # noqa: F401
    finally:
        for name in left_out:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _single_threaded_blas() -> None:
    """Ask OpenBLAS (numpy's, loaded with numpy) for one thread unless the user chose a number.
    Its extra threads start when numpy is imported and spin before they sleep, and again after
    every product big enough to split: 0.07 to 0.1 s of CPU in every command's start-up
    (bench_startup.py notes, 2026-12-05), while the commands keep their products small enough
    for one thread (bench_sr.py notes). Only before numpy is loaded does the setting count."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _skip_collections_at_exit() -> None:
    """Move every object to the collector's permanent generation (gc.freeze) when the command is
    done and its process ends: the interpreter's shutdown then still clears the modules and runs
    the atexit handlers, but its garbage collections no longer walk every object left (the SEG's
    and the series' headers, pydicom's dictionaries, numpy): 0.05 s of CPU of a ``seg import``
    (bench_startup.py notes, 2026-12-05). The memory goes back with the process."""
    import gc

    gc.freeze()


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command of ``argv`` (default: the process's command line, and then the process is
    taken to end when it returns: see _skip_collections_at_exit); returns the exit code."""
    try:
        return _main(argv)
    finally:
        if argv is None:
            _skip_collections_at_exit()


def _main(argv: Optional[List[str]]) -> int:
    _single_threaded_blas()
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    # a command may say that pydicom decodes none of its pixel data (a function of its arguments)
    pydicom_pixels = getattr(args, "pydicom_pixels", None)
    _import_pydicom(pixel_codecs=pydicom_pixels is None or pydicom_pixels(args))
    from ..core.arrays import prefer_small_pages

    prefer_small_pages()  # a command faults its volumes in once (core.arrays)
    for flag in ("quiet", "verbose", "debug"):  # shared flags are absent unless given
        setattr(args, flag, getattr(args, flag, False))
    level = logging.WARNING if args.quiet else (logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
    warnings.simplefilter("ignore", category=UserWarning)  # our warnings are logged once, not twice
    progress = TqdmProgress(enabled=not args.quiet and sys.stderr.isatty())
    try:
        check_outputs(args)
        with remote_series(args, progress):  # --series NODE/STUDY/SERIES: retrieved, removed after
            return args.run(args, progress)
    except UsageError as exc:
        parser.error(str(exc))
    except DicomAnnotEmbedError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # a path given to us (core.errors.PATH_ERRNOS): exit 3 naming it, or 4 below an output option
        named_path = exc.errno in PATH_ERRNOS and exc.filename
        if (exc.errno not in _DISK_ERRNOS or args.debug) and not named_path:
            raise
        progress.close()
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno in _DISK_ERRNOS or _is_output(exc.filename, args):
            print(f"error: {where}cannot write: {exc.strerror or exc}", file=sys.stderr)
            return OutputError.exit_code
        print(f"error: {where}cannot read: {exc.strerror or exc}", file=sys.stderr)
        return InputError.exit_code
    except Exception as exc:  # an unexpected failure is a bug: say so in one line
        if args.debug:
            raise
        progress.close()
        print(f"internal error: {exc.__class__.__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
