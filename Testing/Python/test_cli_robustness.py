"""Command lines the fuzzer (Testing/fuzz, target ``cli``) found crashing, run in process through
``cli.main``: each gives exit 3 or 4 and one ``error:`` line naming the path, no traceback."""
from __future__ import annotations

import json

import pytest

from DicomAnnotEmbedLib.cli import main


def _run(capsys, argv):
    code = main(["-q"] + argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return code, lines[0]


def test_a_file_name_too_long_is_a_bad_input(capsys, sample_case, tmp_path):
    long_name = "a" * 300
    code, line = _run(capsys, ["convert", long_name, "--to", "rtstruct", "--series", str(sample_case.series_dir),
                               "--out", str(tmp_path / "c.dcm")])
    assert code == 3 and line.startswith(f"error: {long_name}: cannot read: File name too long")


def test_an_output_name_too_long_is_an_output_error(capsys, sample_case, tmp_path):
    out = tmp_path / ("b" * 300 + ".seg.nrrd")
    code, line = _run(capsys, ["convert", str(sample_case.segmentation_path), "--to", "seg-nrrd", "--out", str(out)])
    assert code == 4 and "File name too long" in line and "b" * 300 in line


def test_a_label_map_name_without_a_writer(capsys, sample_case, tmp_path):
    code, line = _run(capsys, ["convert", str(sample_case.segmentation_path), "--to", "nifti",
                               "--out", str(tmp_path / "c.nigz")])
    assert code == 4 and "c.nigz: a label map is written as" in line
    assert not any(tmp_path.iterdir())


def test_convert_with_nothing_to_write_names_the_inputs(capsys, tmp_path):
    empty = tmp_path / "empty.mrk.json"
    empty.write_text(json.dumps({"markups": []}))
    code, line = _run(capsys, ["convert", str(empty), "--to", "seg-nrrd", "--out", str(tmp_path / "c.seg.nrrd")])
    assert code == 3 and str(empty) in line, line


def test_node_config_errors_name_the_file(capsys, tmp_path):
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps({"nodes": {"pacs": {"dimse": "A@127.0.0.1:104", "timeout": "soon"}}}))
    code, line = _run(capsys, ["pacs", "echo", "pacs", "--nodes", str(nodes)])
    assert code == 3 and line.startswith(f"error: {nodes}: node 'pacs': timeout must be")


def test_an_empty_series_folder_argument_is_named(capsys, sample_case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" is the current folder to the file system
    code, line = _run(capsys, ["seg", "export", "--series", "", "--segmentation", str(sample_case.segmentation_path),
                               "--out", str(tmp_path / "seg.dcm")])
    assert code == 3 and line.startswith("error: '': no DICOM image series found"), line


def test_a_blank_file_argument_is_shown_quoted(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, line = _run(capsys, ["seg", "import", " ", "--out", str(tmp_path / "s.seg.nrrd")])
    assert code == 3 and line.startswith("error: ' ': "), line


def test_export_ml_names_the_inputs_it_could_not_convert(capsys, sample_case, tmp_path):
    """The long fuzz run (seed 8088): export-ml of a SEG and an RTSTRUCT whose series is not among
    the inputs ended with "1 input could not be converted (listed above)", naming no file."""
    seg = tmp_path / "seg.dcm"
    rt = tmp_path / "rt" / "rt.dcm"
    rt.parent.mkdir()
    from DicomAnnotEmbedLib import api

    api.export_seg(sample_case.series_dir, sample_case.segmentation_path, seg)
    api.export_rtstruct(sample_case.series_dir, sample_case.segmentation_path, rt)
    code, line = _run(capsys, ["export-ml", str(seg), str(rt), "--out", str(tmp_path / "ml")])
    assert code == 3 and line.startswith(f"error: {rt}: could not be converted (listed above); the others were "
                                         f"written to {tmp_path / 'ml'}"), line
    assert (tmp_path / "ml" / "measurements.csv").exists()
