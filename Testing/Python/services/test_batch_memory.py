"""A case that goes over its worker's memory limit, on a real local cluster (worker processes under
their nannies, 127.0.0.1): the nanny restarts the worker, the case is tried again up to the bound,
then failed in the ledger as out of memory while the other cases are done. No mock of Dask."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from batch_collection import collection, ledger_lines, sha256  # noqa: F401 (fixture)

GOOD = ("case-00", "case-01", "case-02", "case-03")


def huge_segmentation(like: Path, path: Path, size: int = 1024) -> int:
    """A valid .seg.nrrd of two layers of ``size``^3 voxels (2 GiB at 1024), all zero, gzip-encoded
    (2 MB on disk), with the header and segments of ``like``; returns the voxel bytes."""
    from zlib_ng import zlib_ng as zlib

    raw = like.read_bytes()
    header = raw[:raw.index(b"\n\n") + 2].decode("utf-8")
    lines = [f"sizes: 2 {size} {size} {size}" if line.startswith("sizes:") else line for line in header.split("\n")]
    compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = bytes(64 << 20)
    total = 2 * size ** 3
    with open(path, "wb") as f:
        f.write("\n".join(lines).encode("utf-8"))
        for _ in range(total // len(chunk)):
            f.write(compressor.compress(chunk))
        f.write(compressor.compress(bytes(total % len(chunk))) + compressor.flush())
    return total


def test_a_case_over_the_worker_memory_limit_is_retried_then_failed_as_out_of_memory(collection, tmp_path):  # noqa: F811
    manifest_csv, cases = collection
    huge = tmp_path / "huge.seg.nrrd"
    assert huge_segmentation(cases["case-00"]["segmentation"], huge) == 2 * 2 ** 30
    assert huge.stat().st_size < 8 * 2 ** 20
    rows = [{"id": "huge", "series": str(cases["case-00"]["series"]), "annotations": [str(huge)],
             "outputs": ["overlay", "seg"]}]
    rows += [{"id": c, "series": str(cases[c]["series"]),
              "annotations": [str(cases[c]["segmentation"]), str(cases[c]["markups"])], "outputs": ["overlay", "seg"]}
             for c in GOOD]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    batch = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out", str(out),
                            "--workers", "2", "--memory-limit", "1GiB", "--allowed-failures", "1", "--no-dashboard"],
                           capture_output=True, text=True, timeout=600)
    assert batch.returncode == 3, batch.stderr
    lines = ledger_lines(out)
    records = {r["case"]: r for r in lines}
    assert len(lines) == 5 and set(records) == {"huge", *GOOD}
    for case in GOOD:
        assert records[case]["status"] == "done", records[case]["error"]
        files = json.loads((out / case / "case.json").read_text())["files"]
        assert files and all(sha256(out / case / name) == digest for name, digest in files.items())
    error = records["huge"]["error"]
    assert records["huge"]["status"] == "failed" and records["huge"]["outputs"] == {}
    assert error.startswith("case huge: out of memory: its worker went over its memory limit of 1.0 GiB"), error
    assert "restarted by its nanny, on 2 of its 2 tries (--allowed-failures 1)" in error, error
    assert f"huge  {error}" in batch.stdout  # the summary's table of failed cases
    assert not (out / "huge").exists()
    assert not [p for p in out.iterdir() if p.name.startswith((".partial-", ".replaced-"))]


@pytest.mark.parametrize("value, message", [("4", "is under 512 MiB"), ("lots", "is not a size"),
                                            ("2 parsecs", "is not a size")])
def test_a_bad_memory_limit_is_refused_before_any_work(tmp_path, value, message):
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.errors import InputError

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,series,annotations,outputs\n")
    out = tmp_path / "out"
    command = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out", str(out),
                              "--memory-limit", value], capture_output=True, text=True, timeout=120)
    assert command.returncode == 2 and f"--memory-limit: memory limit '{value}' {message}" in command.stderr
    with pytest.raises(InputError, match=message):
        api.run_batch(manifest, out, memory_limit=value)
    assert not out.exists()
