"""Read and write 3D Slicer markups JSON files (``.mrk.json``).

Every :class:`~.model.Markup` holds its coordinates in **LPS**. A file may be in LPS or RAS
(its ``"coordinateSystem"``; Slicer's default when absent is LPS): RAS files are converted on
reading and written on request. The format follows Slicer's own reader and writer
(``vtkMRMLMarkupsJsonStorageNode`` and its ROI and Plane subclasses):

* control point ``"position"`` is a 3-vector in the file's coordinate system; points whose
  ``"positionStatus"`` is ``"undefined"`` or ``"preview"`` (written with ``"position": ""``) are
  not placed and are skipped;
* ``"orientation"`` (ROI, Plane, control points) is a row-major 3x3 matrix whose *columns* are
  axes; converting it between RAS and LPS multiplies it by diag(-1, -1, 1) on the left;
* Plane 4x4 matrices ``"objectToBase"`` and ``"baseToNode"`` are row-major; in an LPS file their
  first two rows are negated (Slicer does this to both of them);
* a Plane's rectangle is ``planeBounds`` = [xmin, xmax, ymin, ymax] in its object coordinates,
  placed by baseToNode @ objectToBase; for ``"pointNormal"`` planes the origin of baseToNode is
  the first control point;
* the colour Slicer shows is ``display.selectedColor`` while all control points are selected
  (the default), else ``display.color``.

Kinds map to Slicer types as in :data:`SLICER_TYPES`.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import List, Sequence

from ..core.errors import InputError
from ..core.inputs import read_json_file
from ..core.markup_dicts import (MARKUPS_SCHEMA, SLICER_TYPES, _MarkupReader, _system,  # noqa: F401
                                 markup_from_dict, markup_to_dict)
from ..core.model import Markup
from ..core.outputs import write_atomic

log = logging.getLogger(__name__)


# --- reading ----------------------------------------------------------------------------------

def read_markups(path: os.PathLike | str) -> List[Markup]:
    """Read every markup of a Slicer ``.mrk.json`` file.

    Args:
        path: the file. Its coordinates may be in LPS or RAS; the result is always in **LPS**.

    Returns:
        One :class:`Markup` per entry of the file's ``"markups"`` list, in file order.
        ``roi`` markups get centre, size and axes from ``"center"``, ``"size"`` and
        ``"orientation"``; ``plane`` markups get the centre of the drawn rectangle, its axes
        (normal as third column) and size ``[width, height, 0]``. Control points are kept as
        ``points_lps`` for every kind.

    Raises:
        InputError: unreadable file, invalid JSON, an unknown markups type, or a missing or
            non-numeric coordinate (the message names the markup and control point).
    """
    path = Path(path)
    document = read_json_file(path, "a Slicer markups file (.mrk.json)")
    if not isinstance(document, dict) or not isinstance(document.get("markups"), list):
        raise InputError('not a Slicer markups file: no "markups" list at the top level', path)
    schema = document.get("@schema")
    if not (isinstance(schema, str) and "markups-schema-v1." in schema):
        log.warning("%s: unexpected markups schema %r; reading it as schema v1", path, schema)

    stem = path.name[:-len(".mrk.json")] if path.name.lower().endswith(".mrk.json") else path.stem
    entries = document["markups"]
    markups = []
    for index, entry in enumerate(entries):
        # Slicer names a node after the file (it does not write "name"); several get a suffix.
        default_name = stem if len(entries) == 1 else f"{stem}_{index + 1}"
        markup = _MarkupReader(path, index, default_name).read(entry)
        markup.source = str(path)  # errors about it later (export) name the file
        markups.append(markup)
    return markups


# --- writing ----------------------------------------------------------------------------------

def write_markups(path: os.PathLike | str, markups: Sequence[Markup], coordinate_system: str = "LPS") -> None:
    """Write markups (coordinates in **LPS**) as one Slicer ``.mrk.json`` file.

    Args:
        path: output file; written atomically (temporary file in the same folder, then renamed).
        markups: the shapes; their ``points_lps``, ``roi_*`` fields are LPS.
        coordinate_system: ``"LPS"`` (Slicer's default) or ``"RAS"``: the system used in the file.

    ROI and plane markups are written the way Slicer writes them: one control point at the
    centre (a "Box" ROI; a "pointNormal" plane of absolute size whose origin is that point).
    ``Markup.filled`` and ``attributes`` have no place in the format and are not written.

    Raises:
        InputError: a bad coordinate system or a markup that cannot be represented.
        OutputError: the file cannot be written.
    """
    system = _system(coordinate_system)
    document = {"@schema": MARKUPS_SCHEMA, "markups": [markup_to_dict(m, system) for m in markups]}
    text = json.dumps(document, indent=4, allow_nan=False) + "\n"

    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))


__all__ = ["read_markups", "write_markups", "markup_from_dict", "markup_to_dict", "SLICER_TYPES", "MARKUPS_SCHEMA"]
