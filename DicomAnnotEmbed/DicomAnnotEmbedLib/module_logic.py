"""Deprecated location of the Slicer module logic: use ``DicomAnnotEmbedLib.slicer.logic``.

Kept for one release so that scripts written against 0.1 keep working.
"""
import warnings

warnings.warn("DicomAnnotEmbedLib.module_logic moved to DicomAnnotEmbedLib.slicer.logic; "
              "the old name will be removed in the next release", DeprecationWarning, stacklevel=2)

from .slicer.logic import *  # noqa: E402,F401,F403
from .slicer.logic import __all__  # noqa: E402,F401
