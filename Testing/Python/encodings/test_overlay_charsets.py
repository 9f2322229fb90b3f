"""Non-ASCII names through the overlay encoding: the output declares a character set its text
fits (ISO_IR 192 when the source's does not), every text is read back by pydicom, dciodvfy finds
no new error, and planes written by others are named in whatever character set they declare."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import require_tool
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.encodings.overlay import PRIVATE_GROUP, import_overlays
from DicomAnnotEmbedLib.files.markups_io import read_markups
from DicomAnnotEmbedLib.files.segio import load_segmentation

SEGMENT_NAMES = ["Tumör", "肿瘤", "Левое лёгкое"]
MARKUP_NAMES = ["Läsion Linie", "肿瘤 点", "Ось"]
PATIENT = "Müller^Jürgen"


def source_copy(sample_case, folder: Path, charset, patient: str) -> Path:
    """The sample series with another Specific Character Set (None: not declared) and patient name."""
    folder.mkdir(parents=True)
    for path in sorted(sample_case.series_dir.iterdir()):
        ds = pydicom.dcmread(path)
        if charset is None:
            ds.pop("SpecificCharacterSet", None)
        else:
            ds.SpecificCharacterSet = charset
        ds.PatientName = patient
        ds.save_as(folder / path.name, enforce_file_format=True)
    return folder


def renamed(sample_case, segment_names=SEGMENT_NAMES, markup_names=MARKUP_NAMES):
    segmentation = load_segmentation(sample_case.segmentation_path)
    for segment, name in zip(segmentation.segments, segment_names):
        segment.name = name
    markups = read_markups(sample_case.markups_path)
    for markup, name in zip(markups, markup_names):
        markup.name = name
    return segmentation, markups


def dciodvfy_errors(path) -> set:
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return {re.sub(r"\[[^\]]*\]|(?<!attribute )<[^>]*>", "#", line)
            for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.parametrize("charset, patient, expected", [
    (None, "Doe^John", "ISO_IR 192"),          # default repertoire: ASCII only
    ("ISO_IR 100", PATIENT, "ISO_IR 192"),     # Latin-1 cannot hold 肿瘤: the whole file in UTF-8
    ("ISO_IR 192", PATIENT, "ISO_IR 192"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎", "ISO_IR 192"),  # code extensions: re-encoded
])
def test_non_ascii_names_are_written_in_a_declared_character_set(sample_case, tmp_path, charset, patient, expected):
    source = source_copy(sample_case, tmp_path / "src", charset, patient)
    segmentation, markups = renamed(sample_case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's "Failed to encode value ... replacement characters"
        result = api.export_overlay(source, segmentation, markups=markups, out_dir=tmp_path / "out")
    files = result.series[0].files
    labels = set()
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.SpecificCharacterSet == expected
        assert str(ds.PatientName) == patient
        labels |= {ds[group, 0x1500].value for group in range(0x6000, 0x6020, 2) if (group, 0x1500) in ds}
    assert set(SEGMENT_NAMES) | set(MARKUP_NAMES) <= labels
    ds = pydicom.dcmread(files[16])
    assert "肿瘤" in ds.SeriesDescription and len(ds.SeriesDescription.encode("utf-8")) <= 64
    for k in (0, 16):
        new = dciodvfy_errors(files[k]) - dciodvfy_errors(sorted(source.iterdir())[k])
        assert not new, new
    # dcmtk reads and draws the (re-encoded) file
    drawn = subprocess.run([require_tool("dcm2pnm"), "+O", "0", "+opb", files[16]], capture_output=True)
    assert drawn.returncode == 0 and drawn.stdout.startswith(b"P2") and b"E:" not in drawn.stderr, drawn.stderr
    back = import_overlays(tmp_path / "out")
    assert [s.name for s in back.segmentation.segments][:3] == SEGMENT_NAMES
    assert [m.name for m in back.markups][:3] == MARKUP_NAMES


def test_text_that_fits_keeps_the_source_character_set(sample_case, tmp_path):
    """Latin-1 names on a Latin-1 source: the character set and the fast byte splicing stay."""
    source = source_copy(sample_case, tmp_path / "src", "ISO_IR 100", PATIENT)
    segmentation, markups = renamed(sample_case, ["Tumör", "Läsion"], ["Öffnung"])
    result = api.export_overlay(source, segmentation, markups=markups, out_dir=tmp_path / "out")
    ds = pydicom.dcmread(result.series[0].files[16])
    assert ds.SpecificCharacterSet == "ISO_IR 100" and str(ds.PatientName) == PATIENT
    raw = Path(result.series[0].files[16]).read_bytes()
    assert "Tumör".encode("latin-1") in raw and "Tumör".encode("utf-8") not in raw


@pytest.mark.parametrize("charset, label", [("ISO_IR 100", "Läsion"), ("ISO_IR 192", "Левое лёгкое"),
                                            ("GB18030", "肿瘤"), (["", "ISO 2022 IR 87"], "腫瘍")])
def test_planes_of_other_writers_are_named_in_their_character_set(sample_case, tmp_path, charset, label):
    """No private metadata (a scanner's plane): the name comes from Overlay Label, decoded in the
    file's declared character set."""
    folder = tmp_path / "scanner"
    folder.mkdir()
    path = sorted(sample_case.series_dir.iterdir())[3]
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = charset
    for tag, vr, value in ((0x0010, "US", ds.Rows), (0x0011, "US", ds.Columns), (0x0040, "CS", "R"),
                           (0x0050, "SS", [1, 1]), (0x0100, "US", 1), (0x0102, "US", 0), (0x1500, "LO", label)):
        ds.add_new((0x6000, tag), vr, value)
    plane = np.zeros((ds.Rows, ds.Columns), bool)
    plane[10:20, 30:45] = True
    ds.add_new((0x6000, 0x3000), "OW", np.packbits(plane.ravel(), bitorder="little").tobytes())
    assert not any(tag >> 16 == PRIVATE_GROUP for tag in ds.keys())
    ds.save_as(folder / "IM1.dcm", enforce_file_format=True)
    back = import_overlays(folder)
    assert [s.name for s in back.segmentation.segments] == [label]
    np.testing.assert_array_equal(back.segmentation.mask(back.segmentation.segments[0])[0], plane)


def run(*args):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_overlay_import_writes_utf8_names_and_warns_about_markups(sample_case, tmp_path):
    """overlay import: the .seg.nrrd keeps the names (UTF-8 in the header, as Slicer writes them:
    ITK's NRRD reader, which Slicer uses, gives them back); without --markups-out, one warning line
    says the stored markups are not written."""
    import SimpleITK as sitk
    import slicerio

    source = source_copy(sample_case, tmp_path / "src", "ISO_IR 100", PATIENT)
    segmentation, markups = renamed(sample_case)
    api.export_overlay(source, segmentation, markups=markups, out_dir=tmp_path / "out")
    result = run("overlay", "import", "--series", tmp_path / "out", "--out", tmp_path / "back.seg.nrrd")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "--markups-out" in line]
    assert len(warning) == 1 and warning[0].startswith("WARNING") and "4 markups" in warning[0]
    assert "Läsion Linie" in warning[0]
    assert "Tumör, 肿瘤, Левое лёгкое" in result.stdout
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(tmp_path / "back.seg.nrrd"))
    reader.ReadImageInformation()
    assert [reader.GetMetaData(f"Segment{n}_Name") for n in range(3)] == SEGMENT_NAMES
    assert [s.name for s in load_segmentation(tmp_path / "back.seg.nrrd").segments][:3] == SEGMENT_NAMES
    # slicerio reads the file (pynrrd decodes header lines as ASCII and drops other characters).
    read = slicerio.read_segmentation(str(tmp_path / "back.seg.nrrd"))
    assert [s["name"] for s in read["segments"]][:3] == [n.encode("ascii", "ignore").decode().strip()
                                                         for n in SEGMENT_NAMES]
    np.testing.assert_array_equal(np.asarray(read["voxels"]).shape[-3:], segmentation.geometry.shape[::-1])
    with_markups = run("overlay", "import", "--series", tmp_path / "out", "--out", tmp_path / "b2.seg.nrrd",
                       "--markups-out", tmp_path / "b2.mrk.json")
    assert with_markups.returncode == 0 and "--markups-out" not in with_markups.stderr
    assert [m.name for m in read_markups(tmp_path / "b2.mrk.json")][:3] == MARKUP_NAMES
    shutil.rmtree(tmp_path / "out")


def test_spliced_utf8_copies_equal_pydicom_written_ones(sample_case, tmp_path, monkeypatch):
    """A source without a character set and UTF-8 names: the byte-spliced files (Specific
    Character Set inserted) hold the same elements as pydicom writes for them."""
    from DicomAnnotEmbedLib.encodings.overlay import encode

    source = source_copy(sample_case, tmp_path / "src", None, "Doe^John")
    segmentation, markups = renamed(sample_case)
    series = load_series(source)
    annotations = api.load_annotations(series, segmentation, markups)
    options = dict(keep_uids=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", encode.KeepUidsWarning)
        encode.export_overlays(series, annotations, tmp_path / "spliced", **options)
        monkeypatch.setattr(encode._SourceFile, "splice", lambda self, changes: None)
        encode.export_overlays(series, annotations, tmp_path / "pydicom", **options)
    for a, b in zip(sorted((tmp_path / "spliced").iterdir()), sorted((tmp_path / "pydicom").iterdir())):
        x, y = pydicom.dcmread(a), pydicom.dcmread(b)
        assert x.SpecificCharacterSet == y.SpecificCharacterSet == "ISO_IR 192"
        assert set(x.keys()) == set(y.keys())
        for tag in x.keys():
            assert x[tag].value == y[tag].value, (a.name, tag)
        assert a.read_bytes() == b.read_bytes(), a.name
