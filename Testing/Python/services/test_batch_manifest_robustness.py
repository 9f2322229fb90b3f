"""Batch manifests the fuzzer broke: one InputError naming the manifest and line."""
from __future__ import annotations

import pytest

from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.services.batch.manifest import read_manifest
from DicomAnnotEmbedLib.services.batch.steps import INPUT_KINDS, OUTPUTS, run_case


def test_a_path_with_a_nul_character_is_refused(tmp_path):
    """A flipped byte made a NUL in a path: the ledger's fingerprint raised ValueError from os.stat."""
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"id,series,annotations,outputs\nc1,series,a\x00b.seg.nrrd,seg\n")
    with pytest.raises(InputError, match=r"m\.csv: line 2: case c1: a path holds a NUL character"):
        read_manifest(manifest, tuple(OUTPUTS), tuple(INPUT_KINDS))
    manifest.write_bytes(b'{"id": "c1", "series": "s\\u0000", "annotations": [], "outputs": ["seg"]}\n')
    with pytest.raises(InputError, match="NUL"):
        read_manifest(manifest.rename(tmp_path / "m.jsonl"), tuple(OUTPUTS), tuple(INPUT_KINDS))


def test_a_case_path_too_long_is_the_case_error_naming_it(sample_case, tmp_path):
    """Found by the long fuzz run: a manifest cell of 300 characters made run_case record an
    "internal error: OSError" (File name too long); it is the case's bad input, naming the path."""
    annotation = str(tmp_path / ("x" * 300))
    record = run_case({"id": "c1", "series": str(sample_case.series_dir), "annotations": [["", annotation]],
                       "outputs": ["seg"], "options": {}}, str(tmp_path), "fp")
    assert record["status"] == "failed"
    assert record["error"].startswith(annotation) and "File name too long" in record["error"], record["error"]
    assert not record["error"].startswith("internal error")
