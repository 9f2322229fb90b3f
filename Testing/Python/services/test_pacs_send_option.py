"""``--send NODE`` on the export commands: overlay export, csv import (overlay series, SEG and SR
from a table), gsps export, rtstruct export, seg/sr export (in test_pacs_roundtrip). What they wrote is stored on a real Orthanc
(counted by its REST API, and each SOP Instance UID it holds listed); a send that fails keeps
every written file and exits 5."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom

from conftest import REPO
from orthanc_server import OUR_AET, free_port, orthanc
from pacs_cases import file_hashes

EXAMPLE = REPO / "Resources" / "Examples" / "annotations_example.csv"


def cli(*args):
    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=900)
    assert "Traceback" not in done.stderr
    return done


def sop_uids(folder: Path) -> set:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in folder.rglob("*.dcm")}


def test_overlay_csv_gsps_rtstruct_send_what_they_wrote(sample_case, tmp_path):
    with orthanc(tmp_path / "orthanc", require_dicomweb=False) as server:
        send = ["--send", server.dimse_node, "--send-calling-aet", OUR_AET]
        done = cli("overlay", "export", "--series", sample_case.series_dir, "--segmentation",
                   sample_case.segmentation_path, "--markups", sample_case.markups_path, "--out", tmp_path / "overlay",
                   *send)
        assert done.returncode == 0, done.stderr
        written = sop_uids(tmp_path / "overlay")
        assert f"sent to {server.dimse_node}: {len(written)} stored, 0 already held, 0 not stored" in done.stdout
        assert set(server.sop_instance_uids()) == written

        done = cli("csv", "import", EXAMPLE, "--series", sample_case.series_dir, "--out", tmp_path / "csv", *send)
        assert done.returncode == 0, done.stderr
        dicom_out = sop_uids(tmp_path / "csv")
        assert f"{len(dicom_out)} stored, 0 already held, 0 not stored" in done.stdout
        assert set(server.sop_instance_uids()) == written | dicom_out

        done = cli("gsps", "export", "--series", sample_case.series_dir, "--markups", sample_case.markups_path,
                   "--out", tmp_path / "gsps" / "pr.dcm", *send)
        assert done.returncode == 0, done.stderr
        assert "1 stored, 0 already held, 0 not stored" in done.stdout
        assert set(server.sop_instance_uids()) == written | dicom_out | sop_uids(tmp_path / "gsps")

        done = cli("rtstruct", "export", "--series", sample_case.series_dir, "--segmentation",
                   sample_case.segmentation_path, "--out", tmp_path / "rt" / "rtstruct.dcm", *send)
        assert done.returncode == 0, done.stderr
        assert "1 stored, 0 already held, 0 not stored" in done.stdout
        assert set(server.sop_instance_uids()) == (written | dicom_out | sop_uids(tmp_path / "gsps")
                                                   | sop_uids(tmp_path / "rt"))


def test_a_failed_send_keeps_the_written_files(sample_case, tmp_path):
    node = f"NOBODY@127.0.0.1:{free_port()}"
    done = cli("seg", "export", "--series", sample_case.series_dir, "--segmentation", sample_case.segmentation_path,
               "--out", tmp_path / "seg.dcm", "--send", node, "--send-retries", "0")
    assert done.returncode == 5
    assert "written to" in done.stdout and f"not stored: {tmp_path / 'seg.dcm'}: not sent: cannot reach" in done.stderr
    before = file_hashes([tmp_path / "seg.dcm"])
    assert pydicom.dcmread(tmp_path / "seg.dcm").Modality == "SEG"
    # Sending it later with pacs send is the way to finish the job (here: still nobody there).
    assert cli("pacs", "send", node, tmp_path / "seg.dcm", "--retries", "0").returncode == 5
    assert file_hashes([tmp_path / "seg.dcm"]) == before
