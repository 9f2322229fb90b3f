"""The case of the Slicer module's self-test (``DicomAnnotEmbedTest``), built on any MRML scene with
MRML and VTK only (Slicer's own classes, or slicer-core's), and the comparison of what an import
created with it. Built with Slicer's own calls (not with :mod:`.mrml_adapter`), so that the
round trip checks the adapter against Slicer.

The case: an oblique scalar volume that does not come from DICOM, a segmentation with three
segments (the tumour inside the liver: two layers) and a line, a curve and a point list.
Coordinates: everything is in the scene's world frame (**RAS**).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np

from .mrml_adapter import mrml_module

SHAPE = (10, 12, 14)  # K, J, I
TERMINOLOGY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
               "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
COLORS = {"liver": (0.85, 0.4, 0.3), "tumor": (0.9, 0.9, 0.1), "kidney": (0.2, 0.5, 0.95)}
NAMES = {"liver": "Liver", "tumor": "Tumour 1", "kidney": "Right kidney"}


@dataclass
class SelfTestCase:
    """The nodes of the case and what they hold (masks on the volume's grid, by segment id)."""

    volume: Any
    segmentation: Any
    markups: List[Any]
    masks: Dict[str, np.ndarray] = field(default_factory=dict)


def _matrix(rows):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            matrix.SetElement(r, c, float(value))
    return matrix


def make_case(scene) -> SelfTestCase:
    """Add the self-test's volume, segmentation and markups nodes to ``scene``."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    mrml = mrml_module()
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Oblique CT")
    volume.SetSpacing(0.7, 0.8, 1.5)
    volume.SetOrigin(-31.5, 12.25, -80.0)
    angle = np.deg2rad(25.0)
    rotation = [[np.cos(angle), -np.sin(angle), 0, 0], [np.sin(angle) * 0.8, np.cos(angle) * 0.8, -0.6, 0],
                [np.sin(angle) * 0.6, np.cos(angle) * 0.6, 0.8, 0], [0, 0, 0, 1]]
    volume.SetIJKToRASDirectionMatrix(_matrix(rotation))
    values = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 2000 - 1000).astype(np.int16)
    image = _image(values, numpy_support)
    volume.SetAndObserveImageData(image)
    volume.CreateDefaultDisplayNodes()
    masks = {name: np.zeros(SHAPE, bool) for name in NAMES}
    masks["liver"][2:7, 3:9, 2:10] = True
    masks["tumor"][4:6, 5:7, 6:9] = True
    masks["tumor"][4, 5, 10] = True
    masks["kidney"][1:5, 2:6, 11:14] = True
    ijk_to_ras = vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for segment_id, mask in masks.items():
        # One labelmap per segment, then shared layers as Slicer packs them (the tumour overlaps).
        labelmap = mrml.vtkOrientedImageData()
        labelmap.ShallowCopy(_image(mask.astype(np.uint8), numpy_support))
        labelmap.SetImageToWorldMatrix(ijk_to_ras)
        segmentation.AddSegmentFromBinaryLabelmapRepresentation(labelmap, NAMES[segment_id], list(COLORS[segment_id]),
                                                                segment_id)
        segmentation.GetSegmentation().GetSegment(segment_id).SetTerminology(TERMINOLOGY)
    segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)

    def ras(i, j, k):
        return list(ijk_to_ras.MultiplyPoint([i, j, k, 1.0])[:3])

    markups = []
    for class_name, name, points in (
            ("vtkMRMLMarkupsLineNode", "Diameter", [ras(3, 4, 2), ras(9, 8, 6)]),
            ("vtkMRMLMarkupsCurveNode", "Vessel", [ras(2 + t, 3 + t / 2, 1 + t / 1.5) for t in range(5)]),
            ("vtkMRMLMarkupsFiducialNode", "Lesions", [ras(5, 5, 5), ras(7, 6, 3), ras(10, 9, 8)])):
        node = scene.AddNewNodeByClass(class_name, name)
        for point in points:
            node.AddControlPoint(point)
        markups.append(node)
    return SelfTestCase(volume, segmentation, markups, masks)


def _image(array: np.ndarray, numpy_support):
    from vtkmodules.vtkCommonDataModel import vtkImageData

    image = vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
    return image


def world_points(node) -> np.ndarray:
    """Control points of a markups node in world coordinates (RAS), (N, 3)."""
    points = []
    for n in range(node.GetNumberOfControlPoints()):
        point = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(n, point)
        points.append(point)
    return np.array(points).reshape(-1, 3)


def import_differences(scene, imported, case: SelfTestCase, color_tolerance: float, *, markups: bool = True,
                       point_tolerance: float = 1e-3) -> List[str]:
    """What an import (:class:`.logic.SceneImport`) differs in from the case: segments (voxels on
    the volume's grid by Slicer's own labelmap export, names, colours, terminology) and, with
    ``markups``, markups (class, name, world control points). [] when nothing differs."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkStringArray

    mrml = mrml_module()
    problems: List[str] = []
    segmentation = imported.segmentation_node.GetSegmentation() if imported.segmentation_node else None
    if segmentation is None or segmentation.GetNumberOfSegments() != len(NAMES):
        return [f"expected {len(NAMES)} segments"]
    for segment_id, name in NAMES.items():
        new_id = segmentation.GetSegmentIdBySegmentName(name)
        if not new_id:
            problems.append(f"segment {name!r} missing")
            continue
        segment = segmentation.GetSegment(new_id)
        if not np.allclose(segment.GetColor(), COLORS[segment_id], atol=color_tolerance):
            problems.append(f"segment {name!r}: colour {segment.GetColor()}")
        if segment.GetTerminology() != TERMINOLOGY:
            problems.append(f"segment {name!r}: terminology {segment.GetTerminology()}")
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
        ids = vtkStringArray()
        ids.InsertNextValue(new_id)
        mrml.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(imported.segmentation_node, ids,
                                                                            labelmap, case.volume)
        i, j, k = labelmap.GetImageData().GetDimensions()
        mask = numpy_support.vtk_to_numpy(labelmap.GetImageData().GetPointData().GetScalars()).reshape(k, j, i) != 0
        scene.RemoveNode(labelmap)
        if not np.array_equal(mask, case.masks[segment_id]):
            problems.append(f"segment {name!r}: {int((mask != case.masks[segment_id]).sum())} voxels differ")
    if markups:
        by_name: Dict[str, Tuple[str, np.ndarray]] = {n.GetName(): (n.GetClassName(), world_points(n))
                                                      for n in imported.markups_nodes}
        for node in case.markups:
            class_name, points = by_name.get(node.GetName(), ("", np.zeros((0, 3))))
            if class_name != node.GetClassName():
                problems.append(f"markup {node.GetName()!r}: {class_name or 'missing'}")
            elif points.shape != world_points(node).shape or \
                    not np.allclose(points, world_points(node), atol=point_tolerance):
                problems.append(f"markup {node.GetName()!r}: control points differ")
    return problems


__all__ = ["COLORS", "NAMES", "SHAPE", "SelfTestCase", "TERMINOLOGY", "import_differences", "make_case",
           "world_points"]
