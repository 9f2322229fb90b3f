"""C-MOVE, DICOM TLS and HTTPS against real servers.

- C-MOVE: Orthanc knows our destination AE title and port (DicomModalities); ``pacs get --via
  move`` starts our Storage SCP on 127.0.0.1 for the retrieval: every file as sent, data set for
  data set, in the same transfer syntax; an unknown destination AE title is a clear error (5).
- DICOM TLS: Orthanc with DicomTlsEnabled, its certificate and a client CA made by ``openssl`` in
  a temporary folder: echo, send, get and C-MOVE over TLS (options and a named node); the wrong CA, no
  client certificate and plain DIMSE on the TLS port are refused with a clear error (5).
- HTTPS: Debian's Orthanc 1.10 crashes on HTTPS (SslEnabled), so a real nginx terminates TLS in
  front of it on loopback: a certificate from an unknown CA is refused by default (5), accepted
  with ``--tls-ca`` or REQUESTS_CA_BUNDLE; send and get over HTTPS are exact; a client certificate
  (``--tls-cert``/``--tls-key``) where nginx requires one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pydicom
import pytest

from orthanc_server import (CALLING_AETS, OUR_AET, dicom_tls, free_port, make_certificates, nginx_https,
                            orthanc)
from pacs_cases import dataset_without_meta, file_hashes, make_case

MOVE_AET = "DAEMOVE"


def cli(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("move-tls-case"), slices=20, size=32, seed=11,
                     compression="jpeg2000")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def assert_retrieved_as_sent(folder, sent) -> None:
    """Every file below ``folder`` equals the one sent (data set, transfer syntax), and all came."""
    originals = {}
    for path in sent:
        for p in ([path] if path.is_file() else path.rglob("*.dcm")):
            originals[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = p
    retrieved = sorted(folder.rglob("*.dcm"))
    assert len(retrieved) == len(originals)
    assert not [p for p in folder.rglob(".*")]  # no partial files
    for path in retrieved:
        ds = dataset_without_meta(path)
        original = originals[str(ds.SOPInstanceUID)]
        assert ds == dataset_without_meta(original), path
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.dcmread(original).file_meta.TransferSyntaxUID


def test_c_move_round_trip_and_unknown_destination(case, tmp_path):
    port = free_port()
    modalities = {aet.lower(): [aet, "127.0.0.1", 104] for aet in CALLING_AETS}
    modalities["mover"] = [MOVE_AET, "127.0.0.1", port]
    with orthanc(tmp_path / "orthanc", extra={"DicomModalities": modalities}, require_dicomweb=False) as server:
        node = server.dimse_node
        assert cli("pacs", "send", node, case.series_dir, *case.results, "--calling-aet", OUR_AET).returncode == 0
        assert server.instance_count() == 22
        move = ["--via", "move", "--move-port", port, "--move-aet", MOVE_AET, "--move-host", "127.0.0.1"]
        done = cli("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "moved", *move,
                   "--calling-aet", OUR_AET)
        assert done.returncode == 0, done.stderr
        assert "22 files in 3 series" in done.stdout
        assert_retrieved_as_sent(tmp_path / "moved", [case.series_dir, *case.results])
        # One series by C-MOVE, through the Python API.
        from DicomAnnotEmbedLib.services import pacs

        report = pacs.get(node, case.study_uid, tmp_path / "one", series_uid=case.series_uid, calling_aet=OUR_AET,
                          via="move", move_port=port, move_aet=MOVE_AET, move_host="127.0.0.1")
        assert len(report.files) == 20 and list(report.series_dirs) == [case.series_uid]

        # A destination the archive does not know: a clear error, exit 5, nothing written.
        done = cli("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "nowhere", "--via", "move",
                   "--move-port", port, "--move-aet", "UNKNOWNAE", "--move-host", "127.0.0.1", "--calling-aet", OUR_AET,
                   "--retries", "0")
        assert done.returncode == 5, done.stderr
        # (Orthanc 1.10 answers 0xC000 "cannot process", logging "Unknown modality for AET: UNKNOWNAE")
        assert "C-MOVE status 0xC000" in done.stderr and "know the move destination 'UNKNOWNAE'" in done.stderr
        assert not list((tmp_path / "nowhere").rglob("*.dcm"))
        # Command-line mistakes: no port (2); C-MOVE of a DICOMweb node (3).
        done = cli("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "x", "--via", "move")
        assert done.returncode == 2 and "--move-port" in done.stderr
        done = cli("pacs", "get", "http://127.0.0.1:1/dicom-web", "--study", case.study_uid, "--out", tmp_path / "x",
                   "--via", "move", "--move-port", port)
        assert done.returncode == 3 and "C-MOVE is DIMSE" in done.stderr


def test_dicom_tls(case, certificates, tmp_path):
    port = free_port()
    modalities = {aet.lower(): [aet, "127.0.0.1", 104] for aet in CALLING_AETS}
    modalities["mover"] = {"AET": MOVE_AET, "Host": "127.0.0.1", "Port": port, "UseDicomTls": True}
    extra = {**dicom_tls(certificates), "DicomModalities": modalities}
    with orthanc(tmp_path / "orthanc", extra=extra, require_dicomweb=False) as server:
        node = server.dimse_node
        tls = ["--tls-ca", certificates["ca"], "--tls-cert", certificates["client_crt"], "--tls-key",
               certificates["client_key"], "--calling-aet", OUR_AET]
        done = cli("pacs", "echo", node, *tls)
        assert done.returncode == 0, done.stderr
        before = file_hashes([case.folder])
        done = cli("pacs", "send", node, case.series_dir, *case.results, *tls)
        assert done.returncode == 0, done.stderr
        assert "22 stored, 0 already held, 0 not stored" in done.stdout
        assert server.instance_count() == 22
        done = cli("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "got", *tls)
        assert done.returncode == 0, done.stderr
        assert_retrieved_as_sent(tmp_path / "got", [case.series_dir, *case.results])
        # C-MOVE over TLS: the archive connects to our SCP with TLS, each side checking the other's certificate.
        done = cli("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "moved", "--via", "move",
                   "--move-port", port, "--move-aet", MOVE_AET, "--move-host", "127.0.0.1", *tls)
        assert done.returncode == 0, done.stderr
        assert_retrieved_as_sent(tmp_path / "moved", [case.series_dir, *case.results])

        # A named node with TLS in the config file: --send and --series over TLS.
        config = tmp_path / "nodes.json"
        config.write_text(json.dumps({"nodes": {"secure": {
            "dimse": node, "calling_aet": OUR_AET, "tls": True, "ca_file": str(certificates["ca"]),
            "cert_file": str(certificates["client_crt"]), "key_file": str(certificates["client_key"])}}}))
        env = {"DICOMANNOTEMBED_NODES": str(config)}
        labels = tmp_path / "labels.seg.nrrd"
        done = cli("convert", case.seg, "--to", "seg-nrrd", "--out", labels)
        assert done.returncode == 0, done.stderr
        done = cli("seg", "export", "--series", f"secure/{case.study_uid}/{case.series_uid}", "--segmentation", labels,
                   "--type", "binary", "--out", tmp_path / "tls-seg.dcm", "--send", "secure", env=env)
        assert done.returncode == 0, done.stderr
        assert "sent to secure: 1 stored" in done.stdout
        assert server.instance_count() == 23

        # Refused: the wrong CA, no client certificate, plain DIMSE on the TLS port. Exit 5, clear words.
        wrong = ["--tls-ca", certificates["other_ca"], "--tls-cert", certificates["client_crt"], "--tls-key",
                 certificates["client_key"], "--calling-aet", OUR_AET]
        for action in (["echo", node], ["send", node, str(case.seg)], ["get", node, "--study", case.study_uid,
                                                                        "--out", str(tmp_path / "no")]):
            done = cli("pacs", *action, *wrong)
            assert done.returncode == 5, done.stderr
            assert "certificate is not trusted" in done.stderr and "--tls-ca" in done.stderr, done.stderr
            assert "retrying" not in done.stderr  # a certificate refused is final: no retries
        done = cli("pacs", "echo", node, "--tls-ca", certificates["ca"], "--calling-aet", OUR_AET)
        assert done.returncode == 5 and "DICOM TLS: the archive refused us" in done.stderr, done.stderr
        assert "--tls-cert" in done.stderr
        done = cli("pacs", "echo", node, "--calling-aet", OUR_AET, "--timeout", "5")
        assert done.returncode == 5 and "aborted the association" in done.stderr, done.stderr
        assert file_hashes([case.folder]) == before


def test_https_dicomweb_behind_nginx(case, certificates, tmp_path):
    with orthanc(tmp_path / "orthanc") as server, \
            nginx_https(tmp_path / "nginx", server.http_port, certificates) as port:
        node = f"https://127.0.0.1:{port}/dicom-web"
        import certifi

        # A CA bundle in the environment (one without our CA, as on most machines) must not hide --tls-ca.
        env = {"REQUESTS_CA_BUNDLE": certifi.where(), "CURL_CA_BUNDLE": certifi.where()}
        # A server certificate from a CA the system does not know: refused by default.
        done = cli("pacs", "echo", node, env=env)
        assert done.returncode == 5 and "TLS certificate not trusted" in done.stderr, done.stderr
        done = cli("pacs", "send", node, str(case.seg), "--retries", "0", env=env)
        assert done.returncode == 5 and "not trusted" in done.stderr
        assert server.instance_count() == 0
        # ... and the wrong CA too.
        assert cli("pacs", "echo", node, "--tls-ca", certificates["other_ca"], env=env).returncode == 5
        # Accepted with the CA given, as an option or through REQUESTS_CA_BUNDLE.
        done = cli("pacs", "echo", node, "--tls-ca", certificates["ca"], env=env)
        assert done.returncode == 0, done.stderr
        done = cli("pacs", "send", node, case.series_dir, *case.results, "--tls-ca", certificates["ca"], env=env)
        assert done.returncode == 0, done.stderr
        assert "22 stored, 0 already held, 0 not stored" in done.stdout and server.instance_count() == 22
        done = cli("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "got",
                   env={"REQUESTS_CA_BUNDLE": str(certificates["ca"])})
        assert done.returncode == 0, done.stderr
        assert_retrieved_as_sent(tmp_path / "got", [case.series_dir, *case.results])


def test_https_with_a_client_certificate(case, certificates, tmp_path):
    """nginx requires a client certificate (mutual TLS): refused without one, stored with one."""
    with orthanc(tmp_path / "orthanc") as server, \
            nginx_https(tmp_path / "nginx", server.http_port, certificates, client_certificates=True) as port:
        node = f"https://127.0.0.1:{port}/dicom-web"
        done = cli("pacs", "send", node, str(case.seg), "--tls-ca", certificates["ca"], "--retries", "0")
        assert done.returncode == 5 and "HTTP 400" in done.stderr, done.stderr  # nginx: no certificate sent
        assert server.instance_count() == 0
        done = cli("pacs", "send", node, str(case.seg), "--tls-ca", certificates["ca"], "--tls-cert",
                   certificates["client_crt"], "--tls-key", certificates["client_key"])
        assert done.returncode == 0, done.stderr
        assert "1 stored" in done.stdout and server.instance_count() == 1


def test_bearer_token_behind_nginx(case, certificates, tmp_path):
    """nginx answers 401 unless ``Authorization: Bearer <token>`` (Orthanc has no bearer
    authentication): with the token from the environment (DICOMANNOTEMBED_DICOMWEB_TOKEN, or the
    variable a named node names) echo, send, find and get work; without it or with a wrong one:
    exit 5 naming the node and the variable; a bearer node without its variable: exit 3. The token
    is never printed or logged (-v)."""
    import secrets

    token, wrong = f"dae-token-{secrets.token_hex(16)}", f"dae-wrong-{secrets.token_hex(16)}"
    printed = []

    def run(*args, env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DICOMANNOTEMBED_DICOMWEB_")}
        done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-v", *map(str, args)],
                              capture_output=True, text=True, timeout=600, env={**clean, **env})
        assert "Traceback" not in done.stderr, done.stderr
        printed.append(done.stdout + done.stderr)
        return done

    with orthanc(tmp_path / "orthanc") as server, \
            nginx_https(tmp_path / "nginx", server.http_port, certificates, bearer_token=token) as port:
        node = f"https://127.0.0.1:{port}/dicom-web"
        ca = ["--tls-ca", certificates["ca"]]
        before = file_hashes([case.series_dir, *case.results])
        # No token: 401, naming the node and where a token goes.
        done = run("pacs", "echo", node, *ca, env={})
        assert done.returncode == 5, done.stderr
        assert f"{node}: HTTP 401" in done.stderr and "DICOMANNOTEMBED_DICOMWEB_TOKEN" in done.stderr
        done = run("pacs", "send", node, case.series_dir, *case.results, *ca, env={})
        assert done.returncode == 5 and "HTTP 401" in done.stderr and "retrying" not in done.stderr
        assert server.instance_count() == 0
        # A wrong token: refused the same way (echo, send, find, get), files intact, nothing stored.
        env = {"DICOMANNOTEMBED_DICOMWEB_TOKEN": wrong}
        for args in (("pacs", "echo", node), ("pacs", "send", node, case.seg, "--retries", "1"),
                     ("pacs", "find", node, "--modality", "SEG"),
                     ("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "refused")):
            done = run(*args, *ca, env=env)
            assert done.returncode == 5, (args, done.stderr)
            assert f"{node}: HTTP 401" in done.stderr, done.stderr
            assert "bearer token in DICOMANNOTEMBED_DICOMWEB_TOKEN was refused" in done.stderr
        assert server.instance_count() == 0 and file_hashes([case.series_dir, *case.results]) == before
        # The right token: echo, send (a resend stores nothing), find, get (exact).
        env = {"DICOMANNOTEMBED_DICOMWEB_TOKEN": token}
        assert run("pacs", "echo", node, *ca, env=env).returncode == 0
        done = run("pacs", "send", node, case.series_dir, *case.results, *ca, env=env)
        assert done.returncode == 0, done.stderr
        assert "22 stored, 0 already held, 0 not stored" in done.stdout and server.instance_count() == 22
        done = run("pacs", "send", node, case.series_dir, *case.results, *ca, env=env)
        assert "0 stored, 22 already held" in done.stdout and server.instance_count() == 22
        done = run("pacs", "find", node, "--study", case.study_uid, "--modality", "SEG", "--level", "series", *ca,
                   env=env)
        assert done.returncode == 0 and str(pydicom.dcmread(case.seg).SeriesInstanceUID) in done.stdout
        done = run("pacs", "get", node, "--study", case.study_uid, "--out", tmp_path / "got", *ca, env=env)
        assert done.returncode == 0, done.stderr
        assert_retrieved_as_sent(tmp_path / "got", [case.series_dir, *case.results])
        # A named node with its own variable: --series from it and --send to it.
        config = tmp_path / "nodes.json"
        config.write_text(json.dumps({"nodes": {"cloud": {"url": node, "auth": "bearer", "token_env": "CLOUD_TOKEN",
                                                          "ca_bundle": str(certificates["ca"])}}}))
        env = {"DICOMANNOTEMBED_NODES": str(config), "CLOUD_TOKEN": token}
        done = run("convert", case.seg, "--to", "rtstruct", "--series", f"cloud/{case.study_uid}/{case.series_uid}",
                   "--out", tmp_path / "rt.dcm", "--send", "cloud", env=env)
        assert done.returncode == 0, done.stderr
        assert "sent to cloud: 1 stored" in done.stdout and server.instance_count() == 23
        done = run("pacs", "echo", "cloud", env={**env, "CLOUD_TOKEN": wrong})
        assert done.returncode == 5 and "cloud: HTTP 401" in done.stderr and "CLOUD_TOKEN was refused" in done.stderr
        done = run("pacs", "echo", "cloud", env={"DICOMANNOTEMBED_NODES": str(config)})
        assert done.returncode == 3, done.stderr
        assert "node cloud: bearer authentication needs a token in the environment variable CLOUD_TOKEN" in done.stderr
    for text in printed:
        assert token not in text and wrong not in text
