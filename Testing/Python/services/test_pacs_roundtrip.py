"""The round trip through a real archive (Orthanc with its DICOMweb plugin), once over DIMSE and
once over DICOMweb: a CT series stored by DCMTK's storescu -> ``pacs get`` -> SEG (BINARY, and
JPEG 2000 or LABELMAP JPEG-LS) and SR exported with ``--send`` -> ``pacs find --modality SEG/SR`` finds them ->
``pacs get`` into a new folder -> import -> the same voxels and markups.

Independent readers: DCMTK's storescu (stores the CT) and findscu (finds our SEG and SR on the
archive), Orthanc's REST API (instance counts, what it holds), highdicom (reads the retrieved SEG),
pydicom (the retrieved files equal what was sent, data set for data set).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from orthanc_server import OUR_AET, orthanc
from pacs_cases import dataset_without_meta, dcmtk, file_hashes, make_case

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.series import load_series


def cli(*args, check=True):
    """Run the command line; returns (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}: {done.stderr}")
    return done.returncode, done.stdout, done.stderr


def table(stdout: str) -> list:
    lines = stdout.strip().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("pacs-case"), slices=20, size=48, seed=3, results=False)


@pytest.mark.parametrize("transport", ["dimse", "dicomweb"])
def test_round_trip_through_orthanc(case, tmp_path, transport):
    with orthanc(tmp_path / "orthanc") as server:
        node = server.dimse_node if transport == "dimse" else server.web_node
        aet = ["--calling-aet", OUR_AET] if transport == "dimse" else []
        # The CT goes in with DCMTK's storescu, as a modality would send it.
        subprocess.run([dcmtk("storescu"), "-aet", "MODALITY", "-aec", server.aet, "+sd", "+r", "127.0.0.1",
                        str(server.dicom_port), str(case.series_dir)], check=True, capture_output=True)
        assert server.instance_count() == 20

        cli("pacs", "echo", node, *aet)
        code, out, _ = cli("pacs", "find", node, "--modality", "CT", "--patient-id", "PACS-TEST", *aet)
        rows = table(out)
        assert [(r["study_instance_uid"], r["series_instance_uid"], r["count"]) for r in rows] == \
            [(case.study_uid, case.series_uid, "20")]

        fetched = tmp_path / "fetched"
        cli("pacs", "get", node, "--study", case.study_uid, "--out", fetched, *aet)
        ct_dir = fetched / f"CT_{case.series_uid}"
        got = sorted(ct_dir.glob("*.dcm"))
        assert len(got) == 20 and not list(ct_dir.glob(".*"))  # no partial files left
        originals = {pydicom.dcmread(p).SOPInstanceUID: p for p in case.series_dir.glob("*.dcm")}
        for path in got:
            ds = dataset_without_meta(path)
            assert ds == dataset_without_meta(originals[ds.SOPInstanceUID])

        # Results from the fetched series: BINARY SEG, LABELMAP JPEG-LS SEG, SR; sent, then found again.
        results = tmp_path / "results"
        send = ["--send", node] + (["--send-calling-aet", OUR_AET] if transport == "dimse" else [])
        code, out, _ = cli("seg", "export", "--series", ct_dir, "--segmentation", _labels_file(case, tmp_path),
                           "--type", "binary", "--out", results / "binary.dcm", *send)
        assert f"sent to {node}: 1 stored, 0 already held, 0 not stored" in out
        # Over DIMSE a compressed BINARY SEG (JPEG 2000): Orthanc 1.10's DCMTK does not know Label Map
        # SEG, and refuses it for C-GET even with UnknownSopClassAccepted (test_pacs_faults shows the
        # error). DICOMweb carries a JPEG-LS LABELMAP SEG.
        second = ["--type", "binary", "--compress", "jpeg2000"] if transport == "dimse" else \
            ["--type", "labelmap", "--compress", "jpegls"]
        cli("seg", "export", "--series", ct_dir, "--segmentation", _labels_file(case, tmp_path), *second,
            "--out", results / "second.dcm", *send)
        code, out, _ = cli("sr", "export", "--series", ct_dir, "--seg", results / "binary.dcm",
                           "--out", results / "sr.dcm", *send)
        assert f"sent to {node}: 1 stored" in out
        before = file_hashes([results])
        assert server.instance_count() == 23
        # A resend stores nothing twice.
        code, out, _ = cli("pacs", "send", node, results, ct_dir, *aet)
        assert "0 stored, 23 already held, 0 not stored" in out
        assert server.instance_count() == 23
        assert file_hashes([results]) == before

        segs = table(cli("pacs", "find", node, "--modality", "SEG", "--study", case.study_uid, *aet)[1])
        srs = table(cli("pacs", "find", node, "--modality", "SR", *aet)[1])
        assert len(segs) == 2 and len(srs) == 1
        assert {r["modality"] for r in segs} == {"SEG"} and srs[0]["modality"] == "SR"
        # DCMTK's findscu finds them too.
        found = subprocess.run([dcmtk("findscu"), "-S", "-aet", OUR_AET, "-aec", server.aet, "-k",
                                "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={case.study_uid}", "-k",
                                "Modality=SEG", "-k", "SeriesInstanceUID", "127.0.0.1", str(server.dicom_port)],
                               capture_output=True, text=True, check=True)
        assert sorted(found.stderr.count(r["series_instance_uid"]) > 0 for r in segs) == [True, True]

        again = tmp_path / "again"
        for modality in ("SEG", "SR"):
            cli("pacs", "get", node, "--study", case.study_uid, "--modality", modality, "--out", again, *aet)
        sent = {dataset_without_meta(p).SOPInstanceUID: p for p in results.glob("*.dcm")}
        retrieved = sorted(again.rglob("*.dcm"))
        assert len(retrieved) == 3
        for path in retrieved:
            ds = dataset_without_meta(path)
            assert ds == dataset_without_meta(sent[ds.SOPInstanceUID]), path
            assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == \
                pydicom.dcmread(sent[ds.SOPInstanceUID]).file_meta.TransferSyntaxUID

        # Import what came back: the same voxels as the labels the case was drawn with.
        import highdicom as hd

        series = load_series(ct_dir)
        for path in again.glob("SEG_*/*.dcm"):
            values = [int(v) for v in np.unique(case.labels) if v]
            # (highdicom 0.27's number_of_segments counts a LABELMAP's background twice: segment_numbers)
            assert list(hd.seg.segread(path).segment_numbers) == list(range(1, len(values) + 1))
            imported = api.import_seg(path, series).segmentation
            assert [s.name for s in imported.segments] == [f"Segment_{v}" for v in values]
            for value, segment in zip(values, imported.segments):
                np.testing.assert_array_equal(imported.mask(segment), case.labels == value)
        sr_path = next(again.glob("SR_*/*.dcm"))
        sr = api.import_sr(sr_path, series, seg_folders=[again])
        assert len(sr.records) > 0


def _labels_file(case, tmp_path) -> Path:
    """The case's labels as a NRRD label map on the series grid (written once per test)."""
    path = tmp_path / "labels.nrrd"
    if not path.exists():
        import SimpleITK as sitk

        series = load_series(case.series_dir)
        image = sitk.GetImageFromArray(case.labels)
        matrix = series.geometry.ijk_to_lps
        spacing = np.linalg.norm(matrix[:3, :3], axis=0)
        image.SetSpacing([float(s) for s in spacing])
        image.SetOrigin([float(v) for v in matrix[:3, 3]])
        image.SetDirection([float(v) for v in (matrix[:3, :3] / spacing).ravel()])
        sitk.WriteImage(image, str(path))
    return path
