"""Ellipse-marked closed curves in a Slicer scene (slicer-core, real MRML): the mark travels as the
node attribute ``DicomAnnotEmbed.Shape`` of a vtkMRMLMarkupsClosedCurveNode; Slicer's own
.mrk.json reader (vtkMRMLMarkupsJsonStorageNode) loads our files, extra key and all, as the same
closed curve; a presentation state's ELLIPSE goes into the scene and back out as the same ELLIPSE."""
from __future__ import annotations

import numpy as np
import pydicom

from test_slicer_module import make_case, needs_mrml, scene  # noqa: F401  (a fixture)
from conftest import world_points
from DicomAnnotEmbedLib.core.model import Markup
from DicomAnnotEmbedLib.files.markups_io import write_markups

AXIS_ENDS_LPS = np.array([[-10.0, 4.0, 12.5], [30.0, 4.0, 12.5], [10.0, -6.0, 12.5], [10.0, 14.0, 12.5]])


@needs_mrml
def test_the_ellipse_mark_is_a_node_attribute_both_ways(scene):
    from DicomAnnotEmbedLib.slicer import mrml_adapter

    ellipse = Markup("closed_curve", "Oval", AXIS_ENDS_LPS, shape="ellipse")
    curve = Markup("closed_curve", "Ring", AXIS_ENDS_LPS)
    node, plain = mrml_adapter.markups_to_nodes(scene, [ellipse, curve])
    assert node.GetClassName() == "vtkMRMLMarkupsClosedCurveNode"
    assert node.GetAttribute(mrml_adapter.SHAPE_KEY) == "ellipse" and plain.GetAttribute(mrml_adapter.SHAPE_KEY) is None
    np.testing.assert_allclose(world_points(node), AXIS_ENDS_LPS * [-1, -1, 1])  # RAS in the scene
    back, back_plain = mrml_adapter.markups_from_nodes([node, plain])
    assert (back.shape, back_plain.shape) == ("ellipse", None)
    np.testing.assert_array_equal(back.points_lps, AXIS_ENDS_LPS)
    node.SetAttribute(mrml_adapter.SHAPE_KEY, "hexagon")  # not a shape: ignored
    assert mrml_adapter.markups_from_nodes(node)[0].shape is None


@needs_mrml
def test_slicers_own_reader_loads_our_file_with_the_mark(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer.mrml_adapter import mrml_module

    mrml = mrml_module()
    write_markups(tmp_path / "oval.mrk.json", [Markup("closed_curve", "Oval", AXIS_ENDS_LPS, shape="ellipse")])
    assert '"dicomAnnotEmbedShape": "ellipse"' in (tmp_path / "oval.mrk.json").read_text()
    storage = mrml.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(storage)
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode")
    storage.SetFileName(str(tmp_path / "oval.mrk.json"))
    assert storage.ReadData(node) == 1
    assert node.GetName() == "Oval" and node.GetNumberOfControlPoints() == 4
    np.testing.assert_allclose(world_points(node), AXIS_ENDS_LPS * [-1, -1, 1], atol=1e-9)


@needs_mrml
def test_a_presentation_states_ellipse_goes_through_the_scene_unchanged(scene, tmp_path):
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.slicer import logic as module_logic
    from DicomAnnotEmbedLib.slicer.mrml_adapter import SHAPE_KEY

    volume, _, _, _ = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    ends = series.geometry.ijk_to_lps_points(np.array([[3, 4, 5], [11, 4, 5], [7, 2, 5], [7, 6, 5.0]]))
    first = api.export_gsps(series, [Markup("closed_curve", "Oval", ends, shape="ellipse")], tmp_path / "a.pr.dcm")
    assert first.skipped == []
    shown = module_logic.import_gsps_to_scene(scene, tmp_path / "a.pr.dcm", series, reference_volume_node=volume)
    [node] = shown.markups_nodes
    assert node.GetClassName() == "vtkMRMLMarkupsClosedCurveNode" and node.GetAttribute(SHAPE_KEY) == "ellipse"
    module_logic.export_nodes(series, None, [node], tmp_path / "out", reference_volume_node=volume,
                              options=module_logic.ExportOptions(outputs=("gsps",)))

    def ellipses(path):
        return [list(g.GraphicData) for item in pydicom.dcmread(path).GraphicAnnotationSequence
                for g in item.GraphicObjectSequence if g.GraphicType == "ELLIPSE"]

    assert ellipses(tmp_path / "out" / "annotations.pr.dcm") == ellipses(tmp_path / "a.pr.dcm") != []
