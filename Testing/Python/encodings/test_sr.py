"""DICOM SR TID 1500, both ways: round trips on the sample and an oblique series, values against
independent computations, the checkers (dciodvfy, dsrdump, dcmqi's tid1500reader), other tools'
reports, and bad input. Every coordinate is LPS."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import interop, require_tool, rotation
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.encodings import sr
from DicomAnnotEmbedLib.presets.lidc import apply_lidc_preset
from DicomAnnotEmbedLib.cli import main
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.core.errors import GeometryError, InputError
from DicomAnnotEmbedLib.dicom.evaluations import evaluation
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.files.markups_io import read_markups
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation
from DicomAnnotEmbedLib.files.sample import sample_volume_and_segments
from DicomAnnotEmbedLib.encodings.seg import export_seg, import_seg
from DicomAnnotEmbedLib.core.series import load_series

COORDINATE_TOLERANCE_MM = 1e-3
EVALUATIONS = """segment,concept,value
Tumor,Malignancy,4
Tumor,Calcification,6
Tumor,Comment,"irregular margin, next to a vessel"
Liver,"(RID5741, RadLex, ""calcification pattern"")","(RID5827, RadLex, ""central calcification"")"
Right_lung,Texture,solid pulmonary nodule
"""


@pytest.fixture(scope="module")
def sample(sample_case):
    series = load_series(sample_case.series_dir)
    return series, api.load_annotations(series, sample_case.segmentation_path).segmentation


@pytest.fixture(scope="module")
def exported(sample, sample_case, tmp_path_factory):
    """The sample's SEG and SR (segments, markups, evaluations, a person and a device observer)."""
    series, segmentation = sample
    folder = tmp_path_factory.mktemp("sr")
    seg_result = export_seg(series, segmentation, folder / "seg.dcm", seg_type="binary")
    (folder / "evaluations.csv").write_text(EVALUATIONS, encoding="utf-8")
    result = api.export_sr(series, seg_result.paths[0], folder / "sr.dcm", segmentation=sample_case.segmentation_path,
                          markups=[sample_case.markups_path], evaluations=folder / "evaluations.csv",
                          observer_name="Doe^Jane", device_name="Reading station 3")
    return folder, seg_result, result


def assert_same_markups(expected, actual):
    assert [(m.kind, m.name) for m in actual] == [(m.kind, m.name) for m in expected]
    for e, a in zip(expected, actual):
        if e.kind in ("roi", "plane"):
            np.testing.assert_allclose(a.roi_center_lps, e.roi_center_lps, atol=COORDINATE_TOLERANCE_MM)
            np.testing.assert_allclose(a.roi_size, e.roi_size, atol=COORDINATE_TOLERANCE_MM)
            np.testing.assert_allclose(a.roi_axes_lps, e.roi_axes_lps, atol=1e-5)
        else:
            np.testing.assert_allclose(a.points_lps, e.points_lps, atol=COORDINATE_TOLERANCE_MM, err_msg=e.name)


def assert_same_records(expected, actual):
    """Every value, unit and code back; floats exactly (FloatingPointValue is written)."""
    assert len(actual) == len(expected)
    for e, a in zip(expected, actual):
        assert a == e, (e, a)


# --- round trip --------------------------------------------------------------------------------

def test_round_trip_on_the_sample(sample, sample_case, exported):
    series, segmentation = sample
    folder, seg_result, result = exported
    back = api.import_sr(folder / "sr.dcm", series)
    assert back.missing == []
    assert back.sop_class == "Comprehensive 3D SR"
    assert back.title == Code("126000", "DCM", "Imaging Measurement Report")
    assert_same_records(result.records, back.records)
    assert_same_markups(read_markups(sample_case.markups_path), back.markups)
    # The SEG was found beside the SR and read through the SEG import, on the series grid.
    assert len(back.seg_imports) == 1
    for s in segmentation.segments:
        np.testing.assert_array_equal(back.segmentation.mask(s.name), segmentation.mask(s), err_msg=s.name)
    # Tracking: the SEG's identifier and UID on every segment group.
    tracking = {r.segment: (r.tracking_id, r.tracking_uid) for r in back.records if r.segment}
    assert tracking == {s.name: seg_result.tracking[s.id] for s in segmentation.segments}
    # Observers, procedure, language.
    assert back.person_observers == ["Doe^Jane"]
    assert back.device_observers == ["Reading station 3"]
    assert back.procedures == [Code("25045-6", "LN", "CT unspecified body region")]
    ds = pydicom.dcmread(folder / "sr.dcm")
    assert ds.SOPClassUID == sr.COMPREHENSIVE_3D_SR
    language = ds.ContentSequence[0]
    assert language.ConceptNameCodeSequence[0].CodeValue == "121049"
    assert language.ConceptCodeSequence[0].CodeValue == "en-US"
    # Evidence: the SEG and every source image.
    evidence = {i.ReferencedSOPInstanceUID for study in ds.CurrentRequestedProcedureEvidenceSequence
                for s in study.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert evidence == {seg_result.sop_instance_uids[0]} | {str(d.SOPInstanceUID) for d in series.datasets}
    assert {i.CodingSchemeDesignator for i in ds.CodingSchemeIdentificationSequence} == {"99LIDCQIICR"}


def test_evaluations_coded_and_text(exported):
    folder, _, result = exported
    back = api.import_sr(folder / "sr.dcm")
    by_segment = {}
    for r in back.records:
        if r.kind != "numeric":
            by_segment.setdefault(r.segment, []).append(r)
    tumor = {r.concept.meaning: r for r in by_segment["Tumor"]}
    assert tumor["Malignancy"].concept == Code("900", "99LIDCQIICR", "Malignancy")
    assert tumor["Malignancy"].coded_value == Code("904", "99LIDCQIICR",
                                                   "4 out of 5 (Moderately Suspicious for Cancer)")
    assert tumor["Calcification"].coded_value.meaning == "Absent"
    assert tumor["Comment"].concept == Code("121106", "DCM", "Comment")
    assert tumor["Comment"].text == "irregular margin, next to a vessel"
    assert by_segment["Liver"][0].concept == Code("RID5741", "RadLex", "calcification pattern")
    assert by_segment["Liver"][0].coded_value == Code("RID5827", "RadLex", "central calcification")
    assert by_segment["Right lung"][0].concept.meaning == "Texture"


def test_measurements_csv_round_trip(exported, tmp_path):
    folder, _, result = exported
    back = api.import_sr(folder / "sr.dcm")
    sr.write_measurements_csv(tmp_path / "m.csv", back.records)
    assert sr.read_measurements_csv(tmp_path / "m.csv") == back.records


def test_terminology_reaches_the_groups(exported):
    """Finding category, finding, type modifier (laterality) and finding site of each segment."""
    folder, _, _ = exported
    groups = _groups(pydicom.dcmread(folder / "sr.dcm"))
    right = next(g for g in groups if _text(g, "112039") == "Right lung")
    finding = next(i for i in right.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121071")
    assert finding.ConceptCodeSequence[0].CodeValue == "39607008"
    assert finding.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "Laterality"
    assert finding.ContentSequence[0].ConceptCodeSequence[0].CodeValue == "24028007"
    tumor = next(g for g in groups if _text(g, "112039") == "Tumor")
    site = next(i for i in tumor.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "363698007")
    assert site.ConceptCodeSequence[0].CodeValue == "10200004"
    category = next(i for i in tumor.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "276214006")
    assert category.ConceptCodeSequence[0].CodeValue == "49755003"
    reference = next(i for i in tumor.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121191")
    assert int(reference.ReferencedSOPSequence[0].ReferencedSegmentNumber) == 2


def _groups(ds):
    measurements = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(measurements.ContentSequence)


def _text(group, code):
    return next((str(i.get("TextValue")) for i in group.ContentSequence
                 if i.ConceptNameCodeSequence[0].CodeValue == code), None)


# --- values against independent computations ---------------------------------------------------

def _modality_volume(series):
    """The series' HU by pydicom alone (pixel_array x slope + intercept, in the series' slice order)."""
    by_uid = {}
    for path in series.files:
        ds = pydicom.dcmread(path)
        by_uid[str(ds.SOPInstanceUID)] = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return np.stack([by_uid[s.sop_instance_uid] for s in series.slices])


def test_measurement_values_against_independent_computations(sample, sample_case, exported):
    series, segmentation = sample
    _, _, result = exported
    hu = _modality_volume(series)
    voxel_mm3 = float(np.prod([0.9, 0.9, 2.5]))  # the sample's spacing, from sample.py
    values = {(r.segment, r.concept.meaning, r.derivation.meaning if r.derivation else ""): r
              for r in result.records if r.kind == "numeric" and r.segment}
    for s in segmentation.segments:
        mask = segmentation.mask(s)
        under = hu[mask]
        assert values[(s.name, "Volume", "")].value == pytest.approx(mask.sum() * voxel_mm3, rel=1e-12)
        assert values[(s.name, "Volume", "")].unit == Code("mm3", "UCUM", "cubic millimeter")
        for derivation, expected in (("Mean", under.mean()), ("Standard Deviation", under.std()),
                                     ("Minimum", under.min()), ("Maximum", under.max())):
            record = values[(s.name, "Attenuation Coefficient", derivation)]
            assert record.value == pytest.approx(expected, rel=1e-9, abs=1e-9), (s.name, derivation)
            assert record.unit.value == "[hnsf'U]"
        assert values[(s.name, "Surface Area of Mesh", "")].unit.value == "mm2"
        assert values[(s.name, "Maximum 3D Diameter of a Mesh", "")].unit.value == "mm"
    # Markups: lengths, area and perimeter, volume by hand.
    markups = {m.name: m for m in read_markups(sample_case.markups_path)}
    by_markup = {(r.markup, r.concept.meaning): r.value for r in result.records if r.markup}
    assert by_markup[("Tumor diameter", "Length")] == pytest.approx(14.0, abs=1e-12)
    ring = markups["Left lung outline"].points_lps
    x, y = ring[:, 0], ring[:, 1]
    assert by_markup[("Left lung outline", "Area")] == pytest.approx(
        0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))), rel=1e-12)
    assert by_markup[("Left lung outline", "Perimeter")] == pytest.approx(
        np.linalg.norm(np.diff(np.vstack([ring, ring[:1]]), axis=0), axis=1).sum(), rel=1e-12)
    assert by_markup[("Tumor box", "Volume")] == pytest.approx(16.0 * 16.0 * 15.0, rel=1e-12)


def test_sphere_surface_area_and_diameter(tmp_path):
    """A 12 mm ball on a 1 mm grid: volume = voxel count (exact), surface area of the unsmoothed
    mesh 0-15 % above 4 pi r^2 (the staircase excess stated in measurements.py), diameter within
    a voxel of 2 r."""
    geometry = VolumeGeometry.from_origin_spacing_directions((32, 32, 32), (-16.0, -16.0, -16.0), (1, 1, 1), np.eye(3))
    k, j, i = np.indices(geometry.shape)
    ball = (i - 15.7) ** 2 + (j - 16.2) ** 2 + (k - 15.9) ** 2 <= 12.0 ** 2
    dicomize_array(np.where(ball, 40, -1000).astype(np.int16), geometry, tmp_path / "series", patient_name="Test^Ball")
    series = load_series(tmp_path / "series")
    segmentation = Segmentation.from_masks(series.geometry, [ball], [Segment("ball", "Ball")])
    export_seg(series, segmentation, tmp_path / "seg.dcm")
    result = api.export_sr(series, tmp_path / "seg.dcm", tmp_path / "sr.dcm")
    values = {r.concept.meaning + (r.derivation.meaning if r.derivation else ""): r.value for r in result.records}
    assert values["Volume"] == ball.sum()
    assert 1.0 <= values["Surface Area of Mesh"] / (4 * np.pi * 12.0 ** 2) <= 1.15
    assert 24.0 - 1.0 <= values["Maximum 3D Diameter of a Mesh"] <= 24.0 + 2.0
    assert values["Attenuation CoefficientMean"] == 40.0
    assert values["Attenuation CoefficientStandard Deviation"] == 0.0


# --- oblique series -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oblique(tmp_path_factory):
    """The sample phantom on an oblique grid (rotated 25 degrees about (1, 2, 0.5)), its
    segmentation on that grid, and markups placed through the grid's IJK to LPS matrix."""
    folder = tmp_path_factory.mktemp("oblique")
    volume, segmentation, _ = sample_volume_and_segments()
    geometry = VolumeGeometry.from_origin_spacing_directions(
        volume.shape, (-40.0, 25.0, -10.0), (0.9, 0.9, 2.5), rotation([1, 2, 0.5], 25))
    dicomize_array(volume, geometry, folder / "series", patient_name="Test^Oblique")
    series = load_series(folder / "series")
    oblique_seg = Segmentation(series.geometry, segmentation.layers,
                               [Segment(s.id, s.name, s.color, s.terminology, layer=s.layer, label_value=s.label_value)
                                for s in segmentation.segments])
    to_lps = series.geometry.ijk_to_lps_points
    axes = series.geometry.directions
    markups = [
        Markup("point_list", "Points", to_lps([[10, 20, 3], [64.25, 70.5, 15.5], [100, 100, 30]])),
        Markup("line", "Line", to_lps([[20, 30, 5], [90, 80.5, 20]])),
        Markup("curve", "Curve", to_lps([[20, 30, 5], [40, 50, 7], [60, 55, 9], [90, 80, 10]])),
        Markup("angle", "Angle", to_lps([[20, 30, 5], [50, 50, 10], [90, 30, 12]])),
        Markup("closed_curve", "Outline", to_lps([[30, 30, 16], [90, 35, 16], [80, 95, 16], [35, 80, 16]])),
        Markup("closed_curve", "Saddle", to_lps([[30, 30, 10], [90, 35, 14], [80, 95, 10], [35, 80, 14]])),
        Markup("roi", "Box", roi_center_lps=to_lps([[64, 64, 16]])[0], roi_size=[20.0, 30.0, 12.5],
               roi_axes_lps=axes),
        Markup("plane", "Plane", roi_center_lps=to_lps([[60, 60, 10]])[0], roi_size=[30.0, 20.0, 0.0],
               roi_axes_lps=axes),
    ]
    seg_result = export_seg(series, oblique_seg, folder / "seg.dcm", seg_type="binary")
    result = api.export_sr(series, seg_result.paths[0], folder / "sr.dcm", segmentation=oblique_seg, markups=markups)
    return folder, series, oblique_seg, markups, result


def test_round_trip_on_an_oblique_series(oblique):
    folder, series, segmentation, markups, result = oblique
    assert not series.geometry.is_orthogonal or not np.allclose(series.geometry.directions, np.eye(3))
    back = api.import_sr(folder / "sr.dcm", series)
    assert back.missing == []
    assert_same_records(result.records, back.records)
    assert_same_markups(markups, back.markups)
    for s in segmentation.segments:
        np.testing.assert_array_equal(back.segmentation.mask(s.name), segmentation.mask(s))
    volume = {r.segment: r.value for r in back.records if r.concept.meaning == "Volume" and r.segment}
    for s in segmentation.segments:
        assert volume[s.name] == pytest.approx(segmentation.mask(s).sum() * 0.9 * 0.9 * 2.5, rel=1e-12)
    # The non-planar closed curve is a closed POLYLINE under its perimeter (a POLYGON must be planar).
    saddle = [r for r in back.records if r.markup == "Saddle"]
    assert [(r.template, r.concept.meaning) for r in saddle] == [("1501", "Perimeter"), ("1501", "Area")]
    angle = next(r.value for r in back.records if r.markup == "Angle")
    a, b, c = markups[3].points_lps
    expected = np.degrees(np.arccos(np.dot(a - b, c - b) / np.linalg.norm(a - b) / np.linalg.norm(c - b)))
    assert angle == pytest.approx(expected, abs=1e-9)


def test_image_relative_coordinates_on_an_oblique_series(oblique, tmp_path):
    """A report with 2D SCOORD (as viewers write them) on slice 7 of the oblique series: placed in
    LPS through that image's position, orientation and pixel spacing (computed here from the
    file's own attributes)."""
    import highdicom as hd

    folder, series, *_ = oblique
    image = pydicom.dcmread(series.files[series.slices[7].file_index], stop_before_pixels=True)
    pixels = np.array([[10.5, 20.25], [60.0, 44.75], [100.0, 90.0]])
    source = hd.sr.SourceImageForRegion(image.SOPClassUID, image.SOPInstanceUID)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Drawn on slice 7"),
        referenced_region=hd.sr.ImageRegion(graphic_type="POLYLINE", graphic_data=np.vstack([pixels, pixels[:1]]),
                                            source_image=source))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(), procedure_reported=hd.sr.CodedConcept("25045-6", "LN", "CT"),
        imaging_measurements=[group])
    document = hd.sr.Comprehensive3DSR(evidence=[image], content=report, series_instance_uid=hd.UID(), series_number=9,
                                       sop_instance_uid=hd.UID(), instance_number=1)
    document.save_as(tmp_path / "viewer.dcm")
    back = api.import_sr(tmp_path / "viewer.dcm", folder / "series")
    assert back.missing == []
    (markup,) = back.markups
    assert markup.kind == "closed_curve"
    ipp = np.array(image.ImagePositionPatient, dtype=float)
    row, column = np.array(image.ImageOrientationPatient[:3], float), np.array(image.ImageOrientationPatient[3:], float)
    spacing = [float(v) for v in image.PixelSpacing]  # between rows, between columns
    expected = [ipp + (c - 0.5) * spacing[1] * row + (r - 0.5) * spacing[0] * column for c, r in pixels]
    np.testing.assert_allclose(markup.points_lps, expected, atol=COORDINATE_TOLERANCE_MM)


# --- the checkers -----------------------------------------------------------------------------

def test_dciodvfy_reports_no_error(exported, oblique):
    for path in (exported[0] / "sr.dcm", oblique[0] / "sr.dcm"):
        out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], errors


def test_dsrdump_shows_the_tid1500_tree(exported):
    # the segments' report and the markups' own report (see test_markups_have_their_own_report)
    outs = [subprocess.run([require_tool("dsrdump"), "+Pc", str(exported[0] / name)], capture_output=True, text=True)
            for name in ("sr.dcm", "sr_markups.dcm")]
    for out in outs:
        assert out.returncode == 0, out.stderr
        assert "error" not in out.stderr.lower()
    text = outs[0].stdout + outs[1].stdout
    assert "Comprehensive 3D SR Document" in text
    for expected in ('(126000,DCM,"Imaging Measurement Report")', '(126010,DCM,"Imaging Measurements")',
                     '(125007,DCM,"Measurement Group")', 'Tracking Identifier")="Tumor"',
                     '(118565006,SCT,"Volume")', '(C0JK,IBSI,"Surface Area of Mesh")',
                     '(L0JK,IBSI,"Maximum 3D Diameter of a Mesh")', '(112031,DCM,"Attenuation Coefficient")',
                     '=(373098007,SCT,"Mean")', '(900,99LIDCQIICR,"Malignancy")',
                     'IMAGE:(121191,DCM,"Referenced Segment")',
                     'SCOORD3D:(111030,DCM,"Image Region")=(POINT', 'SCOORD3D:(111030,DCM,"Image Region")=(POLYGON',
                     'SCOORD3D:(121231,DCM,"Volume Surface")=(POLYGON', '(410668003,SCT,"Length")',
                     'inferred from SCOORD3D', 'PNAME:(121008,DCM,"Person Observer Name")="Doe^Jane"'):
        assert expected in text, expected


def test_image_library_is_highdicoms_after_the_procedure(exported, sample):
    """The image library, added after highdicom built the document, is highdicom's TID 1600 of the
    series, between the procedure and Imaging Measurements as MeasurementReport places it, and
    highdicom reads the document back."""
    import highdicom as hd

    series, _ = sample
    expected = list(hd.sr.ImageLibrary(list(series.datasets)))[0]
    for name in ("sr.dcm", "sr_markups.dcm"):  # (the markups' report shares the entries built for the first)
        document = pydicom.dcmread(exported[0] / name)
        names = [item.ConceptNameCodeSequence[0].CodeValue for item in document.ContentSequence]
        at = names.index("111028")  # Image Library
        assert names[at - 1] == "121058" and names[at + 1] == "126010"  # Procedure reported, Imaging Measurements
        assert document.ContentSequence[at] == expected, name
    document = pydicom.dcmread(exported[0] / "sr.dcm")
    # the images, the SEG, and the markups' own report (pertinent evidence)
    assert len(hd.sr.Comprehensive3DSR.from_dataset(document).get_evidence()) == len(series.files) + 2


def test_images_highdicom_cannot_describe_leave_out_the_library(sample, sample_case, tmp_path, caplog):
    """An empty Slice Thickness (allowed in CT) stops highdicom's image library: the SR is written
    without it, with a warning, instead of failing."""
    series, segmentation = sample
    folder = tmp_path / "series"
    shutil.copytree(sample_case.series_dir, folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SliceThickness = None
        ds.save_as(path)
    thin = load_series(folder)
    seg_result = export_seg(thin, segmentation, tmp_path / "seg.dcm", seg_type="binary")
    with caplog.at_level("WARNING"):
        api.export_sr(thin, seg_result.paths[0], tmp_path / "sr.dcm")
    assert "no image library" in caplog.text
    document = pydicom.dcmread(tmp_path / "sr.dcm")
    assert "111028" not in [item.ConceptNameCodeSequence[0].CodeValue for item in document.ContentSequence]
    assert len(api.import_sr(tmp_path / "sr.dcm", thin).records) > 0


def test_sr_on_a_labelmap_seg_and_the_2022_checkers(sample, tmp_path):
    """An SR whose segments are in a LABELMAP SEG (what `auto` writes when nothing overlaps).
    dcmqi's tid1500reader reads it. The Debian checkers of 2022 predate Supplement 243 and do not
    know the Label Map Segmentation SOP Class: dciodvfy then reads Referenced Segment Number as
    misplaced, and DCMTK 3.6.7's dsrdump refuses the IMAGE item. No other dciodvfy error is
    allowed, and dsrdump may fail for that reason only."""
    series, segmentation = sample
    first_layer = [s for s in segmentation.segments if s.layer == 0]
    without_overlap = Segmentation.from_masks(series.geometry, [segmentation.mask(s) for s in first_layer],
                                              [dataclasses.replace(s) for s in first_layer])
    seg_result = export_seg(series, without_overlap, tmp_path / "seg.dcm")
    assert str(pydicom.dcmread(seg_result.paths[0]).SOPClassUID) == "1.2.840.10008.5.1.4.1.1.66.7"
    api.export_sr(series, seg_result.paths[0], tmp_path / "sr.dcm")

    out = subprocess.run([require_tool("tid1500reader"), "--inputDICOM", str(tmp_path / "sr.dcm"),
                          "--outputMetadata", str(tmp_path / "sr.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(json.loads((tmp_path / "sr.json").read_text())["Measurements"]) == len(without_overlap.segments)

    out = subprocess.run([require_tool("dciodvfy"), str(tmp_path / "sr.dcm")], capture_output=True, text=True)
    errors = {line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")}
    assert errors <= {"Error - Shall not be present for Referenced SOP Class that is not segmentation - "
                      "attribute <ReferencedSegmentNumber>"}, errors
    out = subprocess.run([require_tool("dsrdump"), str(tmp_path / "sr.dcm")], capture_output=True, text=True)
    assert out.returncode == 0 or "Invalid or unknown image SOP class referenced from IMAGE content item" in out.stderr


def test_tid1500reader_reads_our_measurements(exported, tmp_path):
    folder, _, result = exported
    tool = require_tool("tid1500reader")
    groups, documents = {}, []
    for name in ("sr.dcm", "sr_markups.dcm"):  # the segments' report and the markups' own
        out = subprocess.run([tool, "--inputDICOM", str(folder / name), "--outputMetadata", str(tmp_path / "sr.json")],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        documents.append(json.loads((tmp_path / "sr.json").read_text()))
        document = documents[-1]
        groups.update({g["TrackingUniqueIdentifier"]: g for g in document["Measurements"]})
    expected = [r for r in result.records if r.kind == "numeric"]
    for record in expected:
        group = groups[record.tracking_uid]
        assert group["TrackingIdentifier"] == record.tracking_id
        derivation = record.derivation.value if record.derivation else ""
        matches = [m for m in group["measurementItems"]
                   if m["quantity"]["CodeValue"] == record.concept.value
                   and m.get("derivationModifier", {}).get("CodeValue", "") == derivation]
        assert len(matches) == 1, record
        assert float(matches[0]["value"]) == pytest.approx(record.value, rel=1e-12, abs=1e-12)
        assert matches[0]["units"]["CodeValue"] == record.unit.value
    tumor = next(g for g in documents[0]["Measurements"] if g["TrackingIdentifier"] == "Tumor")
    assert tumor["Finding"]["CodeValue"] == "4147007"
    assert tumor["ReferencedSegment"] == 2


# --- other tools' reports -----------------------------------------------------------------------

def test_import_dcmqi_example(tmp_path):
    path = interop("dcmqi", "sr-example", "sr.dcm")
    back = api.import_sr(path)
    assert back.missing == []
    assert len(back.records) == 22
    first = back.records[0]
    assert (first.tracking_id, first.concept.meaning, first.value) == ("primary tumor", "SUVbw", 6.01529)
    assert first.unit == Code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")
    assert first.derivation == Code("R-00317", "SRT", "Mean")
    assert first.finding == Code("M-80003", "SRT", "Neoplasm, Primary")
    assert first.finding_site == Code("T-C5300", "SRT", "pharyngeal tonsil (adenoid)")
    volume = next(r for r in back.records if r.concept.meaning == "Volume")
    assert (volume.value, volume.unit.value, volume.method.meaning) == (33.5824, "ml", "Sum of segmented voxel volumes")
    # The SEG beside it is found and read (on its own grid: the PET series is not here).
    assert [s.name for s in back.segmentation.segments] == ["Neoplasm, Primary"]
    assert back.segmentation.mask("Neoplasm, Primary").sum() == import_seg(interop("dcmqi", "sr-example", "seg.dcm")) \
        .segmentation.mask("Neoplasm, Primary").sum() > 0
    assert {r.segment for r in back.records} == {"Neoplasm, Primary"}


def test_import_highdicom_examples(tmp_path):
    for name in ("ct_image.dcm", "sr_document.dcm", "sr_document_with_multiple_groups.dcm"):
        shutil.copy(interop("highdicom", name), tmp_path / name)
    ct = pydicom.dcmread(tmp_path / "ct_image.dcm", stop_before_pixels=True)
    ipp, spacing = np.array(ct.ImagePositionPatient, float), float(ct.PixelSpacing[0])

    back = api.import_sr(tmp_path / "sr_document.dcm", tmp_path)
    assert back.missing == []
    (record,) = back.records
    assert (record.concept.meaning, record.value, record.unit.value) == ("Area of defined region", 1.7, "cm2")
    assert record.finding.meaning == "Spinal cord"
    (circle,) = back.markups  # a 2D CIRCLE, as a closed curve in the image plane
    assert circle.kind == "closed_curve"
    assert np.allclose(circle.points_lps[:, 2], ipp[2])

    back = api.import_sr(tmp_path / "sr_document_with_multiple_groups.dcm", tmp_path)
    assert back.missing == []
    assert [r.tracking_id for r in back.records] == ["Image0001", "Image0001", "LungNodule0001", "LungNodule0001",
                                                     "Aorta0001", "Vertebra0001"]
    assert back.records[1].coded_value.meaning == "Level of T4/T5 intervertebral disc"
    kinds = {m.name: m for m in back.markups}
    assert kinds["LungNodule0001"].kind == "closed_curve"
    centre = kinds["LungNodule0001"].points_lps.mean(axis=0)
    ds = pydicom.dcmread(tmp_path / "sr_document_with_multiple_groups.dcm")
    circle = _find_scoord(ds, "CIRCLE")
    np.testing.assert_allclose(centre, ipp + (circle[0] - 0.5) * spacing * np.array([1, 0, 0])
                               + (circle[1] - 0.5) * spacing * np.array([0, 1, 0]), atol=COORDINATE_TOLERANCE_MM)
    assert kinds["Vertebra0001"].kind == "point_list"
    np.testing.assert_allclose(kinds["Vertebra0001"].points_lps, [[123.5, 234.1, -23.7]], atol=1e-4)
    assert kinds["Aorta0001"].kind == "curve"

    # Without the image, the 2D coordinates are skipped and said to be; the rest loads.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tmp_path / "sr_document_with_multiple_groups.dcm", alone / "sr.dcm")
    back = api.import_sr(alone / "sr.dcm")
    assert len(back.records) == 6
    assert [m.name for m in back.markups] == ["Vertebra0001"]
    assert any("2D coordinates on image" in m for m in back.missing)


def _find_scoord(ds, graphic_type):
    for item in ds.ContentSequence:
        found = _find_scoord(item, graphic_type) if "ContentSequence" in item else None
        if found is not None:
            return found
        if item.get("ValueType") == "SCOORD" and item.GraphicType == graphic_type:
            return [float(v) for v in item.GraphicData]
    return None


# --- LIDC preset ----------------------------------------------------------------------------------

def test_lidc_preset(sample, tmp_path):
    series, segmentation = sample
    tumor = segmentation.mask("Tumor")
    smaller = tumor.copy()
    smaller[:, :, : int(np.argmax(tumor.any(axis=(0, 1)))) + 3] = False
    other = segmentation.mask("Vertebral column")
    annotations = Segmentation.from_masks(series.geometry, [tumor, smaller, other], [
        Segment("a1", "Nodule 1 - Annotation 001"), Segment("a2", "Nodule 1 - Annotation 002"),
        Segment("a3", "Nodule 2 - Annotation 007")])
    numbers = apply_lidc_preset(annotations)
    assert numbers == {"a1": (1, "001"), "a2": (1, "002"), "a3": (2, "007")}
    export_seg(series, annotations, tmp_path / "seg.dcm", seg_type="binary")
    (tmp_path / "ev.csv").write_text("segment,concept,value\na1,Malignancy,4\na2,Malignancy,3\na3,Subtlety,5\n")
    result = api.export_sr(series, tmp_path / "seg.dcm", tmp_path / "sr.dcm", segmentation=annotations,
                          evaluations=tmp_path / "ev.csv", lidc=True)
    ds = pydicom.dcmread(tmp_path / "sr.dcm")
    assert ds.SeriesDescription.startswith("Nodule 1 - Annotation 001; Nodule 1 - Annotation 002")
    back = api.import_sr(tmp_path / "sr.dcm", series)
    groups = {}
    for r in back.records:
        groups.setdefault(r.segment, r)
    assert groups["Nodule 1 - Annotation 001"].tracking_id == groups["Nodule 1 - Annotation 002"].tracking_id \
        == "Nodule 1"
    assert groups["Nodule 1 - Annotation 001"].tracking_uid == groups["Nodule 1 - Annotation 002"].tracking_uid
    assert groups["Nodule 2 - Annotation 007"].tracking_uid != groups["Nodule 1 - Annotation 001"].tracking_uid
    for r in back.records:
        assert r.finding == Code("27925004", "SCT", "Nodule")
        assert r.finding_site == Code("39607008", "SCT", "Lung")
    malignancy = [r.coded_value for r in back.records if r.concept.meaning == "Malignancy"]
    assert malignancy == [Code("904", "99LIDCQIICR", "4 out of 5 (Moderately Suspicious for Cancer)"),  # the seed's
                          evaluation("lidc", "Malignancy", 3)[1]]
    assert len(result.records) == len(back.records)
    segments = {s.name: s for s in back.segmentation.segments}
    assert segments["Nodule 1 - Annotation 002"].description == "Nodule 1 - Annotation 002"


# --- bad input ----------------------------------------------------------------------------------

def test_sr_of_another_template_is_refused(exported, sample_case, tmp_path):
    folder, _, _ = exported
    ds = pydicom.dcmread(folder / "sr.dcm")
    ds.ContentTemplateSequence[0].TemplateIdentifier = "2000"
    ds.ConceptNameCodeSequence[0].CodeValue = "18748-4"
    ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    ds.ConceptNameCodeSequence[0].CodeMeaning = "Diagnostic Imaging Report"
    ds.save_as(tmp_path / "other.dcm")
    with pytest.raises(InputError, match="not a TID 1500 Measurement Report: the document follows template 2000"):
        api.import_sr(tmp_path / "other.dcm")
    image = next(Path(sample_case.series_dir).iterdir())
    with pytest.raises(InputError, match="not a DICOM SR"):
        api.import_sr(image)
    assert main(["-q", "sr", "import", str(tmp_path / "other.dcm"), "--out", str(tmp_path / "o")]) == 3


def test_missing_seg_loads_what_it_can(exported, sample, tmp_path, capsys):
    folder, seg_result, result = exported
    shutil.copy(folder / "sr.dcm", tmp_path / "sr.dcm")  # without the SEG beside it
    shutil.copy(folder / "sr_markups.dcm", tmp_path / "sr_markups.dcm")
    back = api.import_sr(tmp_path / "sr.dcm", sample[0])
    assert back.segmentation is None
    assert back.referenced_seg_uids == seg_result.sop_instance_uids
    (message,) = back.missing
    assert seg_result.sop_instance_uids[0] in message and "not found" in message
    assert len(back.records) == len(result.records) and len(back.markups) == 4
    # Found when its folder is given.
    assert api.import_sr(tmp_path / "sr.dcm", seg_folders=[folder]).segmentation is not None
    assert main(["-q", "sr", "import", str(tmp_path / "sr.dcm"), "--out", str(tmp_path / "out")]) == 0
    # said once, as the import's warning on stderr (test_convert.py checks it in a real process), not again on stdout
    assert "missing: the SEG" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["markups.mrk.json", "measurements.csv"]


def test_markups_outside_the_series(sample, exported, tmp_path):
    series, _ = sample
    folder, _, _ = exported
    far = Markup("line", "Far line", [[0.0, 0.0, 0.0], [0.0, 0.0, 200.0]])
    with pytest.raises(GeometryError, match=r"'Far line' lies outside the series: control point 2 .* mm outside"):
        api.export_sr(series, folder / "seg.dcm", tmp_path / "sr.dcm", markups=[far])
    box = Markup("roi", "Far box", roi_center_lps=[500.0, 0, 0], roi_size=[1, 1, 1])
    with pytest.raises(GeometryError, match="its centre"):
        api.export_sr(series, folder / "seg.dcm", tmp_path / "sr.dcm", markups=[box])
    assert not (tmp_path / "sr.dcm").exists()


def test_empty_segments(sample, tmp_path, caplog):
    """An empty segment of the given segmentation is not in the SEG (skipped, with a warning);
    a SEG segment whose frames are all empty gets its group without measurements (warning)."""
    series, segmentation = sample
    masks = [segmentation.mask("Tumor"), np.zeros(series.geometry.shape, bool), segmentation.mask("Liver")]
    seg = Segmentation.from_masks(series.geometry, masks, [Segment("t", "Tumor"), Segment("e", "Empty"),
                                                           Segment("l", "Liver")])
    # keep_empty_segments=False: the SEG leaves the empty segment out (by default it is described without frames)
    seg_result = export_seg(series, seg, tmp_path / "seg.dcm", seg_type="binary", keep_empty_segments=False)
    assert seg_result.skipped_segments == ["Empty"]
    result = api.export_sr(series, tmp_path / "seg.dcm", tmp_path / "sr.dcm", segmentation=seg)
    assert any("'Empty' is not in the SEG (it is empty" in m for m in result.skipped)
    # Blank out the frames of segment 2 (Liver) of the SEG.
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    frame_bytes = ds.Rows * ds.Columns // 8
    data = bytearray(ds.PixelData)
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 2:
            data[n * frame_bytes:(n + 1) * frame_bytes] = bytes(frame_bytes)
    ds.PixelData = bytes(data)
    ds.save_as(tmp_path / "blank.dcm")
    caplog.clear()
    result = api.export_sr(series, tmp_path / "blank.dcm", tmp_path / "sr2.dcm")
    assert "segment 'Liver' of the SEG is empty: its group has no measurements" in caplog.text
    assert {r.segment for r in result.records} == {"Tumor"}
    back = api.import_sr(tmp_path / "sr2.dcm")
    assert [r.tracking_id for r in back.records if r.concept.meaning == "Volume"] == ["Tumor"]
    assert _text(_groups(pydicom.dcmread(tmp_path / "sr2.dcm"))[1], "112039") == "Liver"


def test_seg_of_another_series_and_bad_files(sample, exported, tmp_path):
    series, _ = sample
    folder, _, _ = exported
    other = load_series(interop("dcmqi", "ct-3slice"))
    with pytest.raises(InputError, match="the SEG was made on series"):
        api.export_sr(other, folder / "seg.dcm", tmp_path / "sr.dcm")
    with pytest.raises(InputError, match="not a DICOM SEG"):
        api.export_sr(series, series.files[0], tmp_path / "sr.dcm")
    with pytest.raises(InputError, match="SEG file does not exist"):
        api.export_sr(series, tmp_path / "nothing.dcm", tmp_path / "sr.dcm")
    (tmp_path / "bad.csv").write_text("segment,concept,value\nNo such segment,Malignancy,4\n")
    with pytest.raises(InputError, match="line 2: no segment with id or name 'No such segment'"):
        api.export_sr(series, folder / "seg.dcm", tmp_path / "sr.dcm", evaluations=tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("segment,concept,value\nTumor,Malignancy,9\n")
    with pytest.raises(InputError, match="valid scores"):
        api.export_sr(series, folder / "seg.dcm", tmp_path / "sr.dcm", evaluations=tmp_path / "bad.csv")


# --- command line and API -------------------------------------------------------------------------

def test_command_line(exported, sample_case, tmp_path, capsys):
    folder, _, _ = exported
    out = tmp_path / "cli.dcm"
    argv = ["-q", "sr", "export", "--series", str(sample_case.series_dir), "--seg", str(folder / "seg.dcm"),
            "--segmentation", str(sample_case.segmentation_path), "--markups", str(sample_case.markups_path),
            "--evaluations", str(folder / "evaluations.csv"), "--observer", "Doe^Jane", "--out", str(out)]
    assert main(argv) == 0
    assert "SR written to" in capsys.readouterr().out
    assert main(argv) == 4  # exists, no --force
    assert main(argv + ["--force", "--lidc"]) == 0
    assert main(["-q", "sr", "import", str(out), "--series", str(sample_case.series_dir), "--seg-dir", str(folder),
                 "--out", str(tmp_path / "back")]) == 0
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["markups.mrk.json", "measurements.csv",
                                                                      "segmentation.seg.nrrd"]
    records = sr.read_measurements_csv(tmp_path / "back" / "measurements.csv")
    assert records == api.import_sr(out, seg_folders=[folder]).records
    assert main(["-q", "sr", "import", str(out), "--out", str(tmp_path / "back")]) == 4  # not empty
    for argv in (["sr", "--help"], ["sr", "export", "--help"], ["sr", "import", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0


def test_api_wrappers(exported, sample_case, tmp_path):
    folder, _, _ = exported
    result = api.export_sr(sample_case.series_dir, folder / "seg.dcm", tmp_path / "sr.dcm",
                           markups=[sample_case.markups_path], device_name="Test device")
    back = api.import_sr(result.path, sample_case.series_dir, seg_folders=[folder], out_dir=tmp_path / "out")
    assert back.device_observers == ["Test device"]
    assert len(back.written) == 3
    assert_same_markups(read_markups(sample_case.markups_path), read_markups(tmp_path / "out" / "markups.mrk.json"))
