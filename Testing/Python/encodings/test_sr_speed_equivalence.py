"""The fast SR export (``engine="fast"``) writes the same document as the plain highdicom path
(``engine="highdicom"``): both are written and read back, and compared element by element, VRs
and values, the SR's own UIDs and dates aside; on the sample case (with coded and text
evaluations, and again with non-ASCII segment names and texts) and on an oblique series. The
fast path builds the measurement groups' NUM items as copies of highdicom's, places the
measurements and evaluations itself and encodes the content with encodings.sr.writer."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from conftest import rotation
from test_sr import EVALUATIONS
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Markup, Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.encodings.seg import export_seg
from DicomAnnotEmbedLib.files.sample import sample_volume_and_segments

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




def export_both(series_dir: Path, seg_file: Path, folder: Path, **options):
    series = load_series(series_dir)
    read = {}
    for engine in ("highdicom", "fast"):
        out = folder / f"sr_{engine}.dcm"
        api.export_sr(series, seg_file, out, engine=engine, **options)
        read[engine] = pydicom.dcmread(out)
        read[engine + " markups"] = pydicom.dcmread(folder / f"sr_{engine}_markups.dcm")
    known = {str(ds.SOPInstanceUID) for ds in series.datasets} | {
        str(series.series_instance_uid), str(series.datasets[0].StudyInstanceUID),
        str(series.datasets[0].FrameOfReferenceUID), str(pydicom.dcmread(seg_file, stop_before_pixels=True).SOPInstanceUID)}
    # the markups' own report (which shares the image library built for the report): the same too
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
