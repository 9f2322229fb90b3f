"""The fast SEG writer's own header (encodings/seg/template.py) against highdicom's.

The fast engine builds the SEG header with pydicom alone for single-frame CT/MR/PET/... sources;
highdicom (``engine="highdicom"``) builds it for the whole volume. Both files are read back and
compared element by element (UIDs, dates and highdicom's own Contributing Equipment item aside)
on every geometry of the conformance matrix, for each SEG type and with the options that reach
the header. The pixel data are compared too.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest

from DicomAnnotEmbedLib.core.model import Code, Segment, Segmentation, Terminology
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.encodings.seg import SegExportOptions, export_seg
from DicomAnnotEmbedLib.encodings.seg import template
from test_conformance_matrix import CASES, _annotations, _build_series
from test_seg import HIGHDICOM_MANUFACTURER, _comparable

SINGLE_FRAME_CASES = [c for c in CASES if not c.enhanced]


@pytest.fixture(scope="module")
def matrix_series(tmp_path_factory):
    cache = {}

    def get(case):
        if case.name not in cache:
            folder = _build_series(case, tmp_path_factory.mktemp("tmpl"))
            series = load_series(folder)
            segmentation, _, _ = _annotations(series.geometry)
            cache[case.name] = (series, segmentation)
        return cache[case.name]

    return get


def _fixed_tracking(segmentation: Segmentation, segments=None) -> Segmentation:
    segments = [dataclasses.replace(s, attributes={**s.attributes, "TrackingIdentifier": s.name,
                                                   "TrackingUniqueIdentifier": pydicom.uid.generate_uid()})
                for s in (segments if segments is not None else segmentation.segments)]
    return Segmentation(segmentation.geometry, segmentation.layers, segments)


def _both(series, segmentation, folder, **kwargs):
    files = {}
    for engine in ("fast", "highdicom"):
        result = export_seg(series, segmentation, folder / f"{engine}.dcm", engine=engine, **kwargs)
        files[engine] = pydicom.dcmread(result.paths[0])
    return files["fast"], files["highdicom"]


def _assert_same(fast, reference):
    assert _comparable(fast) == _comparable(reference)
    assert fast.file_meta.TransferSyntaxUID == reference.file_meta.TransferSyntaxUID
    assert fast.file_meta.MediaStorageSOPClassUID == reference.file_meta.MediaStorageSOPClassUID
    np.testing.assert_array_equal(fast.pixel_array, reference.pixel_array)
    # the one intended difference: highdicom did not build our header, so it is not listed
    assert all(item.Manufacturer != HIGHDICOM_MANUFACTURER for item in fast.ContributingEquipmentSequence)
    assert any(item.Manufacturer == HIGHDICOM_MANUFACTURER for item in reference.ContributingEquipmentSequence)


@pytest.mark.parametrize("case", SINGLE_FRAME_CASES, ids=[c.name for c in SINGLE_FRAME_CASES])
@pytest.mark.parametrize("seg_type,compression", [("binary", "none"), ("labelmap", "jpegls"),
                                                  ("fractional", "jpegls")])
def test_own_header_equals_highdicoms_on_every_geometry(matrix_series, tmp_path, case, seg_type, compression):
    series, segmentation = matrix_series(case)
    assert template.supports(series, False, seg_type)
    segments = segmentation.segments
    if seg_type == "labelmap":  # one layer: no two segments overlap
        segments = [s for s in segments if s.layer == 0]
    segmentation = _fixed_tracking(segmentation, segments)
    if seg_type == "fractional":  # graded values: 0.5 inside, 0.25 on the next column
        volumes = []
        for s in segmentation.segments:
            mask = segmentation.mask(s)
            volumes.append(np.maximum(mask * 0.5, np.roll(mask, 1, axis=2) * 0.25).astype(np.float32))
        segmentation = Segmentation.from_fractions(segmentation.geometry, volumes, segmentation.segments,
                                                   threshold=0.4)
    fast, reference = _both(series, segmentation, tmp_path, seg_type=seg_type, compression=compression)
    _assert_same(fast, reference)


def test_own_header_with_every_option(matrix_series, tmp_path):
    """Options, coded meanings with modifiers and anatomy, an algorithm, a non-ASCII label, one segment."""
    series, segmentation = matrix_series(CASES[3])  # oblique
    region = Code("64033007", "SCT", "Kidney")
    terminology = Terminology(category=Code("49755003", "SCT", "Morphologically Altered Structure"),
                              type=Code("4147007", "SCT", "Mass"), type_modifier=Code("24028007", "SCT", "Right"),
                              anatomic_region=region, anatomic_region_modifier=Code("7771000", "SCT", "Left"))
    first = dataclasses.replace(segmentation.segments[0], name="Tumör A", terminology=terminology,
                                description="a described segment",
                                attributes={"SegmentAlgorithmType": "SEMIAUTOMATIC",
                                            "SegmentAlgorithmName": "grow cut"})
    options = SegExportOptions(series_description="with options", content_creator_name="Doe^Jane",
                               algorithm_type="AUTOMATIC", algorithm_name="net", clinical_trial_series_id="S1",
                               clinical_trial_time_point_id="T1", clinical_trial_coordinating_center_name="C",
                               body_part_examined="KIDNEY", content_description="described", series_number=77,
                               instance_number=3)
    for seg_type, segments in (("binary", [first, *segmentation.segments[1:]]), ("binary", [first]),
                               ("labelmap", [first, segmentation.segments[1]])):
        seg = _fixed_tracking(segmentation, segments)
        folder = tmp_path / f"{seg_type}{len(segments)}"
        folder.mkdir()
        fast, reference = _both(series, seg, folder, seg_type=seg_type, options=options)
        _assert_same(fast, reference)
        assert fast.SpecificCharacterSet == "ISO_IR 192"


def test_sources_it_does_not_cover_go_to_highdicom(matrix_series, tmp_path):
    """A palette, or a source without a required attribute: highdicom builds the header (it lists itself)."""
    series, segmentation = matrix_series(CASES[0])
    segments = [s for s in segmentation.segments if s.layer == 0]
    result = export_seg(series, Segmentation(segmentation.geometry, segmentation.layers, segments),
                        tmp_path / "p.dcm", seg_type="labelmap", palette=True)
    ds = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    assert any(item.Manufacturer == HIGHDICOM_MANUFACTURER for item in ds.ContributingEquipmentSequence)
    assert not template.supports(series, True, "labelmap")


def test_copied_modules_are_the_standards(tmp_path):
    """COPIED_KEYWORDS are the root attributes of the patient, study and specimen modules of every
    source class the own header takes, as highdicom's tables of the standard list them."""
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map

    iods, modules, attributes = get_sop_class_iod_map(), get_iod_module_map(), get_module_attribute_map()
    for sop_class in template.OWN_TEMPLATE_SOURCE_CLASSES:
        keys = [m["key"] for m in modules[iods[sop_class]]
                if m["ie"] in ("Patient", "Study") or (m["ie"] == "Image" and m["key"] == "specimen")]
        keywords = [a["keyword"] for key in keys for a in attributes[key] if not a["path"]]
        assert sorted(keywords) == sorted(template.COPIED_KEYWORDS), sop_class


def test_segment_descriptions_equal_highdicoms():
    """template.segment_description against highdicom's SegmentDescription, item for item."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    category, kind = Code("49755003", "SCT", "Morphologically Altered Structure"), Code("4147007", "SCT", "Mass")
    region = Code("http://example.org/codes/region-with-a-long-value", "99X", "Region")
    ours = template.segment_description(4, "Mass", category, kind, "AUTOMATIC", algorithm_name="net",
                                        algorithm_version="2", tracking_id="t", tracking_uid="1.2.3",
                                        anatomic_region=region)
    theirs = hd.seg.SegmentDescription(
        segment_number=4, segment_label="Mass",
        segmented_property_category=hd.sr.CodedConcept(category.value, category.scheme, category.meaning),
        segmented_property_type=hd.sr.CodedConcept(kind.value, kind.scheme, kind.meaning),
        algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="net", family=codes.cid7162.ArtificialIntelligence, version="2"),
        tracking_uid="1.2.3", tracking_id="t",
        anatomic_regions=[hd.sr.CodedConcept(region.value, region.scheme, region.meaning)])
    assert ours == theirs
    manual = template.segment_description(1, "A", category, kind, "MANUAL")
    assert manual == hd.seg.SegmentDescription(
        segment_number=1, segment_label="A",
        segmented_property_category=hd.sr.CodedConcept(category.value, category.scheme, category.meaning),
        segmented_property_type=hd.sr.CodedConcept(kind.value, kind.scheme, kind.meaning), algorithm_type="MANUAL")
