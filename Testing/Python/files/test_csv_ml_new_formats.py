"""csv import --formats rtstruct,gsps and export-ml of RT Structure Sets: the example table on the
sample series through the command line, the RTSTRUCT's contours read back by pydicom (an
independent reader) and by our import, the label maps export-ml writes from an RTSTRUCT against
the rasterised table (segmentation.seg.nrrd written beside it). Real files throughout."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import REPO
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.api.csv_pipeline import FORMATS
from DicomAnnotEmbedLib.cli._common import CSV_FORMATS
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.files.segio import load_segmentation

EXAMPLE = REPO / "Resources" / "Examples" / "annotations_example.csv"


def run(*args):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def imported(sample_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("csvnew") / "out"
    result = run("csv", "import", EXAMPLE, "--series", sample_case.series_dir, "--out", out,
                 "--formats", "rtstruct,gsps")
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_formats_constant_lists_the_new_outputs():
    assert CSV_FORMATS == FORMATS and {"rtstruct", "gsps"} <= set(FORMATS)


def test_csv_import_writes_rtstruct_and_gsps_only(imported):
    out, stdout = imported
    assert (out / "rtstruct.dcm").is_file() and (out / "annotations.pr.dcm").is_file()
    assert not (out / "seg.dcm").exists() and not (out / "sr.dcm").exists() and not (out / "overlay").exists()
    assert "RTSTRUCT written to" in stdout and "GSPS written to" in stdout
    rt = pydicom.dcmread(out / "rtstruct.dcm")
    pr = pydicom.dcmread(out / "annotations.pr.dcm")
    assert rt.Modality == "RTSTRUCT" and rt.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
    assert pr.Modality == "PR" and pr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"
    segmentation = load_segmentation(out / "segmentation.seg.nrrd")
    names = {str(roi.ROIName) for roi in rt.StructureSetROISequence}
    assert {s.name for s in segmentation.segments} <= names
    # pydicom alone: every contour is LPS on a slice plane of the series (z of an axial slice).
    contours = [c for roi in rt.ROIContourSequence for c in roi.get("ContourSequence", [])]
    assert contours and all(len(c.ContourData) == 3 * int(c.NumberOfContourPoints) for c in contours)


def test_rtstruct_reads_back_to_the_table_masks(imported, sample_case):
    out, _ = imported
    segmentation = load_segmentation(out / "segmentation.seg.nrrd")
    back = api.import_rtstruct(out / "rtstruct.dcm", sample_case.series_dir)
    for segment in segmentation.segments:
        np.testing.assert_array_equal(back.segmentation.mask(segment.name), segmentation.mask(segment))
    gsps = api.import_gsps(out / "annotations.pr.dcm", sample_case.series_dir)
    table_markups = [m.name for m in back.markups]
    assert table_markups and set(table_markups) <= {m.name for m in gsps.markups}


def test_export_ml_of_an_rtstruct(imported, sample_case, tmp_path):
    out, _ = imported
    result = run("export-ml", out / "rtstruct.dcm", sample_case.series_dir, "--out", tmp_path / "ml")
    assert result.returncode == 0, result.stderr
    segmentation = load_segmentation(out / "segmentation.seg.nrrd")
    sidecar = json.loads(next((tmp_path / "ml").glob("*/labels.json")).read_text())
    assert sidecar["source_kind"] == "rtstruct" and sidecar["image"] == "image.nii.gz"
    folder = next((tmp_path / "ml").glob("*/labels.json")).parent
    assert {s["name"] for s in sidecar["segments"]} == {s.name for s in segmentation.segments}
    for entry in sidecar["segments"]:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / entry["label_map"])))
        np.testing.assert_array_equal(labels == entry["label_value"], segmentation.mask(entry["name"]))
    rows = (tmp_path / "ml" / "measurements.csv").read_text().splitlines()
    assert sum(",rtstruct," in r for r in rows) == len(sidecar["segments"]) + len(sidecar["markups"])


def test_export_ml_of_an_rtstruct_without_its_series(imported, tmp_path):
    out, _ = imported
    lonely = tmp_path / "alone"
    lonely.mkdir()
    (lonely / "rt.dcm").write_bytes((out / "rtstruct.dcm").read_bytes())
    with pytest.raises(InputError, match="nothing to export.*referenced series"):
        api.export_ml(lonely, tmp_path / "ml")


def test_unknown_format_is_one_clear_error(sample_case, tmp_path):
    result = run("csv", "import", EXAMPLE, "--series", sample_case.series_dir, "--out", tmp_path / "o",
                 "--formats", "rtstruct,pdf")
    assert result.returncode == 2 and "rtstruct, gsps" in result.stderr
