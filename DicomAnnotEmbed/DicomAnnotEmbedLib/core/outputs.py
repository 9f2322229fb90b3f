"""Safe outputs, one mechanism for every writer.

- A file (DICOM, NRRD, NIfTI, PNG, CSV, JSON) is written under a hidden temporary name in its
  target folder and renamed when complete (:func:`atomic_path`, :func:`write_atomic`): a crash, a
  kill or a full disk never leaves a truncated file under the final name.
- A multi-file output (a series, an export folder) is written into a hidden temporary folder
  beside the target and renamed into place when complete (:func:`staged_folder`): it is visible
  whole or not at all.
- Temporary names carry the writer's process id; what a killed run left behind is removed by
  the next run that writes there (:func:`remove_leftovers`); so are the system temporary
  folders of :func:`owned_temporary_folder` (e.g. a series retrieved from an archive).
- Files and folders get the permissions ``open()`` would give them (0666 / 0777 less the umask),
  not the 0600 / 0700 of ``mkstemp`` / ``mkdtemp``.
- An OSError while writing (disk full, read-only, ...) becomes one :class:`OutputError` naming
  the file.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

from .errors import OutputError

#: Marker of temporary names: ``.<final name>.<pid>-<random>.partial[<suffix>]``.
PARTIAL = ".partial"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.partial(\..*)?$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _give_default_mode(path: os.PathLike | str, directory: bool = False) -> None:
    """The mode a plain ``open()`` / ``mkdir()`` would have given (mkstemp makes 0600, mkdtemp 0700)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folder: os.PathLike | str, pattern: Optional["re.Pattern"] = None) -> int:
    """Remove the temporary files and folders that a killed run left in ``folder`` (those whose
    writing process is gone); returns how many. Missing or unreadable folders are ignored.
    ``pattern``: the names to look at, with a ``pid`` group (default: our partial names)."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = (pattern or _LEFTOVER).match(entry.name)
        if match is None or _pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
    return removed


def owned_temporary_folder(prefix: str) -> Path:
    """A new folder ``<prefix>-<pid>-<random>`` in the system's temporary folder (``TMPDIR``),
    for the caller to remove; the folders of that prefix whose process is gone (a killed run's)
    are removed first (:func:`remove_leftovers`)."""
    base = tempfile.gettempdir()
    remove_leftovers(base, re.compile(rf"^{re.escape(prefix)}-(?P<pid>\d+)-[^.]+$"))
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=base))


def _writable(folder: Path, about: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".write-test.{os.getpid()}-", suffix=PARTIAL):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", about) from None


def existing_output_dir(path: os.PathLike | str) -> Path:
    """``path`` as a folder that outputs are added to (created if needed, not required empty), for
    commands that add to their folder by design (``batch``, ``pacs get``).

    Raises:
        OutputError: it is a file, or it cannot be created.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create: {exc.strerror or exc}", path) from None
    return path


def prepare_output_dir(path: os.PathLike | str, force: bool = False) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises:
        OutputError: it is a file, it is not empty (and ``force`` is False), or it is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder", path)
    remove_leftovers(path)
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputError("output folder is not empty; use --force to write into it", path)
    _writable(path, path)
    return path


def check_output_dir(path: os.PathLike | str, force: bool = False) -> Path:
    """The checks of :func:`prepare_output_dir` without creating anything (for options checked
    before any work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder", path)
    if path.is_dir():
        remove_leftovers(path)
        if any(path.iterdir()) and not force:
            raise OutputError("output folder is not empty; use --force to write into it", path)
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create this folder: {parent} is not a folder", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write here: permission denied in {parent}", path)
    return path


def prepare_output_file(path: os.PathLike | str, force: bool = True) -> Path:
    """Check that ``path`` can be written (its folder is created if needed).

    Raises:
        OutputError: it is a folder, it exists (and ``force`` is False), or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder, expected a file name", path)
    if path.exists() and not force:
        raise OutputError("exists; use --force to replace it", path)
    remove_leftovers(path.parent)
    _writable(path.parent, path.parent)
    return path


def _full_suffix(name: str) -> str:
    """'.seg.nrrd' for 'a.seg.nrrd', '.nii.gz' for 'b.nii.gz': writers pick formats by suffix."""
    for double in (".seg.nrrd", ".nii.gz", ".mrk.json"):
        if name.lower().endswith(double):
            return name[-len(double):]
    return Path(name).suffix


def _oserror_message(exc: OSError) -> str:
    return f"cannot write: {exc.strerror or exc}"


@contextlib.contextmanager
def atomic_path(final: os.PathLike | str) -> Iterator[str]:
    """Yield a temporary path beside ``final`` (same suffix); rename it to ``final`` on success,
    delete it on error. An OSError while writing (disk full, ...) becomes an OutputError.

    Writers that check the written file (SimpleITK, Pillow write in place and may report a full
    disk only by a short file) are covered: the file is renamed only when the block returns."""
    final = Path(final)
    suffix = _full_suffix(final.name)
    try:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}-", suffix=PARTIAL + suffix)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", final.parent) from None
    try:
        yield tmp
        if os.path.getsize(tmp) == 0:
            raise OutputError("cannot write: the writer produced an empty file (disk full?)", final)
        _give_default_mode(tmp)
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(_oserror_message(exc), final) from None
        if isinstance(exc, RuntimeError) and _looks_like_io(exc):  # SimpleITK's exceptions
            raise OutputError(f"cannot write: {_first_line(exc)}", final) from None
        raise


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _looks_like_io(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("no space", "could not write", "cannot write", "write failed", "file too large",
                                   "writing", "errno", "permission denied"))


def write_atomic(final: os.PathLike | str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``final`` through ``write(binary_file)`` under a temporary name, then rename it.

    Raises:
        OutputError: the file cannot be written (the OS reason is given).
    """
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as stream:
            write(stream)
            stream.flush()


@contextlib.contextmanager
def staged_folder(final: os.PathLike | str, force: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``final`` to write a multi-file output into; when the
    block returns, it becomes ``final`` (one rename when ``final`` is absent or empty; with
    ``force`` into a non-empty folder, each top-level entry is renamed over its namesake). On any
    error the temporary folder is removed and ``final`` is as it was.

    Raises:
        OutputError: ``final`` is a file, is not empty (without ``force``), or cannot be written.
    """
    final = Path(final)
    check_output_dir(final, force)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", parent) from None
    remove_leftovers(parent)
    try:
        stage = Path(tempfile.mkdtemp(dir=parent, prefix=f".{final.name}.{os.getpid()}-", suffix=PARTIAL))
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", parent) from None
    try:
        yield stage
        _give_default_mode(stage, directory=True)
        commit_folder(stage, final)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(_oserror_message(exc), final) from None
        raise


def commit_folder(stage: Path, final: Path) -> None:
    """Move a complete staged folder to ``final`` (see :func:`staged_folder`)."""
    if final.is_dir():
        with contextlib.suppress(OSError):
            final.rmdir()  # only when empty
    if not final.exists():
        os.rename(stage, final)
        return
    for entry in sorted(stage.iterdir()):
        target = final / entry.name
        if entry.is_dir() and target.is_dir():
            # A folder cannot be renamed over a non-empty one: the old one goes aside first.
            aside = final / f".{entry.name}.{os.getpid()}-old{PARTIAL}"
            os.rename(target, aside)
            os.rename(entry, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(entry, target)
    stage.rmdir()


def staged_path(stage: Path, final: os.PathLike | str, path: os.PathLike | str) -> str:
    """Where a file written at ``path`` inside ``stage`` is once the stage became ``final``."""
    return str(Path(final) / Path(path).relative_to(stage))


def relocate(value, stage: os.PathLike | str, final: os.PathLike | str):
    """``value`` with every path inside ``stage`` moved to ``final`` (paths, strings, lists, tuples,
    dicts and dataclass fields, recursively; dataclasses are updated in place). For results built
    while writing into a :func:`staged_folder`, so that they name the files where they end up."""
    import dataclasses

    stage, final = str(stage), str(final)
    seen = set()

    def move(item):
        if isinstance(item, Path):
            text = str(item)
            return Path(final + text[len(stage):]) if text == stage or text.startswith(stage + os.sep) else item
        if isinstance(item, str):
            return final + item[len(stage):] if item == stage or item.startswith(stage + os.sep) else item
        if isinstance(item, list):
            item[:] = [move(v) for v in item]
            return item
        if isinstance(item, tuple) and not hasattr(item, "_fields"):
            return tuple(move(v) for v in item)
        if isinstance(item, dict):
            for key in list(item):
                item[key] = move(item[key])
            return item
        if dataclasses.is_dataclass(item) and not isinstance(item, type) and id(item) not in seen:
            seen.add(id(item))
            for f in dataclasses.fields(item):
                object.__setattr__(item, f.name, move(getattr(item, f.name)))
            for name, extra in list(vars(item).items()):  # attributes set after construction
                if name not in {f.name for f in dataclasses.fields(item)}:
                    object.__setattr__(item, name, move(extra))
        return item

    return move(value)
