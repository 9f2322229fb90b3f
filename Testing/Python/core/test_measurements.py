"""Segment and markup measurements, checked against hand computations and numpy."""
from __future__ import annotations


import numpy as np
import pytest
from conftest import rotation
from DicomAnnotEmbedLib.core import measurements
from DicomAnnotEmbedLib.core.errors import GeometryError, InputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.measurements import (
    Quantity,
    angle_degrees,
    closed_curve_area,
    closed_curve_perimeter,
    curve_length,
    line_length,
    measure_markup,
    measure_mask,
    measure_segmentation,
    segment_bounding_boxes,
)
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation

ANISOTROPIC = (0.7, 0.8, 1.5)  # i, j, k spacing in mm


def grid(shape, spacing=ANISOTROPIC, directions=None, origin=(-12.0, 30.0, 7.5)):
    return VolumeGeometry.from_origin_spacing_directions(
        shape, origin, spacing, np.eye(3) if directions is None else directions)


def sphere(geometry, radius_mm, centre_ijk):
    """Voxels whose centre lies within ``radius_mm`` of ``centre_ijk``, measured in LPS."""
    k, j, i = np.indices(geometry.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    offsets = (ijk - np.asarray(centre_ijk, dtype=float)) @ geometry.ijk_to_lps[:3, :3].T
    return (np.linalg.norm(offsets, axis=1) <= radius_mm).reshape(geometry.shape)


def box_mesh_area(a, b, c, spacing):
    """Area of the discrete marching-cubes surface of a box of a x b x c voxels (i, j, k), by
    hand: six faces spanning the outer voxel centres, twelve 45-degree chamfer strips along the
    edges (width = half the diagonal of the two spacings across), eight corner triangles with
    vertices half a spacing from the corner voxel centre along each axis."""
    si, sj, sk = spacing
    faces = 2 * ((b - 1) * sj * (c - 1) * sk + (a - 1) * si * (c - 1) * sk + (a - 1) * si * (b - 1) * sj)
    strips = 4 * ((a - 1) * si * np.hypot(sj / 2, sk / 2) + (b - 1) * sj * np.hypot(si / 2, sk / 2)
                  + (c - 1) * sk * np.hypot(si / 2, sj / 2))
    corners = 8 * 0.5 * np.sqrt((sj * sk / 4) ** 2 + (si * sk / 4) ** 2 + (si * sj / 4) ** 2)
    return faces + strips + corners


def box_mesh_diameter(a, b, c, spacing):
    """Farthest pair of that mesh: a corner-triangle vertex and the opposite one, half a voxel
    beyond the corner voxel centres along one axis: the longest of the three choices."""
    n, s = np.array([a, b, c], dtype=float), np.asarray(spacing, dtype=float)
    return max(np.linalg.norm((n - 1 + np.eye(3)[axis]) * s) for axis in range(3))


# --- volume and image statistics --------------------------------------------------------

def test_volume_is_voxel_count_times_voxel_volume_and_statistics_match_numpy():
    rng = np.random.default_rng(7)
    g = grid((12, 20, 18))
    mask = rng.random(g.shape) < 0.3
    image = rng.normal(30.0, 50.0, g.shape).astype(np.int16)
    result = measure_mask(mask, g, image, "CT")
    assert result.voxel_count == mask.sum()
    assert result.volume == Quantity(pytest.approx(mask.sum() * 0.7 * 0.8 * 1.5), "mm3")
    values = image[mask].astype(float)
    assert result.mean.value == pytest.approx(values.mean())
    assert result.standard_deviation.value == pytest.approx(values.std())  # population SD
    assert result.minimum.value == values.min() and result.maximum.value == values.max()
    for q in (result.mean, result.standard_deviation, result.minimum, result.maximum):
        assert q.unit == "[hnsf'U]"
        assert q.unit_code == Code("[hnsf'U]", "UCUM", "Hounsfield unit")
    assert result.volume.unit_code == Code("mm3", "UCUM", "cubic millimeter")
    assert result.surface_area.unit == "mm2" and result.maximum_diameter.unit == "mm"
    assert list(result.quantities()) == ["volume", "surface_area", "maximum_diameter", "mean",
                                         "standard_deviation", "minimum", "maximum"]


def test_image_unit_follows_modality_and_override():
    g = grid((4, 5, 6))
    mask = np.zeros(g.shape, bool)
    mask[1:3, 1:4, 2:5] = True
    image = np.arange(mask.size, dtype=np.float32).reshape(g.shape)
    assert measure_mask(mask, g, image, "MR").mean.unit == "1"
    assert measure_mask(mask, g, image).mean.unit_code == Code("1", "UCUM", "no units")
    assert measure_mask(mask, g, image, "PT", image_unit="{SUVbw}g/ml").maximum.unit == "{SUVbw}g/ml"
    without_image = measure_mask(mask, g)
    assert without_image.mean is None and "mean" not in without_image.quantities()


def test_box_surface_area_and_diameter_equal_the_hand_computation():
    g = grid((10, 12, 14))
    mask = np.zeros(g.shape, bool)
    a, b, c = 5, 7, 4  # voxels along i, j, k
    mask[2:2 + c, 3:3 + b, 4:4 + a] = True
    result = measure_mask(mask, g)
    assert result.surface_area.value == pytest.approx(box_mesh_area(a, b, c, ANISOTROPIC), rel=1e-9)
    assert result.maximum_diameter.value == pytest.approx(box_mesh_diameter(a, b, c, ANISOTROPIC), rel=1e-9)


def test_single_voxel():
    g = grid((3, 3, 3))
    mask = np.zeros(g.shape, bool)
    mask[1, 1, 1] = True
    result = measure_mask(mask, g)
    assert result.volume.value == pytest.approx(0.7 * 0.8 * 1.5)
    # The mesh is the octahedron with vertices half a spacing from the centre along each axis.
    assert result.maximum_diameter.value == pytest.approx(1.5)
    assert result.surface_area.value == pytest.approx(box_mesh_area(1, 1, 1, ANISOTROPIC))


# --- sphere: surface area and diameter ---------------------------------------------------

@pytest.mark.parametrize("spacing, low, high", [
    # Discrete marching cubes on an unsmoothed binary mask makes a staircase surface: for a
    # sphere its area is ~8.5-9.5 % above 4 pi r^2 on isotropic grids at any resolution (the
    # known bias of this definition, IBSI's "surface area of mesh"), more on anisotropic grids
    # (+13 % here, where the 1.5 mm slices give coarse steps). It is never below the sphere.
    ((1.0, 1.0, 1.0), 1.04, 1.12),
    (ANISOTROPIC, 1.04, 1.16),
])
def test_sphere_surface_area_and_diameter(spacing, low, high):
    radius = 10.0
    g = grid((40, 40, 40), spacing)
    mask = sphere(g, radius, (19.3, 19.6, 19.1))
    result = measure_mask(mask, g)
    assert low < result.surface_area.value / (4 * np.pi * radius ** 2) < high
    # The voxel count volume is unbiased: within 2 % of the sphere's.
    assert result.volume.value == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.02)
    # Mesh vertices lie up to half a spacing beyond the outermost voxel centres on each side.
    assert abs(result.maximum_diameter.value - 2 * radius) <= np.linalg.norm(spacing)


def vtk_mesh(mask: np.ndarray, geometry):
    """The independent computation: VTK's discrete marching-cubes mesh of the zero-padded mask,
    mapped to LPS, its area measured by vtkMassProperties, and its vertices (LPS). The library
    computes the same area from a table of cell configurations and the diameter from boundary
    extremes, without building this mesh."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkMassProperties
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    padded = np.pad(mask, 1).astype(np.uint8)
    image = vtkImageData()
    image.SetDimensions(padded.shape[2], padded.shape[1], padded.shape[0])
    image.SetOrigin(-1.0, -1.0, -1.0)
    image.GetPointData().SetScalars(numpy_to_vtk(padded.ravel(), deep=True))
    surface = vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    surface.Update()
    mesh = surface.GetOutput()
    lps = geometry.ijk_to_lps_points(vtk_to_numpy(mesh.GetPoints().GetData()).astype(np.float64))
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(lps), deep=True))
    mesh.SetPoints(points)
    mass = vtkMassProperties()
    mass.SetInputData(mesh)
    mass.Update()
    return mass.GetSurfaceArea(), lps


def brute_force_diameter(points: np.ndarray) -> float:
    return max(float(np.linalg.norm(points - p, axis=1).max()) for p in points)


@pytest.mark.parametrize("seed", range(6))
def test_area_and_diameter_equal_vtks_whole_mesh_on_random_shapes_and_grids(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(4, 14, 3))
    directions = rotation(tuple(rng.normal(size=3)), float(rng.uniform(0, 180))) if seed % 2 else np.eye(3)
    g = grid(shape, tuple(rng.uniform(0.4, 2.5, 3)), directions=directions)
    mask = rng.random(shape) < rng.uniform(0.1, 0.7)
    area, vertices = vtk_mesh(mask, g)
    result = measure_mask(mask, g)
    assert result.surface_area.value == pytest.approx(area, rel=1e-9)
    assert result.maximum_diameter.value == pytest.approx(brute_force_diameter(vertices), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_lattice_line_reduction_keeps_every_hull_vertex(seed):
    """Candidates on the half-voxel lattice: dropping those between two others along the 13 lattice
    directions keeps every vertex of their convex hull (qhull, through scipy, as the independent
    computation), so the farthest pair is among them."""
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(seed)
    g = grid((24, 24, 24), tuple(rng.uniform(0.5, 2.0, 3)))
    mask = sphere(g, float(rng.uniform(5, 10)), tuple(rng.uniform(10, 13, 3))) | (rng.random(g.shape) < 0.02)
    _, vertices = vtk_mesh(mask, g)
    ijk = np.round(np.linalg.solve(g.ijk_to_lps[:3, :3], (vertices - g.ijk_to_lps[:3, 3]).T).T * 2) / 2
    kept = measurements._hull_candidates(ijk)
    hull = ijk[ConvexHull(ijk).vertices]
    assert len(kept) < len(ijk)
    assert {tuple(p) for p in hull} <= {tuple(p) for p in kept}


def test_diameter_after_the_lattice_line_reduction(monkeypatch):
    """Nearly round objects leave many candidates after pruning: those between two others on a
    lattice line are dropped first. The value must not change."""
    g = grid((24, 24, 24), (0.9, 1.1, 1.3))
    mask = sphere(g, 9.0, (11.3, 11.6, 11.1))
    _, vertices = vtk_mesh(mask, g)
    monkeypatch.setattr(measurements, "_LATTICE_ABOVE", 10)
    assert measure_mask(mask, g).maximum_diameter.value == pytest.approx(brute_force_diameter(vertices), rel=1e-12)


@pytest.mark.parametrize("shape", [(6, 7, 9), (3, 5, 300), (2, 290, 4), (270, 3, 3)])
def test_boundary_extremes_are_the_first_and_last_crossing_of_every_grid_line(shape):
    """Each grid line's first and last boundary crossing (half a voxel outside its first and last
    inside voxel), found line by line here; the lines longer than 255 voxels take the library's
    16-bit path."""
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.2
    offset = (3, 40, 7)
    expected = set()
    for axis in range(3):
        rest = [a for a in range(3) if a != axis]
        for u in range(shape[rest[0]]):
            for v in range(shape[rest[1]]):
                index = [u, v]
                index.insert(axis, slice(None))
                inside = np.flatnonzero(mask[tuple(index)])
                if not inside.size:
                    continue
                for position in (inside[0] - 0.5, inside[-1] + 0.5):
                    kji = [float(u + offset[rest[0]]), float(v + offset[rest[1]])]
                    kji.insert(axis, position + offset[axis])
                    expected.add((kji[2], kji[1], kji[0]))
    found = measurements._boundary_extremes(mask, offset)
    assert len(found) == len(expected)
    assert {tuple(p) for p in found} == expected


@pytest.mark.parametrize("seed, extent", [(0, 40), (1, 40), (2, 40), (3, 2_000_000)])
def test_lattice_reduction_keeps_the_points_and_order_of_a_lexsort_per_direction(seed, extent):
    """One stable sort of a combined (line, position) key per direction keeps the same points in
    the same order as sorting by position within line with np.lexsort (its earlier form), also
    on a lattice too large for the combined key in 64 bits (the lexsort itself then)."""
    rng = np.random.default_rng(seed)
    points = rng.integers(-extent, extent, (3000, 3)) / 2.0
    expected, lattice = points, np.round(points * 2.0).astype(np.int64)
    for direction, across_a, across_b in measurements._LINE_FRAMES:
        a, b = lattice @ across_a, lattice @ across_b
        line = (a - a.min()) * (int((b - b.min()).max()) + 1) + (b - b.min())
        order = np.lexsort((lattice @ direction, line))
        change = line[order][1:] != line[order][:-1]
        keep = order[np.concatenate(([True], change)) | np.concatenate((change, [True]))]
        expected, lattice = expected[keep], lattice[keep]
    assert np.array_equal(measurements._hull_candidates(points), expected)


@pytest.mark.parametrize("kind", ["sphere", "line", "two clusters", "duplicates", "flat"])
def test_farthest_pair_by_cells_is_the_brute_force_one(monkeypatch, kind):
    """The cell-pair search finds the largest distance of all pairs, also where the points fill
    one axis only, crowd two cells, repeat, or lie in a plane, and when its pairs go in many
    chunks (a small _PAIRS_AT_ONCE)."""
    rng = np.random.default_rng(len(kind))
    if kind == "sphere":
        points = rng.normal(size=(3000, 3))
        points /= np.linalg.norm(points, axis=1)[:, None] / 40.0
    elif kind == "line":
        points = np.zeros((500, 3))
        points[:, 1] = rng.uniform(-30, 30, 500)
    elif kind == "two clusters":
        points = np.concatenate([rng.normal(0, 0.5, (400, 3)), rng.normal(20, 0.5, (400, 3))])
    elif kind == "duplicates":
        points = np.repeat(rng.normal(size=(50, 3)), 8, axis=0)
    else:
        points = np.column_stack([rng.uniform(-9, 9, (700, 2)), np.full(700, 3.5)])
    expected = brute_force_diameter(points)
    for chunk in (1 << 20, 1000):
        monkeypatch.setattr(measurements, "_PAIRS_AT_ONCE", chunk)
        assert measurements._farthest_by_cells(points.T.copy(), 0.0) == pytest.approx(expected, rel=1e-12)
        assert measurements._maximum_distance(points) == pytest.approx(expected, rel=1e-12)


def test_oblique_grid_gives_the_same_values_as_the_axial_one():
    axial = grid((40, 40, 40))
    oblique = grid((40, 40, 40), directions=rotation((1, 2, 3), 37), origin=(100.0, -50.0, 20.0))
    assert not np.allclose(oblique.directions, np.eye(3))
    mask = sphere(axial, 10.0, (19.3, 19.6, 19.1))  # the same voxels: the same object, rotated
    mask[15:25, 18:21, 5:30] = True  # and a bar, so that the object is not rotation-symmetric
    image = np.random.default_rng(1).normal(size=axial.shape)
    a, o = measure_mask(mask, axial, image), measure_mask(mask, oblique, image)
    for name, quantity in a.quantities().items():
        assert getattr(o, name).value == pytest.approx(quantity.value, rel=1e-9), name


def test_anisotropic_spacing_is_applied_per_axis():
    """Swapping two spacings changes the measurements of an elongated object."""
    mask = np.zeros((10, 10, 30), bool)
    mask[4:6, 4:6, 2:28] = True  # long along i
    along_i = measure_mask(mask, grid(mask.shape, (2.0, 1.0, 1.0)))
    along_j = measure_mask(mask, grid(mask.shape, (1.0, 2.0, 1.0)))
    assert along_i.volume.value == pytest.approx(along_j.volume.value)
    assert along_i.maximum_diameter.value == pytest.approx(box_mesh_diameter(26, 2, 2, (2.0, 1.0, 1.0)))
    assert along_j.maximum_diameter.value == pytest.approx(box_mesh_diameter(26, 2, 2, (1.0, 2.0, 1.0)))


# --- segmentations ----------------------------------------------------------------------

def test_measure_segmentation_per_segment_with_overlap_and_layers():
    g = grid((20, 30, 30))
    first = np.zeros(g.shape, bool)
    first[2:8, 3:9, 4:14] = True
    second = np.zeros(g.shape, bool)
    second[5:15, 6:20, 10:25] = True  # overlaps first: goes to a second layer
    image = np.random.default_rng(5).integers(-1000, 1000, g.shape).astype(np.int16)
    seg = Segmentation.from_masks(g, [first, second], [Segment("a", "A"), Segment("b", "B")])
    assert seg.layers.shape[0] == 2
    results = measure_segmentation(seg, image, "CT")
    assert list(results) == ["a", "b"]
    for sid, mask in (("a", first), ("b", second)):
        direct = measure_mask(mask, g, image, "CT")
        for name, quantity in direct.quantities().items():
            assert getattr(results[sid], name) == quantity, (sid, name)
        assert results[sid].segment_name == {"a": "A", "b": "B"}[sid]
    assert segment_bounding_boxes(seg)["b"] == (slice(5, 15), slice(6, 20), slice(10, 25))


def test_empty_segment_raises_input_error_naming_it():
    g = grid((5, 6, 7))
    full = np.zeros(g.shape, bool)
    full[1:3, 1:3, 1:3] = True
    seg = Segmentation.from_masks(g, [full, np.zeros(g.shape, bool)],
                                  [Segment("s1", "Liver"), Segment("s2", "Ghost nodule")])
    with pytest.raises(InputError, match="Ghost nodule"):
        measure_segmentation(seg)
    assert list(measure_segmentation(seg.without_empty_segments())) == ["s1"]
    with pytest.raises(InputError, match="'spot'.*empty"):
        measure_mask(np.zeros(g.shape, bool), g, name="spot")


def test_image_on_another_grid_is_refused():
    g = grid((5, 6, 7))
    mask = np.ones(g.shape, bool)
    with pytest.raises(GeometryError):
        measure_mask(mask, g, np.zeros((5, 6, 8)))
    with pytest.raises(InputError, match="integer or real"):
        measure_mask(mask, g, np.full(g.shape, "x"))


def test_many_segments_on_a_large_volume():
    """100 blobs on 512x512x200: bounding boxes in one pass, then per-segment crops (the time is
    the benchmark's business: Testing/benchmarks/bench_sr.py)."""
    rng = np.random.default_rng(11)
    shape = (200, 512, 512)
    g = grid(shape, (0.7, 0.7, 1.5))
    labels = np.zeros(shape, np.uint8)
    for value in range(1, 101):
        k, j, i = rng.integers((10, 30, 30), (190, 480, 480))
        r = int(rng.integers(2, 12))
        labels[k - r // 2:k + r // 2 + 1, j - r:j + r, i - r:i + r] = value
    seg = Segmentation.from_label_map(g, labels)
    image = rng.integers(-100, 100, shape).astype(np.int16)
    results = measure_segmentation(seg.without_empty_segments(), image, "CT")
    assert len(results) > 90
    some = seg.segments[0]
    assert results[some.id].voxel_count == np.count_nonzero(labels == some.label_value)


# --- markups ----------------------------------------------------------------------------

def test_line_and_curve_lengths():
    assert line_length([[0, 0, 0], [3, 4, 12]]).value == pytest.approx(13.0)
    curve = [[0, 0, 0], [3, 4, 0], [3, 4, 12], [0, 0, 12]]  # 5 + 12 + 5
    assert curve_length(curve) == Quantity(pytest.approx(22.0), "mm")
    assert closed_curve_perimeter(curve).value == pytest.approx(34.0)  # + 12 back to the start
    with pytest.raises(InputError, match="exactly 2"):
        line_length([[0, 0, 0], [1, 1, 1], [2, 2, 2]], name="ruler")


def test_closed_curve_area_on_a_tilted_plane():
    # A 3 x 4 mm rectangle and a right triangle with legs 6 and 8, rotated and moved.
    r = rotation((1, -2, 0.5), 50)
    rectangle = np.array([[0, 0, 0], [3, 0, 0], [3, 4, 0], [0, 4, 0]], float) @ r.T + (10, -20, 30)
    triangle = np.array([[0, 0, 0], [6, 0, 0], [0, 8, 0]], float) @ r.T + (-5, 5, 5)
    assert closed_curve_area(rectangle) == Quantity(pytest.approx(12.0), "mm2")
    assert closed_curve_area(triangle).value == pytest.approx(24.0)
    assert closed_curve_perimeter(triangle).value == pytest.approx(24.0)
    # A regular hexagon with side 2: area 3 sqrt(3) / 2 * 4.
    hexagon = np.array([[2 * np.cos(a), 2 * np.sin(a), 0] for a in np.arange(6) * np.pi / 3]) @ r.T
    assert closed_curve_area(hexagon).value == pytest.approx(6 * np.sqrt(3))


def test_closed_curve_area_projects_a_non_planar_curve_on_its_best_fit_plane():
    # A square of side 10 in z = 0 whose corners go up and down by 0.5 alternately: the best
    # fit plane is still z = 0 (symmetric deviations), so the projected area is 100.
    square = np.array([[0, 0, 0.5], [10, 0, -0.5], [10, 10, 0.5], [0, 10, -0.5]])
    assert closed_curve_area(square).value == pytest.approx(100.0)


def test_angle_degrees():
    assert angle_degrees([[1, 0, 0], [0, 0, 0], [0, 5, 0]]) == Quantity(pytest.approx(90.0), "deg")
    assert angle_degrees([[2, 2, 2], [1, 1, 1], [1 + np.sqrt(3), 1, 1]]).value == pytest.approx(
        np.degrees(np.arccos(1 / np.sqrt(3))))
    assert angle_degrees([[1, 0, 0], [0, 0, 0], [-3, 0, 0]]).value == pytest.approx(180.0)
    with pytest.raises(InputError, match="zero length"):
        angle_degrees([[0, 0, 0], [0, 0, 0], [1, 0, 0]], name="knee")


def test_measure_markup_by_kind():
    r = rotation((0, 1, 1), 30)
    roi = Markup("roi", "box", roi_center_lps=(1, 2, 3), roi_size=(10, 20, 5), roi_axes_lps=r)
    assert measure_markup(roi) == {"volume": Quantity(pytest.approx(1000.0), "mm3")}
    line = Markup("line", "L", points_lps=[[0, 0, 0], [0, 0, 7]])
    assert measure_markup(line)["length"].value == pytest.approx(7.0)
    closed = Markup("closed_curve", "C", points_lps=[[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0]])
    assert {k: q.value for k, q in measure_markup(closed).items()} == {"perimeter": pytest.approx(8.0),
                                                                       "area": pytest.approx(4.0)}
    angle = Markup("angle", "A", points_lps=[[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    assert measure_markup(angle)["angle"].value == pytest.approx(45.0)
    assert measure_markup(Markup("point_list", "P", points_lps=[[0, 0, 0]])) == {}


def test_the_configuration_table_is_vtks_triangulation():
    """The surface area's table of the 256 cell configurations, written into the module, is the
    triangulation VTK's discrete flying edges makes of each configuration's cell, triangle for
    triangle and vertex for vertex (the order too: it decides the areas' last bits)."""
    assert np.array_equal(measurements._configuration_triangles(), measurements._vtk_configuration_triangles())
