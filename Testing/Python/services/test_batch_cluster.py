"""The batch on a separately started Dask scheduler and workers (real processes on 127.0.0.1, free
ports, stopped by PID), a worker killed while it runs a slow case, and the whole batch killed
(SIGKILL) then run again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from batch_collection import (BAD, assert_same_case, collection, dask_cluster, ledger_lines,  # noqa: F401 (fixtures)
                              run_single_case, write_case)

SLOW_SHAPE = (48, 512, 512)  # about 1.4 s of work: a 0.6 s case could finish before the kill landed


def _manifest_jsonl(collection_manifest: Path, slow, path: Path, cases: int = 20) -> None:  # noqa: F811
    """The collection as JSON lines with absolute paths, the slow case (if any) first."""
    import csv

    rows = [] if slow is None else [
        {"id": "slow", "series": str(slow["series"]),
         "annotations": {"segmentation": str(slow["segmentation"]), "markups": [str(slow["markups"])]},
         "outputs": ["overlay", "seg", "sr", "ml"]}]
    with open(collection_manifest, newline="") as f:
        for row in list(csv.DictReader(f))[:cases]:
            base = collection_manifest.parent
            rows.append({"id": row["id"], "series": str(base / row["series"]),
                         "annotations": [str(base / a) for a in row["annotations"].split(";")],
                         "outputs": row["outputs"].split(";"),
                         **({"options": json.loads(row["options"])} if row["options"] else {})})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_batch_on_a_running_scheduler_retries_the_case_of_a_killed_worker(collection, dask_cluster, tmp_path):  # noqa: F811
    address, client = dask_cluster
    manifest, cases = collection
    slow = write_case(tmp_path / "slow-case", 3, shape=SLOW_SHAPE)
    jsonl = tmp_path / "manifest.jsonl"
    _manifest_jsonl(manifest, slow, jsonl)
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(jsonl), "--out", str(out),
                              "--scheduler", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and batch.poll() is None:
            for worker, keys in client.processing().items():
                if any(str(k).startswith("case-slow-") for k in keys):
                    killed = client.run(os.getpid, workers=[worker])[worker]
                    time.sleep(0.2)  # into the case, well before its end
                    os.kill(killed, signal.SIGKILL)
                    break
            time.sleep(0.05)
        stdout, stderr = batch.communicate(timeout=300)
    finally:
        if batch.poll() is None:
            os.kill(batch.pid, signal.SIGKILL)
    assert killed is not None, "the slow case was never seen running"
    assert batch.returncode == 3, stderr
    assert f"scheduler {address}, 2 workers" in stderr
    records = {r["case"]: r for r in ledger_lines(out)}
    assert len(records) == 21 and len(ledger_lines(out)) == 21
    assert records["slow"]["status"] == "done" and records["slow"]["worker"].split(":")[-1] != str(killed)
    assert sorted(c for c, r in records.items() if r["status"] != "done") == [f"case-{i:02d}" for i in BAD]
    single = tmp_path / "single"
    run_single_case(slow, single / "slow", ("overlay", "seg", "sr", "ml"))
    assert_same_case(out / "slow", single / "slow")
    run_single_case(cases["case-09"], single / "case-09", cases["case-09"]["outputs"], binary=True)
    assert_same_case(out / "case-09", single / "case-09")


def test_batch_killed_then_rerun_loses_and_recomputes_no_finished_case(collection, dask_cluster, tmp_path):  # noqa: F811
    from DicomAnnotEmbedLib import api

    collection_manifest, all_cases = collection
    manifest = tmp_path / "manifest.jsonl"
    _manifest_jsonl(collection_manifest, None, manifest, cases=10)
    cases = {c: all_cases[c] for c in sorted(all_cases)[:10]}
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out", str(out),
                              "--workers", "2", "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # its worker processes share its process group
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and batch.poll() is None:
            if (out / "ledger.jsonl").exists() and len(ledger_lines(out)) >= 3:
                break
            time.sleep(0.05)
        assert batch.poll() is None, "the batch ended before it could be killed"
        os.kill(batch.pid, signal.SIGKILL)
        batch.wait()
    finally:
        try:
            os.killpg(batch.pid, signal.SIGKILL)  # the orphaned workers of the killed run
        except ProcessLookupError:
            pass
    before = ledger_lines(out)
    # a case's outputs appear whole (renamed from .partial-<case>-*): a kill between writing
    # case.json into the staging folder and its rename leaves a staging folder, not a finished case
    finished = {p.name: {f: f.stat().st_mtime_ns for f in p.rglob("*") if f.is_file()}
                for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "case.json").exists()}
    assert 3 <= len(before) < 10 and {r["case"] for r in before if r["status"] == "done"} <= set(finished)

    result = api.run_batch(manifest, out, scheduler=dask_cluster[0])  # (saves starting another local cluster)
    assert set(result.ran).isdisjoint(finished) and set(result.ran) | set(result.skipped) == set(cases)
    assert sorted(result.failed) == ["case-06"]
    for name, stamps in finished.items():  # not recomputed
        assert {f: f.stat().st_mtime_ns for f in (out / name).rglob("*") if f.is_file()} == stamps
    lines = ledger_lines(out)
    assert lines[:len(before)] == before  # the ledger only grew
    done = [r["case"] for r in lines if r["status"] == "done"]
    assert sorted(done) == sorted(c for c in cases if not cases[c]["bad"])  # each good case done once
    assert not [p for p in out.iterdir() if p.name.startswith((".partial-", ".replaced-"))]
