"""Cases for the PACS tests and benchmark: a synthetic CT series (any slice count) with a label
map, its SEG and SR written by our exporters, and DCMTK tools found by full path.

pynetdicom installs Python apps called ``storescu``, ``getscu``, ``findscu`` ... that can come
before DCMTK's on PATH: the independent checks must run DCMTK's, so they are found in /usr/bin.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

DCMTK_DIRS = ("/usr/bin", "/usr/local/bin")


def dcmtk(name: str) -> str:
    """Full path of a DCMTK tool (not pynetdicom's same-named app); skip here, fail in CI."""
    import pytest

    for folder in DCMTK_DIRS:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK) and not path.read_bytes()[:2] == b"#!":
            return str(path)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"DCMTK's {name} is not installed; .ci/run installs dcmtk")
    pytest.skip(f"DCMTK's {name} not installed")


@dataclass
class Case:
    folder: Path
    series_dir: Path
    labels: np.ndarray
    study_uid: str
    series_uid: str
    seg: Optional[Path] = None
    sr: Optional[Path] = None

    @property
    def results(self) -> List[Path]:
        return [p for p in (self.seg, self.sr) if p is not None]


def make_case(folder: Path, slices: int = 24, size: int = 64, seed: int = 0, *, patient_id: str = "PACS-TEST",
              results: bool = True, seg_type: str = "binary", compression: str = "none") -> Case:
    """A CT series of ``slices`` images of ``size``x``size`` with three labelled boxes; with
    ``results`` also its SEG and SR (our exporters) in ``folder/results``."""
    import pydicom
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    rng = np.random.default_rng(seed)
    spacing = np.array([0.8, 0.8, 2.0])
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.diag(spacing)
    ijk_to_lps[:3, 3] = [-size * 0.4, -size * 0.4, -slices]
    geometry = VolumeGeometry((slices, size, size), ijk_to_lps)
    volume = rng.integers(-1000, 1500, size=(slices, size, size), dtype=np.int16)
    labels = np.zeros((slices, size, size), dtype=np.uint8)
    for value in (1, 2, 3):
        k0, j0, i0 = rng.integers(0, [max(1, slices - 6), size - 12, size - 12])
        labels[k0:k0 + 6, j0:j0 + 10, i0:i0 + 10] = value  # later boxes may cover earlier ones
    series_dir = folder / "series"
    files = dicomize_array(volume, geometry, series_dir, modality="CT", patient_name="Pacs^Test",
                           patient_id=patient_id, series_description=f"PACS test CT {seed}")
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    case = Case(folder, series_dir, labels, str(head.StudyInstanceUID), str(head.SeriesInstanceUID))
    if results:
        out = folder / "results"
        out.mkdir(parents=True, exist_ok=True)
        result = api.export_seg(series_dir, labels, out / "seg.dcm", seg_type=seg_type, compression=compression)
        case.seg = Path(result.paths[0])
        api.export_sr(series_dir, case.seg, out / "sr.dcm")
        case.sr = out / "sr.dcm"
    return case


def file_hashes(paths) -> dict:
    """SHA-256 of every file below the paths (files or folders): local files must stay as they were."""
    found = {}
    for given in map(Path, paths):
        for path in ([given] if given.is_file() else sorted(p for p in given.rglob("*") if p.is_file())):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def dataset_without_meta(path) -> "pydicom.Dataset":
    """A file's data set (no file meta: the receiver writes its own) for comparisons."""
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    return ds
