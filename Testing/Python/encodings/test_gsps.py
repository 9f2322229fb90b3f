"""Grayscale Softcopy Presentation States: markups and segment outlines as graphics on the
original images, both ways, on axial, oblique and enhanced multi-frame series.

Independent readers: dciodvfy (dicom3tools), dcmpschk (DCMTK), highdicom and pydicom; the placement
of every graphic is checked from the referenced images' own headers with pydicom + numpy."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import interop, require_tool, rotation, tree_hashes
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.cli import main
from DicomAnnotEmbedLib.core.errors import InputError, OutputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Markup, Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.colors import rgb_to_dicom_lab
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.files.markups_io import read_markups, write_markups


def _axial(folder: Path) -> Path:
    geometry = VolumeGeometry((8, 64, 80), np.array([[0.7, 0, 0, -20], [0, 0.7, 0, -30], [0, 0, 2.5, 10],
                                                     [0, 0, 0, 1.0]]))
    volume = (np.random.default_rng(1).random(geometry.shape) * 200 - 50).astype(np.int16)
    dicomize_array(volume, geometry, folder)
    return folder


def _oblique(folder: Path) -> Path:
    geometry = VolumeGeometry.from_origin_spacing_directions(
        (7, 60, 70), (-12.0, 7.5, 33.0), (0.8, 0.65, 3.0), rotation([1.0, 2.0, 0.5], 27.0))
    dicomize_array(np.zeros(geometry.shape, np.int16), geometry, folder, modality="MR")
    return folder


def _multiframe(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(interop("pydicom-data", "eCT_Supplemental.dcm"), folder / "ect.dcm")
    return folder


SERIES = {"axial": _axial, "oblique": _oblique, "multiframe": _multiframe}


def _markups(geometry: VolumeGeometry):
    """One markup of each kind, control points off the slice centres, some crossing slices (LPS)."""
    depth, rows, cols = geometry.shape
    sx, sy = cols / 80.0, rows / 64.0  # the same picture on any image size

    def at(*ijk):
        ijk = np.array(ijk, dtype=float).reshape(-1, 3) * [sx, sy, 1.0]
        ijk[:, 2] = np.minimum(ijk[:, 2], depth - 1)
        return geometry.ijk_to_lps_points(ijk)

    d = depth - 1
    return [
        Markup("point_list", "Landmarks", at([10, 12, 0.2], [30.3, 40.7, d - 0.3], [50, 20, 1.45]),
               color=(0.1, 0.9, 0.2)),
        Markup("line", "Diameter", at([8, 8, 1.1], [40.5, 30.25, 1.2]), color=(1.0, 0.0, 0.0)),
        Markup("line", "Oblique line", at([5, 50, 0.1], [70, 10, d - 0.1]), color=(0.0, 0.5, 1.0)),
        Markup("angle", "Angle", at([10, 40, 1], [25, 55, 1.3], [40, 41, 0.8]), color=(1.0, 1.0, 0.0)),
        Markup("curve", "Path", at([60, 5, 0], [65, 20, 0.6], [55, 35, d], [70, 50, d]), color=(0.6, 0.2, 0.8)),
        Markup("closed_curve", "Lesion", at([20, 20, 1], [30, 18, 1.2], [34, 28, 0.9], [22, 30, 1]),
               color=(0.9, 0.4, 0.1), filled=True),
        # down, up and down again through the slices, and a closed curve across them
        Markup("curve", "Zigzag", at([10, 5, d], [20, 8, 0], [30, 12, d], [45, 6, 0.3]), color=(0.2, 0.8, 0.8)),
        Markup("closed_curve", "Tilted ring", at([50, 40, 0], [65, 42, d], [66, 58, d - 0.2], [52, 55, 0.4]),
               color=(0.8, 0.8, 0.8)),
    ]


def _slab(kk):
    return int(np.floor(kk + 0.5))


@pytest.fixture(scope="module", params=list(SERIES))
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"gsps-{request.param}")
    series_dir = SERIES[request.param](folder / "series")
    series = load_series(series_dir)
    markups = _markups(series.geometry)
    write_markups(folder / "in.mrk.json", markups, coordinate_system="RAS")
    before = tree_hashes(series_dir)
    result = api.export_gsps(series_dir, [folder / "in.mrk.json"], folder / "pr.dcm")
    assert tree_hashes(series_dir) == before  # the images are referenced, never changed
    assert sorted(p.name for p in folder.iterdir()) == ["in.mrk.json", "pr.dcm", "series"]  # no partial file
    return request.param, series, markups, folder / "pr.dcm", result


def test_checkers_accept_the_presentation_state(exported):
    _, _, _, path, _ = exported
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], errors
    checked = subprocess.run([require_tool("dcmpschk"), str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "E:" not in checked.stdout + checked.stderr and "Test passed" in checked.stdout + checked.stderr


def _as(cls, item):
    """A pydicom item viewed as one of highdicom's content classes, as highdicom's own
    ``from_dataset`` methods do (highdicom 0.28 has no reader for presentation states), so that
    its accessors parse the values."""
    import copy

    item = copy.deepcopy(item)
    item.__class__ = cls
    return item


def test_highdicom_reads_layers_colours_and_references(exported):
    import highdicom as hd

    _, series, markups, path, result = exported
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1" and ds.Modality == "PR"
    layers = list(ds.GraphicLayerSequence)
    assert [layer.GraphicLayerDescription for layer in layers] == [m.name for m in markups]
    assert [int(layer.GraphicLayerOrder) for layer in layers] == list(range(1, len(markups) + 1))
    for layer, markup in zip(layers, markups):
        lab = hd.color.CIELabColor.from_dicom_value(layer.GraphicLayerRecommendedDisplayCIELabValue)
        assert list(lab.value) == list(rgb_to_dicom_lab(markup.color))
        assert np.allclose(np.array(lab.to_rgb()) / 255.0, markup.color, atol=0.01)
    # every image of the series is referenced, none copied: the presentation applies to the series
    referenced = {item.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence
                  for item in s.ReferencedImageSequence}
    assert referenced == {s.sop_instance_uid for s in series.slices}
    graphics = [_as(hd.pr.GraphicObject, g) for item in ds.GraphicAnnotationSequence
                for g in item.get("GraphicObjectSequence", [])]
    assert len(graphics) == result.graphics
    for graphic in graphics:
        assert graphic.units == hd.pr.AnnotationUnitsValues.PIXEL
        assert graphic.graphic_type in (hd.pr.GraphicTypeValues.POINT, hd.pr.GraphicTypeValues.POLYLINE)
        data = graphic.graphic_data
        assert data.ndim == 2 and data.shape[1] == 2 and np.all(np.isfinite(data))
    texts = [_as(hd.pr.TextObject, t) for item in ds.GraphicAnnotationSequence
             for t in item.get("TextObjectSequence", [])]
    assert [t.units for t in texts] == [hd.pr.AnnotationUnitsValues.PIXEL] * len(markups)
    assert all(t.anchor_point is not None and t.text_value for t in texts)


def test_annotation_items_are_what_highdicom_builds(exported):
    """The export builds the first Graphic Annotation item of each kind of image with highdicom and
    the rest by its pattern; every item read back equals the one highdicom builds from the image."""
    import highdicom as hd

    _, series, _, path, _ = exported
    headers = _image_headers(series)
    ds = pydicom.dcmread(path)
    for item in ds.GraphicAnnotationSequence:
        [ref] = item.ReferencedImageSequence
        frame = ref.get("ReferencedFrameNumber")
        rebuilt = hd.pr.GraphicAnnotation(
            referenced_images=[headers[str(ref.ReferencedSOPInstanceUID)]],
            graphic_layer=hd.pr.GraphicLayer(item.GraphicLayer, 1),
            referenced_frame_number=None if frame is None else int(frame),
            graphic_objects=[hd.pr.GraphicObject(g.GraphicType, np.array(g.GraphicData).reshape(-1, 2),
                                                 g.GraphicAnnotationUnits, is_filled=g.get("GraphicFilled") == "Y")
                             for g in item.GraphicObjectSequence],
            text_objects=[hd.pr.TextObject(t.UnformattedTextValue, t.AnchorPointAnnotationUnits,
                                           anchor_point=tuple(t.AnchorPoint))
                          for t in item.get("TextObjectSequence", [])] or None)
        rebuilt = pydicom.Dataset.from_json(rebuilt.to_json_dict())
        assert pydicom.Dataset.from_json(item.to_json_dict()) == rebuilt


def test_round_trip_gives_every_control_point_on_its_slice(exported, tmp_path):
    kind, series, markups, path, _ = exported
    geometry = series.geometry
    back = api.import_gsps(path, series, markups_out=tmp_path / "back.mrk.json")
    assert back.ours and back.report == []
    written = read_markups(tmp_path / "back.mrk.json")
    assert [m.name for m in written] == [m.name for m in back.markups]
    by_slice = {}  # k -> imported vertices on slice k (LPS)
    for markup in back.markups:
        ijk = geometry.lps_to_ijk_points(markup.points_lps)
        assert np.allclose(ijk[:, 2], np.round(ijk[:, 2]), atol=1e-6)  # on the images' planes
        for k, point in zip(np.round(ijk[:, 2]).astype(int), markup.points_lps):
            by_slice.setdefault(int(k), []).append(point)
    for markup in markups:
        for point, (i, j, kk) in zip(markup.points_lps, geometry.lps_to_ijk_points(markup.points_lps)):
            k = _slab(kk)
            expected = geometry.ijk_to_lps_points(np.array([[i, j, k]]))[0]  # projected on its slice
            distance = np.min(np.linalg.norm(np.array(by_slice[k]) - expected, axis=1))
            assert distance < 1e-3, (kind, markup.name, k)
    # every markup comes back whole: kind, name, colour, its control points in order, each projected
    # on its slice (the pieces of a markup that crosses slices are chained back together)
    assert [m.name for m in back.markups] == [m.name for m in markups]
    for markup, got in zip(markups, back.markups):
        assert got.kind == markup.kind
        assert got.color == pytest.approx(markup.color, abs=0.01)
        ijk = geometry.lps_to_ijk_points(markup.points_lps)
        ijk[:, 2] = np.floor(ijk[:, 2] + 0.5)
        expected = geometry.ijk_to_lps_points(ijk)
        if markup.kind == "point_list":  # written slice by slice
            order = np.lexsort((np.arange(len(ijk)), ijk[:, 2]))
            expected = expected[order]
        np.testing.assert_allclose(got.points_lps, expected, atol=1e-3)


def _image_headers(series):
    """SOP Instance UID -> header, read with pydicom alone."""
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in series.files)}


def _plane_of(ds, frame):
    """Position, row and column direction vectors scaled by spacing, from the image's own header."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence[frame - 1]
        shared = ds.SharedFunctionalGroupsSequence[0]

        def group(name):
            return (per_frame.get(name) or shared.get(name))[0]

        position = group("PlanePositionSequence").ImagePositionPatient
        orientation = group("PlaneOrientationSequence").ImageOrientationPatient
        spacing = group("PixelMeasuresSequence").PixelSpacing
    else:
        position, orientation, spacing = ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    orientation = np.array(orientation, dtype=float)
    # PixelSpacing is (between rows, between columns); a column step moves along the row direction.
    return (np.array(position, dtype=float), orientation[:3] * float(spacing[1]),
            orientation[3:] * float(spacing[0]))


def _polyline_distance_in_plane(point, vertices, normal, closed):
    """Distance from ``point`` to the polyline projected along ``normal`` onto point's plane,
    and how far along the normal that nearest place is."""
    ends = np.roll(vertices, -1, axis=0) if closed else vertices[1:]
    best = (np.inf, np.inf)
    for a, b in zip(vertices[:len(ends)], ends):
        pa, pb = a - normal * np.dot(a - point, normal), b - normal * np.dot(b - point, normal)
        d = pb - pa
        t = 0.0 if np.dot(d, d) == 0 else float(np.clip(np.dot(point - pa, d) / np.dot(d, d), 0, 1))
        in_plane = np.linalg.norm(pa + t * d - point)
        if in_plane < best[0]:
            best = (in_plane, abs(np.dot(a + t * (b - a) - point, normal)))
    return best


def test_graphics_land_on_the_markups_through_the_images_own_geometry(exported):
    _, series, markups, path, _ = exported
    headers = _image_headers(series)
    ds = pydicom.dcmread(path)
    by_layer = {layer.GraphicLayer: m for layer, m in zip(ds.GraphicLayerSequence, markups)}
    half_gap = float(series.geometry.spacing[2]) / 2 + 1e-3
    checked = 0
    for item in ds.GraphicAnnotationSequence:
        [ref] = item.ReferencedImageSequence
        image = headers[str(ref.ReferencedSOPInstanceUID)]
        origin, column_step, row_step = _plane_of(image, int(ref.get("ReferencedFrameNumber", 1)))
        normal = np.cross(column_step, row_step)
        normal /= np.linalg.norm(normal)
        markup = by_layer[item.GraphicLayer]
        for graphic in item.GraphicObjectSequence:
            assert graphic.GraphicAnnotationUnits == "PIXEL"
            cr = np.array(graphic.GraphicData, dtype=float).reshape(-1, 2)
            # PIXEL units: (0, 0) is the top-left corner of the first pixel, whose centre is (0.5, 0.5)
            lps = origin + (cr[:, :1] - 0.5) * column_step + (cr[:, 1:] - 0.5) * row_step
            for point in lps:
                if markup.kind == "point_list":
                    offsets = markup.points_lps - point
                    along = offsets @ normal
                    in_plane = np.linalg.norm(offsets - along[:, None] * normal, axis=1)
                    n = int(np.argmin(in_plane))
                    assert in_plane[n] < 1e-3 and abs(along[n]) <= half_gap
                else:
                    in_plane, along = _polyline_distance_in_plane(point, markup.points_lps, normal,
                                                                  markup.kind == "closed_curve")
                    assert in_plane < 1e-3 and along <= half_gap, markup.name
                checked += 1
    assert checked >= sum(len(m.points_lps) for m in markups)


def test_texts_name_and_measure_each_markup(exported):
    _, _, markups, path, result = exported
    ds = pydicom.dcmread(path)
    texts = [(item.GraphicLayer, t) for item in ds.GraphicAnnotationSequence for t in item.get("TextObjectSequence", [])]
    assert len(texts) == len(markups) == result.texts
    values = {layer: t.UnformattedTextValue for layer, t in texts}
    layers = {layer.GraphicLayer: layer.GraphicLayerDescription for layer in ds.GraphicLayerSequence}
    for layer, value in values.items():
        assert value.startswith(layers[layer])
    diameter = next(v for layer, v in values.items() if layers[layer] == "Diameter")
    length = np.linalg.norm(markups[1].points_lps[1] - markups[1].points_lps[0])
    assert diameter == f"Diameter: length {length:.1f} mm"
    assert any(v.startswith("Angle: angle ") and v.endswith(" deg") for v in values.values())
    assert any(v.startswith("Lesion: perimeter ") and " mm2" in v for v in values.values())
    for _, text in texts:  # anchored (and shown) at a vertex of the graphic, in PIXEL units
        assert text.AnchorPointAnnotationUnits == "PIXEL" and text.AnchorPointVisibility == "Y"


def test_voi_is_the_series_window_or_the_users(exported, tmp_path):
    kind, series, markups, path, _ = exported
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    if "WindowCenter" in source:
        centre, width = source.WindowCenter, source.WindowWidth
    else:
        voi = source.SharedFunctionalGroupsSequence[0].get("FrameVOILUTSequence") or \
            source.PerFrameFunctionalGroupsSequence[0].FrameVOILUTSequence
        centre, width = voi[0].WindowCenter, voi[0].WindowWidth
    first = (lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v))
    [voi] = ds.SoftcopyVOILUTSequence
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (first(centre), first(width))
    api.export_gsps(series, markups[:1], tmp_path / "w.dcm", window=(40, 400))
    [voi] = pydicom.dcmread(tmp_path / "w.dcm").SoftcopyVOILUTSequence
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (40.0, 400.0)
    assert api.import_gsps(tmp_path / "w.dcm", series).window == (40.0, 400.0)


def test_graphics_reference_frames_of_multiframe_images_only(exported):
    kind, series, _, path, _ = exported
    ds = pydicom.dcmread(path)
    frames = [item.ReferencedImageSequence[0].get("ReferencedFrameNumber") for item in ds.GraphicAnnotationSequence]
    if kind == "multiframe":  # both frames of the one file carry graphics, each by its number
        assert {int(f) for f in frames} == {1, 2}
        assert len({item.ReferencedImageSequence[0].ReferencedSOPInstanceUID for item in ds.GraphicAnnotationSequence}) == 1
    else:
        assert frames == [None] * len(frames)


@pytest.mark.parametrize("kind", ["axial", "oblique"])
def test_boxes_and_planes_are_drawn_as_their_sections(kind, tmp_path):
    """ROI boxes and planes: every vertex, mapped through the image's own header, lies on the box's
    surface or in the plane's rectangle (a plane's end slices may show its section moved along the
    slice normal by at most half a slice gap)."""
    series = load_series(SERIES[kind](tmp_path / "series"))
    geometry = series.geometry
    gap = float(geometry.spacing[2])
    centre = geometry.ijk_to_lps_points(np.array([[35.0, 30.0, 3.0]]))[0]
    box_axes = rotation([0.3, 1.0, 0.2], 20.0) @ geometry.directions
    box = Markup("roi", "Box", roi_center_lps=centre, roi_size=[14.0, 9.0, 2.4 * gap], roi_axes_lps=box_axes)
    flat = Markup("plane", "Flat", roi_center_lps=centre, roi_size=[20.0, 10.0, 0.0],
                  roi_axes_lps=geometry.directions)
    tilted_axes = rotation(geometry.directions[:, 0], 35.0) @ geometry.directions
    tilted = Markup("plane", "Tilted", roi_center_lps=centre, roi_size=[16.0, 12.0, 0.0], roi_axes_lps=tilted_axes)
    out = tmp_path / "pr.dcm"
    api.export_gsps(series, [box, flat, tilted], out)
    ds = pydicom.dcmread(out)
    headers = _image_headers(series)
    by_layer = dict(zip((layer.GraphicLayer for layer in ds.GraphicLayerSequence), (box, flat, tilted)))
    slices = {}
    for item in ds.GraphicAnnotationSequence:
        markup = by_layer[item.GraphicLayer]
        origin, column_step, row_step = _plane_of(headers[str(item.ReferencedImageSequence[0].ReferencedSOPInstanceUID)], 1)
        normal = np.cross(column_step, row_step) / np.linalg.norm(np.cross(column_step, row_step))
        [graphic] = item.GraphicObjectSequence
        cr = np.array(graphic.GraphicData, dtype=float).reshape(-1, 2)
        assert graphic.GraphicType == "POLYLINE" and np.array_equal(cr[0], cr[-1]) or markup is tilted
        lps = origin + (cr[:, :1] - 0.5) * column_step + (cr[:, 1:] - 0.5) * row_step
        axes = markup.roi_axes_lps / np.linalg.norm(markup.roi_axes_lps, axis=0)
        half = np.asarray(markup.roi_size) / 2.0
        k = series.slices.index(next(r for r in series.slices
                                     if r.sop_instance_uid == item.ReferencedImageSequence[0].ReferencedSOPInstanceUID))
        corner_kk = geometry.lps_to_ijk_points(box.roi_corners_lps())[:, 2]
        for point in lps:
            if markup is box and not corner_kk.min() <= k <= corner_kk.max():
                # the box ends within this slab: its section halfway through that part, on the slice
                moved = point + np.linspace(-gap / 2, gap / 2, 401)[:, None] * normal
                inside = np.abs((moved - box.roi_center_lps) @ axes) <= half + 1e-3
                assert inside.all(axis=1).any()
                continue
            if markup is not box:  # move along the slice normal onto the plane (0 for the flat one)
                shift = -np.dot(point - markup.roi_center_lps, axes[:, 2]) / np.dot(normal, axes[:, 2])
                assert abs(shift) <= gap / 2 + 1e-6
                point = point + shift * normal
            local = np.abs(axes.T @ (point - markup.roi_center_lps))
            assert np.all(local <= half + 1e-3), markup.name
            if markup is not tilted:  # on the box's surface, the flat rectangle's border
                assert np.min(np.abs(half - local)[:2 if markup is flat else 3]) < 1e-3, markup.name
        slices.setdefault(markup.name, set()).add(item.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
    kk = geometry.lps_to_ijk_points(box.roi_corners_lps())[:, 2]  # every slab the box reaches into
    assert len(slices["Box"]) == _slab(kk.max()) - _slab(kk.min()) + 1
    assert len(slices["Flat"]) == 1 and len(slices["Tilted"]) >= 2
    errors = subprocess.run([require_tool("dciodvfy"), str(out)], capture_output=True)
    assert b"Error" not in errors.stdout + errors.stderr


# --- segment outlines ----------------------------------------------------------------------------

def _inside(shape, polygons_cr):
    """Pixel centres inside polygons given in PIXEL (column, row) units, by the even-odd rule over
    all their edges (written here, independent of the package)."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    x, y = cols + 0.5, rows + 0.5  # pixel centres in PIXEL units
    crossings = np.zeros(shape, dtype=int)
    for polygon in polygons_cr:
        a, b = polygon[:-1], polygon[1:]
        for (x0, y0), (x1, y1) in zip(a, b):
            if y0 == y1:
                continue
            spans = (np.minimum(y0, y1) <= y) & (y < np.maximum(y0, y1))
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            crossings += spans & (x < x_cross)
    return crossings % 2 == 1


def test_segment_outlines_enclose_exactly_the_segment(tmp_path):
    series_dir = _axial(tmp_path / "series")
    series = load_series(series_dir)
    k, j, i = np.indices(series.geometry.shape)
    disk = ((j - 30) ** 2 + (i - 40) ** 2 < 12 ** 2) & (k >= 2) & (k <= 4)
    ring = ((j - 30) ** 2 + (i - 40) ** 2 < 25 ** 2) & ((j - 30) ** 2 + (i - 40) ** 2 >= 18 ** 2) & (k == 5)
    edge = (j < 6) & (i < 10) & (k == 1)  # cut by the image border
    seg = Segmentation.from_masks(series.geometry, [disk, ring, edge],
                                  [Segment("d", "Disk", (1, 0, 0)), Segment("r", "Ring", (0, 1, 0)),
                                   Segment("e", "Corner", (0, 0, 1))])
    out = tmp_path / "outlines.dcm"
    result = api.export_gsps(series, [], out, segmentation=seg, outlines=True)
    assert list(result.layers) == ["OUTLINE 1", "OUTLINE 2", "OUTLINE 3"]
    ds = pydicom.dcmread(out)
    uid_to_k = {s.sop_instance_uid: n for n, s in enumerate(series.slices)}
    masks = {name: np.zeros(series.geometry.shape, bool) for name in ("OUTLINE 1", "OUTLINE 2", "OUTLINE 3")}
    for item in ds.GraphicAnnotationSequence:
        kk = uid_to_k[item.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        polygons = []
        for graphic in item.GraphicObjectSequence:
            cr = np.array(graphic.GraphicData, dtype=float).reshape(-1, 2)
            assert graphic.GraphicType == "POLYLINE" and np.array_equal(cr[0], cr[-1])  # closed
            polygons.append(cr)
        masks[item.GraphicLayer][kk] = _inside(series.geometry.shape[1:], polygons)
    np.testing.assert_array_equal(masks["OUTLINE 1"], disk)
    np.testing.assert_array_equal(masks["OUTLINE 2"], ring)  # two outlines: the hole stays out
    np.testing.assert_array_equal(masks["OUTLINE 3"], edge)
    errors = subprocess.run([require_tool("dciodvfy"), str(out)], capture_output=True, text=True)
    assert not [x for x in (errors.stdout + errors.stderr).splitlines() if x.startswith("Error")]
    back = api.import_gsps(out, series)
    assert {m.kind for m in back.markups} == {"closed_curve"}
    assert {m.name.split(" part ")[0] for m in back.markups} == {"Disk", "Ring", "Corner"}
    assert len([m for m in back.markups if m.name.startswith("Ring")]) == 2


# --- other writers' presentation states ------------------------------------------------------------

def _others_gsps(series, path):
    """A GSPS written with highdicom alone: circle, ellipse, points, polylines, an interpolated
    curve, anchored and unanchored texts, a graphic in DISPLAY units."""
    import highdicom as hd

    images = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    by_uid = {str(ds.SOPInstanceUID): ds for ds in images}
    image = by_uid[series.slices[3].sop_instance_uid]
    layer = hd.pr.GraphicLayer(layer_name="FINDINGS", order=1, description="Reader 1")
    go = hd.pr.GraphicObject
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[image], graphic_layer=layer,
        graphic_objects=[go("CIRCLE", np.array([[20.5, 20.5], [25.5, 20.5]]), "PIXEL"),
                         go("ELLIPSE", np.array([[40.0, 30.0], [60.0, 30.0], [50.0, 25.0], [50.0, 35.0]]), "PIXEL"),
                         go("POINT", np.array([[10.0, 50.0]]), "PIXEL"),
                         go("POLYLINE", np.array([[5.0, 5.0], [30.0, 8.0]]), "PIXEL"),
                         go("POLYLINE", np.array([[5.0, 40.0], [15.0, 40.0], [15.0, 55.0], [5.0, 40.0]]), "PIXEL"),
                         go("INTERPOLATED", np.array([[60.0, 5.0], [70.0, 10.0], [65.0, 20.0]]), "PIXEL"),
                         go("POLYLINE", np.array([[0.1, 0.1], [0.2, 0.2]]), "DISPLAY")],
        text_objects=[hd.pr.TextObject("Nodule A", "PIXEL", anchor_point=(26.0, 21.0)),
                      hd.pr.TextObject("Caption only", "PIXEL", bounding_box=(1.0, 1.0, 30.0, 6.0))])
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=images, series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="Other Vendor", manufacturer_model_name="Viewer", software_versions="1",
        device_serial_number="1", content_label="READ", graphic_annotations=[annotation], graphic_layers=[layer])
    gsps.save_as(path, enforce_file_format=True)


def test_other_writers_presentation_state_becomes_markups(tmp_path):
    series = load_series(_axial(tmp_path / "series"))
    _others_gsps(series, tmp_path / "other.dcm")
    back = api.import_gsps(tmp_path / "other.dcm", series, markups_out=tmp_path / "other.mrk.json")
    assert not back.ours
    kinds = sorted((m.kind, m.name) for m in back.markups)
    # numbered in the layer's order of graphics other than points; the anchored text names the circle
    assert kinds == [("closed_curve", "Nodule A"), ("closed_curve", "Reader 1 2"), ("closed_curve", "Reader 1 4"),
                     ("curve", "Reader 1 5"), ("line", "Reader 1 3"), ("point_list", "Reader 1")]
    geometry = series.geometry
    circle = next(m for m in back.markups if m.name == "Nodule A")
    ijk = geometry.lps_to_ijk_points(circle.points_lps)
    np.testing.assert_allclose(ijk[:, 2], 3.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(ijk[:, 0] - 20.0, ijk[:, 1] - 20.0), 5.0, atol=1e-6)  # centre 20.5 px
    ellipse = next(m for m in back.markups if m.name == "Reader 1 2")
    ijk = geometry.lps_to_ijk_points(ellipse.points_lps)
    assert ijk[:, 0].max() == pytest.approx(59.5) and ijk[:, 1].min() == pytest.approx(24.5)
    [points] = [m for m in back.markups if m.kind == "point_list"]
    np.testing.assert_allclose(geometry.lps_to_ijk_points(points.points_lps), [[9.5, 49.5, 3.0]], atol=1e-6)
    assert any("DISPLAY" in line for line in back.report)
    assert any("Caption only" in line for line in back.report)
    assert len(read_markups(tmp_path / "other.mrk.json")) == len(back.markups)


# --- command line and bad input --------------------------------------------------------------------

def test_cli_export_and_import(tmp_path, capsys):
    series_dir = _oblique(tmp_path / "series")
    series = load_series(series_dir)
    markups = _markups(series.geometry)
    write_markups(tmp_path / "m.mrk.json", markups)
    assert main(["gsps", "export", "--series", str(series_dir), "--markups", str(tmp_path / "m.mrk.json"),
                 "--window-center", "10", "--window-width", "100", "--out", str(tmp_path / "pr.dcm")]) == 0
    assert f"{len(markups)} layers" in capsys.readouterr().out
    assert main(["gsps", "import", str(tmp_path / "pr.dcm"), "--series", str(series_dir),
                 "--markups-out", str(tmp_path / "back.mrk.json")]) == 0
    back = read_markups(tmp_path / "back.mrk.json")
    assert [(m.name, m.kind, len(m.points_lps)) for m in back] == [(m.name, m.kind, len(m.points_lps)) for m in markups]
    # the output exists: exit 4 naming the option; bad window: exit 2
    assert main(["gsps", "export", "--series", str(series_dir), "--markups", str(tmp_path / "m.mrk.json"),
                 "--out", str(tmp_path / "pr.dcm")]) == 4
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["gsps", "export", "--series", str(series_dir), "--markups", str(tmp_path / "m.mrk.json"),
              "--window-center", "10", "--out", str(tmp_path / "x.dcm")])
    assert exit_info.value.code == 2 and "--window-width" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["gsps", "export", "--series", str(series_dir), "--outlines", "--out", str(tmp_path / "x.dcm")])
    assert exit_info.value.code == 2 and "--segmentation" in capsys.readouterr().err


def test_cli_outlines_from_a_seg_nrrd_and_interpolated_curves(tmp_path, capsys):
    from DicomAnnotEmbedLib.files.segio import write_seg_nrrd

    series_dir = _axial(tmp_path / "series")
    series = load_series(series_dir)
    k, j, i = np.indices(series.geometry.shape)
    disk = ((j - 30) ** 2 + (i - 40) ** 2 < 10 ** 2) & (k == 3)
    write_seg_nrrd(tmp_path / "s.seg.nrrd", Segmentation.from_masks(series.geometry, [disk], [Segment("d", "Disk")]))
    markups = _markups(series.geometry)
    write_markups(tmp_path / "m.mrk.json", markups)
    out = tmp_path / "pr.dcm"
    assert main(["gsps", "export", "--series", str(series_dir), "--markups", str(tmp_path / "m.mrk.json"),
                 "--segmentation", str(tmp_path / "s.seg.nrrd"), "--outlines", "--interpolated", "--no-text",
                 "--out", str(out)]) == 0
    assert "layer OUTLINE 1: Disk" in capsys.readouterr().out
    ds = pydicom.dcmread(out)
    types = {item.GraphicLayer: {g.GraphicType for g in item.GraphicObjectSequence} for item in ds.GraphicAnnotationSequence}
    assert types["CLOSED_CURVE 1"] == {"INTERPOLATED"} and types["LINE 1"] == {"POLYLINE"}
    assert types["OUTLINE 1"] == {"POLYLINE"}
    assert not any("TextObjectSequence" in item for item in ds.GraphicAnnotationSequence)
    errors = subprocess.run([require_tool("dciodvfy"), str(out)], capture_output=True)
    assert b"Error" not in errors.stdout + errors.stderr
    checked = subprocess.run([require_tool("dcmpschk"), str(out)], capture_output=True)
    assert b"E:" not in checked.stdout + checked.stderr and b"Test passed" in checked.stdout + checked.stderr
    back = api.import_gsps(out, series)
    lesion = next(m for m in back.markups if m.name == "Lesion")
    assert lesion.kind == "closed_curve" and len(lesion.points_lps) == 4
    assert any(m.name == "Disk" and m.kind == "closed_curve" for m in back.markups)


def test_bad_inputs_are_named(tmp_path, capsys):
    series_dir = _axial(tmp_path / "series")
    image = sorted(series_dir.iterdir())[0]
    before = tree_hashes(series_dir)
    assert main(["gsps", "import", str(image), "--series", str(series_dir),
                 "--markups-out", str(tmp_path / "b.mrk.json")]) == 3
    err = capsys.readouterr().err
    assert str(image) in err and "not a presentation state" in err and "Traceback" not in err
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(InputError, match="junk.dcm"):
        api.import_gsps(tmp_path / "junk.dcm", series_dir)
    series = load_series(series_dir)
    far = Markup("line", "Far away", np.array([[0, 0, 900.0], [10, 0, 900.0]]))
    with pytest.raises(InputError, match="nothing to draw"):
        api.export_gsps(series, [far], tmp_path / "far.dcm")
    assert not (tmp_path / "far.dcm").exists()
    with pytest.raises(OutputError, match="exists"):
        (tmp_path / "there.dcm").write_bytes(b"")
        api.export_gsps(series, _markups(series.geometry), tmp_path / "there.dcm")
    assert tree_hashes(series_dir) == before


def test_a_presentation_state_of_another_series_or_with_broken_graphics(tmp_path):
    series = load_series(_axial(tmp_path / "series"))
    other = load_series(_oblique(tmp_path / "other"))
    api.export_gsps(series, _markups(series.geometry), tmp_path / "pr.dcm")
    with pytest.raises(InputError, match="pr.dcm: none of its graphics"):
        api.import_gsps(tmp_path / "pr.dcm", other)
    ds = pydicom.dcmread(tmp_path / "pr.dcm")
    ds.GraphicAnnotationSequence[0].GraphicObjectSequence[0].GraphicData = [1.0, 2.0, 3.0]
    ds.save_as(tmp_path / "broken.dcm")
    back = api.import_gsps(tmp_path / "broken.dcm", series)
    assert any("3 coordinate values" in line for line in back.report)
    assert len(back.markups) >= len(_markups(series.geometry)) - 1


def test_markups_beyond_the_image_are_cut_at_its_border_and_names_keep_their_letters(tmp_path):
    series = load_series(_axial(tmp_path / "series"))
    geometry = series.geometry

    def at(*ijk):
        return geometry.ijk_to_lps_points(np.array(ijk, dtype=float))

    markups = [Markup("line", "Läsion ü", at([-50, 5, 2], [140, 30, 2.1])),
               Markup("point_list", "Punkte", at([-10, -10, 1], [5, 5, 1])),
               Markup("closed_curve", "Groß", at([-10, -10, 3], [100, -10, 3], [100, 30, 3], [-10, 30, 3])),
               Markup("roi", "Box", roi_center_lps=at([75, 30, 3])[0], roi_size=[20, 8, 6])]
    out = tmp_path / "pr.dcm"
    result = api.export_gsps(series, markups, out)
    assert len(result.skipped) == 4 and all("cut away" in line for line in result.skipped)
    ds = pydicom.dcmread(out)
    for item in ds.GraphicAnnotationSequence:
        for graphic in item.GraphicObjectSequence:
            cr = np.array(graphic.GraphicData, dtype=float).reshape(-1, 2)
            assert cr.min() >= 0 and np.all(cr <= [ds.DisplayedAreaSelectionSequence[0].DisplayedAreaBottomRightHandCorner[0],
                                                    ds.DisplayedAreaSelectionSequence[0].DisplayedAreaBottomRightHandCorner[1]])
    errors = subprocess.run([require_tool("dciodvfy"), str(out)], capture_output=True)
    assert b"Error" not in errors.stdout + errors.stderr
    checked = subprocess.run([require_tool("dcmpschk"), str(out)], capture_output=True)
    assert checked.returncode == 0 and b"E:" not in checked.stdout + checked.stderr
    back = api.import_gsps(out, series)
    names = {m.name.split(" part ")[0] for m in back.markups}
    assert names == {"Läsion ü", "Punkte", "Groß", "Box"}
    line = next(m for m in back.markups if m.name == "Läsion ü")
    ijk = geometry.lps_to_ijk_points(line.points_lps)
    assert ijk[0, 0] == pytest.approx(-0.5) and ijk[-1, 0] == pytest.approx(79.5)  # the image's edges
    [points] = [m for m in back.markups if m.kind == "point_list"]
    np.testing.assert_allclose(geometry.lps_to_ijk_points(points.points_lps), [[5, 5, 1]], atol=1e-6)
