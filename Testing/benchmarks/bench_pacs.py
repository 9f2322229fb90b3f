#!/usr/bin/env python
"""Benchmark: sending and retrieving a 200-file CT series over DIMSE, ours against DCMTK.

Run by hand (it is not a pytest test and asserts no timings)::

    python Testing/benchmarks/bench_pacs.py                       # timing table
    python Testing/benchmarks/bench_pacs.py --repeats 7 --workdir /tmp/dae-bench-pacs

The report (Markdown) goes to stdout, progress to stderr.

What it does: generates (or reuses) a synthetic CT series, 512 x 512 x 200 int16 (about 100 MB,
200 single-frame files, written by ``dicomize_array``), starts a throw-away Orthanc
(Testing/Python/services/orthanc_server.py: loopback ports, its own storage) and runs rounds;
each round runs every variant once as a separate process, timed from start to exit (wall):

* ``storescu``: DCMTK's ``storescu +sd +r`` (one association; found in /usr/bin, since pynetdicom
  installs a Python app of the same name), with its default maximum PDU (16 KB) and with
  ``-pdu 131072`` (the test Orthanc's MaximumPduLength; ours receives unlimited PDUs);
* ``pacs send``: ``dicomannotembed pacs send NODE DIR`` (four associations, the default), and
  with ``--associations 1`` for context;
* ``getscu``: DCMTK's ``getscu`` of the series (one C-GET, study root, series level) into a folder,
  default PDU and ``-pdu 131072``;
* ``pacs get``: ``dicomannotembed pacs get NODE --study UID --out DIR`` (four associations), and
  with ``--associations 1``.

Before each send the archive is emptied (REST DELETE of the patient); before each get the
series is stored there (by storescu, outside the clock) and the output folder emptied. Both our
commands pay for Python's start and imports, and ``pacs send`` also asks the archive what it
holds before sending and checks afterwards that it holds everything (two C-FINDs). Each
variant's result is checked (200 instances held, 200 files written). Medians over the rounds.

Notes (2-core AMD EPYC VM, 23.5 GiB, shared: load average 9 to 10; Python 3.11.7, pynetdicom
3.0.4, DCMTK 3.6.7, Orthanc 1.10.1), 5 rounds, medians:

* send: storescu 10.87 s (11.00 s with -pdu 131072), ours 5.90 s with 4 associations
  (0.54 x), 14.13 s with one. Orthanc spends ~50 to 100 ms per instance whoever sends it (fsync
  off, index on tmpfs made no difference), so one association is bound by the archive: ours on
  one association is 1.3 x storescu (pynetdicom's Python per-PDU work); concurrency is the gain.
  Files whose transfer syntax is accepted go out as their bytes (pynetdicom reads the file and
  sends the data set without decoding it).
* get: getscu 10.13 s (10.29 s with -pdu 131072), ours 3.37 s with 4 associations (0.33 x), 3.08 s
  with one (series-level C-GET as getscu does). Each received data set is written as its bytes
  after a file meta header, atomically (temporary name, then rename).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "Testing" / "Python"), str(REPO / "Testing" / "Python" / "services")]

SLICES, SIZE = 200, 512
OUR_AET = "DAEBENCH"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def prepare(workdir: Path) -> Path:
    import numpy as np
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from phantom import body_plane

    series = workdir / "series"
    if series.is_dir() and len(list(series.glob("*.dcm"))) == SLICES:
        return series
    shutil.rmtree(series, ignore_errors=True)
    ijk = np.eye(4)
    ijk[:3, :3] = np.diag([0.7, 0.7, 1.25])
    ijk[:3, 3] = [-SIZE * 0.35, -SIZE * 0.35, 0]
    geometry = VolumeGeometry((SLICES, SIZE, SIZE), ijk)
    plane = body_plane(SIZE, SIZE, ijk[:2, 3], (0.7, 0.7))
    rng = np.random.default_rng(1)
    volume = np.broadcast_to(plane, (SLICES, SIZE, SIZE)) + rng.integers(-25, 26, (SLICES, SIZE, SIZE), dtype=np.int16)
    dicomize_array(volume, geometry, series, modality="CT", patient_name="Bench^Pacs", patient_id="BENCHPACS")
    return series


def rest(server, method: str, path: str):
    request = urllib.request.Request(server.rest + path, method=method)
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return json.loads(body) if body else None


def empty_archive(server) -> None:
    for patient in rest(server, "GET", "/patients"):
        rest(server, "DELETE", f"/patients/{patient}")


def timed(command) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dae-bench-pacs")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from machine import cpu_model, memory_text
    from orthanc_server import orthanc
    import pydicom

    args.workdir.mkdir(parents=True, exist_ok=True)
    series = prepare(args.workdir)
    head = pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True)
    study, series_uid = str(head.StudyInstanceUID), str(head.SeriesInstanceUID)
    megabytes = sum(p.stat().st_size for p in series.glob("*.dcm")) / 1e6
    for p in series.glob("*.dcm"):  # warm the page cache
        p.read_bytes()
    storescu, getscu = "/usr/bin/storescu", "/usr/bin/getscu"
    ours = [sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", "pacs"]
    out = args.workdir / "out"
    times = {}
    with orthanc(args.workdir / "orthanc") as server:
        node = server.dimse_node
        send_variants = {
            "storescu (DCMTK, 1 association)": [storescu, "-aet", OUR_AET, "-aec", server.aet, "+sd", "+r",
                                                "127.0.0.1", str(server.dicom_port), str(series)],
            "storescu --max-pdu 131072": [storescu, "-aet", OUR_AET, "-aec", server.aet, "+sd", "+r", "-pdu",
                                          "131072", "127.0.0.1", str(server.dicom_port), str(series)],
            "pacs send (4 associations)": ours + ["send", node, str(series), "--calling-aet", OUR_AET],
            "pacs send --associations 1": ours + ["send", node, str(series), "--calling-aet", OUR_AET,
                                                  "--associations", "1"],
        }
        get_variants = {
            "getscu (DCMTK, 1 association)": [getscu, "-aet", OUR_AET, "-aec", server.aet, "-S",
                                              "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
                                              "-k", f"SeriesInstanceUID={series_uid}", "-od", str(out),
                                              "127.0.0.1", str(server.dicom_port)],
            "getscu --max-pdu 131072": [getscu, "-aet", OUR_AET, "-aec", server.aet, "-S", "-pdu", "131072",
                                        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
                                        "-k", f"SeriesInstanceUID={series_uid}", "-od", str(out),
                                        "127.0.0.1", str(server.dicom_port)],
            "pacs get (4 associations)": ours + ["get", node, "--study", study, "--out", str(out),
                                                 "--calling-aet", OUR_AET],
            "pacs get --associations 1": ours + ["get", node, "--study", study, "--out", str(out),
                                                 "--calling-aet", OUR_AET, "--associations", "1"],
        }
        for round_ in range(args.repeats):
            log(f"round {round_ + 1} of {args.repeats}")
            for name, command in send_variants.items():
                empty_archive(server)
                subprocess.run(["sync"])
                times.setdefault(name, []).append(timed(command))
                held = server.instance_count()
                if held != SLICES:
                    raise RuntimeError(f"{name}: the archive holds {held} instances, not {SLICES}")
            if server.instance_count() != SLICES:
                empty_archive(server)
                subprocess.run([storescu, "-aet", OUR_AET, "-aec", server.aet, "+sd", "+r", "127.0.0.1",
                                str(server.dicom_port), str(series)], check=True, capture_output=True)
            for name, command in get_variants.items():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                subprocess.run(["sync"])
                times.setdefault(name, []).append(timed(command))
                written = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
                if len(written) != SLICES:
                    raise RuntimeError(f"{name}: {len(written)} files written, not {SLICES}")
        orthanc_version = rest(server, "GET", "/system").get("Version")
    dcmtk_version = subprocess.run([storescu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    import pynetdicom

    print(f"## PACS speed: {SLICES} files of {SIZE}x{SIZE} int16 ({megabytes:.0f} MB) over DIMSE to Orthanc "
          f"{orthanc_version} on loopback\n")
    print(f"Machine: {cpu_model()}, {memory_text()}, Python {platform.python_version()}, pynetdicom "
          f"{pynetdicom.__version__}, {dcmtk_version}. Medians of {args.repeats} rounds, wall time of the "
          "whole process (ours includes Python start and imports).\n")
    print("| variant | median s | min s | max s | MB/s |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {max(values):.2f} | {megabytes / median:.0f} |")
    send_ratio = statistics.median(times["pacs send (4 associations)"]) / statistics.median(
        times["storescu (DCMTK, 1 association)"])
    get_ratio = statistics.median(times["pacs get (4 associations)"]) / statistics.median(
        times["getscu (DCMTK, 1 association)"])
    print(f"\nours / DCMTK (medians): send {send_ratio:.2f} x, get {get_ratio:.2f} x (below 1: faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
