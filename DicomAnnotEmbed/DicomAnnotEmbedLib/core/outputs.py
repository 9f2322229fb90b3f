"""Safe outputs: checked folders and files written under a temporary name, then renamed,
so that a crash never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import OutputError


def prepare_output_dir(path: os.PathLike | str, force: bool = False) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises:
        OutputError: it is a file, it is not empty (and ``force`` is False), or it is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder", path)
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputError("output folder is not empty; use --force (force=True) to write into it", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", path) from None
    return path


def prepare_output_file(path: os.PathLike | str, force: bool = True) -> Path:
    """Check that ``path`` can be written (its folder is created if needed)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder, expected a file name", path)
    if path.exists() and not force:
        raise OutputError("exists; use --force (force=True) to replace it", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", path.parent) from None
    return path


def _full_suffix(name: str) -> str:
    """'.seg.nrrd' for 'a.seg.nrrd', '.nii.gz' for 'b.nii.gz': writers pick formats by suffix."""
    for double in (".seg.nrrd", ".nii.gz", ".mrk.json"):
        if name.lower().endswith(double):
            return name[-len(double):]
    return Path(name).suffix


@contextlib.contextmanager
def atomic_path(final: os.PathLike | str) -> Iterator[str]:
    """Yield a temporary path beside ``final`` (same suffix); rename it to ``final`` on success,
    delete it on error. An OSError while writing (disk full, ...) becomes an OutputError."""
    final = Path(final)
    suffix = _full_suffix(final.name)
    try:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial" + suffix)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", final.parent) from None
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write: {exc.strerror or exc}", final) from None
        raise


def write_atomic(final: os.PathLike | str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``final`` through ``write(binary_file)`` under a temporary name, then rename it.

    Raises:
        OutputError: the file cannot be written (the OS reason is given).
    """
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as stream:
            write(stream)
