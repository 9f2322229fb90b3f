"""Faults against a real Orthanc: server down, a wrong AE title, SOP classes and transfer syntaxes
the archive refuses, the server killed in the middle of a send. Each gives a clear error, exit
code 5, leaves the local files as they were, and a rerun completes without duplicates (Orthanc's
REST API counts what it holds)."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

from orthanc_server import OUR_AET, free_port, orthanc, restart
from pacs_cases import dcmtk, file_hashes, make_case

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import NetworkError
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.services import pacs


def cli(*args):
    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("faults-case"), slices=12, size=32, seed=5)


def test_server_down(case, tmp_path):
    port = free_port()  # nobody listens there
    before = file_hashes([case.folder])
    code, out, err = cli("pacs", "send", f"NOBODY@127.0.0.1:{port}", *case.results, "--retries", "1")
    assert code == 5
    assert f"cannot reach NOBODY@127.0.0.1:{port}" in err and "Connection refused" in err
    assert "the local files are kept" in err
    assert err.count("not stored: ") == 2 and str(case.seg) in err and str(case.sr) in err
    assert file_hashes([case.folder]) == before
    for args in (["echo", f"NOBODY@127.0.0.1:{port}"], ["find", f"http://127.0.0.1:{port}/dicom-web"],
                 ["send", f"http://127.0.0.1:{port}/dicom-web", str(case.seg), "--retries", "0"],
                 ["get", f"NOBODY@127.0.0.1:{port}", "--study", case.study_uid, "--out", str(tmp_path / "o"),
                  "--retries", "0"]):
        code, _, err = cli("pacs", *args)
        assert code == 5, (args, err)
        assert "cannot reach" in err and "refused" in err.lower(), (args, err)


def test_wrong_called_ae_title_and_bad_nodes(case, tmp_path):
    with orthanc(tmp_path / "orthanc", require_dicomweb=False) as server:
        wrong = f"NOTORTHANC@127.0.0.1:{server.dicom_port}"
        code, _, err = cli("pacs", "echo", wrong)
        assert code == 5 and "rejected the association" in err and "called AE title" in err
        code, _, err = cli("pacs", "send", wrong, str(case.seg), "--retries", "0")
        assert code == 5 and "rejected the association" in err and str(case.seg) in err
        assert server.instance_count() == 0
        # The test archive answers only the calling AE titles it knows.
        code, _, err = cli("pacs", "send", server.dimse_node, str(case.seg), "--calling-aet", "STRANGER",
                           "--retries", "0")
        assert code == 5 and str(case.seg) in err
        assert server.instance_count() == 0
    code, _, err = cli("pacs", "echo", "not a node")
    assert code == 3 and "neither AET@HOST:PORT" in err
    code, _, err = cli("pacs", "send", "X@127.0.0.1:104", str(tmp_path / "missing.dcm"))
    assert code == 3 and "missing.dcm: not found" in err
    (tmp_path / "notes.txt").write_text("not DICOM")
    code, _, err = cli("pacs", "send", "X@127.0.0.1:104", str(tmp_path / "notes.txt"))
    assert code == 3 and "notes.txt: not a DICOM file" in err


def test_refused_sop_classes(case, tmp_path):
    """Stock Orthanc 1.10 refuses Label Map SEG (its DCMTK predates Supplement 243) at negotiation;
    a Lua filter makes it discard SR instances (acknowledged, then not held). Everything else is
    stored, each refused file is named with the reason, a resend adds nothing."""
    results = tmp_path / "results"
    labelmap = api.export_seg(case.series_dir, case.labels, results / "labelmap.dcm", seg_type="labelmap",
                              compression="jpegls").paths[0]
    lua = "function ReceivedInstanceFilter(dicom, origin, info)\n  return dicom.Modality ~= 'SR'\nend\n"
    with orthanc(tmp_path / "orthanc", lua=lua) as server:
        before = file_hashes([case.folder, results])
        code, out, err = cli("pacs", "send", server.dimse_node, case.seg, case.sr, labelmap, "--retries", "0")
        assert code == 5
        assert "1 stored, 0 already held, 2 not stored" in out
        assert (f"not stored: {labelmap}: Label Map Segmentation (1.2.840.10008.5.1.4.1.1.66.7) not accepted by "
                f"{server.dimse_node} (presentation context rejected)") in err
        # Orthanc 1.10 answers success to an instance its filter discards: the check afterwards catches it.
        assert (f"not stored: {case.sr}: acknowledged by {server.dimse_node} but not held afterwards") in err
        assert server.instance_count() == 1
        code, out, err = cli("pacs", "send", server.dimse_node, case.seg, case.sr, labelmap, "--retries", "0")
        assert code == 5 and "0 stored, 1 already held, 2 not stored" in out
        assert server.instance_count() == 1
        # Over STOW-RS the SR is refused by the same filter, per instance.
        report = pacs.send(server.web_node, [case.sr, labelmap], check=False, retries=0)
        assert list(report.failed) == [str(case.sr)] and report.stored == [str(labelmap)]
        assert server.instance_count() == 2
        assert file_hashes([case.folder, results]) == before
        with pytest.raises(NetworkError, match="1 not stored"):
            pacs.send(server.web_node, [case.sr], retries=0)


def test_compressed_transfer_syntax_refused_falls_back_to_uncompressed(case, tmp_path):
    seg = api.export_seg(case.series_dir, case.labels, tmp_path / "j2k.dcm", seg_type="binary",
                         compression="jpeg2000").paths[0]
    assert pydicom.dcmread(seg).file_meta.TransferSyntaxUID == "1.2.840.10008.5.1.4.1.1.2.4.90"[:0] + \
        "1.2.840.10008.1.2.4.90"
    uncompressed = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]
    with orthanc(tmp_path / "orthanc", accepted_transfer_syntaxes=uncompressed, require_dicomweb=False) as server:
        report = pacs.send(server.dimse_node, [seg], calling_aet=OUR_AET)
        assert report.stored == [str(seg)]
        got = pacs.get(server.dimse_node, case.study_uid, tmp_path / "got", modality="SEG", calling_aet=OUR_AET)
        (path,) = got.files
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID in uncompressed
        series = load_series(case.series_dir)
        a, b = api.import_seg(path, series).segmentation, api.import_seg(seg, series).segmentation
        for sa, sb in zip(a.segments, b.segments):
            np.testing.assert_array_equal(a.mask(sa), b.mask(sb))
        # DCMTK's dcmdump reads what the archive holds.
        subprocess.run([dcmtk("dcmdump"), "-q", path], check=True, capture_output=True)


def test_server_killed_during_send_then_rerun_completes(tmp_path):
    big = make_case(tmp_path / "big", slices=160, size=64, seed=8)
    paths = [big.series_dir, *big.results]
    total = 162
    before = file_hashes(paths)
    with orthanc(tmp_path / "orthanc", require_dicomweb=False) as server:
        sender = subprocess.Popen([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", "pacs", "send",
                                   server.dimse_node, *map(str, paths), "--retries", "1", "--timeout", "5"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while server.instance_count() < 20 and time.monotonic() < deadline and sender.poll() is None:
            time.sleep(0.05)
        server.kill()
        out, err = sender.communicate(timeout=300)
        assert sender.returncode == 5, err
        assert "Traceback" not in err and "the local files are kept" in err
        not_stored = err.count("not stored: ")
        assert 0 < not_stored < total
        assert file_hashes(paths) == before

        restart(server)
        held = server.instance_count()
        assert held <= total - not_stored + 4  # at most one instance in flight per association
        code, out, err = cli("pacs", "send", server.dimse_node, *paths)
        assert code == 0, err
        stored, already = (int(v) for v in out.split(" stored, ")[0].split()[-1:] + out.split(" already held")[0].split()[-1:])
        assert stored + already == total and already == held
        assert server.instance_count() == total
        assert len(set(server.sop_instance_uids())) == total
        assert file_hashes(paths) == before
