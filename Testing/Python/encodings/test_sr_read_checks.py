"""The SR as export-ml reads it (issue 14): its header as ``core.series.read_headers`` reads it,
checked by :func:`sr.decode.check_report_sequences` (every sequence but the image library's
entries, which nothing reads) instead of ``core.inputs.check_sequences`` (every sequence: 1.3 s
of the 1.5 s that the two reports of the 10,000-row benchmark took).

Compared with the reference path, ``import_sr`` of the file (``read_dicom_file``, which checks
every sequence): the same records, markups (points to the bit), observers, procedures, SEG
references, companions and missing pieces, on other tools' reports (../shared/interop: dcmqi's
tid1500writer, highdicom) and on ours (segments with evaluations and observers, markups in their
own document or in the same one, every markup kind on an oblique series, the LIDC preset); and
export-ml's tables and sidecars with either check. Broken sequences outside the image library
are still refused naming the file.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement

from conftest import interop
from test_sr import EVALUATIONS, exported, oblique, sample  # noqa: F401 (fixtures)
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.core.inputs import check_sequences
from DicomAnnotEmbedLib.core.model import Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series, read_headers
from DicomAnnotEmbedLib.encodings.seg import export_seg, import_seg
from DicomAnnotEmbedLib.encodings.sr import decode
from DicomAnnotEmbedLib.files.ml_export import export_ml

IMAGE_LIBRARY = ("111028", "DCM")
CONTENT_SEQUENCE = 0x0040A730


def as_export_ml_reads(paths):
    """{SOP Instance UID: (path, dataset)} of the reports read as export-ml reads them."""
    reports = {}
    for path, ds in read_headers([Path(p) for p in paths]):
        assert not isinstance(ds, Exception), (path, ds)
        decode.check_report_sequences(ds, path)
        reports[str(ds.SOPInstanceUID)] = (str(path), ds)
    return reports


def assert_same_import(expected, actual):
    assert actual.records == expected.records
    fields = ("kind", "name", "shape", "attributes", "point_labels", "color", "description")
    assert [[getattr(m, f) for f in fields] for m in actual.markups] == \
        [[getattr(m, f) for f in fields] for m in expected.markups]
    for e, a in zip(expected.markups, actual.markups):
        for name in ("points_lps", "roi_center_lps", "roi_size", "roi_axes_lps"):
            ev, av = getattr(e, name), getattr(a, name)
            assert (ev is None) == (av is None), (e.name, name)
            if ev is not None:
                assert np.array_equal(np.asarray(ev), np.asarray(av)), (e.name, name)
    for name in ("path", "sop_class", "title", "missing", "person_observers", "device_observers", "procedures",
                 "frame_of_reference_uids", "referenced_seg_uids", "companions"):
        assert getattr(actual, name) == getattr(expected, name), name
    assert len(actual.seg_imports) == len(expected.seg_imports)
    for e, a in zip(expected.seg_imports, actual.seg_imports):
        assert [dataclasses.astuple(s) for s in a.segmentation.segments] == \
            [dataclasses.astuple(s) for s in e.segmentation.segments]
        assert np.array_equal(a.segmentation.layers, e.segmentation.layers)


def library_unopened(ds) -> bool:
    """Whether the entries of the report's image library are still raw bytes (None: no library)."""
    items = [i for i in ds.ContentSequence if decode._key(i) == IMAGE_LIBRARY]
    if not items:
        return None
    return all(isinstance(i.get_item(CONTENT_SEQUENCE, keep_deferred=True), RawDataElement) for i in items)


def compare(sr_path, series=None, others=(), seg_reader=import_seg):
    """import_sr of ``sr_path`` both ways (``others``: the other reports export-ml was given)."""
    expected = decode.import_sr(sr_path, series, seg_reader=seg_reader)
    reports = as_export_ml_reads([sr_path, *others])
    actual = decode.import_sr(sr_path, series, seg_reader=seg_reader, read_reports=reports)
    assert_same_import(expected, actual)
    return expected, reports


# --- other tools' reports ----------------------------------------------------------------------------

def test_dcmqi_example():
    expected, _ = compare(interop("dcmqi", "sr-example", "sr.dcm"))
    assert len(expected.records) == 22 and expected.seg_imports


def test_highdicom_examples(tmp_path):
    for name in ("ct_image.dcm", "sr_document.dcm", "sr_document_with_multiple_groups.dcm"):
        shutil.copy(interop("highdicom", name), tmp_path / name)
    series = load_series(tmp_path)
    for name in ("sr_document.dcm", "sr_document_with_multiple_groups.dcm"):
        expected, _ = compare(tmp_path / name, series)
        assert expected.records and expected.markups
        compare(tmp_path / name)  # without the image: the 2D coordinates are missing, both ways


# --- ours -----------------------------------------------------------------------------------------

def test_segments_evaluations_observers_and_markups_document(exported, sample):  # noqa: F811
    folder, _, result = exported
    series, _ = sample
    companion = folder / "sr_markups.dcm"
    assert companion.exists()
    expected, reports = compare(folder / "sr.dcm", series, [companion])
    assert expected.companions == [str(companion)] and expected.person_observers and expected.device_observers
    assert {r.kind for r in expected.records} >= {"numeric", "coded", "text"}
    assert all(library_unopened(ds) for _, ds in reports.values())
    compare(folder / "sr.dcm", series, [companion], seg_reader=None)
    compare(folder / "sr.dcm", None, [])  # the companion found beside it, read by import_sr itself


def test_one_document_and_every_markup_kind_on_an_oblique_series(oblique, tmp_path):  # noqa: F811
    folder, series, segmentation, markups, _ = oblique
    compare(folder / "sr.dcm", series, [folder / "sr_markups.dcm"])
    shutil.copy(folder / "seg.dcm", tmp_path / "seg.dcm")
    api.export_sr(series, tmp_path / "seg.dcm", tmp_path / "sr.dcm", segmentation=segmentation, markups=markups,
                  markups_in_own_document=False, observer_name="Roe^Richard")
    expected, reports = compare(tmp_path / "sr.dcm", series)
    assert {m.kind for m in expected.markups} == {m.kind for m in markups}
    assert all(library_unopened(ds) for _, ds in reports.values())


def test_lidc_preset(sample, tmp_path):  # noqa: F811
    series, segmentation = sample
    from DicomAnnotEmbedLib.presets.lidc import apply_lidc_preset

    tumor, other = segmentation.mask("Tumor"), segmentation.mask("Vertebral column")
    annotations = Segmentation.from_masks(series.geometry, [tumor, other], [
        Segment("a1", "Nodule 1 - Annotation 001"), Segment("a2", "Nodule 2 - Annotation 007")])
    apply_lidc_preset(annotations)
    export_seg(series, annotations, tmp_path / "seg.dcm", seg_type="binary")
    (tmp_path / "ev.csv").write_text("segment,concept,value\na1,Malignancy,4\na2,Subtlety,5\n")
    api.export_sr(series, tmp_path / "seg.dcm", tmp_path / "sr.dcm", segmentation=annotations,
                  evaluations=tmp_path / "ev.csv", lidc=True)
    expected, _ = compare(tmp_path / "sr.dcm", series)
    assert any(r.kind == "coded" for r in expected.records)


def test_export_ml_tables_and_sidecars_as_with_the_full_check(exported, sample_case, tmp_path,  # noqa: F811
                                                             monkeypatch):
    folder, _, _ = exported
    inputs = [folder / "seg.dcm", folder / "sr.dcm", folder / "sr_markups.dcm", sample_case.series_dir]
    new = export_ml(inputs, tmp_path / "new")
    monkeypatch.setattr(decode, "check_report_sequences", check_sequences)  # what export-ml did before
    old = export_ml(inputs, tmp_path / "old")
    assert (new.findings, new.problems, new.skipped) == (old.findings, old.problems, old.skipped)
    for name in ("measurements.csv", "cases.csv", "seg/labels.json", "seg/markups.mrk.json"):
        assert (tmp_path / "new" / name).read_text().replace(str(tmp_path / "new"), "OUT") == \
            (tmp_path / "old" / name).read_text().replace(str(tmp_path / "old"), "OUT"), name


# --- broken reports ------------------------------------------------------------------------------------

def _content(ds, key):
    return next(i for i in ds.ContentSequence if decode._key(i) == key)


def test_broken_sequences_outside_the_library_are_refused_naming_the_file(exported, sample_case,  # noqa: F811
                                                                         tmp_path):
    folder, _, _ = exported
    ds = pydicom.dcmread(folder / "sr.dcm")
    group = _content(ds, ("126010", "DCM")).ContentSequence[0]
    group["ContentSequence"].VR = "LO"  # a corrupted VR: the sequence is text
    group["ContentSequence"].value = "not items"
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken, enforce_file_format=True)
    (_, header), = read_headers([broken])
    with pytest.raises(InputError, match="not a sequence|encoded as") as raised:
        decode.check_report_sequences(header, broken)
    assert str(broken) in str(raised.value)
    with pytest.raises(InputError, match="not a sequence|encoded as"):
        check_sequences(pydicom.dcmread(broken), broken)  # as the full check says
    result = export_ml([folder / "seg.dcm", broken, sample_case.series_dir], tmp_path / "ml")
    assert str(broken) in result.skipped

    cut = tmp_path / "cut.dcm"  # a report cut inside its measurement groups
    data = (folder / "sr.dcm").read_bytes()
    cut.write_bytes(data[:len(data) - 2000])
    (_, header), = read_headers([cut])
    if not isinstance(header, Exception):
        try:
            decode.check_report_sequences(header, cut)
            decode.import_sr(cut, read_reports={str(header.SOPInstanceUID): (str(cut), header)})
        except InputError as error:
            assert str(cut) in str(error)


def test_a_broken_library_entry_is_not_opened(exported, sample, tmp_path):  # noqa: F811
    """Nothing reads the image library: a broken entry there no longer stops export-ml's reading."""
    folder, _, _ = exported
    series, _ = sample
    ds = pydicom.dcmread(folder / "sr.dcm")
    entry = _content(ds, IMAGE_LIBRARY).ContentSequence[0]
    entry["ContentSequence"].VR = "LO"
    entry["ContentSequence"].value = "not items"
    broken = tmp_path / "sr.dcm"
    ds.save_as(broken, enforce_file_format=True)
    for name in ("seg.dcm", "sr_markups.dcm"):
        shutil.copy(folder / name, tmp_path / name)
    reports = as_export_ml_reads([broken, tmp_path / "sr_markups.dcm"])
    actual = decode.import_sr(broken, series, seg_reader=import_seg, read_reports=reports)
    expected = decode.import_sr(folder / "sr.dcm", series, seg_reader=import_seg)
    expected.path = actual.path
    expected.companions = actual.companions
    assert_same_import(expected, actual)


def test_an_undecodable_title_value_names_the_file(exported, sample_case, tmp_path):  # noqa: F811
    """Fuzz case 7618 (seed 14): the report's title meaning with an unknown VR raised pydicom's
    NotImplementedError from export-ml (read_sr_dataset decoded it outside any file's guard)."""
    folder, _, _ = exported
    data = (folder / "sr.dcm").read_bytes()
    title = data.index(b"\x40\x00\x43\xa0SQ")  # the root's Concept Name Code Sequence
    meaning = data.index(b"\x08\x00\x04\x01LO", title)  # its Code Meaning
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[:meaning + 4] + b"QQ" + data[meaning + 6:])
    with pytest.raises(InputError, match=r"nothing to export from .*broken\.dcm: .*cannot decode the SR"):
        export_ml([broken], tmp_path / "alone")
    result = export_ml([folder / "seg.dcm", broken, sample_case.series_dir], tmp_path / "ml")
    assert "cannot decode the SR" in result.skipped[str(broken)]
    with pytest.raises(InputError, match="cannot decode the SR") as raised:
        decode.read_sr_dataset(broken, read_headers([broken]).__next__()[1])
    assert str(broken) in str(raised.value)


def test_deferred_values_are_not_read_under_a_memory_limit(tmp_path):
    """Fuzz case 33792 (seed 61205): 64 bytes of highdicom's SR duplicated at offset 4047 leave an
    element whose length exceeds the file. Slicing the dataset around its Content Sequence (as the
    check first did) read that deferred value, and pydicom allocated it whole: a MemoryError
    under a 3 GB address-space limit. The check reads no deferred value: export-ml refuses the
    file naming it, in a process with that limit."""
    import subprocess
    import sys

    source = interop("highdicom", "sr_document.dcm").read_bytes()
    broken = tmp_path / "in.dcm"
    broken.write_bytes(source[:4047 + 64] + source[4047:4047 + 64] + source[4047 + 64:])
    script = ("import resource, sys\n"
              "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
              "from DicomAnnotEmbedLib import api\n"
              "from DicomAnnotEmbedLib.core.errors import InputError\n"
              "try:\n"
              "    api.export_ml(sys.argv[1], sys.argv[2])\n"
              "except InputError as exc:\n"
              "    print('InputError', exc)\n")
    done = subprocess.run([sys.executable, "-c", script, str(broken), str(tmp_path / "ml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("InputError") and str(broken) in done.stdout
