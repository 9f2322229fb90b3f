"""Load: four processes send a 200-slice series with its SEG and SR to one Orthanc at once (two
over DIMSE with four associations each, two over STOW-RS): every instance stored, none twice
(Orthanc's REST API lists the SOP Instance UIDs), and a second round of the same four sends
stores nothing."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from orthanc_server import OUR_AET, orthanc
from pacs_cases import make_case


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda n: make_case(root / f"case{n}", slices=200, size=64, seed=20 + n,
                                                 patient_id=f"LOAD{n}"), range(4)))


def send_all(server, cases):
    def one(item):
        n, case = item
        node = server.dimse_node if n % 2 == 0 else server.web_node
        return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", "pacs", "send", node,
                               str(case.series_dir), *map(str, case.results), "--calling-aet", f"{OUR_AET}{n}"],
                              capture_output=True, text=True, timeout=900)
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, enumerate(cases)))


def test_four_senders_at_once(cases, tmp_path):
    with orthanc(tmp_path / "orthanc") as server:
        done = send_all(server, cases)
        for run in done:
            assert run.returncode == 0, run.stderr
            assert "202 stored, 0 already held, 0 not stored" in run.stdout
        uids = server.sop_instance_uids()
        assert len(uids) == len(set(uids)) == 4 * 202 == server.instance_count()
        again = send_all(server, cases)
        for run in again:
            assert run.returncode == 0 and "0 stored, 202 already held" in run.stdout, run.stdout + run.stderr
        assert server.instance_count() == 4 * 202
