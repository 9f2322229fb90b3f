"""The Dask dashboard of a batch run (bokeh installed by the test extra): its address is printed by
the command and returned by api.run_batch, it is on 127.0.0.1, and it answers while the cases run.
A real local cluster; no mock of Dask."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

from batch_collection import collection  # noqa: F401 (fixture)

CASES = ("case-00", "case-01")


def manifest_of(cases: dict, folder) -> str:
    rows = [{"id": c, "series": str(cases[c]["series"]), "annotations": [str(cases[c]["segmentation"])],
             "outputs": ["seg"]} for c in CASES]
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_dashboard_address_is_printed_and_served(collection, tmp_path):  # noqa: F811
    from DicomAnnotEmbedLib import api

    _, cases = collection
    manifest = manifest_of(cases, tmp_path)
    answered = {}

    def on_start(info: dict) -> None:  # while the cluster runs: the page is served
        answered["url"] = info["dashboard"]
        with urllib.request.urlopen(info["dashboard"], timeout=60) as response:
            answered["status"] = response.status

    result = api.run_batch(manifest, tmp_path / "api", workers=1, on_start=on_start)
    assert result.ok and result.dashboard == answered["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/status", answered["url"]) and answered["status"] == 200

    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", manifest, "--out",
                           str(tmp_path / "cli"), "--workers", "1"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/status", done.stderr), done.stderr
