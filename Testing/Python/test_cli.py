"""The command line as a user runs it: real processes, exit codes, one-line errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import interop, run_on_terminal, tree_hashes


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def assert_clean_error(result, code, *words):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("args", [[], ["overlay"], ["overlay", "export"], ["overlay", "import"], ["dicomize"], ["sample"]])
def test_help_everywhere(args):
    result = run(*args, "--help")
    assert result.returncode == 0 and "usage: dicomannotembed" in result.stdout
    assert "exit codes" in result.stdout


def test_readme_main_job_on_the_sample(tmp_path):
    assert run("sample", tmp_path / "case").returncode == 0
    before = tree_hashes(tmp_path / "case")
    result = run("overlay", "export", "--series", tmp_path / "case" / "series",
                 "--segmentation", tmp_path / "case" / "segmentation.seg.nrrd",
                 "--markups", tmp_path / "case" / "markups.mrk.json", "--out", tmp_path / "overlay",
                 "--preview", tmp_path / "preview")
    assert result.returncode == 0, result.stderr
    assert "6000=Liver" in result.stdout and "Tumor box" in result.stdout
    assert len(list((tmp_path / "overlay").glob("*.dcm"))) == 32
    assert list((tmp_path / "preview").glob("slice_*.png"))
    result = run("overlay", "import", "--series", tmp_path / "overlay", "--out", tmp_path / "back.seg.nrrd",
                 "--markups-out", tmp_path / "back.mrk.json")
    assert result.returncode == 0, result.stderr
    assert "5 segments" in result.stdout and "4 markups" in result.stdout
    assert tree_hashes(tmp_path / "case") == before
    assert not list(tmp_path.rglob("*.partial*"))


def test_dicomize_command(tmp_path):
    result = run("dicomize", interop("slicer", "CTChest4.nrrd"), "--out", tmp_path / "ct")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "ct").iterdir())) == 34


def test_bad_inputs(tmp_path, sample_case):
    (tmp_path / "empty").mkdir()
    assert_clean_error(run("overlay", "import", "--series", tmp_path / "empty", "--out", tmp_path / "x.seg.nrrd"),
                       3, "no DICOM image series", str(tmp_path / "empty"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.dcm").write_bytes(b"not a dicom file at all")
    assert_clean_error(run("overlay", "import", "--series", tmp_path / "junk", "--out", tmp_path / "x.seg.nrrd"),
                       3, "1 not DICOM")
    assert_clean_error(run("overlay", "import", "--series", sample_case.series_dir, "--out", tmp_path / "x.seg.nrrd"),
                       3, "no overlay planes")
    assert_clean_error(run("overlay", "export", "--series", sample_case.series_dir, "--segmentation",
                           tmp_path / "missing.seg.nrrd", "--out", tmp_path / "o"), 3, "missing.seg.nrrd", "does not exist")
    (tmp_path / "broken.seg.nrrd").write_text("NRRD0004\ntype: nonsense\n")
    assert_clean_error(run("overlay", "export", "--series", sample_case.series_dir, "--segmentation",
                           tmp_path / "broken.seg.nrrd", "--out", tmp_path / "o"), 3, "broken.seg.nrrd")
    (tmp_path / "bad.mrk.json").write_text("{not json")
    assert_clean_error(run("overlay", "export", "--series", sample_case.series_dir, "--markups",
                           tmp_path / "bad.mrk.json", "--out", tmp_path / "o"), 3, "bad.mrk.json", "invalid JSON")
    # two series in one folder
    shutil.copytree(sample_case.series_dir, tmp_path / "two" / "a")
    shutil.copytree(interop("dcmqi", "ct-3slice"), tmp_path / "two" / "b")
    assert_clean_error(run("overlay", "export", "--series", tmp_path / "two", "--segmentation",
                           sample_case.segmentation_path, "--out", tmp_path / "o"), 3, "2 image series", "--series")
    # a segmentation that cannot lie on the series
    assert_clean_error(run("overlay", "export", "--series", interop("dcmqi", "ct-3slice"), "--segmentation",
                           sample_case.segmentation_path, "--out", tmp_path / "o"), 3, "cannot lie on the series",
                       "segmentation.seg.nrrd")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_output_errors(tmp_path, sample_case):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["overlay", "export", "--series", sample_case.series_dir, "--segmentation", sample_case.segmentation_path]
    assert_clean_error(run(*args, "--out", out), 4, "not empty", "--force")
    assert run(*args, "--out", out, "--force").returncode == 0
    assert (out / "keep.txt").read_text() == "x"


def test_too_many_segments_then_split(tmp_path, sample_case):
    import numpy as np
    import SimpleITK as sitk

    from DicomAnnotEmbedLib.core.series import load_series

    series = load_series(sample_case.series_dir)
    labels = np.zeros(series.geometry.shape, np.uint8)
    for n in range(18):
        labels[n, 10:20, 5 * n:5 * n + 4] = n + 1
    sitk.WriteImage(series.geometry.to_sitk_image(labels), str(tmp_path / "many.nii.gz"))
    args = ["overlay", "export", "--series", sample_case.series_dir, "--segmentation", tmp_path / "many.nii.gz"]
    assert_clean_error(run(*args, "--out", tmp_path / "a"), 3, "18 segments", "--split")
    result = run(*args, "--out", tmp_path / "b", "--split")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["series_01", "series_02"]


def test_empty_segment_warning_and_keep_uids_warning(tmp_path, sample_case):
    import numpy as np
    import SimpleITK as sitk

    from DicomAnnotEmbedLib.core.series import load_series

    series = load_series(sample_case.series_dir)
    labels = np.zeros(series.geometry.shape, np.uint8)
    labels[3, 10:20, 10:20] = 1
    sitk.WriteImage(series.geometry.to_sitk_image(labels), str(tmp_path / "one.nrrd"))
    result = run("overlay", "export", "--series", sample_case.series_dir, "--segmentation", tmp_path / "one.nrrd",
                 "--out", tmp_path / "o", "--keep-uids")
    assert result.returncode == 0, result.stderr
    assert "WARNING: keeping the original SOP Instance and Series UIDs" in result.stderr


def test_read_only_output(tmp_path, sample_case):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    if os.access(target, os.W_OK):  # running as root: permissions do not stop us, sysfs does
        target = Path("/sys/dicomannotembed-test-output")
    result = run("overlay", "export", "--series", sample_case.series_dir, "--segmentation",
                 sample_case.segmentation_path, "--out", target)
    assert_clean_error(result, 4, "cannot write here")


def test_progress_bar_on_a_terminal(tmp_path, sample_case):
    code, text = run_on_terminal("overlay", "export", "--series", sample_case.series_dir, "--segmentation",
                                 sample_case.segmentation_path, "--out", tmp_path / "o")
    assert code == 0
    assert "Writing overlays" in text and "32/32" in text
