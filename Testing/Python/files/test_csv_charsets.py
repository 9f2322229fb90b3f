"""Non-ASCII finding labels through `csv import` and `export-ml`: every output keeps the names
(DICOM in a declared character set, .seg.nrrd in UTF-8 as Slicer writes it, JSON in UTF-8)."""
from __future__ import annotations

import json
import subprocess
import sys

import pydicom
import SimpleITK as sitk

from DicomAnnotEmbedLib.files.segio import load_segmentation

LABELS = ["Tumör", "肿瘤", "Левое лёгкое"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)],
                          capture_output=True, text=True)


def nrrd_names(path, count):
    """Segment names as ITK's NRRD reader (the one Slicer uses) gives them."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return [reader.GetMetaData(f"Segment{n}_Name") for n in range(count)]


def test_csv_import_and_export_ml_keep_non_ascii_names(sample_case, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("finding,label,shape,slice_index,coordinates\n"
                     f"N1,{LABELS[0]},polygon,10,20 20 40 20 40 40 20 40\n"
                     f"N2,{LABELS[1]},ellipse,12,60 60 80 75\n"
                     f"N3,{LABELS[2]},rectangle,14,90 90 110 110\n"
                     "P1,Точка,point,14,50 50\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run("csv", "import", table, "--series", sample_case.series_dir, "--out", out,
                 "--formats", "overlay,seg")
    assert result.returncode == 0, result.stderr
    assert "Failed to encode" not in result.stderr and "Traceback" not in result.stderr
    assert nrrd_names(out / "segmentation.seg.nrrd", 3) == LABELS
    assert [s.name for s in load_segmentation(out / "segmentation.seg.nrrd").segments] == LABELS
    overlay = pydicom.dcmread(sorted((out / "overlay").iterdir())[12])
    assert overlay.SpecificCharacterSet == "ISO_IR 192" and overlay[0x6002, 0x1500].value == LABELS[1]
    seg = pydicom.dcmread(out / "seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence if s.SegmentLabel != "Background"] == LABELS

    ml = tmp_path / "ml"
    result = run("export-ml", out / "overlay", sample_case.series_dir, "--out", ml)
    assert result.returncode == 0, result.stderr
    case = next(p for p in ml.iterdir() if p.is_dir())
    sidecar = json.loads((case / "labels.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in sidecar["segments"]] == LABELS
    assert [m["name"] for m in sidecar["markups"]] == ["Точка"]
    assert nrrd_names(case / "segmentation.seg.nrrd", 3) == LABELS
