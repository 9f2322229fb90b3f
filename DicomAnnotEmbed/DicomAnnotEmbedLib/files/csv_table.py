"""Annotation tables (CSV databases) onto a DICOM series: segments and markups, then overlays,
SEG and SR (the seed's "reverse pipeline": annotations pushed from CSV into DICOM).

:func:`read_annotation_table` turns a table into a :class:`~.model.Segmentation` on the series
grid (one segment per finding; overlapping findings go to further layers), markups for points
and polylines (**LPS**), and qualitative evaluations from per-finding attributes.
``api.import_csv`` (:mod:`..api.csv_pipeline`) also writes the overlay series, the SEG and the
SR, as ``dicomannotembed csv import`` does. Rows that cannot be used are reported
with their row numbers; the others are converted.

CSV format
----------
One row per shape per slice. A header row names the columns; names ignore case, spaces and
punctuation (``SOP Instance UID`` = ``sop_instance_uid`` = ``SOPInstanceUID``). Comma,
semicolon or tab separated, UTF-8 (a BOM is fine). Blank rows and rows whose first cell starts
with ``#`` (also before the header) are skipped. **Row numbers** in messages are those a spreadsheet shows (the header
is row 1). Example: ``Resources/Examples/annotations_example.csv`` (on the bundled sample).

Which image (one of these per row; when several are given they must name the same slice):

============================  =====================================================================
``sop_instance_uid``          SOP Instance UID of the image (aliases ``sop_uid``, ``imageSOP_UID``);
                              multi-frame images also need ``frame`` (1-based)
``slice_position``            position in mm along the slice normal (``IPP · normal``, the
                              value the series is sorted by; on an axial series, z)
``image_z``                   the z of Image Position (Patient) (LIDC's ``imageZposition``);
                              only on series whose slices differ in z
``slice_index``               0-based index along the sorted series (as ``--preview-slices``)
(none)                        ``space=patient``: the slice is the one the points lie on
============================  =====================================================================

``series_instance_uid`` (optional): rows of another series are not bad rows: they are counted
and ignored, so one table can serve every series of a folder of studies. Positions match a
slice within ``position_tolerance_mm`` (default: a quarter of the slice spacing).

What is drawn:

``finding`` (required; aliases ``finding_id``, ``nodule_id``, ``roi_id``, ``annotation_id``)
    the object the row belongs to; rows sharing it form one finding (one segment).
``label`` (optional; alias ``name``, ``class``)
    the finding's name (segment name, overlay label, SEG segment label); default: the finding
    id. Findings sharing a label are named ``label (finding)``.
``shape`` (required)
    ``point``; ``ellipse`` / ``oval``; ``circle``; ``rectangle`` (``rect``, ``box``); ``polygon``
    (``contour``, ``closed polyline``); ``freehand`` / ``pencil`` (a polygon of many vertices);
    ``polyline`` (``line``, ``ruler``, ``open polyline``).
``coordinates`` (required; aliases ``points``, ``vertices``, ``coords``)
    numbers separated by spaces, commas, semicolons or brackets: ``x y`` pairs in pixel space,
    ``x y z`` triples in patient space.
``space`` (optional; default ``pixel``)
    ``pixel``: (column, row), 0-based, pixel centres at integers (LIDC's ``xCoord``,
    ``yCoord``); ``patient`` (or ``lps``, ``mm``): DICOM patient coordinates in mm; ``ras``:
    Slicer's RAS mm (x and y negated).
``boundary`` (optional; default: the ``boundary`` argument, ``--boundary``, itself ``inside``)
    for polygons, freehand shapes and rectangles: ``inside`` — the vertices lie on the region's
    border, whose pixels belong to it; ``outside`` — the vertices lie just outside the region
    (LIDC contours: the contour pixels are not part of the nodule), so the outline pixels are
    removed (:func:`rasterize.polygon_mask`).
``inclusion`` (optional; ``true``/``false``, default true)
    ``false``: the shape is cut out of the finding on that slice (LIDC exclusions), its outline
    pixels included, whatever ``boundary`` says (LIDC: contour pixels are never part of the nodule).

Shapes and their points (pixel centres inside the shape are selected, edges included):

=============  ========================================================================================
point          one or more points: a point-list markup of the finding (not in the segment, unless
               ``lines_in_segments``: then one pixel each)
polyline       2 or more points: a line (2 points) or open-curve markup (its Length / path length in
               the SR; in the segment as a 1-pixel line only with ``lines_in_segments``)
rectangle      2 opposite corners (axis-aligned in the image), or 4 corners (a rotated rectangle,
               drawn as a polygon)
ellipse, oval  2 points: opposite corners of the bounding box (OsiriX's oval); or 4 points: the
               ends of one axis, then of the other (DICOM's ELLIPSE), any rotation
circle         2 points: centre and a point on the circle (DICOM's CIRCLE); in pixel space also
               ``cx cy r``
polygon,       3 or more vertices, closed (the last joins the first); filled by the even-odd rule
freehand
=============  ========================================================================================

Per-finding attributes (optional; the same value on every row of the finding, or on one row and
blank on the others; a different value is a bad row):

* ``color`` (``#rrggbb`` or ``r g b`` in 0-255), ``description``;
* ``category_code``, ``type_code`` (both, or neither) and ``region_code``: the segment's
  terminology as codes ``(value, scheme, "meaning")``; without them SEG export uses its default;
* evaluations for the SR (TID 1500 qualitative evaluations, :mod:`evaluations`): a column named
  as a concept of the code table (default: the bundled LIDC characteristics — ``malignancy``,
  ``subtlety``, ``internalStructure``, ``calcification``, ``sphericity``, ``margin``,
  ``lobulation``, ``spiculation``, ``texture``) holds its score (``4``) or value meaning; a
  column ``attribute:NAME`` (or ``attr:NAME``) any other concept, free text or a code.

Other columns are ignored (listed once in a warning).

Bad rows
--------
A row is bad (and skipped as a whole) when it names an image not in the series, has no usable
image reference, unknown shape or space, coordinates that are not numbers, the wrong count of
numbers for its shape, vertices outside the image (by more than half a pixel) or, in patient
space, off the slice plane, or an attribute that contradicts an earlier row of its finding or is
not a valid score. Each is a :class:`RowProblem` with its row number. A shape that selects no
pixel centre is converted (nothing is drawn) with a warning.

Shapes are drawn by :mod:`.csv_shapes`.
"""
from __future__ import annotations

import csv
import functools
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from pydicom.uid import generate_uid

from ..core.errors import InputError
from ..dicom.evaluations import CodeTable, ConceptEntry, EvaluationRecord, load_code_table
from ..core.inputs import read_text_file
from ..core.model import Markup, Segment, Segmentation, Terminology, _default_color
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries
from .csv_cells import _code_cell, _color, _coordinates, _fmt, _integer, _number
from .csv_shapes import (_check_count, _draw, _ellipse, _ellipse_markups, _Finding, _Layers, _markups,
                         _merged_planes, _Piece, _RowError, _unique_names)

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Canonical column -> accepted header names (normalised: lower case, letters and digits only).
COLUMN_ALIASES: Dict[str, Tuple[str, ...]] = {
    "sop_instance_uid": ("sopinstanceuid", "sopuid", "imagesopuid", "imageuid", "sopinstance"),
    "frame": ("frame", "framenumber"),
    "series_instance_uid": ("seriesinstanceuid", "seriesuid"),
    "slice_position": ("sliceposition", "slicepositionmm", "positionmm"),
    "image_z": ("imagez", "imagezposition", "zposition", "imagepositionz", "ippz"),
    "slice_index": ("sliceindex", "k"),
    "finding": ("finding", "findingid", "noduleid", "objectid", "roiid", "annotationid"),
    "label": ("label", "name", "classname", "class"),
    "shape": ("shape", "shapetype", "roitype", "geometry"),
    "coordinates": ("coordinates", "coords", "points", "vertices"),
    "space": ("space", "coordinatespace", "coordinatesystem"),
    "boundary": ("boundary", "contourboundary"),
    "inclusion": ("inclusion", "include"),
    "color": ("color", "colour"),
    "description": ("description",),
    "category_code": ("categorycode",),
    "type_code": ("typecode",),
    "region_code": ("regioncode", "anatomicregioncode", "sitecode"),
}
_BY_ALIAS = {alias: column for column, aliases in COLUMN_ALIASES.items() for alias in aliases}
_FINDING_FIELDS = ("label", "color", "description", "category_code", "type_code", "region_code")

#: Shape names (normalised) -> kind.
SHAPES: Dict[str, str] = {
    "point": "point", "points": "point", "pointlist": "point",
    "ellipse": "ellipse", "oval": "ellipse",
    "circle": "circle",
    "rectangle": "rectangle", "rect": "rectangle", "box": "rectangle",
    "polygon": "polygon", "contour": "polygon", "closedpolyline": "polygon", "closedpolygon": "polygon",
    "freehand": "freehand", "pencil": "freehand",
    "polyline": "polyline", "openpolyline": "polyline", "line": "polyline", "ruler": "polyline",
}
AREA_SHAPES = ("ellipse", "circle", "rectangle", "polygon", "freehand")
_SPACES = {"pixel": "pixel", "pixels": "pixel", "px": "pixel", "image": "pixel", "index": "pixel",
           "patient": "patient", "lps": "patient", "mm": "patient", "world": "patient", "ras": "ras"}
_BOUNDARIES = {"inside": "inside", "on": "inside", "border": "inside", "inclusive": "inside",
               "outside": "outside", "exclusive": "outside", "lidc": "outside"}
_TRUE = {"true", "yes", "y", "1", "t", "include", "included"}
_FALSE = {"false", "no", "n", "0", "f", "exclude", "excluded"}
_BOOLEANS = _TRUE | _FALSE
_PROGRESS_EVERY = 250  # rows between progress reports (a terminal redraw per row costs more than the row)


@functools.lru_cache(maxsize=4096)  # a table repeats its shapes, spaces and booleans on every row
def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", str(text).casefold())


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowProblem:
    """A row that was not converted (bad row) or was converted with a remark (warning).

    Attributes:
        row: the row number a spreadsheet shows (the header is row 1).
        problem: what is wrong, in words.
        finding: the row's finding id, when it could be read.
    """

    row: int
    problem: str
    finding: str = ""

    def __str__(self) -> str:
        return f"row {self.row}: {self.problem}"


@dataclass
class FindingSummary:
    """What became of one finding.

    Attributes:
        id: the finding id of the table.
        label: its label.
        segment_id: the segment made of it (None when it has no area).
        markups: names of the markups made of its points and polylines.
        rows: the rows converted.
        voxels: voxels of its segment.
    """

    id: str
    label: str
    segment_id: Optional[str]
    markups: List[str]
    rows: List[int]
    voxels: int = 0


@dataclass
class TableConversion:
    """An annotation table read onto a series (see :func:`read_annotation_table`).

    Attributes:
        path: the table.
        series: the reference series.
        segmentation: one segment per finding with an area (on ``series.geometry``; overlapping
            findings in further layers). Segment id = finding id; attributes carry a Tracking
            Identifier (the finding id) and a new Tracking UID, which the SEG and SR keep.
        markups: point lists and polylines, in **LPS**.
        ellipses: the ovals and circles of findings drawn only with them, as closed curves marked
            as ellipses (**LPS**, :func:`.csv_shapes._ellipse_markups`): GSPS draws them, not the outline.
        evaluations: per-finding attributes as evaluation records (segment = segment id).
        findings: one summary per finding, in table order.
        rows: data rows read; converted_rows: rows converted.
        bad_rows: rows not converted, with the reason; warnings: remarks about converted rows.
        other_series_rows: rows of another series (``series_instance_uid``), ignored.
        ignored_columns: header names that are not part of the format.
    """

    path: str
    series: ReferenceSeries
    segmentation: Segmentation
    markups: List[Markup] = field(default_factory=list)
    ellipses: List[Markup] = field(default_factory=list)
    evaluations: List[EvaluationRecord] = field(default_factory=list)
    findings: List[FindingSummary] = field(default_factory=list)
    rows: int = 0
    converted_rows: int = 0
    bad_rows: List[RowProblem] = field(default_factory=list)
    warnings: List[RowProblem] = field(default_factory=list)
    other_series_rows: int = 0
    ignored_columns: List[str] = field(default_factory=list)

    def summary(self) -> str:
        segments = len(self.segmentation.segments)
        text = (f"{self.converted_rows} of {self.rows} rows converted: {len(self.findings)} findings, "
                f"{segments} segments ({self.segmentation.layers.shape[0]} layers), {len(self.markups)} markups, "
                f"{len(self.evaluations)} evaluations")
        if self.other_series_rows:
            text += f"; {self.other_series_rows} rows of other series ignored"
        if self.bad_rows:
            text += f"; {len(self.bad_rows)} bad rows"
        return text


# ----------------------------------------------------------------------------------------------
# Header
# ----------------------------------------------------------------------------------------------

@dataclass
class _Attribute:
    header: str
    column: int
    entry: Optional[ConceptEntry]  # a code table concept, else None
    concept_text: str  # the concept as written (for attribute:NAME columns)


@dataclass
class _Header:
    columns: Dict[str, int]
    attributes: List[_Attribute]
    ignored: List[str]


def _parse_header(names: List[str], table: CodeTable, path: Path) -> _Header:
    columns: Dict[str, int] = {}
    attributes: List[_Attribute] = []
    ignored: List[str] = []
    for index, name in enumerate(names):
        raw = name.strip()
        lowered = raw.casefold()
        prefix = next((p for p in ("attribute:", "attr:") if lowered.startswith(p)), None)
        if prefix:
            concept = raw[len(prefix):].strip()
            if not concept:
                raise InputError(f"column {index + 1}: {raw!r} names no attribute", path)
            attributes.append(_Attribute(raw, index, table.find(concept), concept))
            continue
        column = _BY_ALIAS.get(_norm(raw))
        if column is not None:
            if column in columns:
                raise InputError(f"columns {columns[column] + 1} and {index + 1} both give {column!r} "
                                 f"({names[columns[column]]!r}, {raw!r})", path)
            columns[column] = index
            continue
        entry = table.find(raw) if _norm(raw) else None
        if entry is not None:
            attributes.append(_Attribute(raw, index, entry, raw))
        elif raw:
            ignored.append(raw)
    missing = [c for c in ("finding", "shape", "coordinates") if c not in columns]
    if missing:
        raise InputError(f"the header has no {', '.join(missing)} column; found: {', '.join(repr(n) for n in names)} "
                         "(format: csv_table module / README 'CSV in, ML out')", path)
    concepts = {}
    for attribute in attributes:
        key = (attribute.entry.code.value, attribute.entry.code.scheme) if attribute.entry else _norm(attribute.concept_text)
        if key in concepts:
            raise InputError(f"columns {concepts[key]!r} and {attribute.header!r} give the same attribute", path)
        concepts[key] = attribute.header
    return _Header(columns, attributes, ignored)


def _read_rows(text: str, table: CodeTable, path: Path) -> Tuple[_Header, List[Tuple[int, List[str]]]]:
    header_line = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")),
                       None)
    if header_line is None:
        raise InputError("the table is empty; it needs a header row (finding, shape, coordinates, ...)", path)
    best = None
    for delimiter in (",", ";", "\t"):
        names = next(csv.reader([header_line], delimiter=delimiter))
        found = sum(1 for n in names if _BY_ALIAS.get(_norm(n)) in ("finding", "shape", "coordinates"))
        if best is None or found > best[0]:
            best = (found, delimiter)
    delimiter = best[1]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: List[Tuple[int, List[str]]] = []
    header: Optional[_Header] = None
    line = 0
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = _parse_header(cells, table, path)
                continue
            rows.append((start, cells))
    except csv.Error as error:
        raise InputError(f"row {reader.line_num}: not valid CSV ({error})", path) from None
    return header, rows


# ----------------------------------------------------------------------------------------------
# Slices
# ----------------------------------------------------------------------------------------------

class _Slices:
    """Finds the slice index k a row names."""

    def __init__(self, series: ReferenceSeries, tolerance_mm: Optional[float]):
        geometry = series.geometry
        self.series = series
        self.depth = geometry.shape[0]
        self.by_uid: Dict[str, List[Tuple[int, int]]] = {}
        for k, ref in enumerate(series.slices):
            self.by_uid.setdefault(ref.sop_instance_uid, []).append((ref.frame + 1, k))
        step = geometry.ijk_to_lps[:3, 2]
        normal = geometry.slice_normal if geometry.in_patient_space else np.array([0.0, 0.0, 1.0])
        self.gap = float(abs(step @ normal)) or 1.0
        self.tolerance = float(tolerance_mm) if tolerance_mm is not None else 0.25 * self.gap
        origins = geometry.ijk_to_lps_points(np.column_stack([np.zeros(self.depth), np.zeros(self.depth),
                                                              np.arange(self.depth)]))
        self.positions = origins @ normal
        self.z = origins[:, 2]
        self.z_gap = float(abs(step[2]))
        self._named: Dict[Tuple[str, str], Union[int, _RowError]] = {}

    def locate(self, cells: Dict[str, str]) -> Optional[int]:
        found: List[Tuple[str, int]] = []
        uid = cells.get("sop_instance_uid", "")
        if uid:
            matches = self.by_uid.get(uid)
            if not matches:
                raise _RowError(f"image {uid} is not in the series")
            frame_text = cells.get("frame", "")
            if len(matches) > 1 or frame_text:
                frame = _integer(frame_text, "frame") if frame_text else None
                if frame is None:
                    raise _RowError(f"image {uid} is multi-frame ({len(matches)} frames): give its frame (1-based)")
                k = next((k for f, k in matches if f == frame), None)
                if k is None:
                    raise _RowError(f"image {uid} has no frame {frame} (frames 1..{len(matches)})")
                found.append(("sop_instance_uid", k))
            else:
                found.append(("sop_instance_uid", matches[0][1]))
        text = cells.get("slice_index", "")
        if text:
            k = _integer(text, "slice_index")
            if not 0 <= k < self.depth:
                raise _RowError(f"slice_index {k} is not in the series (0..{self.depth - 1})")
            found.append(("slice_index", k))
        for column in ("slice_position", "image_z"):
            text = cells.get(column, "")
            if text:
                found.append((column, self._position(column, text)))
        if len({k for _, k in found}) > 1:
            raise _RowError("the image columns name different slices: "
                            + ", ".join(f"{name} -> slice {k}" for name, k in found))
        return found[0][1] if found else None

    def _position(self, column: str, text: str) -> int:
        """The slice a ``slice_position`` or ``image_z`` cell names, looked up once per text (a
        table names each slice on many rows)."""
        key = (column, text)
        if key not in self._named:
            try:
                self._named[key] = self._slice_at(column, text)
            except _RowError as error:
                self._named[key] = error
        named = self._named[key]
        if isinstance(named, _RowError):
            raise _RowError(str(named))
        return named

    def _slice_at(self, column: str, text: str) -> int:
        if not self.series.geometry.in_patient_space:
            raise _RowError(f"{column} is given, but the series has no patient positions")
        if column == "slice_position":
            return self._nearest(self.positions, _number(text, "slice_position"), "slice position", self.tolerance)
        if self.z_gap < 1e-3:
            raise _RowError("image_z cannot name a slice here: the slices do not differ in z (use slice_position "
                            "or slice_index)")
        # On a tilted or oblique stack z changes less than the slice spacing per slice.
        tolerance = self.tolerance if self.z_gap >= self.gap - 1e-6 else min(self.tolerance, 0.25 * self.z_gap)
        return self._nearest(self.z, _number(text, "image_z"), "image z", tolerance)

    def _nearest(self, values: np.ndarray, value: float, what: str, tolerance: float) -> int:
        k = int(np.argmin(np.abs(values - value)))
        if abs(values[k] - value) > tolerance:
            raise _RowError(f"no slice at {what} {value:g} mm (nearest: {values[k]:.3f} mm, slice {k}; "
                            f"tolerance {tolerance:.3g} mm)")
        return k





# ----------------------------------------------------------------------------------------------
# Reading a table
# ----------------------------------------------------------------------------------------------

def read_annotation_table(table: PathLike, series: ReferenceSeries, *, boundary: str = "inside",
                          code_table: Union[str, PathLike, CodeTable] = "lidc", lines_in_segments: bool = False,
                          position_tolerance_mm: Optional[float] = None,
                          progress: Optional[ProgressCallback] = None) -> TableConversion:
    """Read an annotation table (format: module docstring) onto ``series``.

    Args:
        table: the CSV file.
        series: the reference series (its headers; no pixel data is read).
        boundary: ``"inside"`` or ``"outside"``: polygon convention of rows without a
            ``boundary`` cell.
        code_table: code table of the evaluation columns (a bundled name or a file).
        lines_in_segments: also draw points (one pixel) and polylines (1-pixel lines) into
            their finding's segment; they are markups in any case.
        position_tolerance_mm: how far a ``slice_position`` / ``image_z`` / patient point may
            lie from a slice plane (default: a quarter of the slice spacing).
        progress: progress callback.

    Returns:
        :class:`TableConversion`: what was converted and the bad rows with their row numbers.

    Raises:
        InputError: the file cannot be read, is not CSV, or its header lacks a required column.
            Bad rows do not raise: they are listed in ``bad_rows``.
    """
    path = Path(table)
    if boundary not in ("inside", "outside"):
        raise InputError(f'boundary must be "inside" or "outside", got {boundary!r}')
    header, result, findings = _read_findings(path, series, boundary, code_table, lines_in_segments,
                                              position_tolerance_mm, progress)
    _build(result, list(findings.values()), header, series, progress)
    for problem in result.bad_rows:
        log.info("%s: %s", path, problem)
    return result


def _read_findings(path: Path, series: ReferenceSeries, boundary: str, code_table, lines_in_segments: bool,
                   position_tolerance_mm: Optional[float], progress: Optional[ProgressCallback]):
    """The rows of a table read into findings, their shapes drawn (``_Piece.mask``): (header,
    the conversion without its segmentation and markups, {finding id: finding})."""
    codes = load_code_table(code_table)
    text = read_text_file(path, "an annotation table (CSV)")
    header, rows = _read_rows(text, codes, path)
    if header is None:
        raise InputError("the table has no header row", path)
    if header.ignored:
        log.warning("%s: columns not part of the format are ignored: %s", path, ", ".join(header.ignored))
    slices = _Slices(series, position_tolerance_mm)
    result = TableConversion(path=str(path), series=series, segmentation=Segmentation(series.geometry),
                             rows=len(rows), ignored_columns=header.ignored)
    findings: Dict[str, _Finding] = {}
    shape2d = series.geometry.shape[1:]
    total = len(rows)
    if progress is not None:
        progress(0, total, "Reading annotation table")
    for done, (row, cells) in enumerate(rows, 1):
        try:
            if _read_row(row, cells, header, codes, series, slices, findings, shape2d, boundary,
                         lines_in_segments, result):
                result.converted_rows += 1
        except _RowError as error:
            finding = _cell(cells, header.columns.get("finding"))
            result.bad_rows.append(RowProblem(row, str(error), finding))
        if progress is not None and (done % _PROGRESS_EVERY == 0 or done == total):
            progress(done, total, "Reading annotation table")
    drawn = sorted(((p, f.id) for f in findings.values() for p in f.pieces), key=lambda item: item[0].row)
    _draw([piece for piece, _ in drawn], shape2d)
    result.warnings += [RowProblem(piece.row, f"the {piece.kind} selects no pixel centre: nothing is drawn", finding)
                        for piece, finding in drawn if not piece.mask.any()]
    return header, result, findings


def _cell(cells: List[str], index: Optional[int]) -> str:
    return cells[index].strip() if index is not None and index < len(cells) else ""


def _read_row(row: int, cells: List[str], header: _Header, codes: CodeTable, series: ReferenceSeries,
              slices: _Slices, findings: Dict[str, _Finding], shape2d, default_boundary: str,
              lines_in_segments: bool, result: TableConversion) -> bool:
    """Convert one row into its finding; False when the row belongs to another series."""
    count = len(cells)
    values = {name: cells[index].strip() if index < count else "" for name, index in header.columns.items()}
    series_uid = values.get("series_instance_uid", "")
    if series_uid and series_uid != series.series_instance_uid:
        result.other_series_rows += 1
        return False
    finding_id = values.get("finding", "")
    if not finding_id:
        raise _RowError("the finding cell is empty")
    kind = SHAPES.get(_norm(values.get("shape", "")))
    if kind is None:
        raise _RowError(f"unknown shape {values.get('shape', '')!r}; expected one of "
                        + ", ".join(sorted(set(SHAPES) - {"points", "pointlist", "closedpolygon"})))
    space = _SPACES.get(_norm(values.get("space", "") or "pixel"))
    if space is None:
        raise _RowError(f"unknown space {values.get('space')!r}; expected pixel, patient (lps) or ras")
    boundary = _BOUNDARIES.get(_norm(values.get("boundary", "") or default_boundary))
    if boundary is None:
        raise _RowError(f"unknown boundary {values.get('boundary')!r}; expected inside or outside")
    inclusion_text = _norm(values.get("inclusion", "") or "true")
    if inclusion_text not in _BOOLEANS:
        raise _RowError(f"inclusion {values.get('inclusion')!r} is not true or false")
    include = inclusion_text in _TRUE
    if not include and kind not in AREA_SHAPES:
        raise _RowError(f"an exclusion (inclusion false) must be an area shape, not a {kind}")

    numbers = _coordinates(values.get("coordinates", ""))
    geometry = series.geometry
    k = slices.locate(values)
    radius = None
    if space == "pixel":
        if kind == "circle" and len(numbers) == 3:
            numbers, radius = numbers[:2], float(numbers[2])
            if radius <= 0:
                raise _RowError(f"circle radius {radius:g} is not positive")
        if len(numbers) % 2:
            raise _RowError(f"{len(numbers)} numbers: pixel coordinates are (column, row) pairs")
        points = np.asarray(numbers, dtype=float).reshape(-1, 2)
        if k is None:
            raise _RowError("the row names no image: give sop_instance_uid, slice_position, image_z or slice_index "
                            "(or patient coordinates)")
    else:
        if not geometry.in_patient_space:
            raise _RowError("patient coordinates are given, but the series has no patient positions")
        if len(numbers) % 3:
            raise _RowError(f"{len(numbers)} numbers: patient coordinates are (x, y, z) triples")
        lps = np.asarray(numbers, dtype=float).reshape(-1, 3)
        if space == "ras":
            lps[:, :2] *= -1.0
        ijk = geometry.lps_to_ijk_points(lps)
        if k is None:
            k = int(np.floor(np.median(ijk[:, 2]) + 0.5))
            if not 0 <= k < slices.depth:
                raise _RowError(f"the points lie outside the series (slice {k}, series has 0..{slices.depth - 1})")
        off = np.abs(ijk[:, 2] - k) * slices.gap
        if off.max() > slices.tolerance:
            worst = int(np.argmax(off))
            raise _RowError(f"point {worst + 1} ({_fmt(lps[worst])}) lies {off[worst]:.3g} mm from the plane of slice {k} "
                            f"(tolerance {slices.tolerance:.3g} mm)")
        points = ijk[:, :2]
    if radius is None:
        _check_count(kind, len(points))
    rows_n, columns_n = shape2d
    outside = (points < -0.5 - 1e-6) | (points > np.array([columns_n - 0.5 + 1e-6, rows_n - 0.5 + 1e-6]))
    if outside.any():
        n = int(np.argmax(outside.any(axis=1)))
        raise _RowError(f"point {n + 1} (column {points[n, 0]:g}, row {points[n, 1]:g}) lies outside the "
                        f"{columns_n}x{rows_n} image")

    finding = findings.get(finding_id)
    new_fields = {name: values[name] for name in _FINDING_FIELDS if values.get(name)}
    new_attributes = {a.header: _cell(cells, a.column) for a in header.attributes if _cell(cells, a.column)}
    for name, value in new_fields.items():
        old = finding.fields.get(name) if finding else None
        if old is not None and old[0] != value:
            raise _RowError(f"finding {finding_id!r} has {name} {old[0]!r} on row {old[1]}, here {value!r}")
        if name == "color":
            _color(value)
        elif name.endswith("_code"):
            _code_cell(value, name)
    for attribute in header.attributes:
        value = new_attributes.get(attribute.header)
        if value is None:
            continue
        record = _evaluation(attribute, value, "", row)  # checks the score
        old = finding.attributes.get(attribute.header) if finding else None
        if old is not None and _same_value(_evaluation(attribute, old[0], "", old[1]), record) is False:
            raise _RowError(f"finding {finding_id!r} has {attribute.header} {old[0]!r} on row {old[1]}, here {value!r}")

    # What to draw (drawn with the other rows' shapes once all are read; nothing is stored before the
    # row is known to be good).
    piece = None
    if kind in AREA_SHAPES or lines_in_segments:
        ellipse = _ellipse(points) if kind == "ellipse" else None  # checks the axes
        if kind == "circle" and radius is None:
            radius = float(np.hypot(*(points[1] - points[0])))
        # An exclusion's outline is outside the finding under either convention ("outside": contour
        # pixels are never part of the nodule, LIDC's reading; "inside": they belong to the hole).
        piece = _Piece(k, include, kind, points, boundary if include else "inside", row, radius, ellipse)
    if finding is None:
        finding = findings[finding_id] = _Finding(finding_id, row)
    for name, value in new_fields.items():
        finding.fields.setdefault(name, (value, row))
    for name, value in new_attributes.items():
        finding.attributes.setdefault(name, (value, row))
    if piece is not None:
        finding.pieces.append(piece)
        if kind in ("ellipse", "circle") and include and (kind == "ellipse" or radius > 0):
            finding.ellipses.append(piece)
    if kind in ("point", "polyline"):
        lps = geometry.ijk_to_lps_points(np.column_stack([points, np.full(len(points), float(k))]))
        if kind == "point":
            finding.points.extend((p, row) for p in lps)
        else:
            finding.polylines.append((lps, row))
    finding.rows.append(row)
    return True


def _same_value(a: EvaluationRecord, b: EvaluationRecord) -> bool:
    return (a.score, a.value, a.text) == (b.score, b.value, b.text)


def _evaluation(attribute: _Attribute, value: str, segment: str, row: int) -> EvaluationRecord:
    """The evaluation an attribute cell gives (checked as read_evaluations_csv checks a row)."""
    entry = attribute.entry
    if entry is not None:
        try:
            score, code = entry.lookup(value)
        except InputError as error:
            raise _RowError(f"{attribute.header}: {error.problem}") from None
        return EvaluationRecord(segment, entry.code, entry.name, code, None, score, row)
    concept = None
    text = attribute.concept_text
    if text.startswith("(") and text.endswith(")"):
        concept = _code_cell(text, f"attribute {attribute.header!r}")
    coded = None
    if value.startswith("(") and value.endswith(")") and "," in value:
        coded = _code_cell(value, f"{attribute.header} value")
    return EvaluationRecord(segment, concept, concept.meaning if concept else text, coded,
                            None if coded is not None else value, None, row)



def _build(result: TableConversion, findings: List[_Finding], header: _Header, series: ReferenceSeries,
           progress: Optional[ProgressCallback]) -> None:
    geometry = series.geometry
    names = _unique_names(findings)
    layers = _Layers()
    segments: List[Segment] = []
    used_markup_names: set = set()
    attributes_by_header = {a.header: a for a in header.attributes}
    total = len(findings)
    if progress is not None:
        progress(0, total, "Rasterising findings")
    for done, finding in enumerate(findings, 1):
        name = names[finding.id]
        color = _color(finding.fields["color"][0]) if "color" in finding.fields else _default_color(done - 1)
        planes = _merged_planes(finding.pieces)
        segment_id = None
        voxels = 0
        if planes:
            layer, value = layers.add(planes)
            voxels = sum(int(mask.sum()) for _, _, mask in planes.values())
            segment = Segment(id=finding.id, name=name, color=color, terminology=_terminology(finding),
                              description=finding.fields.get("description", ("", 0))[0], layer=layer,
                              label_value=value,
                              attributes={"TrackingIdentifier": finding.id[:64],
                                          "TrackingUniqueIdentifier": generate_uid()})
            segments.append(segment)
            segment_id = segment.id
        elif finding.pieces and any(p.include for p in finding.pieces):
            result.warnings.append(RowProblem(finding.first_row, f"finding {finding.id!r} covers no pixel: no segment",
                                              finding.id))
        markups = _markups(finding, name, color, used_markup_names)
        result.markups.extend(markups)
        if segment_id is not None and len(finding.ellipses) == len(finding.pieces):
            result.ellipses.extend(_ellipse_markups(finding, name, color, used_markup_names, geometry))
        if finding.attributes:
            if segment_id is None:
                result.warnings.append(RowProblem(
                    finding.first_row, f"the attributes of finding {finding.id!r} are not written: it has no area "
                    "(SR evaluations belong to segments)", finding.id))
            else:
                for header_name, (value, row) in finding.attributes.items():
                    result.evaluations.append(_evaluation(attributes_by_header[header_name], value, segment_id, row))
        result.findings.append(FindingSummary(finding.id, finding.label, segment_id, [m.name for m in markups],
                                              finding.rows, voxels))
        if progress is not None:
            progress(done, total, "Rasterising findings")
    stacked = layers.volume(geometry.shape)
    result.segmentation = Segmentation(geometry, stacked, segments)



def _terminology(finding: _Finding) -> Optional[Terminology]:
    fields = finding.fields
    category = _code_cell(fields["category_code"][0], "category_code") if "category_code" in fields else None
    type_ = _code_cell(fields["type_code"][0], "type_code") if "type_code" in fields else None
    region = _code_cell(fields["region_code"][0], "region_code") if "region_code" in fields else None
    if category is None and type_ is None:
        if region is not None:
            log.warning("finding %r: region_code without category_code and type_code is not used", finding.id)
        return None
    if category is None or type_ is None:
        log.warning("finding %r: category_code and type_code go together; the one given is not used", finding.id)
        return None
    return Terminology(category, type_, anatomic_region=region)


__all__ = ["AREA_SHAPES", "COLUMN_ALIASES", "FindingSummary", "RowProblem", "SHAPES", "TableConversion",
           "read_annotation_table"]
