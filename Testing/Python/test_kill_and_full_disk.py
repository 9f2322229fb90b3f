"""Outputs survive a full disk and a kill: every command exits 4 with one clear line when the disk
fills (RLIMIT_FSIZE on the child, SIGXFSZ ignored so that writes fail with EFBIG, as on a full
disk), and leaves no truncated file under a final name; an export killed (SIGKILL) at random
moments leaves only complete final-named files, and a rerun without --force succeeds.

"Complete" is judged by independent readers: pydicom (DICOM, with its pixel data decoded),
SimpleITK (NRRD, NIfTI), pynrrd (.seg.nrrd), Pillow (PNG), json and csv.
"""
from __future__ import annotations

import csv
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

EXAMPLE_TABLE = REPO / "Resources" / "Examples" / "annotations_example.csv"


def cli(*args, limit: int = None, timeout: float = 300):
    def child():
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, preexec_fn=child, timeout=timeout)


@pytest.fixture(scope="module")
def case(tmp_path_factory, sample_case):
    """The sample with a SEG, an SR, an overlay series, an RTSTRUCT, a GSPS and a volume."""
    import SimpleITK as sitk

    from DicomAnnotEmbedLib.files.sample import sample_volume_and_segments

    root = tmp_path_factory.mktemp("inputs")
    s = sample_case
    steps = [
        ("seg", "export", "--series", s.series_dir, "--segmentation", s.segmentation_path, "--out", root / "seg.dcm",
         "--type", "binary"),
        ("sr", "export", "--series", s.series_dir, "--seg", root / "seg.dcm", "--markups", s.markups_path,
         "--out", root / "sr.dcm"),
        ("overlay", "export", "--series", s.series_dir, "--segmentation", s.segmentation_path, "--markups",
         s.markups_path, "--out", root / "overlay"),
        ("rtstruct", "export", "--series", s.series_dir, "--segmentation", s.segmentation_path,
         "--out", root / "rt.dcm"),
        ("gsps", "export", "--series", s.series_dir, "--markups", s.markups_path, "--out", root / "pr.dcm"),
    ]
    for step in steps:
        result = cli(*step)
        assert result.returncode == 0, (step, result.stderr)
    volume, segmentation, _ = sample_volume_and_segments()
    sitk.WriteImage(segmentation.geometry.to_sitk_image(volume), str(root / "volume.nrrd"))
    return dict(sample=s, root=root)


def commands(case, out: Path):
    """(name, argv, final outputs) of every command that writes files."""
    s, root = case["sample"], case["root"]
    series = ["--series", s.series_dir]
    return [
        ("sample", ["sample", out / "sample"], [out / "sample"]),
        ("dicomize", ["dicomize", root / "volume.nrrd", "--out", out / "dicomized"], [out / "dicomized"]),
        ("overlay export", ["overlay", "export", *series, "--segmentation", s.segmentation_path, "--markups",
                            s.markups_path, "--out", out / "overlay", "--preview", out / "preview"],
         [out / "overlay", out / "preview"]),
        ("overlay import", ["overlay", "import", "--series", root / "overlay", "--out", out / "ov.seg.nrrd",
                            "--markups-out", out / "ov.mrk.json"], [out / "ov.seg.nrrd", out / "ov.mrk.json"]),
        ("seg export", ["seg", "export", *series, "--segmentation", s.segmentation_path, "--out", out / "seg.dcm"],
         [out / "seg.dcm"]),
        ("seg import", ["seg", "import", root / "seg.dcm", "--out", out / "seg.seg.nrrd"], [out / "seg.seg.nrrd"]),
        ("sr export", ["sr", "export", *series, "--seg", root / "seg.dcm", "--markups", s.markups_path,
                       "--out", out / "sr.dcm"], [out / "sr.dcm", out / "sr_markups.dcm"]),
        ("sr import", ["sr", "import", root / "sr.dcm", "--seg-dir", root, "--out", out / "srin"], [out / "srin"]),
        ("rtstruct export", ["rtstruct", "export", *series, "--segmentation", s.segmentation_path,
                             "--out", out / "rt.dcm"], [out / "rt.dcm"]),
        ("rtstruct import", ["rtstruct", "import", root / "rt.dcm", *series, "--out", out / "rt.seg.nrrd"],
         [out / "rt.seg.nrrd"]),
        ("gsps export", ["gsps", "export", *series, "--markups", s.markups_path, "--out", out / "pr.dcm"],
         [out / "pr.dcm"]),
        ("gsps import", ["gsps", "import", root / "pr.dcm", *series, "--markups-out", out / "pr.mrk.json"],
         [out / "pr.mrk.json"]),
        ("csv import", ["csv", "import", EXAMPLE_TABLE, *series, "--out", out / "csv"], [out / "csv"]),
        ("export-ml", ["export-ml", root / "seg.dcm", "--out", out / "ml"], [out / "ml"]),
    ]


def final_files(paths):
    """Every file under the outputs, hidden temporary ones included (they must not stay)."""
    found = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in path.rglob("*") if p.is_file()]
        found += [p for p in path.parent.glob(f".{path.name}*")]  # leftovers beside it
    return sorted(set(found))


def assert_complete(path: Path) -> None:
    """An independent reader reads the whole file."""
    name = path.name.lower()
    assert not name.startswith("."), f"temporary file left behind: {path}"
    assert path.stat().st_size > 0, f"empty file: {path}"
    if name.endswith(".dcm"):
        import pydicom

        ds = pydicom.dcmread(path)
        if "PixelData" in ds:
            ds.pixel_array  # noqa: B018 - decodes every frame
    elif name.endswith(".seg.nrrd"):
        import nrrd

        nrrd.read(str(path))
    elif name.endswith((".nrrd", ".nii.gz", ".nii", ".mha")):
        import SimpleITK as sitk

        sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    elif name.endswith(".json"):
        json.loads(path.read_text(encoding="utf-8"))
    elif name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as image:
            image.load()
    elif name.endswith(".csv"):
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(text.splitlines()))
        assert rows and text.endswith("\n"), f"truncated CSV {path}"


def test_every_command_on_a_full_disk(case, tmp_path):
    """Writes beyond 1 KiB per file fail (EFBIG): exit 4, one line naming a file, no traceback,
    no truncated final-named file."""
    for name, argv, outputs in commands(case, tmp_path / "full"):
        result = cli(*argv, limit=1024)
        lines = [l for l in result.stderr.splitlines() if l.strip()]
        assert result.returncode == 4, (name, result.returncode, result.stderr[-2000:])
        errors = [l for l in lines if l.startswith("error:")]
        assert len(errors) == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, (name, result.stderr)
        assert str(tmp_path) in errors[0], (name, errors[0])  # names the file or folder
        for path in final_files(outputs):
            assert_complete(path)


def test_kill_exports_at_random_moments(case, tmp_path):
    """SIGKILL at several moments of each multi-file or single-file export: only complete
    final-named files remain, and a rerun without --force succeeds. The moments are fractions of
    each command's own time on this machine (measured first), so that they fall inside its work
    on a fast machine as on a slow one."""
    rng = random.Random(13)
    chosen = {"dicomize", "overlay export", "seg export", "sr export", "csv import", "export-ml"}
    duration = {}
    for name, argv, outputs in commands(case, tmp_path / "timing"):
        if name in chosen:
            started = time.monotonic()
            assert cli(*argv).returncode == 0, name
            duration[name] = time.monotonic() - started
    killed = 0
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        for name, argv, outputs in commands(case, out):
            if name not in chosen:
                continue
            started = time.monotonic()
            process = subprocess.Popen([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, argv)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.35, 0.9) * duration[name])
            os.kill(process.pid, signal.SIGKILL)  # this test's own child, by PID
            code = process.wait()
            if code != -signal.SIGKILL:
                continue  # finished before the kill: nothing to check for this point
            if all(Path(p).exists() for p in outputs):
                # Killed after its outputs were committed (while the interpreter was exiting, say):
                # they must be whole, and a rerun rightly refuses to overwrite them without --force.
                for path in final_files(outputs):
                    assert_complete(path)
                continue
            killed += 1
            for path in final_files(outputs):
                if not path.name.startswith("."):
                    assert_complete(path)
            rerun = cli(*argv)
            assert rerun.returncode == 0, (name, f"killed after {time.monotonic() - started:.1f} s", rerun.stderr)
            for path in final_files(outputs):
                assert_complete(path)  # and the killed run's temporary files are gone
    assert killed >= 4, f"only {killed} runs were killed before they finished"
