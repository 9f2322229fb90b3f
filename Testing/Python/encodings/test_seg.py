"""DICOM SEG, both ways: our writer against highdicom's own, other tools' files, the checkers."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from conftest import interop, require_tool, rotation, tree_hashes
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.cli import main
from DicomAnnotEmbedLib.core.errors import GeometryError, InputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import DEFAULT_TERMINOLOGY, Segment, Segmentation
from DicomAnnotEmbedLib.encodings.seg import SegExportOptions, export_seg, import_seg
from DicomAnnotEmbedLib.files.segio import load_segmentation
from DicomAnnotEmbedLib.core.series import load_series

# Colours go through CIELab in 16-bit steps and back: within half a step of 8-bit RGB.
COLOR_TOLERANCE = 1.0 / 255


def assert_same_segments(expected: Segmentation, actual: Segmentation, *, metadata=True):
    assert [s.name for s in actual.segments] == [s.name for s in expected.segments]
    for e, a in zip(expected.segments, actual.segments):
        np.testing.assert_array_equal(actual.mask(a), expected.mask(e), err_msg=e.name)
        if metadata:
            assert a.color == pytest.approx(e.color, abs=COLOR_TOLERANCE), e.name
            assert _codes(a.terminology) == _codes(e.terminology), e.name


def _codes(terminology):
    """The coded part of a terminology entry (Slicer's context names have no place in a SEG)."""
    terminology = terminology or DEFAULT_TERMINOLOGY  # what a SEG says of a segment given no codes
    return (terminology.category, terminology.type, terminology.type_modifier, terminology.anatomic_region,
            terminology.anatomic_region_modifier)


@pytest.fixture(scope="module")
def sample(sample_case):
    series = load_series(sample_case.series_dir)
    return series, api.load_annotations(series, sample_case.segmentation_path).segmentation


TYPES = [("binary", "none"), ("binary", "jpeg2000"), ("fractional", "none"), ("fractional", "jpegls"),
         ("fractional", "rle"), ("labelmap", "none"), ("labelmap", "jpegls"), ("labelmap", "rle")]


@pytest.mark.parametrize("seg_type,compression", TYPES)
def test_round_trip_exact_on_the_sample(sample, sample_case, tmp_path, seg_type, compression):
    series, segmentation = sample
    before = tree_hashes(sample_case.folder)
    result = export_seg(series, segmentation, tmp_path / "seg.dcm", seg_type=seg_type, compression=compression,
                        split_layers=True)
    assert tree_hashes(sample_case.folder) == before
    expected_files = 2 if seg_type == "labelmap" else 1  # the sample's tumour overlaps the liver
    assert len(result.paths) == expected_files
    back_segments = []
    for path in result.paths:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == {"none": "1.2.840.10008.1.2.1", "jpegls": "1.2.840.10008.1.2.4.80",
                                                  "rle": "1.2.840.10008.1.2.5",
                                                  "jpeg2000": "1.2.840.10008.1.2.4.90"}[compression]
        imported = import_seg(path, series)
        assert imported.seg_type == seg_type
        back_segments += imported.segmentation.segments
        for segment in imported.segmentation.segments:
            original = segmentation.segment(segment.name)
            np.testing.assert_array_equal(imported.segmentation.mask(segment), segmentation.mask(original))
            assert segment.terminology == original.terminology
            assert segment.color == pytest.approx(original.color, abs=COLOR_TOLERANCE)
    assert sorted(s.name for s in back_segments) == sorted(s.name for s in segmentation.segments)


def test_binary_keeps_overlap_in_layers(sample, tmp_path):
    series, segmentation = sample
    export_seg(series, segmentation, tmp_path / "b.dcm", seg_type="binary")
    back = import_seg(tmp_path / "b.dcm", series).segmentation
    assert back.has_overlap and back.layers.shape[0] == 2
    assert_same_segments(segmentation, back)
    assert pydicom.dcmread(tmp_path / "b.dcm", stop_before_pixels=True).SegmentsOverlap == "YES"


def test_auto_type(sample, tmp_path):
    series, segmentation = sample
    assert export_seg(series, segmentation, tmp_path / "a.dcm").seg_type == "binary"  # overlap
    without_tumor = Segmentation(segmentation.geometry, segmentation.layers,
                                 [s for s in segmentation.segments if s.name != "Tumor"])
    result = export_seg(series, without_tumor, tmp_path / "b.dcm")
    assert (result.seg_type, result.compression) == ("labelmap", "jpegls")
    ds = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and int(ds.NumberOfFrames) == series.geometry.shape[0]


def _comparable(ds: pydicom.Dataset) -> dict:
    """Every element but the UIDs and times that differ between two runs, as plain values."""
    skip = {"SOPInstanceUID", "SeriesInstanceUID", "DimensionOrganizationUID", "ContentDate", "ContentTime",
            "SeriesDate", "SeriesTime", "InstanceCreationDate", "InstanceCreationTime", "PixelData",
            "MediaStorageSOPInstanceUID", "TrackingUID", "PaletteColorLookupTableUID", "ContributionDateTime"}

    def convert(value):
        if isinstance(value, pydicom.Sequence):
            return [_comparable(item) for item in value]
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            return [convert(v) for v in value]
        return str(value)

    values = {e.keyword or str(e.tag): convert(e.value) for e in ds if e.keyword not in skip}
    if "ContributingEquipmentSequence" in values:  # highdicom lists itself where it built the header
        values["ContributingEquipmentSequence"] = [item for item in values["ContributingEquipmentSequence"]
                                                   if item.get("Manufacturer") != HIGHDICOM_MANUFACTURER]
    return values


HIGHDICOM_MANUFACTURER = "Highdicom open-source contributors"


@pytest.mark.parametrize("seg_type,compression,keep_empty", [
    ("binary", "none", False), ("binary", "none", True), ("fractional", "jpegls", False),
    ("labelmap", "jpegls", False), ("labelmap", "none", False)])
def test_fast_writer_equals_highdicom(sample, tmp_path, seg_type, compression, keep_empty):
    """Our frame assembly writes what highdicom writes for the whole volume."""
    series, segmentation = sample
    # copies with fixed tracking UIDs, so that both files have the same
    segments = [dataclasses.replace(s, attributes={"TrackingIdentifier": s.name,
                                                   "TrackingUniqueIdentifier": pydicom.uid.generate_uid()})
                for s in segmentation.segments if seg_type != "labelmap" or s.layer == 0]
    segmentation = Segmentation(segmentation.geometry, segmentation.layers, segments)
    files = {}
    for engine in ("fast", "highdicom"):
        result = export_seg(series, segmentation, tmp_path / f"{engine}.dcm", seg_type=seg_type,
                            compression=compression, keep_empty_frames=keep_empty, engine=engine)
        files[engine] = pydicom.dcmread(result.paths[0])
    fast, reference = files["fast"], files["highdicom"]
    assert _comparable(fast) == _comparable(reference)
    np.testing.assert_array_equal(fast.pixel_array, reference.pixel_array)


def test_highdicom_reads_ours(sample, tmp_path):
    import highdicom as hd

    series, segmentation = sample
    export_seg(series, segmentation, tmp_path / "b.dcm", seg_type="binary")
    seg = hd.seg.segread(tmp_path / "b.dcm")
    uids = [s.sop_instance_uid for s in series.slices]
    for number, segment in enumerate(segmentation.segments, 1):
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=[number], ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True)[..., 0]
        np.testing.assert_array_equal(pixels.astype(bool), segmentation.mask(segment), err_msg=segment.name)
        assert seg.get_segment_description(number).segment_label == segment.name


@pytest.mark.parametrize("seg_type", ["binary", "labelmap", "fractional"])
def test_dcmqi_reads_ours_to_the_same_labels(sample, tmp_path, seg_type):
    import SimpleITK as sitk

    tool = require_tool("segimage2itkimage")
    series, segmentation = sample
    if seg_type == "labelmap":
        segmentation = Segmentation(segmentation.geometry, segmentation.layers,
                                    [s for s in segmentation.segments if s.layer == 0])
    # dcmqi's DCMTK has no JPEG-LS / JPEG 2000 decoder: uncompressed files for it
    export_seg(series, segmentation, tmp_path / "s.dcm", seg_type=seg_type, compression="none")
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool, "--inputDICOM", str(tmp_path / "s.dcm"), "--outputDirectory", str(out),
                    "--outputType", "nrrd"], check=True, capture_output=True)
    meta = json.loads((out / "meta.json").read_text())
    if seg_type == "labelmap":
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "1.nrrd")))
        np.testing.assert_array_equal(labels, segmentation.layers[0])
        names = [a["SegmentLabel"] for a in meta["segmentAttributes"][0] if a["labelID"] != 0]
        assert names == [s.name for s in segmentation.segments]
        return
    for number, segment in enumerate(segmentation.segments, 1):
        image = sitk.ReadImage(str(out / f"{number}.nrrd"))
        # dcmqi writes each segment on the bounding grid of its frames: place it on the series
        mask = np.zeros(series.geometry.shape, bool)
        ijk = np.rint(series.geometry.lps_to_ijk_points(np.array([image.GetOrigin()]))[0]).astype(int)
        array = sitk.GetArrayFromImage(image) > 0
        k0, j0, i0 = ijk[2], ijk[1], ijk[0]
        mask[k0:k0 + array.shape[0], j0:j0 + array.shape[1], i0:i0 + array.shape[2]] = array
        np.testing.assert_array_equal(mask, segmentation.mask(segment), err_msg=segment.name)


def _dciodvfy_messages(path) -> list:
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


# dciodvfy of 2022 predates Supplement 243: it does not know the Label Map Segmentation IOD, and
# it reads the background described as segment 0 as a numbering error. Nothing else is allowed.
LABELMAP_DCIODVFY_ALLOWED = [
    r"^Error - Information Object Not found$",
    r"^Error - SegmentNumber not monotonically increasing from one by one - have SegmentSequence item "
    r"number 1 \(from one\) with SegmentNumber of 0$",
]


@pytest.mark.parametrize("seg_type,compression", TYPES)
def test_dciodvfy(sample, tmp_path, seg_type, compression):
    series, segmentation = sample
    result = export_seg(series, segmentation, tmp_path / "s.dcm", seg_type=seg_type, compression=compression,
                        split_layers=True, options=SegExportOptions(content_creator_name="Doe^Jane"))
    for path in result.paths:
        errors = _dciodvfy_messages(path)
        if seg_type == "labelmap":
            unexpected = [e for e in errors if not any(re.match(p, e) for p in LABELMAP_DCIODVFY_ALLOWED)]
            assert unexpected == [], unexpected
        else:
            assert errors == []


@pytest.mark.parametrize("label_file", ["liver_seg.nrrd", "liver_spine_seg.nrrd"])
def test_round_trip_on_dcmqi_ct(tmp_path, label_file):
    series = load_series(interop("dcmqi", "ct-3slice"))
    segmentation = api.load_annotations(series, interop("dcmqi", label_file)).segmentation
    for seg_type in ("binary", "labelmap"):
        export_seg(series, segmentation, tmp_path / f"{seg_type}.dcm", seg_type=seg_type)
        assert_same_segments(segmentation, import_seg(tmp_path / f"{seg_type}.dcm", series).segmentation)


@pytest.mark.parametrize("seg_file", ["Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd"])
def test_round_trip_slicer_segmentation_on_dicomized_ctchest(tmp_path, seg_file):
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_file

    dicomize_file(interop("slicer", "CTChest4.nrrd"), tmp_path / "ct")
    series = load_series(tmp_path / "ct")
    segmentation = load_segmentation(interop("slicer", seg_file))
    export_seg(series, segmentation, tmp_path / "s.dcm", seg_type="binary")
    assert_same_segments(segmentation, import_seg(tmp_path / "s.dcm", series).segmentation)
    if not segmentation.has_overlap:
        export_seg(series, segmentation, tmp_path / "l.dcm", seg_type="labelmap")
        assert_same_segments(segmentation, import_seg(tmp_path / "l.dcm", series).segmentation)


def test_import_dcmqi_liver(tmp_path):
    series = load_series(interop("dcmqi", "ct-3slice"))
    imported = import_seg(interop("dcmqi", "liver.dcm"), series)
    expected = api.load_annotations(series, interop("dcmqi", "liver_seg.nrrd")).segmentation
    [segment] = imported.segmentation.segments
    assert segment.name == "Liver"
    assert segment.terminology.type.meaning == "Liver"
    np.testing.assert_array_equal(imported.segmentation.mask(segment), expected.layers[0] > 0)
    # the same without the series: the SEG's own frame grid is the series grid here
    alone = import_seg(interop("dcmqi", "liver.dcm"))
    assert alone.segmentation.geometry.same_as(series.geometry)


def test_import_dcmqi_sparse_labelmap():
    imported = import_seg(interop("dcmqi", "sparse-labelmap-ppv5.dcm"))
    expected = load_segmentation(interop("dcmqi", "sparse_labelmap_ppv5_seg.nrrd"))
    seg = imported.segmentation
    assert imported.seg_type == "labelmap"
    [liver] = seg.segments  # the SEG describes label 1 only; the NRRD also has a label 5
    assert liver.name == "Liver"
    resampled = expected.resampled_to(seg.geometry)
    np.testing.assert_array_equal(seg.mask(liver), resampled.mask("Segment_1"))


@pytest.mark.parametrize("name", ["seg_image_ct_binary.dcm", "seg_image_ct_binary_fractional.dcm",
                                  "seg_image_ct_binary_overlap.dcm", "seg_image_ct_true_fractional.dcm"])
def test_import_highdicom_files_match_highdicom(name):
    import highdicom as hd

    path = interop("highdicom", name)
    imported = import_seg(path)
    seg = imported.segmentation
    reference = hd.seg.segread(path)
    frames = reference.pixel_array if reference.pixel_array.ndim == 3 else reference.pixel_array[np.newaxis]
    fractional = reference.SegmentationType == "FRACTIONAL"
    per_frame = reference.PerFrameFunctionalGroupsSequence
    for index, item in enumerate(per_frame):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = int(np.rint(seg.geometry.lps_to_ijk_points(position[np.newaxis])[0, 2]))
        segment = seg.segment(f"Segment_{number}")
        if fractional:
            expected = frames[index] / float(reference.MaximumFractionalValue)
            np.testing.assert_allclose(seg.fractions[segment.id].get(k, np.zeros_like(expected)), expected, atol=1e-6)
            np.testing.assert_array_equal(seg.mask(segment)[k], expected >= 0.5)
        else:
            np.testing.assert_array_equal(seg.mask(segment)[k], frames[index] > 0)
    if name.endswith("overlap.dcm"):
        assert seg.has_overlap


def test_fractional_round_trip(sample, tmp_path):
    series, _ = sample
    geometry = series.geometry
    k, j, i = np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij")
    distance = np.sqrt((k - 16) ** 2 * 4 + (j - 64) ** 2 + (i - 64) ** 2)
    probability = np.clip(1.2 - distance / 30.0, 0, 1).astype(np.float32)
    segmentation = Segmentation.from_fractions(geometry, [probability], [Segment("p", "Probability")])
    result = export_seg(series, segmentation, tmp_path / "f.dcm", fractional_type="OCCUPANCY")
    assert result.seg_type == "fractional"
    ds = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    assert ds.SegmentationFractionalType == "OCCUPANCY" and int(ds.MaximumFractionalValue) == 255
    back = import_seg(result.paths[0], series)
    assert back.fractional_type == "OCCUPANCY"
    values = np.zeros(geometry.shape, np.float32)
    for kk, plane in back.segmentation.fractions["Segment_1"].items():
        values[kk] = plane
    np.testing.assert_allclose(values, probability, atol=0.5 / 255 + 1e-6)  # 8-bit steps
    np.testing.assert_array_equal(back.segmentation.mask("Probability"), probability >= 0.5)


def test_fraction_planes_keep_boxes_and_give_full_planes(sample, tmp_path):
    """FractionPlanes stores each plane's non-zero box and gives back the same full planes; the
    FRACTIONAL import keeps its values that way."""
    from DicomAnnotEmbedLib.core.model import FractionPlanes

    rng = np.random.default_rng(5)
    planes = {}
    for k, (top, left, rows, columns) in enumerate([(3, 7, 4, 9), (0, 0, 20, 30), (19, 29, 1, 1)]):
        plane = np.zeros((20, 30), np.float32)
        plane[top:top + rows, left:left + columns] = rng.random((rows, columns), np.float32) + 0.01
        planes[k] = plane
    planes[3] = np.zeros((20, 30), np.float32)
    stored = FractionPlanes((20, 30), planes)
    assert sorted(stored) == [0, 1, 2, 3] and stored.nonzero_slices() == [0, 1, 2]
    for k, plane in planes.items():
        np.testing.assert_array_equal(stored[k], plane)
    assert stored._boxes[0][2].shape == (4, 9) and stored._boxes[2][2].shape == (1, 1)
    with pytest.raises(GeometryError):
        stored[4] = np.zeros((30, 20), np.float32)

    series, _ = sample
    k, j, i = np.meshgrid(*[np.arange(n) for n in series.geometry.shape], indexing="ij")
    blob = np.clip(1.0 - np.sqrt((k - 16) ** 2 + (j - 40) ** 2 + (i - 50) ** 2) / 10.0, 0, 1).astype(np.float32)
    result = export_seg(series, Segmentation.from_fractions(series.geometry, [blob], [Segment("b", "Blob")]),
                        tmp_path / "f.dcm")
    back = import_seg(result.paths[0], series).segmentation.fractions["Segment_1"]
    assert isinstance(back, FractionPlanes)
    assert all(values.size <= 21 * 21 for _, _, values in back._boxes.values())  # the blob's box, not the slice
    np.testing.assert_allclose(np.stack([back.get(kk, np.zeros(blob.shape[1:], np.float32))
                                         for kk in range(blob.shape[0])]), blob, atol=0.5 / 255 + 1e-6)


def test_fractional_values_outside_zero_one(sample):
    series, _ = sample
    bad = np.full(series.geometry.shape, 1.5, np.float32)
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        Segmentation.from_fractions(series.geometry, [bad], [Segment("p", "P")])


def test_keep_empty_frames(sample, tmp_path):
    series, segmentation = sample
    result = export_seg(series, segmentation, tmp_path / "k.dcm", seg_type="binary", keep_empty_frames=True)
    assert result.frames == [len(segmentation.segments) * series.geometry.shape[0]]
    assert_same_segments(segmentation, import_seg(result.paths[0], series).segmentation)


def test_palette_colour_lut(sample, tmp_path):
    series, segmentation = sample
    first_layer = Segmentation(segmentation.geometry, segmentation.layers,
                               [s for s in segmentation.segments if s.layer == 0])
    result = export_seg(series, first_layer, tmp_path / "p.dcm", seg_type="labelmap", palette=True)
    ds = pydicom.dcmread(result.paths[0])
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    red = np.frombuffer(ds.RedPaletteColorLookupTableData, np.uint8 if int(ds.RedPaletteColorLookupTableDescriptor[2]) == 8 else np.uint16)
    for number, segment in enumerate(first_layer.segments, 1):
        assert red[number] == segment.color_rgb8[0] * (1 if red.dtype == np.uint8 else 257)
    assert_same_segments(first_layer, import_seg(result.paths[0], series).segmentation)


def test_descriptive_options_and_dcmqi_metadata(sample, sample_case, tmp_path):
    from DicomAnnotEmbedLib.dicom.dcmqi_metadata import write_dcmqi_metadata

    series, segmentation = sample
    meta = tmp_path / "meta.json"
    write_dcmqi_metadata(segmentation, meta, ContentCreatorName="Reader^One", ClinicalTrialSeriesID="S1",
                         ClinicalTrialTimePointID="T0", ClinicalTrialCoordinatingCenterName="Center",
                         SeriesDescription="From dcmqi", SeriesNumber="42")
    data = json.loads(meta.read_text())
    data["segmentAttributes"][0][0]["SegmentLabel"] = "Liver from JSON"
    data["segmentAttributes"][0][0]["SegmentAlgorithmType"] = "AUTOMATIC"
    data["segmentAttributes"][0][0]["SegmentAlgorithmName"] = "MyNet"
    meta.write_text(json.dumps(data))
    result = api.export_seg(series, sample_case.segmentation_path, tmp_path / "m.dcm", metadata=meta,
                            seg_type="binary")
    ds = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    assert ds.ContentCreatorName == "Reader^One" and ds.SeriesDescription == "From dcmqi"
    assert int(ds.SeriesNumber) == 42 and ds.ClinicalTrialSeriesID == "S1" and ds.ClinicalTrialTimePointID == "T0"
    first = ds.SegmentSequence[0]
    assert first.SegmentLabel == "Liver from JSON" and first.SegmentAlgorithmType == "AUTOMATIC"
    assert first.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "MyNet"
    tracking = result.tracking
    assert all(first.TrackingUID == tracking[s][1] for s in tracking if tracking[s][0] == first.TrackingID)


def test_segment_without_codes_gets_the_stated_default(sample, tmp_path, caplog):
    series, _ = sample
    labels = np.zeros(series.geometry.shape, np.uint8)
    labels[10:12, 40:60, 40:60] = 1
    segmentation = Segmentation.from_label_map(series.geometry, labels)
    result = export_seg(series, segmentation, tmp_path / "d.dcm")
    assert "without coded meaning get the default" in caplog.text
    ds = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    assert ds.SegmentSequence[-1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"


# --- bad input ---------------------------------------------------------------------------------

def test_labels_on_another_grid(sample, sample_case, tmp_path):
    series, segmentation = sample
    moved = VolumeGeometry(series.geometry.shape, series.geometry.ijk_to_lps.copy())
    moved.ijk_to_lps[:3, 3] += 0.3
    with pytest.raises(GeometryError, match="not on the series grid"):
        export_seg(series, Segmentation(moved, segmentation.layers, segmentation.segments), tmp_path / "x.dcm")
    # through the API a segmentation on another grid of the same space is resampled first
    oblique = VolumeGeometry(series.geometry.shape, series.geometry.ijk_to_lps.copy())
    oblique.ijk_to_lps[:3, :3] = rotation([0, 0, 1], 30) @ oblique.ijk_to_lps[:3, :3]
    far = VolumeGeometry(series.geometry.shape, series.geometry.ijk_to_lps.copy())
    far.ijk_to_lps[:3, 3] += 1000
    with pytest.raises(GeometryError):
        api.export_seg(series, Segmentation(far, segmentation.layers, segmentation.segments), tmp_path / "y.dcm")
    assert not (tmp_path / "y.dcm").exists()


def test_overlapping_segments_refused_for_labelmap(sample, tmp_path):
    series, segmentation = sample
    with pytest.raises(InputError, match="segments overlap.*--split-layers"):
        export_seg(series, segmentation, tmp_path / "o.dcm", seg_type="labelmap")
    assert not (tmp_path / "o.dcm").exists()
    result = export_seg(series, segmentation, tmp_path / "o.dcm", seg_type="labelmap", split_layers=True)
    assert [p.name for p in result.paths] == ["o_layer1.dcm", "o_layer2.dcm"]
    assert result.segments[1] == ["Tumor"]


def test_too_many_segments(sample, tmp_path):
    series, _ = sample
    geometry = VolumeGeometry((1, 300, 300), series.geometry.ijk_to_lps)
    segments = [Segment(f"s{n}", f"s{n}", label_value=n) for n in range(1, 65537)]
    labels = np.arange(1, 65537, dtype=np.uint32)
    labels = np.concatenate([labels, np.zeros(300 * 300 - labels.size, np.uint32)]).reshape(1, 1, 300, 300)
    many = Segmentation.__new__(Segmentation)
    many.geometry, many.layers, many.segments, many.fractions = geometry, labels, segments, {}
    series_like = type(series)(series.folder, series.series_instance_uid, series.modality, series.description,
                               series.files[:1], series.datasets[:1], series.slices[:1], geometry)
    with pytest.raises(InputError, match="at most 65535"):
        export_seg(series_like, many, tmp_path / "many.dcm", seg_type="binary")


def test_empty_segmentation(sample, tmp_path, caplog):
    series, segmentation = sample
    empty = Segmentation(series.geometry, np.zeros_like(segmentation.layers), segmentation.segments)
    with pytest.raises(InputError, match="nothing to export"):
        export_seg(series, empty, tmp_path / "e.dcm")
    with pytest.raises(InputError, match="nothing to export"):
        export_seg(series, empty, tmp_path / "e.dcm", keep_empty_segments=False)
    assert "is empty and is skipped" in caplog.text
    assert not (tmp_path / "e.dcm").exists()


def test_corrupt_and_wrong_files(sample, tmp_path):
    series, segmentation = sample
    result = export_seg(series, segmentation, tmp_path / "s.dcm", seg_type="binary")
    data = result.paths[0].read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        import_seg(tmp_path / "truncated.dcm", series)
    compressed = export_seg(series, segmentation, tmp_path / "c.dcm", seg_type="binary", compression="jpeg2000")
    data = compressed.paths[0].read_bytes()
    (tmp_path / "truncated_c.dcm").write_bytes(data[: len(data) - 200])
    with pytest.raises(InputError, match=r"truncated_c\.dcm"):
        import_seg(tmp_path / "truncated_c.dcm", series)
    with pytest.raises(InputError, match="not a DICOM SEG"):
        import_seg(series.files[0])
    (tmp_path / "text.dcm").write_text("hello")
    with pytest.raises(InputError, match="text.dcm"):
        import_seg(tmp_path / "text.dcm")
    with pytest.raises(InputError, match="does not exist"):
        import_seg(tmp_path / "missing.dcm")


def test_seg_on_another_series_is_refused(sample, tmp_path):
    series, segmentation = sample
    export_seg(series, segmentation, tmp_path / "s.dcm", seg_type="binary")
    other = load_series(interop("dcmqi", "ct-3slice"))
    with pytest.raises(GeometryError, match="do not lie on"):
        import_seg(tmp_path / "s.dcm", other)


# --- command line -------------------------------------------------------------------------------

def test_command_line(sample_case, tmp_path, capsys):
    out = tmp_path / "cli.dcm"
    assert main(["-q", "seg", "export", "--series", str(sample_case.series_dir), "--segmentation",
                 str(sample_case.segmentation_path), "--out", str(out), "--type", "binary",
                 "--content-creator", "Doe^Jane", "--series-description", "Test SEG"]) == 0
    assert "BINARY SEG (none) written" in capsys.readouterr().out
    assert main(["-q", "seg", "export", "--series", str(sample_case.series_dir), "--segmentation",
                 str(sample_case.segmentation_path), "--out", str(out)]) == 4  # exists, no --force
    assert main(["-q", "seg", "export", "--series", str(sample_case.series_dir), "--segmentation",
                 str(sample_case.segmentation_path), "--out", str(out), "--type", "labelmap", "--force"]) == 3
    assert "segments overlap" in capsys.readouterr().err
    for target in ("back.seg.nrrd", "back.nii.gz"):
        code = main(["-q", "seg", "import", str(out), "--series", str(sample_case.series_dir),
                     "--out", str(tmp_path / target)])
        if target == "back.nii.gz":  # overlapping segments cannot be one label map
            assert code == 3
        else:
            assert code == 0
    series = load_series(sample_case.series_dir)
    expected = api.load_annotations(series, sample_case.segmentation_path).segmentation
    assert_same_segments(expected, load_segmentation(tmp_path / "back.seg.nrrd"))


def test_help_everywhere(capsys):
    for argv in (["seg", "--help"], ["seg", "export", "--help"], ["seg", "import", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    assert "--compress" in capsys.readouterr().out


def test_multiframe_source(tmp_path):
    shutil.copy(interop("pydicom-data", "eCT_Supplemental.dcm"), tmp_path / "ect.dcm")
    series = load_series(tmp_path)
    masks = np.zeros((2,) + series.geometry.shape, bool)
    masks[0, 0, 100:200, 150:300] = True
    masks[1, 1, 50:60, 50:70] = True
    segmentation = Segmentation.from_masks(series.geometry, list(masks), [Segment("a", "A"), Segment("b", "B")])
    for seg_type in ("binary", "labelmap"):
        export_seg(series, segmentation, tmp_path / f"{seg_type}.dcm", seg_type=seg_type)
        back = import_seg(tmp_path / f"{seg_type}.dcm", series).segmentation
        assert_same_segments(segmentation, back, metadata=False)
    ds = pydicom.dcmread(tmp_path / "binary.dcm", stop_before_pixels=True)
    frame_refs = [int(i.DerivationImageSequence[0].SourceImageSequence[0].get("ReferencedFrameNumber", 0))
                  for i in ds.PerFrameFunctionalGroupsSequence]
    assert sorted(set(frame_refs)) == sorted({series.slices[k].frame + 1 for k in (0, 1)})


def test_lidc_preset_shares_tracking_uid_per_nodule(sample_case, tmp_path):
    from DicomAnnotEmbedLib.core.series import load_series as load

    series = load(sample_case.series_dir)
    labels = np.zeros(series.geometry.shape, np.uint8)
    labels[10:12, 30:40, 30:40] = 1
    labels[10:12, 60:70, 60:70] = 2
    segmentation = Segmentation.from_label_map(series.geometry, labels)
    segmentation.segments[0].name = "Nodule 1 - Annotation 001"
    segmentation.segments[1].name = "Nodule 1 - Annotation 002"
    result = api.export_seg(series, segmentation, tmp_path / "lidc.dcm", lidc=True)
    ds = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    items = [i for i in ds.SegmentSequence if int(i.SegmentNumber) > 0]
    assert {i.TrackingUID for i in items} == {items[0].TrackingUID}  # one nodule, one UID
    assert [i.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for i in items] == ["Nodule", "Nodule"]
    assert main(["-q", "seg", "export", "--series", str(sample_case.series_dir), "--segmentation",
                 str(sample_case.segmentation_path), "--out", str(tmp_path / "cli.dcm"), "--lidc",
                 "--type", "binary"]) == 0
