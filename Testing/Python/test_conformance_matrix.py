"""The conformance matrix: every output on every geometry, read by every independent reader.

Our own round trip cannot see a value that we write wrong and read back the same way, so here
nothing of ours reads our files back. For each case (a series built by the test) and each output
(overlay copies; SEG BINARY/LABELMAP/FRACTIONAL with each codec; SR; RTSTRUCT; GSPS), every
reader that supports the object must accept it and give back our input exactly in patient space
(LPS): the masks voxel for voxel, the markups' control points to 1e-3 mm.

Readers: highdicom (segread + get_volume; srread; the GSPS), dcmqi (segimage2itkimage on
uncompressed SEGs, read back with SimpleITK; tid1500reader), dciodvfy (no error), PixelMed's
DicomSRValidator (no error), dsrdump, dcmpschk, dcm2pnm (each overlay plane drawn where the
segment is), pydicom's overlay_array, and, for RTSTRUCT and GSPS, pydicom plus numpy in this file:
contours filled by the centre-inside even-odd rule, graphic coordinates mapped through each
referenced image's own position, orientation and spacing.

The results are collected into ``MATRIX`` and the last test checks that README's matrix table is
the one this run produces (``python3 -m pytest Testing/Python/test_conformance_matrix.py
--update-matrix`` is not a thing: run with ``DAE_WRITE_MATRIX=1`` to rewrite README's table).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pydicom
import pytest

from conftest import IN_CI, REPO, SHARED_INTEROP, require_tool, rotation
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Markup, Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.files.markups_io import write_markups

MM = 1e-3  # markup tolerance in patient space


# --- the cases ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    shape: Tuple[int, int, int]                       # (slices, rows, columns)
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)  # (column, row, slice) mm
    directions: Tuple = ((1, 0, 0), (0, 1, 0), (0, 0, 1))  # row, column, slice direction (LPS)
    modality: str = "CT"
    drop_spacing_between_slices: bool = False
    bits_stored: Optional[int] = None
    enhanced: bool = False


def _oblique():
    r = rotation((1, 2, 3), 30)
    return tuple(tuple(r[:, n]) for n in range(3))


CASES = [
    Case("axial 1 mm", (6, 34, 40)),
    Case("2.5 mm, no Spacing Between Slices", (6, 34, 40), (0.8, 0.8, 2.5), drop_spacing_between_slices=True),
    Case("odd size 23x38 (under 32 px)", (5, 23, 38), (0.9, 0.9, 1.25)),
    Case("oblique", (6, 36, 34), (0.9, 1.1, 1.5), _oblique()),
    Case("sagittal", (6, 34, 40), (1.0, 1.0, 2.0), ((0, 1, 0), (0, 0, -1), (-1, 0, 0))),
    Case("coronal", (6, 34, 40), (1.0, 1.0, 2.0), ((1, 0, 0), (0, 0, -1), (0, 1, 0))),
    Case("flipped rows and columns", (6, 34, 40), (1.0, 1.0, 1.5), ((-1, 0, 0), (0, -1, 0), (0, 0, 1))),
    Case("enhanced multi-frame CT", (2, 512, 512), enhanced=True),
    Case("MR", (6, 34, 40), (1.2, 1.2, 3.0), modality="MR"),
    Case("single slice", (1, 34, 40), (0.7, 0.7, 2.0)),
    Case("non-square pixels", (6, 34, 40), (0.6, 0.9, 2.0)),
    Case("12 bits stored", (6, 34, 40), (1.0, 1.0, 1.25), bits_stored=12),
]

OUTPUTS = ["overlay", "SEG binary", "SEG binary jpeg2000", "SEG labelmap", "SEG labelmap jpegls",
           "SEG labelmap rle", "SEG labelmap jpeg2000", "SEG fractional", "SEG fractional jpegls",
           "SR", "RTSTRUCT", "GSPS"]

#: output -> column readers, in table order.
READERS: Dict[str, List[str]] = {
    "overlay": ["pydicom overlay_array", "dcm2pnm +O", "dciodvfy"],
    "SEG": ["highdicom get_volume", "dcmqi segimage2itkimage", "dciodvfy"],
    "SR": ["highdicom srread", "dcmqi tid1500reader", "PixelMed DicomSRValidator", "dsrdump", "dciodvfy"],
    "RTSTRUCT": ["contours filled (pydicom)", "dciodvfy"],
    "GSPS": ["graphics placed (pydicom)", "highdicom", "dcmpschk", "dciodvfy"],
}

#: (case, output) -> {reader: "ok" | "n/a: why" | "FAIL: why"}; filled as the tests run.
MATRIX: Dict[Tuple[str, str], Dict[str, str]] = {}


def _family(output: str) -> str:
    return output.split()[0]


def _case_id(case: Case) -> str:
    return re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")


def _build_series(case: Case, folder: Path) -> Path:
    """Write the case's series; returns its folder."""
    series_dir = folder / "series"
    if case.enhanced:
        source = SHARED_INTEROP / "pydicom-data" / "eCT_Supplemental.dcm"
        if not source.exists():
            if IN_CI:
                pytest.fail(f"{source} is missing in CI")
            pytest.skip(f"interop file absent: {source}")
        series_dir.mkdir(parents=True)
        shutil.copy(source, series_dir / "ect.dcm")
        return series_dir
    directions = np.array(case.directions, dtype=float).T  # columns: row, column, slice directions
    shape = case.shape
    extent = (np.array(shape[::-1]) - 1) * np.array(case.spacing)
    origin = -directions @ (extent / 2) + np.array([3.0, -7.0, 11.0])
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, origin, case.spacing, directions)
    rng = np.random.default_rng(len(case.name))
    volume = rng.integers(-200, 1500 if case.bits_stored else 400, shape).astype(np.int16)
    dicomize_array(volume, geometry, series_dir, modality=case.modality, patient_name="Matrix^Case",
                   series_description=case.name)
    if case.drop_spacing_between_slices or case.bits_stored:
        for path in sorted(series_dir.iterdir()):
            ds = pydicom.dcmread(path)
            if case.drop_spacing_between_slices and "SpacingBetweenSlices" in ds:
                del ds.SpacingBetweenSlices
            if case.bits_stored:
                ds.BitsStored, ds.HighBit = case.bits_stored, case.bits_stored - 1
                ds.PixelRepresentation = 1
            ds.save_as(path)
        if case.drop_spacing_between_slices:
            assert all("SpacingBetweenSlices" not in pydicom.dcmread(p, stop_before_pixels=True)
                       for p in series_dir.iterdir())
    return series_dir


def _annotations(geometry: VolumeGeometry):
    """Three segments (C overlaps A; A has a hole where it is large enough) and three markups, all
    on voxel centres, on any grid of at least 1 x 20 x 20 voxels."""
    k_count, rows, columns = geometry.shape
    masks = [np.zeros(geometry.shape, bool) for _ in range(3)]
    k_lo, k_hi = (0, 1) if k_count < 3 else (1, k_count - 1)
    r0, c0 = rows // 4, columns // 4
    masks[0][k_lo:k_hi, r0:r0 + rows // 3, c0:c0 + columns // 3] = True          # A
    masks[0][k_lo:k_hi, r0 + 2:r0 + 4, c0 + 2:c0 + 4] = False                       # its hole
    masks[1][k_lo:k_hi, rows - 6:rows - 2, columns - 7:columns - 2] = True        # B, apart
    masks[2][k_lo:k_hi, r0 + rows // 6:r0 + rows // 2, c0 + 3:c0 + 6] = True      # C over A
    segments = [Segment("a", "Tumor A"), Segment("b", "Kidney B"), Segment("c", "Cyst C")]
    segmentation = Segmentation.from_masks(geometry, masks, segments)
    k = k_lo
    to_lps = geometry.ijk_to_lps_points

    def lps(*ijk):
        return to_lps(np.array(ijk, dtype=float))

    markups = [
        Markup("line", "Line 1", lps([3, 3, k], [12, 9, k])),
        Markup("closed_curve", "Outline 1", lps([4, 12, k], [9, 12, k], [10, 16, k], [5, 17, k])),
        Markup("point_list", "Points 1", lps([2, 2, k], [15, 5, k])),
    ]
    return segmentation, masks, markups


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{case name: (series folder, loaded series, segmentation, masks, markups, markups file)}."""
    cache = {}

    def get(case: Case):
        if case.name not in cache:
            folder = tmp_path_factory.mktemp(_case_id(case))
            series_dir = _build_series(case, folder)
            series = load_series(series_dir)
            segmentation, masks, markups = _annotations(series.geometry)
            markups_file = folder / "markups.mrk.json"
            write_markups(markups_file, markups)
            cache[case.name] = (series_dir, series, segmentation, masks, markups, markups_file)
        return cache[case.name]

    return get


# --- independent readers -----------------------------------------------------------------------

def _run(command: List[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)


def dciodvfy_errors(path: Path) -> List[str]:
    out = _run([require_tool("dciodvfy"), str(path)])
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def assert_no_dciodvfy_errors(path: Path) -> None:
    errors = dciodvfy_errors(path)
    assert not errors, errors[:3]


@functools.lru_cache(maxsize=None)
def source_errors(series_dir: Path) -> set:
    """dciodvfy's errors on the source images (an error the source already has is not ours)."""
    found = set()
    for path in sorted(series_dir.iterdir()):
        found |= {re.sub(r"\s+", " ", e) for e in dciodvfy_errors(path)}
    return found


def image_planes(series_dir: Path) -> Dict[str, List[dict]]:
    """SOP Instance UID -> per frame {position, row direction, column direction, spacing}, from the
    image headers alone (pydicom), for placing RTSTRUCT contours and GSPS graphics."""
    planes = {}
    for path in sorted(series_dir.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames = []
        if "PerFrameFunctionalGroupsSequence" in ds:
            shared = ds.SharedFunctionalGroupsSequence[0]
            for item in ds.PerFrameFunctionalGroupsSequence:
                def attr(sequence, keyword):
                    for source in (item, shared):
                        if sequence in source:
                            return getattr(getattr(source, sequence)[0], keyword)
                orientation = np.array(attr("PlaneOrientationSequence", "ImageOrientationPatient"), float)
                frames.append({"position": np.array(attr("PlanePositionSequence", "ImagePositionPatient"), float),
                               "row": orientation[:3], "column": orientation[3:],
                               "spacing": np.array(attr("PixelMeasuresSequence", "PixelSpacing"), float)})
        else:
            orientation = np.array(ds.ImageOrientationPatient, float)
            frames.append({"position": np.array(ds.ImagePositionPatient, float), "row": orientation[:3],
                           "column": orientation[3:], "spacing": np.array(ds.PixelSpacing, float)})
        planes[str(ds.SOPInstanceUID)] = frames
    return planes


def pixel_to_lps(plane: dict, column: float, row: float) -> np.ndarray:
    """DICOM's image plane equation (PS3.3 C.7.6.2.1.1): column and row are 0-based pixel indices."""
    return (plane["position"] + plane["row"] * plane["spacing"][1] * column
            + plane["column"] * plane["spacing"][0] * row)


def lps_to_pixel(plane: dict, points: np.ndarray) -> np.ndarray:
    """(N, 3) LPS -> (N, 3) (column, row, distance from the plane in mm)."""
    d = np.asarray(points, float) - plane["position"]
    normal = np.cross(plane["row"], plane["column"])
    return np.column_stack([d @ plane["row"] / plane["spacing"][1], d @ plane["column"] / plane["spacing"][0],
                            d @ normal])


def even_odd_fill(polygons: List[np.ndarray], rows: int, columns: int) -> np.ndarray:
    """Pixels whose centre is inside an odd number of the (N, 2) (column, row) polygons."""
    y, x = np.mgrid[0:rows, 0:columns].astype(float)
    inside = np.zeros((rows, columns), bool)
    for polygon in polygons:
        crossings = np.zeros((rows, columns), bool)
        for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0)):
            if y0 == y1:
                continue
            straddles = (y0 > y) != (y1 > y)
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            crossings ^= straddles & (x < x_cross)
        inside ^= crossings
    return inside


def slice_of_plane(series, plane: dict) -> int:
    """Index k of the series slice whose plane holds ``plane``'s position."""
    ijk = series.geometry.lps_to_ijk_points(plane["position"][None])[0]
    k = int(round(ijk[2]))
    assert abs(ijk[2] - k) < 1e-3
    return k


def check_mask_volume(array: np.ndarray, index_to_lps: Callable[[np.ndarray], np.ndarray], series,
                      expected: np.ndarray) -> None:
    """``array`` (any axis order) whose voxel indices map to LPS by ``index_to_lps`` holds exactly
    ``expected`` (K, J, I) on the series grid: every voxel lands on a grid voxel, and the values agree."""
    indices = np.argwhere(np.ones(array.shape, bool))
    ijk = series.geometry.lps_to_ijk_points(index_to_lps(indices.astype(float)))
    rounded = np.rint(ijk).astype(int)
    assert np.abs(ijk - rounded).max() < 1e-3, "voxels off the series grid"
    got = np.zeros(series.geometry.shape, bool)
    inside = np.all((rounded >= 0) & (rounded < np.array(series.geometry.shape[::-1])), axis=1)
    values = array.reshape(-1) != 0
    assert not values[~inside].any(), "segment voxels outside the series"
    got[rounded[inside, 2], rounded[inside, 1], rounded[inside, 0]] = values[inside]
    np.testing.assert_array_equal(got, expected)


# --- per output: write, then every reader ---------------------------------------------------------

def _record(case: Case, output: str, results: Dict[str, str]) -> None:
    MATRIX[(case.name, output)] = results
    failed = {reader: result for reader, result in results.items() if result.startswith("FAIL")}
    assert not failed, failed


def _attempt(results: Dict[str, str], reader: str, check: Callable[[], Optional[str]]) -> None:
    try:
        note = check()
        results[reader] = "ok" if note is None else note
    except pytest.skip.Exception:
        raise
    except Exception as exc:  # a reader's failure is recorded, then reported by _record
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        results[reader] = f"FAIL: {type(exc).__name__} at line {where.lineno}: {text}"


def check_overlay(case, built, tmp_path) -> Dict[str, str]:
    series_dir, series, segmentation, masks, markups, _ = built(case)
    result = api.export_overlay(series, segmentation, markups, tmp_path / "overlay")
    groups = {name: int(group, 16) for out in result.series for group, name in out.planes.items()}
    written = [Path(p) for out in result.series for p in out.files]
    results: Dict[str, str] = {}

    def overlays():
        for path in written:
            ds = pydicom.dcmread(path)
            for n, (segment, mask) in enumerate(zip(segmentation.segments, masks)):
                group = groups[segment.name]
                frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
                planes = image_planes(path.parent)[str(ds.SOPInstanceUID)]
                if (group, 0x3000) not in ds:
                    assert not any(mask[slice_of_plane(series, p)].any() for p in planes)
                    continue
                drawn = ds.overlay_array(group)
                drawn = drawn.reshape(-1, ds.Rows, ds.Columns) if frames > 1 else drawn[None]
                for f, plane in enumerate(planes):
                    np.testing.assert_array_equal(drawn[f] != 0, mask[slice_of_plane(series, plane)],
                                                  err_msg=f"{segment.name} in {path.name} frame {f}")

    def dcm2pnm():
        tool = require_tool("dcm2pnm")
        path = written[len(written) // 2]
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        planes = image_planes(path.parent)[str(ds.SOPInstanceUID)]
        for segment, mask in zip(segmentation.segments, masks):
            group = groups[segment.name]
            if (group, 0x0010) not in ds:
                continue
            for f, plane in enumerate(planes):
                renders = []
                for density in ("1", "0"):
                    out = subprocess.run([tool, "+F", str(f + 1), "+O", str((group - 0x6000) // 2 + 1), "+Omr",
                                          "+Osf", density, "+opb", str(path)], capture_output=True, check=True)
                    fields = out.stdout.split()
                    renders.append(np.array(fields[4:], dtype=np.uint16).reshape(int(fields[2]), int(fields[1])))
                np.testing.assert_array_equal(renders[0] != renders[1], mask[slice_of_plane(series, plane)])

    def dciodvfy():
        known = source_errors(series_dir)
        for path in written:
            new = [e for e in dciodvfy_errors(path) if re.sub(r"\s+", " ", e) not in known]
            assert not new, f"{path.name}: {new[:3]}"

    _attempt(results, "pydicom overlay_array", overlays)
    _attempt(results, "dcm2pnm +O", dcm2pnm)
    _attempt(results, "dciodvfy", dciodvfy)
    return results


#: What Debian's dciodvfy (dicom3tools 2022, older than Supplement 243) says of every Label Map
#: Segmentation: it does not know the SOP class, nor segment 0 (the background the IOD defines).
PRE_SUPPLEMENT_243 = ("Information Object Not found", "SegmentNumber not monotonically increasing from one by one")

SEG_VARIANTS = {
    "SEG binary": ("binary", "none"), "SEG binary jpeg2000": ("binary", "jpeg2000"),
    "SEG labelmap": ("labelmap", "none"), "SEG labelmap jpegls": ("labelmap", "jpegls"),
    "SEG labelmap rle": ("labelmap", "rle"), "SEG labelmap jpeg2000": ("labelmap", "jpeg2000"),
    "SEG fractional": ("fractional", "none"), "SEG fractional jpegls": ("fractional", "jpegls"),
}


def check_seg(case, output, built, tmp_path) -> Dict[str, str]:
    import highdicom as hd
    import SimpleITK as sitk

    series_dir, series, segmentation, masks, markups, _ = built(case)
    seg_type, compression = SEG_VARIANTS[output]
    if seg_type == "labelmap":  # a label map has no overlap: A and B only
        segmentation = Segmentation.from_masks(series.geometry, masks[:2], segmentation.segments[:2])
    elif seg_type == "fractional":
        segmentation = Segmentation.from_fractions(series.geometry, [m.astype(np.float32) for m in masks],
                                                   segmentation.segments)
    expected = masks[:len(segmentation.segments)]
    path = tmp_path / "seg.dcm"
    results: Dict[str, str] = {}
    if compression == "jpeg2000" and min(series.geometry.shape[1:]) < 32:
        # JPEG 2000 cannot code frames under 32 px: refused before any work, naming --compress.
        from DicomAnnotEmbedLib.core.errors import InputError

        with pytest.raises(InputError, match="--compress"):
            api.export_seg(series, segmentation, path, seg_type=seg_type, compression=compression)
        assert not path.exists()
        return {reader: "n/a: refused (frames under 32 px)" for reader in READERS["SEG"]}
    api.export_seg(series, segmentation, path, seg_type=seg_type, compression=compression)

    def highdicom():
        seg = hd.seg.segread(path)
        numbers = {str(d.SegmentLabel): int(d.SegmentNumber) for d in seg.SegmentSequence}
        for segment, mask in zip(segmentation.segments, expected):
            volume = seg.get_volume(segment_numbers=[numbers[segment.name]], combine_segments=True,
                                    relabel=True)
            check_mask_volume(volume.array, volume.map_indices_to_reference, series, mask)

    def dcmqi():
        if compression != "none":
            return "n/a: dcmqi's DCMTK cannot decode this codec"
        tool = require_tool("segimage2itkimage")
        out_dir = tmp_path / "dcmqi"
        out_dir.mkdir()
        # Merged, a FRACTIONAL SEG's segments would share one image of 255s: one image each then.
        merge = [] if seg_type == "fractional" else ["--mergeSegments"]
        done = _run([tool, "--inputDICOM", str(path), "--outputDirectory", str(out_dir), "--outputType", "nrrd",
                     *merge])
        assert done.returncode == 0, done.stderr[-300:]
        meta = json.loads((out_dir / "meta.json").read_text())
        # One image per group of non-overlapping segments (n.nrrd for group n); a segment is its
        # labelID in it, or, in a FRACTIONAL SEG, its non-zero (scaled) fractions.
        # Unmerged, n.nrrd holds the n-th segment of meta.json's list.
        groups = meta["segmentAttributes"] if merge else [[a] for g in meta["segmentAttributes"] for a in g]
        selected_of = {}
        for number, group in enumerate(groups, 1):
            image = sitk.ReadImage(str(out_dir / f"{number}.nrrd"))
            array = sitk.GetArrayFromImage(image)
            for attributes in group:
                value = array != 0 if seg_type == "fractional" else array == attributes["labelID"]
                selected_of[attributes["SegmentLabel"]] = (value, image)
        for segment, mask in zip(segmentation.segments, expected):
            selected, image = selected_of[segment.name]

            def to_lps(kji, image=image):
                return np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in p[::-1]))
                                 for p in kji])
            check_mask_volume(selected, to_lps, series, mask)

    def dciodvfy():
        errors = dciodvfy_errors(path)
        if seg_type == "labelmap" and errors and all(any(k in e for k in PRE_SUPPLEMENT_243) for e in errors):
            return "n/a: dciodvfy 2022 predates Supplement 243"
        assert not errors, errors[:3]

    _attempt(results, "highdicom get_volume", highdicom)
    _attempt(results, "dcmqi segimage2itkimage", dcmqi)
    _attempt(results, "dciodvfy", dciodvfy)
    return results


def check_sr(case, built, tmp_path) -> Dict[str, str]:
    import highdicom as hd

    series_dir, series, segmentation, masks, markups, markups_file = built(case)
    seg_path = tmp_path / "seg.dcm"
    api.export_seg(series, segmentation, seg_path, seg_type="binary")
    sr_path = tmp_path / "sr.dcm"
    # segments and markups: two documents, the markups in their own (see README, "SR")
    sr_paths = api.export_sr(series, seg_path, sr_path, markups=[markups_file]).paths
    assert sr_paths == [sr_path, tmp_path / "sr_markups.dcm"]
    results: Dict[str, str] = {}

    def highdicom():
        found = {}

        def walk(items):
            for item in items:
                if item.ValueType == "SCOORD3D":
                    found.setdefault(len(item.GraphicData), []).append(np.array(item.GraphicData, float).reshape(-1, 3))
                if "ContentSequence" in item:
                    walk(item.ContentSequence)
        for path in sr_paths:
            sr = hd.sr.srread(path)
            assert isinstance(sr, hd.sr.Comprehensive3DSR)
            walk(sr.ContentSequence)
        assert len(hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()) == len(segmentation.segments)
        coordinates = [c for group in found.values() for c in group]
        for markup in markups:
            wanted = markup.points_lps
            assert any(c.shape[0] >= len(wanted) and np.abs(c[:len(wanted)] - wanted).max() < MM for c in coordinates) \
                or any(c.shape == (1, 3) and np.abs(c - p).max() < MM for p in wanted for c in coordinates), \
                f"{markup.name}: no SCOORD3D with its control points"

    def tid1500reader():
        tool = require_tool("tid1500reader")
        out = tmp_path / "sr.json"
        counts = []
        for path in sr_paths:
            done = _run([tool, "--inputDICOM", str(path), "--outputMetadata", str(out)])
            assert done.returncode == 0, f"{path.name}: {done.stderr[-300:]}"
            counts.append(len(json.loads(out.read_text())["Measurements"]))
        assert counts[0] == len(segmentation.segments) and counts[1] >= 1, f"{counts} groups"

    def pixelmed():
        java = require_tool("java")
        jar = Path("/usr/share/java/pixelmed.jar")
        if not jar.exists():
            if IN_CI:
                raise AssertionError("pixelmed.jar missing")
            pytest.skip("pixelmed-apps not installed")
        for path in sr_paths:
            done = _run([java, "-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0",
                         "-Djdk.xml.xpathTotalOpLimit=0", "-cp", str(jar),
                         "com.pixelmed.validate.DicomSRValidator", str(path)])
            errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
            assert "IOD validation complete" in done.stdout + done.stderr, f"{path.name}: {done.stderr[-300:]}"
            assert not errors, f"{path.name}: {errors[:3]}"

    def dsrdump():
        for path in sr_paths:
            done = _run([require_tool("dsrdump"), str(path)])
            assert done.returncode == 0 and "E:" not in done.stderr, f"{path.name}: {done.stderr[-300:]}"

    def dciodvfy():
        for path in sr_paths:
            assert_no_dciodvfy_errors(path)

    _attempt(results, "highdicom srread", highdicom)
    _attempt(results, "dcmqi tid1500reader", tid1500reader)
    _attempt(results, "PixelMed DicomSRValidator", pixelmed)
    _attempt(results, "dsrdump", dsrdump)
    _attempt(results, "dciodvfy", dciodvfy)
    return results


def check_rtstruct(case, built, tmp_path) -> Dict[str, str]:
    series_dir, series, segmentation, masks, markups, markups_file = built(case)
    path = tmp_path / "rtstruct.dcm"
    api.export_rtstruct(series, segmentation, path, markups=[markups_file])
    results: Dict[str, str] = {}

    def contours():
        ds = pydicom.dcmread(path)
        planes = image_planes(series_dir)
        names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        rows, columns = series.geometry.shape[1:]
        for roi in ds.ROIContourSequence:
            name = names[int(roi.ReferencedROINumber)]
            if name not in [s.name for s in segmentation.segments]:
                continue
            mask = masks[[s.name for s in segmentation.segments].index(name)]
            got = np.zeros(series.geometry.shape, bool)
            by_slice: Dict[int, List[np.ndarray]] = {}
            for contour in getattr(roi, "ContourSequence", []):
                assert contour.ContourGeometricType == "CLOSED_PLANAR"
                reference = contour.ContourImageSequence[0]
                frame = int(getattr(reference, "ReferencedFrameNumber", 1) or 1) - 1
                plane = planes[str(reference.ReferencedSOPInstanceUID)][frame]
                pixel = lps_to_pixel(plane, np.array(contour.ContourData, float).reshape(-1, 3))
                assert np.abs(pixel[:, 2]).max() < MM, "contour off its image's plane"
                by_slice.setdefault(slice_of_plane(series, plane), []).append(pixel[:, :2])
            for k, polygons in by_slice.items():
                got[k] = even_odd_fill(polygons, rows, columns)
            np.testing.assert_array_equal(got, mask, err_msg=name)

    _attempt(results, "contours filled (pydicom)", contours)
    _attempt(results, "dciodvfy", lambda: assert_no_dciodvfy_errors(path))
    return results


def check_gsps(case, built, tmp_path) -> Dict[str, str]:
    import highdicom as hd

    series_dir, series, segmentation, masks, markups, markups_file = built(case)
    path = tmp_path / "pr.dcm"
    # and an oval: a closed curve marked as an ellipse, its 4 control points the axis ends
    k = 0 if series.geometry.shape[0] < 3 else 1
    oval = Markup("closed_curve", "Oval 1", series.geometry.ijk_to_lps_points(
        np.array([[12, 14, k], [18, 14, k], [15, 12, k], [15, 16, k]], dtype=float)), shape="ellipse")
    api.export_gsps(series, [markups_file, oval], path)
    markups = markups + [oval]
    results: Dict[str, str] = {}

    def placed():
        ds = pydicom.dcmread(path)
        planes = image_planes(series_dir)
        points, types = [], set()
        for annotation in ds.GraphicAnnotationSequence:
            for reference in annotation.ReferencedImageSequence:
                frame = int(getattr(reference, "ReferencedFrameNumber", 1) or 1) - 1
                plane = planes[str(reference.ReferencedSOPInstanceUID)][frame]
                for graphic in getattr(annotation, "GraphicObjectSequence", []):
                    assert graphic.GraphicAnnotationUnits == "PIXEL"
                    data = np.array(graphic.GraphicData, float).reshape(-1, 2)
                    types.add(str(graphic.GraphicType))
                    # PS3.3 C.10.5.1.2: pixel coordinates, (0, 0) the top left corner of the top left
                    # pixel, so a pixel centre is at (column + 0.5, row + 0.5).
                    points += [pixel_to_lps(plane, c - 0.5, r - 0.5) for c, r in data]
        assert "ELLIPSE" in types, types  # the oval's 4 points: its axis ends
        points = np.array(points)
        for markup in markups:
            for p in markup.points_lps:
                assert np.linalg.norm(points - p, axis=1).min() < MM, f"{markup.name}: {p} not drawn"

    def highdicom():
        # highdicom 0.28 has no presentation state reader: each graphic and text item is viewed as
        # highdicom's own class (as its from_dataset methods do elsewhere) and read through its accessors.
        import copy

        def viewed(cls, item):
            item = copy.deepcopy(item)
            item.__class__ = cls
            return item

        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"
        count = 0
        for annotation in ds.GraphicAnnotationSequence:
            for item in getattr(annotation, "GraphicObjectSequence", []):
                graphic = viewed(hd.pr.GraphicObject, item)
                assert graphic.units == hd.pr.AnnotationUnitsValues.PIXEL
                np.testing.assert_allclose(graphic.graphic_data, np.array(item.GraphicData, float).reshape(-1, 2))
                count += 1
            for item in getattr(annotation, "TextObjectSequence", []):
                assert viewed(hd.pr.TextObject, item).text_value
        assert count >= len(markups)

    def dcmpschk():
        done = _run([require_tool("dcmpschk"), str(path)])
        assert done.returncode == 0 and "Error" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-300:]

    _attempt(results, "graphics placed (pydicom)", placed)
    _attempt(results, "highdicom", highdicom)
    _attempt(results, "dcmpschk", dcmpschk)
    _attempt(results, "dciodvfy", lambda: assert_no_dciodvfy_errors(path))
    return results


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matrix(case, output, built, tmp_path):
    family = _family(output)
    if family == "overlay":
        results = check_overlay(case, built, tmp_path)
    elif family == "SEG":
        results = check_seg(case, output, built, tmp_path)
    elif family == "SR":
        results = check_sr(case, built, tmp_path)
    elif family == "RTSTRUCT":
        results = check_rtstruct(case, built, tmp_path)
    else:
        results = check_gsps(case, built, tmp_path)
    _record(case, output, results)


# --- README's table ------------------------------------------------------------------------------

def matrix_table() -> str:
    """Markdown: one row per case, one column per output; a cell lists the readers that read it
    back exactly (``*``: with the validator's own limitation README explains); a reader that does
    not apply is not listed, "-" where none applies."""
    short = {"pydicom overlay_array": "pydicom", "dcm2pnm +O": "dcm2pnm", "highdicom get_volume": "highdicom",
             "dcmqi segimage2itkimage": "dcmqi", "highdicom srread": "highdicom", "dcmqi tid1500reader": "dcmqi",
             "PixelMed DicomSRValidator": "PixelMed", "contours filled (pydicom)": "filled",
             "graphics placed (pydicom)": "placed"}
    lines = ["| case | " + " | ".join(OUTPUTS) + " |", "|---|" + "---|" * len(OUTPUTS)]
    for case in CASES:
        cells = []
        for output in OUTPUTS:
            results = MATRIX.get((case.name, output), {})
            ok = [short.get(r, r) + ("" if v == "ok" else "*") for r, v in results.items() if v.startswith("ok")]
            failed = [short.get(r, r) for r, v in results.items() if v.startswith("FAIL")]
            cell = ", ".join(ok) if ok else "-"
            if failed:
                cell += " **FAILED: " + ", ".join(failed) + "**"
            cells.append(cell)
        lines.append(f"| {case.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


MATRIX_BEGIN = "<!-- conformance-matrix: generated by Testing/Python/test_conformance_matrix.py -->"
MATRIX_END = "<!-- /conformance-matrix -->"


def test_readme_matrix_is_this_runs_result():
    if len(MATRIX) < len(CASES) * len(OUTPUTS):
        pytest.skip("only part of the matrix ran (README's table needs the whole matrix)")
    table = matrix_table()
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    if os.environ.get("DAE_WRITE_MATRIX") == "1":
        start, end = text.index(MATRIX_BEGIN) + len(MATRIX_BEGIN), text.index(MATRIX_END)
        readme.write_text(text[:start] + "\n" + table + "\n" + text[end:], encoding="utf-8")
        text = readme.read_text(encoding="utf-8")
    assert MATRIX_BEGIN in text and MATRIX_END in text
    current = text[text.index(MATRIX_BEGIN) + len(MATRIX_BEGIN):text.index(MATRIX_END)].strip()
    assert current == table, "README's conformance matrix differs from this run's: rerun with DAE_WRITE_MATRIX=1"
