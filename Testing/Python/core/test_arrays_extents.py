"""core.arrays.label_extents against scipy.ndimage.find_objects (the library it replaces on the
.seg.nrrd write path), and .seg.nrrd extents against each segment's own mask."""
import numpy as np
import pytest

from DicomAnnotEmbedLib.core.arrays import label_extents

ndimage = pytest.importorskip("scipy.ndimage")


def _expected(labels, count):
    boxes = ndimage.find_objects(labels, max_label=count)
    out = {}
    for value, box in enumerate(boxes, start=1):
        if box is not None:
            out[value] = [box[2].start, box[2].stop - 1, box[1].start, box[1].stop - 1, box[0].start, box[0].stop - 1]
    return out


def _got(labels, count, slab=16):
    lo, hi = label_extents(labels, count, slab=slab)
    return {v: [int(lo[v, 0]), int(hi[v, 0]), int(lo[v, 1]), int(hi[v, 1]), int(lo[v, 2]), int(hi[v, 2])]
            for v in range(1, count + 1) if hi[v, 0] >= 0}


@pytest.mark.parametrize("seed", range(40))
def test_label_extents_match_find_objects(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 40, 3))
    count = int(rng.integers(1, 9))
    dtype = np.uint8 if seed % 2 else np.uint16
    labels = (rng.integers(0, count + 1, shape) * (rng.random(shape) < rng.random())).astype(dtype)
    for slab in (1, 3, 16):
        assert _got(labels, count + 2, slab) == _expected(labels, count + 2)


def test_label_extents_blobs_and_edges():
    labels = np.zeros((50, 60, 70), np.uint16)
    labels[3:17, 5:9, 60:70] = 2
    labels[0, 0, 0] = 7
    labels[49, 59, 69] = 300
    labels[10:40, 20:50, 1:30] = 5
    assert _got(labels, 300) == _expected(labels, 300)


def test_seg_nrrd_extents_are_each_masks_box(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.core.model import Segment, Segmentation
    from DicomAnnotEmbedLib.files.segio import write_seg_nrrd

    rng = np.random.default_rng(1)
    shape = (12, 20, 30)
    masks = [rng.random(shape) < 0.002 * (n + 1) for n in range(4)]
    masks[1] |= masks[0]
    masks.append(np.zeros(shape, bool))
    masks[-1][11, 19, 29] = True
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (0, 0, 0), (1, 1, 1), np.eye(3))
    segmentation = Segmentation.from_masks(geometry, masks, [Segment(id=f"s{n}", name=f"s{n}") for n in range(5)])
    write_seg_nrrd(tmp_path / "a.seg.nrrd", segmentation)
    _, header = nrrd.read(str(tmp_path / "a.seg.nrrd"))
    for n, mask in enumerate(masks):
        k, j, i = np.nonzero(mask)
        expected = f"{i.min()} {i.max()} {j.min()} {j.max()} {k.min()} {k.max()}"
        assert header[f"Segment{n}_Extent"] == expected


@pytest.mark.parametrize("shape", [(3, 4, 1), (1, 1, 1), (2, 1, 5), (5, 3, 2), (1, 7, 1)])
def test_label_extents_thin_volumes(shape):
    labels = np.random.default_rng(sum(shape)).integers(0, 4, shape).astype(np.uint8)
    for slab in (1, 4):
        assert _got(labels, 3, slab) == _expected(labels, 3)
