"""Overlay-embedded DICOM, both ways, on the sample and on other tools' files."""
from __future__ import annotations

import logging
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from conftest import interop, require_tool, tree_hashes
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import GeometryError, OutputError, TooManySegmentsError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import AnnotationSet, Segment, Segmentation
from DicomAnnotEmbedLib.encodings.overlay import KeepUidsWarning, export_overlays, import_overlays
from DicomAnnotEmbedLib.files.segio import load_segmentation
from DicomAnnotEmbedLib.core.series import load_series


def assert_same_segments(expected: Segmentation, actual: Segmentation, *, metadata=True):
    assert [s.name for s in actual.segments] == [s.name for s in expected.segments]
    for e, a in zip(expected.segments, actual.segments):
        np.testing.assert_array_equal(actual.mask(a), expected.mask(e), err_msg=e.name)
        if metadata:
            assert a.color == pytest.approx(e.color, abs=1e-6)
            assert a.terminology == e.terminology


@pytest.fixture(scope="module")
def sample_export(sample_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("overlay") / "out"
    before = tree_hashes(sample_case.folder)
    result = api.export_overlay(sample_case.series_dir, sample_case.segmentation_path,
                                [sample_case.markups_path], out)
    assert tree_hashes(sample_case.folder) == before  # inputs never change
    return result, out


def test_sample_round_trip_is_exact(sample_case, sample_export, tmp_path):
    _, out = sample_export
    series = load_series(sample_case.series_dir)
    expected = api.load_annotations(series, sample_case.segmentation_path, [sample_case.markups_path])
    back = api.import_overlay(out, segmentation_out=tmp_path / "back.seg.nrrd", markups_out=tmp_path / "back.mrk.json")
    assert back.geometry.same_as(series.geometry)
    assert_same_segments(expected.segmentation, back.segmentation)
    assert expected.segmentation.has_overlap and back.segmentation.has_overlap
    # files written by the import read back the same
    assert_same_segments(expected.segmentation, load_segmentation(tmp_path / "back.seg.nrrd"))
    assert [m.name for m in back.markups] == [m.name for m in expected.markups]
    for e, a in zip(expected.markups, back.markups):
        assert a.kind == e.kind
        np.testing.assert_allclose(a.points_lps, e.points_lps, atol=1e-6)


def test_pydicom_overlay_array_equals_masks(sample_case, sample_export):
    result, out = sample_export
    source = load_series(sample_case.series_dir)
    annotations = api.load_annotations(source, sample_case.segmentation_path)
    written = load_series(out)
    by_name = {s.name: s for s in annotations.segmentation.segments}
    volume = source.read_volume()
    groups = result.series[0].planes
    seen = 0
    for k, ref in enumerate(written.slices):
        ds = pydicom.dcmread(written.files[ref.file_index])
        for group_hex, name in groups.items():
            group = int(group_hex, 16)
            if name not in by_name:
                continue
            mask = annotations.segmentation.mask(by_name[name])[k]
            if (group, 0x3000) not in ds:
                assert not mask.any()
                continue
            np.testing.assert_array_equal(ds.overlay_array(group).astype(bool), mask)
            assert ds[group, 0x0040].value == "R"
            assert ds[group, 0x1500].value == name
            if not mask.any():  # an empty plane, written only to keep the groups contiguous
                continue
            seen += 1
            assert int(ds[group, 0x1301].value) == int(mask.sum())
            assert float(ds[group, 0x1302].value) == pytest.approx(float(volume[k][mask].mean()), rel=1e-5, abs=1e-3)
            assert float(ds[group, 0x1303].value) == pytest.approx(float(volume[k][mask].std()), rel=1e-5, abs=1e-3)
    assert seen > 20


def test_output_is_a_new_derived_series(sample_case, sample_export):
    result, out = sample_export
    source = load_series(sample_case.series_dir)
    written = load_series(out)
    assert written.series_instance_uid != source.series_instance_uid
    source_uids = {ds.SOPInstanceUID for ds in source.datasets}
    for ds in written.datasets:
        assert ds.SOPInstanceUID not in source_uids
        assert ds.ImageType[0] == "DERIVED"
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in source_uids
        assert "Liver" in ds.SeriesDescription
    assert written.geometry.same_as(source.geometry)
    np.testing.assert_array_equal(written.read_volume(), source.read_volume())


def test_markups_become_graphics_planes(sample_case, sample_export):
    result, out = sample_export
    written = load_series(out)
    graphics = {g: n for g, n in result.series[0].planes.items() if n in
                ("Landmarks", "Tumor diameter", "Left lung outline", "Tumor box")}
    assert len(graphics) == 4
    drawn = {name: 0 for name in graphics.values()}
    for ds in written.datasets:
        for group_hex, name in graphics.items():
            group = int(group_hex, 16)
            if (group, 0x3000) in ds:
                assert ds[group, 0x0040].value == "G"
                drawn[name] += int(ds.overlay_array(group).sum())
    assert all(count > 0 for count in drawn.values()), drawn


def test_keep_uids_warns(sample_case, tmp_path):
    with pytest.warns(KeepUidsWarning, match="PACS"):
        api.export_overlay(sample_case.series_dir, sample_case.segmentation_path, out_dir=tmp_path / "o",
                           keep_uids=True)
    source = {ds.SOPInstanceUID for ds in load_series(sample_case.series_dir).datasets}
    assert {ds.SOPInstanceUID for ds in load_series(tmp_path / "o").datasets} == source


def test_existing_overlays_kept_and_scanner_overlay_imported(tmp_path):
    src = interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm")
    shutil.copy(src, tmp_path / "mr.dcm")
    series = load_series(tmp_path)
    scanner = import_overlays(series)
    [segment] = scanner.segmentation.segments
    assert segment.name == "Siemens MedCom Object Graphics"
    original = pydicom.dcmread(src).overlay_array(0x6000).astype(bool)
    np.testing.assert_array_equal(scanner.segmentation.mask(segment)[0], original)

    mask = np.zeros(series.geometry.shape, bool)
    mask[0, 200:260, 180:240] = True
    annotations = AnnotationSet(series.geometry, Segmentation.from_masks(series.geometry, [mask], [Segment("lesion", "Lesion")]))
    export_overlays(series, annotations, tmp_path / "out")
    ds = pydicom.dcmread(next((tmp_path / "out").iterdir()))
    np.testing.assert_array_equal(ds.overlay_array(0x6000).astype(bool), original)  # kept as it was
    np.testing.assert_array_equal(ds.overlay_array(0x6002).astype(bool), mask[0])   # first free group
    back = import_overlays(tmp_path / "out")
    assert sorted(s.name for s in back.segmentation.segments) == ["Lesion", "Siemens MedCom Object Graphics"]


def test_legacy_overlay_in_pixel_high_bits(sample_case, tmp_path):
    src = sorted(sample_case.series_dir.iterdir())[0]
    ds = pydicom.dcmread(src)
    stored = ds.pixel_array.astype(np.int16)
    pattern = np.zeros(stored.shape, bool)
    pattern[10:30, 40:90] = True
    # 12 stored bits, the overlay in bit 15: the old ACR-NEMA way.
    raw = (np.clip(stored + 1024, 0, 4095).astype(np.uint16)) | (pattern.astype(np.uint16) << 15)
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit, ds.RescaleIntercept = 0, 12, 11, -1024
    ds.PixelData = raw.tobytes()
    for tag, vr, value in ((0x0010, "US", ds.Rows), (0x0011, "US", ds.Columns), (0x0040, "CS", "R"),
                           (0x0050, "SS", [1, 1]), (0x0100, "US", 16), (0x0102, "US", 15)):
        ds.add_new((0x6000, tag), vr, value)
    (tmp_path / "legacy").mkdir()
    ds.save_as(tmp_path / "legacy" / "a.dcm")
    back = import_overlays(tmp_path / "legacy")
    [segment] = back.segmentation.segments
    assert segment.name == "Overlay 6000"
    np.testing.assert_array_equal(back.segmentation.mask(segment)[0], pattern)


def test_multiframe_overlays(tmp_path):
    shutil.copy(interop("pydicom-data", "eCT_Supplemental.dcm"), tmp_path / "ect.dcm")
    series = load_series(tmp_path)
    masks = np.zeros((2,) + series.geometry.shape, bool)
    masks[0, 0, 100:200, 150:300] = True
    masks[1, 1, 50:60, 50:70] = True
    masks[1, 0, 300:310, 300:305] = True
    seg = Segmentation.from_masks(series.geometry, list(masks), [Segment("a", "A"), Segment("b", "B")])
    export_overlays(series, AnnotationSet(series.geometry, seg), tmp_path / "out")
    ds = pydicom.dcmread(next((tmp_path / "out").iterdir()))
    assert int(ds[0x6000, 0x0015].value) == 2 and int(ds[0x6000, 0x0051].value) == 1
    # frame order in the file differs from slice order: frame f is slice k where slices[k].frame == f
    frames = ds.overlay_array(0x6000).astype(bool)
    for k, ref in enumerate(series.slices):
        np.testing.assert_array_equal(frames[ref.frame], masks[0, k])
    back = import_overlays(tmp_path / "out")
    assert_same_segments(seg, back.segmentation, metadata=False)


@pytest.mark.parametrize("label_file", ["liver_seg.nrrd", "spine_seg.nrrd", "liver_spine_seg.nrrd"])
def test_dcmqi_ct_round_trip(tmp_path, label_file):
    series = load_series(interop("dcmqi", "ct-3slice"))
    annotations = api.load_annotations(series, interop("dcmqi", label_file))
    assert sum(annotations.segmentation.voxel_counts().values()) > 0
    export_overlays(series, annotations, tmp_path / "out")
    back = import_overlays(tmp_path / "out")
    assert_same_segments(annotations.segmentation, back.segmentation)


@pytest.mark.parametrize("seg_file", ["Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd"])
def test_slicer_segmentation_on_dicomized_ctchest(tmp_path, seg_file):
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_file

    dicomize_file(interop("slicer", "CTChest4.nrrd"), tmp_path / "ct")
    series = load_series(tmp_path / "ct")
    segmentation = load_segmentation(interop("slicer", seg_file))
    assert segmentation.geometry.same_as(series.geometry)
    annotations = api.load_annotations(series, interop("slicer", seg_file))
    export_overlays(series, annotations, tmp_path / "out")
    back = import_overlays(tmp_path / "out")
    assert_same_segments(segmentation, back.segmentation)


def test_segmentation_on_another_grid_is_resampled(sample_case, tmp_path):
    series = load_series(sample_case.series_dir)
    full = load_segmentation(sample_case.segmentation_path)
    # a cropped copy on the same lattice is pasted back exactly
    g = full.geometry
    crop = (slice(5, 20), slice(30, 90), slice(20, 100))
    origin = g.ijk_to_lps_points([[20, 30, 5]])[0]
    affine = g.ijk_to_lps.copy()
    affine[:3, 3] = origin
    cropped = Segmentation(VolumeGeometry((15, 60, 80), affine), full.layers[(slice(None),) + crop].copy(),
                           [Segment(s.id, s.name, s.color, s.terminology, layer=s.layer, label_value=s.label_value)
                            for s in full.segments])
    placed = api.load_annotations(series, cropped).segmentation
    for s in full.segments:
        expected = np.zeros(g.shape, bool)
        expected[crop] = full.mask(s)[crop]
        np.testing.assert_array_equal(placed.mask(s.id), expected)
    # half the resolution in-plane, same patient space: nearest-neighbour resampling
    coarse_affine = g.ijk_to_lps.copy()
    coarse_affine[:3, :2] *= 2
    coarse_affine[:3, 3] += 0.5 * (g.ijk_to_lps[:3, 0] + g.ijk_to_lps[:3, 1])
    coarse = Segmentation(VolumeGeometry((32, 64, 64), coarse_affine),
                          full.layers[:, :, ::2, ::2].copy(),
                          [Segment(s.id, s.name, s.color, s.terminology, layer=s.layer, label_value=s.label_value)
                           for s in full.segments])
    resampled = api.load_annotations(series, coarse).segmentation
    liver = resampled.mask("Liver")
    agreement = (liver == full.mask("Liver")).mean()
    assert agreement > 0.99


def test_segmentation_that_cannot_lie_on_the_series(sample_case, tmp_path):
    series = load_series(sample_case.series_dir)
    far = VolumeGeometry.from_origin_spacing_directions((4, 4, 4), (500.0, 500.0, 500.0), (1, 1, 1), np.eye(3))
    seg = Segmentation.from_label_map(far, np.ones((4, 4, 4), np.uint8))
    with pytest.raises(GeometryError, match="cannot lie on the series"):
        api.load_annotations(series, seg)


def test_empty_segment_skipped_with_warning(sample_case, tmp_path, caplog):
    series = load_series(sample_case.series_dir)
    seg = load_segmentation(sample_case.segmentation_path)
    seg.segments.append(Segment("empty", "Empty", layer=0, label_value=99))
    with caplog.at_level(logging.WARNING):
        result = export_overlays(series, api.load_annotations(series, seg), tmp_path / "o")
    assert result.skipped_segments == ["Empty"]
    assert "'Empty' is empty" in caplog.text
    assert "Empty" not in result.series[0].planes.values()


def _many_segments(series, n):
    masks, segments = [], []
    for index in range(n):
        mask = np.zeros(series.geometry.shape, bool)
        mask[index % series.geometry.shape[0], 10 + index:14 + index, 10:20] = True
        masks.append(mask)
        segments.append(Segment(f"s{index}", f"Segment {index + 1}"))
    return Segmentation.from_masks(series.geometry, masks, segments)


def test_too_many_segments_error_or_split(sample_case, tmp_path):
    series = load_series(sample_case.series_dir)
    annotations = AnnotationSet(series.geometry, _many_segments(series, 20))
    with pytest.raises(TooManySegmentsError, match="20 segments and markups but only 16 free overlay groups"):
        export_overlays(series, annotations, tmp_path / "a")
    result = export_overlays(series, annotations, tmp_path / "b", split=True)
    assert len(result.series) == 2
    assert [len(s.planes) for s in result.series] == [16, 4]
    assert "Segment 17" in result.series[1].series_description
    merged = []
    for part in result.series:
        back = import_overlays(part.folder)
        merged += back.segmentation.segments
        for s in back.segmentation.segments:
            np.testing.assert_array_equal(back.segmentation.mask(s), annotations.segmentation.mask(s.name))
    assert len(merged) == 20


def test_output_folder_checks(sample_case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        api.export_overlay(sample_case.series_dir, sample_case.segmentation_path, out_dir=out)
    api.export_overlay(sample_case.series_dir, sample_case.segmentation_path, out_dir=out, force=True)
    assert len(list(out.glob("*.dcm"))) == 32


def test_read_only_output_folder(sample_case, tmp_path):
    import os

    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root ignores permissions: use a place nobody can write
        read_only = __import__("pathlib").Path("/sys/dicomannotembed-test-output")
    with pytest.raises(OutputError, match="cannot write here"):
        api.export_overlay(sample_case.series_dir, sample_case.segmentation_path, out_dir=read_only)


def _dciodvfy_errors(path) -> set:
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).splitlines()
    # Messages name the attribute; the values in them (UIDs, lengths) differ between files. The
    # attribute and module names stay: "<SECONDARY> for value 2 of attribute <Image Type>" is
    # not the source's "<US> for value 1 of attribute <Rescale Type>".
    return {re.sub(r"\[[^\]]*\]|(?<!attribute )(?<!Element=)(?<!Module=)<[^>]*>|(?<![0-9a-fA-Fx])\d+", "#", l)
            for l in lines if l.startswith("Error")}


@pytest.mark.parametrize("case", ["sample", "dcmqi", "mr"])
def test_dciodvfy_reports_no_new_error(sample_case, tmp_path, case):
    if case == "sample":
        src_dir = sample_case.series_dir
        annotations = dict(segmentation=sample_case.segmentation_path, markups=[sample_case.markups_path])
    elif case == "dcmqi":
        src_dir = interop("dcmqi", "ct-3slice")
        annotations = dict(segmentation=interop("dcmqi", "liver_spine_seg.nrrd"))
    else:
        src_dir = tmp_path / "mr"
        src_dir.mkdir()
        shutil.copy(interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"), src_dir)
        series = load_series(src_dir)
        mask = np.zeros(series.geometry.shape, np.uint8)
        mask[0, 100:200, 100:200] = 1
        annotations = dict(segmentation=mask)
    api.export_overlay(src_dir, out_dir=tmp_path / "out", **annotations)
    source = load_series(src_dir)
    written = load_series(tmp_path / "out")
    for k in range(0, written.geometry.shape[0], max(1, written.geometry.shape[0] // 4)):
        new_errors = (_dciodvfy_errors(written.files[written.slices[k].file_index])
                      - _dciodvfy_errors(source.files[source.slices[k].file_index]))
        assert not new_errors, new_errors



def test_enhanced_ct_overlay_copy_adds_no_dciodvfy_error(tmp_path):
    """An enhanced multi-frame source: Image Type and Frame Type become DERIVED\\PRIMARY (value 2
    SECONDARY is not an enumerated value of enhanced IODs), the derivation goes into the Derivation
    Image functional group with a Source Image Evidence Sequence, and dciodvfy finds no error
    that the source did not have. pydicom and our import read the planes back."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(interop("pydicom-data", "eCT_Supplemental.dcm"), src / "ect.dcm")
    series = load_series(src)
    masks = np.zeros(series.geometry.shape, bool)
    masks[1, 100:200, 150:300] = True
    seg = Segmentation.from_masks(series.geometry, [masks], [Segment("a", "A")])
    export_overlays(series, AnnotationSet(series.geometry, seg), tmp_path / "out")
    [out] = sorted((tmp_path / "out").iterdir())
    new_errors = _dciodvfy_errors(out) - _dciodvfy_errors(src / "ect.dcm")
    assert not new_errors, new_errors
    ds = pydicom.dcmread(out)
    assert list(ds.ImageType[:2]) == ["DERIVED", "PRIMARY"]
    frame_types = [list(item.CTImageFrameTypeSequence[0].FrameType[:2])
                   for item in list(ds.SharedFunctionalGroupsSequence) + list(ds.PerFrameFunctionalGroupsSequence)
                   if "CTImageFrameTypeSequence" in item]
    assert frame_types and all(ft == ["DERIVED", "PRIMARY"] for ft in frame_types)
    derivation = ds.SharedFunctionalGroupsSequence[0].DerivationImageSequence[0]
    source = pydicom.dcmread(src / "ect.dcm", stop_before_pixels=True)
    assert derivation.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    evidence = ds.SourceImageEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "SourceImageSequence" not in ds and "DerivationDescription" not in ds
    frames = ds.overlay_array(0x6000).astype(bool)
    for k, ref in enumerate(series.slices):
        np.testing.assert_array_equal(frames[ref.frame], masks[k])
    assert_same_segments(seg, import_overlays(tmp_path / "out").segmentation, metadata=False)


def _dcm2pnm_plane(path, number: int, frame: int = 1) -> np.ndarray:
    """The pixels dcmtk's dcm2pnm draws for overlay ``number`` (1-based) of one frame: rendered
    in Replace mode with foreground density 1 and 0, a pixel differs exactly where the overlay
    is set (a pixel cannot be white and black at once)."""
    renders = []
    for density in ("1", "0"):
        out = subprocess.run([require_tool("dcm2pnm"), "+F", str(frame), "+O", str(number), "+Omr", "+Osf",
                              density, "+opb", str(path)], capture_output=True, check=True)
        fields = out.stdout.split()  # ASCII PGM: P2, width, height, maximum, the pixels
        assert fields[0] == b"P2"
        width, height = int(fields[1]), int(fields[2])
        renders.append(np.array(fields[4:], dtype=np.uint16).reshape(height, width))
    return renders[0] != renders[1]


def test_dcm2pnm_draws_every_plane(sample_case, sample_export):
    """dcmtk draws each segment plane exactly where the segment is, on slices with and without it."""
    result, out = sample_export
    series = load_series(sample_case.series_dir)
    written = load_series(out)
    expected = api.load_annotations(series, sample_case.segmentation_path).segmentation
    groups = {name: int(group, 16) for group, name in result.series[0].planes.items()}
    checked = 0
    for k in (4, 12, 16, 22):
        path = written.files[written.slices[k].file_index]
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for segment in expected.segments:
            group = groups[segment.name]
            if (group, 0x0010) not in ds:
                assert not expected.mask(segment)[k].any()
                continue
            drawn = _dcm2pnm_plane(path, (group - 0x6000) // 2 + 1)
            np.testing.assert_array_equal(drawn, expected.mask(segment)[k], err_msg=f"{segment.name} slice {k}")
            checked += drawn.any()
    assert checked >= 4


def test_dcm2pnm_draws_multiframe_overlays(tmp_path):
    """Enhanced CT (2 frames): dcmtk draws each frame's part of the plane on that frame."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(interop("pydicom-data", "eCT_Supplemental.dcm"), src / "ect.dcm")
    series = load_series(src)
    masks = np.zeros(series.geometry.shape, bool)
    masks[0, 300:310, 300:305] = True
    masks[1, 100:200, 150:300] = True
    seg = Segmentation.from_masks(series.geometry, [masks], [Segment("a", "A")])
    export_overlays(series, AnnotationSet(series.geometry, seg), tmp_path / "out")
    [path] = sorted((tmp_path / "out").iterdir())
    for k, ref in enumerate(series.slices):
        np.testing.assert_array_equal(_dcm2pnm_plane(path, 1, ref.frame + 1), masks[k])

# --- the fast paths (byte splicing on export, raw bytes on import) against pydicom ---------

def _pydicom_rewrite(source_file, written_file) -> bytes:
    """What pydicom writes for the source with the written file's element values: the previous
    export set them with Dataset.add_new and wrote with save_as (raw elements verbatim)."""
    import io

    expected, written = pydicom.dcmread(source_file), pydicom.dcmread(written_file)
    for tag in list(expected.keys()):
        if tag not in written:
            del expected[tag]
    for tag in written.keys():
        if tag not in expected or expected[tag].value != written[tag].value:
            expected[tag] = written[tag]  # converted by pydicom, so encoded by it again
    expected.file_meta.MediaStorageSOPInstanceUID = written.SOPInstanceUID
    buffer = io.BytesIO()
    expected.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_spliced_files_are_what_pydicom_writes(sample_case, sample_export):
    """Every byte of our files (overlay groups, changed header elements, file meta) is what
    pydicom writes for the same values; the rest is the source's bytes."""
    _, out = sample_export
    series = load_series(sample_case.series_dir)
    source = {ds.SOPInstanceUID: path for path, ds in zip(series.files, series.datasets)}
    for path in sorted(out.glob("*.dcm")):
        reference = source[pydicom.dcmread(path, stop_before_pixels=True).SourceImageSequence[0]
                           .ReferencedSOPInstanceUID]
        assert path.read_bytes() == _pydicom_rewrite(reference, path), path.name


def _odd_source(folder, sample_case, syntax="1.2.840.10008.1.2.1"):
    """A copy of the sample series with what byte splicing must get right: group lengths
    (pydicom drops them), private elements, an undefined-length sequence, a value read deferred,
    another creator in the first slot of our private group, trailing padding after Pixel Data;
    in the given transfer syntax."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID

    syntax = UID(syntax)
    folder.mkdir()
    for n, path in enumerate(sorted(sample_case.series_dir.iterdir())):
        ds = pydicom.dcmread(path)
        if not syntax.is_little_endian:  # 16-bit words in the other byte order
            ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
        if n % 2 == 0:
            ds.add_new(0x00080000, "UL", 1234)  # a wrong group length, on purpose
            ds.add_new(0x00090010, "LO", "SOME VENDOR")
            ds.add_new(0x00091001, "OB", bytes(range(256)) * 80)  # 20 KB: deferred by load_series
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "99X", "x"
            item.is_undefined_length_sequence_item = True
            ds.AnatomicRegionSequence = Sequence([item])
            ds["AnatomicRegionSequence"].is_undefined_length = True
            ds.add_new(0x00710010, "LO", "OTHER CREATOR")
            ds.add_new(0x00711001, "LO", "kept")
            ds.add_new(0xFFFCFFFC, "OB", b"\0" * 16)
        ds.file_meta.TransferSyntaxUID = syntax
        pydicom.dcmwrite(folder / path.name, ds, implicit_vr=syntax.is_implicit_VR,
                         little_endian=syntax.is_little_endian, enforce_file_format=True)
    return folder


@pytest.mark.parametrize("keep_uids, syntax", [(True, "1.2.840.10008.1.2.1"), (False, "1.2.840.10008.1.2.1"),
                                               (True, "1.2.840.10008.1.2"), (True, "1.2.840.10008.1.2.2")])
def test_byte_splicing_equals_pydicom_writing(sample_case, tmp_path, monkeypatch, keep_uids, syntax):
    """The same export written by splicing bytes and by pydicom alone (the way for files that
    cannot be spliced) gives the same files: byte for byte when the UIDs are kept."""
    from DicomAnnotEmbedLib.encodings.overlay import encode as overlay

    source = _odd_source(tmp_path / "src", sample_case, syntax)
    spliced_files = []
    splice = overlay._SourceFile.splice
    monkeypatch.setattr(overlay._SourceFile, "splice",
                        lambda self, changes: spliced_files.append(splice(self, changes)) or spliced_files[-1])
    series = load_series(source)
    assert series.datasets[0].get_item(0x00091001, keep_deferred=True).value is None  # deferred
    annotations = api.load_annotations(series, sample_case.segmentation_path, [sample_case.markups_path])
    options = dict(keep_uids=keep_uids)
    with warnings_ignored():
        export_overlays(series, annotations, tmp_path / "spliced", **options)
        assert len(spliced_files) == 32 and all(parts is not None for parts in spliced_files)
        monkeypatch.setattr(overlay._SourceFile, "splice", lambda self, changes: None)
        export_overlays(series, annotations, tmp_path / "pydicom", **options)
    spliced, whole = sorted((tmp_path / "spliced").iterdir()), sorted((tmp_path / "pydicom").iterdir())
    assert [p.name for p in spliced] == [p.name for p in whole]
    uids = {0x00080018, 0x0020000E}
    for a, b in zip(spliced, whole):
        if keep_uids:
            assert a.read_bytes() == b.read_bytes(), a.name
            continue
        x, y = pydicom.dcmread(a), pydicom.dcmread(b)
        assert set(x.keys()) == set(y.keys())
        for tag in x.keys():
            if tag not in uids:
                assert x[tag].value == y[tag].value, (a.name, tag)
        assert 0x00080000 not in x
        if 0x00091001 in x:  # the files given the odd elements
            assert x[0x00711001].value == "kept" and x[0x00711101].value.startswith('{"version"')
            assert x[0x00091001].value == bytes(range(256)) * 80 and 0xFFFCFFFC in x
    back = import_overlays(tmp_path / "spliced")
    assert_same_segments(annotations.segmentation, back.segmentation)


class warnings_ignored:
    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("ignore", KeepUidsWarning)

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"])
def test_element_encoder_writes_what_pydicom_writes(syntax, charset):
    from pydicom.dataelem import DataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.uid import UID

    from DicomAnnotEmbedLib.encodings.overlay.encode import _ElementEncoder

    syntax = UID(syntax)
    header = pydicom.Dataset()
    if charset:
        header.SpecificCharacterSet = charset
    header.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)
    encoder = _ElementEncoder(header)
    name = "Läsion 3" if charset else "Lesion 3"  # odd length, padded

    def pydicom_bytes(tag, vr, value):
        buffer = DicomBytesIO()
        buffer.is_implicit_VR, buffer.is_little_endian = syntax.is_implicit_VR, syntax.is_little_endian
        write_data_element(buffer, DataElement(tag, vr, value), header.get("SpecificCharacterSet", "iso8859"))
        return buffer.getvalue()

    cases = [(encoder.numbers(0x6002, 0x0010, "US", 512), (0x60020010, "US", 512)),
             (encoder.numbers(0x6002, 0x0050, "SS", 1, -3), (0x60020050, "SS", [1, -3])),
             (encoder.text(0x6002, 0x0015, "IS", "12"), (0x60020015, "IS", 12)),
             (encoder.text(0x6002, 0x1302, "DS", "-12.3457"), (0x60021302, "DS", "-12.3457")),
             (encoder.text(0x6002, 0x0022, "LO", ""), (0x60020022, "LO", "")),
             (encoder.text(0x6002, 0x1500, "LO", name), (0x60021500, "LO", name)),
             (encoder.text(0x6002, 0x0040, "CS", "R"), (0x60020040, "CS", "R")),
             (encoder.text(0x0008, 0x0008, "CS", "DERIVED\\SECONDARY\\AXIAL"),
              (0x00080008, "CS", ["DERIVED", "SECONDARY", "AXIAL"])),
             (encoder.text(0x0008, 0x0018, "UI", "1.2.345"), (0x00080018, "UI", "1.2.345")),
             (encoder.element(0x6002, 0x3000, "OW", b"\x01\x02\x03"), (0x60023000, "OW", b"\x01\x02\x03\x00"))]
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.3", "1.2.3.4"
    cases.append((encoder.sequence(0x0008, 0x2112, [encoder.text(0x0008, 0x1150, "UI", "1.2.3")
                                                    + encoder.text(0x0008, 0x1155, "UI", "1.2.3.4")]),
                  (0x00082112, "SQ", pydicom.Sequence([item]))))
    for ours, (tag, vr, value) in cases:
        assert ours == pydicom_bytes(tag, vr, value), (hex(tag), ours, pydicom_bytes(tag, vr, value))


def test_sparse_plane_decoding_equals_pydicom(tmp_path):
    """Odd sizes (frames sharing bytes), empty frames, frames set only in a shared byte, an
    overlay origin off the image: the same masks as pydicom's overlay_array."""
    import io

    from DicomAnnotEmbedLib.encodings.overlay.decode import _OverlayElements, _plane_blocks, _unpacked

    rng = np.random.default_rng(7)
    for rows, columns, frames in [(5, 7, 3), (9, 13, 4), (16, 16, 2), (1, 3, 5), (64, 64, 1)]:
        planes = rng.random((frames, rows, columns)) < 0.2
        planes[0] = False
        if frames > 2:
            planes[1] = False
            planes[1, -1, -1] = True  # its last pixel only, in a byte it may share with frame 2
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = "1.2", "1.2.3"
        for tag, vr, value in ((0x0010, "US", rows), (0x0011, "US", columns), (0x0015, "IS", frames),
                               (0x0050, "SS", [2, -1]), (0x0100, "US", 1), (0x0102, "US", 0)):
            ds.add_new((0x6000, tag), vr, value)
        packed = np.packbits(planes.ravel(), bitorder="little").tobytes()
        ds.add_new((0x6000, 0x3000), "OW", packed + b"\0" * (len(packed) % 2))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        read = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
        expected = np.asarray(read.overlay_array(0x6000), bool).reshape(frames, rows, columns)
        blocks = _plane_blocks(_OverlayElements(read, "unused"), 0x6000, "unused", [])
        assert len(blocks) == frames
        for frame, block in enumerate(blocks):
            got = np.zeros((rows, columns), bool)
            if block is not None:
                got[block[0]:block[0] + block[1].shape[0]] = _unpacked(block[1])
            np.testing.assert_array_equal(got, expected[frame], err_msg=f"{rows}x{columns} frame {frame}")


@pytest.mark.parametrize("bits, stored", [(16, 12), (16, 16), (8, 6), (32, 20)])
@pytest.mark.parametrize("signed", [0, 1])
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2"])
def test_stored_values_for_roi_statistics_equal_pydicom(bits, stored, signed, syntax):
    """ROI statistics read uncompressed pixels without pydicom's decoder, also with fewer bits
    stored than allocated (garbage in the high bits): the same values as pixel_array."""
    import io

    from pydicom.uid import UID

    from DicomAnnotEmbedLib.core.series import stored_frames

    syntax = UID(syntax)
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 24, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, signed
    words = np.random.default_rng(bits + stored).integers(0, 2 ** bits, (16, 24), dtype=np.uint64)
    ds.PixelData = words.astype(f"{'<' if syntax.is_little_endian else '>'}u{bits // 8}").tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian,
                     enforce_file_format=True)
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    ours, reference = stored_frames(read)[0], read.pixel_array
    assert ours.dtype.kind == reference.dtype.kind
    np.testing.assert_array_equal(ours.astype(np.int64), reference.astype(np.int64))


def test_header_values_read_from_raw_bytes_equal_pydicom(sample_case):
    from DicomAnnotEmbedLib.core.series import header_value

    path = sorted(sample_case.series_dir.iterdir())[3]
    raw, converted = pydicom.dcmread(path, stop_before_pixels=True), pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in ("Rows", "Columns", "BitsAllocated", "InstanceNumber", "ImagePositionPatient",
                    "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept", "Modality",
                    "SOPInstanceUID", "SeriesInstanceUID", "NumberOfFrames", "ImageType"):
        expected, value = getattr(converted, keyword, None), header_value(raw, keyword)
        if isinstance(expected, pydicom.multival.MultiValue):
            expected, value = list(expected), list(value)
        assert value == expected, keyword
    assert raw.get_item("Rows").is_raw  # nothing converted on the way


def test_loading_headers_reads_no_pixel_data_and_defers_overlay_data(tmp_path):
    """load_series reads headers only; Overlay Data of full-size planes is read by the import."""
    src = interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm")
    shutil.copy(src, tmp_path / "mr.dcm")
    series = load_series(tmp_path)
    [ds] = series.datasets
    assert "PixelData" not in ds
    assert ds.get_item(0x60003000, keep_deferred=True).value is None
    back = import_overlays(series)
    np.testing.assert_array_equal(back.segmentation.mask(back.segmentation.segments[0])[0],
                                  pydicom.dcmread(src).overlay_array(0x6000).astype(bool))


def test_planes_decoded_from_header_blocks_equal_planes_read_from_the_files(tmp_path):
    """Full-size planes (deferred by load_series): the import that decodes them from the blocks
    the headers were read from gives what decoding them from the files gives, and the masks."""
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    shape = (6, 384, 400)  # 19 KB planes: above series.DEFER_SIZE
    geometry = VolumeGeometry(shape, np.array([[0.8, 0, 0, -150], [0, 0.8, 0, -160], [0, 0, 2.0, 30], [0, 0, 0, 1.0]]))
    dicomize_array(np.zeros(shape, np.int16), geometry, tmp_path / "series")
    k, j, i = np.indices(shape)
    masks = [((j - 100) ** 2 + (i - 120) ** 2 < 60 ** 2) & (k >= 1),
             ((j - 250) ** 2 + (i - 300) ** 2 < 40 ** 2) & (k <= 3),
             ((j - 200) ** 2 + (i - 200) ** 2 < 90 ** 2) & (k == 2)]  # overlaps both
    expected = Segmentation.from_masks(geometry, masks, [Segment(id=f"s{n}", name=f"Segment {n}") for n in range(3)])
    export_overlays(load_series(tmp_path / "series"), AnnotationSet(geometry, expected, []), tmp_path / "overlay")

    heads = {}
    load_series(tmp_path / "overlay", on_header=lambda path, ds, head: heads.__setitem__(path, (ds, head)))
    assert sum(head is not None for _, head in heads.values()) >= len(heads) - 1  # blocks sized to the headers
    assert all(ds.get_item(0x60003000, keep_deferred=True).value is None for ds, _ in heads.values())

    from_blocks = import_overlays(tmp_path / "overlay")
    from_files = import_overlays(load_series(tmp_path / "overlay"))
    assert_same_segments(expected, from_blocks.segmentation, metadata=False)
    assert_same_segments(from_files.segmentation, from_blocks.segmentation)
    np.testing.assert_array_equal(from_blocks.segmentation.layers, from_files.segmentation.layers)


def test_deflated_series_round_trip(tmp_path):
    """Deflated files: positions of deferred values would be in pydicom's inflated copy, not in
    the file, so nothing is deferred for them; import gives the masks either way."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    shape = (3, 384, 400)  # 19 KB planes: deferred, were the files not deflated
    geometry = VolumeGeometry(shape, np.diag([1.0, 1.0, 2.0, 1.0]))
    noise = np.random.default_rng(3).integers(-1000, 1000, shape).astype(np.int16)  # inflated size != file size
    for path in dicomize_array(noise, geometry, tmp_path / "series"):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path)
    k, j, i = np.indices(shape)
    masks = [((j - 100) ** 2 + (i - 150) ** 2 < 70 ** 2) & (k != 1), (j > 200) & (i < 40)]
    expected = Segmentation.from_masks(geometry, masks, [Segment(id=f"s{n}", name=f"S{n}") for n in range(2)])
    export_overlays(load_series(tmp_path / "series"), AnnotationSet(geometry, expected, []), tmp_path / "overlay")
    assert pydicom.dcmread(next((tmp_path / "overlay").iterdir())).file_meta.TransferSyntaxUID == \
        DeflatedExplicitVRLittleEndian
    assert_same_segments(expected, import_overlays(tmp_path / "overlay").segmentation, metadata=False)
    assert_same_segments(expected, import_overlays(load_series(tmp_path / "overlay")).segmentation, metadata=False)


def test_a_broken_overlay_in_another_series_does_not_stop_the_import(tmp_path):
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from DicomAnnotEmbedLib.core.errors import InputError, SeriesError

    geometry = VolumeGeometry((3, 64, 64), np.diag([1.0, 1.0, 2.0, 1.0]))
    chosen = dicomize_array(np.zeros(geometry.shape, np.int16), geometry, tmp_path / "A")
    other = dicomize_array(np.zeros(geometry.shape, np.int16), geometry, tmp_path / "B")
    for path in chosen + other[:1]:
        ds = pydicom.dcmread(path)
        for tag, vr, value in ((0x0010, "US", 64), (0x0011, "US", 64), (0x0040, "CS", "G"),
                               (0x0050, "SS", [1, 1]), (0x0100, "US", 1), (0x0102, "US", 0)):
            ds.add_new((0x6000, tag), vr, value)
        ds.add_new((0x6000, 0x3000), "OW", np.packbits(np.arange(64 * 64) % 7 == 0, bitorder="little").tobytes())
        if path == other[0]:  # Number of Frames in Overlay "x": pydicom cannot write it, so raw
            frames = pydicom.tag.Tag(0x6000, 0x0015)
            ds[frames] = pydicom.dataelem.RawDataElement(frames, "IS", 2, b"x ", 0, False, True)
        ds.save_as(path)
    uid = str(pydicom.dcmread(chosen[0]).SeriesInstanceUID)
    assert len(import_overlays(tmp_path, series_uid=uid).segmentation.segments) == 1
    with pytest.raises(SeriesError, match="2 image series"):
        import_overlays(tmp_path)
    with pytest.raises(InputError, match="overlay planes cannot be read") as error:
        import_overlays(tmp_path / "B")
    assert other[0] in str(error.value)
