"""Non-ASCII segment ids, names and terminology meanings in .seg.nrrd: written as UTF-8 bytes in the
header (as Slicer writes them; pynrrd writes ASCII only), read back by our loader and by ITK's
NRRD reader (the one Slicer uses)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Code, Segment, Segmentation, Terminology
from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd


def test_utf8_names_ids_and_terminology_round_trip(tmp_path):
    geometry = VolumeGeometry((4, 8, 8), np.diag([0.5, 0.5, 2.0, 1.0]))
    masks = [np.zeros(geometry.shape, bool) for _ in range(3)]
    masks[0][1, 2:4, 2:4] = masks[1][2, 5:7, 1:3] = masks[2][3, :, :] = True
    lesion = Terminology(Code("49755003", "SCT", "Morphologisch veränderte Struktur"), Code("108369006", "SCT", "Läsion"))
    segments = [Segment("tumör", "Tumör", terminology=lesion), Segment("肿瘤", "肿瘤"), Segment("lung", "Левое лёгкое")]
    written = Segmentation.from_masks(geometry, masks, segments)
    path = tmp_path / "utf8.seg.nrrd"
    write_seg_nrrd(path, written)
    header = path.read_bytes().split(b"\n\n", 1)[0]
    assert "Segment1_Name:=肿瘤\n".encode("utf-8") in header and b"DicomAnnotEmbedUtf8Text" not in header
    back = load_segmentation(path)
    assert [(s.id, s.name) for s in back.segments] == [(s.id, s.name) for s in segments]
    assert back.segments[0].terminology.type.meaning == "Läsion"
    assert back.segments[0].terminology.category.meaning == "Morphologisch veränderte Struktur"
    for segment, mask in zip(back.segments, masks):
        np.testing.assert_array_equal(back.mask(segment), mask)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    assert [reader.GetMetaData(f"Segment{n}_Name") for n in range(3)] == ["Tumör", "肿瘤", "Левое лёгкое"]
    assert "Läsion" in reader.GetMetaData("Segment0_Tags")
