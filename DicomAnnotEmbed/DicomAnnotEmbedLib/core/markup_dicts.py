"""Slicer markups JSON entries (one item of a ``.mrk.json`` "markups" list) <-> :class:`~.model.Markup`.

The conversion :mod:`..files.markups_io` uses to read and write whole files, kept here in core so
that encodings (the overlay private metadata) can store and restore markups without importing
files/. Every :class:`~.model.Markup` holds its coordinates in **LPS**; an entry may be in LPS
or RAS (its ``"coordinateSystem"``). The format details are in :mod:`..files.markups_io`.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np

from .ellipses import SHAPES
from .errors import InputError
from .model import Markup

log = logging.getLogger(__name__)

#: Schema identifier Slicer writes (kept at "master" by Slicer for compatibility with Slicer < 5.1).
MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                  "Resources/Schema/markups-schema-v1.0.3.json#")

#: Slicer markups type name -> :class:`Markup` kind.
SLICER_TYPES: Dict[str, str] = {
    "Fiducial": "point_list", "Line": "line", "Angle": "angle", "Curve": "curve",
    "ClosedCurve": "closed_curve", "Plane": "plane", "ROI": "roi",
}
_KIND_TO_TYPE = {kind: name for name, kind in SLICER_TYPES.items()}
#: Entry key of ``Markup.shape`` (a closed curve that stands for an ellipse, :mod:`.ellipses`).
#: Slicer's schema allows further keys in an entry (``"additionalProperties": true``) and its
#: reader (vtkMRMLMarkupsJsonStorageNode) reads only the keys it knows, so Slicer loads the curve
#: and ignores the mark (checked against Slicer's source, Modules/Loadable/Markups).
SHAPE_KEY = "dicomAnnotEmbedShape"

# RAS <-> LPS flip, for points (3) and for the left side of axis matrices (3x3, 4x4).
_FLIP3 = np.diag([-1.0, -1.0, 1.0])
_FLIP4 = np.diag([-1.0, -1.0, 1.0, 1.0])

def markup_from_dict(data: Any, source: os.PathLike | str = "markup", name: str = "Markup") -> Markup:
    """Parse one entry of a ``.mrk.json`` "markups" list (already decoded JSON), as
    :func:`read_markups` does for each entry; the result is in **LPS**.

    Args:
        data: the entry (a dict), in LPS or RAS as its ``"coordinateSystem"`` says.
        source: where the entry comes from (a file), named in error messages.
        name: name to use when the entry has no ``"name"``.

    Raises:
        InputError: as :func:`read_markups`.
    """
    return _MarkupReader(source, None, name).read(data)


class _MarkupReader:
    """Parses one entry of the "markups" list; every error names the file and the markup."""

    def __init__(self, path: os.PathLike | str, index: Optional[int], default_name: str):
        self.path = path
        self.prefix = "markup" if index is None else f"markup {index + 1}"
        self.where = self.prefix
        self.name = default_name
        self.ras = False

    def fail(self, problem: str) -> InputError:
        return InputError(f"{self.where}: {problem}", self.path)

    # -- entry ---------------------------------------------------------------------------------
    def read(self, entry: Any) -> Markup:
        if not isinstance(entry, dict):
            raise self.fail(f"expected a JSON object, got {type(entry).__name__}")
        if isinstance(entry.get("name"), str) and entry["name"]:
            self.name = entry["name"]
        self.where = f"{self.prefix} ({self.name!r})"
        slicer_type = entry.get("type")
        if not isinstance(slicer_type, str) or slicer_type not in SLICER_TYPES:
            raise self.fail(f"unknown markups type {slicer_type!r}; supported: {', '.join(SLICER_TYPES)}")
        kind = SLICER_TYPES[slicer_type]
        system = entry.get("coordinateSystem", "LPS")
        if not isinstance(system, str) or system not in ("LPS", "RAS"):
            raise self.fail(f'coordinateSystem must be "LPS" or "RAS", got {system!r}')
        units = entry.get("coordinateUnits", "mm")
        if isinstance(units, dict):  # Slicer also accepts a UCUM coded entry
            units = units.get("CodeValue", units.get("codeValue", "mm"))
        if not isinstance(units, str) or units != "mm":
            raise self.fail(f"coordinates are in {units!r}; only millimetres (mm) are supported")
        self.ras = system == "RAS"

        points, labels, all_selected = self.control_points(entry.get("controlPoints", []))
        fields: Dict[str, Any] = {}
        if kind == "roi":
            fields = self.roi(entry, points)
        elif kind == "plane":
            fields = self.plane(entry, points)
        description = entry.get("description", "")
        shape = entry.get(SHAPE_KEY)
        if shape is not None and (kind != "closed_curve" or shape not in SHAPES):
            log.warning("%s: %s: %s %r is not a shape of a %s; ignored", self.path, self.where, SHAPE_KEY, shape,
                        slicer_type)
            shape = None
        try:
            return Markup(kind=kind, name=self.name, points_lps=points, point_labels=labels,
                          color=self.color(entry.get("display"), all_selected),
                          description=description if isinstance(description, str) else "", shape=shape, **fields)
        except InputError as error:
            raise InputError(error.problem, self.path) from None

    # -- pieces --------------------------------------------------------------------------------
    def control_points(self, items: Any):
        """Placed control points in LPS, their labels, and whether all are selected."""
        if not isinstance(items, list):
            raise self.fail('"controlPoints" must be a list')
        points, labels, all_selected = [], [], True
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise self.fail(f"control point {number}: expected a JSON object")
            label = item.get("label")
            what = f"control point {number}" + (f" ({label!r})" if label else "")
            status = item.get("positionStatus", "defined")
            if status not in ("defined", "preview", "undefined"):
                raise self.fail(f"{what}: invalid positionStatus {status!r}")
            if status != "defined" or item.get("position", "") == "":
                # Not placed (Slicer writes "position": ""): there is nothing to draw.
                log.warning("%s: %s: %s is not placed and is skipped", self.path, self.where, what)
                continue
            points.append(self.to_lps(self.vector(item.get("position"), 3, f"{what}: position")))
            labels.append(str(label) if label is not None else f"{self.name}-{len(points)}")
            all_selected = all_selected and item.get("selected", True) is not False
        return np.array(points, dtype=float).reshape(-1, 3), labels, all_selected

    def color(self, display: Any, all_selected: bool):
        # Slicer draws with selectedColor while all points are selected (its default state).
        default = (1.0, 0.5, 0.5)
        if not isinstance(display, dict):
            return default
        keys = ("selectedColor", "color") if all_selected else ("color", "selectedColor")
        for key in keys:
            if key in display:
                rgb = self.vector(display[key], 3, f"display {key}")
                return tuple(float(min(max(c, 0.0), 1.0)) for c in rgb)
        return default

    def roi(self, entry: dict, points: np.ndarray) -> Dict[str, Any]:
        roi_type = entry.get("roiType", "Box")
        if roi_type not in ("Box", "BoundingBox"):
            raise self.fail(f"unknown roiType {roi_type!r}")
        if "center" in entry:
            center = self.to_lps(self.vector(entry["center"], 3, "ROI center"))
        elif len(points):
            center = points[0]
        else:
            raise self.fail('an ROI needs a "center" or a control point')
        if "size" not in entry:
            raise self.fail('an ROI needs a "size"')
        size = self.vector(entry["size"], 3, "ROI size")
        if np.any(size < 0):
            raise self.fail(f"ROI size must not be negative, got {size.tolist()}")
        axes = self.axes_to_lps(self.matrix(entry["orientation"], 3, "ROI orientation")) \
            if "orientation" in entry else np.eye(3)
        return {"roi_center_lps": center, "roi_size": size, "roi_axes_lps": axes}

    def plane(self, entry: dict, points: np.ndarray) -> Dict[str, Any]:
        """Rectangle of a plane: object_to_node (RAS) and bounds, then centre/axes/size in LPS."""
        plane_type = entry.get("planeType", "threePoints" if len(points) >= 3 else "pointNormal")
        if plane_type not in ("pointNormal", "threePoints", "planeFit"):
            raise self.fail(f"unknown planeType {plane_type!r}")
        points_ras = points @ _FLIP3  # the flip is its own inverse and symmetric
        base_to_node = np.eye(4)
        if plane_type == "threePoints" and len(points) >= 3:
            try:
                base_to_node[:3, :3] = _axes_from_three_points(points_ras[:3])
            except ValueError:
                raise self.fail("the 3 control points of a threePoints plane are collinear") from None
            base_to_node[:3, 3] = points_ras[0]
        elif "baseToNode" in entry:
            base_to_node = self.matrix_to_ras(self.matrix(entry["baseToNode"], 4, "plane baseToNode"))
        elif "orientation" in entry:
            base_to_node[:3, :3] = _FLIP3 @ self.axes_to_lps(self.matrix(entry["orientation"], 3, "plane orientation"))
        elif "normal" in entry:
            normal_ras = _FLIP3 @ self.to_lps(self.vector(entry["normal"], 3, "plane normal"))
            try:
                base_to_node[:3, :3] = _axes_from_normal(normal_ras)
            except ValueError:
                raise self.fail("plane normal is a zero vector") from None
        if plane_type != "threePoints" or len(points) < 3:
            # pointNormal (and fit) planes: the first control point is the origin.
            if len(points):
                base_to_node[:3, 3] = points_ras[0]
            elif "center" in entry:
                base_to_node[:3, 3] = _FLIP3 @ self.to_lps(self.vector(entry["center"], 3, "plane center"))
            else:
                raise self.fail('a plane needs a control point or a "center"')
        object_to_base = self.matrix_to_ras(self.matrix(entry["objectToBase"], 4, "plane objectToBase")) \
            if "objectToBase" in entry else np.eye(4)
        object_to_node = base_to_node @ object_to_base

        if "planeBounds" in entry:
            bounds = self.vector(entry["planeBounds"], 4, "plane planeBounds")
        elif "size" in entry:
            n = len(entry["size"]) if isinstance(entry["size"], list) and len(entry["size"]) == 2 else 3
            size = self.vector(entry["size"], n, "plane size")
            bounds = np.array([-size[0], size[0], -size[1], size[1]]) / 2.0
        else:
            # Slicer's auto size: the rectangle just reaches the farthest control point.
            factor = entry.get("autoScalingFactor", entry.get("autoScalingSizeFactor", 1.0))
            factor = float(factor) if isinstance(factor, (int, float)) and not isinstance(factor, bool) else 1.0
            local = (points_ras - base_to_node[:3, 3]) @ base_to_node[:3, :3] if len(points) else np.zeros((1, 3))
            half = np.abs(local[:, :2]).max(axis=0) * factor
            bounds = np.array([-half[0], half[0], -half[1], half[1]])
        x0, x1 = sorted(bounds[:2])
        y0, y1 = sorted(bounds[2:])

        center_ras = object_to_node @ np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0, 0.0, 1.0])
        axes_ras = object_to_node[:3, :3]
        scale = np.linalg.norm(axes_ras, axis=0)
        if np.any(scale < 1e-12):
            raise self.fail("plane orientation matrix is singular")
        return {"roi_center_lps": _FLIP3 @ center_ras[:3],
                "roi_size": np.array([(x1 - x0) * scale[0], (y1 - y0) * scale[1], 0.0]),
                "roi_axes_lps": _FLIP3 @ (axes_ras / scale)}

    # -- numbers -------------------------------------------------------------------------------
    def vector(self, value: Any, n: int, what: str) -> np.ndarray:
        if not isinstance(value, list) or len(value) != n or not all(_is_number(v) for v in value):
            raise self.fail(f"{what} must be a list of {n} numbers, got {_short(value)}")
        vector = np.array(value, dtype=float)
        if not np.all(np.isfinite(vector)):
            raise self.fail(f"{what} must be finite, got {_short(value)}")
        return vector

    def matrix(self, value: Any, n: int, what: str) -> np.ndarray:
        return self.vector(value, n * n, f"{what} ({n}x{n} row-major)").reshape(n, n)

    def to_lps(self, point: np.ndarray) -> np.ndarray:
        return _FLIP3 @ point if self.ras else point

    def axes_to_lps(self, axes: np.ndarray) -> np.ndarray:
        """3x3 with axes as columns, file system -> LPS."""
        return _FLIP3 @ axes if self.ras else axes

    def matrix_to_ras(self, matrix: np.ndarray) -> np.ndarray:
        """A plane 4x4 as Slicer holds it in memory (RAS): LPS files have rows 0-1 negated."""
        return matrix if self.ras else _FLIP4 @ matrix


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _axes_from_three_points(points: np.ndarray) -> np.ndarray:
    """Slicer's CalculateAxesFromPoints: x towards point 1, normal = x cross (point 2 - point 0)."""
    x = _unit(points[1] - points[0])
    z = _unit(np.cross(x, points[2] - points[0]))
    return np.column_stack([x, np.cross(z, x), z])


def _axes_from_normal(normal: np.ndarray) -> np.ndarray:
    """Right-handed axes whose third column is ``normal`` (in-plane rotation is arbitrary)."""
    z = _unit(normal)
    helper = np.eye(3)[int(np.argmin(np.abs(z)))]
    x = _unit(np.cross(helper, z))
    return np.column_stack([x, np.cross(z, x), z])


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if norm < 1e-12:
        raise ValueError("zero-length vector")
    return v / norm


def markup_to_dict(markup: Markup, coordinate_system: str = "LPS") -> dict:
    """One entry of a ``.mrk.json`` "markups" list (JSON-serialisable), as :func:`write_markups`
    writes it.

    Args:
        markup: the shape, coordinates in **LPS**.
        coordinate_system: ``"LPS"`` or ``"RAS"``: the system of the coordinates in the result.

    Raises:
        InputError: a bad coordinate system, or ROI/plane axes that are not orthonormal.
    """
    ras = _system(coordinate_system) == "RAS"

    def point(p_lps: np.ndarray) -> List[float]:
        return _floats(_FLIP3 @ p_lps if ras else p_lps)

    def axes(a_lps: np.ndarray) -> List[float]:
        return _floats((_FLIP3 @ a_lps if ras else a_lps).reshape(9))  # row-major, columns = axes

    kind = markup.kind
    if kind in ("roi", "plane"):
        _check_orthonormal(markup)
        positions = [markup.roi_center_lps]
        labels = [markup.point_labels[0] if markup.point_labels else f"{markup.name}-1"]
    else:
        positions = list(markup.points_lps)
        labels = list(markup.point_labels)
    # A control point's own orientation: identity in RAS, which Slicer writes as diag(-1,-1,1) in LPS.
    point_orientation = _floats(np.eye(3).reshape(9) if ras else _FLIP3.reshape(9))
    color = _floats(markup.color)
    entry: Dict[str, Any] = {
        "type": _KIND_TO_TYPE[kind],
        "coordinateSystem": "RAS" if ras else "LPS",
        "coordinateUnits": "mm",
        "name": markup.name,
        "description": markup.description,
        "locked": False,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(positions),
    }
    if kind == "roi":
        entry.update({"roiType": "Box", "center": point(markup.roi_center_lps),
                      "orientation": axes(markup.roi_axes_lps), "size": _floats(markup.roi_size),
                      "insideOut": False})
    elif kind == "plane":
        entry.update(_plane_json(markup, ras))
    entry["controlPoints"] = [
        {"id": str(n + 1), "label": label, "description": "", "associatedNodeID": "",
         "position": point(p), "orientation": point_orientation,
         "selected": True, "locked": False, "visibility": True, "positionStatus": "defined"}
        for n, (p, label) in enumerate(zip(positions, labels))]
    if markup.shape is not None:
        entry[SHAPE_KEY] = markup.shape
    entry["measurements"] = []
    entry["display"] = {"visibility": True, "opacity": 1.0, "color": color, "selectedColor": color}
    return entry


def _system(coordinate_system: str) -> str:
    system = str(coordinate_system).upper()
    if system not in ("LPS", "RAS"):
        raise InputError(f'coordinate system must be "LPS" or "RAS", got {coordinate_system!r}')
    return system


def _plane_json(markup: Markup, ras: bool) -> dict:
    """Plane fields as Slicer writes them (Slicer's reader uses the control point, baseToNode,
    objectToBase and planeBounds; center, normal, orientation and size are informative)."""
    width, height = float(markup.roi_size[0]), float(markup.roi_size[1])
    axes_lps = markup.roi_axes_lps
    base_to_node_lps = np.eye(4)
    base_to_node_lps[:3, :3] = axes_lps
    base_to_node_lps[:3, 3] = markup.roi_center_lps
    # In memory Slicer holds RAS matrices; LPS files negate rows 0-1 of both matrices.
    base_to_node = _FLIP4 @ base_to_node_lps if ras else base_to_node_lps
    object_to_base = np.eye(4) if ras else _FLIP4
    axes_file = _FLIP3 @ axes_lps if ras else axes_lps
    center_file = _FLIP3 @ markup.roi_center_lps if ras else markup.roi_center_lps
    return {
        "planeType": "pointNormal",
        "sizeMode": "absolute",
        "autoScalingFactor": 1.0,
        "center": _floats(center_file),
        "normal": _floats(axes_file[:, 2]),
        "objectToBase": _floats(object_to_base.reshape(16)),
        "baseToNode": _floats(base_to_node.reshape(16)),
        "orientation": _floats(axes_file.reshape(9)),
        "size": [width, height, 0.0],
        "planeBounds": [-width / 2.0, width / 2.0, -height / 2.0, height / 2.0],
    }


def _check_orthonormal(markup: Markup) -> None:
    axes = markup.roi_axes_lps
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-6):
        raise InputError(f"markup {markup.name!r}: {markup.kind} axes must be orthonormal to be "
                         f"written for Slicer, got {axes.tolist()}")


def _floats(values) -> List[float]:
    # 0.0 instead of -0.0 keeps files tidy; float() of a numpy scalar round-trips exactly.
    return [float(v) + 0.0 for v in np.asarray(values, dtype=float).ravel()]



__all__ = ["markup_from_dict", "markup_to_dict", "SLICER_TYPES", "MARKUPS_SCHEMA", "SHAPE_KEY"]
