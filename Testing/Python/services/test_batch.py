"""The batch command on a local Dask cluster: a 20-case collection with 2 bad cases.

Checks: every good case's outputs equal what the one-case API writes (overlay pixels and planes
read by pydicom, SEG frames and segments by highdicom, SR content by highdicom, ML label maps by
SimpleITK), dciodvfy and dsrdump find nothing on the batch's files that they do not find on the
one-case files, the ledger lists every case (outputs' hashes equal the files, the bad cases with
their messages), inputs are untouched, and a rerun skips what is finished.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batch_collection import (BAD, assert_same_case, collection, dask_cluster, ledger_lines,  # noqa: F401 (fixtures)
                              run_single_case, sha256)
from conftest import require_tool, run_on_terminal, tree_hashes
from DicomAnnotEmbedLib.services.batch.steps import output_digests

COMPARED = ("case-00", "case-01", "case-09", "case-19")  # 01, 09: BINARY SEG by options; 00, 09: an SR


@pytest.fixture(scope="module")
def local_run(collection, tmp_path_factory):  # noqa: F811
    """The batch command run once on a local cluster of 2 workers."""
    manifest, cases = collection
    before = tree_hashes(manifest.parent / "cases")
    out = tmp_path_factory.mktemp("batch-local") / "out"
    process = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out", str(out),
                              "--workers", "2", "--no-dashboard"], capture_output=True, text=True, timeout=400)
    return manifest, cases, out, process, before


@pytest.fixture(scope="module")
def single_case(collection, tmp_path_factory):  # noqa: F811
    """The compared cases written by the one-case API."""
    _, cases = collection
    root = tmp_path_factory.mktemp("batch-single")
    for case_id in COMPARED:
        run_single_case(cases[case_id], root / case_id, cases[case_id]["outputs"], binary=cases[case_id]["binary"])
    return root


def test_batch_on_local_cluster_writes_what_the_one_case_api_writes(local_run, single_case):
    manifest, cases, out, process, before = local_run
    assert process.returncode == 3, process.stderr  # two cases failed
    assert "Traceback" not in process.stderr and "internal error" not in process.stderr
    assert re.search(r"done now\s+18\b", process.stdout) and re.search(r"failed now\s+2\b", process.stdout)
    assert "local cluster of 2 worker processes on 127.0.0.1" in process.stderr
    lines = ledger_lines(out)
    assert len(lines) == 20
    records = {r["case"]: r for r in lines}
    for case_id, files in cases.items():
        record = records[case_id]
        if files["bad"]:
            assert record["status"] == "failed" and not (out / case_id).exists()
            continue
        assert record["status"] == "done", record
        folder = out / case_id
        on_disk = {p.relative_to(folder).as_posix(): sha256(p) for p in folder.rglob("*")
                   if p.is_file() and p.name != "case.json"}
        assert json.loads((folder / "case.json").read_text())["files"] == on_disk
        assert record["outputs"] == output_digests(on_disk)
        assert record["outputs"]["seg.dcm"] == on_disk["seg.dcm"]
        written = {k.split("/")[0] for k in on_disk}
        # with markups, the SR's markup groups are in their own report beside it (README, "DICOM SR")
        assert ("sr_markups.dcm" in written) == ("sr" in files["outputs"] and "markups" in files)
        assert written - {"sr_markups.dcm"} == {{"seg": "seg.dcm", "sr": "sr.dcm"}.get(o, o) for o in files["outputs"]}
        assert record["duration_s"] > 0 and record["peak_memory_mb"] > 50
    missing, broken = (f"case-{i:02d}" for i in BAD)
    assert records[missing]["error"] == f"{cases[missing]['series']}: folder does not exist"
    assert str(cases[broken]["segmentation"]) in records[broken]["error"]
    assert "not a readable NRRD file" in records[broken]["error"]
    assert f"{missing}  {records[missing]['error']}" in process.stdout  # the summary lists failed cases
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")]
    assert tree_hashes(manifest.parent / "cases") == before  # inputs never modified
    for case_id in COMPARED:
        assert_same_case(out / case_id, single_case / case_id)


def _errors(tool: str, path: Path) -> set:
    run = subprocess.run([tool, str(path)], capture_output=True, text=True)
    return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}


def test_batch_outputs_pass_the_checkers_as_the_one_case_outputs_do(local_run, single_case):
    _, _, out, _, _ = local_run
    dciodvfy = require_tool("dciodvfy")
    dsrdump = require_tool("dsrdump")
    for case_id in ("case-00", "case-09"):
        for name in ("seg.dcm", "sr.dcm", "overlay/IMG00004.dcm"):
            assert _errors(dciodvfy, out / case_id / name) == _errors(dciodvfy, single_case / case_id / name), name
        dump = subprocess.run([dsrdump, str(out / case_id / "sr.dcm")], capture_output=True, text=True)
        assert dump.returncode == 0 and "Imaging Measurement Report" in dump.stdout


def test_batch_rerun_skips_finished_cases_and_retries_failed_ones(local_run, dask_cluster):  # noqa: F811
    from DicomAnnotEmbedLib import api

    manifest, cases, out, _, _ = local_run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "ledger" not in p.name}

    again = api.run_batch(manifest, out, workers=2)
    assert again.ran == [] and sorted(again.skipped) == sorted(cases) and again.workers == 0  # no cluster
    assert sorted(again.failed) == [f"case-{i:02d}" for i in BAD] and not again.ok
    assert len(ledger_lines(out)) == 20

    # One case's input changes (its modification time), the failed ones are retried.
    segmentation = cases["case-03"]["segmentation"]
    st = segmentation.stat()
    os.utime(segmentation, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    try:  # on a terminal, as a user would: the progress bar shows
        code, terminal = run_on_terminal("batch", manifest, "--out", out, "--scheduler", dask_cluster[0], "--retry-failed")
    finally:
        os.utime(segmentation, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert code == 3, terminal
    assert "3 cases to run, 17 skipped" in terminal
    assert re.search(r"cases: 100%.*3/3.*failed=2", terminal), terminal  # done/failed with tqdm's rate and ETA
    third = {r["case"]: r for r in ledger_lines(out)[20:]}
    assert sorted(third) == ["case-03", "case-06", "case-13"]
    assert third["case-03"]["status"] == "done" and third["case-06"]["status"] == third["case-13"]["status"] == "failed"
    for path, stamp in stamps.items():
        if path.exists() and not path.is_relative_to(out / "case-03"):
            assert path.stat().st_mtime_ns == stamp, path  # nothing else recomputed
    assert (out / "case-03" / "seg.dcm").stat().st_mtime_ns > stamps[out / "case-03" / "seg.dcm"]
    assert len(ledger_lines(out)) == 23


def test_batch_bad_manifest_is_one_clear_error(tmp_path, collection):  # noqa: F811
    manifest, _ = collection
    bad = tmp_path / "bad.csv"
    bad.write_text(manifest.read_text().replace("overlay;seg;sr;ml", "overlay;seg;tiff", 1))
    process = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(bad), "--out",
                              str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert process.returncode == 3 and "Traceback" not in process.stderr
    assert f"{bad}: line 2: case case-00: outputs tiff: expected some of overlay, seg, sr, rtstruct, gsps, ml" in process.stderr
    process = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out",
                              str(tmp_path / "o2"), "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert process.returncode == 2 and "--workers must be at least 1" in process.stderr


def test_batch_case_importing_a_seg_writes_the_overlay_of_its_segments(collection, tmp_path):  # noqa: F811
    """An annotation input recognised by its DICOM Modality (SEG), run by the per-case function."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.services.batch import run_case

    _, cases = collection
    files = cases["case-00"]
    api.export_seg(files["series"], files["segmentation"], tmp_path / "input.dcm")
    out = tmp_path / "out"
    out.mkdir()
    spec = {"id": "from-seg", "series": str(files["series"]), "annotations": [["", str(tmp_path / "input.dcm")]],
            "outputs": ["overlay"], "options": {}}
    record = run_case(spec, str(out), "fingerprint")
    assert record["status"] == "done", record["error"]
    single = tmp_path / "single"
    api.import_seg(tmp_path / "input.dcm", files["series"], segmentation_out=tmp_path / "imported.seg.nrrd")
    api.export_overlay(files["series"], tmp_path / "imported.seg.nrrd", [], single / "overlay")
    (single / "imported").mkdir()
    (tmp_path / "imported.seg.nrrd").rename(single / "imported" / "segmentation.seg.nrrd")
    assert_same_case(out / "from-seg", single)


def test_batch_example_manifests_list_the_same_cases():
    from DicomAnnotEmbedLib.services.batch import INPUT_KINDS, OUTPUTS, read_manifest

    examples = Path(__file__).resolve().parents[3] / "Resources" / "Examples"
    csv_cases = read_manifest(examples / "batch_manifest_example.csv", tuple(OUTPUTS), tuple(INPUT_KINDS))
    json_cases = read_manifest(examples / "batch_manifest_example.jsonl", tuple(OUTPUTS), tuple(INPUT_KINDS))
    assert len(csv_cases) == 5
    for a, b in zip(csv_cases, json_cases):
        a.line = b.line = 0
        assert a == b


def test_batch_case_from_an_annotation_table_writes_what_csv_import_writes(sample_case, tmp_path):
    """A CSV annotation table (the bundled example on the sample series), run by the per-case function."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.services.batch import run_case

    table = Path(__file__).resolve().parents[3] / "Resources" / "Examples" / "annotations_example.csv"
    out = tmp_path / "out"
    out.mkdir()
    spec = {"id": "table", "series": str(sample_case.series_dir), "annotations": [["", str(table)]],
            "outputs": ["overlay", "seg"], "options": {"table": {"lidc": True}}}
    record = run_case(spec, str(out), "fingerprint")
    assert record["status"] == "done", record["error"]
    api.import_csv(table, sample_case.series_dir, tmp_path / "single", formats=["overlay", "seg"], lidc=True)
    assert_same_case(out / "table", tmp_path / "single")


def test_batch_case_writes_and_reads_rtstruct_and_gsps_as_their_api_calls_do(collection, tmp_path):  # noqa: F811
    """RTSTRUCT and GSPS, each one entry in the steps' tables: written from a segmentation and markups,
    then read back as inputs (recognised by Modality RTSTRUCT and PR) into a SEG."""
    import highdicom as hd
    import numpy as np
    import pydicom

    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.services.batch import run_case
    from batch_collection import content

    _, cases = collection
    files = cases["case-00"]
    out = tmp_path / "out"
    out.mkdir()
    spec = {"id": "rt", "series": str(files["series"]),
            "annotations": [["", str(files["segmentation"])], ["", str(files["markups"])]],
            "outputs": ["rtstruct", "gsps"], "options": {}}
    record = run_case(spec, str(out), "fingerprint")
    assert record["status"] == "done", record["error"]
    single = tmp_path / "single"
    api.export_rtstruct(files["series"], files["segmentation"], single / "rtstruct.dcm", markups=[files["markups"]])
    api.export_gsps(files["series"], [files["markups"]], single / "gsps.dcm", segmentation=files["segmentation"])
    for name in ("rtstruct.dcm", "gsps.dcm"):
        assert content(pydicom.dcmread(out / "rt" / name)) == content(pydicom.dcmread(single / name)), name

    spec = {"id": "back", "series": str(files["series"]),
            "annotations": [["", str(out / "rt" / "rtstruct.dcm")], ["", str(out / "rt" / "gsps.dcm")]],
            "outputs": ["seg"], "options": {}}
    record = run_case(spec, str(out), "fingerprint")
    assert record["status"] == "done", record["error"]
    api.import_rtstruct(out / "rt" / "rtstruct.dcm", files["series"], segmentation_out=tmp_path / "rt.seg.nrrd")
    api.export_seg(files["series"], tmp_path / "rt.seg.nrrd", tmp_path / "seg.dcm")
    assert np.array_equal(hd.seg.segread(out / "back" / "seg.dcm").pixel_array,
                          hd.seg.segread(tmp_path / "seg.dcm").pixel_array)
    assert (out / "back" / "imported-gsps" / "markups.mrk.json").exists()
