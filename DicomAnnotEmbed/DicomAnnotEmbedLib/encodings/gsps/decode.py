"""Presentation states (ours and others') back into markups in LPS.

Each graphic of each Graphic Annotation item is placed on the plane of the image (and frame) it
references, through the series' grid (``column = i + 0.5``, ``row = j + 0.5``):

* POLYLINE and INTERPOLATED: a closed curve when closed (first point = last), a line when of two
  points, else a curve; ELLIPSE: a closed curve marked as an ellipse (:mod:`core.ellipses`) whose 4
  control points are the graphic's 4 points (the ends of the major, then of the minor axis), so
  that it is written back as the same ELLIPSE; CIRCLE: the same, with the ends of the axes along
  the columns and along the rows; an ELLIPSE whose axes are not perpendicular or do not cross at
  their middles: a closed curve of 32 points (reported); POINTs of one layer: one point list;
* a text object anchored (PIXEL units) in the same item names the graphic whose vertex is nearest
  to its anchor (its text up to the first ": ", which our export puts before the measurement);
* graphics in DISPLAY units, texts without anchors, references to images outside the series and
  other graphic types are reported, not converted.

For our own presentation states (Manufacturer "DicomAnnotEmbed"), layer names say the markup kind
(``LINE 1``, ``ANGLE 2``, ...) and descriptions its name: each markup comes back with its kind,
name and colour; the pieces of a line, angle or curve that crossed slices are chained back into it
(:func:`_rejoin`), every control point on its own slice. Pieces that do not chain (cut at the image
border), ROI and plane sections and segment outlines come back as parts ("<name> part N").
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ...core.ellipses import ELLIPSE, is_ellipse
from ...core.errors import InputError
from ...core.headers import header_floats
from ...core.inputs import check_sequences, open_bounded, reading
from ...core.model import Markup
from ...core.progress import ProgressCallback, track
from ...core.series import ReferenceSeries, load_series
from ...dicom.colors import dicom_lab_to_rgb
from .common import MANUFACTURER, PRESENTATION_STATE_CLASSES, GspsImport, kind_of_layer, pixel_to_ij

log = logging.getLogger(__name__)

#: Vertices of the closed curve that stands for a CIRCLE or an ELLIPSE.
ELLIPSE_POINTS = 32
_DEFAULT_COLOUR = (1.0, 1.0, 0.0)


def _read(path) -> pydicom.Dataset:
    try:
        with open_bounded(path) as stream:  # reads bounded by the file size (a broken length)
            ds = pydicom.dcmread(stream)
        check_sequences(ds, path)  # a sequence a corrupted VR turned into text: named here
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable DICOM file ({exc})", path) from None
    uid = str(ds.get("SOPClassUID", ""))
    if uid not in PRESENTATION_STATE_CLASSES:
        raise InputError(f"not a presentation state (SOP Class {uid or 'missing'}, "
                         f"modality {ds.get('Modality', '?')})", path)
    return ds


def _ellipse(center: np.ndarray, axis1: np.ndarray, axis2: np.ndarray) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
    return center + np.cos(t)[:, None] * axis1 + np.sin(t)[:, None] * axis2


def _shape_of(graphic_type: str, cr: np.ndarray) -> Optional[Tuple[str, np.ndarray]]:
    """(markup kind, (N, 2) column-row vertices) of one graphic object, None when not convertible;
    kind "ellipse" for a closed curve marked as an ellipse (its 4 axis ends)."""
    if graphic_type == "POINT" and len(cr) >= 1:
        return "point_list", cr
    if graphic_type in ("POLYLINE", "INTERPOLATED") and len(cr) >= 1:
        if len(cr) >= 4 and np.allclose(cr[0], cr[-1], atol=1e-6):
            return "closed_curve", cr[:-1]
        if len(cr) == 1:
            return "point_list", cr
        return ("line" if len(cr) == 2 else "curve"), cr
    if graphic_type == "CIRCLE" and len(cr) == 2 and np.linalg.norm(cr[1] - cr[0]) > 0:
        radius = np.linalg.norm(cr[1] - cr[0])
        return "ellipse", cr[0] + np.array([[-radius, 0.0], [radius, 0.0], [0.0, -radius], [0.0, radius]])
    if graphic_type == "ELLIPSE" and len(cr) == 4 and is_ellipse(cr):
        return "ellipse", cr
    if graphic_type == "ELLIPSE" and len(cr) == 4:
        center = (cr[0] + cr[1]) / 2.0
        return "closed_curve", _ellipse(center, cr[1] - center, cr[3] - (cr[2] + cr[3]) / 2.0)
    return None


def import_gsps(gsps_file: Union[str, os.PathLike], series: Union[ReferenceSeries, str, os.PathLike], *,
                series_uid: Optional[str] = None, progress: Optional[ProgressCallback] = None) -> GspsImport:
    """Read the graphic annotations of a presentation state into markups (LPS) on the planes of
    the images of ``series`` (a :class:`ReferenceSeries` or a folder) that it references.

    Raises:
        InputError: not a readable presentation state, or none of its annotated images is in the series.
    """
    with reading(gsps_file, "presentation state"):
        ds = _read(gsps_file)
    reference = series if isinstance(series, ReferenceSeries) else load_series(series, series_uid, progress)
    with reading(gsps_file, "presentation state"):
        return _convert(ds, reference, gsps_file, progress)


def _convert(ds: pydicom.Dataset, reference: ReferenceSeries, gsps_file, progress) -> GspsImport:
    geometry = reference.geometry
    where = {(s.sop_instance_uid, s.frame): k for k, s in enumerate(reference.slices)}
    frames_of: Dict[str, List[int]] = defaultdict(list)
    for s in reference.slices:
        frames_of[s.sop_instance_uid].append(s.frame)
    ours = str(ds.get("Manufacturer", "")) == MANUFACTURER
    result = GspsImport(markups=[], ours=ours)
    for voi in ds.get("SoftcopyVOILUTSequence", [])[:1]:
        try:  # a window is only shown: one that is not numbers is left out, with a warning
            centre, width = (header_floats(voi, name, path=gsps_file) for name in ("WindowCenter", "WindowWidth"))
        except InputError as exc:
            log.warning("%s: the window is not read: %s", gsps_file, exc.problem)
            centre = width = None
        if centre and width:
            result.window = (centre[0], width[0])

    layers = {str(item.get("GraphicLayer", "")): item for item in ds.get("GraphicLayerSequence", [])}
    # layer -> [(k, kind, (N, 2) cr, name or None)]
    shapes: Dict[str, List[List]] = defaultdict(list)
    layer_order: List[str] = []
    annotations = ds.get("GraphicAnnotationSequence", [])
    if not annotations:
        raise InputError("the presentation state holds no graphic annotations", gsps_file)
    for number, item in enumerate(track(annotations, progress, "Reading graphic annotations"), start=1):
        layer = str(item.get("GraphicLayer", ""))
        if layer not in layer_order:
            layer_order.append(layer)
        slices = []
        for ref in item.get("ReferencedImageSequence", []):
            uid = str(ref.get("ReferencedSOPInstanceUID", ""))
            frames = ref.get("ReferencedFrameNumber")
            try:
                frames = [int(f) - 1 for f in (frames if isinstance(frames, pydicom.multival.MultiValue)
                                               else [frames])] if frames not in (None, "") else frames_of.get(uid, [])
            except (TypeError, ValueError):  # a VR corrupted into text or bytes
                result.report.append(f"annotation {number} (layer {layer}): Referenced Frame Number "
                                     f"{str(frames)[:40]!r} is not frame numbers")
                continue
            found = [where[(uid, f)] for f in frames if (uid, f) in where]
            if not found:
                result.report.append(f"annotation {number} (layer {layer}): image {uid} is not in the series")
            slices.extend(found)
        if not slices:
            continue
        placed = []  # graphics of this item: [(kind, cr)]
        for graphic in item.get("GraphicObjectSequence", []):
            units = str(graphic.get("GraphicAnnotationUnits", ""))
            graphic_type = str(graphic.get("GraphicType", ""))
            if units != "PIXEL":
                result.report.append(f"annotation {number} (layer {layer}): {graphic_type} in {units} units")
                continue
            try:  # a Graphic Data a corrupted VR turned into bytes or text: reported like other bad graphics
                data = np.asarray(header_floats(graphic, "GraphicData", path=gsps_file) or [], dtype=float).ravel()
            except InputError as exc:
                result.report.append(f"annotation {number} (layer {layer}): {graphic_type}: {exc.problem}")
                continue
            if len(data) == 0 or len(data) % 2 or not np.all(np.isfinite(data)):
                result.report.append(f"annotation {number} (layer {layer}): {graphic_type} with "
                                     f"{len(data)} coordinate values, not (column, row) pairs")
                continue
            cr = data.reshape(-1, 2)
            shape = _shape_of(graphic_type, cr)
            if shape is None:
                result.report.append(f"annotation {number} (layer {layer}): {graphic_type} of {len(cr)} points")
                continue
            if graphic_type == "ELLIPSE" and shape[0] != "ellipse":
                result.report.append(f"annotation {number} (layer {layer}): an ELLIPSE whose axes are not "
                                     f"perpendicular or do not cross at their middles: a closed curve of {len(shape[1])} "
                                     "points")
            placed.append([shape[0], shape[1], None])
        for text in item.get("TextObjectSequence", None) or []:
            value = str(text.get("UnformattedTextValue", "")).strip()
            anchor = text.get("AnchorPoint")
            if anchor is None or str(text.get("AnchorPointAnnotationUnits", "")) != "PIXEL" or not placed:
                result.report.append(f"annotation {number} (layer {layer}): text {value!r} is anchored to no graphic")
                continue
            anchor = np.asarray(anchor, dtype=float).ravel()
            if anchor.shape != (2,) or not np.all(np.isfinite(anchor)):
                result.report.append(f"annotation {number} (layer {layer}): text {value!r} has a broken anchor")
                continue
            nearest = min(placed, key=lambda p: float(np.min(np.linalg.norm(p[1] - anchor, axis=1))))
            nearest[2] = value.split(": ")[0] if ours else value
        for k in slices:
            shapes[layer].extend([k, kind, cr, name] for kind, cr, name in placed)

    for layer in layer_order:
        items = shapes.get(layer)
        if items:
            result.markups.extend(_layer_markups(layer, layers.get(layer), items, geometry, ours, result.report))
    if not result.markups and annotations:
        raise InputError("none of its graphics could be placed on the series "
                         f"({'; '.join(result.report[:3]) or 'no graphics'})", gsps_file)
    for line in result.report:
        log.warning("%s: %s", gsps_file, line)
    return result


def _layer_markups(layer: str, layer_item, items: List[List], geometry, ours: bool,
                   report: List[str]) -> List[Markup]:
    """The markups of one layer's graphics ([k, kind, cr, name])."""
    description = str(layer_item.get("GraphicLayerDescription", "")) if layer_item is not None else ""
    base = description or layer
    colour = _DEFAULT_COLOUR
    if layer_item is not None and layer_item.get("GraphicLayerRecommendedDisplayCIELabValue") is not None:
        colour = tuple(float(v) for v in dicom_lab_to_rgb(layer_item.GraphicLayerRecommendedDisplayCIELabValue))
    written_kind = kind_of_layer(layer) if ours else None

    def lps(k: int, cr: np.ndarray) -> np.ndarray:
        ij = pixel_to_ij(cr)
        return geometry.ijk_to_lps_points(np.column_stack([ij, np.full(len(ij), float(k))]))

    markups: List[Markup] = []
    points = [(k, cr, name) for k, kind, cr, name in items if kind == "point_list"]
    if points:
        labels = [name or f"{base}-{n + 1}" for n, (_, cr, name) in enumerate(points) for _ in cr]
        markups.append(Markup("point_list", base, np.vstack([lps(k, cr) for k, cr, _ in points]),
                              point_labels=labels, color=colour))
    others = [item for item in items if item[1] != "point_list"]
    if written_kind in _MINIMUM_POINTS and len(others) > 1:
        chain = _rejoin(others, closed=written_kind == "closed_curve")
        if chain is not None and (len(chain) == _MINIMUM_POINTS[written_kind] if written_kind in ("line", "angle")
                                  else len(chain) >= _MINIMUM_POINTS[written_kind]):
            points_lps = np.vstack([lps(k, v[None]) for k, v in chain])
            return markups + [Markup(written_kind, base, points_lps, color=colour)]
    for n, (k, kind, cr, name) in enumerate(others, start=1):
        if len(others) == 1 and kind not in ("closed_curve", "ellipse") and (
                (written_kind == "line" and len(cr) == 2) or (written_kind == "angle" and len(cr) == 3)
                or written_kind == "curve"):
            kind = written_kind  # our single-slice line, angle or curve: its kind back
        if kind == "closed_curve" and len(cr) < 3:
            kind = "curve"
        if ours:
            label = base if len(others) == 1 else f"{base} part {n}"
        else:
            label = name or (base if len(others) == 1 else f"{base} {n}")
        if kind == "ellipse":  # its 4 axis ends on the image's plane, marked
            markups.append(Markup("closed_curve", label, lps(k, cr), color=colour, shape=ELLIPSE))
        else:
            markups.append(Markup(kind, label, lps(k, cr), color=colour))
    if ours and written_kind in ("roi", "plane") and others:
        report.append(f"layer {layer} ({base!r}): the {written_kind}'s outline on each slice came back as closed curves")
    return markups


_MINIMUM_POINTS = {"line": 2, "angle": 3, "curve": 2, "closed_curve": 3}


def _rejoin(pieces: List[List], closed: bool) -> Optional[List[Tuple[int, np.ndarray]]]:
    """The control points ``[(k, (column, row))]`` of one of our polylines that crossed slices, from
    its pieces in file (= path) order: where one piece leaves its slab and the next enters the
    neighbouring one, both have the same (column, row), the slab boundary crossing; those pairs are
    dropped and what remains are the control points, each on its own slice (a closed curve's path
    ends on its first control point again). None when the pieces do not chain that way (a path
    that comes back to a slab, a part cut at the image border): the caller keeps them as parts.
    A control point exactly on a slab boundary looks like a crossing and is lost."""
    chain: List[Tuple[int, np.ndarray]] = []
    for k, kind, cr, _ in pieces:
        if kind in ("closed_curve", "ellipse"):
            return None
        if chain:
            last_k, last = chain[-1]
            if abs(k - last_k) != 1 or not np.allclose(last, cr[0], atol=1e-3):
                return None
            chain.pop()
            cr = cr[1:]
        chain.extend((k, v) for v in cr)
    if closed:  # the path ends at its first control point
        (first_k, first), (last_k, last) = chain[0], chain[-1]
        if first_k != last_k or not np.allclose(first, last, atol=1e-3):
            return None
        chain = chain[:-1]
    return chain
