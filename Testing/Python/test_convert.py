"""api.convert / ``dicomannotembed convert``: every source encoding to every target encoding.

Sources are written from one small case (6x40x40, an axial and an oblique series): two overlapping
segments, a third apart, and three markups lying on slice planes; each is read back with
api.read_annotations_any, converted to every target, read back again and compared with what the
source held: masks voxel for voxel, control points to 1e-3 mm, names where both sides keep them.
What a target cannot hold must be in ``result.dropped``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import rotation

SHAPE = (6, 40, 40)
TARGETS = ("overlay", "seg", "sr", "rtstruct", "gsps", "seg-nrrd", "nifti")
SOURCES = ("slicer", "nifti", "seg", "sr", "rtstruct", "gsps", "overlay")
#: Targets that keep segment names / markups.
NAMED = {"overlay", "seg", "sr", "rtstruct", "seg-nrrd"}
HOLD_MARKUPS = {"overlay", "sr", "rtstruct", "gsps", "seg-nrrd"}  # seg-nrrd: with markups_out
HOLD_SEGMENTS = {"overlay", "seg", "sr", "rtstruct", "seg-nrrd", "nifti"}


def _case(folder: Path, oblique: bool):
    """(series folder, Segmentation, [Markup]) of the small case."""
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation, Terminology
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    directions = rotation([1, 2, 0.5], 25) if oblique else np.eye(3)
    geometry = VolumeGeometry.from_origin_spacing_directions(SHAPE, (-20.0, -18.0, 5.0), (0.8, 0.9, 2.0), directions)
    volume = (np.arange(np.prod(SHAPE)) % 97).reshape(SHAPE).astype(np.int16)
    dicomize_array(volume, geometry, folder / "series", modality="CT", patient_id="CONVERT")
    a = np.zeros(SHAPE, bool)
    a[1:5, 8:20, 10:24] = True
    b = np.zeros(SHAPE, bool)
    b[2:4, 14:26, 18:30] = True          # overlaps a
    c = np.zeros(SHAPE, bool)
    c[1:3, 28:34, 4:9] = True
    tissue = Terminology(Code("85756007", "SCT", "Tissue"), Code("85756007", "SCT", "Tissue"))
    mass = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("4147007", "SCT", "Mass"))
    seg = Segmentation(geometry)
    for mask, name, color, term in ((a, "Alpha", (0.9, 0.2, 0.1), tissue), (b, "Beta", (0.1, 0.8, 0.2), mass),
                                    (c, "Gamma", (0.2, 0.3, 0.9), tissue)):
        seg.add_segment(mask, Segment(id=name, name=name, color=color, terminology=term,
                                      attributes={"TrackingIdentifier": f"{name} track"}))

    def lps(ijk):
        return geometry.ijk_to_lps_points(np.asarray(ijk, float))

    markups = [Markup("point_list", "Points", lps([[12, 10, 2], [30, 25, 3]]), ["p1", "p2"], color=(1, 0, 0)),
               Markup("line", "Ruler", lps([[5, 5, 1], [25, 30, 1]]), color=(1, 1, 0)),
               Markup("closed_curve", "Loop", lps([[10, 10, 4], [20, 10, 4], [20, 22, 4], [10, 22, 4]]),
                      color=(0, 1, 1))]
    return folder / "series", seg, markups


@pytest.fixture(scope="module", params=["axial", "oblique"])
def sources(request, tmp_path_factory):
    """{source name: [input paths]} and the series folder, written once per geometry."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.files.markups_io import write_markups
    from DicomAnnotEmbedLib.files.segio import write_seg_nrrd

    folder = tmp_path_factory.mktemp(f"convert_{request.param}")
    series, seg, markups = _case(folder, request.param == "oblique")
    src = folder / "sources"
    src.mkdir()
    write_seg_nrrd(src / "case.seg.nrrd", seg)
    write_markups(src / "case.mrk.json", markups)
    slicer = [src / "case.seg.nrrd", src / "case.mrk.json"]
    found = {"slicer": slicer}
    for name, out in (("nifti", "labels.nii.gz"), ("seg", "seg.dcm"), ("sr", "sr/sr.dcm"), ("rtstruct", "rt.dcm"),
                      ("gsps", "gsps.dcm"), ("overlay", "overlay")):
        (src / out).parent.mkdir(exist_ok=True)
        api.convert(slicer, name, src / out, series=series)
        found[name] = [src / out]
    return series, found


def _masks(annotations):
    seg = annotations.segmentation
    if seg is None:
        return {}
    return {s.name: seg.mask(s) for s in seg.segments if seg.mask(s).any()}


def _same_masks(expected: dict, got: dict, by_name: bool):
    if by_name:
        assert sorted(got) == sorted(expected)
        for name, mask in expected.items():
            assert np.array_equal(got[name], mask), name
    else:  # names are lost: the same masks in any order
        key = lambda m: np.packbits(m).tobytes()  # noqa: E731
        assert sorted(map(key, got.values())) == sorted(map(key, expected.values()))


def _points(markups):
    """{name: (N, 3) LPS} of markups, point lists split into their points (SR and GSPS keep
    each point apart)."""
    out = {}
    for m in markups:
        out[m.name] = np.asarray(m.points_lps, float)
    return out


def _all_points(markups) -> np.ndarray:
    points = [np.asarray(m.points_lps, float) for m in markups]
    return np.concatenate(points) if points else np.zeros((0, 3))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("source", SOURCES)
def test_every_pair(sources, source, target, tmp_path):
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.errors import InputError

    series, found = sources
    before = api.read_annotations_any(found[source], series)
    masks, markups = _masks(before), before.markups
    out = tmp_path / {"overlay": "out", "seg-nrrd": "out.seg.nrrd", "nifti": "out.nii.gz"}.get(target, "out.dcm")
    extra = {"markups_out": tmp_path / "out.mrk.json"} if target == "seg-nrrd" else {}
    can_write = (masks and target in HOLD_SEGMENTS) or (markups and target in {"overlay", "rtstruct", "gsps"})
    if target == "sr":
        can_write = bool(masks)
    if not can_write:
        with pytest.raises(InputError):
            api.convert(found[source], target, out, series=series, **extra)
        return
    result = api.convert(found[source], target, out, series=series, **extra)
    read_back = [Path(p) for p in result.paths]
    if target == "sr":
        read_back = read_back[:1]  # the SR finds its SEG beside it
    after = api.read_annotations_any(read_back, series)

    # Segments: exact where the target holds them.
    expected = dict(masks)
    if target == "nifti" and before.segmentation.has_overlap:
        kept = {s.name for s in before.segmentation.segments if s.layer == 0}
        expected = {n: m for n, m in masks.items() if n in kept}
    if target in HOLD_SEGMENTS and target != "gsps":
        _same_masks(expected, _masks(after), by_name=target in NAMED)
    # Markups: every control point back to 1e-3 mm where the target holds them.
    if target in HOLD_MARKUPS and markups:
        got = _all_points(after.markups if target != "gsps" or not masks else after.markups)
        want = _all_points(markups)
        assert got.shape == want.shape
        order = lambda p: np.lexsort(np.round(p, 2).T)  # noqa: E731
        assert np.allclose(got[order(got)], want[order(want)], atol=1e-3)
        if target not in ("sr", "gsps") and source not in ("sr", "gsps"):
            assert sorted(m.name for m in after.markups) == sorted(m.name for m in markups)

    # What was dropped.
    text = " | ".join(result.dropped)
    if markups and target not in HOLD_MARKUPS:
        assert "markup" in text
    if masks and target == "gsps":
        assert "outlines" in text
    if target == "nifti":
        assert "names, colours and codes" in text
        if before.segmentation.has_overlap:
            assert "overlapping" in text
    if target == "sr" and markups:
        assert "markup colours" in text
    if target in ("overlay", "seg-nrrd", "rtstruct") or (target == "seg" and not markups):
        assert result.dropped == []


def test_codes_colours_tracking_carry_over(sources, tmp_path):
    """SEG -> RTSTRUCT -> .seg.nrrd keeps names, colours, codes; SEG -> SEG keeps tracking ids."""
    from DicomAnnotEmbedLib import api

    series, found = sources
    seg_in = api.read_annotations_any(found["seg"], series).segmentation
    api.convert(found["seg"], "seg", tmp_path / "again.dcm", series=series)
    again = api.read_annotations_any([tmp_path / "again.dcm"], series).segmentation
    for s in seg_in.segments:
        t = again.segment(s.name)
        assert t.terminology == s.terminology
        assert t.color_rgb8 == s.color_rgb8
        assert t.attributes.get("TrackingIdentifier") == s.attributes.get("TrackingIdentifier")
    api.convert(found["slicer"], "seg-nrrd", tmp_path / "copy.seg.nrrd", series=series)
    copy = api.read_annotations_any([tmp_path / "copy.seg.nrrd"]).segmentation
    assert [(s.name, s.color_rgb8, s.terminology) for s in copy.segments] == \
        [(s.name, s.color_rgb8, s.terminology) for s in api.read_annotations_any(found["slicer"][:1]).segmentation.segments]


def test_merge_seg_and_sr_markups_and_empty_segment(sources, tmp_path):
    """A SEG plus the markups of an SR merge (the SR's own SEG is not read twice); an empty
    segment of a .seg.nrrd stays in .seg.nrrd and is listed as dropped by a SEG."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.model import Segment
    from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd

    series, found = sources
    merged = api.read_annotations_any([found["seg"][0], found["sr"][0]], series)
    assert sorted(s.name for s in merged.segmentation.segments) == ["Alpha", "Beta", "Gamma"]
    assert len(merged.markups) >= 3
    seg = load_segmentation(found["slicer"][0])
    seg.add_segment(np.zeros(seg.geometry.shape, bool), Segment(id="Empty", name="Empty"))
    write_seg_nrrd(tmp_path / "with_empty.seg.nrrd", seg)
    kept = api.convert([tmp_path / "with_empty.seg.nrrd"], "seg-nrrd", tmp_path / "k.seg.nrrd", series=series)
    assert kept.dropped == []
    assert "Empty" in [s.name for s in load_segmentation(tmp_path / "k.seg.nrrd").segments]
    dropped = api.convert([tmp_path / "with_empty.seg.nrrd"], "seg", tmp_path / "k.dcm", series=series)
    assert any("Empty" in line for line in dropped.dropped)


def test_labelmap_seg_drops_overlap_and_split_layers_merge_back(sources, tmp_path):
    from DicomAnnotEmbedLib import api

    series, found = sources
    one = api.convert(found["slicer"][:1], "seg", tmp_path / "lm.dcm", series=series, seg_type="labelmap")
    assert any("overlapping" in line and "Beta" in line for line in one.dropped)
    split = api.convert(found["slicer"][:1], "seg", tmp_path / "split.dcm", series=series, seg_type="labelmap",
                        split_layers=True)
    assert len(split.paths) == 2 and split.dropped == []
    back = api.read_annotations_any(split.paths, series)
    _same_masks(_masks(api.read_annotations_any(found["slicer"][:1], series)), _masks(back), by_name=True)


def test_cli_convert(sources, tmp_path):
    series, found = sources
    run = lambda *a: subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    done = run("convert", found["seg"][0], found["gsps"][0], "--to", "rtstruct", "--series", series,
               "--out", tmp_path / "rt.dcm", "--interpreted-type", "gtv")
    assert done.returncode == 0, done.stderr
    assert "rtstruct written to" in done.stdout and "from 3 segments and 3 markups" in done.stdout
    done = run("convert", found["slicer"][0], "--to", "seg", "--series", series, "--out", tmp_path / "s.dcm",
               "--type", "labelmap", "--compress", "rle", "--split-layers")
    assert done.returncode == 0, done.stderr
    done = run("convert", found["slicer"][1], "--to", "seg", "--series", series, "--out", tmp_path / "m.dcm")
    assert done.returncode == 3 and "Traceback" not in done.stderr and "no segments" in done.stderr
    done = run("convert", tmp_path / "nothing.dcm", "--to", "seg", "--series", series, "--out", tmp_path / "n.dcm")
    assert done.returncode == 3 and "nothing.dcm" in done.stderr
    done = run("convert", found["slicer"][0], "--to", "gsps", "--out", tmp_path / "g.dcm")
    assert done.returncode == 2 and "--series" in done.stderr


def test_cli_targets_match_api():
    import importlib

    api_convert = importlib.import_module("DicomAnnotEmbedLib.api.convert")  # api.convert is the function
    cli_convert = importlib.import_module("DicomAnnotEmbedLib.cli.convert")

    assert cli_convert.TARGETS == api_convert.TARGETS
    assert cli_convert.SERIES_TARGETS == api_convert.SERIES_TARGETS
    from DicomAnnotEmbedLib.encodings.seg import COMPRESSIONS, SEG_TYPES

    assert (cli_convert.SEG_TYPES, cli_convert.COMPRESSIONS) == (SEG_TYPES, COMPRESSIONS)


@pytest.mark.parametrize("source", ["seg", "rtstruct", "sr", "overlay"])
def test_every_export_takes_dicom_segmentation(sources, source, tmp_path):
    """``--segmentation`` of overlay/seg/sr/rtstruct/gsps export takes a DICOM input directly: no
    temporary .seg.nrrd; the export holds the same masks."""
    from DicomAnnotEmbedLib import api

    series, found = sources
    given = found[source][0]
    want = _masks(api.read_annotations_any([given], series))
    run = lambda *a: subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    commands = {"seg": ("seg", "export", "--out", tmp_path / "s.dcm"),
                "rtstruct": ("rtstruct", "export", "--out", tmp_path / "r.dcm"),
                "overlay": ("overlay", "export", "--out", tmp_path / "ov"),
                "gsps": ("gsps", "export", "--outlines", "--out", tmp_path / "g.dcm")}
    for name, command in commands.items():
        done = run(*command, "--series", series, "--segmentation", given)
        assert done.returncode == 0, (name, done.stderr)
    for out in ("s.dcm", "r.dcm", "ov"):
        _same_masks(want, _masks(api.read_annotations_any([tmp_path / out], series)), by_name=True)
    done = run("sr", "export", "--series", series, "--seg", tmp_path / "s.dcm", "--segmentation", given,
               "--out", tmp_path / "sr.dcm")
    assert done.returncode == 0, done.stderr
    # the Python API takes the same
    result = api.export_seg(series, given, tmp_path / "api.dcm")
    assert sorted(result.segments[0]) == sorted(want)


def test_segmentation_without_segments_is_one_clear_error(sources, tmp_path):
    series, found = sources
    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "seg", "export", "--series", str(series),
                           "--segmentation", str(found["gsps"][0]), "--out", str(tmp_path / "s.dcm")],
                          capture_output=True, text=True)
    assert done.returncode == 3 and "gsps.dcm" in done.stderr and "no segments" in done.stderr
    assert "Traceback" not in done.stderr


def test_slicer_logic_convert(sources, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic

    series, found = sources
    result = logic.convert(found["rtstruct"], "seg-nrrd", tmp_path / "r.seg.nrrd", series=series,
                           markups_out=tmp_path / "r.mrk.json")
    assert result.dropped == [] and Path(result.paths[0]).is_file() and Path(result.paths[1]).is_file()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)], capture_output=True,
                          text=True)


def test_seg_import_of_several_files(sources, tmp_path):
    """``seg import`` takes the files of a --split-layers export (and SEGs of one series) into one
    segmentation, the same masks as the segmentation they were written from."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.files.segio import load_segmentation

    series, found = sources
    split = api.convert(found["slicer"][:1], "seg", tmp_path / "lm.dcm", series=series, seg_type="labelmap",
                        split_layers=True)
    assert len(split.paths) == 2
    done = _cli("seg", "import", *split.paths, "--series", series, "--out", tmp_path / "back.seg.nrrd")
    assert done.returncode == 0, done.stderr
    assert "from 2 SEGs: 3 segments on" in done.stdout
    want = _masks(api.read_annotations_any(found["slicer"][:1], series))
    back = load_segmentation(tmp_path / "back.seg.nrrd")
    _same_masks(want, {s.name: back.mask(s) for s in back.segments}, by_name=True)
    imported = api.import_seg(split.paths, series)
    assert sorted(s.name for s in imported.segmentation.segments) == sorted(want)
    # a SEG of another series is refused, naming it
    other = tmp_path / "other"
    _case(other, oblique=False)
    api.convert(found["slicer"][:1], "seg", other / "seg.dcm", series=other / "series")
    done = _cli("seg", "import", split.paths[0], other / "seg.dcm", "--out", tmp_path / "mixed.seg.nrrd")
    assert done.returncode == 3 and "different series" in done.stderr and "Traceback" not in done.stderr


def test_cli_output_says_one_segment_and_missing_once(sources, tmp_path):
    """Counts read '1 segment', not '1 segments'; what an SR import misses is said once."""
    from DicomAnnotEmbedLib.core.model import Segment
    from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd

    series, found = sources
    seg = load_segmentation(found["slicer"][0])
    one = type(seg)(seg.geometry)
    one.add_segment(seg.mask("Alpha"), Segment(id="Alpha", name="Alpha"))
    write_seg_nrrd(tmp_path / "one.seg.nrrd", one)
    done = _cli("seg", "export", "--series", series, "--segmentation", tmp_path / "one.seg.nrrd",
                "--out", tmp_path / "one.dcm")
    assert done.returncode == 0 and "1 segment:" in done.stdout, done.stdout + done.stderr
    done = _cli("seg", "import", tmp_path / "one.dcm", "--series", series, "--out", tmp_path / "one_back.seg.nrrd")
    assert done.returncode == 0 and ": 1 segment on" in done.stdout, done.stdout
    done = _cli("export-ml", tmp_path / "one.dcm", "--out", tmp_path / "ml")
    assert done.returncode == 0, done.stderr
    assert "1 case written" in done.stdout and "1 segment," in done.stdout and "seg: seg" not in done.stdout
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    sr = Path(found["sr"][0])
    (lonely / "sr.dcm").write_bytes(sr.read_bytes())  # without its SEG (with the markups' own report, if any)
    for companion in sr.parent.glob(f"{sr.stem}_markups.dcm"):
        (lonely / companion.name).write_bytes(companion.read_bytes())
    done = _cli("sr", "import", lonely / "sr.dcm", "--out", tmp_path / "sr_out")
    assert done.returncode == 0, done.stderr
    both = done.stdout + done.stderr
    assert both.count("was not found") == 1 and "missing:" not in both
    assert "1 of 1 referenced SEG loaded" not in both and "0 of 1 referenced SEG loaded" in done.stdout
    done = _cli("overlay", "import", "--series", found["overlay"][0], "--out", tmp_path / "ov.seg.nrrd")
    assert done.returncode == 0 and "3 segments written" in done.stdout
    for text in (done.stdout,):
        assert " 1 segments" not in text and " 1 markups" not in text and " 1 files" not in text


@pytest.mark.parametrize("flip", ["i", "j", "ij", "swap", "sagittal"])
def test_dicomize_standard_orientation(tmp_path, flip):
    """``dicomize --standard-orientation`` writes axial images with columns to the patient's left and
    rows to posterior whatever the volume's storage order; the default keeps the storage order; the
    voxels stay at the same LPS positions."""
    import SimpleITK as sitk

    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.core.series import load_series

    directions = {"i": np.diag([-1.0, 1, 1]), "j": np.diag([1.0, -1, 1]), "ij": np.diag([-1.0, -1, 1]),
                  "swap": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),
                  "sagittal": np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])}[flip]
    geometry = VolumeGeometry.from_origin_spacing_directions((4, 12, 10), (10.0, -5.0, 3.0), (0.7, 0.8, 2.0),
                                                             directions)
    volume = np.arange(4 * 12 * 10, dtype=np.int16).reshape(4, 12, 10)
    path = tmp_path / "flipped.nrrd"
    sitk.WriteImage(geometry.to_sitk_image(volume), str(path))
    kept = _cli("dicomize", path, "--out", tmp_path / "kept")
    standard = _cli("dicomize", path, "--out", tmp_path / "standard", "--standard-orientation")
    assert kept.returncode == 0 and standard.returncode == 0, kept.stderr + standard.stderr
    first = load_series(tmp_path / "kept")
    assert np.allclose(first.geometry.directions[:, :2], geometry.directions[:, :2])
    series = load_series(tmp_path / "standard")
    d = series.geometry.directions
    if flip == "sagittal":
        assert d[1, 0] > 0.99 and d[2, 1] < -0.99      # columns to posterior, rows to inferior
    else:
        assert d[0, 0] > 0.99 and d[1, 1] > 0.99       # columns to the left, rows to posterior
    # the same value at the same LPS position
    values = series.read_volume()
    ijk = np.argwhere(np.ones(values.shape, bool))[:, ::-1]
    lps = series.geometry.ijk_to_lps_points(ijk.astype(float))
    back = np.rint(np.linalg.solve(geometry.ijk_to_lps[:3, :3], (lps - geometry.origin).T).T).astype(int)
    assert np.array_equal(values[tuple(ijk[:, ::-1].T)], volume[back[:, 2], back[:, 1], back[:, 0]])


# --- previews -------------------------------------------------------------------------

def _rgb(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_preview_legend_lists_only_what_the_slice_shows_and_says_which_slice(tmp_path):
    from DicomAnnotEmbedLib.files.preview import render_preview

    volume = np.random.default_rng(3).normal(size=(3, 30, 40))
    a = np.zeros(volume.shape, bool)
    a[0, 5:15, 5:15] = True
    b = np.zeros(volume.shape, bool)
    b[2, 5:15, 5:15] = True
    paths = render_preview(tmp_path, volume, [0, 1], [(a, (1.0, 0, 0), "a"), (b, (0, 1.0, 0), "b")])
    first, second = _rgb(paths[0]), _rgb(paths[1])
    green = lambda img: np.all(img[30:] == [0, 255, 0], axis=-1).any()  # noqa: E731
    red = lambda img: np.all(img[30:] == [255, 0, 0], axis=-1).any()  # noqa: E731
    assert red(first) and not green(first)          # b is not on slice 0: not in its legend
    assert not red(second) and not green(second)    # nothing on slice 1: only the caption
    assert second.shape[0] > 30 and (second[30:] > 200).all(axis=-1).any()  # the caption's text
    assert not np.array_equal(first[30:45], second[30:45])  # each slice names itself


def test_preview_colours_stay_distinct():
    from DicomAnnotEmbedLib.files.preview import MIN_COLOR_DISTANCE, distinct_colors

    given = [(0.87, 0.51, 0.40), (0.88, 0.50, 0.41), (0.1, 0.2, 0.9), (0.1, 0.2, 0.9), (0.5, 0.5, 0.5)]
    chosen = distinct_colors(given)
    assert chosen[0] == given[0] and chosen[2] == given[2] and chosen[4] == given[4]  # own colours kept
    distances = [np.linalg.norm(np.subtract(p, q)) for n, p in enumerate(chosen) for q in chosen[n + 1:]]
    assert min(distances) >= MIN_COLOR_DISTANCE


@pytest.mark.parametrize("storage", ["flip_i", "flip_j", "swap"])
def test_preview_shows_radiological_convention_whatever_the_storage_order(tmp_path, storage):
    """The same patient stored in another axis order previews identically (through dicomize, the
    series reader and api.write_preview)."""
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.core.model import AnnotationSet, Segment, Segmentation
    from DicomAnnotEmbedLib.core.series import load_series
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array

    geometry = VolumeGeometry.from_origin_spacing_directions((3, 20, 24), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3))
    volume = np.zeros((3, 20, 24), np.int16)
    volume[:, 2:6, 15:22] = 800          # a block on the patient's left, anterior
    mask = np.zeros(volume.shape, bool)
    mask[1, 12:18, 3:8] = True           # a segment on the right, posterior
    if storage == "swap":
        other_volume, other_mask = volume.transpose(0, 2, 1), mask.transpose(0, 2, 1)
        matrix = np.array([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        matrix[2, 2] = 1
    else:
        axis = 2 if storage == "flip_i" else 1
        other_volume, other_mask = np.flip(volume, axis), np.flip(mask, axis)
        matrix = np.eye(4)
        column = 0 if storage == "flip_i" else 1
        matrix[column, column] = -1
        matrix[column, 3] = volume.shape[axis] - 1
    other = VolumeGeometry(other_volume.shape, geometry.ijk_to_lps @ matrix)
    previews = []
    for name, vol, geo, m in (("standard", volume, geometry, mask), ("stored", other_volume, other, other_mask)):
        dicomize_array(vol, geo, tmp_path / name, modality="CT")
        series = load_series(tmp_path / name)
        seg = Segmentation(series.geometry)
        seg.add_segment(m, Segment(id="s", name="Right posterior", color=(0.0, 1.0, 0.0)))
        previews += api.write_preview(series, AnnotationSet(series.geometry, seg), tmp_path / f"png_{name}", [1])
    standard, stored = _rgb(previews[0]), _rgb(previews[1])
    assert standard.shape == stored.shape
    assert np.array_equal(standard, stored)
    # radiological: the patient's left (the bright block) on the right of the picture, anterior on top
    rows, columns = volume.shape[1:]
    scale = max(1, 512 // max(rows, columns))
    image = standard[:rows * scale, :columns * scale, 0].astype(int)
    assert image[:, columns * scale // 2:].mean() > image[:, :columns * scale // 2].mean()
    assert image[:rows * scale // 2].mean() > image[rows * scale // 2:].mean()


def test_preview_legend_keeps_non_ascii_names(tmp_path):
    from conftest import IN_CI
    from DicomAnnotEmbedLib.files import preview

    font = preview._font()
    if "DejaVu" not in str(getattr(font, "path", "")):
        if IN_CI:
            pytest.fail("DejaVu Sans is not installed; .ci/run installs fonts-dejavu-core")
        pytest.skip("DejaVu Sans not installed")
    label = "Tumör αβγ Печень"
    assert preview._printable(label, font) == label
    png = preview.render_slice_png(tmp_path / "u.png", np.zeros((20, 20)), [(np.ones((20, 20), bool), (1, 0, 0), label)])
    assert _rgb(png).shape[1] > 60   # the strip is as wide as the whole name
    # Greek and Cyrillic letters are real glyphs, not the same 'missing' box
    assert font.getmask("α").getbbox() != font.getmask("ж").getbbox() or \
        bytes(font.getmask("α")) != bytes(font.getmask("ж"))


def test_what_is_dropped_is_said_once(sources, tmp_path, caplog):
    """One warning lists what the target cannot hold; the encoders' own 'skipped' lines are not repeated."""
    import logging

    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.model import Markup, Segment
    from DicomAnnotEmbedLib.files.markups_io import write_markups
    from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd

    series, found = sources
    seg = load_segmentation(found["slicer"][0])
    seg.add_segment(np.zeros(seg.geometry.shape, bool), Segment(id="Hollow", name="Hollow"))
    write_seg_nrrd(tmp_path / "e.seg.nrrd", seg)
    centre = seg.geometry.ijk_to_lps_points([[20.0, 20.0, 2.0]])[0]
    write_markups(tmp_path / "box.mrk.json", [Markup("roi", "Box", roi_center_lps=centre, roi_size=[4.0, 4.0, 4.0],
                                                     roi_axes_lps=seg.geometry.directions)])
    with caplog.at_level(logging.WARNING, logger="DicomAnnotEmbedLib"):
        result = api.convert([tmp_path / "e.seg.nrrd", tmp_path / "box.mrk.json"], "rtstruct", tmp_path / "rt.dcm",
                             series=series)
    assert any("'Hollow'" in line for line in result.dropped) and any("'Box'" in line for line in result.dropped)
    ours = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("DicomAnnotEmbedLib")]
    assert sum("Hollow" in r.getMessage() for r in ours) == 1
    assert sum("Box" in r.getMessage() for r in ours) == 1


def test_other_writers_inputs(tmp_path):
    """dcmqi's SEG, highdicom's SEG and SR, a scanner's overlay plane: detected by SOP Class UID
    (or as a series folder) and converted exactly."""
    import shutil

    from conftest import interop
    from DicomAnnotEmbedLib import api
    import importlib

    kinds = importlib.import_module("DicomAnnotEmbedLib.api.convert").input_kind
    assert kinds(interop("highdicom", "sr_document.dcm")) == "sr"
    assert kinds(interop("highdicom", "seg_image_ct_binary_overlap.dcm")) == "seg"
    series = interop("dcmqi", "ct-3slice")
    seg_file = interop("dcmqi", "liver.dcm")
    want = _masks(api.read_annotations_any([seg_file], series))
    assert want
    rt = api.convert([seg_file], "rtstruct", tmp_path / "rt.dcm", series=series)
    assert rt.dropped == []
    _same_masks(want, _masks(api.read_annotations_any([tmp_path / "rt.dcm"], series)), by_name=True)
    folder = tmp_path / "scanner"
    folder.mkdir()
    shutil.copy(interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"), folder / "image.dcm")
    out = api.convert([folder], "seg-nrrd", tmp_path / "overlay.seg.nrrd")
    assert out.annotations.segmentation is not None and _masks(out.annotations)
    # dcmqi's SR finds its SEG beside it; without a series the SEG's own grid is used
    sr = api.convert([interop("dcmqi", "sr-example", "sr.dcm")], "seg-nrrd", tmp_path / "dcmqi.seg.nrrd")
    _same_masks(_masks(api.read_annotations_any([interop("dcmqi", "sr-example", "seg.dcm")])),
                _masks(api.read_annotations_any([tmp_path / "dcmqi.seg.nrrd"])), by_name=True)
    assert sr.dropped == []


def test_csv_table_input(sample_case, tmp_path):
    """An annotation table converts like csv import reads it."""
    from conftest import REPO
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.core.series import load_series
    from DicomAnnotEmbedLib.files.csv_table import read_annotation_table

    table = REPO / "Resources" / "Examples" / "annotations_example.csv"
    series = load_series(sample_case.series_dir)
    read = read_annotation_table(table, series)
    result = api.convert([table], "seg-nrrd", tmp_path / "table.seg.nrrd", series=series,
                         markups_out=tmp_path / "table.mrk.json")
    assert result.dropped == []
    _same_masks(_masks(type(result.annotations)(series.geometry, read.segmentation)),
                _masks(api.read_annotations_any([tmp_path / "table.seg.nrrd"])), by_name=True)
    assert len(result.annotations.markups) == len(read.markups)
