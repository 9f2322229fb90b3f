"""A synthetic collection for the batch tests and benchmark: small CT series with a segmentation
and markups per case, some cases broken on purpose, and a manifest listing them."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Tuple

import numpy as np
import pytest

from conftest import stop_process
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation, Terminology

LIVER = Terminology(Code("123037004", "SCT", "Anatomical Structure"), Code("10200004", "SCT", "Liver"))
MASS = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("4147007", "SCT", "Mass"))


def write_case(folder: Path, index: int, shape=(8, 32, 32), markups: bool = True) -> Dict[str, Path]:
    """One case: ``series/`` (CT), ``segmentation.seg.nrrd`` (two overlapping segments) and,
    with ``markups``, ``markups.mrk.json``; shapes vary with ``index``."""
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from DicomAnnotEmbedLib.files.markups_io import write_markups
    from DicomAnnotEmbedLib.files.segio import write_seg_nrrd

    folder.mkdir(parents=True, exist_ok=True)
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (-20.0, -20.0, -10.0), (1.25, 1.25, 2.5),
                                                             np.eye(3))
    rng = np.random.default_rng(1000 + index)
    k, j, i = np.indices(shape)
    cj, ci = shape[1] // 2 + index % 5 - 2, shape[2] // 2 + (index * 3) % 7 - 3
    r = shape[1] // 4 + index % 3
    organ = ((j - cj) ** 2 + (i - ci) ** 2 <= r * r) & (k >= 1) & (k < shape[0] - 1)
    lesion = ((j - cj) ** 2 + (i - ci - 2) ** 2 <= (r // 2) ** 2) & (k >= 2) & (k < shape[0] - 2)
    volume = rng.normal(30, 10, shape)
    volume[organ] += 40
    volume[lesion] += 50
    dicomize_array(np.round(volume).astype(np.int16), geometry, folder / "series", modality="CT",
                   patient_name=f"Batch^Case{index:02d}", patient_id=f"BATCH-{index:02d}",
                   series_description=f"batch case {index}")
    segmentation = Segmentation(geometry)
    segmentation.add_segment(organ, Segment(id="organ", name="Liver", color=(0.9, 0.5, 0.4), terminology=LIVER))
    segmentation.add_segment(lesion, Segment(id="lesion", name="Lesion", color=(1.0, 0.9, 0.6), terminology=MASS))
    files = {"series": folder / "series", "segmentation": folder / "segmentation.seg.nrrd"}
    write_seg_nrrd(files["segmentation"], segmentation)
    if markups:
        centre = geometry.ijk_to_lps_points([[ci, cj, shape[0] // 2]])[0]
        files["markups"] = folder / "markups.mrk.json"
        write_markups(files["markups"], [
            Markup("point_list", "Centre", [centre], ["centre"], color=(1.0, 0.2, 0.2)),
            Markup("line", "Diameter", [centre - [r, 0, 0], centre + [r, 0, 0]], color=(1.0, 1.0, 0.0))])
    return files


def case_outputs(index: int) -> Tuple[str, ...]:
    """What a case of the collection asks for: every third case an SR too (the slowest output)."""
    return ("overlay", "seg", "sr", "ml") if index % 3 == 0 else ("overlay", "seg", "ml")


def write_collection(root: Path, n: int = 20, bad: Iterable[int] = (6, 13),
                     shape=(8, 32, 32)) -> Tuple[Path, Dict[str, dict]]:
    """``n`` cases under ``root/cases`` and ``root/manifest.csv``; case ``bad[0]`` names a series
    folder that does not exist, case ``bad[1]`` a segmentation file that is not NRRD; every fourth
    case (1, 5, ...) asks for a BINARY SEG in its options. Returns the manifest and, per case id,
    its files, outputs and whether it is bad."""
    bad = list(bad)
    cases = {}
    rows = []
    for index in range(n):
        case_id = f"case-{index:02d}"
        files = write_case(root / "cases" / case_id, index, shape=shape)
        if bad and index == bad[0]:
            files["series"] = root / "cases" / case_id / "no-such-series"
        if len(bad) > 1 and index == bad[1]:
            broken = root / "cases" / case_id / "broken.seg.nrrd"
            broken.write_bytes(b"this is not a NRRD file\n")
            files["segmentation"] = broken
        cases[case_id] = {**files, "bad": index in bad, "outputs": case_outputs(index), "binary": index % 4 == 1}
        annotations = [files["segmentation"]] + ([files["markups"]] if "markups" in files else [])
        rows.append({"id": case_id, "series": Path(files["series"]).relative_to(root).as_posix(),
                     "annotations": ";".join(Path(a).relative_to(root).as_posix() for a in annotations),
                     "outputs": ";".join(case_outputs(index)),
                     "options": json.dumps({"seg": {"seg_type": "binary"}}) if index % 4 == 1 else ""})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "series", "annotations", "outputs", "options"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest, cases


def run_single_case(files: dict, out: Path, outputs, binary: bool = False) -> None:
    """What the one-case API writes for a case, called as the one-case commands would be."""
    from DicomAnnotEmbedLib import api

    out.mkdir(parents=True)
    markups = [files["markups"]] if "markups" in files else []
    if "overlay" in outputs:
        api.export_overlay(files["series"], files["segmentation"], markups, out / "overlay")
    if "seg" in outputs or "sr" in outputs:
        api.export_seg(files["series"], files["segmentation"], out / "seg.dcm", **({"seg_type": "binary"} if binary else {}))
    if "sr" in outputs:
        api.export_sr(files["series"], out / "seg.dcm", out / "sr.dcm", segmentation=files["segmentation"],
                      markups=markups)
    if "ml" in outputs:
        sources = [out / "sr.dcm", out / "seg.dcm"] if "sr" in outputs else [out / "seg.dcm"]
        api.export_ml([*map(str, sources), str(files["series"])], out / "ml")


_VOLATILE_VR = {"UI", "DA", "TM", "DT"}


def content(ds) -> list:
    """A dataset's elements without UIDs, dates and times (which differ between two writes)."""
    from pydicom.sequence import Sequence

    if isinstance(ds, Sequence):
        return [content(item) for item in ds]
    items = []
    for element in ds:
        if element.VR in _VOLATILE_VR or element.tag in (0x00080012, 0x00080013):
            continue
        if element.VR == "SQ":
            items.append((element.tag, [content(item) for item in element.value]))
        elif element.tag == 0x7FE00010 or element.VR in ("OB", "OW"):
            items.append((element.tag, bytes(element.value)))
        else:
            items.append((element.tag, str(element.value)))
    return items


def assert_same_case(batch: Path, single: Path) -> None:
    """The batch's outputs of a case equal the one-case API's: overlay pixels and planes (pydicom),
    SEG frames and segments (highdicom), SR content (highdicom), ML label maps (SimpleITK)."""
    import highdicom as hd
    import pydicom
    import SimpleITK as sitk

    single_files = sorted(p.relative_to(single).as_posix() for p in single.rglob("*") if p.is_file())
    batch_files = sorted(p.relative_to(batch).as_posix() for p in batch.rglob("*") if p.is_file())
    assert batch_files == sorted(single_files + ["case.json"]), (batch, batch_files, single_files)
    planes = 0
    for name in single_files:
        if name.startswith("overlay/"):
            a, b = pydicom.dcmread(batch / name), pydicom.dcmread(single / name)
            assert a.PixelData == b.PixelData
            groups = sorted({e.tag.group for e in b if 0x6000 <= e.tag.group <= 0x601E and e.tag.element == 0x3000})
            planes += len(groups)
            assert groups == sorted({e.tag.group for e in a if 0x6000 <= e.tag.group <= 0x601E
                                                and e.tag.element == 0x3000})
            for group in groups:
                assert np.array_equal(a.overlay_array(group), b.overlay_array(group)), (name, hex(group))
                assert a[group, 0x1500].value == b[group, 0x1500].value  # Overlay Label
        elif name == "seg.dcm":
            a, b = hd.seg.segread(batch / name), hd.seg.segread(single / name)
            assert a.SegmentationType == b.SegmentationType
            assert np.array_equal(a.pixel_array, b.pixel_array)
            assert [(s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in a.SegmentSequence] == \
                   [(s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in b.SegmentSequence]
        elif name in ("sr.dcm", "sr_markups.dcm"):
            a, b = hd.sr.srread(batch / name), hd.sr.srread(single / name)
            assert content(a.ContentSequence) == content(b.ContentSequence)
            groups = [hd.sr.MeasurementReport.from_sequence([x]).get_volumetric_roi_measurement_groups()
                      for x in (a, b)]
            assert len(groups[0]) == len(groups[1]) and (len(groups[0]) > 0 or name == "sr_markups.dcm")
        elif name.endswith((".nii.gz", ".nrrd")) and name.startswith("ml/"):
            assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(batch / name))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(single / name)))), name
    assert planes > 0 or not any(n.startswith("overlay/") for n in single_files)


BAD = (6, 13)


@pytest.fixture(scope="session")
def collection(tmp_path_factory):
    """The 20-case collection (2 bad cases), written once per session; read-only by convention."""
    root = tmp_path_factory.mktemp("collection")
    manifest, cases = write_collection(root, n=20, bad=BAD)
    return manifest, cases


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ledger_lines(out: Path) -> list:
    """The ledger's whole lines (one being written while the batch runs is left out)."""
    lines = []
    for line in (out / "ledger.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes (one thread each, no nanny: a killed worker
    stays dead) on 127.0.0.1, free ports; stopped by PID at the end of the session."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="3")
    processes = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--dashboard-address", f"127.0.0.1:{free_port()}"],
                                  stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"), env=env)]
    try:
        for n in range(2):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--memory-limit", "2GiB", "--name", f"worker-{n}"],
                stdout=subprocess.DEVNULL, stderr=open(logs / f"worker-{n}.log", "w"), env=env))
        client = Client(address, timeout="30s", set_as_default=False)
        client.wait_for_workers(2, timeout=90)
        yield address, client
        client.close()
    finally:
        for process in reversed(processes):  # workers first, then the scheduler
            stop_process(process, timeout=20)
