"""The fast SR export (``engine="fast"``, built with pydicom alone: encodings/sr/template.py)
writes the same document as the plain highdicom path (``engine="highdicom"``): both are written
and read back, and compared element by element, VRs and values, the SR's own UIDs and dates and
highdicom's own Contributing Equipment item aside; on the sample case (with coded and text
evaluations, and again with non-ASCII segment names and texts), with every markup kind, finding
modifier and document option in one report, with the LIDC preset and no image library, and on the
conformance matrix's series (oblique, MR, no Spacing Between Slices, enhanced multi-frame CT...).
The content is encoded by encodings.sr.writer."""
from __future__ import annotations

from pathlib import Path

import dataclasses

import numpy as np
import pydicom
import pytest

from conftest import rotation
from test_conformance_matrix import CASES, _annotations, _build_series
from test_sr import EVALUATIONS
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.encodings.seg import export_seg
from DicomAnnotEmbedLib.files.sample import sample_volume_and_segments
from DicomAnnotEmbedLib.presets.lidc import apply_lidc_preset

#: Made anew by each export: the SR's UIDs, creation dates and times.
VARYING = {"SOPInstanceUID", "SeriesInstanceUID", "ContentDate", "ContentTime", "InstanceCreationDate",
           "InstanceCreationTime", "SeriesDate", "SeriesTime", "MediaStorageSOPInstanceUID", "ContributionDateTime"}


def assert_same(expected, actual, known_uids, where="") -> int:
    """Compare two datasets element by element (tag, VR, value; sequences item by item). A UID
    value may differ only when neither is one of ``known_uids`` (the inputs': a tracking UID that
    each export makes anew for a markup). Returns the number of elements compared."""
    assert [e.tag for e in expected] == [e.tag for e in actual], where
    count = 0
    for a, b in zip(expected, actual):
        here = f"{where}/{a.keyword or a.tag}"
        assert a.VR == b.VR, here
        count += 1
        if a.keyword in VARYING:
            continue
        if a.VR == "SQ":
            assert len(a.value) == len(b.value), here
            for index, (x, y) in enumerate(zip(a.value, b.value)):
                count += assert_same(x, y, known_uids, f"{here}[{index}]")
        elif a.VR == "UI" and a.value != b.value:
            assert str(a.value) not in known_uids and str(b.value) not in known_uids, here
        else:
            assert a.value == b.value, here
    return count




HIGHDICOM_MANUFACTURER = "Highdicom open-source contributors"


def without_highdicom_item(ds, own: bool):
    """``ds`` without highdicom's own Contributing Equipment item, the one intended difference: the
    fast engine's own document (``own``) is not built by highdicom (encodings/sr/template.py), which
    highdicom's document lists (and the fast one must not)."""
    items = list(ds.ContributingEquipmentSequence)
    ours = [item for item in items if item.Manufacturer != HIGHDICOM_MANUFACTURER]
    assert len(ours) == len(items) - (0 if own else 1)
    ds.ContributingEquipmentSequence = ours
    return ds


def export_both(series_dir: Path, seg_file: Path, folder: Path, *, split: bool = True, highdicom_header: bool = False,
                **options):
    """Both engines' reports (``split``: and markups' reports) of one export, read back.
    ``highdicom_header``: the fast engine leaves the header to highdicom (its fallback)."""
    series = load_series(series_dir)
    read = {}
    for engine in ("highdicom", "fast"):
        out = folder / f"sr_{engine}.dcm"
        api.export_sr(series, seg_file, out, engine=engine, **options)
        own = engine == "fast" and not highdicom_header
        read[engine] = without_highdicom_item(pydicom.dcmread(out), own)
        if split:
            read[engine + " markups"] = without_highdicom_item(pydicom.dcmread(folder / f"sr_{engine}_markups.dcm"), own)
    known = {str(ds.SOPInstanceUID) for ds in series.datasets} | {
        str(series.series_instance_uid), str(series.datasets[0].StudyInstanceUID),
        str(series.datasets[0].FrameOfReferenceUID), str(pydicom.dcmread(seg_file, stop_before_pixels=True).SOPInstanceUID)}
    if split:  # the markups' own report (which shares the image library built for the report): the same too
        assert assert_same(read["highdicom markups"], read["fast markups"], known, "markups") > 500
    return read["highdicom"], read["fast"], known


def test_sample_case(sample_case, tmp_path):
    series = load_series(sample_case.series_dir)
    segmentation = api.load_annotations(series, sample_case.segmentation_path).segmentation
    seg = export_seg(series, segmentation, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    expected, actual, known = export_both(sample_case.series_dir, seg, tmp_path, segmentation=sample_case.segmentation_path,
                                          markups=[sample_case.markups_path], observer_name="Doe^Jane")
    library = [item for item in expected.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "111028"]
    assert library and len(library[0].ContentSequence[0].ContentSequence) > 2  # the library is there, with images
    assert assert_same(expected, actual, known) > 1000


def test_sample_case_with_evaluations_and_non_ascii_names(sample_case, tmp_path):
    series = load_series(sample_case.series_dir)
    segmentation = api.load_annotations(series, sample_case.segmentation_path).segmentation
    renamed = Segmentation(segmentation.geometry, segmentation.layers, [
        Segment(s.id, "Tumör 肿瘤" if s.name == "Tumor" else s.name, s.color, s.terminology, layer=s.layer,
                label_value=s.label_value) for s in segmentation.segments])
    seg = export_seg(series, renamed, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    table = EVALUATIONS.replace("Tumor,Comment,\"irregular", "Tumor,Comment,\"unregelmäßiger")
    (tmp_path / "ev.csv").write_text(table.replace("Tumor,", "Tumör 肿瘤,"), encoding="utf-8")
    expected, actual, known = export_both(sample_case.series_dir, seg, tmp_path, segmentation=renamed,
                                          markups=[sample_case.markups_path], evaluations=tmp_path / "ev.csv",
                                          device_name="Reading station 3")
    assert actual.SpecificCharacterSet == "ISO_IR 192"
    texts = [str(item.get("TextValue", "")) for group in actual.ContentSequence[-1].ContentSequence
             for item in group.ContentSequence]
    assert any("unregelmäßiger" in text for text in texts)
    assert assert_same(expected, actual, known) > 1000


def test_oblique_series(tmp_path):
    volume, segmentation, _ = sample_volume_and_segments()
    geometry = VolumeGeometry.from_origin_spacing_directions(
        volume.shape, (-40.0, 25.0, -10.0), (0.9, 0.9, 2.5), rotation([1, 2, 0.5], 25))
    dicomize_array(volume, geometry, tmp_path / "series", patient_name="Test^Oblique")
    series = load_series(tmp_path / "series")
    oblique = Segmentation(series.geometry, segmentation.layers,
                           [Segment(s.id, s.name, s.color, s.terminology, layer=s.layer, label_value=s.label_value)
                            for s in segmentation.segments])
    seg = export_seg(series, oblique, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    to_lps = series.geometry.ijk_to_lps_points
    markups = [Markup("line", "Line", to_lps([[20, 30, 5], [90, 80.5, 20]])),
               Markup("point_list", "Points", to_lps([[10, 20, 3], [64.25, 70.5, 15.5]]))]
    expected, actual, known = export_both(tmp_path / "series", seg, tmp_path, markups=markups)
    assert assert_same(expected, actual, known) > 1000


def _extra_markups(series):
    """A markup of every kind the sample's file lacks: curve, angle, non-planar closed curve,
    ellipse, plane (the sample has a point list, a line, a planar closed curve and an ROI box)."""
    to_lps = series.geometry.ijk_to_lps_points
    centre = to_lps(np.array([[64.0, 64.0, 16.0]]))[0]
    ellipse = centre + np.array([[-10.0, 0, 0], [10.0, 0, 0], [0, -5.0, 0], [0, 5.0, 0]])
    plane = Markup("plane", "Plane", centre[None], roi_center_lps=centre, roi_size=np.array([20.0, 10.0, 0.0]),
                   roi_axes_lps=np.eye(3))
    return [Markup("curve", "Curve", to_lps([[10, 10, 5], [20, 15, 6], [30, 12, 7.5]])),
            Markup("angle", "Angle", to_lps([[40, 40, 10], [50, 40, 10], [50, 52, 10]])),
            Markup("closed_curve", "Warped", to_lps([[60, 60, 4], [80, 60, 6], [80, 80, 4], [60, 80, 9]])),
            Markup("closed_curve", "Oval", ellipse, shape="ellipse"), plane]


def test_every_markup_kind_modifier_and_option_in_one_document(sample_case, tmp_path):
    """Markups in the segments' report, both observers, a procedure, series and instance numbers;
    finding sites with a laterality and a topographical modifier, a topographical type modifier."""
    series = load_series(sample_case.series_dir)
    segmentation = api.load_annotations(series, sample_case.segmentation_path).segmentation
    upper = Code("261183002", "SCT", "Upper")
    terms = {"Tumor": dict(anatomic_region_modifier=Code("24028007", "SCT", "Right")),
             "Liver": dict(anatomic_region=Code("10200004", "SCT", "Liver"), anatomic_region_modifier=upper),
             "Vertebral_column": dict(type_modifier=upper)}
    changed = Segmentation(segmentation.geometry, segmentation.layers, [
        dataclasses.replace(s, terminology=dataclasses.replace(s.terminology, **terms.get(s.id, {})))
        for s in segmentation.segments])
    seg = export_seg(series, changed, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    (tmp_path / "ev.csv").write_text(EVALUATIONS, encoding="utf-8")
    expected, actual, known = export_both(
        sample_case.series_dir, seg, tmp_path, split=False, segmentation=changed,
        markups=[sample_case.markups_path, *_extra_markups(series)], evaluations=tmp_path / "ev.csv",
        observer_name="Doe^Jane", device_name="Reading station 3", markups_in_own_document=False,
        procedure_reported=Code("77477000", "SCT", "CT of abdomen"), series_description="Every kind",
        series_number=7, instance_number=3)
    kinds = {str(item.GraphicType) for group in actual.ContentSequence[-1].ContentSequence
             for item in group.ContentSequence if item.ValueType == "SCOORD3D"}
    assert {"POINT", "POLYGON", "ELLIPSE"} <= kinds
    assert assert_same(expected, actual, known) > 1500


def test_lidc_preset_without_image_library(sample_case, tmp_path):
    series = load_series(sample_case.series_dir)
    segmentation = api.load_annotations(series, sample_case.segmentation_path).segmentation
    tumor, other = segmentation.mask("Tumor"), segmentation.mask("Vertebral column")
    annotations = Segmentation.from_masks(series.geometry, [tumor, other], [
        Segment("a1", "Nodule 1 - Annotation 001"), Segment("a3", "Nodule 2 - Annotation 007")])
    apply_lidc_preset(annotations)
    seg = export_seg(series, annotations, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    (tmp_path / "ev.csv").write_text("segment,concept,value\na1,Malignancy,4\na3,Subtlety,5\n")
    expected, actual, known = export_both(sample_case.series_dir, seg, tmp_path, split=False,
                                          segmentation=annotations, evaluations=tmp_path / "ev.csv", lidc=True,
                                          image_library=False)
    assert "111028" not in [item.ConceptNameCodeSequence[0].CodeValue for item in actual.ContentSequence]
    assert assert_same(expected, actual, known) > 100


MATRIX = [case for case in CASES if case.name in (
    "2.5 mm, no Spacing Between Slices", "oblique", "sagittal", "enhanced multi-frame CT", "MR", "single slice",
    "non-square pixels")]


@pytest.mark.parametrize("case", MATRIX, ids=[case.name for case in MATRIX])
def test_conformance_matrix_series(case, tmp_path):
    folder = _build_series(case, tmp_path)
    series = load_series(folder)
    segmentation, _, markups = _annotations(series.geometry)
    seg = export_seg(series, segmentation, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    expected, actual, known = export_both(folder, seg, tmp_path, segmentation=segmentation, markups=markups)
    assert assert_same(expected, actual, known) > 100
