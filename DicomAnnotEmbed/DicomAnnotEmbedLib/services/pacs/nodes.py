"""Archive nodes, named once: a DIMSE node ``AET@HOST:PORT`` or a DICOMweb base URL.

A node may also be a name from a small JSON config file (``--nodes FILE``, else the environment
variable ``DICOMANNOTEMBED_NODES``, else ``~/.config/dicomannotembed/nodes.json``)::

    {"nodes": {
        "pacs":   {"dimse": "ORTHANC@pacs.example.org:104", "calling_aet": "DAE", "timeout": 30},
        "secure": {"dimse": "ORTHANC@pacs.example.org:2762", "tls": true, "ca_file": "/etc/pacs/ca.pem",
                   "cert_file": "/etc/pacs/me.pem", "key_file": "/etc/pacs/me.key"},
        "cloud":  {"url": "https://dicom.example.org/dicom-web", "auth": "bearer",
                   "token_env": "CLOUD_TOKEN"},
        "orthanc-web": {"url": "https://orthanc.example.org/dicom-web", "auth": "basic",
                        "user_env": "ORTHANC_USER", "password_env": "ORTHANC_PASSWORD"}}}

DICOMweb credentials are never stored in the file: it names environment variables. Without a
config entry, a bearer token is taken from ``DICOMANNOTEMBED_DICOMWEB_TOKEN`` or a user name and
password from ``DICOMANNOTEMBED_DICOMWEB_USER`` / ``DICOMANNOTEMBED_DICOMWEB_PASSWORD``.
TLS is on by default: a URL without a scheme gets ``https://``, certificates are verified (a CA
bundle can be named with ``ca_bundle`` or ``REQUESTS_CA_BUNDLE``); plain ``http://`` is accepted
for loopback hosts and with a warning otherwise.

DICOM TLS (DIMSE): ``"tls": true`` in the config entry, or ``tls_ca`` / ``tls_cert`` / ``tls_key``
given to :func:`parse_node` (``--tls-ca``, ``--tls-cert``, ``--tls-key`` on the command line). The
archive's certificate is verified against ``ca_file`` (else the system's CA store) and its host
name; ``cert_file`` and ``key_file`` are our client certificate, which most archives require.
Our DIMSE AE title defaults to ``$DICOMANNOTEMBED_CALLING_AET``, else ``DICOMANNOTEMBED``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlparse

from ...core.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_CALLING_AET = "DICOMANNOTEMBED"
CALLING_AET_ENV = "DICOMANNOTEMBED_CALLING_AET"
CONFIG_ENV = "DICOMANNOTEMBED_NODES"
TOKEN_ENV = "DICOMANNOTEMBED_DICOMWEB_TOKEN"
USER_ENV = "DICOMANNOTEMBED_DICOMWEB_USER"
PASSWORD_ENV = "DICOMANNOTEMBED_DICOMWEB_PASSWORD"
_DIMSE = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class DimseNode:
    """A DICOM application entity reached over DIMSE (C-ECHO, C-FIND, C-GET, C-STORE)."""
    aet: str
    host: str
    port: int
    calling_aet: str = DEFAULT_CALLING_AET
    timeout: float = 30.0
    name: str = ""
    tls: bool = False
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None

    def __str__(self) -> str:
        return self.name or f"{self.aet}@{self.host}:{self.port}"

    def ssl_context(self):
        """The client TLS context (certificate and host name verified), or None without TLS.

        Raises:
            InputError: a certificate or key file is missing or unreadable.
        """
        if not self.tls:
            return None
        import ssl

        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"node {self}: TLS files: {exc}") from None
        return context


@dataclass(frozen=True)
class WebNode:
    """A DICOMweb service (QIDO-RS, WADO-RS, STOW-RS) at a base URL."""
    url: str
    auth: str = "none"  # none | basic | bearer
    token_env: str = TOKEN_ENV
    user_env: str = USER_ENV
    password_env: str = PASSWORD_ENV
    ca_bundle: Optional[str] = None
    timeout: float = 60.0
    name: str = field(default="", compare=False)
    cert_file: Optional[str] = None  # client certificate (with key_file) for mutual TLS
    key_file: Optional[str] = None

    def __str__(self) -> str:
        return self.name or self.url


Node = Union[DimseNode, WebNode]


def config_path(explicit: Optional[os.PathLike | str] = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return Path.home() / ".config" / "dicomannotembed" / "nodes.json"


def load_config(path: Optional[os.PathLike | str] = None) -> dict:
    """The named nodes of the config file ({} when there is none and none was asked for)."""
    config = config_path(path)
    if not config.exists():
        if path:
            raise InputError("node config file not found", config)
        return {}
    try:
        nodes = json.loads(config.read_text()).get("nodes", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"not a node config file ({{\"nodes\": {{NAME: ...}}}}): {exc}", config) from None
    if not isinstance(nodes, dict):
        raise InputError("\"nodes\" must be an object of named nodes", config)
    return nodes


def parse_node(text: Union[str, Node], *, calling_aet: Optional[str] = None, timeout: Optional[float] = None,
               config: Optional[os.PathLike | str] = None, tls_ca: Optional[str] = None,
               tls_cert: Optional[str] = None, tls_key: Optional[str] = None) -> Node:
    """A node from ``AET@HOST:PORT``, a DICOMweb URL, or a name in the node config file.

    ``calling_aet`` (our own AE title, DIMSE), ``timeout`` (seconds) and the TLS files
    (``tls_ca``: CA certificates to verify the archive with; ``tls_cert``/``tls_key``: our client
    certificate; any of them turns DICOM TLS on for a DIMSE node) override the config's.

    Raises:
        InputError: the text is none of these (the message says which forms are accepted).
    """
    tls = {k: v for k, v in (("ca_file", tls_ca), ("cert_file", tls_cert), ("key_file", tls_key)) if v}
    if isinstance(text, (DimseNode, WebNode)):
        return _with_tls(text, tls) if tls else text
    text = str(text).strip()
    entry = None
    if not _DIMSE.match(text) and "/" not in text:
        entry = load_config(config).get(text)
    if entry is not None:
        try:
            node = _from_config(text, entry, calling_aet, timeout, config_path(config))
        except InputError as exc:  # about the entry: name the config file it is in
            if exc.path is None:
                exc.set_path(config_path(config))
            raise
    else:
        node = _parse_address(text, calling_aet, timeout, config)
    return _with_tls(node, tls) if tls else node


def _parse_address(text: str, calling_aet, timeout, config) -> Node:
    match = _DIMSE.match(text)
    if match:
        port = int(match["port"])
        if not 0 < port < 65536:
            raise InputError(f"node {text!r}: port {port} out of range")
        return DimseNode(match["aet"], match["host"].strip("[]"), port, calling_aet or default_calling_aet(),
                         _seconds(timeout or 30.0, f"node {text!r}"))
    if "://" in text or "/" in text:
        return _web_node(text, {}, timeout)
    raise InputError(f"node {text!r} is neither AET@HOST:PORT, a DICOMweb URL, nor a name in "
                     f"{config_path(config)}")


def default_calling_aet() -> str:
    return os.environ.get(CALLING_AET_ENV) or DEFAULT_CALLING_AET


def _with_tls(node: Node, tls: dict) -> Node:
    if isinstance(node, DimseNode):
        return replace(node, tls=True, **tls)
    web = {"cert_file": tls.get("cert_file", node.cert_file), "key_file": tls.get("key_file", node.key_file)}
    return replace(node, ca_bundle=tls.get("ca_file", node.ca_bundle), **web)


#: Config entry fields that are texts.
_TEXT_FIELDS = ("dimse", "url", "calling_aet", "auth", "token_env", "user_env", "password_env", "ca_bundle",
                "ca_file", "cert_file", "key_file")


def _seconds(value, what: str) -> float:
    """A timeout: a positive finite number of seconds."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not 0 < seconds < float("inf"):
        raise InputError(f"{what}: timeout must be a positive number of seconds, not {str(value)[:40]!r}")
    return seconds


def _from_config(name: str, entry: dict, calling_aet, timeout, path: Path) -> Node:
    if not isinstance(entry, dict):
        raise InputError(f"node {name!r} must be an object", path)
    wrong = [key for key in _TEXT_FIELDS if entry.get(key) is not None and not isinstance(entry[key], str)]
    if wrong or not isinstance(entry.get("tls", False), bool):
        raise InputError(f"node {name!r}: {', '.join(wrong) or 'tls'} must be "
                         f"{'texts' if wrong else 'true or false'}", path)
    timeout = _seconds(timeout or entry.get("timeout") or (30.0 if "dimse" in entry else 60.0), f"node {name!r}")
    if "dimse" in entry:
        match = _DIMSE.match(str(entry["dimse"]))
        if not match:
            raise InputError(f"node {name!r}: \"dimse\" must be AET@HOST:PORT", path)
        if not 0 < int(match["port"]) < 65536:
            raise InputError(f"node {name!r}: port {match['port']} out of range", path)
        tls = {key: str(entry[key]) for key in ("ca_file", "cert_file", "key_file") if entry.get(key)}
        return DimseNode(match["aet"], match["host"].strip("[]"), int(match["port"]),
                         calling_aet or entry.get("calling_aet") or default_calling_aet(),
                         timeout, name, bool(entry.get("tls", bool(tls))),
                         **tls)
    if "url" in entry:
        node = _web_node(str(entry["url"]), entry, timeout)
        return replace(node, name=name)
    raise InputError(f"node {name!r} needs \"dimse\": \"AET@HOST:PORT\" or \"url\"", path)


def _web_node(url: str, entry: dict, timeout) -> WebNode:
    if "://" not in url:
        url = "https://" + url  # TLS by default
    try:
        parsed = urlparse(url)
        hostname = parsed.hostname
    except ValueError as exc:  # a broken IPv6 address, a bad port
        raise InputError(f"node {url!r}: not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not hostname:
        raise InputError(f"node {url!r}: a DICOMweb node is an http(s) URL")
    if parsed.scheme == "http" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("%s: plain http, not TLS: the images and any credentials travel unencrypted", url)
    auth = entry.get("auth")
    if auth is None:
        auth = "bearer" if os.environ.get(TOKEN_ENV) else ("basic" if os.environ.get(USER_ENV) else "none")
    if auth not in ("none", "basic", "bearer"):
        raise InputError(f"node {url!r}: auth must be none, basic or bearer, not {auth!r}")
    return WebNode(url.rstrip("/"), auth, entry.get("token_env", TOKEN_ENV), entry.get("user_env", USER_ENV),
                   entry.get("password_env", PASSWORD_ENV), entry.get("ca_bundle") or entry.get("ca_file"),
                   _seconds(timeout or entry.get("timeout") or 60.0, f"node {url!r}"), cert_file=entry.get("cert_file"),
                   key_file=entry.get("key_file"))
