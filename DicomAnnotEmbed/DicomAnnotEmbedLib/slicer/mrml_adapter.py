"""MRML adapter: Slicer segmentation, volume and markups nodes <-> the core model.

The same code runs inside 3D Slicer and under the PyPI wheel ``slicer-core``: it uses only MRML
node classes, ``vtkSegmentationCore`` and the static methods of ``vtkSlicerSegmentationsModuleLogic``
(no ``slicer.util``, ``slicer.app``, ``slicer.mrmlScene``, no Qt). Scenes and nodes are always
arguments. The classes are found by :func:`mrml_module` (``slicer`` inside Slicer, ``slicer_core``
from the wheel); this module itself imports neither until a function is called, so the core
package stays importable without Slicer.

Coordinates, at every boundary:

* MRML nodes are in Slicer's world coordinates, **RAS** (IJKToRAS matrices, control points);
* everything returned or accepted from the core model is **LPS** (``VolumeGeometry.ijk_to_lps``,
  ``Markup.points_lps``, ``roi_center_lps``, ``roi_axes_lps``); arrays are ``[k, j, i]``.

Parent transforms: control points and segment voxels are read in world coordinates (transforms
applied). When a reference volume is given and it is itself under a (linear) transform, results
are expressed in that volume's own frame (its IJKToRAS, before the transform), which is the frame
of the DICOM series it was loaded from; nodes created with a reference volume are put under the
same transform so that they show where they were drawn.

Metadata: segment IDs, names, colours, label values, layers and terminology entries (segment tag
``TerminologyEntry``; a segment without terminology gets none, not Slicer's default "Tissue") map
one to one; the core ``description`` of segments and markups travels in the segment tag / node
attribute :data:`DESCRIPTION_KEY`; ``Markup.shape`` (a closed curve that stands for an ellipse,
:mod:`..core.ellipses`) in the node attribute :data:`SHAPE_KEY`. ``Markup.filled`` and
``attributes`` have no MRML counterpart.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..core.ellipses import SHAPES
from ..core.errors import GeometryError, InputError
from ..core.geometry import VolumeGeometry
from ..files.markups_io import SLICER_TYPES
from ..core.model import Markup, Segment, Segmentation, Terminology, _default_color

log = logging.getLogger(__name__)

#: Type aliases for documentation only: MRML objects are plain VTK-wrapped Python objects.
MRMLScene = Any
MRMLNode = Any

#: Core markup kind -> MRML node class created by :func:`markups_to_nodes`.
MARKUP_NODE_CLASSES: dict[str, str] = {
    "point_list": "vtkMRMLMarkupsFiducialNode",
    "line": "vtkMRMLMarkupsLineNode",
    "angle": "vtkMRMLMarkupsAngleNode",
    "curve": "vtkMRMLMarkupsCurveNode",
    "closed_curve": "vtkMRMLMarkupsClosedCurveNode",
    "plane": "vtkMRMLMarkupsPlaneNode",
    "roi": "vtkMRMLMarkupsROINode",
}

_FLIP3 = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS for points and for the left side of axis matrices
_REFERENCE_GEOMETRY = "Reference image geometry"  # vtkSegmentationConverter::GetReferenceImageGeometryParameterName()
_TERMINOLOGY_TAG = "TerminologyEntry"  # vtkSegment::GetTerminologyEntryTagName()

#: Segment tag and markups node attribute that carry the core ``description`` (free text, DICOM
#: Segment Description). Slicer has no such field: a markups node's own Description is rewritten
#: with its measurements ("length: 5.2mm") whenever a point moves.
DESCRIPTION_KEY = "DicomAnnotEmbed.Description"
#: Markups node attribute that carries ``Markup.shape`` ("ellipse": a vtkMRMLMarkupsClosedCurveNode
#: whose 4 control points are the ends of the major and of the minor axis). Slicer draws the curve
#: through them (its default closed curve is a cardinal spline, close to the ellipse, not equal);
#: our writers draw the ellipse. vtkMRMLNode::SetAttribute / GetAttribute (Libs/MRML/Core/
#: vtkMRMLNode.h in Slicer's source, checked): string attributes kept with the node and saved
#: in the scene (.mrml), not in the .mrk.json that Slicer writes (ours carries the mark itself).
SHAPE_KEY = "DicomAnnotEmbed.Shape"


# --- finding the classes ------------------------------------------------------------------------

def mrml_module():
    """The Python module that holds the MRML, vtkSegmentationCore and Segmentations logic classes.

    Inside 3D Slicer that is ``slicer`` (already imported by the application); outside it is the
    PyPI wheel ``slicer-core``'s ``slicer_core`` package (whose ``slicer`` meta-package re-exports
    the same classes). Raises ImportError when neither is available.
    """
    loaded = sys.modules.get("slicer")
    if loaded is not None and hasattr(loaded, "vtkSlicerSegmentationsModuleLogic"):
        return loaded
    try:
        import slicer_core
        return slicer_core
    except ImportError:
        import slicer  # 3D Slicer's own module when not imported yet

        return slicer


def _vtk():
    """VTK classes used here (vtkmodules exists both in Slicer and with the vtk wheel)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkIntArray, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    return numpy_support, vtkIntArray, vtkStringArray, vtkImageData, vtkMatrix4x4


def _matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _numpy_to_matrix(array: np.ndarray):
    matrix = _vtk()[4]()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _translation(i: float, j: float, k: float) -> np.ndarray:
    shift = np.eye(4)
    shift[:3, 3] = (i, j, k)
    return shift


def _check_representable(geometry: VolumeGeometry, what: str) -> None:
    """MRML volumes and oriented image data hold spacing and unit directions: no shear."""
    if not geometry.is_orthogonal:
        raise GeometryError(f"{what}: a sheared grid ({geometry.describe()}) cannot be represented in Slicer "
                            "(IJKToRAS must have orthogonal axes)")
    if not geometry.in_patient_space:
        log.warning("%s: the grid has no patient position; it is placed at its nominal position", what)


def _image_view(image) -> np.ndarray | None:
    """The voxels of a vtkImageData as a (K, J, I) numpy view (valid while ``image`` lives), or
    None for an empty extent. VTK's x index is numpy's last axis."""
    numpy_support = _vtk()[0]
    extent = image.GetExtent()
    scalars = image.GetPointData().GetScalars()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4] or scalars is None:
        return None
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    array = numpy_support.vtk_to_numpy(scalars)
    return (array if array.ndim == 1 else array[:, 0]).reshape(shape)


def _fill_image(image, array: np.ndarray) -> None:
    """Put a (K, J, I) array into a vtkImageData with extent starting at 0 (VTK's x is I)."""
    numpy_support = _vtk()[0]
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    array = np.ascontiguousarray(array)
    k, j, i = array.shape
    image.SetExtent(0, i - 1, 0, j - 1, 0, k - 1)
    vtk_array = numpy_support.numpy_to_vtk(array.reshape(-1), deep=True,
                                           array_type=numpy_support.get_vtk_array_type(array.dtype))
    vtk_array.SetName("ImageScalars")
    image.GetPointData().SetScalars(vtk_array)


def _oriented_image(mrml, array: np.ndarray | None, geometry: VolumeGeometry):
    """A vtkOrientedImageData on ``geometry`` (RAS image-to-world), holding ``array`` if given."""
    image = mrml.vtkOrientedImageData()
    if array is None:
        k, j, i = geometry.shape
        image.SetExtent(0, i - 1, 0, j - 1, 0, k - 1)  # geometry only, no voxels allocated
    else:
        _fill_image(image, array)
    image.SetImageToWorldMatrix(_numpy_to_matrix(geometry.ijk_to_ras))
    return image


def _node_name(node) -> str:
    name = node.GetName() if node is not None else None
    return name or (node.GetID() if node is not None and node.GetID() else "unnamed node")


def _frame_from_world(reference_volume_node) -> np.ndarray:
    """4x4 RAS matrix from world to the reference volume's own frame (identity without one)."""
    if reference_volume_node is None:
        return np.eye(4)
    transform_node = reference_volume_node.GetParentTransformNode()
    if transform_node is None:
        return np.eye(4)
    if not transform_node.IsTransformToWorldLinear():
        raise InputError(f"reference volume {_node_name(reference_volume_node)!r} is under a non-linear "
                         f"transform ({_node_name(transform_node)!r}); harden it first")
    matrix = _vtk()[4]()
    transform_node.GetMatrixTransformFromWorld(matrix)
    return _matrix_to_numpy(matrix)


# --- volumes ------------------------------------------------------------------------------------

def volume_geometry_of(volume_node: MRMLNode) -> VolumeGeometry:
    """The core grid (**LPS**) of a volume node, from its IJKToRAS matrix (**RAS**) and image extent.

    The volume's parent transform is not applied: the grid is the volume's own frame, which for a
    volume loaded from DICOM is the series' patient coordinate system.

    Raises:
        InputError: the node has no image data.
    """
    image = volume_node.GetImageData()
    if image is None:
        raise InputError(f"volume {_node_name(volume_node)!r} has no image data")
    extent = image.GetExtent()
    matrix = _vtk()[4]()
    volume_node.GetIJKToRASMatrix(matrix)
    shape, ijk_to_ras = _extent_grid(extent, matrix, f"volume {_node_name(volume_node)!r} has an empty image "
                                                     f"extent {tuple(extent)}")
    return VolumeGeometry.from_ras_affine(shape, ijk_to_ras)


def _extent_grid(extent, index_to_world, empty_problem: str):
    """Shape (K, J, I) and the 4x4 matrix of index (0, 0, 0) of an image extent whose first index
    is mapped by ``index_to_world`` (a vtkMatrix4x4); extents need not start at 0.

    Raises:
        InputError: ``empty_problem`` when the extent holds no voxel.
    """
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        raise InputError(empty_problem)
    matrix = _matrix_to_numpy(index_to_world) @ _translation(extent[0], extent[2], extent[4])
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return shape, matrix


def volume_node_from_array(scene: MRMLScene, array: np.ndarray, geometry: VolumeGeometry,
                           name: str = "Volume", label_map: bool = False) -> MRMLNode:
    """Add a scalar (or label map) volume node holding ``array`` on ``geometry``.

    Args:
        scene: the vtkMRMLScene to add the node to.
        array: (K, J, I) voxels, any numeric dtype numpy and VTK share (bool becomes uint8).
        geometry: the grid in **LPS**; the node's IJKToRAS is ``geometry.ijk_to_ras`` (**RAS**).
        name: node name.
        label_map: create a vtkMRMLLabelMapVolumeNode instead of a vtkMRMLScalarVolumeNode.

    Raises:
        GeometryError: the array does not match the grid, or the grid is sheared.
    """
    array = np.asarray(array)
    if array.shape != geometry.shape:
        raise GeometryError(f"volume {name!r}: array {array.shape} does not match the grid {geometry.shape}")
    _check_representable(geometry, f"volume {name!r}")
    image = _vtk()[3]()
    _fill_image(image, array)
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if label_map else "vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(_numpy_to_matrix(geometry.ijk_to_ras))
    node.SetAndObserveImageData(image)
    node.CreateDefaultDisplayNodes()
    return node


def _geometry_volume_node(mrml, geometry: VolumeGeometry):
    """A scene-less volume node carrying only a grid (no voxels), as a reference geometry."""
    _check_representable(geometry, "reference grid")
    image = _vtk()[3]()
    k, j, i = geometry.shape
    image.SetExtent(0, i - 1, 0, j - 1, 0, k - 1)
    node = mrml.vtkMRMLScalarVolumeNode()
    node.SetIJKToRASMatrix(_numpy_to_matrix(geometry.ijk_to_ras))
    node.SetAndObserveImageData(image)
    return node


# --- segmentations: MRML -> core ------------------------------------------------------------------

def segmentation_from_node(segmentation_node: MRMLNode, reference_volume_node: MRMLNode | None = None,
                           geometry: VolumeGeometry | None = None) -> Segmentation:
    """Read a vtkMRMLSegmentationNode into a core :class:`~.model.Segmentation`.

    Segment IDs, names, colours and terminology (the segment tag ``TerminologyEntry``) are kept;
    so are Slicer's binary-labelmap layers and label values, hence overlapping segments. Segments
    whose source representation is not a binary labelmap (e.g. closed surfaces) are converted by
    Slicer's converter (this adds the binary labelmap representation to the node, as Slicer's own
    export does) and packed into as few layers as their overlaps allow.

    Args:
        segmentation_node: the node (segments in Slicer's world, **RAS**).
        reference_volume_node: put the voxels on this volume's grid (its IJKToRAS and extent, **RAS**);
            the segmentation is resampled (nearest neighbour, by Slicer's logic) when its own
            labelmap geometry differs, and moved into the volume's frame when the two nodes are
            under different transforms.
        geometry: put the voxels on this core grid (**LPS**), e.g. the DICOM series grid (treated as
            world coordinates). Give at most one of ``reference_volume_node`` and ``geometry``.
            With neither, the segmentation's own labelmap grid is used: its reference image
            geometry expanded to contain every segment's voxels (or just the segments' extent when it
            has no reference geometry); a linear parent transform is applied to that grid.

    Returns:
        The segmentation, geometry in **LPS**, layers ``(L, K, J, I)``.

    Raises:
        InputError: both references given, no binary labelmap can be made, no grid can be found
            (empty segmentation without reference), or a non-linear transform without a reference.
        GeometryError: a sheared ``geometry``.
    """
    mrml = mrml_module()
    _, vtkIntArray, vtkStringArray, _, _ = _vtk()
    name = _node_name(segmentation_node)
    if reference_volume_node is not None and geometry is not None:
        raise InputError(f"segmentation {name!r}: give a reference volume or a geometry, not both")
    segmentation = segmentation_node.GetSegmentation()
    if segmentation is None:
        raise InputError(f"segmentation {name!r} has no segmentation object")
    binary = mrml.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    ids = [str(sid) for sid in segmentation.GetSegmentIDs()]
    source = segmentation.GetSourceRepresentationName()
    if ids and not segmentation.CreateRepresentation(binary):
        raise InputError(
            f"segmentation {name!r}: its {source!r} segments cannot be converted to a binary labelmap "
            "(outside Slicer, the conversion rules are registered by vtkSlicerSegmentationsModuleLogic."
            "SetMRMLScene before the node is created)")

    # Where the voxels go: a reference node (volume or scene-less grid) or the node's own grid.
    reference = reference_volume_node
    own_geometry_image = None
    if reference_volume_node is not None:
        target = volume_geometry_of(reference_volume_node)
    elif geometry is not None:
        target = geometry
        reference = _geometry_volume_node(mrml, geometry)
    else:
        own_geometry_image, target = _own_geometry(mrml, segmentation_node, ids)

    # Slicer's layers when the source is a binary labelmap; one group per segment otherwise.
    if source == binary:
        groups = [[str(s) for s in segmentation.GetSegmentIDsForLayer(layer, binary)]
                  for layer in range(segmentation.GetNumberOfLayers(binary))]
    else:
        groups = [[sid] for sid in ids]

    groups = [[sid for sid in group if segmentation.GetSegment(sid) is not None] for group in groups]
    groups = [group for group in groups if group]
    values = {sid: int(segmentation.GetSegment(sid).GetLabelValue()) if source == binary else 1
              for group in groups for sid in group}
    if any(v < 1 or v > 32767 for v in values.values()):  # Slicer merges into a signed short image
        raise InputError(f"segmentation {name!r}: label values {sorted(set(values.values()))} are outside 1..32767")
    dtype = np.uint8 if max(values.values(), default=0) < 256 else np.uint16
    # One merged labelmap per group, copied once into the (L, K, J, I) result.
    layers = np.zeros((len(groups),) + target.shape, dtype)
    placed: dict[str, int] = {}
    for layer, group in enumerate(groups):
        id_array, value_array = vtkStringArray(), vtkIntArray()
        for sid in group:
            id_array.InsertNextValue(sid)
            value_array.InsertNextValue(values[sid])
        merged = mrml.vtkOrientedImageData()
        if reference is not None:
            mrml.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
                segmentation_node, reference, id_array, mrml.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
                merged, value_array)
        elif not segmentation_node.GenerateMergedLabelmapForAllSegments(
                merged, mrml.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, own_geometry_image, id_array, value_array):
            raise InputError(f"segmentation {name!r}: Slicer could not merge segments {group}")
        view = _image_view(merged)
        if view is None or view.shape != target.shape:
            raise InputError(f"segmentation {name!r}: segments {group} could not be placed on the grid "
                             f"({target.describe()})")
        layers[layer] = view
        placed.update((sid, layer) for sid in group)
    for sid in ids:
        if sid not in placed:
            log.warning("segmentation %r: segment %r has no binary labelmap and is skipped", name, sid)

    if source == binary:
        segments = [_segment_from_vtk(segmentation, sid, index, placed[sid], values[sid])
                    for index, sid in enumerate(ids) if sid in placed]
        result = Segmentation(target, layers, segments)
    else:  # converted segments each come alone: pack them into as few layers as overlaps allow
        result = Segmentation(target)
        for index, sid in enumerate(ids):
            if sid in placed:
                result.add_segment(layers[placed[sid]] != 0, _segment_from_vtk(segmentation, sid, index, 0, 1))
    for sid, count in result.voxel_counts().items():
        if count == 0:
            log.warning("segmentation %r: segment %r has no voxels on the grid", name, result.segment(sid).name)
    return result


def _own_geometry(mrml, segmentation_node, ids: Sequence[str]):
    """The node's labelmap grid (as vtkOrientedImageData in node coordinates) and the same grid
    in world coordinates as a core geometry."""
    _, _, vtkStringArray, _, _ = _vtk()
    name = _node_name(segmentation_node)
    segmentation = segmentation_node.GetSegmentation()
    reference_string = _reference_geometry_string(segmentation)
    id_array = vtkStringArray()
    for sid in ids:
        id_array.InsertNextValue(sid)
    mode = mrml.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS_AND_REFERENCE_GEOMETRY if reference_string \
        else mrml.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS
    geometry_string = segmentation.DetermineCommonLabelmapGeometry(mode, id_array) if ids else ""
    if not geometry_string:
        geometry_string = reference_string
    if not geometry_string:
        raise InputError(f"segmentation {name!r} has no voxels and no reference geometry; "
                         "give a reference volume or a geometry")
    image = mrml.vtkOrientedImageData()
    mrml.vtkSegmentationConverter.DeserializeImageGeometry(geometry_string, image, False)
    matrix = _vtk()[4]()
    image.GetImageToWorldMatrix(matrix)
    shape, ijk_to_node = _extent_grid(image.GetExtent(), matrix, f"segmentation {name!r} has an empty labelmap "
                                                                 "extent; give a reference volume or a geometry")
    transform_node = segmentation_node.GetParentTransformNode()
    node_to_world = np.eye(4)
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            raise InputError(f"segmentation {name!r} is under a non-linear transform; harden it or give a "
                             "reference volume")
        to_world = _vtk()[4]()
        transform_node.GetMatrixTransformToWorld(to_world)
        node_to_world = _matrix_to_numpy(to_world)
    return image, VolumeGeometry.from_ras_affine(shape, node_to_world @ ijk_to_node)


def _reference_geometry_string(segmentation) -> str:
    """The segmentation's "Reference image geometry" conversion parameter, '' when absent (asking
    for an absent parameter directly makes VTK log an error)."""
    for item in segmentation.SerializeAllConversionParameters().split("&"):
        parts = item.split("|")
        if len(parts) >= 2 and parts[0] == _REFERENCE_GEOMETRY:
            return parts[1]
    return ""


def _segment_from_vtk(segmentation, segment_id: str, index: int, layer: int, label_value: int) -> Segment:
    segment = segmentation.GetSegment(segment_id)
    color = tuple(min(max(float(c), 0.0), 1.0) for c in segment.GetColor())
    text = segment.GetTerminology() if segment.HasTerminology() else ""
    terminology = Terminology.from_slicer_string(text) if text else None
    if text and terminology is None:
        log.warning("segment %r: terminology entry %r could not be parsed and is dropped", segment.GetName(), text)
    from vtkmodules.vtkCommonCore import reference

    description = reference("")
    if not segment.GetTag(DESCRIPTION_KEY, description):
        description = reference("")
    return Segment(id=segment_id, name=segment.GetName() or segment_id,
                   color=color if len(color) == 3 else _default_color(index), terminology=terminology,
                   description=str(description.get() or ""), layer=layer, label_value=label_value)


# --- segmentations: core -> MRML ------------------------------------------------------------------

def segmentation_to_node(scene: MRMLScene, segmentation: Segmentation, name: str = "Segmentation",
                         reference_volume_node: MRMLNode | None = None) -> MRMLNode:
    """Add a vtkMRMLSegmentationNode holding a core segmentation, voxel for voxel.

    Each layer of the core segmentation becomes one shared binary labelmap (a
    vtkOrientedImageData on the core grid, IJK->RAS = ``geometry.ijk_to_ras``), so segment IDs,
    layers and label values are kept; names, colours and terminology entries (segment tag
    ``TerminologyEntry``) are set on each vtkSegment. The source representation is binary labelmap.

    Args:
        scene: the vtkMRMLScene.
        segmentation: the core segmentation (geometry in **LPS**).
        name: node name.
        reference_volume_node: optional volume whose grid becomes the segmentation's reference
            image geometry (the grid Slicer's Segment Editor works on) and whose parent transform the
            node is put under. The voxels stay on the core grid either way.

    Raises:
        GeometryError: a sheared grid.
        InputError: Slicer refused a segment.
    """
    mrml = mrml_module()
    geometry = segmentation.geometry
    _check_representable(geometry, f"segmentation {name!r}")
    binary = mrml.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    vtk_segmentation = node.GetSegmentation()
    vtk_segmentation.SetSourceRepresentationName(binary)
    if reference_volume_node is not None:
        node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    else:
        vtk_segmentation.SetConversionParameter(
            mrml.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
            mrml.vtkSegmentationConverter.SerializeImageGeometry(_oriented_image(mrml, None, geometry)))

    layer_images: dict[int, Any] = {}
    for segment in segmentation.segments:
        if segment.layer not in layer_images:
            layer_images[segment.layer] = _oriented_image(mrml, segmentation.layers[segment.layer], geometry)
        vtk_segment = mrml.vtkSegment()
        vtk_segment.SetName(segment.name)
        vtk_segment.SetNameAutoGenerated(False)
        vtk_segment.SetColor(*segment.color)
        vtk_segment.SetColorAutoGenerated(False)
        vtk_segment.SetLabelValue(int(segment.label_value))
        if segment.terminology is not None:
            vtk_segment.SetTerminology(segment.terminology.to_slicer_string())
        else:
            vtk_segment.RemoveTag(_TERMINOLOGY_TAG)  # a new vtkSegment says "Tissue"; unknown stays unknown
        if segment.description:
            vtk_segment.SetTag(DESCRIPTION_KEY, segment.description)
        vtk_segment.AddRepresentation(binary, layer_images[segment.layer])
        if not vtk_segmentation.AddSegment(vtk_segment, segment.id):
            raise InputError(f"segmentation {name!r}: Slicer refused segment {segment.name!r} (id {segment.id!r})")
    return node


# --- markups: MRML -> core ------------------------------------------------------------------------

def markups_from_nodes(nodes: Iterable[MRMLNode] | MRMLNode,
                       reference_volume_node: MRMLNode | None = None) -> list[Markup]:
    """Read markups nodes (point list, line, angle, open and closed curve, plane, ROI) as core
    :class:`~.model.Markup` shapes in **LPS**.

    Control points are read in world coordinates (**RAS**, parent transforms applied), with their
    labels; points that are not placed (preview/undefined) are skipped with a warning. The colour
    is the display node's selected colour while every control point is selected (Slicer's
    default), else its colour. ROIs give centre, size and box axes; planes give the centre of the
    drawn rectangle, its size ``[width, height, 0]`` and axes with the normal as third column (as
    :mod:`.markups_io` does).

    Args:
        nodes: markups nodes (a single node is accepted too).
        reference_volume_node: when given and under a linear transform, coordinates are expressed
            in that volume's own frame (as :func:`segmentation_from_node` does).

    Raises:
        InputError: an unsupported node, a plane or ROI that is not placed, a shape with too few
            placed points, or a non-linear reference transform.
    """
    if hasattr(nodes, "IsA"):
        nodes = [nodes]
    frame = _frame_from_world(reference_volume_node)
    return [_markup_from_node(node, frame) for node in nodes]


def _markup_from_node(node, frame: np.ndarray) -> Markup:
    name = _node_name(node)
    slicer_type = node.GetMarkupType() if hasattr(node, "GetMarkupType") else None
    kind = SLICER_TYPES.get(slicer_type)
    if kind is None:
        raise InputError(f"node {name!r} ({node.GetClassName()}) is not a supported markups node; "
                         f"supported types: {', '.join(SLICER_TYPES)}")
    points, labels, all_selected = [], [], True
    for n in range(node.GetNumberOfControlPoints()):
        label = node.GetNthControlPointLabel(n) or f"{name}-{len(points) + 1}"
        if node.GetNthControlPointPositionStatus(n) != node.PositionDefined:
            log.warning("markup %r: control point %d (%r) is not placed and is skipped", name, n + 1, label)
            continue
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(n, position)
        points.append(position)
        labels.append(label)
        all_selected = all_selected and bool(node.GetNthControlPointSelected(n))
    points_ras = np.array(points, dtype=float).reshape(-1, 3)
    points_ras = points_ras @ frame[:3, :3].T + frame[:3, 3]

    color = (1.0, 0.5, 0.5)
    display = node.GetDisplayNode()
    if display is not None:
        rgb = display.GetSelectedColor() if all_selected else display.GetColor()
        color = tuple(min(max(float(c), 0.0), 1.0) for c in rgb)

    fields: dict[str, Any] = {}
    if kind in ("roi", "plane"):
        if node.GetNumberOfControlPoints() == 0 or not points:
            raise InputError(f"markup {name!r}: the {kind} is not placed (no control point)")
        matrix = _vtk()[4]()
        if kind == "roi":
            object_to_frame = frame @ _matrix_to_numpy(node.GetObjectToWorldMatrix())
            size_object = np.array(node.GetSize(), dtype=float)
            center_object = np.zeros(3)
        else:
            node.GetObjectToWorldMatrix(matrix)
            object_to_frame = frame @ _matrix_to_numpy(matrix)
            x0, x1, y0, y1 = node.GetPlaneBounds()
            x0, x1 = sorted((x0, x1))
            y0, y1 = sorted((y0, y1))
            size_object = np.array([x1 - x0, y1 - y0, 0.0])
            center_object = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0, 0.0])
        axes = object_to_frame[:3, :3]
        scale = np.linalg.norm(axes, axis=0)
        if np.any(scale < 1e-12):
            raise InputError(f"markup {name!r}: the {kind} orientation matrix is singular")
        center_ras = object_to_frame[:3, :3] @ center_object + object_to_frame[:3, 3]
        fields = {"roi_center_lps": _FLIP3 @ center_ras, "roi_size": size_object * scale,
                  "roi_axes_lps": _FLIP3 @ (axes / scale)}
    description = node.GetAttribute(DESCRIPTION_KEY) or ""
    shape = node.GetAttribute(SHAPE_KEY) or None
    if shape is not None and (kind != "closed_curve" or shape not in SHAPES):
        log.warning("markup %r: node attribute %s=%r is not a shape of a %s; ignored", name, SHAPE_KEY, shape, kind)
        shape = None
    return Markup(kind=kind, name=name, points_lps=points_ras @ _FLIP3, point_labels=labels, color=color,
                  description=description, shape=shape, **fields)


# --- markups: core -> MRML ------------------------------------------------------------------------

def markups_to_nodes(scene: MRMLScene, markups: Iterable[Markup],
                     reference_volume_node: MRMLNode | None = None) -> list[MRMLNode]:
    """Add one markups node per core markup (coordinates given in **LPS**, written as **RAS**).

    Point lists, lines, angles and curves get their control points and labels. An ROI becomes a
    "Box" ROI (centre, axes, size); a plane becomes a "pointNormal" plane of absolute size with one
    control point at its centre (as :func:`.markups_io.write_markups` writes them). Name,
    description and colour (both colour and selected colour) are set.

    Args:
        scene: the vtkMRMLScene.
        markups: the shapes.
        reference_volume_node: when given, the nodes are put under its parent transform and the
            coordinates are taken as being in its own frame.

    Raises:
        InputError: more control points than the node type holds (a line has 2, an angle 3), or
            ROI/plane axes that are not orthonormal.
    """
    nodes = []
    transform_id = reference_volume_node.GetTransformNodeID() if reference_volume_node is not None else None
    for markup in markups:
        node = scene.AddNewNodeByClass(MARKUP_NODE_CLASSES[markup.kind], markup.name)
        node.SetName(markup.name)
        node.CreateDefaultDisplayNodes()
        if transform_id:
            node.SetAndObserveTransformNodeID(transform_id)
        if markup.description:
            node.SetAttribute(DESCRIPTION_KEY, markup.description)
        if markup.shape is not None:
            node.SetAttribute(SHAPE_KEY, markup.shape)
        try:
            _fill_markup_node(node, markup)
        except InputError:
            scene.RemoveNode(node)
            raise
        display = node.GetDisplayNode()
        if display is not None:
            display.SetColor(*markup.color)
            display.SetSelectedColor(*markup.color)
        nodes.append(node)
    return nodes


def _fill_markup_node(node, markup: Markup) -> None:
    if markup.kind in ("roi", "plane"):
        axes_ras = _FLIP3 @ markup.roi_axes_lps
        if not np.allclose(axes_ras.T @ axes_ras, np.eye(3), atol=1e-6):
            raise InputError(f"markup {markup.name!r}: {markup.kind} axes must be orthonormal, "
                             f"got {markup.roi_axes_lps.tolist()}")
        center_ras = _FLIP3 @ markup.roi_center_lps
        label = markup.point_labels[0] if markup.point_labels else f"{markup.name}-1"
        if markup.kind == "roi":
            node.SetROIType(node.ROITypeBox)
            object_to_node = np.eye(4)
            object_to_node[:3, :3] = axes_ras
            object_to_node[:3, 3] = center_ras
            node.SetAndObserveObjectToNodeMatrix(_numpy_to_matrix(object_to_node))
            node.SetSize(*(float(s) for s in markup.roi_size))
        else:
            node.SetPlaneType(node.PlaneTypePointNormal)
            node.SetSizeMode(node.SizeModeAbsolute)
            node.AddControlPoint([float(v) for v in center_ras], label)
            node.SetAxes(*([float(v) for v in axes_ras[:, c]] for c in range(3)))
            node.SetSize(float(markup.roi_size[0]), float(markup.roi_size[1]))
        if node.GetNumberOfControlPoints() > 0:
            node.SetNthControlPointLabel(0, label)
        return
    limit = node.GetMaximumNumberOfControlPoints()
    if 0 <= limit < len(markup.points_lps):
        raise InputError(f"markup {markup.name!r}: a {markup.kind} holds at most {limit} control points, "
                         f"got {len(markup.points_lps)}")
    points_ras = markup.points_lps @ _FLIP3
    for point, label in zip(points_ras, markup.point_labels):
        node.AddControlPoint([float(v) for v in point], label)


__all__ = [
    "MARKUP_NODE_CLASSES",
    "SHAPE_KEY",
    "markups_from_nodes",
    "markups_to_nodes",
    "mrml_module",
    "segmentation_from_node",
    "segmentation_to_node",
    "volume_geometry_of",
    "volume_node_from_array",
]
