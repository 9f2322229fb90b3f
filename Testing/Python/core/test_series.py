"""Series discovery, sorting and geometry, on real files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import interop
from DicomAnnotEmbedLib.core.errors import GeometryError, SeriesError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.series import load_series


def _copy_series(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_dcmqi_three_slices_sorted_along_normal():
    series = load_series(interop("dcmqi", "ct-3slice"))
    assert series.geometry.shape == (3, 512, 512)
    np.testing.assert_allclose(series.geometry.origin, [-235.199997, -226.800003, -128.690002])
    np.testing.assert_allclose(series.geometry.spacing, [0.810547, 0.810547, 1.0], atol=1e-6)
    positions = [float(ds.ImagePositionPatient[2]) for ds in series.datasets]
    assert positions == sorted(positions)


def test_sorting_ignores_instance_number(sample_case, tmp_path):
    folder = _copy_series(sample_case.series_dir, tmp_path / "s")
    files = sorted(folder.iterdir())
    for n, path in enumerate(files):  # reverse the instance numbers
        _edit(path, InstanceNumber=len(files) - n)
    series = load_series(folder)
    z = [float(ds.ImagePositionPatient[2]) for ds in series.datasets]
    assert z == sorted(z)


def test_headers_only_pixel_data_not_read(sample_case):
    series = load_series(sample_case.series_dir)
    for ds in series.datasets:
        assert "PixelData" not in ds  # headers are read up to the pixel data, never beyond


def read_bytes_of_this_process() -> int:
    """Bytes this process has read through system calls so far (Linux /proc)."""
    io_counters = Path("/proc/self/io")
    if not io_counters.exists():
        pytest.skip("no /proc/self/io on this system")
    return int(next(line for line in io_counters.read_text().splitlines() if line.startswith("rchar:")).split()[1])


def test_loading_headers_reads_little_beyond_them(tmp_path):
    """On a 512x512 series, load_series reads each header and at most SLACK bytes beyond it
    (FIRST_BLOCK for the first file): far from the pixel data."""
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from DicomAnnotEmbedLib.core.series import _HeaderReader

    geometry = VolumeGeometry((8, 512, 512), np.diag([0.7, 0.7, 1.5, 1.0]))
    files = dicomize_array(np.zeros(geometry.shape, np.int16), geometry, tmp_path / "series")
    # A file without pixel data sorted first (a report beside the images) teaches the reader nothing.
    report = pydicom.Dataset()
    report.file_meta = pydicom.dataset.FileMetaDataset()
    report.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    report.Modality, report.SeriesInstanceUID = "SR", pydicom.uid.generate_uid()
    report.save_as(tmp_path / "series" / "0_report.dcm", enforce_file_format=True)
    sizes = sum(p.stat().st_size for p in (tmp_path / "series").iterdir())
    for keep in (False, True):
        on_header = (lambda path, ds, head: None) if keep else None
        load_series(tmp_path / "series", on_header=on_header)  # modules that load on first use read their files
        before = read_bytes_of_this_process()
        series = load_series(tmp_path / "series", on_header=on_header)
        read = read_bytes_of_this_process() - before
        headers = sum(ds.pixel_data_offset for ds in series.datasets) + (tmp_path / "series" / "0_report.dcm").stat().st_size
        assert headers < read <= headers + _HeaderReader.FIRST_BLOCK + len(files) * (_HeaderReader.SLACK + 64)
        assert read < sizes / 20


def test_unreadable_numbers_in_headers(sample_case, tmp_path):
    """A broken Instance Number only orders nothing; a broken Number of Frames is an error that
    names the file (pydicom cannot write such values: the bytes are edited)."""
    folder = tmp_path / "series"
    shutil.copytree(sample_case.series_dir, folder)
    first = sorted(folder.iterdir())[0]

    def edit_is_value(tag: int, text: bytes) -> None:
        ds = pydicom.dcmread(first)
        ds[tag] = pydicom.DataElement(tag, "IS", "1")
        ds.save_as(first)
        data = first.read_bytes()
        at = data.index((tag >> 16).to_bytes(2, "little") + (tag & 0xFFFF).to_bytes(2, "little") + b"IS\x02\x00")
        first.write_bytes(data[:at + 8] + text.ljust(2) + data[at + 10:])

    edit_is_value(0x00200013, b"x")  # Instance Number
    assert len(load_series(folder).files) == len(list(folder.iterdir()))
    edit_is_value(0x00280008, b"x")  # Number of Frames
    with pytest.raises(SeriesError, match="NumberOfFrames") as error:
        load_series(folder)
    assert first.name in str(error.value)


def test_pydicom_warnings_are_shown_once_per_place(tmp_path):
    """Headers parsed from blocks warn as pydicom reading the files does: once per place, under
    the default filter, not once per file."""
    import warnings

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    geometry = VolumeGeometry((6, 32, 32), np.diag([1.0, 1.0, 2.0, 1.0]))
    for path in dicomize_array(np.zeros(geometry.shape, np.int16), geometry, tmp_path / "series"):
        ds = pydicom.dcmread(path)
        out = DicomBytesIO()
        out.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(out, ds.file_meta)  # says explicit VR...
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, True
        write_dataset(body, ds)  # ...for an implicit VR dataset
        Path(path).write_bytes(out.getvalue() + body.getvalue())
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        load_series(tmp_path / "series")
    assert len([w for w in seen if "implicit VR" in str(w.message)]) == 1


def test_oblique_geometry_is_exact(tmp_path):
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    rot = rot @ np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    geometry = VolumeGeometry.from_origin_spacing_directions((7, 20, 30), (10.5, -20.25, 33.0), (0.7, 0.8, 2.0), rot)
    volume = np.arange(7 * 20 * 30, dtype=np.int16).reshape(7, 20, 30)
    dicomize_array(volume, geometry, tmp_path / "obl")
    series = load_series(tmp_path / "obl")
    np.testing.assert_allclose(series.geometry.ijk_to_lps, geometry.ijk_to_lps, atol=1e-4)
    np.testing.assert_array_equal(series.read_volume(), volume)


def test_enhanced_multiframe_ct(tmp_path):
    shutil.copy(interop("pydicom-data", "eCT_Supplemental.dcm"), tmp_path)
    series = load_series(tmp_path)
    assert series.geometry.shape == (2, 512, 512)
    assert [s.frame for s in series.slices] == [1, 0]  # frames sorted along the normal
    assert series.read_volume().shape == (2, 512, 512)


def test_non_dicom_and_other_files_skipped_and_counted(tmp_path):
    folder = _copy_series(interop("dcmqi", "ct-3slice"), tmp_path / "s")
    (folder / "notes.txt").write_text("not dicom")
    (folder / "sub").mkdir()
    shutil.copy(interop("dcmqi", "liver.dcm"), folder / "sub" / "seg.dcm")
    series = load_series(folder)
    assert len(series.files) == 3
    assert series.skipped[str(folder / "notes.txt")].startswith("not DICOM")
    assert "SEG" in series.skipped[str(folder / "sub" / "seg.dcm")]


def test_empty_folder(tmp_path):
    with pytest.raises(SeriesError, match="no DICOM image series"):
        load_series(tmp_path)


def test_only_non_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(SeriesError, match="1 not DICOM"):
        load_series(tmp_path)


def test_two_series_need_a_choice(tmp_path):
    shutil.copytree(interop("dcmqi", "ct-3slice"), tmp_path / "a")
    shutil.copy(interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(SeriesError, match="2 image series found; choose one with --series"):
        load_series(tmp_path)
    mr_uid = pydicom.dcmread(tmp_path / "mr.dcm").SeriesInstanceUID
    series = load_series(tmp_path, series_uid=mr_uid)
    assert series.modality == "MR" and len(series.skipped) == 3
    with pytest.raises(SeriesError, match="not found"):
        load_series(tmp_path, series_uid="1.2.3")


@pytest.mark.parametrize("problem, match", [
    ("missing", "missing slices: a gap of 5.000 mm .about 1 slices missing. between"),
    ("irregular", "irregular slice spacing"),
    ("orientation", "mixed slice orientations"),
    ("tilt", "gantry tilt"),
    ("duplicate", "share a position"),
])
def test_bad_stacks_are_named(sample_case, tmp_path, problem, match):
    folder = _copy_series(sample_case.series_dir, tmp_path / "s")
    files = sorted(folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    middle = files[len(files) // 2]
    if problem == "missing":
        middle.unlink()
    elif problem == "irregular":
        ds = pydicom.dcmread(middle)
        _edit(middle, ImagePositionPatient=[ds.ImagePositionPatient[0], ds.ImagePositionPatient[1],
                                            float(ds.ImagePositionPatient[2]) + 0.8])
    elif problem == "orientation":
        _edit(middle, ImageOrientationPatient=[1, 0, 0, 0, 0.995037, 0.0995037])
    elif problem == "tilt":
        for n, path in enumerate(files):
            ds = pydicom.dcmread(path)
            _edit(path, ImagePositionPatient=[float(ds.ImagePositionPatient[0]),
                                              float(ds.ImagePositionPatient[1]) + 0.4 * n,
                                              float(ds.ImagePositionPatient[2])])
    elif problem == "duplicate":
        shutil.copy(middle, folder / "copy.dcm")
        _edit(folder / "copy.dcm", SOPInstanceUID=pydicom.uid.generate_uid())
    with pytest.raises(GeometryError, match=match) as info:
        load_series(folder)
    assert str(folder) in str(info.value)
    if problem != "tilt":
        assert ".dcm" in str(info.value)  # names the files


def header_from_file(path):
    with open(path, "rb") as stream:
        ds = pydicom.dcmread(stream, stop_before_pixels=True, defer_size=16384)
        return ds, stream.tell()


def element_key(element):
    """What a parsed element is: raw ones with where their value lies (deferred ones have none)."""
    if hasattr(element, "value_tell"):
        return element.tag, element.VR, element.length, element.value_tell, element.value
    return element.tag, element.VR, element.value


def assert_same_header(read, path):
    expected, offset = header_from_file(path)
    assert read.pixel_data_offset == offset
    assert [element_key(e) for e in read.values()] == [element_key(e) for e in expected.values()]
    assert read.file_meta == expected.file_meta and read.original_encoding == expected.original_encoding
    assert read.filename == str(path) and read.timestamp == expected.timestamp


def test_block_header_reader_equals_reading_the_file(sample_case, tmp_path):
    """Headers parsed from a first block of bytes are what pydicom reads from the file, also where
    the block cuts a header (overlay files), for short files and for deferred values."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.series import _HeaderReader

    sources = sorted(sample_case.series_dir.iterdir())
    reader = _HeaderReader()
    for path in sources:
        assert_same_header(reader.read(path)[0], path)
    assert reader.trailing is not None

    api.export_overlay(sample_case.series_dir, sample_case.segmentation_path, out_dir=tmp_path / "overlay")
    exported = sorted((tmp_path / "overlay").iterdir())
    for path in exported:
        small = _HeaderReader()
        small.trailing = path.stat().st_size - 1024  # the header is cut: read from the file
        ds, head = small.read(path)
        assert head is None
        assert_same_header(ds, path)
        assert ds.get((0x6000, 0x3000)) is None or ds[0x6000, 0x3000].value is not None  # deferred reads work
    keeping = _HeaderReader(_HeaderReader.MAX_KEPT_BLOCK)  # blocks grow to hold the overlay data
    heads = [keeping.read(path) for path in exported]
    assert all(head is not None for _, head in heads[1:])  # sized from the first file
    for path, (ds, head) in zip(exported, heads):
        assert_same_header(ds, path)
        if head is not None:
            assert path.read_bytes().startswith(head[:ds.pixel_data_offset])
            overlay_data = ds.get_item((0x6000, 0x3000), keep_deferred=True)
            if overlay_data is not None and overlay_data.value is None:  # deferred, and in the block
                assert overlay_data.value_tell + overlay_data.length <= len(head)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(sources[0].read_bytes()[:2000])  # shorter than a block: parsed whole, as pydicom does
    assert_same_header(_HeaderReader().read(truncated)[0], truncated)


@pytest.mark.parametrize("parts", [("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"),
                                   ("pydicom-data", "eCT_Supplemental.dcm")])
def test_block_header_reader_on_other_writers_files(parts):
    from DicomAnnotEmbedLib.core.series import _HeaderReader

    path = interop(*parts)
    assert_same_header(_HeaderReader().read(path)[0], path)
