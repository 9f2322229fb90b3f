"""Node config files and node strings with wrong values: one InputError naming the config file or
the node (found by the fuzzer: ValueError/TypeError from float(), urlparse; errors naming no file)."""
from __future__ import annotations

import json

import pytest

from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.services.pacs.nodes import DimseNode, WebNode, parse_node


def _config(tmp_path, entry) -> str:
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"nodes": {"n": entry}}))
    return str(path)


@pytest.mark.parametrize("entry, problem", [
    ({"dimse": "A@127.0.0.1:104", "timeout": "x"}, "timeout must be a positive number"),
    ({"dimse": "A@127.0.0.1:104", "timeout": None}, None),  # null: the default
    ({"dimse": "A@127.0.0.1:104", "timeout": [1]}, "timeout must be a positive number"),
    ({"dimse": "A@127.0.0.1:104", "timeout": -1}, "timeout must be a positive number"),
    ({"dimse": "A@127.0.0.1:0"}, "port 0 out of range"),
    ({"dimse": "A@127.0.0.1:104", "calling_aet": 5}, "calling_aet must be texts"),
    ({"dimse": "A@127.0.0.1:104", "tls": "yes"}, "tls must be true or false"),
    ({"url": "http://[::1/dicom-web"}, "not a URL"),
    ({"url": "https://"}, "a DICOMweb node is an http(s) URL"),
    ({"url": "https://x.org/dicom-web", "auth": [1, 2]}, "auth must be texts"),
    ({"url": "https://x.org/dicom-web", "auth": "digest"}, "auth must be none, basic or bearer"),
    ({"url": "https://x.org/dicom-web", "timeout": "nan"}, "timeout must be a positive number"),
])
def test_bad_config_entries_name_the_config_file(tmp_path, entry, problem):
    config = _config(tmp_path, entry)
    if problem is None:
        node = parse_node("n", config=config)
        assert isinstance(node, (DimseNode, WebNode)) and node.timeout == 30.0
        return
    with pytest.raises(InputError) as caught:
        parse_node("n", config=config)
    assert caught.value.path == config and problem in caught.value.problem, str(caught.value)


def test_node_strings_with_bad_values_name_the_node():
    with pytest.raises(InputError, match=r"node 'http://\[::1/x': not a URL"):
        parse_node("http://[::1/x")
    with pytest.raises(InputError, match=r"node 'A@h:104': timeout must be a positive number"):
        parse_node("A@h:104", timeout=float("inf"))
    assert parse_node("A@h:104", timeout=5).timeout == 5.0
