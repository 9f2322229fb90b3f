"""files/segio.py's own readers and writer against the libraries they stand in for:

* write_seg_nrrd writes slicerio's header and compresses the voxels itself (zlib-ng, from the
  layers without a copy): the header is the one slicerio writes (but its time stamp) and the
  voxels inflate to the same bytes; slicerio and pynrrd read the file back to the segmentation.
* a plain integer .nrrd label map is read with pynrrd's header and our inflater instead of
  SimpleITK: the same labels, type and geometry as SimpleITK gives, for raw and gzip data, LPS
  and RAS spaces, oblique directions and big-endian data; anything else still goes to SimpleITK.
"""
import zlib

import numpy as np
import pytest

from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Segment, Segmentation
from DicomAnnotEmbedLib.files import segio

nrrd = pytest.importorskip("nrrd")
slicerio = pytest.importorskip("slicerio")
sitk = pytest.importorskip("SimpleITK")


def _split(path):
    data = path.read_bytes()
    end = data.index(b"\n\n") + 2
    header = b"\n".join(line for line in data[:end].split(b"\n") if not line.startswith(b"# on "))
    return header, zlib.decompress(data[end:], zlib.MAX_WBITS | 16)


def _segmentation(layers, names=None):
    rng = np.random.default_rng(3)
    geometry = VolumeGeometry.from_origin_spacing_directions(layers.shape[1:], (-10.5, 3.25, 7.0), (0.7, 0.8, 1.25),
                                                             np.eye(3))
    segments = []
    for layer in range(layers.shape[0]):
        for value in range(1, int(layers[layer].max()) + 1):
            n = len(segments)
            name = (names or {}).get(n, f"segment {n}")
            segments.append(Segment(id=f"Segment_{n}", name=name, color=tuple(rng.random(3)), layer=layer,
                                    label_value=value))
    return Segmentation(geometry, layers, segments)


def _given_to_slicerio(segmentation, tmp_path, monkeypatch) -> dict:
    """The dictionary and level write_seg_nrrd gives slicerio, taken on their way in (slicerio
    runs unchanged)."""
    captured = {}
    original = slicerio.write_segmentation

    def keep_arguments(file, data, compression_level=9, index_order=None):
        captured.update(data=data, level=compression_level)
        return original(file, data, compression_level=compression_level)

    with monkeypatch.context() as patch:
        patch.setattr(slicerio, "write_segmentation", keep_arguments)
        segio.write_seg_nrrd(tmp_path / "probe.seg.nrrd", segmentation)
    return captured


@pytest.mark.parametrize("layers_shape, dtype", [((1, 5, 7, 9), np.uint8), ((3, 4, 6, 5), np.uint8),
                                                 ((1, 3, 4, 5), np.uint16), ((2, 3, 4, 5), np.uint16)])
def test_seg_nrrd_as_slicerio_writes_it(tmp_path, monkeypatch, layers_shape, dtype):
    rng = np.random.default_rng(sum(layers_shape))
    layers = rng.integers(0, 4, layers_shape).astype(dtype)
    if dtype == np.uint16:
        layers[0, 0, 0, 0] = 300
    names = {0: "Läsion ★", 2: "Ödem\nzwei"}
    segmentation = _segmentation(layers, names)
    ours = tmp_path / "ours.seg.nrrd"
    segio.write_seg_nrrd(ours, segmentation)

    # slicerio writing the dictionary write_seg_nrrd gives it to a file itself (what write_seg_nrrd
    # did before)
    theirs = tmp_path / "theirs.seg.nrrd"
    captured = _given_to_slicerio(segmentation, tmp_path, monkeypatch)
    slicerio.write_segmentation(str(theirs), captured["data"], compression_level=captured["level"])
    assert captured["level"] == segio.SEG_NRRD_GZIP_LEVEL
    their_header, their_voxels = _split(theirs)
    our_header, our_voxels = _split(ours)
    # the same header, but for the non-ASCII texts, which write_seg_nrrd puts back as UTF-8 where
    # slicerio wrote its placeholders
    ours_lines, their_lines = our_header.split(b"\n"), their_header.split(b"\n")
    assert len(ours_lines) == len(their_lines)
    differ = [(a, b) for a, b in zip(ours_lines, their_lines) if a != b]
    assert len(differ) == sum(not segment.name.isascii() for segment in segmentation.segments) == 2
    for a, b in differ:
        assert not a.isascii() and b"DicomAnnotEmbedUtf8Text" in b and a.split(b":=")[0] == b.split(b":=")[0]
    assert our_voxels == their_voxels

    # read back: the same segmentation (slicerio and pynrrd, independent of our reader)
    data, header = nrrd.read(str(ours))
    expected = layers[0].T if layers.shape[0] == 1 else np.transpose(layers, (0, 3, 2, 1))
    np.testing.assert_array_equal(data, expected)
    assert data.dtype == layers.dtype
    read = segio.load_segmentation(ours)
    np.testing.assert_array_equal(read.layers, layers)
    assert [s.name for s in read.segments] == [s.name.replace("\n", " ") for s in segmentation.segments]
    assert np.array_equal(read.geometry.ijk_to_lps, segmentation.geometry.ijk_to_lps)
    assert [s["name"] for s in slicerio.read_segmentation(str(ours), skip_voxels=True)["segments"]][1] == "segment 1"


def test_seg_nrrd_without_layers(tmp_path):
    geometry = VolumeGeometry.from_origin_spacing_directions((2, 3, 4), (0, 0, 0), (1, 1, 1), np.eye(3))
    segmentation = Segmentation(geometry, np.zeros((0, 2, 3, 4), np.uint8), [])
    segio.write_seg_nrrd(tmp_path / "empty.seg.nrrd", segmentation)
    data, header = nrrd.read(str(tmp_path / "empty.seg.nrrd"))
    assert data.shape == (4, 3, 2) and not data.any()


def _by_sitk(path):
    image = sitk.ReadImage(str(path))
    return VolumeGeometry.from_sitk(image), sitk.GetArrayFromImage(image)


def _oblique():
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return rotation @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("oblique", [False, True])
def test_nrrd_label_map_as_simpleitk_reads_it(tmp_path, dtype, compress, oblique):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, (6, 7, 8)).astype(dtype)
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.7, 0.9, 1.25))
    image.SetOrigin((-179.2, 12.5, -125.0))
    image.SetDirection((_oblique() if oblique else np.eye(3)).ravel().tolist())
    path = tmp_path / "labels.nrrd"
    sitk.WriteImage(image, str(path), useCompression=compress)
    assert segio._read_nrrd_label_map(path) is not None  # the pynrrd path, not SimpleITK's
    geometry, voxels = segio._read_nrrd_label_map(path)
    expected_geometry, expected = _by_sitk(path)
    assert voxels.dtype == expected.dtype
    np.testing.assert_array_equal(voxels, expected)
    np.testing.assert_allclose(geometry.ijk_to_lps, expected_geometry.ijk_to_lps, rtol=0, atol=1e-12)
    ours = segio.load_segmentation(path)
    np.testing.assert_array_equal(ours.layers[0], np.where(expected > 0, expected, 0))
    assert [s.label_value for s in ours.segments] == [1, 2, 3, 4]


@pytest.mark.parametrize("space", ["right-anterior-superior", "left-posterior-superior", "RAS"])
@pytest.mark.parametrize("encoding, endian", [("raw", "big"), ("gzip", "little"), ("raw", "little")])
def test_pynrrd_written_label_maps(tmp_path, space, encoding, endian):
    rng = np.random.default_rng(11)
    data = rng.integers(0, 3, (5, 6, 4)).astype(np.int16)  # (I, J, K) as pynrrd writes
    directions = _oblique().T * np.array([[0.5], [0.75], [2.0]])  # a row per axis
    header = {"space": space, "space directions": directions, "space origin": np.array([10.0, -20.0, 30.5]),
              "kinds": ["domain"] * 3, "encoding": encoding, "endian": endian}
    path = tmp_path / "labels.nrrd"
    nrrd.write(str(path), data.astype(data.dtype.newbyteorder(">" if endian == "big" else "<")), header)
    assert segio._read_nrrd_label_map(path) is not None
    geometry, voxels = segio._read_nrrd_label_map(path)
    expected_geometry, expected = _by_sitk(path)
    np.testing.assert_array_equal(voxels, expected)
    np.testing.assert_array_equal(voxels, data.T)
    np.testing.assert_allclose(geometry.ijk_to_lps, expected_geometry.ijk_to_lps, rtol=0, atol=1e-12)


def test_other_nrrds_go_to_simpleitk(tmp_path):
    rng = np.random.default_rng(5)
    floats = sitk.GetImageFromArray(rng.random((3, 4, 5)).astype(np.float32))
    sitk.WriteImage(floats, str(tmp_path / "p.nrrd"))
    assert segio._read_nrrd_label_map(tmp_path / "p.nrrd") is None
    assert segio.load_segmentation(tmp_path / "p.nrrd").fractions  # still read (by SimpleITK)
    labels = rng.integers(0, 3, (5, 6, 4)).astype(np.uint8)
    nrrd.write(str(tmp_path / "d.nhdr"), labels, {"space": "left-posterior-superior",
                                                  "space directions": np.eye(3), "encoding": "raw"})
    assert segio._read_nrrd_label_map(tmp_path / "d.nhdr") is None  # detached data
    nrrd.write(str(tmp_path / "s.nrrd"), labels, {"space dimension": 3, "space directions": np.eye(3)})
    assert segio._read_nrrd_label_map(tmp_path / "s.nrrd") is None  # no named space


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
@pytest.mark.parametrize("sizes", [b"99999 99999 99999", b"4 5 0", b"4 5 60"])
def test_sizes_the_file_cannot_hold_go_to_simpleitk(tmp_path, encoding, sizes):
    """Not allocated here: SimpleITK says what is wrong (an InputError naming the file)."""
    from DicomAnnotEmbedLib.core.errors import InputError

    path = tmp_path / "labels.nrrd"
    nrrd.write(str(path), np.ones((4, 5, 6), np.uint8),
               {"space": "left-posterior-superior", "space directions": np.eye(3), "encoding": encoding})
    path.write_bytes(path.read_bytes().replace(b"sizes: 4 5 6", b"sizes: " + sizes))
    if encoding == "raw" or sizes != b"4 5 60":  # 240 bytes can inflate from gzip's ~30: tried, then cut short
        assert segio._read_nrrd_label_map(path) is None
    with pytest.raises(InputError, match="labels.nrrd"):
        segio.load_segmentation(path)


def test_the_whole_file_fallback_writes_the_same(tmp_path, monkeypatch):
    """If slicerio or pynrrd ever stop writing the header into the sink as now, write_seg_nrrd
    falls back to slicerio writing the whole file (the former way): the same header and voxels."""
    layers = np.random.default_rng(2).integers(0, 3, (2, 3, 4, 5)).astype(np.uint8)
    segmentation = _segmentation(layers)
    ours = tmp_path / "ours.seg.nrrd"
    segio.write_seg_nrrd(ours, segmentation)
    captured = _given_to_slicerio(segmentation, tmp_path, monkeypatch)
    whole = tmp_path / "whole.seg.nrrd"  # slicerio writes the file itself
    segio._write_whole(str(whole), slicerio, captured["data"], b"", {})
    from_sink = tmp_path / "from_sink.seg.nrrd"  # the sink received the whole file
    segio._write_whole(str(from_sink), slicerio, captured["data"], whole.read_bytes(), {})
    assert _split(whole) == _split(from_sink) == _split(ours)
