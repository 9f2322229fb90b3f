"""The module's logic with the RT Structure Set and presentation state encodings, under slicer-core
(real MRML): export_nodes writes rtstruct.dcm and annotations.pr.dcm from the nodes (LPS in the
files, RAS in the scene), both load back into a scene (segments with names, colours and
terminology; markups), the DICOM browser recognises both, and the optional PACS send after an
export fails with one clear error for a node nobody listens on."""
from __future__ import annotations

import socket

import numpy as np
import pydicom
import pytest

from test_slicer_module import (SEGMENTS, SPACING, check_segmentation, make_case, needs_mrml, scene,  # noqa: F401
                                slicer_app)  # (fixtures)
from conftest import world_points


def export(scene, tmp_path, **options):
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    result = module_logic.export_nodes(series, segmentation, markups, tmp_path / "out", reference_volume_node=volume,
                                       options=module_logic.ExportOptions(**options))
    return volume, segmentation, markups, masks, series, result


@needs_mrml
def test_rtstruct_and_gsps_outputs_round_trip_through_a_scene(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks, series, result = export(
        scene, tmp_path, outputs=("rtstruct", "gsps"), gsps_outlines=True, rtstruct_interpreted_type="organ")
    assert result.overlay is None and result.seg is None and result.sr is None
    assert sorted(p.rsplit("/", 1)[-1] for p in result.files) == ["annotations.pr.dcm", "rtstruct.dcm"]
    assert "RT Structure Set (" in result.summary() and "Presentation state (" in result.summary()
    rt = pydicom.dcmread(result.rtstruct.path)
    names = {int(r.ROINumber): str(r.ROIName) for r in rt.StructureSetROISequence}
    segments = {name for _, name, *_ in SEGMENTS}
    assert {names[int(o.ReferencedROINumber)]: str(o.RTROIInterpretedType) for o in rt.RTROIObservationsSequence
            if names[int(o.ReferencedROINumber)] in segments} == dict.fromkeys(segments, "ORGAN")

    # RTSTRUCT -> segmentation node on the series grid (exact voxels, names, colours, terminology) + markups.
    imported = module_logic.import_rtstruct_to_scene(scene, result.rtstruct.path, series, reference_volume_node=volume)
    check_segmentation(scene, imported.segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    assert imported.segmentation_node.GetAttribute("DICOM.instanceUIDs") == result.rtstruct.sop_instance_uid
    by_name = {n.GetName(): n for n in imported.markups_nodes}
    lesions = by_name["Lesions"]  # POINT ROIs: the control points themselves (RAS in the scene)
    np.testing.assert_allclose(world_points(lesions), world_points(markups[2]), atol=1e-3)

    # GSPS -> markups nodes: every markup back, its kind and name, its points on the images' planes.
    shown = module_logic.import_gsps_to_scene(scene, result.gsps.path, series, reference_volume_node=volume)
    names = {n.GetName(): n.GetClassName() for n in shown.markups_nodes}
    for node in markups:
        assert names[node.GetName()] == node.GetClassName()
    assert not shown.missing, shown.missing
    for node in markups:  # each point drawn on the image plane nearest to it: within half a slice spacing
        back = world_points(next(n for n in shown.markups_nodes if n.GetName() == node.GetName()))
        nearest = np.linalg.norm(world_points(node)[:, None] - back[None], axis=2).min(axis=1)
        assert len(back) == node.GetNumberOfControlPoints() and nearest.max() <= max(SPACING) / 2, node.GetName()


@needs_mrml
def test_gsps_without_markups_needs_outlines_and_options_are_checked(scene, tmp_path):
    from DicomAnnotEmbedLib.core.errors import InputError
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    with pytest.raises(InputError, match="presentation state draws markups"):
        module_logic.export_nodes(series, segmentation, [], tmp_path / "out", reference_volume_node=volume,
                                  options=module_logic.ExportOptions(outputs=("gsps",)))
    with pytest.raises(InputError, match="unknown RT ROI Interpreted Type 'TUMOUR'"):
        module_logic.ExportOptions(outputs=("rtstruct",), rtstruct_interpreted_type="TUMOUR").checked()
    result = module_logic.export_nodes(series, segmentation, [], tmp_path / "out", reference_volume_node=volume,
                                       options=module_logic.ExportOptions(outputs=("gsps",), gsps_outlines=True))
    assert set(result.gsps.layers.values()) >= {name for _, name, *_ in SEGMENTS}
    assert module_logic.ExportOptions().outputs == module_logic.DEFAULT_OUTPUTS == ("overlay", "seg", "sr")


@needs_mrml
def test_browser_recognises_rtstruct_and_presentation_states(scene, tmp_path):
    """Any RTSTRUCT is offered selected below SlicerRT's confidence 1.0 (SlicerRT wins when it is
    installed; DICOMLib.selectHighestConfidenceLoadables), our presentation states preselected."""
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    *_, series, result = export(scene, tmp_path, outputs=("rtstruct", "gsps"))
    rt = module_logic.classify_dicom(result.rtstruct.path)
    assert (rt.kind, rt.ours, rt.referenced_series_uids) == ("rtstruct", True, [series.series_instance_uid])
    assert module_logic.browser_preference(rt) == (module_logic.RTSTRUCT_CONFIDENCE, True)
    assert module_logic.RTSTRUCT_CONFIDENCE < 1.0
    pr = module_logic.classify_dicom(result.gsps.path)
    assert (pr.kind, pr.ours, pr.detail) == ("gsps", True, "Grayscale Softcopy Presentation State")
    assert pr.referenced_series_uids == [series.series_instance_uid]
    assert set(pr.referenced_instance_uids) <= {s.sop_instance_uid for s in series.slices}
    assert module_logic.browser_preference(pr) == (0.97, True)
    other = module_logic.DicomKind(kind="gsps", ours=False)
    assert module_logic.browser_preference(other) == (0.5, False)


@needs_mrml
def test_send_after_export_to_a_closed_port_is_one_network_error(scene, tmp_path):
    from DicomAnnotEmbedLib.core.errors import NetworkError
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NetworkError) as caught:
        export(scene, tmp_path, outputs=("rtstruct",), send_to=f"ORTHANC@127.0.0.1:{port}", send_retries=0)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert (tmp_path / "out" / "rtstruct.dcm").is_file()  # written before the send; kept


@needs_mrml
def test_export_sends_every_written_file_to_a_real_archive(scene, tmp_path):
    """The panel's "Send to": export_nodes with send_to, against the Orthanc the PACS tests start
    (loopback, stopped by PID): the archive holds exactly the written files (overlay series, SEG,
    the SR and its markups' report, RTSTRUCT, GSPS), and sending them again stores nothing."""
    import sys
    from pathlib import Path

    from DicomAnnotEmbedLib.slicer import logic as module_logic

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
    from orthanc_server import orthanc

    with orthanc(tmp_path / "orthanc", require_dicomweb=False) as server:
        *_, result = export(scene, tmp_path, outputs=("overlay", "seg", "sr", "rtstruct", "gsps"),
                            send_to=server.dimse_node, send_retries=0)
        written = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in result.files}
        assert any(f.endswith("sr_markups.dcm") for f in result.files)
        assert len(result.sent.stored) == len(result.files) and not result.sent.failed
        assert set(server.sop_instance_uids()) == written
        again = module_logic.send_files(server.dimse_node, result.files, retries=0)
        assert not again.stored and len(again.already_held) == len(result.files)
        assert server.instance_count() == len(written)


@needs_mrml
def test_self_test_case_round_trips_through_every_import(scene, tmp_path):
    """The case DicomAnnotEmbedTest builds (slicer.self_test_case, MRML and VTK only) and its
    comparison, run here under slicer-core: overlay, SEG, SR and RTSTRUCT back with no difference."""
    from DicomAnnotEmbedLib.slicer import logic as module_logic
    from DicomAnnotEmbedLib.slicer.self_test_case import import_differences, make_case as self_test_case

    case = self_test_case(scene)
    assert case.segmentation.GetSegmentation().GetNumberOfLayers() == 2
    series = module_logic.dicomize_volume_node(case.volume, tmp_path / "series")
    options = module_logic.ExportOptions(outputs=("overlay", "seg", "sr", "rtstruct", "gsps"))
    result = module_logic.export_nodes(series, case.segmentation, case.markups, tmp_path / "out",
                                       reference_volume_node=case.volume, options=options)
    overlay = module_logic.import_overlay_to_scene(scene, module_logic.load_series_files(result.overlay.series[0].files),
                                                   reference_volume_node=case.volume)
    assert import_differences(scene, overlay, case, 1e-6) == []
    seg = module_logic.import_seg_to_scene(scene, result.seg.paths[0], series, reference_volume_node=case.volume)
    assert import_differences(scene, seg, case, 1.0 / 255, markups=False) == []
    sr = module_logic.import_sr_to_scene(scene, result.sr.path, series, reference_volume_node=case.volume)
    assert import_differences(scene, sr, case, 1.0 / 255) == []
    rt = module_logic.import_rtstruct_to_scene(scene, result.rtstruct.path, series, reference_volume_node=case.volume)
    assert import_differences(scene, rt, case, 1.0 / 255, markups=False) == []
    case.masks["liver"][0, 0, 0] = True  # the comparison sees a difference when there is one
    assert import_differences(scene, seg, case, 1.0 / 255, markups=False) == ["segment 'Liver': 1 voxels differ"]


@needs_mrml
def test_module_logic_exports_and_imports_every_encoding(slicer_app, scene, tmp_path):
    """DicomAnnotEmbed.py's Logic (under slicer-core, no application): every output, then
    importFromPath of the folder loads each object once; RTSTRUCT and GSPS through their own
    methods; the default outputs stay overlay, SEG and SR. (No outlines here: the fixture's 'vtk'
    module is an empty stand-in, and the outlines use VTK; they are tested above.)"""
    logic = slicer_app.DicomAnnotEmbedLogic()
    volume, segmentation, markups, masks = make_case(scene)
    result = logic.exportToDicom(segmentation, volume, markups, outputFolder=str(tmp_path / "out"),
                                 outputs=slicer_app.OUTPUTS, createSeriesIfNeeded=True)
    assert (tmp_path / "out" / "rtstruct.dcm").is_file() and (tmp_path / "out" / "annotations.pr.dcm").is_file()
    assert "Presentation state" in result.summary()
    imports = logic.importFromPath(str(tmp_path / "out"), referenceVolumeNode=volume)
    assert [type(i.source).__name__ for i in imports] == ["AnnotationSet", "SrImport", "RtStructImport", "GspsImport"]
    check_segmentation(scene, imports[2].segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    gsps = logic.importGsps(str(tmp_path / "out" / "annotations.pr.dcm"), volume)
    assert sorted(n.GetName() for n in gsps.markups_nodes) == sorted(n.GetName() for n in markups)
    assert slicer_app.DEFAULT_OUTPUTS == ("overlay", "seg", "sr")
