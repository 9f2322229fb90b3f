"""Nodes named once: AET@HOST:PORT, DICOMweb URLs (TLS by default, credentials from the
environment), named nodes from a config file; basic authentication against a real Orthanc;
the lazy api re-export and the CLI's exit codes for bad nodes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orthanc_server import orthanc

from DicomAnnotEmbedLib.core.errors import InputError, NetworkError
from DicomAnnotEmbedLib.services import pacs
from DicomAnnotEmbedLib.services.pacs import dicomweb
from DicomAnnotEmbedLib.services.pacs.nodes import DimseNode, WebNode, parse_node


def test_dimse_and_web_nodes():
    node = parse_node("ORTHANC@pacs.example.org:104", calling_aet="ME", timeout=5)
    assert node == DimseNode("ORTHANC", "pacs.example.org", 104, "ME", 5.0)
    assert str(node) == "ORTHANC@pacs.example.org:104"
    assert parse_node("A@[::1]:11112").host == "::1"
    web = parse_node("dicom.example.org/dicom-web")
    assert isinstance(web, WebNode) and web.url == "https://dicom.example.org/dicom-web"  # TLS by default
    assert parse_node("http://127.0.0.1:8042/dicom-web/").url == "http://127.0.0.1:8042/dicom-web"
    for bad in ("ORTHANC@host", "nothing", "A@h:99999", "ftp://x/y", "TOOLONGAETITLE1234@h:104"):
        with pytest.raises(InputError):
            parse_node(bad)


def test_named_nodes_from_a_config_file(tmp_path, monkeypatch):
    config = tmp_path / "nodes.json"
    config.write_text(json.dumps({"nodes": {
        "pacs": {"dimse": "ORTHANC@10.0.0.5:104", "calling_aet": "READER1", "timeout": 12},
        "cloud": {"url": "https://dicom.example.org/dicom-web", "auth": "bearer", "token_env": "CLOUD_TOKEN"},
        "broken": {"port": 3}}}))
    monkeypatch.setenv("DICOMANNOTEMBED_NODES", str(config))
    assert parse_node("pacs") == DimseNode("ORTHANC", "10.0.0.5", 104, "READER1", 12.0, "pacs")
    assert parse_node("pacs", calling_aet="OTHER").calling_aet == "OTHER"
    cloud = parse_node("cloud")
    assert (cloud.url, cloud.auth, cloud.token_env, str(cloud)) == \
        ("https://dicom.example.org/dicom-web", "bearer", "CLOUD_TOKEN", "cloud")
    with pytest.raises(InputError, match="needs \"dimse\""):
        parse_node("broken")
    with pytest.raises(InputError, match="CLOUD_TOKEN"):  # no token in the environment
        dicomweb._client(cloud)
    monkeypatch.setenv("CLOUD_TOKEN", "t0ken")
    assert dicomweb._client(cloud)._session.headers["Authorization"] == "Bearer t0ken"
    config.write_text("{not json")
    with pytest.raises(InputError, match="nodes.json"):
        parse_node("pacs")


def test_basic_authentication_from_the_environment(tmp_path, monkeypatch):
    extra = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "s3cret"}}
    with orthanc(tmp_path / "orthanc", extra=extra) as server:
        for name in ("DICOMANNOTEMBED_DICOMWEB_USER", "DICOMANNOTEMBED_DICOMWEB_PASSWORD",
                     "DICOMANNOTEMBED_DICOMWEB_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(NetworkError, match="HTTP 401.*credentials"):
            pacs.echo(server.web_node)
        monkeypatch.setenv("DICOMANNOTEMBED_DICOMWEB_USER", "alice")
        monkeypatch.setenv("DICOMANNOTEMBED_DICOMWEB_PASSWORD", "wrong")
        with pytest.raises(NetworkError, match="HTTP 401"):
            pacs.echo(server.web_node)
        monkeypatch.setenv("DICOMANNOTEMBED_DICOMWEB_PASSWORD", "s3cret")
        assert pacs.echo(server.web_node) > 0
        assert pacs.find(server.web_node) == []
        # The command line exits 5 (network) on a refused login.
        monkeypatch.setenv("DICOMANNOTEMBED_DICOMWEB_PASSWORD", "wrong")
        done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "pacs", "echo", server.web_node],
                              capture_output=True, text=True)
        assert done.returncode == 5 and "HTTP 401" in done.stderr and "Traceback" not in done.stderr


def test_api_reexports_lazily():
    code = ("import sys; import DicomAnnotEmbedLib.api as api; "
            "assert not any(m.startswith('DicomAnnotEmbedLib.services.pacs') for m in sys.modules); "
            "from DicomAnnotEmbedLib.services import pacs; "
            "assert (api.pacs_echo, api.pacs_find, api.pacs_get, api.pacs_send) == "
            "(pacs.echo, pacs.find, pacs.get, pacs.send)")
    subprocess.run([sys.executable, "-c", code], check=True)



def test_tls_is_verified_by_default(tmp_path, monkeypatch):
    """Certificates are checked unless a CA bundle is named (then that one). (Orthanc 1.10 from
    Debian crashed with SIGSEGV on its first HTTPS request here, so this is not tested against it.)"""
    web = parse_node("dicom.example.org/dicom-web")
    assert dicomweb._client(web)._session.verify is True
    config = tmp_path / "nodes.json"
    config.write_text(json.dumps({"nodes": {"secure": {"url": "https://h/dicom-web", "ca_bundle": "/etc/ca.pem"}}}))
    monkeypatch.setenv("DICOMANNOTEMBED_NODES", str(config))
    assert dicomweb._client(parse_node("secure"))._session.verify == "/etc/ca.pem"


def test_tls_options_and_series_references(tmp_path, monkeypatch):
    from DicomAnnotEmbedLib.services.pacs.remote import parse_series_ref

    node = parse_node("ORTHANC@pacs.example.org:2762", tls_ca="/ca.pem", tls_cert="/me.pem", tls_key="/me.key")
    assert (node.tls, node.ca_file, node.cert_file, node.key_file) == (True, "/ca.pem", "/me.pem", "/me.key")
    assert not parse_node("ORTHANC@pacs.example.org:104").tls
    web = parse_node("https://dicom.example.org/dicom-web", tls_ca="/ca.pem", tls_cert="/me.pem")
    assert (web.ca_bundle, web.cert_file) == ("/ca.pem", "/me.pem")
    with pytest.raises(InputError, match="TLS files"):
        node.ssl_context()
    config = tmp_path / "nodes.json"
    config.write_text(json.dumps({"nodes": {"secure": {"dimse": "A@h:1", "tls": True}, "web": {"url": "https://h/dw"}}}))
    monkeypatch.setenv("DICOMANNOTEMBED_NODES", str(config))
    assert parse_node("secure").tls and parse_node("secure").ssl_context() is not None
    monkeypatch.setenv("DICOMANNOTEMBED_CALLING_AET", "FROMENV")
    assert parse_node("A@h:1").calling_aet == "FROMENV"

    ref = parse_series_ref("ORTHANC@h:104/1.2.3/1.2.3.4")
    assert (str(ref.node), ref.study_uid, ref.series_uid) == ("ORTHANC@h:104", "1.2.3", "1.2.3.4")
    ref = parse_series_ref("secure/1.2.3")
    assert (str(ref.node), ref.study_uid, ref.series_uid) == ("secure", "1.2.3", None)
    ref = parse_series_ref("https://h/dicom-web/studies/1.2/series/1.2.5")
    assert (ref.node.url, ref.study_uid, ref.series_uid) == ("https://h/dicom-web", "1.2", "1.2.5")
    for local in ("series", "data/series", "./ORTHANC@h:104/1.2.3/1.2.3.4", "/abs/1.2/3.4", "nonode/1.2/3.4",
                  "ORTHANC@h:104/notauid"):
        assert parse_series_ref(local) is None, local
    with pytest.raises(InputError, match="--series .*studies/STUDY_UID"):
        parse_series_ref("https://h/dicom-web/series/1.2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secure" / "1.2.3").mkdir(parents=True)
    with pytest.raises(InputError, match="ambiguous.*./secure/1.2.3"):
        parse_series_ref("secure/1.2.3")
