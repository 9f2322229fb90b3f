"""MRML adapter on real MRML objects from the PyPI wheel ``slicer-core`` (no mocks).

Nodes are built the way Slicer builds them (scene, volume with an oblique IJKToRAS,
segmentation node with shared labelmap layers, markups nodes); results are compared with
Slicer's own labelmap export (vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import KIDNEY, LIVER, TUMOR, rotation, world_points

if importlib.util.find_spec("slicer_core") is not None:
    import slicer_core as mrml  # installed: an import failure is a real error, not a skip
else:
    mrml = pytest.importorskip("slicer_core", reason="slicer-core (Slicer's MRML as a PyPI wheel) is not installed")

from DicomAnnotEmbedLib.slicer import mrml_adapter
from DicomAnnotEmbedLib.core.errors import GeometryError, InputError
from DicomAnnotEmbedLib.core.geometry import LPS_TO_RAS, VolumeGeometry
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation, Terminology
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

FLIP3 = np.diag([-1.0, -1.0, 1.0])
BINARY = "Binary labelmap"


SHAPE = (10, 12, 14)  # K, J, I
SPACING = (0.7, 0.8, 1.5)  # i, j, k
ORIGIN_RAS = (-31.5, 12.25, -80.0)


# --- helpers: build nodes the way Slicer does, read them back with MRML only -----------------------

def matrix_np(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def matrix_vtk(array) -> vtkMatrix4x4:
    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def ijk_to_ras_of(directions_ras, spacing, origin_ras) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(directions_ras) * np.asarray(spacing)
    affine[:3, 3] = origin_ras
    return affine


def image_from_array(array: np.ndarray) -> vtkImageData:
    array = np.ascontiguousarray(array)
    image = vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True,
                                         array_type=numpy_support.get_vtk_array_type(array.dtype))
    image.GetPointData().SetScalars(scalars)
    return image


def array_from_image(image) -> np.ndarray:
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()


def oriented_mask(mask: np.ndarray, ijk_to_ras: np.ndarray):
    image = mrml.vtkOrientedImageData()
    image.ShallowCopy(image_from_array(mask.astype(np.uint8)))
    image.SetImageToWorldMatrix(matrix_vtk(ijk_to_ras))
    return image


def add_volume(scene, directions_ras, name="CT"):
    """A scalar volume set up with Slicer's own setters (spacing, origin, direction matrix)."""
    values = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 2000 - 1000).astype(np.int16)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(image_from_array(values))
    node.SetSpacing(*SPACING)
    node.SetOrigin(*ORIGIN_RAS)
    directions = np.eye(4)
    directions[:3, :3] = directions_ras
    node.SetIJKToRASDirectionMatrix(matrix_vtk(directions))
    node.CreateDefaultDisplayNodes()
    return node


def volume_ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_np(matrix)


def add_segmentation(scene, masks, ijk_to_ras, name="Segmentation", reference=None):
    """A segmentation node filled as Slicer does: one labelmap per segment, then collapsed into
    as few shared layers as the overlaps allow. ``masks``: [(id, name, color, terminology, mask)]."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if reference is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    for segment_id, segment_name, color, terminology, mask in masks:
        node.AddSegmentFromBinaryLabelmapRepresentation(oriented_mask(mask, ijk_to_ras), segment_name, list(color),
                                                        segment_id)
        if terminology:
            node.GetSegmentation().GetSegment(segment_id).SetTerminology(terminology)
    node.GetSegmentation().CollapseBinaryLabelmaps(False)
    return node


def exported_mask(scene, segmentation_node, segment_id, reference_volume) -> np.ndarray:
    """Slicer's own export of one segment to a labelmap on the reference volume's grid."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    ids = vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert mrml.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation_node, ids, labelmap, reference_volume)
    np.testing.assert_allclose(volume_ijk_to_ras(labelmap), volume_ijk_to_ras(reference_volume), atol=1e-9)
    mask = array_from_image(labelmap.GetImageData()) != 0
    scene.RemoveNode(labelmap)
    return mask


def labels(node):
    return [node.GetNthControlPointLabel(n) for n in range(node.GetNumberOfControlPoints())]


def add_markup(scene, class_name, name, points_ras, color, point_labels=None):
    node = scene.AddNewNodeByClass(class_name, name)
    node.CreateDefaultDisplayNodes()
    for n, p in enumerate(points_ras):
        node.AddControlPoint([float(v) for v in p], point_labels[n] if point_labels else "")
    node.GetDisplayNode().SetSelectedColor(*color)
    return node


def box_masks():
    liver = np.zeros(SHAPE, bool)
    liver[2:7, 3:9, 2:10] = True
    tumor = np.zeros(SHAPE, bool)
    tumor[4:6, 5:7, 6:9] = True  # inside the liver: overlap, so a second layer
    tumor[4, 5, 10] = True  # and one voxel outside it
    kidney = np.zeros(SHAPE, bool)
    kidney[1:5, 2:6, 11:14] = True  # disjoint from both
    return liver, tumor, kidney


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def scene():
    """A scene as Slicer sets it up: the Segmentations logic registers its nodes and the
    closed-surface <-> labelmap converter rules; a selection node gives markups their units."""
    scene = mrml.vtkMRMLScene()
    logic = mrml.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    scene.AddNewNodeByClass("vtkMRMLSelectionNode")
    yield scene  # the generator keeps the logic alive as long as the scene is used


@pytest.fixture
def oblique_volume(scene):
    return add_volume(scene, rotation([1.0, 2.0, 3.0], 25.0))


@pytest.fixture
def case(scene, oblique_volume):
    """An oblique volume, a segmentation with 3 segments in 2 layers, a line, a curve, a point list."""
    ijk_to_ras = volume_ijk_to_ras(oblique_volume)
    liver, tumor, kidney = box_masks()
    segmentation = add_segmentation(scene, [
        ("liver", "Liver", (0.85, 0.4, 0.3), LIVER, liver),
        ("tumor", "Tumour 1", (0.9, 0.9, 0.1), TUMOR, tumor),
        ("kidney", "Right kidney", (0.2, 0.5, 0.95), KIDNEY, kidney),
    ], ijk_to_ras, reference=oblique_volume)
    line = add_markup(scene, "vtkMRMLMarkupsLineNode", "Diameter", [[-10.5, 20.25, -70.0], [4.125, 31.0, -66.5]],
                      (0.1, 0.8, 0.3))
    t = np.linspace(0, 1, 5)
    curve = add_markup(scene, "vtkMRMLMarkupsCurveNode", "Vessel",
                       np.column_stack([-20 + 15 * t, 18 + 6 * np.sin(3 * t), -75 + 9 * t]), (0.9, 0.2, 0.6))
    points = add_markup(scene, "vtkMRMLMarkupsFiducialNode", "Lesions",
                        [[-12.0, 22.0, -72.5], [-5.5, 27.75, -69.0], [1.0, 15.0, -77.25]], (1.0, 1.0, 0.0),
                        ["L1", "L2", "L3"])
    return {"volume": oblique_volume, "segmentation": segmentation, "markups": [line, curve, points],
            "masks": {"liver": liver, "tumor": tumor, "kidney": kidney}}


# --- module import ------------------------------------------------------------------------------

def test_classes_come_from_slicer_core():
    module = mrml_adapter.mrml_module()
    assert module.vtkMRMLScene is mrml.vtkMRMLScene
    assert module.vtkSlicerSegmentationsModuleLogic is mrml.vtkSlicerSegmentationsModuleLogic


# --- volumes ------------------------------------------------------------------------------------

def test_volume_geometry_of_oblique_volume(oblique_volume):
    geometry = mrml_adapter.volume_geometry_of(oblique_volume)
    expected_ras = ijk_to_ras_of(rotation([1.0, 2.0, 3.0], 25.0), SPACING, ORIGIN_RAS)
    assert geometry.shape == SHAPE
    np.testing.assert_allclose(geometry.ijk_to_ras, expected_ras, atol=1e-9)
    np.testing.assert_allclose(geometry.ijk_to_lps, LPS_TO_RAS @ expected_ras, atol=1e-9)
    np.testing.assert_allclose(geometry.spacing, SPACING, atol=1e-9)


@pytest.mark.parametrize("label_map", [False, True])
def test_volume_node_from_array_round_trip(scene, label_map):
    directions = rotation([0.0, 1.0, 1.0], -35.0)
    directions[:, 2] *= -1  # left-handed, as some DICOM series are
    geometry = VolumeGeometry.from_origin_spacing_directions(SHAPE, (5.0, -7.5, 101.0), (0.5, 0.6, 3.0),
                                                             FLIP3 @ directions)
    values = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 7).astype(np.uint8 if label_map else np.int16)
    node = mrml_adapter.volume_node_from_array(scene, values, geometry, "Imported", label_map=label_map)
    assert node.GetClassName() == ("vtkMRMLLabelMapVolumeNode" if label_map else "vtkMRMLScalarVolumeNode")
    assert node.GetName() == "Imported"
    np.testing.assert_allclose(volume_ijk_to_ras(node), geometry.ijk_to_ras, atol=1e-9)
    np.testing.assert_array_equal(array_from_image(node.GetImageData()), values)
    assert mrml_adapter.volume_geometry_of(node).same_as(geometry)


def test_volume_node_refuses_sheared_grid(scene):
    affine = np.eye(4)
    affine[0, 1] = 0.5
    with pytest.raises(GeometryError, match="sheared"):
        mrml_adapter.volume_node_from_array(scene, np.zeros(SHAPE, np.int16), VolumeGeometry(SHAPE, affine))


# --- segmentation + markups round trip ------------------------------------------------------------

def test_round_trip_nodes_core_nodes(scene, case):
    volume, source = case["volume"], case["segmentation"]
    source_segmentation = source.GetSegmentation()
    assert source_segmentation.GetNumberOfLayers() == 2  # precondition: Slicer shares labelmaps

    core = mrml_adapter.segmentation_from_node(source, volume)
    assert core.geometry.same_as(mrml_adapter.volume_geometry_of(volume))
    np.testing.assert_allclose(core.geometry.ijk_to_lps, LPS_TO_RAS @ volume_ijk_to_ras(volume), atol=1e-9)
    assert [s.id for s in core.segments] == ["liver", "tumor", "kidney"]
    assert core.layers.shape == (2,) + SHAPE and core.has_overlap
    for segment in core.segments:  # layers and label values are Slicer's
        assert segment.layer == source_segmentation.GetLayerIndex(segment.id)
        assert segment.label_value == source_segmentation.GetSegment(segment.id).GetLabelValue()
        np.testing.assert_array_equal(core.mask(segment.id), case["masks"][segment.id])
    liver = core.segment("liver")
    assert liver.name == "Liver" and liver.color == pytest.approx((0.85, 0.4, 0.3))
    assert liver.terminology.type == Code("10200004", "SCT", "Liver")
    assert core.segment("kidney").terminology.type_modifier == Code("24028007", "SCT", "Right")
    assert core.segment("tumor").terminology.anatomic_region == Code("10200004", "SCT", "Liver")

    markups = mrml_adapter.markups_from_nodes(case["markups"])
    assert [m.kind for m in markups] == ["line", "curve", "point_list"]
    for markup, node in zip(markups, case["markups"]):
        np.testing.assert_allclose(markup.points_lps, world_points(node) @ FLIP3, atol=1e-9)  # LPS = RAS flipped
        np.testing.assert_allclose(markup.points_ras, world_points(node), atol=1e-9)
    assert markups[2].point_labels == ["L1", "L2", "L3"]

    # ... and back into new nodes
    copy = mrml_adapter.segmentation_to_node(scene, core, name="Copy", reference_volume_node=volume)
    copy_segmentation = copy.GetSegmentation()
    assert copy.GetName() == "Copy"
    assert list(copy_segmentation.GetSegmentIDs()) == list(source_segmentation.GetSegmentIDs())
    assert copy_segmentation.GetSourceRepresentationName() == BINARY
    assert copy_segmentation.GetNumberOfLayers() == 2
    for segment_id in source_segmentation.GetSegmentIDs():
        original, new = source_segmentation.GetSegment(segment_id), copy_segmentation.GetSegment(segment_id)
        assert new.GetName() == original.GetName()
        np.testing.assert_allclose(new.GetColor(), original.GetColor(), atol=1e-12)
        assert new.GetTerminology() == original.GetTerminology()
        assert copy_segmentation.GetLayerIndex(segment_id) == source_segmentation.GetLayerIndex(segment_id)
        expected = exported_mask(scene, source, segment_id, volume)
        np.testing.assert_array_equal(expected, case["masks"][segment_id])
        np.testing.assert_array_equal(exported_mask(scene, copy, segment_id, volume), expected)
    # The reference volume becomes the segmentation's editing grid.
    assert copy.GetNodeReferenceID(copy.GetReferenceImageGeometryReferenceRole()) == volume.GetID()

    new_nodes = mrml_adapter.markups_to_nodes(scene, markups)
    for node, new in zip(case["markups"], new_nodes):
        assert new.GetClassName() == node.GetClassName()
        assert new.GetName() == node.GetName()
        assert labels(new) == labels(node)
        np.testing.assert_allclose(world_points(new), world_points(node), atol=1e-6)
        np.testing.assert_allclose(new.GetDisplayNode().GetSelectedColor(), node.GetDisplayNode().GetSelectedColor(),
                                   atol=1e-12)

    # A second pass through the core gives the same model.
    again = mrml_adapter.segmentation_from_node(copy, volume)
    np.testing.assert_array_equal(again.layers, core.layers)
    assert [(s.id, s.name, s.color, s.terminology, s.layer, s.label_value) for s in again.segments] == \
        [(s.id, s.name, s.color, s.terminology, s.layer, s.label_value) for s in core.segments]


def test_geometry_argument_equals_reference_volume(case):
    volume, source = case["volume"], case["segmentation"]
    by_volume = mrml_adapter.segmentation_from_node(source, volume)
    by_geometry = mrml_adapter.segmentation_from_node(source, geometry=mrml_adapter.volume_geometry_of(volume))
    assert by_geometry.geometry.same_as(by_volume.geometry)
    np.testing.assert_array_equal(by_geometry.layers, by_volume.layers)
    with pytest.raises(InputError, match="not both"):
        mrml_adapter.segmentation_from_node(source, volume, geometry=by_volume.geometry)


def test_own_geometry_without_reference(case):
    """Without a reference, the node's grid: its reference geometry grown to hold every segment."""
    volume, source = case["volume"], case["segmentation"]
    own = mrml_adapter.segmentation_from_node(source)
    assert own.geometry.same_as(mrml_adapter.volume_geometry_of(volume))
    for segment_id, mask in case["masks"].items():
        np.testing.assert_array_equal(own.mask(segment_id), mask)


@pytest.mark.parametrize("handed", ["right", "left"])
def test_core_to_node_voxels_exact(scene, handed):
    """A core segmentation (oblique, overlapping, terminology or none) -> node -> Slicer's export."""
    directions_lps = FLIP3 @ rotation([3.0, -1.0, 2.0], 40.0)
    if handed == "left":
        directions_lps[:, 2] *= -1
    geometry = VolumeGeometry.from_origin_spacing_directions(SHAPE, (12.0, -40.5, 7.0), (1.1, 0.9, 2.0), directions_lps)
    rng = np.random.default_rng(7)
    masks = [rng.random(SHAPE) < p for p in (0.3, 0.2, 0.1)]
    terminology = Terminology(Code("123037004", "SCT", "Anatomical Structure"), Code("39607008", "SCT", "Lung"),
                              Code("24028007", "SCT", "Right"))
    core = Segmentation.from_masks(geometry, masks, [
        Segment("Segment_1", "Lung", (0.5, 0.7, 0.9), terminology, description="right lung"),
        Segment("Segment_2", "Nodule", (1.0, 0.0, 0.0)),
        Segment("Segment_3", "Other", (0.0, 1.0, 0.0)),
    ])
    assert core.layers.shape[0] == 3  # random masks overlap each other
    volume = mrml_adapter.volume_node_from_array(scene, np.zeros(SHAPE, np.int16), geometry, "grid")
    node = mrml_adapter.segmentation_to_node(scene, core, name="FromCore")
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfLayers() == 3
    for segment, mask in zip(core.segments, masks):
        np.testing.assert_array_equal(exported_mask(scene, node, segment.id, volume), mask)
        assert segmentation.GetSegment(segment.id).GetLabelValue() == segment.label_value
    assert segmentation.GetSegment("Segment_1").GetTerminology() == terminology.to_slicer_string()
    assert not segmentation.GetSegment("Segment_2").HasTerminology()  # unknown stays unknown, not "Tissue"

    back = mrml_adapter.segmentation_from_node(node)  # own grid = the core grid
    assert back.geometry.same_as(geometry)
    np.testing.assert_array_equal(back.layers, core.layers)
    assert [(s.terminology, s.description) for s in back.segments] == \
        [(s.terminology, s.description) for s in core.segments]


# --- a segmentation on another grid ends up on the reference grid ---------------------------------

def test_cropped_and_shifted_segmentation_is_pasted(scene, oblique_volume):
    ijk_to_ras = volume_ijk_to_ras(oblique_volume)
    # Same lattice, first voxel at (i, j, k) = (-2, 3, 4) of the volume: partly outside it.
    crop_ijk_to_ras = ijk_to_ras @ np.array([[1, 0, 0, -2], [0, 1, 0, 3], [0, 0, 1, 4], [0, 0, 0, 1]], float)
    crop_shape = (5, 6, 7)
    rng = np.random.default_rng(3)
    crop_mask = rng.random(crop_shape) < 0.5
    node = add_segmentation(scene, [("s", "Shifted", (1, 0, 0), None, crop_mask)], crop_ijk_to_ras)

    expected = np.zeros(SHAPE, bool)
    expected[4:9, 3:9, 0:5] = crop_mask[:, :, 2:7]
    core = mrml_adapter.segmentation_from_node(node, oblique_volume)
    assert core.geometry.same_as(mrml_adapter.volume_geometry_of(oblique_volume))
    np.testing.assert_array_equal(core.mask("s"), expected)
    np.testing.assert_array_equal(exported_mask(scene, node, "s", oblique_volume), expected)

    own = mrml_adapter.segmentation_from_node(node)  # its own (cropped, effective) extent
    np.testing.assert_array_equal(own.resampled_to(core.geometry).mask("s"), expected)


def test_finer_segmentation_is_resampled_to_reference(scene, oblique_volume):
    ijk_to_ras = volume_ijk_to_ras(oblique_volume)
    # A 3x finer grid whose voxel (1, 1, 1) + 3n centres coincide with the volume's voxel centres,
    # starting at volume voxel (i, j, k) = (3, 1, 2).
    fine = np.eye(4)
    fine[:3, :3] = ijk_to_ras[:3, :3] / 3.0
    fine[:3, 3] = ijk_to_ras[:3, :3] @ (np.array([3, 1, 2]) - 1.0 / 3.0) + ijk_to_ras[:3, 3]
    fine_shape = (15, 18, 21)  # 5 x 6 x 7 volume voxels
    kk, jj, ii = np.indices(fine_shape)
    fine_mask = (kk - 7.3) ** 2 + (jj - 9.1) ** 2 / 1.5 + (ii - 10.2) ** 2 / 2.0 < 40.0
    node = add_segmentation(scene, [("fine", "Fine", (0, 0, 1), LIVER, fine_mask)], fine)

    expected = np.zeros(SHAPE, bool)
    expected[2:7, 1:7, 3:10] = fine_mask[1::3, 1::3, 1::3]
    assert expected.any()
    core = mrml_adapter.segmentation_from_node(node, oblique_volume)
    assert core.geometry.same_as(mrml_adapter.volume_geometry_of(oblique_volume))
    np.testing.assert_array_equal(core.mask("fine"), expected)
    np.testing.assert_array_equal(exported_mask(scene, node, "fine", oblique_volume), expected)

    own = mrml_adapter.segmentation_from_node(node)  # on its own fine grid, exactly
    np.testing.assert_allclose(own.geometry.spacing, np.array(SPACING) / 3.0, atol=1e-9)
    np.testing.assert_array_equal(own.resampled_to(VolumeGeometry.from_ras_affine(fine_shape, fine)).mask("fine"),
                                  fine_mask)


def test_closed_surface_source_is_converted_and_packed(scene, case):
    """A segmentation whose source representation is a closed surface (e.g. an imported model)."""
    volume, node = case["volume"], case["segmentation"]
    segmentation = node.GetSegmentation()
    segmentation.SetConversionParameter("Smoothing factor", "0.0")  # keep the boxes boxes
    assert node.CreateClosedSurfaceRepresentation()
    segmentation.SetSourceRepresentationName("Closed surface")
    segmentation.RemoveRepresentation(BINARY)
    assert not segmentation.ContainsRepresentation(BINARY)

    core = mrml_adapter.segmentation_from_node(node, volume)
    assert core.layers.shape[0] == 2  # packed by overlap, not one layer per segment
    for segment_id, mask in case["masks"].items():
        got = core.mask(segment_id)
        np.testing.assert_array_equal(got, exported_mask(scene, node, segment_id, volume))
        dice = 2 * np.count_nonzero(got & mask) / (np.count_nonzero(got) + np.count_nonzero(mask))
        assert dice > 0.9, segment_id
    assert core.segment("liver").terminology.type.meaning == "Liver"


def test_transforms(scene, case):
    """Segmentation and markups under a linear transform are read in world coordinates; with a
    reference volume under a transform, in that volume's own frame."""
    volume, node = case["volume"], case["segmentation"]
    ijk_to_ras = volume_ijk_to_ras(volume)
    shift = np.eye(4)
    shift[:3, 3] = 2 * ijk_to_ras[:3, 0]  # two voxels along i
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    transform.SetMatrixTransformToParent(matrix_vtk(shift))
    line = case["markups"][0]
    local = world_points(line)
    node.SetAndObserveTransformNodeID(transform.GetID())
    line.SetAndObserveTransformNodeID(transform.GetID())

    moved = np.roll(case["masks"]["liver"], 2, axis=2)
    np.testing.assert_array_equal(mrml_adapter.segmentation_from_node(node, volume).mask("liver"), moved)
    own = mrml_adapter.segmentation_from_node(node)
    np.testing.assert_allclose(own.geometry.ijk_to_ras, shift @ ijk_to_ras, atol=1e-9)
    np.testing.assert_array_equal(own.mask("liver"), case["masks"]["liver"])
    (markup,) = mrml_adapter.markups_from_nodes([line])
    np.testing.assert_allclose(markup.points_ras, local + shift[:3, 3], atol=1e-9)

    # The volume under the same transform: everything is back in the volume's own frame.
    volume.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_array_equal(mrml_adapter.segmentation_from_node(node, volume).mask("liver"),
                                  case["masks"]["liver"])
    (markup,) = mrml_adapter.markups_from_nodes(line, reference_volume_node=volume)
    np.testing.assert_allclose(markup.points_ras, local, atol=1e-9)
    (new,) = mrml_adapter.markups_to_nodes(scene, [markup], reference_volume_node=volume)
    assert new.GetTransformNodeID() == transform.GetID()
    np.testing.assert_allclose(world_points(new), world_points(line), atol=1e-9)


# --- ROI, plane, angle, closed curve ------------------------------------------------------------

def test_roi_node_round_trip(scene):
    axes_ras = rotation([1.0, -2.0, 0.5], 33.0)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Box")
    roi.CreateDefaultDisplayNodes()
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = axes_ras
    roi.SetAndObserveObjectToNodeMatrix(matrix_vtk(object_to_node))
    roi.SetCenter(10.0, -20.5, 33.25)
    roi.SetSize(30.0, 12.5, 8.0)
    roi.GetDisplayNode().SetSelectedColor(0.3, 0.6, 0.9)

    (markup,) = mrml_adapter.markups_from_nodes([roi])
    assert markup.kind == "roi" and markup.name == "Box"
    np.testing.assert_allclose(markup.roi_center_lps, [-10.0, 20.5, 33.25], atol=1e-9)
    np.testing.assert_allclose(markup.roi_size, [30.0, 12.5, 8.0], atol=1e-9)
    np.testing.assert_allclose(markup.roi_axes_lps, FLIP3 @ axes_ras, atol=1e-9)
    assert markup.color == pytest.approx((0.3, 0.6, 0.9))

    (new,) = mrml_adapter.markups_to_nodes(scene, [markup])
    assert new.GetClassName() == "vtkMRMLMarkupsROINode" and new.GetROIType() == new.ROITypeBox
    center = [0.0, 0.0, 0.0]
    new.GetCenterWorld(center)
    np.testing.assert_allclose(center, [10.0, -20.5, 33.25], atol=1e-6)
    np.testing.assert_allclose(new.GetSize(), [30.0, 12.5, 8.0], atol=1e-6)
    np.testing.assert_allclose(matrix_np(new.GetObjectToWorldMatrix()), matrix_np(roi.GetObjectToWorldMatrix()),
                               atol=1e-6)
    (again,) = mrml_adapter.markups_from_nodes([new])
    np.testing.assert_allclose(again.roi_corners_lps(), markup.roi_corners_lps(), atol=1e-6)


def test_plane_node_round_trip(scene):
    """A three-point plane (auto size) -> core (centre, axes, size) -> a point-normal plane."""
    points_ras = np.array([[5.0, 10.0, -20.0], [25.0, 14.0, -18.0], [9.0, 30.0, -12.0]])
    plane = scene.AddNewNodeByClass("vtkMRMLMarkupsPlaneNode", "Cut")
    plane.CreateDefaultDisplayNodes()
    plane.SetPlaneType(plane.PlaneType3Points)
    for point in points_ras:
        plane.AddControlPoint(point.tolist())

    (markup,) = mrml_adapter.markups_from_nodes([plane])
    assert markup.kind == "plane"
    np.testing.assert_allclose(markup.points_lps, points_ras @ FLIP3, atol=1e-9)
    normal_ras = np.cross(points_ras[1] - points_ras[0], points_ras[2] - points_ras[0])
    normal_ras /= np.linalg.norm(normal_ras)
    np.testing.assert_allclose(FLIP3 @ markup.roi_axes_lps[:, 2], normal_ras, atol=1e-9)
    np.testing.assert_allclose(markup.roi_axes_lps.T @ markup.roi_axes_lps, np.eye(3), atol=1e-9)
    center_ras = FLIP3 @ markup.roi_center_lps
    assert abs(np.dot(center_ras - points_ras[0], normal_ras)) < 1e-9  # the centre lies on the plane
    assert markup.roi_size[0] > 0 and markup.roi_size[1] > 0 and markup.roi_size[2] == 0

    (new,) = mrml_adapter.markups_to_nodes(scene, [markup])
    assert new.GetClassName() == "vtkMRMLMarkupsPlaneNode"
    assert new.GetPlaneType() == new.PlaneTypePointNormal and new.GetSizeMode() == new.SizeModeAbsolute
    normal = [0.0, 0.0, 0.0]
    new.GetNormalWorld(normal)
    np.testing.assert_allclose(normal, normal_ras, atol=1e-6)
    (again,) = mrml_adapter.markups_from_nodes([new])
    np.testing.assert_allclose(again.roi_center_lps, markup.roi_center_lps, atol=1e-6)
    np.testing.assert_allclose(again.roi_axes_lps, markup.roi_axes_lps, atol=1e-6)
    np.testing.assert_allclose(again.roi_size, markup.roi_size, atol=1e-6)
    np.testing.assert_allclose(again.points_lps, markup.roi_center_lps[None], atol=1e-6)  # one point, the centre


def test_angle_and_closed_curve_round_trip(scene):
    angle = add_markup(scene, "vtkMRMLMarkupsAngleNode", "Cobb", [[0, 0, 0], [10.5, 0, 1], [10, 12.25, -3]],
                       (0.5, 0.5, 1.0))
    closed = add_markup(scene, "vtkMRMLMarkupsClosedCurveNode", "Outline",
                        [[0, 0, 5], [10, 0, 5], [10, 10, 5.5], [0, 10, 5]], (1.0, 0.0, 0.0), ["a", "b", "c", "d"])
    markups = mrml_adapter.markups_from_nodes([angle, closed])
    assert [m.kind for m in markups] == ["angle", "closed_curve"]
    new_nodes = mrml_adapter.markups_to_nodes(scene, markups)
    for node, new in zip([angle, closed], new_nodes):
        assert new.GetClassName() == node.GetClassName() and new.GetName() == node.GetName()
        assert labels(new) == labels(node)
        np.testing.assert_allclose(world_points(new), world_points(node), atol=1e-6)


def test_markup_description_and_colour(scene):
    markup = Markup("point_list", "Seeds", [[1.0, 2.0, 3.0]], ["s1"], color=(0.25, 0.5, 0.75),
                    description="from overlay group 6002")
    (node,) = mrml_adapter.markups_to_nodes(scene, [markup])
    (back,) = mrml_adapter.markups_from_nodes([node])
    assert back.description == markup.description and back.color == pytest.approx(markup.color)
    node.SetNthControlPointSelected(0, False)  # Slicer then draws with the plain colour
    node.GetDisplayNode().SetColor(0.1, 0.2, 0.3)
    assert mrml_adapter.markups_from_nodes(node)[0].color == pytest.approx((0.1, 0.2, 0.3))


# --- refusals -----------------------------------------------------------------------------------

def test_unplaced_points_are_skipped_and_bad_input_refused(scene, oblique_volume):
    points = add_markup(scene, "vtkMRMLMarkupsFiducialNode", "P", [[1, 2, 3], [4, 5, 6]], (1, 0, 0))
    points.UnsetNthControlPointPosition(1)
    (markup,) = mrml_adapter.markups_from_nodes(points)
    np.testing.assert_allclose(markup.points_lps, [[-1.0, -2.0, 3.0]])
    with pytest.raises(InputError, match="not a supported markups node"):
        mrml_adapter.markups_from_nodes([oblique_volume])
    with pytest.raises(InputError, match="at most 2"):
        mrml_adapter.markups_to_nodes(scene, [Markup("line", "Long", [[0, 0, 0], [1, 0, 0], [2, 0, 0]])])
    plane = scene.AddNewNodeByClass("vtkMRMLMarkupsPlaneNode", "Unplaced")
    with pytest.raises(InputError, match="not placed"):
        mrml_adapter.markups_from_nodes([plane])

    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Empty")
    with pytest.raises(InputError, match="no voxels and no reference geometry"):
        mrml_adapter.segmentation_from_node(empty)
    on_volume = mrml_adapter.segmentation_from_node(empty, oblique_volume)
    assert on_volume.layers.shape == (0,) + SHAPE and on_volume.segments == []

    sheared = np.eye(4)
    sheared[0, 1] = 0.3
    with pytest.raises(GeometryError, match="sheared"):
        mrml_adapter.segmentation_to_node(scene, Segmentation(VolumeGeometry(SHAPE, sheared)))
