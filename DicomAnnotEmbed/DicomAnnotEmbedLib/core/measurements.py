"""Measurements of segments and markups in patient space (LPS, millimetres), for TID 1500 SR.

Every quantity is a :class:`Quantity`: a value and its UCUM unit (``mm3``, ``mm2``, ``mm``,
``deg``, ``[hnsf'U]`` for Hounsfield units, ``1`` for unitless image values).

Segment measurements (:func:`measure_segmentation`, :func:`measure_mask`), computed on the
real voxel-to-LPS matrix of the grid (oblique, anisotropic and even sheared grids give
their true patient-space values):

* **volume** (mm3): number of voxels x voxel volume (``|det|`` of the IJK to LPS matrix).
* **mean, standard deviation, minimum, maximum** of the image under the mask, when an image
  (modality values, e.g. HU for CT) on the same grid is given. The standard deviation is the
  population one (divides by N), as in Slicer's Segment Statistics and our overlay ROI
  statistics.
* **surface area** (mm2): area of the surface mesh that discrete marching cubes
  (``vtkDiscreteFlyingEdges3D``, contour at the mask boundary, no smoothing, no decimation)
  extracts from the mask, mapped to LPS with the grid's matrix. This is IBSI's "surface area of
  mesh" (C0JK). Mesh vertices lie half way between an inside and an outside voxel centre, so
  each 2x2x2 cell's triangles depend only on which of its corners are inside: the area is a
  histogram of the 256 cell configurations times a table of their areas on this grid (VTK's own
  triangulation of each configuration, kept in this module and tested against VTK), one
  vectorised pass, equal to measuring VTK's whole mesh (tested to 1e-9). On an unsmoothed
  binary mask this staircase surface is larger than the smooth object it samples: for a sphere
  about 8-9 % on an isotropic grid, up to about 13-15 % on strongly anisotropic ones; this is inherent to the definition (the same figure pyradiomics
  and IBSI give), not a calibration error.
* **maximum 3D diameter** (mm): the largest Euclidean distance between two vertices of that
  same mesh (IBSI "maximum 3D diameter", L0JK), found exactly without building the mesh: on each
  grid line only the first and last boundary crossings can be convex hull vertices; pairs are
  pruned with the triangle inequality around the centroid; where many candidates remain (round
  objects) vertices between two others on a lattice line (grid axes, face and body diagonals)
  are dropped; the rest are compared pairwise in blocks.

All of it is vectorised (numpy); segments are cropped to their bounding box first, found for
all segments of a layer in one slice-by-slice pass: 100 segments on 512x512x200 take about a
second (Testing/benchmarks/bench_sr.py). Measuring an empty segment raises :class:`InputError`
naming the segment (use :meth:`Segmentation.without_empty_segments` first to skip them).

Markup measurements (:func:`measure_markup` and the functions it calls), in LPS mm:

* line: length between its two control points;
* open curve: length of the polyline through its control points (not Slicer's spline);
* closed curve: perimeter of the closed polyline, and area of the polygon after projecting the
  control points on their best-fit (least squares) plane;
* angle: the angle in degrees at the middle control point between the rays to the first and
  the third;
* ROI: volume of the box.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .ellipses import ellipse_area_perimeter, markup_ellipse
from .errors import GeometryError, InputError
from .geometry import VolumeGeometry
from .model import Code, Markup, Segment, Segmentation

log = logging.getLogger(__name__)

#: Code meanings of the UCUM units used here (as in DICOM CID 7181 and its relatives).
UCUM_MEANINGS: dict[str, str] = {
    "mm": "millimeter",
    "mm2": "square millimeter",
    "mm3": "cubic millimeter",
    "deg": "degree",
    "[hnsf'U]": "Hounsfield unit",
    "1": "no units",
}

#: Pairs of points compared at once when looking for the largest distance (about 80 bytes each).
_PAIRS_AT_ONCE = 1 << 20
#: Above this many candidate points, vertices between two others on a grid line are dropped first.
_LATTICE_ABOVE = 512
#: Rows mapped to LPS per matrix product: small enough that OpenBLAS runs it on one thread (its
#: threshold is 65,536 x 4 multiply-adds; 3 x 3 each here). Above it OpenBLAS starts its threads,
#: which then spin between calls and doubled the CPU time the measurements took on 2 cores
#: (Testing/benchmarks/bench_sr.py notes). Each row's result is the same either way.
_MAP_ROWS = 16384


@dataclass(frozen=True)
class Quantity:
    """A measured value with its UCUM unit."""

    value: float
    unit: str

    @property
    def unit_code(self) -> Code:
        """The unit as a coded concept: (unit, "UCUM", meaning)."""
        return Code(self.unit, "UCUM", UCUM_MEANINGS.get(self.unit, self.unit))

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


@dataclass(frozen=True)
class SegmentMeasurements:
    """What :func:`measure_segmentation` computes for one segment (definitions: module docstring).

    The image statistics are None when no image was given.
    """

    segment_id: str
    segment_name: str
    voxel_count: int
    volume: Quantity
    surface_area: Quantity
    maximum_diameter: Quantity
    mean: Quantity | None = None
    standard_deviation: Quantity | None = None
    minimum: Quantity | None = None
    maximum: Quantity | None = None

    def quantities(self) -> dict[str, Quantity]:
        """The measured quantities by field name, in a stable order, without the absent ones."""
        names = ("volume", "surface_area", "maximum_diameter", "mean", "standard_deviation", "minimum", "maximum")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


# --- segments ---------------------------------------------------------------------------

def image_unit_for(modality: str | None) -> str:
    """UCUM unit of modality values: Hounsfield units for CT, else unitless ("1")."""
    return "[hnsf'U]" if (modality or "").strip().upper() == "CT" else "1"


def measure_segmentation(segmentation: Segmentation, image: np.ndarray | None = None,
                         modality: str | None = None, *,
                         image_unit: str | None = None,
                         boxes: dict[str, tuple[slice, slice, slice]] | None = None,
                         image_planes: Iterable[tuple[int, np.ndarray]] | None = None) -> dict[str, SegmentMeasurements]:
    """Measure every segment of ``segmentation``: {segment id: :class:`SegmentMeasurements`}.

    Args:
        segmentation: the segments and their grid (LPS).
        image: optional modality values (e.g. HU) on the same grid, (K, J, I); gives the
            mean, standard deviation, minimum and maximum under each segment.
        modality: DICOM Modality of the image; "CT" makes the image unit ``[hnsf'U]``.
        image_unit: UCUM unit of the image values, overriding the one ``modality`` implies
            (e.g. ``"{SUVbw}g/ml"`` for PET).
        boxes: :func:`segment_bounding_boxes` of ``segmentation``, when the caller has them
            (they are found otherwise).
        image_planes: instead of ``image``, its planes as ``(k, (J, I) array)`` pairs, each k
            once, in any order (e.g. :meth:`ReferenceSeries.modality_planes`): the same values,
            without the whole image in memory; each segment's values under it are gathered in
            one pass over the planes.

    Raises:
        InputError: a segment is empty (the message names it), or the image is not numeric.
        GeometryError: the image (or a plane) is not on the segmentation's grid, or a plane is
            missing.
    """
    geometry = segmentation.geometry
    if image is not None and image_planes is not None:
        raise ValueError("give image or image_planes, not both")
    image = _check_image(image, geometry)
    unit = image_unit or image_unit_for(modality)
    boxes = segment_bounding_boxes(segmentation) if boxes is None else boxes
    for segment in segmentation.segments:
        if segment.id not in boxes:
            raise InputError(f"segment {segment.name!r} (id {segment.id!r}) is empty: there is nothing to measure")
    statistics = None if image_planes is None else _statistics_by_planes(segmentation, boxes, image_planes, unit)
    results: dict[str, SegmentMeasurements] = {}
    for segment in segmentation.segments:
        box = boxes[segment.id]
        crop = segmentation.layers[segment.layer][box] == segment.label_value
        offset = tuple(s.start for s in box)
        if statistics is not None:
            stats = statistics.pop(segment.id)
        else:
            stats = None if image is None else _value_statistics(image[box][crop], unit, segment.name)
        results[segment.id] = _measure_crop(crop, offset, geometry, stats, segment.id, segment.name)
    return results


def _statistics_by_planes(segmentation: Segmentation, boxes: dict[str, tuple[slice, slice, slice]],
                          planes: Iterable[tuple[int, np.ndarray]], unit: str) -> dict[str, dict[str, Quantity]]:
    """Each segment's image statistics (:func:`_value_statistics`) from the image's planes, one plane
    at a time. A segment's values are gathered in the order ``image[box][crop]`` gives them (k, then
    j, i: the same values to the bit) and let go once its last plane is in, so that with planes in
    k order only the segments crossing the current plane hold theirs."""
    geometry = segmentation.geometry
    pieces: dict[str, dict[int, np.ndarray]] = {s.id: {} for s in segmentation.segments}
    by_slice: list[list[Segment]] = [[] for _ in range(geometry.shape[0])]
    for segment in segmentation.segments:
        for k in range(boxes[segment.id][0].start, boxes[segment.id][0].stop):
            by_slice[k].append(segment)
    statistics: dict[str, dict[str, Quantity]] = {}
    seen = np.zeros(geometry.shape[0], bool)
    for k, plane in planes:
        plane = np.asarray(plane)
        if not 0 <= k < geometry.shape[0] or seen[k] or plane.shape != geometry.shape[1:]:
            raise GeometryError(f"image plane {k} {plane.shape} is not one of the {geometry.shape[0]} planes "
                                f"{geometry.shape[1:]} of the segmentation's grid, or it was given twice")
        _check_numeric(plane)
        seen[k] = True
        for segment in by_slice[k]:
            slices, rows, columns = boxes[segment.id]
            found = pieces[segment.id]
            # the box copied first: a boolean index into a contiguous array is faster than into
            # the plane's strided view (0.052 -> 0.035 s for case C's 4,926 boxes; same order)
            found[k] = plane[rows, columns].copy()[
                segmentation.layers[segment.layer][k, rows, columns] == segment.label_value]
            if len(found) == slices.stop - slices.start:
                values = np.concatenate([found[n] for n in sorted(found)])
                del pieces[segment.id]
                statistics[segment.id] = _value_statistics(values, unit, segment.name)
    if not seen.all():
        raise GeometryError(f"the image has no plane {int(np.flatnonzero(~seen)[0])} of the segmentation's grid")
    return statistics


def _value_statistics(values: np.ndarray, unit: str, name: str) -> dict[str, Quantity]:
    """Mean, standard deviation (population), minimum and maximum of the image values under a segment."""
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
        raise InputError(f"segment {name!r}: the image has non-finite values under the segment")
    values = values.astype(np.float64, copy=False)
    mean, std, low, high = float(values.mean()), float(values.std()), float(values.min()), float(values.max())
    return {"mean": Quantity(mean, unit), "standard_deviation": Quantity(std, unit),
            "minimum": Quantity(low, unit), "maximum": Quantity(high, unit)}


def measure_mask(mask: np.ndarray, geometry: VolumeGeometry, image: np.ndarray | None = None,
                 modality: str | None = None, *, name: str = "mask",
                 image_unit: str | None = None) -> SegmentMeasurements:
    """Measure one boolean mask (K, J, I) on ``geometry`` (same arguments as
    :func:`measure_segmentation`; ``name`` is used as segment id and name)."""
    mask = np.asarray(mask)
    if mask.shape != geometry.shape:
        raise GeometryError(f"{name}: mask {mask.shape} does not match the grid {geometry.shape}")
    mask = mask.astype(bool, copy=False)
    image = _check_image(image, geometry)
    box = _mask_bounding_box(mask)
    if box is None:
        raise InputError(f"segment {name!r} is empty: there is nothing to measure")
    offset = tuple(s.start for s in box)
    crop = mask[box]
    stats = None if image is None else _value_statistics(image[box][crop], image_unit or image_unit_for(modality), name)
    return _measure_crop(crop, offset, geometry, stats, name, name)


def segment_bounding_boxes(segmentation: Segmentation) -> dict[str, tuple[slice, slice, slice]]:
    """Bounding box (k, j, i slices) of every non-empty segment, by id; empty ones are absent.

    One pass over each layer's changes of value along rows (:func:`arrays.label_extents`): 0.04 s
    for case C's layer, where a pass over every slice's labelled voxels took 0.26 s."""
    from .arrays import label_extents

    boxes: dict[str, tuple[slice, slice, slice]] = {}
    for layer_index in range(segmentation.layers.shape[0]):
        members: list[Segment] = [s for s in segmentation.segments if s.layer == layer_index]
        if not members:
            continue
        lo, hi = label_extents(segmentation.layers[layer_index], max(s.label_value for s in members))
        for s in members:
            if hi[s.label_value, 0] >= 0:  # (i, j, k) order
                boxes[s.id] = tuple(slice(int(lo[s.label_value, axis]), int(hi[s.label_value, axis]) + 1)
                                    for axis in (2, 1, 0))
    return boxes


def _mask_bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    box = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if present.size == 0:
            return None
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def _check_image(image: np.ndarray | None, geometry: VolumeGeometry) -> np.ndarray | None:
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape != geometry.shape:
        raise GeometryError(f"the image {image.shape} is not on the segmentation's grid {geometry.shape}")
    _check_numeric(image)
    return image


def _check_numeric(image: np.ndarray) -> None:
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputError(f"the image must hold integer or real numbers, got {image.dtype}")


def _measure_crop(crop: np.ndarray, offset: tuple[int, int, int], geometry: VolumeGeometry,
                  stats: dict[str, Quantity] | None, segment_id: str, name: str) -> SegmentMeasurements:
    """Measurements of a cropped mask whose voxel [0, 0, 0] is voxel ``offset`` (k, j, i) of the grid;
    ``stats``: :func:`_value_statistics` of the image under it, if there is an image."""
    count = int(np.count_nonzero(crop))
    if count == 0:
        raise InputError(f"segment {name!r} is empty: there is nothing to measure")
    area = _surface_area(crop, geometry)
    extremes = _boundary_extremes(crop, offset)
    diameter = _maximum_distance(_to_lps(geometry, extremes), extremes, geometry)
    if stats is None:
        stats = {"mean": None, "standard_deviation": None, "minimum": None, "maximum": None}
    return SegmentMeasurements(
        segment_id=segment_id, segment_name=name, voxel_count=count,
        volume=Quantity(count * geometry.voxel_volume_mm3, "mm3"),
        surface_area=Quantity(area, "mm2"), maximum_diameter=Quantity(diameter, "mm"), **stats)


def _surface_area(crop: np.ndarray, geometry: VolumeGeometry) -> float:
    """Area (mm2) of the discrete marching-cubes surface of ``crop`` (zero-padded to close it).

    Marching cubes triangulates each 2x2x2 cell of voxel centres from its configuration alone
    (which of its 8 corners are inside), with vertices at edge midpoints. So the mesh's area is
    the sum over the 256 configurations of (cells with that configuration) x (area of that
    configuration's triangles mapped to LPS): one pass that builds each cell's configuration
    number, a histogram, and a dot product with a table computed once per grid matrix. The table
    is VTK's own triangulation (``vtkDiscreteFlyingEdges3D``, the mesh this area was always defined
    on; :data:`_CONFIGURATION_TRIANGLES`); ``Testing/Python/core/test_measurements.py`` checks it
    against VTK and the area against the whole-mesh area that VTK measures."""
    padded = np.zeros(tuple(n + 2 for n in crop.shape), np.uint8)
    padded[1:-1, 1:-1, 1:-1] = crop
    # The configuration number: bit di + 2 dj + 4 dk for the cell's corner (dk, dj, di), the order
    # of VTK's point ids in a 2x2x2 image (configuration c is the image whose point p has the value
    # of bit p of c). Built one axis at a time: pairs along i (bits 0-1), their pairs along j
    # (bits 0-3), then along k (bits 0-7): 3 shifted ORs instead of one per corner (0.19 -> 0.11 s
    # on case C), each into its shifted operand (no third array).
    configuration = np.left_shift(padded[:, :, 1:], 1)
    configuration |= padded[:, :, :-1]
    pairs = np.left_shift(configuration[:, 1:], 2)
    pairs |= configuration[:, :-1]
    configuration = np.left_shift(pairs[1:], 4)
    configuration |= pairs[:-1]
    # Only cells with corners on both sides carry surface (configurations 1-254): about 1 in 18 on
    # case C. Counting those alone spares bincount's cast of every cell to a 64-bit index
    # (0.066 -> 0.016 s); adding 1 wraps 255 to 0, so one comparison keeps 1-254.
    cells = configuration.reshape(-1)
    counts = np.bincount(cells[cells + np.uint8(1) > 1], minlength=256)
    return float(counts @ _configuration_areas(tuple(geometry.ijk_to_lps[:3, :3].ravel())))


#: The triangles discrete marching cubes (VTK's ``vtkDiscreteFlyingEdges3D``) makes in a 2x2x2 cell of
#: each configuration 0..255, in VTK's order: a word per configuration ("-": none), 3 letters a
#: triangle, a letter a vertex: ``_VERTEX_LETTERS.index(letter)`` = 9 (2 i) + 3 (2 j) + (2 k), the
#: vertex's cell-relative (i, j, k) being 0, 0.5 or 1. Written from VTK's own output (importing VTK
#: and triangulating the 256 cells took 0.2 s CPU an export); Testing/Python/core/test_measurements.py
#: checks it against VTK (:func:`_vtk_configuration_triangles`).
_CONFIGURATION_TRIANGLES = (
    "- jdb jtv vdbtvb dph jphbjh vjtphd vphvhtthb vzp jdbvzp tzpjtp pdbpbzzbt dvzhdz jvzjzbbzh "
    "djtdthhtz tzbzhb lbf ljdfld jtvbfl ltvlvffvd bfldph hflhlpplj tvjbflphd lhfthltphtvp vzpbfl "
    "dfldljvzp tzptpjbfl ptzpftpdfflt dvzdzhflb vzhvhlvljflh lbfthjtzhhdj lhflthtzh tlx tlxjdb "
    "jlxvjx blxbxddxv tlxphd jphjhblxt jlxjxvphd pxvpbxphblxb vzptlx dbjvzplxt xzpxpllpj "
    "pxzdxpdlxdbl zhdzdvtlx lxtjvbbvzbzh xjlxhjxzhhdj xblxzbzhb tbfxtf tjdtdxxdf jbfjfvvfx vdxdfx "
    "fxtftbdph tfxtpftjpphf phdjbvvbfvfx hvphfvfxv tbftfxzpv zpvtjxxjdxdf bpjbxpbfxzpx pxzpdxdfx "
    "tbxbfxzdvzhd xjfxtjfjhvzjhjz hjzhdjzjxbfjxjf hxzfxh fhr dbjhrf jtvhrf btvbvdhrf fdprfp "
    "fbjfjrrjp prfpfdjtv vprvrbvbtbrf zpvrfh vzpdbjrfh pjtptzrfh rfhpdzzdbzbt zrfzfvvfd zrfvzfvfbvbj "
    "jfdjzfjtzrfz fzrfbzbtz rlbhrb dhrdrjjrl bhrbrltvj trltdrtvdhrd bdpbpllpr jpllpr vjtpldprllbd "
    "vltvplprl rlbrbhpvz vzpdhjjhrjrl lbhlhrjtpptz zdtzpdtdlhrdldr bdvbvrbrlrvz zjvzrjrlj "
    "ldrlbdrdzjtdzdt zltrlz lxtfhr jdblxthrf xvjxjlfhr hrfblddlxdxv fdpfprxtl tlxjrbjprrfb "
    "dprdrfvjxxjl rbprfbpbvlxbvbx tlxzpvfhr rfhvzpjdblxt fhrxzllzplpj dbldlxdxpzpxhrf tlxzrvvrfvfd "
    "vzrvrfvfjbjftlx lzjlxzjzdrfzdzf fzrfbzxzllzb rxtrthhtb dhrjdrjrxjxt jbhjhxjxvxhr rdhrxdxvd "
    "xtbxbpxprdpb trxtjrjpr vbxvjbxbrdpbrbp vrxprv vzpthxtbhhrx jdhjhrjrtxtrvzp hxbhrxbxjzpxjxp "
    "rdhrxdpdzzdx vrdvzrdrbxtrbrt zjvzrjtjxxjr jbdxzr zrx zxr jdbxrz tvjxrz vdbvbtxrz phdzxr "
    "hbjhjpzxr jtvphdxrz xrzvpttphthb vxrpvr vxrvrpdbj txrtrjjrp xbtxpbxrpdbp rhdrdxxdv jhbjxhjvxxrh "
    "drhjrdjxrjtx rtxrhthbt xrzlbf ljdldfrzx vjtxrzbfl zxrvftvdfflt dphflbzxr xrzlpfljpphf "
    "jtvlbfphdxrz tvptphthlflhxrz rpvrvxlbf vxpxrpdljdfl bfltxjjxrjrp ftdfltdtpxrtptr bfldxhdvxxrh "
    "xhvxrhvhjflhjhl jtxjxrjrdhdrbfl rtxrhtltffth ztlrzl lrzlztjdb zvjzjrrjl bvdbrvblrrzv ztlzlrhdp "
    "jpbphblztlrz dphjrvjlrrzv rvlrzvlvbphvbvh vtlvlpplr dbjvtpptlplr jlplrp bpdblplrp tlrtrdtdvhdr "
    "bvhbjvhvrtlvrvl drhdjrjlr rblhbr frzfzbbzt jdfjfzjztrzf zfrvfzvbfvjb zfrzvfvdf phdzbrztbbfr "
    "pfjphfjftrzftfz vjbvbfvfzrzfphd hvphfvzvrrvf vrpvbrvtbbfr ptrpvtrtfjdtftd fjbfrjrpj fpdrpf "
    "brtbfrtrvhdrvrd jvthfr fjbfrjdjhhjr frh hzxfhx hzxhxfbjd xfhxhzvjt zxfzfhtvbbvd pzxpxddxf "
    "bjpbpxbxfzxp tvjxdzxfddpz tpbtvpbpfzxpfpx hpvhvffvx jdbvfpvxffhp txftfptpjpfh fpxfhpxptdbptpb "
    "vxddxf jfbjvfvxf tdjtxdxfd tfbxft xlbxbzzbh xljxjhxhzhjd jtvbzlbhzzxl zlhzxlhldtvldlv "
    "pzxdpxdxldlb xpzxlpljp dpzdzxdxblbxjtv xpzxlpvpttpl pvxpxbpbhlbx jhljdhlhxpvhxhv "
    "jxpjtxpxhlbxhxb txlpdh bxlbdxdvx jxlvxj bxlbdxtxjjxd txl lfhlhtthz jdblfttfhthz vhzvlhvjlfhl "
    "dlvdblvlzfhlzlh pztptfpfdftl tfztlfzfpbjfpfj dzfdpzfzlvjzlzj vpzblf lfhtlhthptpv "
    "tlftfhthvpvhjdb hlfhplpjl hlfhplblddlp lvtlfvfdv lvtlfvjvbbvf ldjfdl lfb tbzzbh dtjdhthzt "
    "jzvjbzbhz dzvhzd pbdpzbztb tpzjpt pbdpzbjbvvbz vpz vhpvthtbh dtjdhtvtppth jhpbhj dhp vbdtbv jvt "
    "jbd - "
)
_VERTEX_LETTERS = "abcdefghijklmnopqrstuvwxyzA"


@functools.lru_cache(maxsize=1)
def _configuration_triangles() -> np.ndarray:
    """(256, T, 3, 3): the triangles (vertices as cell-relative i, j, k) that discrete marching
    cubes makes in a cell of each configuration, padded with degenerate ones
    (:data:`_CONFIGURATION_TRIANGLES`)."""
    words = [word.strip("-") for word in "".join(_CONFIGURATION_TRIANGLES).split()]
    table = np.zeros((256, max(len(word) for word in words) // 3, 3, 3))
    for configuration, word in enumerate(words):
        codes = np.array([_VERTEX_LETTERS.index(letter) for letter in word], dtype=np.int64)
        vertices = np.stack([codes // 9, codes // 3 % 3, codes % 3], axis=1) / 2.0
        table[configuration, :len(word) // 3] = vertices.reshape(-1, 3, 3)
    return table


def _vtk_configuration_triangles() -> np.ndarray:
    """:func:`_configuration_triangles` as VTK makes them: each configuration's cell
    triangulated by ``vtkDiscreteFlyingEdges3D`` (for the test of the table)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    triangles = []
    for configuration in range(256):
        values = np.array([(configuration >> bit) & 1 for bit in range(8)], dtype=np.uint8)
        cell = vtkImageData()
        cell.SetDimensions(2, 2, 2)
        cell.GetPointData().SetScalars(numpy_to_vtk(values, deep=True))
        surface = vtkDiscreteFlyingEdges3D()
        surface.SetInputData(cell)
        surface.SetValue(0, 1)
        surface.ComputeNormalsOff()
        surface.ComputeGradientsOff()
        surface.ComputeScalarsOff()
        surface.Update()
        mesh = surface.GetOutput()
        if mesh.GetNumberOfPolys() == 0:
            triangles.append(np.zeros((0, 3, 3)))
            continue
        points = vtk_to_numpy(mesh.GetPoints().GetData()).astype(np.float64)
        polys = vtk_to_numpy(mesh.GetPolys().GetConnectivityArray()).reshape(-1, 3)
        triangles.append(points[polys])
    most = max(len(t) for t in triangles)
    table = np.zeros((256, most, 3, 3))
    for configuration, found in enumerate(triangles):
        table[configuration, :len(found)] = found
    return table


@functools.lru_cache(maxsize=16)
def _configuration_areas(matrix: tuple) -> np.ndarray:
    """Area (mm2) of each configuration's triangles on a grid whose IJK to LPS 3x3 matrix is
    ``matrix`` (row-major, as a tuple so that it can be a cache key)."""
    lps = _configuration_triangles() @ np.asarray(matrix, dtype=np.float64).reshape(3, 3).T
    normals = np.cross(lps[:, :, 1] - lps[:, :, 0], lps[:, :, 2] - lps[:, :, 0])
    return 0.5 * np.linalg.norm(normals, axis=-1).sum(axis=1)


def _boundary_extremes(crop: np.ndarray, offset: tuple[int, int, int]) -> np.ndarray:
    """The marching-cubes mesh vertices that can be convex hull vertices, as (i, j, k) indices
    of the full grid, found without building the mesh.

    Every vertex is the midpoint of a grid edge between an inside and an outside voxel centre.
    The vertices on edges along axis a lie on grid lines along a; on each such line only the
    first and the last can be hull vertices (the others lie between them), and they are half a
    voxel before the first inside voxel and after the last one. :func:`_hull_candidates` then
    drops more points that lie between two others."""
    crop = crop.astype(bool, copy=False)  # (the products below take True as 1)
    found = []
    for axis in range(3):  # axis of the (k, j, i) array
        count = crop.shape[axis]
        # Voxel n + 1 on each line, n the voxel's index along ``axis``: the largest product with the
        # mask is the last inside voxel + 1 (0: no voxel), the largest with the steps reversed
        # ``count`` - the first. Reductions of the products run across the lines; argmax (before)
        # copied the crop with ``axis`` last for each of first and last: 0.11 -> 0.055 s on case C.
        shape = [1, 1, 1]
        shape[axis] = count
        steps = np.arange(1, count + 1, dtype=np.uint8 if count < 256 else np.uint16 if count < 65536
                          else np.int64).reshape(shape)
        after_last = np.max(crop * steps, axis=axis)
        others = np.nonzero(after_last)
        if not others[0].size:
            continue
        if axis == 2:  # along the rows argmax needs no copy
            first = np.argmax(crop, axis=2)[others].astype(np.float64)
        else:
            first = count - np.max(crop * np.flip(steps, axis), axis=axis)[others].astype(np.float64)
        rest = [a for a in range(3) if a != axis]
        across = [others[0] + offset[rest[0]], others[1] + offset[rest[1]]]
        for position in (first - 0.5, after_last[others] - 0.5):
            points = np.empty((len(position), 3))
            points[:, 2 - axis] = position + offset[axis]
            points[:, 2 - rest[0]], points[:, 2 - rest[1]] = across
            found.append(points)
    return np.vstack(found)


def _to_lps(geometry: VolumeGeometry, ijk: np.ndarray) -> np.ndarray:
    """``geometry.ijk_to_lps_points(ijk)`` in chunks of :data:`_MAP_ROWS` rows (the same values)."""
    if len(ijk) <= _MAP_ROWS:
        return geometry.ijk_to_lps_points(ijk)
    return np.concatenate([geometry.ijk_to_lps_points(ijk[start:start + _MAP_ROWS])
                           for start in range(0, len(ijk), _MAP_ROWS)])


def _line_frames() -> np.ndarray:
    """(13, 3, 3) integer rows (d, a, b): the lattice directions d (i, j, k) along which a mesh vertex
    between two others is dropped (the 3 grid axes, the 6 face diagonals, the 4 body diagonals),
    and two vectors a, b across each, which together name the line a point is on."""
    frames = []
    for direction in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1),
                      (0, 1, 1), (0, 1, -1), (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)]:
        direction = np.array(direction, dtype=np.int64)
        axis = np.zeros(3, np.int64)
        axis[int(np.argmin(np.abs(direction)))] = 1  # an axis not along the direction
        across = np.cross(direction, axis)
        frames.append((direction, across, np.cross(direction, across)))
    return np.array(frames, dtype=np.int64)


_LINE_FRAMES = _line_frames()


def _hull_candidates(points_ijk: np.ndarray) -> np.ndarray:
    """The mesh vertices that can be convex hull vertices, a few times as many as the hull has.

    Mesh vertices lie on a half-voxel lattice. A vertex strictly between two others on a line
    is not a hull vertex, in index space as in LPS (affine maps keep 'between'), so on every
    lattice line along each direction of :data:`_LINE_FRAMES` in turn only the two extreme vertices are
    kept. The farthest pair is always a pair of hull vertices, hence among these. With the 13
    directions the largest segment of case C keeps 1,900 of 17,800 vertices (the 3 axes alone
    kept 6,400, which needed qhull through scipy: 0.3 s to import, Testing/benchmarks/bench_sr.py)."""
    points = np.asarray(points_ijk, dtype=np.float64)
    if len(points) <= 2:
        return points
    # The lattice coordinates as three integer columns, and the rows still kept; the points are
    # taken once at the end. The line and the position along it make one key, sorted stably: the
    # order of np.lexsort((along, line)), which took twice as long (0.06 -> 0.034 s on case C).
    lattice = list(np.round(points * 2.0).astype(np.int64).T.copy())
    kept = np.arange(len(points))
    for direction, across_a, across_b in _LINE_FRAMES:
        a, b, along = (_lattice_projection(lattice, vector) for vector in (across_a, across_b, direction))
        a -= a.min()
        b -= b.min()
        along -= along.min()
        line = a * (int(b.max()) + 1) + b
        if (int(line.max()) + 1) * (int(along.max()) + 1) < 1 << 63:
            order = np.argsort(line * (int(along.max()) + 1) + along, kind="stable")
        else:  # (a lattice of some 10**6 half-voxels a side: the key would not fit 64 bits)
            order = np.lexsort((along, line))
        sorted_line = line[order]
        change = sorted_line[1:] != sorted_line[:-1]
        keep = order[np.concatenate(([True], change)) | np.concatenate((change, [True]))]
        kept = kept[keep]
        lattice = [column[keep] for column in lattice]
    return points[kept]


def _lattice_projection(lattice: list, vector: np.ndarray) -> np.ndarray:
    """The dot products of the lattice points (three integer columns) with a small integer
    ``vector``, column by column (numpy's integer matrix product is a plain loop)."""
    total = np.zeros_like(lattice[0])
    for column, weight in zip(lattice, vector.tolist()):
        if weight:
            total += column * weight
    return total


def _maximum_distance(points: np.ndarray, lattice_ijk: np.ndarray | None = None,
                      geometry: VolumeGeometry | None = None) -> float:
    """Largest distance between two of the (N, 3) points (0 for a single point), exactly.

    Pairs are pruned with the triangle inequality around the centroid c: |a - b| <= r_a + r_b
    (r = distance to c). A first lower bound comes from a few farthest-point steps; a point
    with r + max(r) below it cannot be in the farthest pair. The rest are compared in the pairs
    of grid cells that can still beat that bound (:func:`_farthest_by_cells`). Where many
    remain (a nearly round object), ``lattice_ijk`` (with ``geometry``), the grid indices of
    ``points`` on the half-voxel lattice of mesh vertices, lets :func:`_hull_candidates` first drop
    the points that lie between two others (the farthest pair is a pair of hull vertices)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        return 0.0
    centre = points.mean(axis=0)
    points = points - centre
    radius = np.sqrt(np.einsum("ij,ij->i", points, points))
    # From here the coordinates go as three contiguous columns: the differences and squares of the
    # steps and of the pairs below run on contiguous arrays and gather single values, not rows of
    # 3 (the pairs' point differences 0.036 -> 0.006 s on case C). The same arithmetic per pair.
    columns = points.T.copy()
    best, start = 0.0, int(np.argmax(radius))
    for _ in range(4):
        distances = np.sqrt(_squared_lengths(*(axis - axis[start] for axis in columns)))
        farthest = int(np.argmax(distances))
        if distances[farthest] <= best:
            break
        best, start = float(distances[farthest]), farthest
    keep = radius + radius.max() >= best
    if np.count_nonzero(keep) > _LATTICE_ABOVE and lattice_ijk is not None:
        columns = (_to_lps(geometry, _hull_candidates(lattice_ijk[keep])) - centre).T.copy()
    else:
        columns = columns[:, keep]
    return _farthest_by_cells(columns, best)


def _squared_lengths(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Squared lengths of the vectors whose coordinates are ``x``, ``y``, ``z`` (squared in place),
    summed (x2 + y2) + z2 as np.linalg.norm sums a vector's, so that their roots are its values
    to the bit."""
    x *= x
    y *= y
    z *= z
    x += y
    x += z
    return x


def _farthest_by_cells(columns: np.ndarray, best: float) -> float:
    """The largest distance between two of the points whose coordinates are the rows of the
    (3, N) ``columns`` (at least ``best``, a distance between two of them), comparing only points
    of the cell pairs of a grid over them that can beat ``best``.

    The candidates of a round object all lie at about the same distance from its centre, so the
    bound by radii left every pair to compare (22 million for case C, 0.09 s); a pair of cells
    whose boxes are nearer than ``best`` holds no longer pair, and the far ones leave about 0.8
    million (Testing/benchmarks/bench_sr.py notes). Each pair's distance is computed from the
    difference of its points (no Gram products), the winner's again by ``np.linalg.norm``."""
    count = columns.shape[1]
    per_axis = int(min(10, max(1, round((count / 2) ** (1 / 3)))))  # ~2 points a cell on a surface
    low, high = columns.min(axis=1), columns.max(axis=1)
    size = (high - low) / per_axis
    size[size == 0] = 1.0
    cell = np.minimum(((columns - low[:, None]) / size[:, None]).astype(np.int64), per_axis - 1)
    flat = (cell[0] * per_axis + cell[1]) * per_axis + cell[2]
    order = np.argsort(flat, kind="stable")
    columns, flat = columns[:, order], flat[order]
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    sizes = np.diff(np.append(starts, count))
    box_low = np.minimum.reduceat(columns, starts, axis=1).T
    box_high = np.maximum.reduceat(columns, starts, axis=1).T
    span = np.maximum(box_high[:, None, :] - box_low[None, :, :], box_high[None, :, :] - box_low[:, None, :])
    farthest_squared = np.einsum("abk,abk->ab", span, span)  # the farthest two points of two cells can be
    first, second = np.nonzero(np.triu(farthest_squared >= best * best * (1 - 1e-9)))  # (margin for rounding)
    pairs = sizes[first] * sizes[second]
    ends = np.cumsum(pairs)
    done = 0
    while done < len(pairs):  # at most _PAIRS_AT_ONCE point pairs at once (memory), one cell pair at least
        stop = max(done + 1, int(np.searchsorted(ends, (ends[done - 1] if done else 0) + _PAIRS_AT_ONCE, "right")))
        a, b, n = first[done:stop], second[done:stop], pairs[done:stop]
        total = int(n.sum())
        local = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        across = np.repeat(sizes[b], n)
        i = np.repeat(starts[a], n) + local // across
        j = np.repeat(starts[b], n) + local % across
        squared = _squared_lengths(*(axis.take(i) - axis.take(j) for axis in columns))
        winner = int(np.argmax(squared))
        if squared[winner] > best * best:
            best = max(best, float(np.linalg.norm(columns[:, i[winner]] - columns[:, j[winner]])))
        done = stop
    return best


# --- markups ----------------------------------------------------------------------------

def _points(points_lps, minimum: int, name: str, exactly: bool = False) -> np.ndarray:
    points = np.asarray(points_lps, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3 or not np.all(np.isfinite(points)):
        raise InputError(f"markup {name!r}: control points must be finite (N, 3) LPS coordinates")
    if len(points) < minimum or (exactly and len(points) != minimum):
        wanted = f"exactly {minimum}" if exactly else f"at least {minimum}"
        raise InputError(f"markup {name!r}: needs {wanted} control points, got {len(points)}")
    return points


def line_length(points_lps, *, name: str = "line") -> Quantity:
    """Distance (mm) between the two control points of a line."""
    points = _points(points_lps, 2, name, exactly=True)
    return Quantity(float(np.linalg.norm(points[1] - points[0])), "mm")


def curve_length(points_lps, *, closed: bool = False, name: str = "curve") -> Quantity:
    """Length (mm) of the polyline through the control points; ``closed`` adds the segment
    from the last point back to the first (the perimeter of a closed curve)."""
    points = _points(points_lps, 3 if closed else 2, name)
    if closed:
        points = np.vstack([points, points[:1]])
    return Quantity(float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()), "mm")


def closed_curve_perimeter(points_lps, *, name: str = "closed curve") -> Quantity:
    """Perimeter (mm) of the closed polyline through the control points."""
    return curve_length(points_lps, closed=True, name=name)


def closed_curve_area(points_lps, *, name: str = "closed curve") -> Quantity:
    """Area (mm2) of the polygon of the control points projected on their best-fit plane.

    The plane is the least-squares one through the centroid (normal = the direction of least
    spread); the area is the shoelace formula in that plane, so a self-intersecting polygon's
    loops count with their orientation's sign."""
    points = _points(points_lps, 3, name)
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    u, v = centred @ axes[0], centred @ axes[1]
    area = 0.5 * abs(float(np.dot(u, np.roll(v, -1)) - np.dot(v, np.roll(u, -1))))
    return Quantity(area, "mm2")


def angle_degrees(points_lps, *, name: str = "angle") -> Quantity:
    """Angle (degrees, 0-180) at the middle of three control points, between the rays to the
    first and to the third."""
    points = _points(points_lps, 3, name, exactly=True)
    a, b = points[0] - points[1], points[2] - points[1]
    if np.linalg.norm(a) == 0.0 or np.linalg.norm(b) == 0.0:
        raise InputError(f"markup {name!r}: a ray of the angle has zero length (two control points coincide)")
    angle = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), float(np.dot(a, b))))
    return Quantity(float(angle), "deg")


def roi_volume(markup: Markup) -> Quantity:
    """Volume (mm3) of an ROI box: edge lengths along its axes (non-unit axes scale them)."""
    if markup.kind != "roi":
        raise InputError(f"markup {markup.name!r}: a {markup.kind} has no box volume")
    edges = markup.roi_axes_lps * markup.roi_size  # columns: the box edges in LPS
    return Quantity(float(abs(np.linalg.det(edges))), "mm3")


def measure_markup(markup: Markup) -> dict[str, Quantity]:
    """The measurements of one markup by name: line and open curve {"length"}, closed curve
    {"perimeter", "area"} (of the ellipse for one marked so, :mod:`.ellipses`), angle {"angle"},
    ROI {"volume"}; point lists and planes {}."""
    name = markup.name
    if markup.kind == "line":
        return {"length": line_length(markup.points_lps, name=name)}
    if markup.kind == "curve":
        return {"length": curve_length(markup.points_lps, name=name)}
    if markup.kind == "closed_curve":
        ends = markup_ellipse(markup)
        if ends is not None:  # the ellipse itself, not the polygon of its axis ends
            area, perimeter = ellipse_area_perimeter(ends)
            return {"perimeter": Quantity(perimeter, "mm"), "area": Quantity(area, "mm2")}
        return {"perimeter": closed_curve_perimeter(markup.points_lps, name=name),
                "area": closed_curve_area(markup.points_lps, name=name)}
    if markup.kind == "angle":
        return {"angle": angle_degrees(markup.points_lps, name=name)}
    if markup.kind == "roi":
        return {"volume": roi_volume(markup)}
    return {}


def measure_markups(markups: Sequence[Markup]) -> dict[str, dict[str, Quantity]]:
    """:func:`measure_markup` for several markups, by markup name (names must be unique)."""
    results: dict[str, dict[str, Quantity]] = {}
    for markup in markups:
        if markup.name in results:
            raise InputError(f"two markups are named {markup.name!r}; measurements are keyed by name")
        results[markup.name] = measure_markup(markup)
    return results
