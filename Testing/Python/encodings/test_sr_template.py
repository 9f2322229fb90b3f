"""The fast SR engine's own document (encodings/sr/template.py): its tables against highdicom's,
its fallback to highdicom for sources it does not describe, and a fresh ``sr export`` process
that never imports highdicom. (test_sr_speed_equivalence.py compares the documents.)"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pydicom
import pytest

from test_sr_speed_equivalence import assert_same, export_both
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.encodings.seg import export_seg
from DicomAnnotEmbedLib.encodings.sr import template


def test_image_classes_and_copied_modules_are_highdicoms():
    """Each listed SOP class is an image (highdicom's IOD table) with the modality code highdicom's
    image library gives it, and the patient and study modules highdicom copies from a source of
    that class are the keywords the template copies."""
    from highdicom._standard_utils import (does_iod_have_pixel_data, get_iod_module_map, get_module_attribute_map,
                                           get_sop_class_iod_map)
    from highdicom.sr.templates import _get_coded_modality

    modules, attributes = get_iod_module_map(), get_module_attribute_map()
    for uid, code in template.IMAGE_MODALITIES.items():
        assert does_iod_have_pixel_data(uid), uid
        coded = _get_coded_modality(uid)
        assert (coded.value, coded.scheme_designator, coded.meaning) == (code.value, code.scheme, code.meaning), uid
        copied = set()
        for module in modules[get_sop_class_iod_map()[uid]]:
            if module["ie"] in ("Patient", "Study"):
                copied |= {str(item["keyword"]) for item in attributes[module["key"]] if len(item["path"]) == 0}
        assert copied == set(template.PATIENT_AND_STUDY_KEYWORDS), uid


def test_coplanarity_is_highdicoms():
    import numpy as np
    from highdicom.spatial import are_points_coplanar

    rng = np.random.default_rng(3)
    for scale in (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1.0):
        points = rng.normal(size=(6, 3)) * [10, 10, 0] + rng.normal(size=(6, 3)) * scale
        assert template.are_points_coplanar(points) == are_points_coplanar(points), scale


def test_sources_of_other_classes_go_to_highdicom(sample_case, tmp_path):
    """A source class the template does not list (here VL Photographic Image): highdicom builds the
    header and the image library of the fast engine's document, which is still highdicom's own."""
    folder = tmp_path / "series"
    shutil.copytree(sample_case.series_dir, folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
        ds.save_as(path)
    series = load_series(folder)
    assert not template.supports(series.datasets)
    segmentation = api.load_annotations(series, sample_case.segmentation_path).segmentation
    seg = export_seg(series, segmentation, tmp_path / "seg.dcm", seg_type="binary").paths[0]
    expected, actual, known = export_both(folder, seg, tmp_path, split=False, highdicom_header=True,
                                          segmentation=segmentation, markups=[sample_case.markups_path],
                                          markups_in_own_document=False)
    assert assert_same(expected, actual, known) > 1000


def test_sr_export_process_does_not_import_highdicom(sample_case, tmp_path):
    """``sr export`` (CLI, fresh process) of a CT series: the fast engine builds the document with
    pydicom alone, so highdicom's import and its module tables (~0.5 s CPU) are not paid."""
    seg = tmp_path / "seg.dcm"
    code = ("import sys\nfrom DicomAnnotEmbedLib.cli import main\n"
            f"assert main(['-q', 'seg', 'export', '--series', {str(sample_case.series_dir)!r}, '--segmentation', "
            f"{str(sample_case.segmentation_path)!r}, '--out', {str(seg)!r}, '--type', 'binary']) == 0\n"
            f"assert main(['-q', 'sr', 'export', '--series', {str(sample_case.series_dir)!r}, '--seg', {str(seg)!r}, "
            f"'--segmentation', {str(sample_case.segmentation_path)!r}, '--markups', "
            f"{str(sample_case.markups_path)!r}, '--out', {str(tmp_path / 'sr.dcm')!r}]) == 0\n"
            "assert 'highdicom' not in sys.modules, 'highdicom was imported'\n"
            "assert 'pydicom.sr.codedict' not in sys.modules, 'pydicom.sr.codedict was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert pydicom.dcmread(tmp_path / "sr.dcm").SOPClassUID == template.COMPREHENSIVE_3D_SR
    assert (tmp_path / "sr_markups.dcm").stat().st_size > 0


@pytest.mark.parametrize("sex", ["X"])
def test_a_patients_sex_highdicom_refuses_goes_to_highdicom(sex):
    ds = pydicom.Dataset()
    ds.PatientSex, ds.SOPClassUID = sex, "1.2.840.10008.5.1.4.1.1.2"
    assert not template.supports([ds])
    ds.PatientSex = "F"
    assert template.supports([ds])


def test_new_dataset_is_an_empty_dataset():
    """dicom.header_items.new_dataset (the content items' and evidence items' datasets) makes what
    ``Dataset()`` makes, with dictionaries of its own."""
    from DicomAnnotEmbedLib.dicom.header_items import new_dataset

    expected, first, second = pydicom.Dataset(), new_dataset(), new_dataset()
    assert type(first) is pydicom.Dataset
    assert first.__dict__ == expected.__dict__
    for name, value in first.__dict__.items():
        if isinstance(value, (dict, list)):
            assert value is not second.__dict__[name], name
    first.PatientID = "A"
    assert "PatientID" not in second and first == pydicom.Dataset(first)


def test_element_value_is_datasets(tmp_path):
    """dicom.header_items.element_value (the content walks' reads) gives Dataset.get's value, of
    decoded elements, of raw elements read from a file (converted as pydicom converts them) and
    of missing ones."""
    from pydicom.dataelem import RawDataElement

    from DicomAnnotEmbedLib.dicom.header_items import element_value

    ds = pydicom.Dataset()
    ds.ValueType, ds.ContentSequence = "NUM", [pydicom.Dataset()]
    ds.ContentSequence[0].TextValue = "x"
    ds.SOPClassUID, ds.SOPInstanceUID = template.COMPREHENSIVE_3D_SR, pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "item.dcm", implicit_vr=True, little_endian=True)
    read = pydicom.dcmread(tmp_path / "item.dcm", force=True)
    assert type(read._dict[0x0040A040]) is RawDataElement
    for keyword in ("ValueType", "ContentSequence", "TextValue"):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert element_value(ds, tag) == ds.get(keyword)
        raw = element_value(read, tag)
        assert raw == pydicom.dcmread(tmp_path / "item.dcm", force=True).get(keyword)
        assert type(raw) is type(read.get(keyword))


@pytest.mark.parametrize("converted", ["none", "all", "every other"])
def test_image_library_copies_are_the_entries_built_one_by_one(sample_case, converted):
    """The fast image library (document._image_library: one entry built per pattern of the
    headers, the others copies of it with their own SOP reference and position, sharing the rest)
    is the library template.image_library builds entry by entry: on headers as read (raw elements:
    the pattern is their bytes), decoded, or both; with two patterns (another Slice Thickness)."""
    from DicomAnnotEmbedLib.encodings.sr import document
    from DicomAnnotEmbedLib.encodings.sr.writer import encode_sequence_value

    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(sample_case.series_dir.iterdir())]
    for index, ds in enumerate(headers):
        if index % 3 == 1:
            ds.SliceThickness = "2.5"
        if converted == "all" or converted == "every other" and index % 2:
            for _ in ds:  # (iterating converts each raw element)
                pass
    expected = template.image_library(headers)
    library = document.image_library(headers)
    assert encode_sequence_value(library) == encode_sequence_value(expected)
    assert_same(expected[0], library[0], set())
    entries = library[0].ContentSequence[0].ContentSequence
    assert len(entries) == len(headers)
    # a copy shares the template's unchanged items, not the items it changes
    first, copy = entries[0], entries[3]
    assert copy.ContentSequence[0] is first.ContentSequence[0]
    assert copy.ReferencedSOPSequence[0] is not first.ReferencedSOPSequence[0]
    assert first.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == headers[0].SOPInstanceUID
