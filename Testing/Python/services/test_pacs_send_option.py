"""``--send NODE`` on the export commands: overlay export, csv import (overlay series, SEG and SR
from a table), gsps export, rtstruct export, convert (DICOM targets), dicomize, seg/sr export (in
test_pacs_roundtrip). What they wrote is stored on a real Orthanc
(counted by its REST API, and each SOP Instance UID it holds listed); a send that fails keeps
every written file and exits 5."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_convert_and_dicomize_send_what_they_wrote(sample_case, tmp_path):
    """``convert`` (DICOM targets) and ``dicomize`` take --send like the exports: Orthanc holds
    exactly what they wrote; sending the same files again stores nothing (already held)."""
    import SimpleITK as sitk

    with orthanc(tmp_path / "orthanc", require_dicomweb=False) as server:
        send = ["--send", server.dimse_node, "--send-calling-aet", OUR_AET]
        held = set()
        for target, out in (("seg", tmp_path / "seg" / "seg.dcm"), ("sr", tmp_path / "sr" / "sr.dcm"),
                            ("overlay", tmp_path / "overlay")):
            done = cli("convert", sample_case.segmentation_path, sample_case.markups_path, "--to", target,
                       "--series", sample_case.series_dir, "--out", out, *send)
            assert done.returncode == 0, (target, done.stderr)
            written = sop_uids(out.parent if target != "overlay" else out)
            assert f"sent to {server.dimse_node}: {len(written)} stored, 0 already held, 0 not stored" in done.stdout
            held |= written
            assert set(server.sop_instance_uids()) == held and server.instance_count() == len(held)
        assert len(sop_uids(tmp_path / "sr")) == 3  # sr.dcm, sr_markups.dcm and the SEG beside them
        # dicomize: a volume without DICOM becomes a series, sent.
        volume = sitk.GetImageFromArray(np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8))
        sitk.WriteImage(volume, str(tmp_path / "volume.nrrd"))
        done = cli("dicomize", tmp_path / "volume.nrrd", "--out", tmp_path / "dicomized", *send)
        assert done.returncode == 0, done.stderr
        assert "4 DICOM files written" in done.stdout and "4 stored, 0 already held, 0 not stored" in done.stdout
        held |= sop_uids(tmp_path / "dicomized")
        assert set(server.sop_instance_uids()) == held and server.instance_count() == len(held)
        # A resend skips what the archive holds.
        outputs = [tmp_path / "seg", tmp_path / "sr", tmp_path / "overlay", tmp_path / "dicomized"]
        before = file_hashes(outputs)
        done = cli("pacs", "send", server.dimse_node, *outputs, "--calling-aet", OUR_AET)
        assert done.returncode == 0, done.stderr
        assert f"0 stored, {len(held)} already held, 0 not stored" in done.stdout
        assert server.instance_count() == len(held) and file_hashes(outputs) == before
    # --send needs a DICOM target; a failed send keeps the written file (exit 5).
    done = cli("convert", sample_case.segmentation_path, "--to", "nifti", "--out", tmp_path / "l.nii.gz", *send)
    assert done.returncode == 2 and "--send applies to the DICOM targets" in done.stderr
    node = f"NOBODY@127.0.0.1:{free_port()}"
    done = cli("convert", sample_case.segmentation_path, "--to", "rtstruct", "--series", sample_case.series_dir,
               "--out", tmp_path / "rt.dcm", "--send", node, "--send-retries", "0")
    assert done.returncode == 5 and f"not stored: {tmp_path / 'rt.dcm'}" in done.stderr
    assert pydicom.dcmread(tmp_path / "rt.dcm").Modality == "RTSTRUCT"
