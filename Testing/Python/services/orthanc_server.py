"""A throw-away Orthanc (with its DICOMweb plugin) for the PACS tests and the benchmark.

Started on free loopback ports with a temporary JSON configuration and storage folder, stopped
by its PID. Never the Debian service's defaults (4242/8042). Not a conftest: the test files
import :func:`orthanc` and use it as a context manager (or through their own fixtures).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

from conftest import stop_process

ORTHANC_AET = "TESTPACS"
OUR_AET = "DAETEST"
#: The calling AE titles the tests and the benchmark use (ours, DCMTK's as a modality, the default).
CALLING_AETS = (OUR_AET, *(f"{OUR_AET}{n}" for n in range(4)), "MODALITY", "DAEBENCH", "DICOMANNOTEMBED")


def find_orthanc() -> Optional[str]:
    return shutil.which("Orthanc") or (Path("/usr/sbin/Orthanc").exists() and "/usr/sbin/Orthanc") or None


def dicomweb_plugin() -> Optional[str]:
    """The DICOMweb plugin's shared library, as the Debian package installs it (dpkg -L orthanc-dicomweb)."""
    try:
        listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True).stdout
    except OSError:
        listing = ""
    for line in listing.splitlines():
        if "DicomWeb" in line and line.endswith(".so") and Path(line).exists():
            return line
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its ports, AE title, folder and process."""
    dicom_port: int
    http_port: int
    aet: str
    folder: Path
    process: subprocess.Popen
    credentials: Optional[tuple] = None  # (user, password) for the REST API when authentication is on

    @property
    def dimse_node(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def web_node(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get_json(self, path: str):
        request = urllib.request.Request(self.rest + path)
        if self.credentials:
            import base64

            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def instance_count(self) -> int:
        """Instances Orthanc holds (its REST /statistics)."""
        return int(self.get_json("/statistics")["CountInstances"])

    def sop_instance_uids(self) -> list:
        uids = []
        for orthanc_id in self.get_json("/instances"):
            tags = self.get_json(f"/instances/{orthanc_id}/simplified-tags")
            uids.append(tags["SOPInstanceUID"])
        return uids

    def kill(self) -> None:
        """Kill the server at once (SIGKILL by PID), as a crash would."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        stop_process(self.process)


def _config(folder: Path, dicom_port: int, http_port: int, *, lua: Optional[str],
            accepted_transfer_syntaxes, extra: Dict) -> dict:
    plugin = dicomweb_plugin()
    config = {
        "Name": "DicomAnnotEmbed test PACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": ORTHANC_AET,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomCheckCalledAet": True,
        # Orthanc 1.10 cannot bind its DICOM port to loopback only: it answers only the calling AE
        # titles below, and only from 127.0.0.1 (its HTTP server refuses remote clients).
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {aet.lower(): [aet, "127.0.0.1", 104] for aet in CALLING_AETS},
        "StorageCompression": False,
        "SyncStorageArea": False,  # no fsync per file: the tests time our side, not the disk
        "OverwriteInstances": False,
        "ConcurrentJobs": 2,
        "DicomThreadsCount": 8,
        "MaximumPduLength": 131072,
        "StableAge": 1,
        "SaveJobs": False,
        "Plugins": [plugin] if plugin else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1",
                     "Ssl": False},
        "LuaScripts": [],
    }
    if accepted_transfer_syntaxes is not None:
        config["AcceptedTransferSyntaxes"] = list(accepted_transfer_syntaxes)
    if lua:
        script = folder / "filter.lua"
        script.write_text(lua)
        config["LuaScripts"] = [str(script)]
    config.update(extra)
    return config


@contextlib.contextmanager
def orthanc(folder: Path, *, lua: Optional[str] = None, accepted_transfer_syntaxes=None,
            extra: Optional[Dict] = None, require_dicomweb: bool = True) -> Iterator[Orthanc]:
    """Start Orthanc in ``folder`` (config, storage, log) and stop it by PID on exit.

    Skips (pytest) when Orthanc or its DICOMweb plugin is not installed, fails in CI.
    """
    from conftest import require_tool
    import pytest

    binary = find_orthanc() or require_tool("Orthanc")
    if require_dicomweb and dicomweb_plugin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the orthanc-dicomweb package is not installed; .ci/run installs it")
        pytest.skip("orthanc-dicomweb not installed")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    while http_port == dicom_port:
        http_port = free_port()
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(_config(folder, dicom_port, http_port, lua=lua,
                                              accepted_transfer_syntaxes=accepted_transfer_syntaxes,
                                              extra=extra or {}), indent=1))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=folder)
    users = (extra or {}).get("RegisteredUsers") or {}
    server = Orthanc(dicom_port, http_port, ORTHANC_AET, folder, process,
                     next(iter(users.items())) if users else None)
    try:
        wait_until_up(server)
        yield server
    finally:
        server.stop()
        log.close()


def wait_until_up(server: Orthanc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {server.process.returncode}; see {server.folder / 'orthanc.log'}")
        try:
            server.get_json("/system")
            with socket.create_connection(("127.0.0.1", server.dicom_port), timeout=1):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not start in {timeout} s; see {server.folder / 'orthanc.log'}")


def restart(server: Orthanc) -> Orthanc:
    """Start Orthanc again on the same ports, configuration and storage (after :meth:`Orthanc.kill`)."""
    server.stop()
    log = open(server.folder / "orthanc.log", "ab")
    process = subprocess.Popen([find_orthanc(), str(server.folder / "orthanc.json")], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=server.folder)
    log.close()
    server.process = process
    wait_until_up(server)
    return server


def make_certificates(folder: Path) -> Dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate signed
    by it, and an unrelated second CA (the wrong one), made with ``openssl`` in ``folder``.

    Returns the PEM paths: ca, server_crt, server_key, server_pem (key then certificate),
    client_crt, client_key, other_ca.
    """
    from conftest import require_tool

    openssl = shutil.which("openssl") or require_tool("openssl")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, cwd=folder)

    for ca in ("ca", "other_ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", f"{ca}.key", "-out",
            f"{ca}.crt", "-subj", f"/CN=DicomAnnotEmbed test {ca}")
    for name in ("server", "client"):
        (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
            f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", f"{name}.crt", "-extfile", f"{name}.ext")
    (folder / "server.pem").write_bytes((folder / "server.key").read_bytes() + (folder / "server.crt").read_bytes())
    return {"ca": folder / "ca.crt", "server_crt": folder / "server.crt", "server_key": folder / "server.key",
            "server_pem": folder / "server.pem", "client_crt": folder / "client.crt",
            "client_key": folder / "client.key", "other_ca": folder / "other_ca.crt"}


def dicom_tls(certificates: Dict[str, Path]) -> Dict:
    """Orthanc configuration for DICOM TLS on its DICOM port (Orthanc >= 1.9): its certificate, and
    the CA whose client certificates it accepts (a client certificate is required)."""
    return {"DicomTlsEnabled": True, "DicomTlsCertificate": str(certificates["server_crt"]),
            "DicomTlsPrivateKey": str(certificates["server_key"]),
            "DicomTlsTrustedCertificates": str(certificates["ca"])}


@contextlib.contextmanager
def nginx_https(folder: Path, upstream_port: int, certificates: Dict[str, Path], *,
                client_certificates: bool = False, bearer_token: Optional[str] = None) -> Iterator[int]:
    """A real TLS-terminating nginx on a free loopback port in front of Orthanc's HTTP port (Debian's
    Orthanc 1.10 crashes, a NULL call in a civetweb worker, on its first HTTPS request with
    ``SslEnabled``); yields the HTTPS port, stopped by PID on exit. With ``client_certificates`` it
    requires a client certificate signed by the test CA (mutual TLS); with ``bearer_token`` it
    answers 401 to a request without ``Authorization: Bearer <bearer_token>`` (Orthanc has no
    bearer authentication) and does not pass the header on."""
    from conftest import require_tool

    binary = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx") or require_tool("nginx")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    bearer = ("" if bearer_token is None else f'if ($http_authorization != "Bearer {bearer_token}") {{ return 401; }} '
              'proxy_set_header Authorization "";')
    (folder / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy; fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {certificates["server_crt"]};
    ssl_certificate_key {certificates["server_key"]};
    {f'ssl_verify_client on; ssl_client_certificate {certificates["ca"]};' if client_certificates else ''}
    location / {{ {bearer} proxy_pass http://127.0.0.1:{upstream_port}; proxy_request_buffering off;
                 proxy_set_header Host $host:$server_port; proxy_set_header X-Forwarded-Proto https; }}
  }}
}}
""")
    log = open(folder / "nginx.log", "wb")
    process = subprocess.Popen([binary, "-c", str(folder / "nginx.conf"), "-p", str(folder)], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}; see {folder / 'error.log'}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        stop_process(process)
        log.close()
