"""core.outputs: atomic files, staged folders, leftovers of killed runs, permissions, and the
command line's one overwrite policy and option checks before any work."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from DicomAnnotEmbedLib.core.errors import OutputError
from DicomAnnotEmbedLib.core.outputs import (atomic_path, prepare_output_dir, prepare_output_file, remove_leftovers,
                                             staged_folder, write_atomic)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def dead_pid() -> int:
    """The PID of a process that has ended (a child we started and reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_files_and_folders_respect_the_umask(tmp_path, umask_022):
    write_atomic(tmp_path / "a.json", lambda f: f.write(b"{}"))
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    with staged_folder(tmp_path / "series") as stage:
        write_atomic(stage / "x.dcm", lambda f: f.write(b"x"))
    assert (tmp_path / "series").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "series" / "x.dcm").stat().st_mode & 0o777 == 0o644
    os.umask(0o007)
    write_atomic(tmp_path / "b.json", lambda f: f.write(b"{}"))
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o660


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(stream):
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError) as caught:
        write_atomic(tmp_path / "a.dcm", fail)
    assert str(tmp_path / "a.dcm") in str(caught.value) and "No space left" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="empty file"):
        with atomic_path(tmp_path / "b.nii.gz"):
            pass  # a writer (SimpleITK) that reported nothing but wrote nothing
    assert list(tmp_path.iterdir()) == []


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_folder(tmp_path / "out") as stage:
            write_atomic(stage / "1.dcm", lambda f: f.write(b"1"))
            raise RuntimeError("a bug half way")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(tmp_path / "out") as stage:
        assert stage.parent == tmp_path and stage.name.startswith(".out.")
        for n in range(3):
            write_atomic(stage / f"{n}.dcm", lambda f: f.write(b"x"))
        assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.dcm", "1.dcm", "2.dcm"]
    with pytest.raises(OutputError, match="not empty; use --force to write into it$"):
        with staged_folder(tmp_path / "out"):
            pass
    with staged_folder(tmp_path / "out", force=True) as stage:
        (stage / "sub").mkdir()
        write_atomic(stage / "sub" / "a.csv", lambda f: f.write(b"a\n"))
        write_atomic(stage / "0.dcm", lambda f: f.write(b"new"))
    assert (tmp_path / "out" / "0.dcm").read_bytes() == b"new"
    assert (tmp_path / "out" / "1.dcm").exists() and (tmp_path / "out" / "sub" / "a.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    (tmp_path / f".IMG1.dcm.{dead}-abc.partial.dcm").write_bytes(b"half")
    (tmp_path / f".out.{dead}-xyz.partial").mkdir()
    (tmp_path / f".out.{dead}-xyz.partial" / "IMG1.dcm").write_bytes(b"x")
    (tmp_path / f".IMG2.dcm.{alive}-abc.partial.dcm").write_bytes(b"being written")
    (tmp_path / ".hidden-but-not-ours").write_bytes(b"user file")
    assert remove_leftovers(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".IMG2.dcm.{alive}-abc.partial.dcm", ".hidden-but-not-ours"]
    # An output folder holding only a dead run's leftovers counts as empty, and is cleaned.
    out = tmp_path / "o"
    out.mkdir()
    (out / f".a.dcm.{dead}-q.partial.dcm").write_bytes(b"x")
    prepare_output_dir(out)
    assert list(out.iterdir()) == []
    prepare_output_file(out / "x.dcm", force=False)


def test_messages_name_options_not_python_arguments(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(OutputError) as caught:
        prepare_output_dir(tmp_path / "full")
    assert "--force" in str(caught.value) and "force=True" not in str(caught.value)
    with pytest.raises(OutputError) as caught:
        prepare_output_file(tmp_path / "full" / "f", force=False)
    assert str(caught.value) == f"{tmp_path / 'full' / 'f'}: exists; use --force to replace it"


def test_imports_refuse_to_overwrite_like_exports(sample_case, tmp_path):
    seg = tmp_path / "seg.dcm"
    assert cli("seg", "export", "--series", sample_case.series_dir, "--segmentation", sample_case.segmentation_path,
               "--out", seg, "--type", "binary").returncode == 0
    out = tmp_path / "back.seg.nrrd"
    out.write_bytes(b"precious")
    result = cli("seg", "import", seg, "--out", out)
    assert result.returncode == 4 and "use --force" in result.stderr and out.read_bytes() == b"precious"
    assert cli("seg", "import", seg, "--out", out, "--force").returncode == 0
    assert out.read_bytes() != b"precious"
    # overlay import: the same policy for --markups-out
    markups = tmp_path / "m.mrk.json"
    markups.write_text("{}")
    result = cli("overlay", "import", "--series", sample_case.series_dir, "--out", tmp_path / "o.seg.nrrd",
                 "--markups-out", markups)
    assert result.returncode == 4 and str(markups) in result.stderr and not (tmp_path / "o.seg.nrrd").exists()


def test_preview_options_are_checked_before_the_export(sample_case, tmp_path):
    common = ["overlay", "export", "--series", sample_case.series_dir, "--segmentation",
              sample_case.segmentation_path, "--out", tmp_path / "overlay"]
    result = cli(*common, "--preview-slices", "1,2")
    assert result.returncode == 2 and "--preview-slices needs --preview" in result.stderr
    result = cli(*common, "--preview", tmp_path / "preview", "--preview-slices", "5,99")
    assert result.returncode == 3 and "--preview-slices [99]" in result.stderr
    assert not (tmp_path / "overlay").exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    result = cli(*common, "--preview", blocker)
    assert result.returncode == 4 and str(blocker) in result.stderr
    assert not (tmp_path / "overlay").exists()
