"""Archive nodes, named once: a DIMSE node ``AET@HOST:PORT`` or a DICOMweb base URL.

A node may also be a name from a small JSON config file (``--nodes FILE``, else the environment
variable ``DICOMANNOTEMBED_NODES``, else ``~/.config/dicomannotembed/nodes.json``)::

    {"nodes": {
        "pacs":   {"dimse": "ORTHANC@pacs.example.org:104", "calling_aet": "DAE", "timeout": 30},
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
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlparse

from ...core.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_CALLING_AET = "DICOMANNOTEMBED"
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

    def __str__(self) -> str:
        return self.name or f"{self.aet}@{self.host}:{self.port}"


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
               config: Optional[os.PathLike | str] = None) -> Node:
    """A node from ``AET@HOST:PORT``, a DICOMweb URL, or a name in the node config file.

    ``calling_aet`` (our own AE title, DIMSE) and ``timeout`` (seconds) override the config's.

    Raises:
        InputError: the text is none of these (the message says which forms are accepted).
    """
    if isinstance(text, (DimseNode, WebNode)):
        return text
    text = str(text).strip()
    entry = None
    if not _DIMSE.match(text) and "/" not in text:
        entry = load_config(config).get(text)
    if entry is not None:
        return _from_config(text, entry, calling_aet, timeout, config_path(config))
    match = _DIMSE.match(text)
    if match:
        port = int(match["port"])
        if not 0 < port < 65536:
            raise InputError(f"node {text!r}: port {port} out of range")
        return DimseNode(match["aet"], match["host"].strip("[]"), port,
                         calling_aet or DEFAULT_CALLING_AET, timeout or 30.0)
    if "://" in text or "/" in text:
        return _web_node(text, {}, timeout)
    raise InputError(f"node {text!r} is neither AET@HOST:PORT, a DICOMweb URL, nor a name in "
                     f"{config_path(config)}")


def _from_config(name: str, entry: dict, calling_aet, timeout, path: Path) -> Node:
    if not isinstance(entry, dict):
        raise InputError(f"node {name!r} must be an object", path)
    if "dimse" in entry:
        match = _DIMSE.match(str(entry["dimse"]))
        if not match:
            raise InputError(f"node {name!r}: \"dimse\" must be AET@HOST:PORT", path)
        return DimseNode(match["aet"], match["host"].strip("[]"), int(match["port"]),
                         calling_aet or entry.get("calling_aet", DEFAULT_CALLING_AET),
                         float(timeout or entry.get("timeout", 30.0)), name)
    if "url" in entry:
        node = _web_node(str(entry["url"]), entry, timeout)
        return WebNode(**{**node.__dict__, "name": name})
    raise InputError(f"node {name!r} needs \"dimse\": \"AET@HOST:PORT\" or \"url\"", path)


def _web_node(url: str, entry: dict, timeout) -> WebNode:
    if "://" not in url:
        url = "https://" + url  # TLS by default
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"node {url!r}: a DICOMweb node is an http(s) URL")
    if parsed.scheme == "http" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("%s: plain http, not TLS: the images and any credentials travel unencrypted", url)
    auth = entry.get("auth")
    if auth is None:
        auth = "bearer" if os.environ.get(TOKEN_ENV) else ("basic" if os.environ.get(USER_ENV) else "none")
    if auth not in ("none", "basic", "bearer"):
        raise InputError(f"node {url!r}: auth must be none, basic or bearer, not {auth!r}")
    return WebNode(url.rstrip("/"), auth, entry.get("token_env", TOKEN_ENV), entry.get("user_env", USER_ENV),
                   entry.get("password_env", PASSWORD_ENV), entry.get("ca_bundle"),
                   float(timeout or entry.get("timeout", 60.0)))
