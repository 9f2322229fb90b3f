"""The Slicer module without Slicer: its files, its panel, its dependencies, and its logic on real
MRML nodes from the PyPI wheel ``slicer-core``.

* every widget the module code uses (``self.ui.X``) exists in the .ui file, and every parameter
  bound in the .ui is a field of the parameter node, of a type its widget can show;
* the module and the DICOM plugin compile, define the classes Slicer looks for, and import only
  Slicer, Qt/VTK, the standard library and DicomAnnotEmbedLib;
* the requirements install beside what Slicer 5.12 bundles without replacing any of it;
* the extension files agree (CMake, s4ext, catalog JSON);
* the must-show: a segmentation node with 3 segments (two overlapping), a line, a curve and a
  point list over an oblique volume -> overlay, SEG, SR -> imported back into new nodes -> the
  same voxels, names, colours, terminology and control points (module_logic, the Qt-free part
  of the module's Logic).
"""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import KIDNEY, LIVER, REPO, TUMOR, interop, rotation, world_points
from packaging.requirements import Requirement  # packaging comes with pytest
from packaging.utils import canonicalize_name

MODULE_DIR = REPO / "DicomAnnotEmbed"
MODULE_FILE = MODULE_DIR / "DicomAnnotEmbed.py"
PLUGIN_FILE = MODULE_DIR / "DicomAnnotEmbedPlugin.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "DicomAnnotEmbed.ui"
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "requirements.txt"

#: What Slicer 5.12.0 installs in its Python (3.12.10), from its SuperBuild pins
#: (SuperBuild/External_python-*.cmake at tag v5.12.0: dicom-requirements, numpy, scipy,
#: requests-requirements, pythonqt-requirements, extension-manager*, SimpleITK). VTK is Slicer's own
#: build, not a pip distribution.
SLICER_PYTHON = "3.12.10"
SLICER_BUNDLED = {
    "numpy": "2.4.6", "scipy": "1.17.1", "pydicom": "3.0.2", "highdicom": "0.27.0", "pyjpegls": "1.5.1",
    "pillow": "12.2.0", "simpleitk": "2.5.5", "dcmqi": "0.4.0", "dicomweb-client": "0.61.0", "six": "1.17.0",
    "retrying": "1.4.2", "typing-extensions": "4.15.0", "requests": "2.34.2", "urllib3": "2.7.0", "idna": "3.16",
    "certifi": "2026.5.20", "charset-normalizer": "3.4.7", "packaging": "26.2", "pyparsing": "3.3.2",
    "setuptools": "82.0.1", "pip": "26.1.1", "wheel": "0.47.0",
}
#: Supported Slicer versions (README): the first release bundling pydicom 3 and highdicom.
OLDEST_SUPPORTED_SLICER = "5.12"
#: Packages the brief says the module installs (and the ones it must not, as Slicer bundles them).
EXPECTED_REQUIREMENTS = {"highdicom", "pyjpegls", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "slicerio",
                         "pynrrd", "tqdm", "zlib-ng", "pynetdicom"}
NEVER_REQUIRED = {"vtk", "numpy", "simpleitk", "pydicom"}


# --- the panel -----------------------------------------------------------------------------------

def ui_tree() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def ui_widgets() -> dict:
    """{objectName: class} of every widget in the .ui file."""
    return {w.get("name"): w.get("class") for w in ui_tree().iter("widget")}


def ui_parameters() -> dict:
    """{parameter name: (objectName, class)} from the SlicerParameterName dynamic properties."""
    found = {}
    for widget in ui_tree().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                found[prop.findtext("string")] = (widget.get("name"), widget.get("class"))
    return found


def module_ast() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def ui_names_used(tree: ast.AST) -> set:
    """Names X of every ``self.ui.X`` (and ``<anything>.ui.X``) in the code."""
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"}


def parameter_fields() -> dict:
    """{field: annotation source} of the @parameterNodeWrapper class."""
    tree = module_ast()
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DicomAnnotEmbedParameterNode"]
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in cls.decorator_list)
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_ui_file_is_qt_designer_xml_with_a_qmrml_widget_root():
    root = ui_tree()
    assert root.tag == "ui" and root.get("version") == "4.0"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "DicomAnnotEmbed"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate objectName"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {cls for cls in ui_widgets().values() if not cls.startswith("Q")}
    assert used <= declared, f"custom widgets not declared: {used - declared}"


def test_every_widget_the_code_uses_exists_in_the_ui_file():
    used = ui_names_used(module_ast())
    assert used, "the module uses no self.ui.X?"
    missing = used - set(ui_widgets())
    assert not missing, f"self.ui names missing from {UI_FILE.name}: {sorted(missing)}"
    # The panel has what the issue lists.
    for name in ("segmentationSelector", "referenceVolumeSelector", "markupsSelector", "overlayCheckBox",
                 "segCheckBox", "segTypeComboBox", "srCheckBox", "compressionComboBox", "lidcCheckBox",
                 "observerNameLineEdit", "outputFolderSelector", "addToDatabaseCheckBox", "exportButton",
                 "importButton", "createSeriesButton"):
        assert name in ui_widgets(), name


WIDGETS_FOR_TYPES = [  # (annotation pattern, widget classes the parameterNodeWrapper connects to it)
    (r"^vtkMRML\w+( \| None)?$", {"qMRMLNodeComboBox"}),
    (r"^bool$", {"QCheckBox", "ctkCheckBox"}),
    (r"^str$", {"QLineEdit"}),
    (r"^Annotated\[str, Choice\(", {"QComboBox", "ctkComboBox"}),
    (r"^pathlib\.Path$", {"ctkPathLineEdit", "ctkDirectoryButton"}),
]


def test_parameters_bound_in_the_ui_are_parameter_node_fields_of_a_matching_type():
    fields = parameter_fields()
    bound = ui_parameters()
    assert set(bound) <= set(fields), f"unknown parameters in the .ui: {set(bound) - set(fields)}"
    # Every field is shown; the markups list by hand (a checkable combo box has no connector).
    assert set(fields) - set(bound) == {"markups"}
    assert fields["markups"] == "list[vtkMRMLMarkupsNode]"
    for parameter, (name, cls) in bound.items():
        annotation = fields[parameter]
        allowed = [widgets for pattern, widgets in WIDGETS_FOR_TYPES if re.search(pattern, annotation)]
        assert allowed, f"{parameter}: no known connector for {annotation}"
        assert cls in allowed[0], f"{parameter} ({annotation}) is bound to {name}, a {cls}"


def test_node_selectors_get_the_scene():
    connections = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in ui_tree().iter("connection")}
    for name, cls in ui_widgets().items():
        if cls.startswith("qMRML") and cls != "qMRMLWidget":
            assert ("DicomAnnotEmbed", "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") \
                in connections, name


def test_choices_are_the_librarys():
    from DicomAnnotEmbedLib.slicer import logic as module_logic
    from DicomAnnotEmbedLib.encodings import seg

    values = {}
    for node in module_ast().body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    assert values["OUTPUTS"] == module_logic.OUTPUTS
    assert values["DEFAULT_OUTPUTS"] == module_logic.DEFAULT_OUTPUTS
    assert values["SEG_TYPES"] == seg.SEG_TYPES
    assert values["COMPRESSIONS"] == seg.COMPRESSIONS
    assert values["MINIMUM_PYDICOM"] == (3, 0)


# --- the module files ------------------------------------------------------------------------------

def imported_roots(tree: ast.AST) -> set:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", [MODULE_FILE, PLUGIN_FILE], ids=lambda p: p.name)
def test_module_files_compile_and_import_only_slicer_and_the_core(path):
    source = path.read_text(encoding="utf-8")
    compile(source, str(path), "exec")
    allowed = {"slicer", "qt", "vtk", "ctk", "DICOMLib", "DicomAnnotEmbedLib", "DicomAnnotEmbed"}
    if not hasattr(sys, "stdlib_module_names"):  # Python 3.9
        pytest.skip("sys.stdlib_module_names needs Python 3.10")
    stdlib = set(sys.stdlib_module_names)
    tree = ast.parse(source)
    # The self-test (runs in Slicer only) may also use numpy, which Slicer bundles.
    code = [node for node in tree.body if not (isinstance(node, ast.ClassDef) and node.name.endswith("Test"))]
    others = {root for node in code for root in imported_roots(node) if root not in stdlib} - allowed
    assert not others, f"{path.name} imports {others}; the heavy work belongs in DicomAnnotEmbedLib"
    tests = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name.endswith("Test")]
    assert {root for node in tests for root in imported_roots(node)} - stdlib <= allowed | {"numpy"}


def classes(path: Path) -> dict:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}


def test_module_classes_follow_slicers_template():
    found = classes(MODULE_FILE)
    assert found["DicomAnnotEmbed"] == ["ScriptedLoadableModule"]
    assert found["DicomAnnotEmbedWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert found["DicomAnnotEmbedLogic"] == ["ScriptedLoadableModuleLogic"]
    assert found["DicomAnnotEmbedTest"] == ["ScriptedLoadableModuleTest"]
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert 'loadUI(self.resourcePath("UI/DicomAnnotEmbed.ui"))' in source
    # Logic methods usable from the console and batch scripts have docstrings.
    tree = module_ast()
    (logic,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DicomAnnotEmbedLogic"]
    methods = {n.name: n for n in logic.body if isinstance(n, ast.FunctionDef)}
    for name in ("exportToDicom", "importOverlaySeries", "importSeg", "importSr", "importFromPath",
                 "createDicomSeriesForVolume", "loadDicomSeries", "ensureDependencies", "isVolumeFromDicom"):
        assert ast.get_docstring(methods[name]), name
    test_methods = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert len(test_methods) >= 2


def test_dicom_plugin_is_registered_as_slicer_expects():
    found = classes(PLUGIN_FILE)
    # Slicer instantiates the class named like the file (a hidden module) ...
    assert "DicomAnnotEmbedPlugin" in found and found["DicomAnnotEmbedPlugin"] == []
    # ... which registers the plugin class in slicer.modules.dicomPlugins.
    assert found["DICOMAnnotEmbedPluginClass"] == ["DICOMPlugin"]
    source = PLUGIN_FILE.read_text(encoding="utf-8")
    assert 'slicer.modules.dicomPlugins["DICOMAnnotEmbedPlugin"] = DICOMAnnotEmbedPluginClass' in source
    assert "parent.hidden = True" in source


# --- dependencies ---------------------------------------------------------------------------------

def requirements() -> list:
    lines = REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith(("#", "-"))]


def core_dependencies() -> list:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(d) for d in data["project"]["dependencies"]]


def slicer_environment() -> dict:
    from packaging.markers import default_environment

    env = default_environment()
    env.update(python_version="3.12", python_full_version=SLICER_PYTHON)
    return env


def test_requirements_list_what_slicer_does_not_bundle():
    names = {canonicalize_name(r.name) for r in requirements()}
    assert names == {canonicalize_name(n) for n in EXPECTED_REQUIREMENTS}
    assert not names & {canonicalize_name(n) for n in NEVER_REQUIRED}


def test_requirements_accept_slicers_bundled_packages():
    """pip_ensure finds highdicom and pyjpegls satisfied by Slicer's own: they are never replaced."""
    bundled = {canonicalize_name(k): v for k, v in SLICER_BUNDLED.items()}
    checked = []
    for requirement in requirements():
        version = bundled.get(canonicalize_name(requirement.name))
        if version is not None:
            assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
            checked.append(requirement.name)
    assert {"highdicom", "pyjpegls"} <= set(checked)


def test_core_dependencies_are_bundled_or_required():
    """Every dependency of the core is met in Slicer 5.12: by its bundled version, or by a
    requirement of the module (VTK is Slicer's own build)."""
    bundled = {canonicalize_name(k): v for k, v in SLICER_BUNDLED.items()}
    listed = {canonicalize_name(r.name): r for r in requirements()}
    for dependency in core_dependencies():
        name = canonicalize_name(dependency.name)
        if name == "vtk":
            continue
        if name in bundled:
            assert dependency.specifier.contains(bundled[name], prereleases=True), (dependency, bundled[name])
        else:
            assert name in listed, f"{dependency} is neither bundled by Slicer nor in requirements.txt"
            lowest = min((s.version for s in listed[name].specifier if s.operator == ">="), default=None)
            assert lowest is not None and dependency.specifier.contains(lowest), (dependency, listed[name])


def test_what_the_requirements_pull_in_fits_slicers_packages():
    """The requirements' own dependencies (from the installed distributions' metadata) accept the
    versions Slicer bundles, and the distributions accept Slicer's Python."""
    from packaging.specifiers import SpecifierSet

    bundled = {canonicalize_name(k): v for k, v in SLICER_BUNDLED.items()}
    env = slicer_environment()
    for requirement in requirements():
        try:
            metadata = importlib.metadata.metadata(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} is not installed here (pip install -e .[test] installs it)")
        assert requirement.specifier.contains(metadata["Version"], prereleases=True), (requirement, metadata["Version"])
        if metadata.get("Requires-Python"):
            assert SpecifierSet(metadata["Requires-Python"]).contains(SLICER_PYTHON), requirement.name
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            if dependency.marker is not None and not dependency.marker.evaluate({**env, "extra": ""}):
                continue
            version = bundled.get(canonicalize_name(dependency.name))
            if version is not None:
                assert dependency.specifier.contains(version, prereleases=True), \
                    f"{requirement.name} needs {dependency}; Slicer bundles {version}"


def test_readme_states_supported_slicer_versions():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Slicer module" in readme
    assert f"Slicer {OLDEST_SUPPORTED_SLICER}" in readme


# --- extension files -------------------------------------------------------------------------------

def test_extension_files_agree():
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    module_cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    s4ext = dict(line.split(" ", 1) for line in (REPO / "extension.s4ext").read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#") and " " in line)
    catalog = json.loads((REPO / "DicomAnnotEmbed.json").read_text(encoding="utf-8"))

    # Catalog entry: schema v1.0.2 of the extensions index (required keys, no others, types).
    schema_keys = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                   "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(catalog) <= schema_keys
    assert catalog["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert isinstance(catalog["tier"], int) and 1 <= catalog["tier"] <= 5
    assert isinstance(catalog["build_dependencies"], list)

    assert catalog["category"] == s4ext["category"] == re.search(r'EXTENSION_CATEGORY "([^"]+)"', cmake).group(1)
    assert catalog["scm_url"] == s4ext["scmurl"]
    assert catalog["dicom_support_rule"] == s4ext["dicom_support_rule"] == \
        re.search(r'EXTENSION_DICOM_SUPPORT_RULE "([^"]+)"', cmake).group(1)
    assert "add_subdirectory(DicomAnnotEmbed)" in cmake
    assert re.search(r"slicer_add_python_unittest\(SCRIPT \S*DicomAnnotEmbed/DicomAnnotEmbed\.py\)", cmake)

    # The module's CMakeLists installs every script and resource, and they exist.
    for name in ("${MODULE_NAME}.py", "${MODULE_NAME}Plugin.py", "Resources/Icons/${MODULE_NAME}.png",
                 "Resources/UI/${MODULE_NAME}.ui", "Resources/requirements.txt"):
        assert name in module_cmake, name
        assert (MODULE_DIR / name.replace("${MODULE_NAME}", "DicomAnnotEmbed")).is_file(), name
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["DicomAnnotEmbed.py", "DicomAnnotEmbedPlugin.py"]
    assert (MODULE_DIR / "Resources/Icons/DicomAnnotEmbed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the module's logic on MRML nodes (slicer-core) ---------------------------------------------------

if importlib.util.find_spec("slicer_core") is not None:
    import slicer_core as mrml
else:
    mrml = None

needs_mrml = pytest.mark.skipif(mrml is None, reason="slicer-core (Slicer's MRML as a PyPI wheel) is not installed")

SHAPE = (10, 12, 14)  # K, J, I
SPACING = (0.7, 0.8, 1.5)
ORIGIN_RAS = (-31.5, 12.25, -80.0)
SEGMENTS = [("liver", "Liver", (0.85, 0.4, 0.3), LIVER), ("tumor", "Tumour 1", (0.9, 0.9, 0.1), TUMOR),
            ("kidney", "Right kidney", (0.2, 0.5, 0.95), KIDNEY)]


def vtk_matrix(array):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtk_image(array: np.ndarray):
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    array = np.ascontiguousarray(array)
    image = vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        array.ravel(), deep=True, array_type=numpy_support.get_vtk_array_type(array.dtype)))
    return image


def ijk_to_ras(volume) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return numpy_matrix(matrix)


def exported_mask(scene, segmentation_node, segment_id, reference_volume) -> np.ndarray:
    """Slicer's own export of one segment to a labelmap on the reference volume's grid."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkStringArray

    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    ids = vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert mrml.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap,
                                                                               reference_volume)
    i, j, k = labelmap.GetImageData().GetDimensions()
    mask = numpy_support.vtk_to_numpy(labelmap.GetImageData().GetPointData().GetScalars()).reshape(k, j, i) != 0
    scene.RemoveNode(labelmap)
    return mask


@pytest.fixture
def scene():
    """A scene set up as Slicer does (Segmentations logic: converters; a selection node for units)."""
    if mrml is None:
        pytest.skip("slicer-core is not installed")
    scene = mrml.vtkMRMLScene()
    logic = mrml.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    scene.AddNewNodeByClass("vtkMRMLSelectionNode")
    yield scene


def make_case(scene, overlap=True):
    """An oblique volume that is not from DICOM, a segmentation with 3 segments (the tumour inside
    the liver: 2 layers) and a line, a curve and a point list inside the volume."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Oblique CT")
    values = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 2000 - 1000).astype(np.int16)
    volume.SetAndObserveImageData(vtk_image(values))
    volume.SetSpacing(*SPACING)
    volume.SetOrigin(*ORIGIN_RAS)
    directions = np.eye(4)
    directions[:3, :3] = rotation([1.0, 2.0, 3.0], 25.0)
    volume.SetIJKToRASDirectionMatrix(vtk_matrix(directions))
    volume.CreateDefaultDisplayNodes()
    affine = ijk_to_ras(volume)

    masks = {name: np.zeros(SHAPE, bool) for name, *_ in SEGMENTS}
    masks["liver"][2:7, 3:9, 2:10] = True
    if overlap:
        masks["tumor"][4:6, 5:7, 6:9] = True  # inside the liver
    masks["tumor"][4, 5, 10] = True
    masks["kidney"][1:5, 2:6, 11:14] = True
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for segment_id, name, color, terminology in SEGMENTS:
        image = mrml.vtkOrientedImageData()
        image.ShallowCopy(vtk_image(masks[segment_id].astype(np.uint8)))
        image.SetImageToWorldMatrix(vtk_matrix(affine))
        segmentation.AddSegmentFromBinaryLabelmapRepresentation(image, name, list(color), segment_id)
        segmentation.GetSegmentation().GetSegment(segment_id).SetTerminology(terminology)
    segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)
    assert segmentation.GetSegmentation().GetNumberOfLayers() == (2 if overlap else 1)

    def ras(i, j, k):
        return (affine @ np.array([i, j, k, 1.0]))[:3] + 0.123  # off the voxel centres

    markups = []
    for class_name, name, points, labels in (
            ("vtkMRMLMarkupsLineNode", "Diameter", [ras(3, 4, 2), ras(9.5, 8, 6)], ["A", "B"]),
            ("vtkMRMLMarkupsCurveNode", "Vessel", [ras(2 + t, 3 + t / 2, 1 + t / 1.5) for t in range(5)], None),
            ("vtkMRMLMarkupsFiducialNode", "Lesions", [ras(5, 5, 5), ras(7, 6, 3), ras(10, 9, 8)], ["L1", "L2", "L3"])):
        node = scene.AddNewNodeByClass(class_name, name)
        node.CreateDefaultDisplayNodes()
        for n, point in enumerate(points):
            node.AddControlPoint([float(v) for v in point], labels[n] if labels else "")
        node.GetDisplayNode().SetSelectedColor(0.1 + 0.2 * len(markups), 0.8, 0.3)
        markups.append(node)
    return volume, segmentation, markups, masks


def check_segmentation(scene, new_node, volume, masks, color_tolerance):
    """Same voxels (Slicer's own labelmap export on the volume grid), names, colours, terminology."""
    segmentation = new_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(SEGMENTS)
    assert segmentation.GetSourceRepresentationName() == "Binary labelmap"
    for segment_id, name, color, terminology in SEGMENTS:
        new_id = segmentation.GetSegmentIdBySegmentName(name)
        assert new_id, f"segment {name!r} missing"
        segment = segmentation.GetSegment(new_id)
        np.testing.assert_allclose(segment.GetColor(), color, atol=color_tolerance, err_msg=name)
        assert segment.GetTerminology() == terminology, name
        np.testing.assert_array_equal(exported_mask(scene, new_node, new_id, volume), masks[segment_id], err_msg=name)


def check_markups(new_nodes, markups, labels=True, colors=True, tolerance=1e-6):
    """Same classes, names and control points (world, RAS); labels and colours when carried."""
    assert [n.GetClassName() for n in new_nodes] == [n.GetClassName() for n in markups]
    for new, old in zip(new_nodes, markups):
        assert new.GetName() == old.GetName()
        np.testing.assert_allclose(world_points(new), world_points(old), atol=tolerance, err_msg=old.GetName())
        if labels:
            assert [new.GetNthControlPointLabel(n) for n in range(new.GetNumberOfControlPoints())] == \
                [old.GetNthControlPointLabel(n) for n in range(old.GetNumberOfControlPoints())]
        if colors:
            np.testing.assert_allclose(new.GetDisplayNode().GetSelectedColor(),
                                       old.GetDisplayNode().GetSelectedColor(), atol=1e-12)


@needs_mrml
def test_must_show_round_trip_overlay_seg_sr(scene, tmp_path):
    """3 segments (one overlapping) + a line, a curve and a point list over an oblique volume ->
    DICOM series for the volume -> overlay, SEG, SR -> new nodes -> the same everything."""
    from DicomAnnotEmbedLib.slicer import logic as module_logic, mrml_adapter

    volume, segmentation, markups, masks = make_case(scene)
    for segment_id, *_ in SEGMENTS:  # precondition: Slicer's own export gives the masks
        np.testing.assert_array_equal(exported_mask(scene, segmentation, segment_id, volume), masks[segment_id])

    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    assert volume.GetAttribute(module_logic.SERIES_FOLDER_ATTRIBUTE) == str((tmp_path / "series").resolve())
    assert module_logic.series_of_volume(volume).series_instance_uid == series.series_instance_uid
    assert module_logic.same_voxels(series.geometry, mrml_adapter.volume_geometry_of(volume))
    np.testing.assert_array_equal(series.read_volume(), module_logic.volume_array_of(volume))

    result = module_logic.export_nodes(series, segmentation, markups, tmp_path / "out", reference_volume_node=volume)
    assert result.seg.seg_type == "binary"  # the tumour overlaps the liver
    assert (tmp_path / "out" / "seg.dcm").is_file() and (tmp_path / "out" / "sr.dcm").is_file()
    assert len(result.overlay.series) == 1 and len(result.overlay.series[0].planes) == 6
    # the markups' groups in their own report beside the SR (PixelMed accepts both; README "DICOM SR")
    assert sorted(Path(f).name for f in result.files if "overlay" not in f) == ["seg.dcm", "sr.dcm", "sr_markups.dcm"]

    # Overlay-embedded series -> a new volume, segmentation and markups: exact (private metadata).
    overlay = module_logic.import_overlay_to_scene(
        scene, module_logic.load_series_files(result.overlay.series[0].files))
    assert overlay.volume_node is not None and overlay.volume_node is not volume
    assert overlay.volume_node.GetName() == "Oblique CT"
    np.testing.assert_allclose(ijk_to_ras(overlay.volume_node), ijk_to_ras(volume), atol=1e-9)
    np.testing.assert_array_equal(module_logic.volume_array_of(overlay.volume_node),
                                  module_logic.volume_array_of(volume))
    check_segmentation(scene, overlay.segmentation_node, volume, masks, color_tolerance=1e-12)
    assert sorted(overlay.segmentation_node.GetSegmentation().GetSegmentIDs()) == ["kidney", "liver", "tumor"]
    check_markups(overlay.markups_nodes, markups)

    # DICOM SEG -> a new segmentation on the series grid (colours through CIELab: 1/255).
    seg = module_logic.import_seg_to_scene(scene, result.seg.paths[0], series, reference_volume_node=volume)
    check_segmentation(scene, seg.segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    assert seg.segmentation_node.GetAttribute("DICOM.instanceUIDs") == result.seg.sop_instance_uids[0]

    # TID 1500 SR -> markups (SCOORD3D, float32: 1e-3 mm; no labels or colours in TID 1500), the SEG it
    # references (found beside it) and a table of its measurements.
    sr = module_logic.import_sr_to_scene(scene, result.sr.path, series, reference_volume_node=volume)
    assert not sr.missing
    check_markups(sr.markups_nodes, markups, labels=False, colors=False, tolerance=1e-3)
    check_segmentation(scene, sr.segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    table = sr.table_node
    assert table.GetNumberOfRows() == len(result.sr.records) == len(sr.source.records)
    volumes = {table.GetCellText(r, table.GetColumnIndex("segment")): table.GetTable().GetValueByName(r, "value")
               for r in range(table.GetNumberOfRows()) if "Volume" in table.GetCellText(r, table.GetColumnIndex("concept"))}
    voxel = float(np.prod(SPACING))
    for segment_id, name, *_ in SEGMENTS:
        assert volumes[name].ToDouble() == pytest.approx(masks[segment_id].sum() * voxel, rel=1e-6)


@needs_mrml
def test_labelmap_seg_round_trip_without_overlap(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks = make_case(scene, overlap=False)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    options = module_logic.ExportOptions(outputs=("seg",), compression="jpegls")
    result = module_logic.export_nodes(series, segmentation, [], tmp_path / "out", reference_volume_node=volume,
                                       options=options)
    assert result.seg.seg_type == "labelmap" and result.overlay is None and result.sr is None
    kind = module_logic.classify_dicom(result.seg.paths[0])
    assert (kind.kind, kind.detail, kind.ours) == ("seg", "LABELMAP", True)
    assert kind.referenced_series_uids == [series.series_instance_uid]
    imported = module_logic.import_seg_to_scene(scene, result.seg.paths[0], series)
    check_segmentation(scene, imported.segmentation_node, volume, masks, color_tolerance=1.0 / 255)


@needs_mrml
def test_export_with_the_volume_under_a_transform_and_a_dicom_grid_in_another_order(scene, tmp_path):
    """The reference volume's own frame is the series' frame: a transform above the volume and the
    annotations changes nothing; a series whose k runs the other way gives the same voxels."""
    from DicomAnnotEmbedLib.slicer import logic as module_logic
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
    from DicomAnnotEmbedLib.core.series import load_series

    volume, segmentation, markups, masks = make_case(scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    shift = np.eye(4)
    shift[:3, 3] = (12.0, -7.0, 3.5)
    transform.SetMatrixTransformToParent(vtk_matrix(shift))
    for node in [volume, segmentation, *markups]:
        node.SetAndObserveTransformNodeID(transform.GetID())
    # The same grid written with rows reversed (the loader then also sorts the slices the other way).
    affine = ijk_to_ras(volume)
    flipped = affine.copy()
    flipped[:3, 1] = -affine[:3, 1]
    flipped[:3, 3] = affine[:3, :3] @ [0, SHAPE[1] - 1, 0] + affine[:3, 3]
    geometry = VolumeGeometry.from_ras_affine(SHAPE, flipped)
    dicomize_array(module_logic.volume_array_of(volume)[:, ::-1, :], geometry, tmp_path / "series")
    series = load_series(tmp_path / "series")
    assert not series.geometry.same_as(VolumeGeometry.from_ras_affine(SHAPE, affine))
    assert module_logic.same_voxels(series.geometry, VolumeGeometry.from_ras_affine(SHAPE, affine))

    result = module_logic.export_nodes(series, segmentation, markups, tmp_path / "out", reference_volume_node=volume,
                                       options=module_logic.ExportOptions(outputs=("overlay",)))
    overlay = module_logic.import_overlay_to_scene(scene, load_series(result.overlay.series[0].folder),
                                                   reference_volume_node=volume)
    assert overlay.volume_node is None
    assert overlay.segmentation_node.GetTransformNodeID() == transform.GetID()
    check_segmentation(scene, overlay.segmentation_node, volume, masks, color_tolerance=1e-12)
    check_markups(overlay.markups_nodes, markups)


@needs_mrml
def test_export_refusals(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic as module_logic
    from DicomAnnotEmbedLib.core.errors import GeometryError, InputError, OutputError

    volume, segmentation, markups, masks = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    ExportOptions = module_logic.ExportOptions
    with pytest.raises(InputError, match="references the segments of a DICOM SEG"):
        module_logic.export_nodes(series, None, markups, tmp_path / "a", reference_volume_node=volume)
    with pytest.raises(InputError, match="unknown output"):
        module_logic.export_nodes(series, segmentation, [], tmp_path / "a", options=ExportOptions(outputs=("png",)))
    with pytest.raises(InputError, match="unknown SEG type"):
        ExportOptions(seg_type="bitmap").checked()
    with pytest.raises(InputError, match="overlap"):  # LABELMAP cannot hold overlapping segments
        module_logic.export_nodes(series, segmentation, [], tmp_path / "b", reference_volume_node=volume,
                                  options=ExportOptions(outputs=("seg",), seg_type="labelmap"))

    # Markups only: overlays work without a segmentation.
    result = module_logic.export_nodes(series, None, markups, tmp_path / "c", reference_volume_node=volume,
                                       options=ExportOptions(outputs=("overlay",)))
    assert sorted(result.overlay.series[0].planes.values()) == ["Diameter", "Lesions", "Vessel"]

    # An existing output is refused before anything is written; force replaces.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "sr.dcm").write_bytes(b"old")
    with pytest.raises(OutputError, match="sr.dcm"):
        module_logic.export_nodes(series, segmentation, markups, tmp_path / "d", reference_volume_node=volume)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["sr.dcm"]
    module_logic.export_nodes(series, segmentation, markups, tmp_path / "d", reference_volume_node=volume,
                              options=ExportOptions(force=True))
    assert (tmp_path / "d" / "sr.dcm").read_bytes() != b"old"

    # A volume that is not on the series grid (resampled/cropped after loading) is refused.
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Cropped")
    other.SetAndObserveImageData(vtk_image(np.zeros((4, 5, 6), np.int16)))
    with pytest.raises(GeometryError, match="does not lie on the grid of its DICOM series"):
        module_logic.export_nodes(series, segmentation, markups, tmp_path / "e", reference_volume_node=other)


@needs_mrml
def test_lidc_preset_and_observer(scene, tmp_path):
    import pydicom
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    options = module_logic.ExportOptions(outputs=("sr",), lidc=True, observer_name="Doe^Jane")
    result = module_logic.export_nodes(series, segmentation, [], tmp_path / "out", reference_volume_node=volume,
                                       options=options)
    assert result.seg is not None and any("SEG" in note for note in result.notes)  # written for the SR
    sr = pydicom.dcmread(result.sr.path)
    assert str(sr.SeriesDescription).startswith("Nodule 1 - Annotation")
    assert pydicom.dcmread(result.seg.paths[0]).ContentCreatorName == "Doe^Jane"
    imported = module_logic.import_sr_to_scene(scene, result.sr.path, series)
    assert "Doe^Jane" in imported.source.person_observers
    terminology = imported.segmentation_node.GetSegmentation().GetNthSegment(0).GetTerminology()
    assert "27925004^Nodule" in terminology and "39607008^Lung" in terminology


@needs_mrml
def test_classify_dicom_recognises_our_objects(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    result = module_logic.export_nodes(series, segmentation, markups, tmp_path / "out", reference_volume_node=volume)
    assert module_logic.classify_dicom(series.files[0]).kind == ""  # plain images: not ours to load
    for path in result.overlay.series[0].files:  # our private creator is in every file
        kind = module_logic.classify_dicom(path)
        assert kind.kind == "overlay" and kind.ours
    seg = module_logic.classify_dicom(result.seg.paths[0])
    assert (seg.kind, seg.detail, seg.ours) == ("seg", "BINARY", True)
    sr = module_logic.classify_dicom(result.sr.path)
    assert sr.kind == "sr" and sr.ours
    assert result.seg.sop_instance_uids[0] in sr.referenced_instance_uids
    assert series.series_instance_uid in sr.referenced_series_uids
    (tmp_path / "note.txt").write_text("not DICOM")
    assert module_logic.classify_dicom(tmp_path / "note.txt") == module_logic.DicomKind()


@needs_mrml
def test_opened_series_from_files_anywhere(scene, tmp_path):
    """Files of a series spread over folders with other files (a DICOM database with links)."""
    import shutil

    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, *_ = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    spread = []
    for n, path in enumerate(series.files):
        folder = tmp_path / "db" / f"f{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        spread.append(shutil.copy(path, folder / f"x{n}.dcm"))
        for m in range(4):
            (folder / f"other{n}_{m}.txt").write_text("x")
    with module_logic.opened_series(spread, series.series_instance_uid) as opened:
        assert opened.series_instance_uid == series.series_instance_uid
        assert opened.geometry.same_as(series.geometry)
        linked = Path(opened.folder)
        assert linked.is_dir() and "DicomAnnotEmbed-series-" in linked.name
        np.testing.assert_array_equal(opened.read_volume(), series.read_volume())
    assert not linked.exists()
    with module_logic.opened_series(series.files) as opened:  # alone in their folder: read in place
        assert Path(opened.folder) == (tmp_path / "series").resolve()


@needs_mrml
def test_volume_node_of_series_and_non_scalar_volumes(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic as module_logic
    from DicomAnnotEmbedLib.core.errors import InputError

    volume, *_ = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series", modality="MR")
    node = module_logic.volume_node_of_series(scene, series)
    assert node.GetImageData().GetScalarTypeAsString() == "short"  # integral values: int16
    assert node.GetAttribute("DICOM.instanceUIDs").split() == [s.sop_instance_uid for s in series.slices]
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "RGB")
    rgb.SetAndObserveImageData(vtk_image(np.zeros((2, 3, 4), np.uint8)))
    rgb.GetImageData().GetPointData().GetScalars().SetNumberOfComponents(1)
    image = rgb.GetImageData()
    image.AllocateScalars(3, 3)  # unsigned char, 3 components
    with pytest.raises(InputError, match="3 values per voxel"):
        module_logic.volume_array_of(rgb)


# --- the module's Logic class, with a stand-in for the Slicer application ---------------------------

@pytest.fixture
def slicer_app(scene, monkeypatch):
    """Import DicomAnnotEmbed.py with a minimal stand-in for Slicer's Python environment: the MRML
    classes are slicer-core's, ``slicer.mrmlScene`` is a slicer-core scene, there is no
    application, no DICOM database and no Qt. Enough to run the Logic as a batch script would."""
    import types

    class FakeSlicer(types.ModuleType):
        def __getattr__(self, name):  # MRML classes: slicer-core's
            return getattr(mrml, name)

    fake = FakeSlicer("slicer")
    fake.mrmlScene = scene
    fake.app = None
    fake.dicomDatabase = None
    installed = []
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {})
    util.pip_install = installed.append
    fake.util = util
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (), {"__init__": lambda self, *args: None}))
    for name, module in (("slicer", fake), ("slicer.util", util), ("slicer.i18n", i18n),
                         ("slicer.parameterNodeWrapper", wrapper), ("slicer.ScriptedLoadableModule", scripted),
                         ("qt", types.ModuleType("qt")), ("vtk", types.ModuleType("vtk"))):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "slicer.packaging", raising=False)
    spec = importlib.util.spec_from_file_location("DicomAnnotEmbedUnderTest", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.installed = installed
    return module


@needs_mrml
def test_logic_batch_export_and_import(slicer_app, scene, tmp_path):
    """What README's batch script does, through the module's Logic: a volume that is not from
    DICOM -> its DICOM series -> overlay, SEG, SR in an output folder -> imported back."""
    from DicomAnnotEmbedLib.core.errors import InputError, OutputError

    logic = slicer_app.DicomAnnotEmbedLogic()
    assert logic.requirements() == [str(r) for r in requirements()]
    logic.ensureDependencies(prompt=False)  # everything is installed here: nothing to install
    assert slicer_app.installed == []

    volume, segmentation, markups, masks = make_case(scene)
    assert not logic.isVolumeFromDicom(volume)
    with pytest.raises(InputError, match="was not loaded from DICOM"):
        logic.exportToDicom(segmentation, volume, markups, outputFolder=str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="DICOM database is not open"):  # no folder: the database
        logic.exportToDicom(segmentation, volume, markups, createSeriesIfNeeded=True)
    assert not logic.isVolumeFromDicom(volume)  # nothing was written

    result = logic.exportToDicom(segmentation, volume, markups, outputFolder=str(tmp_path / "out"),
                                 createSeriesIfNeeded=True, observerName="Doe^Jane")
    assert logic.isVolumeFromDicom(volume)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Oblique_CT_dicom", "overlay", "seg.dcm", "sr.dcm",
                                                                  "sr_markups.dcm"]
    assert "BINARY SEG" in result.summary() and "TID 1500 SR" in result.summary()
    with pytest.raises(OutputError):  # a second run does not overwrite ...
        logic.exportToDicom(segmentation, volume, markups, outputFolder=str(tmp_path / "out"))
    logic.exportToDicom(segmentation, volume, markups, outputFolder=str(tmp_path / "out"), replaceFiles=True)

    imports = logic.importFromPath(str(tmp_path / "out"), referenceVolumeNode=volume)
    # The reference series is a plain image series (nothing to import); the overlay series, and the SR
    # with the SEG it references (the SEG is not loaded twice).
    assert [type(i.source).__name__ for i in imports] == ["AnnotationSet", "SrImport"]
    overlay, sr = imports
    check_segmentation(scene, overlay.segmentation_node, volume, masks, color_tolerance=1e-12)
    check_markups(overlay.markups_nodes, markups)
    check_segmentation(scene, sr.segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    check_markups(sr.markups_nodes, markups, labels=False, colors=False, tolerance=1e-3)

    seg = logic.importSeg(str(tmp_path / "out" / "seg.dcm"), volume)
    check_segmentation(scene, seg.segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    loaded = logic.loadDicomSeries(str(tmp_path / "out" / "Oblique_CT_dicom"))
    assert logic.isVolumeFromDicom(loaded)
    np.testing.assert_allclose(ijk_to_ras(loaded), ijk_to_ras(volume), atol=1e-9)
    sr2 = logic.importSr(str(tmp_path / "out" / "sr.dcm"), seriesFolder=str(tmp_path / "out" / "Oblique_CT_dicom"))
    check_segmentation(scene, sr2.segmentation_node, volume, masks, color_tolerance=1.0 / 255)
    with pytest.raises(InputError, match="holds no overlay-embedded series"):
        logic.importFromPath(str(tmp_path / "out" / "Oblique_CT_dicom"))


@needs_mrml
def test_logic_installs_missing_requirements_without_slicer_packaging(slicer_app, monkeypatch):
    logic = slicer_app.DicomAnnotEmbedLogic()
    real_version = importlib.metadata.version

    def version(name):
        if name == "pylibjpeg-rle":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    logic.ensureDependencies(prompt=False)
    assert slicer_app.installed == [["pylibjpeg-rle>=2.0"]]
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    monkeypatch.setattr(module_logic, "pydicom_version", lambda: (2, 4))
    with pytest.raises(RuntimeError, match="Slicer 5.12 or later"):
        logic.ensureDependencies(prompt=False)


@needs_mrml
def test_browser_preferences_for_ours_and_others(scene, tmp_path):
    """The DICOM browser plugin preselects our objects and LABELMAP SEG; for the others (scanner
    overlays, BINARY SEG, other TID 1500 SR) Slicer's own plugins stay the default."""
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    prefer = module_logic.browser_preference
    volume, segmentation, markups, masks = make_case(scene)
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    result = module_logic.export_nodes(series, segmentation, markups, tmp_path / "out", reference_volume_node=volume)
    assert prefer(module_logic.classify_dicom(result.overlay.series[0].files[0])) == (0.97, True)
    assert prefer(module_logic.classify_dicom(result.sr.path)) == (0.97, True)
    assert prefer(module_logic.classify_dicom(result.seg.paths[0])) == (0.5, False)  # BINARY: Slicer's plugin
    assert prefer(module_logic.classify_dicom(series.files[0])) == (0.0, False)

    siemens = module_logic.classify_dicom(interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"))
    assert (siemens.kind, siemens.ours, siemens.detail) == ("overlay", False, "6000")
    assert prefer(siemens) == (0.45, False)
    dcmqi_seg = module_logic.classify_dicom(interop("dcmqi", "liver.dcm"))
    assert (dcmqi_seg.kind, dcmqi_seg.ours) == ("seg", False) and prefer(dcmqi_seg) == (0.5, False)
    dcmqi_sr = module_logic.classify_dicom(interop("dcmqi", "sr-example", "sr.dcm"))
    assert (dcmqi_sr.kind, dcmqi_sr.ours) == ("sr", False) and prefer(dcmqi_sr) == (0.5, False)
    assert module_logic.classify_dicom(interop("highdicom", "ct_image.dcm")).kind == ""


@needs_mrml
def test_empty_markups_are_skipped_with_a_note(scene, tmp_path):
    from DicomAnnotEmbedLib.slicer import logic as module_logic

    volume, segmentation, markups, masks = make_case(scene)
    empty = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Nothing yet")
    series = module_logic.dicomize_volume_node(volume, tmp_path / "series")
    result = module_logic.export_nodes(series, None, [*markups, empty], tmp_path / "out", reference_volume_node=volume,
                                       options=module_logic.ExportOptions(outputs=("overlay",)))
    assert "Nothing yet" in result.summary() and len(result.overlay.series[0].planes) == 3
