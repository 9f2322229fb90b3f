"""A label map written under a name SimpleITK has no writer for: an OutputError naming it (the
fuzzer's `convert --to nifti --out c.nigz` was a RuntimeError from SimpleITK), and no file left."""
from __future__ import annotations

import pytest

from DicomAnnotEmbedLib.core.errors import OutputError
from DicomAnnotEmbedLib.files.segio import load_segmentation, write_label_map


def test_unknown_label_map_suffix(sample_case, tmp_path):
    seg = load_segmentation(sample_case.segmentation_path)
    seg = type(seg)(seg.geometry, seg.layers[:1], [s for s in seg.segments if s.layer == 0])
    with pytest.raises(OutputError, match=r"c\.nigz: a label map is written as \.nrrd"):
        write_label_map(tmp_path / "c.nigz", seg)
    assert list(tmp_path.iterdir()) == []
    write_label_map(tmp_path / "c.nii.gz", seg)
    assert (tmp_path / "c.nii.gz").stat().st_size > 0
