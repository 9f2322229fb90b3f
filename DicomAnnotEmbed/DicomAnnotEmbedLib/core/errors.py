"""Exception types of DicomAnnotEmbed.

Every error caused by bad input or an unwritable output is raised as a subclass of
:class:`DicomAnnotEmbedError`, whose message names the file and the problem. The command
line prints that message and exits with the class's ``exit_code``, without a traceback.
"""
from __future__ import annotations

import errno
import os
import re
from typing import Iterable, Optional

#: Hints of the libraries that mean nothing to a user of the command line (pydicom's
#: "Use force=True", our API's "(force=True)").
_LIBRARY_HINTS = re.compile(r"\s*\(\w+=(True|False|None)\)|[,;.]?\s*use force=True[^.;]*", re.IGNORECASE)
#: Longest message kept (a value repr of a whole array would drown the point).
MAX_MESSAGE = 600
#: OSErrors about a path given to us, not bugs of ours: a name too long, a folder we may not
#: enter, a symlink loop, a file that is not there (or vanished).
PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENOTDIR, errno.EISDIR,
                         errno.ENOENT})


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message on one line: newlines (numpy reprs) become spaces, library hints are dropped,
    and it is cut at ``limit`` characters."""
    text = " ".join(_LIBRARY_HINTS.sub("", str(text)).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class DicomAnnotEmbedError(Exception):
    """Base class of all errors this package raises on purpose.

    ``path`` is the file, folder or node the error is about; the message starts with it.
    """

    exit_code = 1

    def __init__(self, message: str, path: Optional[os.PathLike | str] = None):
        self.problem = one_line(message)
        self.path = None
        self.set_path(path)

    def set_path(self, path: Optional[os.PathLike | str]) -> None:
        """Say which file (folder, node) the error is about, when it did not say already."""
        text = None if path is None else str(path)
        self.path = text if text is None or text.strip() else repr(text)  # "" or " " given: shown as '' or ' '
        self.args = (f"{self.path}: {self.problem}" if self.path else self.problem,)


class InputError(DicomAnnotEmbedError):
    """An input file or folder cannot be used as given."""

    exit_code = 3


class SeriesError(InputError):
    """A folder does not hold one usable DICOM image series."""


class GeometryError(InputError):
    """Slices do not form a regular grid, or an annotation cannot lie on the series."""


class TooManySegmentsError(InputError):
    """More segments and shapes than free overlay groups in the source images."""


class OutputError(DicomAnnotEmbedError):
    """An output cannot be written (not empty, read-only, no space)."""

    exit_code = 4


class NetworkError(DicomAnnotEmbedError):
    """An archive cannot be reached, refuses the association, or did not store every file."""

    exit_code = 5


def name_files(paths: Iterable[os.PathLike | str], limit: int = 6) -> str:
    """Short human list of file names for error messages: 'a.dcm, b.dcm (+3 more)'."""
    paths = [str(p) for p in paths]
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")
