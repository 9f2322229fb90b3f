"""The in-memory model shared by every encoder and decoder.

An :class:`AnnotationSet` holds a reference grid, a :class:`Segmentation` (segments stored
as Slicer does: label values in one or more layers, so that overlapping segments are
possible) and a list of :class:`Markup` shapes with control points in **LPS**.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from collections.abc import MutableMapping
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .ellipses import SHAPES as _SHAPES
from .errors import GeometryError, InputError
from .geometry import VolumeGeometry, resample_nearest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Code:
    """A coded concept: (code value, coding scheme designator, code meaning)."""

    value: str
    scheme: str
    meaning: str

    def __post_init__(self):
        if not self.value or not self.scheme:
            raise InputError(f"a code needs a value and a coding scheme, got {self!r}")

    @classmethod
    def from_slicer(cls, parts: Sequence[str]) -> Optional["Code"]:
        """From slicerio's ``[scheme, value, meaning]`` list; None when empty."""
        parts = list(parts) + ["", "", ""]
        scheme, value, meaning = parts[0], parts[1], parts[2]
        return cls(value, scheme, meaning) if value and scheme else None

    def to_slicer(self) -> List[str]:
        return [self.scheme, self.value, self.meaning]

    def __str__(self) -> str:
        return f"({self.value}, {self.scheme}, \"{self.meaning}\")"


@dataclass(frozen=True)
class Terminology:
    """Coded meaning of a segment, as in Slicer's terminology entry and DICOM SEG's
    Segment Description macro."""

    category: Code
    type: Code
    type_modifier: Optional[Code] = None
    anatomic_region: Optional[Code] = None
    anatomic_region_modifier: Optional[Code] = None
    context_name: str = "Segmentation category and type - DICOM master list"
    anatomic_context_name: str = "Anatomic codes - DICOM master list"

    @classmethod
    def from_slicerio(cls, entry: Optional[dict]) -> Optional["Terminology"]:
        """From slicerio's terminology dict (or None)."""
        if not entry:
            return None
        category = Code.from_slicer(entry.get("category", []))
        type_ = Code.from_slicer(entry.get("type", []))
        if category is None or type_ is None:
            return None
        return cls(
            category=category, type=type_,
            type_modifier=Code.from_slicer(entry.get("typeModifier", [])),
            anatomic_region=Code.from_slicer(entry.get("anatomicRegion", [])),
            anatomic_region_modifier=Code.from_slicer(entry.get("anatomicRegionModifier", [])),
            context_name=entry.get("contextName") or cls.context_name,
            anatomic_context_name=entry.get("anatomicContextName") or cls.anatomic_context_name,
        )

    def to_slicerio(self) -> dict:
        entry = {"contextName": self.context_name, "category": self.category.to_slicer(),
                 "type": self.type.to_slicer(), "anatomicContextName": self.anatomic_context_name}
        for key, code in (("typeModifier", self.type_modifier), ("anatomicRegion", self.anatomic_region),
                          ("anatomicRegionModifier", self.anatomic_region_modifier)):
            if code is not None:
                entry[key] = code.to_slicer()
        return entry

    @classmethod
    def from_slicer_string(cls, text: str) -> Optional["Terminology"]:
        """From Slicer's ``TerminologyEntry`` tag string."""
        import slicerio

        try:
            return cls.from_slicerio(slicerio.segmentation.terminology_entry_from_string(text))
        except (IndexError, ValueError):
            return None

    def to_slicer_string(self) -> str:
        import slicerio

        return slicerio.segmentation.terminology_entry_to_string(self.to_slicerio())

    def short_text(self) -> str:
        """Human summary, e.g. 'Lung, Right (SCT 39607008)'."""
        text = self.type.meaning
        if self.type_modifier:
            text += f", {self.type_modifier.meaning}"
        text += f" ({self.type.scheme} {self.type.value})"
        if self.anatomic_region:
            text += f" in {self.anatomic_region.meaning}"
        return text


#: Meaning given to segments that come with no codes (a stated default; callers warn).
DEFAULT_TERMINOLOGY = Terminology(
    category=Code("85756007", "SCT", "Tissue"), type=Code("85756007", "SCT", "Tissue"))


@dataclass
class Segment:
    """One segment. Its voxels are ``layers[layer] == label_value`` of the owning
    :class:`Segmentation`.

    Attributes:
        id: unique identifier within the segmentation (Slicer segment ID).
        name: display name (Slicer segment name, DICOM Segment Label).
        color: RGB in [0, 1].
        terminology: coded meaning, or None when unknown.
        description: free text (DICOM Segment Description).
        layer, label_value: where the voxels are stored.
        attributes: further key/value metadata that a writer may use (tracking ids, ...).
    """

    id: str
    name: str
    color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    terminology: Optional[Terminology] = None
    description: str = ""
    layer: int = 0
    label_value: int = 1
    attributes: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        color = tuple(float(c) for c in self.color)
        if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
            raise InputError(f"segment {self.name!r}: colour must be 3 values in [0, 1], got {self.color}")
        self.color = color
        if not 1 <= self.label_value <= MAX_LABEL_VALUE:
            raise InputError(f"segment {self.name!r}: label value must be 1..{MAX_LABEL_VALUE}, got {self.label_value}")

    @property
    def color_rgb8(self) -> Tuple[int, int, int]:
        return tuple(int(round(c * 255)) for c in self.color)


class FractionPlanes(MutableMapping):
    """{k: (J, I) float32 fraction plane} of one segment, each plane kept as its non-zero box.

    Read and written as full planes; a FRACTIONAL SEG of 20 segments over 12 % of a 512x512x200
    grid held 1.5 GB of full float32 planes, the boxes a small part of that (bench_seg.py notes).
    """

    def __init__(self, shape2d: Tuple[int, int], planes: Optional[Dict[int, np.ndarray]] = None):
        self.shape2d = (int(shape2d[0]), int(shape2d[1]))
        self._boxes: Dict[int, Tuple[int, int, np.ndarray]] = {}  # k -> (top row, left column, values)
        for k, plane in (planes or {}).items():
            self[k] = plane

    def __setitem__(self, k: int, plane: np.ndarray) -> None:
        plane = np.asarray(plane, dtype=np.float32)
        if plane.shape != self.shape2d:
            raise GeometryError(f"fraction plane {plane.shape} does not match the slice {self.shape2d}")
        rows = np.flatnonzero(plane.any(axis=1))
        if rows.size == 0:
            self._boxes[int(k)] = (0, 0, np.zeros((0, 0), np.float32))
            return
        columns = np.flatnonzero(plane[rows[0]:rows[-1] + 1].any(axis=0))
        top, left = int(rows[0]), int(columns[0])
        self._boxes[int(k)] = (top, left, plane[top:int(rows[-1]) + 1, left:int(columns[-1]) + 1].copy())

    def __getitem__(self, k: int) -> np.ndarray:
        top, left, values = self._boxes[k]
        plane = np.zeros(self.shape2d, np.float32)
        plane[top:top + values.shape[0], left:left + values.shape[1]] = values
        return plane

    def __delitem__(self, k: int) -> None:
        del self._boxes[k]

    def __iter__(self):
        return iter(self._boxes)

    def __len__(self) -> int:
        return len(self._boxes)

    def nonzero_slices(self) -> List[int]:
        """The slices with a non-zero fraction, without making their planes."""
        return [k for k, (_, _, values) in self._boxes.items() if values.any()]


#: Largest label value of a segment (a .seg.nrrd header may claim 2147483647): tables indexed by
#: label value are sized by the values the voxels hold, and never beyond this.
MAX_LABEL_VALUE = (1 << 24) - 1


class Segmentation:
    """Segments on one voxel grid, stored as Slicer stores them.

    Args:
        geometry: the grid (in LPS).
        layers: integer array (L, K, J, I); 0 is background.
        segments: the segments; each names its layer and label value.
    """

    def __init__(self, geometry: VolumeGeometry, layers: Optional[np.ndarray] = None,
                 segments: Optional[Iterable[Segment]] = None):
        self.geometry = geometry
        if layers is None:
            layers = np.zeros((0,) + geometry.shape, dtype=np.uint8)
        layers = np.asarray(layers)
        if layers.ndim == 3:
            layers = layers[np.newaxis]
        if layers.ndim != 4 or layers.shape[1:] != geometry.shape:
            raise GeometryError(f"segmentation layers {layers.shape} do not match the grid {geometry.shape}")
        if not np.issubdtype(layers.dtype, np.integer):
            raise InputError(f"segmentation layers must be integer labels, got {layers.dtype}")
        self.layers = layers
        #: Fractional (probability or occupancy) values, for DICOM SEG FRACTIONAL:
        #: {segment id: {slice k: (J, I) float32 in [0, 1]}} (a FractionPlanes or a dict), absent
        #: slices being 0. The layers still hold each such segment as its voxels with fraction >= 0.5.
        self.fractions: Dict[str, MutableMapping] = {}
        self.segments: List[Segment] = []
        for segment in segments or []:
            if not 0 <= segment.layer < layers.shape[0]:
                raise InputError(f"segment {segment.name!r} names layer {segment.layer}, "
                                 f"but there are {layers.shape[0]} layers")
            self._append(segment)

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_masks(cls, geometry: VolumeGeometry, masks: Sequence[np.ndarray],
                   segments: Sequence[Segment]) -> "Segmentation":
        """Build from one boolean mask (K, J, I) per segment; layer and label are assigned."""
        seg = cls(geometry)
        for mask, segment in zip(masks, segments):
            seg.add_segment(mask, segment)
        return seg

    @classmethod
    def from_label_map(cls, geometry: VolumeGeometry, labels: np.ndarray,
                       names: Optional[Dict[int, str]] = None) -> "Segmentation":
        """One segment per non-zero label value of a (K, J, I) label map."""
        labels = np.asarray(labels)
        if labels.shape != geometry.shape:
            raise GeometryError(f"label map {labels.shape} does not match the grid {geometry.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise InputError("label map has non-integer values; use a fractional import for probabilities")
            labels = labels.astype(np.int64)
        if labels.dtype.kind == "i" and labels.min(initial=0) < 0:
            raise InputError("label map has negative labels")
        values = present_labels(labels).tolist()
        if max(values, default=0) > 65535:
            raise InputError(f"label map has label value {max(values)}; at most 65535 is supported "
                             f"(DICOM SEG numbers segments with 16 bits)")
        dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
        segments = []
        for value in values:
            name = (names or {}).get(value, f"Segment_{value}")
            segments.append(Segment(id=f"Segment_{value}", name=name, label_value=value,
                                    color=_default_color(len(segments))))
        return cls(geometry, labels.astype(dtype, copy=False)[np.newaxis], segments)

    @classmethod
    def from_fractions(cls, geometry: VolumeGeometry, fractions: Sequence[np.ndarray],
                       segments: Sequence[Segment], threshold: float = 0.5) -> "Segmentation":
        """Build from one float volume (K, J, I) in [0, 1] per segment (probability or occupancy);
        each segment's voxels are those with a fraction >= ``threshold``.

        Raises:
            InputError: values outside [0, 1] or not finite (names the segment).
        """
        seg = cls(geometry)
        for volume, segment in zip(fractions, segments):
            volume = np.asarray(volume, dtype=np.float32)
            if volume.shape != geometry.shape:
                raise GeometryError(f"fractions of segment {segment.name!r} {volume.shape} do not match the grid "
                                    f"{geometry.shape}")
            if not np.all(np.isfinite(volume)) or volume.min(initial=0) < 0 or volume.max(initial=0) > 1:
                raise InputError(f"segment {segment.name!r}: fractional values must lie in [0, 1], found "
                                 f"{np.nanmin(volume):.4g}..{np.nanmax(volume):.4g}")
            present = np.flatnonzero(volume.reshape(volume.shape[0], -1).any(axis=1))
            seg.add_segment_slices({int(k): volume[k] >= threshold for k in present}, segment)
            seg.fractions[segment.id] = FractionPlanes(geometry.shape[1:], {int(k): volume[k] for k in present})
        return seg

    def fraction_slices(self, segment: Segment | str) -> Dict[int, np.ndarray]:
        """{k: (J, I) float32 fraction} of a segment's non-empty slices (its mask as 0/1 when it has
        no fractional values)."""
        segment = self.segment(segment)
        if segment.id in self.fractions:
            return self.fractions[segment.id]
        layer = self.layers[segment.layer]
        present = np.flatnonzero((layer == segment.label_value).reshape(layer.shape[0], -1).any(axis=1))
        return {int(k): (layer[k] == segment.label_value).astype(np.float32) for k in present}

    def _append(self, segment: Segment) -> None:
        if any(s.id == segment.id for s in self.segments):
            raise InputError(f"duplicate segment id {segment.id!r}")
        self.segments.append(segment)

    def add_segment(self, mask: np.ndarray, segment: Segment) -> Segment:
        """Store ``mask`` (K, J, I) for ``segment`` in the first layer where it overlaps nothing."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.geometry.shape:
            raise GeometryError(f"mask {mask.shape} does not match the grid {self.geometry.shape}")
        present = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        return self.add_segment_slices({int(k): mask[k] for k in present}, segment)

    def add_segment_slices(self, slices: Dict[int, np.ndarray], segment: Segment) -> Segment:
        """Store a segment given as {slice index k: (J, I) mask} (absent slices are empty) in the
        first layer where it overlaps nothing; decoders use this to avoid whole-volume masks."""
        shape2d = self.geometry.shape[1:]
        for k, plane in slices.items():
            if not 0 <= k < self.geometry.shape[0] or plane.shape != shape2d:
                raise GeometryError(f"slice {k} of segment {segment.name!r} ({plane.shape}) is not on the grid "
                                    f"{self.geometry.shape}")
        for layer in range(self.layers.shape[0]):
            used = [s.label_value for s in self.segments if s.layer == layer]
            value = max(used, default=0) + 1
            if value <= 65535 and not any(self.layers[layer, k][plane].any() for k, plane in slices.items()):
                break
        else:
            layer, value = self.layers.shape[0], 1
            self.layers = np.concatenate([self.layers, np.zeros((1,) + self.geometry.shape, self.layers.dtype)])
        if value > np.iinfo(self.layers.dtype).max:
            self.layers = self.layers.astype(np.uint16)
        for k, plane in slices.items():
            self.layers[layer, k][plane] = value
        segment.layer, segment.label_value = layer, value
        self._append(segment)
        return segment

    # --- access -------------------------------------------------------------------
    def mask(self, segment: Segment | str) -> np.ndarray:
        """Boolean (K, J, I) mask of a segment (given as object, id or name)."""
        segment = self.segment(segment)
        return self.layers[segment.layer] == segment.label_value

    def segment(self, key: Segment | str) -> Segment:
        if isinstance(key, Segment):
            return key
        for s in self.segments:
            if s.id == key:
                return s
        for s in self.segments:
            if s.name == key:
                return s
        raise KeyError(f"no segment with id or name {key!r}")

    @property
    def has_overlap(self) -> bool:
        """True when some voxel belongs to more than one of the segments (stored values that no
        segment describes do not count)."""
        layers = sorted({s.layer for s in self.segments})
        if len(layers) < 2:
            return False
        occupied = np.zeros(self.geometry.shape, dtype=np.uint8)
        for layer in layers:
            data = self.layers[layer]
            table = np.zeros(int(data.max(initial=0)) + 1, dtype=np.uint8)
            values = [s.label_value for s in self.segments if s.layer == layer and s.label_value < table.size]
            table[values] = 1
            if not table[0] and table[1:].all():  # every value held is a segment's: a comparison, 3x faster
                occupied += (data != 0).view(np.uint8)
            else:
                occupied += table[data]  # np.take made an int64 copy of the indices: 420 MB
        return bool((occupied > 1).any())

    def slice_voxel_counts(self) -> Dict[str, np.ndarray]:
        """Voxels of each segment on each slice, by id: {id: (K,) counts}.

        Counted slice by slice, on the box of labelled voxels (:func:`arrays.slice_label_counts`): a
        whole-volume bincount would make a volume-sized int64 copy (the benchmark's profile showed
        420 MB and up to 0.9 s for 512x512x200)."""
        from .arrays import slice_label_counts

        return self._per_slice_columns(slice_label_counts, np.int64)

    def slice_presence(self) -> Dict[str, np.ndarray]:
        """Which slices hold voxels of each segment, by id: {id: (K,) bool}, what
        ``slice_voxel_counts() > 0`` says, from the first voxel of each run of equal values
        (:func:`arrays.slice_label_presence`): 0.018 s instead of 0.062 s on bench_seg.py's case C,
        for the exports, which need presence only."""
        from .arrays import slice_label_presence

        return self._per_slice_columns(slice_label_presence, bool)

    def _per_slice_columns(self, table_of, dtype) -> Dict[str, np.ndarray]:
        """Each segment's column of ``table_of(layer, bins)``, the (K, bins) table of its layer, by id."""
        columns: Dict[str, np.ndarray] = {}
        n_slices = self.geometry.shape[0]
        for layer in range(self.layers.shape[0]):
            members = [s for s in self.segments if s.layer == layer]
            if not members:
                continue
            bins = max(s.label_value for s in members) + 1
            if bins > 256:  # a file may claim a label far above what its voxels hold: size the table by those
                bins = min(bins, int(self.layers[layer].max(initial=0)) + 1)
            table = table_of(self.layers[layer], bins)
            for s in members:
                columns[s.id] = table[:, s.label_value] if s.label_value < bins else np.zeros(n_slices, dtype)
        return columns

    def voxel_counts(self) -> Dict[str, int]:
        """Number of voxels of each segment, by id."""
        per_slice = self.slice_voxel_counts()
        return {s.id: int(per_slice[s.id].sum()) if s.id in per_slice else 0 for s in self.segments}

    def without_empty_segments(self) -> "Segmentation":
        """A view without segments that have no voxel (each dropped one is logged as a warning)."""
        counts = self.voxel_counts()
        kept = []
        for s in self.segments:
            if counts[s.id] == 0:
                log.warning("segment %r is empty and is skipped", s.name)
            else:
                kept.append(s)
        result = Segmentation(self.geometry, self.layers, kept)
        result.fractions = {s.id: self.fractions[s.id] for s in kept if s.id in self.fractions}
        return result

    def resampled_to(self, geometry: VolumeGeometry, what: str = "segmentation") -> "Segmentation":
        """The same segments on another grid (nearest neighbour; exact paste when the grids share
        a lattice). Segments that end up with no voxels are warned about."""
        if self.geometry.same_as(geometry):
            return self
        layers = np.stack([resample_nearest(layer, self.geometry, geometry, what) for layer in self.layers]) \
            if self.layers.shape[0] else np.zeros((0,) + geometry.shape, self.layers.dtype)
        result = Segmentation(geometry, layers, [dataclasses.replace(s) for s in self.segments])
        if self.fractions:
            log.warning("fractional values are not resampled; the segments keep their thresholded voxels")
        before, after = self.voxel_counts(), result.voxel_counts()
        for s in self.segments:
            if before[s.id] and not after[s.id]:
                log.warning("segment %r lies outside the series and is empty after resampling", s.name)
            elif after[s.id] < before[s.id] and self.geometry.spacing.prod() == geometry.spacing.prod():
                log.warning("segment %r is partly outside the series: %d of %d voxels kept",
                            s.name, after[s.id], before[s.id])
        return result


# Slicer's markups node types, by the name used in .mrk.json files.
MARKUP_KINDS = ("point_list", "line", "angle", "curve", "closed_curve", "plane", "roi")


@dataclass
class Markup:
    """A markups shape with control points in **LPS** millimetres.

    Attributes:
        kind: one of :data:`MARKUP_KINDS`.
        name: node name.
        points_lps: (N, 3) control points.
        point_labels: one label per control point.
        color: display colour, RGB in [0, 1].
        description: free text.
        roi_center_lps, roi_size, roi_axes_lps: for ``roi`` (box centre, full edge lengths along
            its axes, 3x3 whose columns are the box axes in LPS) and for ``plane`` (centre, size
            of the drawn rectangle, axes with the normal as third column).
        filled: draw closed shapes filled (overlay export).
        attributes: further metadata (e.g. the overlay group it was imported from).
        source: the file it was read from, named by errors about it (not written anywhere).
        shape: for a ``closed_curve``, what it stands for: ``"ellipse"`` (:mod:`.ellipses`): its
            4 control points are the ends of the major axis, then of the minor axis; writers draw
            the ellipse itself (a marked curve whose points are not an ellipse's axis ends is
            drawn as its control points, with a warning). None: the curve through its points.
    """

    kind: str
    name: str
    points_lps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    point_labels: List[str] = field(default_factory=list)
    color: Tuple[float, float, float] = (1.0, 0.5, 0.5)
    description: str = ""
    roi_center_lps: Optional[np.ndarray] = None
    roi_size: Optional[np.ndarray] = None
    roi_axes_lps: Optional[np.ndarray] = None
    filled: bool = False
    attributes: Dict[str, str] = field(default_factory=dict)
    source: Optional[str] = field(default=None, compare=False, repr=False)
    shape: Optional[str] = None

    def __post_init__(self):
        if self.kind not in MARKUP_KINDS:
            raise InputError(f"markup {self.name!r}: unknown kind {self.kind!r}, expected one of {MARKUP_KINDS}")
        if self.shape is not None and (self.kind != "closed_curve" or self.shape not in _SHAPES):
            raise InputError(f"markup {self.name!r}: a {self.kind} cannot be marked {self.shape!r} (a closed curve "
                             f"can be marked one of {_SHAPES})", self.source)
        self.points_lps = np.asarray(self.points_lps, dtype=float).reshape(-1, 3)
        if not np.all(np.isfinite(self.points_lps)) or np.any(np.abs(self.points_lps) > MAX_COORDINATE_MM):
            raise InputError(f"markup {self.name!r}: control points must be finite numbers within "
                             f"{MAX_COORDINATE_MM:g} mm of the origin", self.source)
        if len(self.point_labels) < len(self.points_lps):
            self.point_labels = list(self.point_labels) + [
                f"{self.name}-{n + 1}" for n in range(len(self.point_labels), len(self.points_lps))]
        minimum = {"line": 2, "angle": 3, "curve": 2, "closed_curve": 3}.get(self.kind, 0)
        if self.kind in ("roi", "plane"):
            if self.roi_center_lps is None or self.roi_size is None:
                raise InputError(f"markup {self.name!r}: a {self.kind} needs a centre and a size")
            self.roi_center_lps = np.asarray(self.roi_center_lps, dtype=float).reshape(3)
            self.roi_size = np.asarray(self.roi_size, dtype=float).reshape(3)
            self.roi_axes_lps = np.eye(3) if self.roi_axes_lps is None else \
                np.asarray(self.roi_axes_lps, dtype=float).reshape(3, 3)
            numbers = np.concatenate([self.roi_center_lps, self.roi_size, self.roi_axes_lps.ravel()])
            if not np.all(np.isfinite(numbers)) or np.any(np.abs(numbers) > MAX_COORDINATE_MM):
                raise InputError(f"markup {self.name!r}: {self.kind} centre, size and orientation must be finite "
                                 f"numbers within {MAX_COORDINATE_MM:g} mm", self.source)
            if abs(np.linalg.det(self.roi_axes_lps)) < 1e-6:
                raise InputError(f"markup {self.name!r}: {self.kind} orientation is singular (its axes are "
                                 f"parallel or zero)", self.source)
        elif len(self.points_lps) < minimum:
            raise InputError(f"markup {self.name!r}: a {self.kind} needs at least {minimum} control points, "
                             f"got {len(self.points_lps)}")

    @property
    def points_ras(self) -> np.ndarray:
        """Control points in RAS (Slicer's world coordinates)."""
        from .geometry import lps_to_ras

        return lps_to_ras(self.points_lps)

    def roi_corners_lps(self) -> np.ndarray:
        """The 8 corners of an ROI box in LPS."""
        half = self.roi_size / 2.0
        signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
        return self.roi_center_lps + (signs * half) @ self.roi_axes_lps.T


#: Coordinates farther than this from the origin (a kilometre) are refused as broken.
MAX_COORDINATE_MM = 1e6


@dataclass
class AnnotationSet:
    """What the encoders write and the decoders return: a grid, segments and markups."""

    geometry: VolumeGeometry
    segmentation: Optional[Segmentation] = None
    markups: List[Markup] = field(default_factory=list)

    def __post_init__(self):
        if self.segmentation is not None and not self.segmentation.geometry.same_as(self.geometry):
            raise GeometryError("the segmentation is not on the annotation set's grid; resample it first")


def present_labels(labels: np.ndarray) -> np.ndarray:
    """The non-zero values of a label array, ascending: :func:`arrays.present_values`, which looks
    at the first voxel of each run of equal values only (np.unique sorts the whole volume, 0.5 s
    at 512x512x200; per-slice bincounts were 0.065 s, this 0.017 s: bench_seg.py notes)."""
    from .arrays import present_values

    return present_values(labels)


def _default_color(index: int) -> Tuple[float, float, float]:
    """Distinct colours for segments that come without one (Slicer's GenericColors start)."""
    palette = [(128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
               (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0),
               (255, 250, 220), (230, 220, 70), (200, 200, 235), (250, 250, 210), (244, 214, 49),
               (0, 151, 206)]
    r, g, b = palette[index % len(palette)]
    return (r / 255.0, g / 255.0, b / 255.0)


def safe_file_stem(name: str) -> str:
    """A file-name-safe version of a segment or markup name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"
