"""Errors of the API's exports that are about every input name the input files."""
from __future__ import annotations

import json

import pytest

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import InputError


def test_overlay_export_of_markups_with_nothing_to_draw_names_the_file(sample_case, tmp_path):
    """Found by the long fuzz run: a broken .mrk.json (its list of markups emptied) gave
    "nothing to export" naming no file."""
    doc = json.loads(sample_case.markups_path.read_text())
    doc["markups"] = []
    broken = tmp_path / "broken.mrk.json"
    broken.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"broken\.mrk\.json: nothing to export"):
        api.export_overlay(sample_case.series_dir, None, [broken], tmp_path / "overlay")
    assert not (tmp_path / "overlay").exists()


def test_overlay_export_names_every_input_when_all_are_empty(sample_case, tmp_path):
    empty = tmp_path / "empty.mrk.json"
    empty.write_text(json.dumps({"markups": []}))
    empty.with_name("empty2.mrk.json").write_text(empty.read_text())
    with pytest.raises(InputError, match=r"empty\.mrk\.json, .*empty2\.mrk\.json: nothing to export") as caught:
        api.export_overlay(sample_case.series_dir, None, [empty, empty.with_name("empty2.mrk.json")], tmp_path / "o")
    assert caught.value.path is not None


def test_seg_export_of_an_empty_segmentation_names_it(sample_case, tmp_path):
    """The long fuzz run (seed 8088): a .seg.nrrd whose voxels were cut gave "nothing to export"
    naming no file."""
    from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd

    seg = load_segmentation(sample_case.segmentation_path)
    seg.layers[:] = 0
    empty = tmp_path / "empty.seg.nrrd"
    write_seg_nrrd(empty, seg)
    with pytest.raises(InputError, match=r"empty\.seg\.nrrd: nothing to export"):
        api.export_seg(sample_case.series_dir, empty, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()
