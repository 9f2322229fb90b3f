"""``csv import`` hands the SR export the segments it has in memory instead of decoding the SEG
it just wrote (issue 14): the files it writes are those of the path that reads the SEG back
(the overlay series, the SEG's pixel data and the SR, element by element, their own UIDs, dates
and the SEG's tracking UIDs aside), and the SEG's segments built from its header on the layers in
memory are those :func:`import_seg` decodes. Also: the per-slice label counts that the SEG and SR
exports use equal plain per-slice bincounts."""
from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.api.conversions import _seg_as_written
from DicomAnnotEmbedLib.core.arrays import slice_label_counts
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.encodings.seg import import_seg
from DicomAnnotEmbedLib.encodings.sr import read_seg_header
from DicomAnnotEmbedLib.files.csv_table import read_annotation_table



def _assert_same():
    """The SR element-by-element comparison of ``encodings/test_sr_speed_equivalence.py``."""
    path = Path(__file__).resolve().parents[1] / "encodings" / "test_sr_speed_equivalence.py"
    if str(path.parent) not in sys.path:  # it imports its neighbour test_sr, as pytest lets it there
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("_sr_speed_equivalence", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.assert_same


assert_same = _assert_same()

HEADER = ["finding", "label", "shape", "slice_index", "coordinates", "boundary", "inclusion", "malignancy",
          "attribute:Comment"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small CT and a table: two overlapping findings (2 layers), a hole, an LIDC-style polygon,
    attributes, a point and a polyline."""
    folder = tmp_path_factory.mktemp("csv_reuse")
    rng = np.random.default_rng(3)
    volume = (rng.normal(0, 40, (12, 80, 96)) - 300).astype(np.int16)
    geometry = VolumeGeometry.from_origin_spacing_directions(volume.shape, (-30.0, -20.0, 5.0), (0.8, 0.7, 2.0),
                                                             np.eye(3))
    dicomize_array(volume, geometry, folder / "series", patient_name="Reuse^CSV")
    rows = []
    for k in range(2, 9):
        rows.append(dict(finding="A", label="Lesion A", shape="circle", slice_index=k,
                         coordinates=f"40 40 {6 + k}", malignancy="4" if k == 2 else ""))
        rows.append(dict(finding="B", label="Lesion B", shape="rectangle", slice_index=k, coordinates="44 30 70 50",
                         **{"attribute:Comment": "next to A"} if k == 2 else {}))
        if k % 2:
            rows.append(dict(finding="B", label="Lesion B", shape="rectangle", slice_index=k, inclusion="false",
                             coordinates="60 36 64 44"))
    rows.append(dict(finding="C", label="Lesion C", shape="polygon", slice_index=5, boundary="outside",
                     coordinates="20 60 30 58 34 70 22 74"))
    rows.append(dict(finding="P", label="Landmarks", shape="point", slice_index=4, coordinates="80 20"))
    rows.append(dict(finding="L", label="Diameter", shape="polyline", slice_index=6, coordinates="10 10 30 25"))
    table = folder / "table.csv"
    with open(table, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, HEADER, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return folder, load_series(folder / "series"), table


def test_csv_import_writes_what_the_read_back_path_writes(case, monkeypatch):
    import DicomAnnotEmbedLib.encodings.seg as seg_encoding

    folder, series, table = case
    with monkeypatch.context() as patch:  # csv import must not decode the SEG it wrote
        patch.setattr(seg_encoding, "import_seg", lambda *a, **k: pytest.fail("the SEG was decoded again"))
        result = api.import_csv(table, series, folder / "now")
    assert result.conversion.segmentation.layers.shape[0] == 2  # the overlap is exercised
    # The path before: every file written by the api functions, the SR reading the SEG back.
    conversion = read_annotation_table(table, series)
    before = folder / "before"
    api.export_overlay(series, conversion.segmentation, conversion.markups, before / "overlay")
    seg = api.export_seg(series, conversion.segmentation, before / "seg.dcm", seg_type="binary")
    sr = api.export_sr(series, seg.paths[0], before / "sr.dcm", segmentation=conversion.segmentation,
                       markups=conversion.markups, evaluations=conversion.evaluations)
    now = folder / "now"
    # overlay series: pixel data and every overlay plane
    names = sorted(p.name for p in (before / "overlay").iterdir())
    assert names == sorted(p.name for p in (now / "overlay").iterdir())
    compared = 0
    for name in names:
        a, b = pydicom.dcmread(before / "overlay" / name), pydicom.dcmread(now / "overlay" / name)
        assert a.PixelData == b.PixelData
        planes = [e.tag for e in a if e.tag.group & 0xFF01 == 0x6000 and e.tag.element == 0x3000]
        assert planes == [e.tag for e in b if e.tag.group & 0xFF01 == 0x6000 and e.tag.element == 0x3000]
        assert all(a[tag].value == b[tag].value for tag in planes)
        compared += len(planes)
    assert compared >= 17  # A and B on 7 images each, C, the point and the polyline on one
    # SEG: frames and their pixel data, segment descriptions
    a, b = pydicom.dcmread(before / "seg.dcm"), pydicom.dcmread(now / "seg.dcm")
    assert a.NumberOfFrames == b.NumberOfFrames and a.PixelData == b.PixelData
    known = {str(ds.SOPInstanceUID) for ds in series.datasets} | {series.series_instance_uid}
    assert_same(a.SegmentSequence[0], b.SegmentSequence[0], known)
    # SR (and the markups' own report when the SR writes one): every element, and the records
    written = sorted(p.name for p in before.glob("sr*.dcm"))
    assert written and written == sorted(p.name for p in now.glob("sr*.dcm"))
    for name in written:
        assert assert_same(pydicom.dcmread(before / name), pydicom.dcmread(now / name), known) > 500
    values = lambda records: [(r.concept, r.value, r.unit, r.coded_value, r.text, r.segment, r.markup)  # noqa: E731
                              for r in records]
    assert values(sr.records) == values(result.sr.records) and any(r.value for r in sr.records)


def test_segments_as_written_equal_the_decoded_ones(case, tmp_path):
    _, series, table = case
    segmentation = read_annotation_table(table, series).segmentation
    for seg_type in ("binary", "labelmap"):
        if seg_type == "labelmap":  # one layer only
            segmentation.segments = [s for s in segmentation.segments if s.layer == 0]
        written = api.export_seg(series, segmentation, tmp_path / f"{seg_type}.dcm", seg_type=seg_type)
        header = read_seg_header(written.paths[0])
        mine, numbers = _seg_as_written(header, written.paths[0], written, segmentation, series)
        decoded = import_seg(written.paths[0], series)
        assert numbers == decoded.segment_numbers
        assert [(s.id, s.name, s.color, s.terminology, s.attributes, s.description) for s in mine.segments] == \
            [(s.id, s.name, s.color, s.terminology, s.attributes, s.description) for s in decoded.segmentation.segments]
        for a, b in zip(mine.segments, decoded.segmentation.segments):
            assert np.array_equal(mine.mask(a), decoded.segmentation.mask(b)), a.name
        # not vouched for: another file, another grid's segmentation, no export result
        assert _seg_as_written(header, tmp_path / "other.dcm", written, segmentation, series) is None
        assert _seg_as_written(header, written.paths[0], None, segmentation, series) is None
        assert _seg_as_written(header, written.paths[0], written, None, series) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, bool])
def test_slice_label_counts_equal_per_slice_bincounts(dtype):
    rng = np.random.default_rng(5)
    layer = np.zeros((9, 40, 50), dtype=dtype)
    for _ in range(12):  # boxes of random values on random slices, some slices empty
        k, j, i = rng.integers(0, 9), rng.integers(0, 35), rng.integers(0, 45)
        layer[k, j:j + rng.integers(1, 6), i:i + rng.integers(1, 6)] = rng.integers(1, 2 if dtype is bool else 9)
    layer[3, 0, 49] = layer[3, 39, 0] = 1  # a box from corner to corner
    for bins in (1, 3, 12):
        expected = np.stack([np.bincount(layer[k].ravel(), minlength=bins)[:bins] for k in range(9)])
        assert np.array_equal(slice_label_counts(layer, bins), expected), bins
    assert slice_label_counts(layer[:0], 4).shape == (0, 4)


def test_has_overlap_equals_the_lookup_table_reference():
    from DicomAnnotEmbedLib.core.model import Segment, Segmentation

    def reference(segmentation):  # the whole-layer lookup table it used before
        occupied = np.zeros(segmentation.geometry.shape, dtype=np.uint8)
        for layer in sorted({s.layer for s in segmentation.segments}):
            table = np.zeros(int(segmentation.layers[layer].max(initial=0)) + 1, dtype=np.uint8)
            table[[s.label_value for s in segmentation.segments if s.layer == layer and s.label_value < table.size]] = 1
            occupied += table[segmentation.layers[layer]]
        return bool((occupied > 1).any())

    geometry = VolumeGeometry.from_origin_spacing_directions((3, 6, 7), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3))
    rng = np.random.default_rng(11)
    seen = set()
    for trial in range(300):
        layers = (rng.random((2, 3, 6, 7)) < 0.05) * rng.integers(1, 4, (2, 3, 6, 7))
        described = [(layer, value) for layer in range(2) for value in range(1, 4)
                     if rng.random() < 0.8]
        segments = [Segment(f"s{n}", f"s{n}", (1.0, 0.0, 0.0), layer=layer, label_value=value)
                    for n, (layer, value) in enumerate(described)]
        segmentation = Segmentation(geometry, layers.astype(np.uint8), segments)
        seen.add(reference(segmentation))
        assert segmentation.has_overlap == reference(segmentation), (trial, described)
    assert seen == {True, False}


def test_measurements_on_the_int16_image_equal_those_on_the_float_image(case):
    """The SR export measures on ``read_int16_volume`` where the CT allows it: the same values."""
    from DicomAnnotEmbedLib.core.measurements import measure_segmentation

    _, series, table = case
    segmentation = read_annotation_table(table, series).segmentation
    whole = series.read_int16_volume()
    assert whole is not None and whole.dtype == np.int16
    assert measure_segmentation(segmentation, whole, "CT") == measure_segmentation(segmentation, series.read_volume(),
                                                                                   "CT")


def test_clipping_segments_inside_the_box_returns_them_as_the_full_clip_does():
    """``_clip_segments`` skips the Liang-Barsky clip when every end lies in the box (the table's
    shapes are drawn on windows around them): the same values, to the bit, as the clip gives."""
    from DicomAnnotEmbedLib.core.rasterize import _clip_segments

    rng = np.random.default_rng(13)
    shape = (40, 60)
    for _ in range(200):
        count = int(rng.integers(1, 12))
        starts = rng.uniform(-1, [60, 40], (count, 2))
        ends = rng.uniform(-1, [60, 40], (count, 2))
        flat = rng.random(count) < 0.2
        ends[flat, 0] = starts[flat, 0]  # vertical segments: a flat axis
        ends[0] = [60.0, 40.0] if rng.random() < 0.3 else ends[0]  # on the box's edge
        fast = _clip_segments(starts, ends, shape)
        # with one segment outside the box, the whole batch goes through the clip
        far = np.array([[-30.0, 5.0]]), np.array([[-20.0, 6.0]])
        full = _clip_segments(np.vstack([starts, far[0]]), np.vstack([ends, far[1]]), shape)
        assert np.array_equal(fast[0], full[0]) and np.array_equal(fast[1], full[1])
