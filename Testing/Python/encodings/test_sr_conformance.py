"""SR conformance (issue "Conformance", SR items), each checked by readers other than ours:
PixelMed's DicomSRValidator, dcmtk's dsrdump, dciodvfy, highdicom's srread, dcmqi's tid1500reader.

a) markup groups in the templates the standard gives them (TID 1410 / 1411 / 1501), read back;
b) the Finding Category of each group is kept on import;
c) the SR written with a SEG by the CSV pipeline references a BINARY SEG (LABELMAP is refused by
   dsrdump and dciodvfy, which predate Supplement 243);
d) an enhanced multi-frame source gets its image library (spacing etc. from the functional groups);
e) non-ASCII text is written as ISO_IR 192, and any declared character set is read back.
Every coordinate is LPS."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from conftest import IN_CI, REPO, interop, require_tool
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series

PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
EXAMPLE_CSV = REPO / "Resources" / "Examples" / "annotations_example.csv"


def pixelmed_errors(path: Path) -> list:
    """The "Error:" lines of PixelMed's DicomSRValidator about an SR (skips without java/PixelMed
    on a developer machine, fails in CI)."""
    java = shutil.which("java")
    if java is None or not PIXELMED_JAR.is_file():
        if IN_CI:
            pytest.fail("PixelMed (pixelmed-apps) or java is not installed; .ci/run installs them")
        pytest.skip("PixelMed DicomSRValidator not installed (apt-get install pixelmed-apps default-jre-headless)")
    done = subprocess.run([java, "-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0",
                           "-Djdk.xml.xpathTotalOpLimit=0", "-cp", str(PIXELMED_JAR),
                           "com.pixelmed.validate.DicomSRValidator", str(path)],
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert "IOD validation complete" in output, output[-2000:]
    return [line for line in output.splitlines() if line.startswith("Error")]


def dsrdump(path: Path) -> str:
    done = subprocess.run([require_tool("dsrdump"), "-Ec", str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"E: " not in done.stderr and b"F: " not in done.stderr, done.stderr.decode(errors="replace")
    return done.stdout.decode("utf-8")


def dciodvfy_errors(path: Path) -> list:
    done = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True,
                          errors="replace")
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def sample(sample_case):
    series = load_series(sample_case.series_dir)
    return series, api.load_annotations(series, sample_case.segmentation_path).segmentation


@pytest.fixture(scope="module")
def every_markup(sample):
    """Markups of every kind inside the sample series (LPS)."""
    series, _ = sample
    center = series.geometry.ijk_to_lps_points(np.array([[64.0, 64.0, 16.0]]))[0]
    square = center + np.array([[-10, -10, 0], [10, -10, 0], [10, 10, 0], [-10, 10, 0]], float)
    return [
        Markup("point_list", "Seeds", np.array([center, center + [5, 0, 0], center + [0, 5, 2.5]])),
        Markup("line", "Diameter", np.array([center, center + [12, 0, 0]])),
        Markup("curve", "Path", np.array([center, center + [5, 5, 0], center + [10, 5, 2.5]])),
        Markup("angle", "Angle", np.array([center + [10, 0, 0], center, center + [0, 10, 0]])),
        Markup("closed_curve", "Outline", square),
        Markup("closed_curve", "Warped outline", square + np.array([[0, 0, 0], [0, 0, 2.5], [0, 0, 0], [0, 0, 5]])),
        Markup("plane", "Cut", roi_center_lps=center, roi_size=[30.0, 20.0, 0.0], roi_axes_lps=np.eye(3)),
        Markup("roi", "Box", roi_center_lps=center, roi_size=[20.0, 16.0, 10.0], roi_axes_lps=np.eye(3)),
    ]


@pytest.fixture(scope="module")
def mixed(sample, every_markup, tmp_path_factory):
    """SEG + SR with the sample's segments and a markup of every kind."""
    series, segmentation = sample
    folder = tmp_path_factory.mktemp("conformance")
    seg = api.export_seg(series, segmentation, folder / "seg.dcm", seg_type="binary")
    result = api.export_sr(series, seg.paths[0], folder / "sr.dcm", segmentation=segmentation,
                           markups=every_markup, observer_name="Doe^Jane")
    return folder, result


# --- a) templates ------------------------------------------------------------------------------

def test_markup_groups_in_their_templates(mixed, every_markup, sample):
    """highdicom sorts the groups by template: segments are TID 1411 in the report; in the markups'
    own report the ROI box is TID 1411, the planar closed curve, the plane and each point TID 1410
    (SCOORD3D image region), lines, curves, angles and the non-planar closed curve TID 1501
    (SCOORD3D source of their measurement)."""
    folder, _ = mixed
    report = hd.sr.srread(folder / "sr.dcm").content
    assert [str(g.tracking_identifier) for g in report.get_volumetric_roi_measurement_groups()] == \
        [s.name for s in sample[1].segments]
    assert not report.get_planar_roi_measurement_groups() and not report.get_image_measurement_groups()
    markups_report = hd.sr.srread(folder / "sr_markups.dcm").content
    volumetric = [str(g.tracking_identifier) for g in markups_report.get_volumetric_roi_measurement_groups()]
    planar = [str(g.tracking_identifier) for g in markups_report.get_planar_roi_measurement_groups()]
    other = [str(g.tracking_identifier) for g in markups_report.get_image_measurement_groups()]
    assert volumetric == ["Box"]
    assert planar == ["Seeds"] * 3 + ["Outline", "Cut"]
    assert other == ["Diameter", "Path", "Angle", "Warped outline"]
    for group in markups_report.get_image_measurement_groups():
        for measurement in group.get_measurements():
            if measurement.name.meaning != "Area":
                coordinates = measurement.referenced_coordinates
                assert len(coordinates) == 1 and coordinates[0].ValueType == "SCOORD3D"
                assert coordinates[0].RelationshipType == "INFERRED FROM"
    # ... and read back, through the report alone, as the markups they were (LPS).
    back = api.import_sr(folder / "sr.dcm", sample[0])
    assert [(m.kind, m.name) for m in back.markups] == [(m.kind, m.name) for m in every_markup]
    assert back.companions == [str(folder / "sr_markups.dcm")]


def test_markups_have_their_own_report(mixed, every_markup, sample, sample_case, tmp_path, capsys):
    """Segments and markups: two documents of one series. The report (instance 1) holds the segment
    groups and lists the markups' report (instance 2) as Pertinent Other Evidence; importing the
    report reads both; the markups' report alone gives the markups; a missing one is said;
    ``markups_in_own_document=False`` writes one document; the CLI prints and returns both."""
    from DicomAnnotEmbedLib.cli import main
    from DicomAnnotEmbedLib.encodings.sr import SEG_SOP_CLASSES
    from DicomAnnotEmbedLib.slicer.module_support import plan_import

    folder, result = mixed
    assert result.paths == [folder / "sr.dcm", folder / "sr_markups.dcm"]
    report, markups_report = (pydicom.dcmread(p) for p in result.paths)
    assert report.SeriesInstanceUID == markups_report.SeriesInstanceUID == result.series_instance_uid
    assert (report.InstanceNumber, markups_report.InstanceNumber) == (1, 2)
    assert markups_report.SOPInstanceUID == result.markups_sop_instance_uid
    (study,) = report.PertinentOtherEvidenceSequence
    (series_item,) = study.ReferencedSeriesSequence
    (instance,) = series_item.ReferencedSOPSequence
    assert (study.StudyInstanceUID, series_item.SeriesInstanceUID, instance.ReferencedSOPInstanceUID,
            instance.ReferencedSOPClassUID) == (markups_report.StudyInstanceUID, markups_report.SeriesInstanceUID,
                                                markups_report.SOPInstanceUID, markups_report.SOPClassUID)
    assert "PertinentOtherEvidenceSequence" not in markups_report
    # no SEG reference in the markups' report: it is about coordinates in the frame of reference
    assert all(str(i.ReferencedSOPClassUID) not in SEG_SOP_CLASSES for st in
               markups_report.CurrentRequestedProcedureEvidenceSequence for se in st.ReferencedSeriesSequence
               for i in se.ReferencedSOPSequence)
    both = api.import_sr(folder / "sr.dcm", sample[0])
    assert len(both.records) == len(result.records) and both.missing == []
    alone = api.import_sr(folder / "sr_markups.dcm", sample[0])
    assert [m.name for m in alone.markups] == [m.name for m in both.markups]
    assert all(not r.seg_sop_instance_uid for r in alone.records) and alone.referenced_seg_uids == []
    shutil.copy(folder / "sr.dcm", tmp_path / "sr.dcm")
    partial = api.import_sr(tmp_path / "sr.dcm", sample[0], seg_folders=[folder / "nowhere"])
    assert partial.markups == [] and any(markups_report.SOPInstanceUID in m and "not found" in m
                                         for m in partial.missing)
    # the Slicer module loads the report, which brings the markups' one
    assert plan_import(folder).srs == [folder / "sr.dcm"]
    single = api.export_sr(sample[0], folder / "seg.dcm", tmp_path / "one.dcm", segmentation=sample[1],
                           markups=every_markup, markups_in_own_document=False)
    assert single.paths == [tmp_path / "one.dcm"] and single.markups_path is None
    assert not (tmp_path / "one_markups.dcm").exists()
    assert len(api.import_sr(tmp_path / "one.dcm", sample[0]).records) == len(result.records)
    assert main(["sr", "export", "--series", str(sample[0].folder), "--seg", str(folder / "seg.dcm"),
                 "--markups", str(sample_case.markups_path), "--out", str(tmp_path / "cli.dcm")]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "cli.dcm") in printed and str(tmp_path / "cli_markups.dcm") in printed
    assert main(["-q", "sr", "import", str(tmp_path / "cli.dcm"), "--series", str(sample[0].folder),
                 "--out", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "markups.mrk.json").is_file()


def test_pixelmed_accepts_the_segment_groups(sample, tmp_path):
    """An SR of segment groups (with evaluations, a person observer, the LIDC preset) has no
    PixelMed error; warnings about items newer than its templates (Finding Category) remain."""
    series, segmentation = sample
    seg = api.export_seg(series, segmentation, tmp_path / "seg.dcm", seg_type="binary")
    (tmp_path / "evaluations.csv").write_text("segment,concept,value\nTumor,Malignancy,4\nTumor,Comment,firm\n",
                                              encoding="utf-8")
    api.export_sr(series, seg.paths[0], tmp_path / "sr.dcm", segmentation=segmentation,
                  evaluations=tmp_path / "evaluations.csv", observer_name="Doe^Jane", lidc=True,
                  image_library=False)  # (PixelMed's run time grows with it; test_pixelmed_on_markup_groups has one)
    assert pixelmed_errors(tmp_path / "sr.dcm") == []
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []


def test_pixelmed_accepts_both_reports(mixed):
    """No PixelMed error on either document. (In one document, PixelMed 20220618 picks ONE template
    for every group of the Imaging Measurements container - TID 1411 as soon as any group references
    a segment - and flagged each TID 1410 / 1501 markup group for lacking a TID 1411 region: that is
    why the markups have their own report.)"""
    folder, result = mixed
    for path in result.paths:
        assert pixelmed_errors(path) == [], path
        assert dciodvfy_errors(path) == [], path
        dsrdump(path)


def test_old_layout_still_read(sample, tmp_path):
    """SRs of the old layout (a point list as TID 1410 POINT groups, written by highdicom
    directly here) are still read back into the same markups."""
    series, _ = sample
    frame = str(series.datasets[0].FrameOfReferenceUID)
    points = series.geometry.ijk_to_lps_points(np.array([[60.0, 60.0, 10.0], [70.0, 66.0, 12.0]]))
    uid = pydicom.uid.generate_uid()
    groups = [hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier="Old points"),
        referenced_region=hd.sr.ImageRegion3D(graphic_type="POINT", graphic_data=p[None],
                                              frame_of_reference_uid=frame)) for p in points]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(), procedure_reported=hd.sr.CodedConcept(
            "363679005", "SCT", "Imaging procedure"), imaging_measurements=groups)
    document = hd.sr.Comprehensive3DSR(evidence=[series.datasets[0]], content=report,
                                       series_instance_uid=pydicom.uid.generate_uid(), series_number=1,
                                       sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1)
    document.save_as(tmp_path / "old.dcm")
    back = api.import_sr(tmp_path / "old.dcm", series)
    assert [(m.kind, m.name) for m in back.markups] == [("point_list", "Old points")]
    np.testing.assert_allclose(back.markups[0].points_lps, points, atol=1e-3)


# --- b) finding category -------------------------------------------------------------------------

def test_finding_category_kept(mixed, sample, tmp_path):
    folder, result = mixed
    back = api.import_sr(folder / "sr.dcm")
    assert len(back.seg_imports) == 1  # found beside the SR and read through the SEG encoding
    listed = api.import_sr(folder / "sr.dcm", load_seg=False)
    assert listed.seg_imports == [] and listed.referenced_seg_uids == back.referenced_seg_uids
    expected = {s.name: s.terminology.category for s in sample[1].segments}
    got = {r.segment: r.finding_category for r in back.records if r.segment}
    assert got == expected
    assert all(r.finding_category is None for r in back.records if r.markup)
    assert back.records == result.records
    # highdicom reads the same categories
    report = hd.sr.srread(folder / "sr.dcm").content
    by_highdicom = {str(g.tracking_identifier): Code(g.finding_category.value, g.finding_category.scheme_designator,
                                                      g.finding_category.meaning)
                    for g in report.get_volumetric_roi_measurement_groups() if g.finding_category is not None}
    assert by_highdicom == {r.tracking_id: r.finding_category for r in back.records if r.segment}
    # kept in measurements.csv
    out = api.import_sr(folder / "sr.dcm", out_dir=tmp_path / "back")
    from DicomAnnotEmbedLib.encodings.sr import read_measurements_csv
    assert read_measurements_csv(tmp_path / "back" / "measurements.csv") == out.records


def test_finding_of_dcmqi_reader(mixed, tmp_path):
    """dcmqi's tid1500reader reads each segment group's Finding as ours does (and its Finding
    Category, when that dcmqi version reports it)."""
    folder, _ = mixed
    reader = require_tool("tid1500reader")
    done = subprocess.run([reader, "--inputDICOM", str(folder / "sr.dcm"), "--outputMetadata",
                           str(tmp_path / "sr.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "sr.json").read_text())
    back = api.import_sr(folder / "sr.dcm")
    ours = {r.tracking_id: r for r in back.records if r.segment}
    items = [item for item in meta["Measurements"] if "ReferencedSegment" in item]
    assert {item["TrackingIdentifier"] for item in items} == set(ours)
    for item in items:
        record = ours[item["TrackingIdentifier"]]
        assert item["Finding"]["CodeValue"] == record.finding.value
        if "FindingCategory" in item:
            assert item["FindingCategory"]["CodeValue"] == record.finding_category.value


def test_finding_category_of_highdicom_document(tmp_path):
    path = interop("highdicom", "sr_document_with_multiple_groups.dcm")
    shutil.copy(path, tmp_path / "sr.dcm")
    back = api.import_sr(tmp_path / "sr.dcm")
    report = hd.sr.srread(path).content
    expected = {}
    for group in (report.get_planar_roi_measurement_groups() + report.get_volumetric_roi_measurement_groups()
                  + report.get_image_measurement_groups()):
        category = group.finding_category
        if category is not None:
            expected[str(group.tracking_identifier)] = Code(category.value, category.scheme_designator,
                                                            category.meaning)
    got = {r.tracking_id: r.finding_category for r in back.records if r.finding_category is not None}
    assert expected and got == expected


# --- c) the SEG an SR references -----------------------------------------------------------------

def test_csv_pipeline_pairs_sr_with_binary_seg(sample_case, tmp_path):
    """Two findings that do not overlap: "auto" makes a LABELMAP SEG when no SR is written, but
    BINARY when the SR references it, and dsrdump and dciodvfy accept that SR (they refuse one
    referencing a LABELMAP SEG: they predate Supplement 243)."""
    table = tmp_path / "table.csv"
    table.write_text("finding,label,shape,slice_index,coordinates\n"
                     "N1,Nodule,rectangle,10,40 40; 60 60\nN1,Nodule,rectangle,11,40 40; 60 60\n"
                     "N2,Cyst,circle,14,90 90; 100 90\n", encoding="utf-8")
    api.import_csv(table, sample_case.series_dir, tmp_path / "seg_only", formats=["seg"])
    seg = pydicom.dcmread(tmp_path / "seg_only" / "seg.dcm", stop_before_pixels=True)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    api.import_csv(table, sample_case.series_dir, tmp_path / "out", formats=["seg", "sr"])
    seg = pydicom.dcmread(tmp_path / "out" / "seg.dcm", stop_before_pixels=True)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    text = dsrdump(tmp_path / "out" / "sr.dcm")
    assert '"Referenced Segment"' in text
    assert dciodvfy_errors(tmp_path / "out" / "sr.dcm") == []


def test_sr_on_labelmap_seg_warns(sample, tmp_path, caplog):
    series, segmentation = sample
    single = Segmentation.from_masks(series.geometry, [segmentation.mask("Tumor")], [Segment("t", "Tumor")])
    seg = api.export_seg(series, single, tmp_path / "seg.dcm", seg_type="labelmap")
    api.export_sr(series, seg.paths[0], tmp_path / "sr.dcm")
    assert "is a LABELMAP SEG" in caplog.text
    back = api.import_sr(tmp_path / "sr.dcm", series)
    assert back.segmentation is not None and back.segmentation.segments[0].name == "Tumor"


# --- d) enhanced multi-frame source ---------------------------------------------------------------

def test_image_library_of_enhanced_ct(tmp_path):
    source = interop("pydicom-data", "eCT_Supplemental.dcm")
    (tmp_path / "series").mkdir()
    shutil.copy(source, tmp_path / "series" / "ect.dcm")
    series = load_series(tmp_path / "series")
    mask = np.zeros(series.geometry.shape, bool)
    mask[:, 200:260, 180:250] = True
    seg = api.export_seg(series, mask, tmp_path / "seg.dcm", seg_type="binary")
    api.export_sr(series, seg.paths[0], tmp_path / "sr.dcm")
    ds = pydicom.dcmread(tmp_path / "sr.dcm")
    names = [i.ConceptNameCodeSequence[0].CodeValue for i in ds.ContentSequence]
    assert "111028" in names  # Image Library
    library = ds.ContentSequence[names.index("111028")]
    entry = library.ContentSequence[0].ContentSequence
    descriptors = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in entry[0].ContentSequence}
    enhanced = pydicom.dcmread(source, stop_before_pixels=True)
    measures = enhanced.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    spacing = descriptors["Horizontal Pixel Spacing"].MeasuredValueSequence[0].NumericValue
    assert float(spacing) == pytest.approx(float(measures.PixelSpacing[1]))
    assert float(descriptors["Slice Thickness"].MeasuredValueSequence[0].NumericValue) == \
        pytest.approx(float(measures.SliceThickness))
    assert "PixelSpacing" not in enhanced  # the source stays as it is
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
    dsrdump(tmp_path / "sr.dcm")
    assert pixelmed_errors(tmp_path / "sr.dcm") == []
    assert len(api.import_sr(tmp_path / "sr.dcm", series).records) > 0


# --- e) character sets ---------------------------------------------------------------------------

NAMES = ["Tumör", "肿瘤"]


@pytest.fixture(scope="module")
def non_ascii(sample, tmp_path_factory):
    series, segmentation = sample
    folder = tmp_path_factory.mktemp("charset")
    masks = [segmentation.mask("Tumor"), segmentation.mask("Liver")]
    seg = Segmentation.from_masks(series.geometry, masks, [Segment("a", NAMES[0]), Segment("b", NAMES[1])])
    seg_result = api.export_seg(series, seg, folder / "seg.dcm", seg_type="binary")
    api.export_sr(series, seg_result.paths[0], folder / "sr.dcm", observer_name="Müller^Jürgen")
    return folder, series


def test_non_ascii_text_is_utf8(non_ascii):
    folder, series = non_ascii
    ds = pydicom.dcmread(folder / "sr.dcm")
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    text = dsrdump(folder / "sr.dcm")
    assert all(f'"{name}"' in text for name in NAMES) and "Müller^Jürgen" in text
    assert dciodvfy_errors(folder / "sr.dcm") == []
    report = hd.sr.srread(folder / "sr.dcm").content
    assert [str(g.tracking_identifier) for g in report.get_volumetric_roi_measurement_groups()] == NAMES
    back = api.import_sr(folder / "sr.dcm", series)
    assert sorted({r.tracking_id for r in back.records}) == sorted(NAMES)
    assert back.person_observers == ["Müller^Jürgen"]


@pytest.mark.parametrize("charset, name", [("ISO_IR 100", "Tumör"), ("GB18030", "肿瘤"),
                                           ("\\ISO 2022 IR 87", "腫瘍")])
def test_declared_character_sets_read(non_ascii, tmp_path, charset, name):
    """An SR in another declared character set (Latin-1, GB18030, ISO 2022 Japanese) reads back."""
    folder, _ = non_ascii
    ds = pydicom.dcmread(folder / "sr.dcm")
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    container = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    for group in container.ContentSequence:
        for item in group.ContentSequence:
            if item.ConceptNameCodeSequence[0].CodeValue == "112039":
                item.TextValue = name
    ds.save_as(tmp_path / "sr.dcm")
    raw = (tmp_path / "sr.dcm").read_bytes()
    assert name.encode("utf-8") not in raw  # really written in that character set
    back = api.import_sr(tmp_path / "sr.dcm")
    assert {r.tracking_id for r in back.records} == {name}
