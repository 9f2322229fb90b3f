"""DicomAnnotEmbed: Slicer segmentations and markups to overlay-embedded DICOM, DICOM SEG,
TID 1500 SR, RT Structure Sets and presentation states (GSPS), and back.

Module, Widget, Logic and Test classes of the scripted module. The work is done by the core
library ``DicomAnnotEmbedLib`` (no Qt): :mod:`DicomAnnotEmbedLib.slicer.logic` on MRML nodes
through :mod:`DicomAnnotEmbedLib.slicer.mrml_adapter` and :mod:`DicomAnnotEmbedLib.api`. This file adds
the application: ``slicer.mrmlScene``, the DICOM database, dialogs and the panel.

Python console / batch (``Slicer --no-main-window --python-script script.py``)::

    import DicomAnnotEmbed
    logic = DicomAnnotEmbed.DicomAnnotEmbedLogic()
    logic.ensureDependencies(prompt=False)
    volume = logic.loadDicomSeries("case/series")
    segmentation = slicer.util.loadSegmentation("case/segmentation.seg.nrrd")
    result = logic.exportToDicom(segmentation, volume, [], outputFolder="case/dicom-out")
    print(result.summary())
"""
import contextlib
import logging
import os
import pathlib
import tempfile
import time
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: Outputs, SEG types and compressions offered (the same names as DicomAnnotEmbedLib.slicer.logic's
#: OUTPUTS and DEFAULT_OUTPUTS, seg.SEG_TYPES and seg.COMPRESSIONS; repeated here so that this file loads before the
#: library's dependencies are installed).
OUTPUTS = ("overlay", "seg", "sr", "rtstruct", "gsps")
DEFAULT_OUTPUTS = ("overlay", "seg", "sr")
SEG_TYPES = ("auto", "binary", "labelmap", "fractional")
COMPRESSIONS = ("auto", "none", "jpegls", "rle", "jpeg2000")
#: Slicer 5.12 is the first release that bundles pydicom 3 (the core needs it) and highdicom.
MINIMUM_PYDICOM = (3, 0)
REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")


#
# DicomAnnotEmbed
#


class DicomAnnotEmbed(ScriptedLoadableModule):
    """Module description for the module list (template: ScriptedLoadableModule)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DICOM Annotation Embed")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Informatics")]
        self.parent.dependencies = []
        self.parent.contributors = ["DicomAnnotEmbed developers"]
        self.parent.helpText = _("""
Turn segmentations and markups into DICOM that other software reads, and back:
overlay planes embedded in a copy of the images (any DICOM viewer shows them), DICOM SEG
(BINARY, LABELMAP, FRACTIONAL) and TID 1500 structured reports (measurements, markups).
Loading is also offered in the DICOM browser.
See <a href="https://github.com/DicomAnnotEmbed/DicomAnnotEmbed#slicer-module">the documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on pydicom, highdicom, slicerio and 3D Slicer's segmentation and markups infrastructure.
""")


#
# Parameter node
#


@parameterNodeWrapper
class DicomAnnotEmbedParameterNode:
    """The panel's choices, kept in the scene.

    segmentation - segments to export (optional when markups are chosen).
    referenceVolume - the volume the annotations were drawn on (from DICOM, or not: then a DICOM series is created).
    markups - markups nodes to export (point list, line, angle, curve, closed curve, plane, ROI).
    exportOverlay, exportSeg, exportSr, exportRtstruct, exportGsps - which encodings to write.
    gspsOutlines - the presentation state also draws the segments' outlines.
    sendTo - archive node to send the written files to (AET@HOST:PORT, a DICOMweb URL or a configured name).
    segType, compression - DICOM SEG options.
    lidcPreset - LIDC conventions in the SEG and SR.
    observerName - person observer of the SR (Family^Given).
    fillMarkups - overlays: closed shapes filled.
    replaceFiles - write into an output folder that already holds our outputs.
    outputFolder - where files are written (optional when adding to the DICOM database).
    addToDatabase - import the written files into Slicer's DICOM database.
    importPath - DICOM file or folder to import.
    """

    segmentation: vtkMRMLSegmentationNode | None
    referenceVolume: vtkMRMLScalarVolumeNode | None
    markups: list[vtkMRMLMarkupsNode]
    exportOverlay: bool = True
    exportSeg: bool = True
    exportSr: bool = True
    exportRtstruct: bool = False
    exportGsps: bool = False
    gspsOutlines: bool = False
    sendTo: str = ""
    segType: Annotated[str, Choice(list(SEG_TYPES))] = "auto"
    compression: Annotated[str, Choice(list(COMPRESSIONS))] = "auto"
    lidcPreset: bool = False
    observerName: str = ""
    fillMarkups: bool = False
    replaceFiles: bool = False
    outputFolder: pathlib.Path
    addToDatabase: bool = False
    importPath: pathlib.Path


#
# Widget
#


class DicomAnnotEmbedWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: clicks become Logic calls, with a progress dialog and readable errors."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingMarkups = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DicomAnnotEmbed.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DicomAnnotEmbedLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.importButton.connect("clicked(bool)", self.onImportButton)
        self.ui.createSeriesButton.connect("clicked(bool)", self.onCreateSeriesButton)
        self.ui.markupsSelector.connect("checkedNodesChanged()", self.onMarkupsChecked)
        self.ui.referenceVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateReferenceStatus)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.segmentation:
            self._parameterNode.segmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        if not self._parameterNode.referenceVolume:
            self._parameterNode.referenceVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with the dynamic property "SlicerParameterName" in the .ui are connected.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._showMarkupsChoice()
            self._checkCanApply()
            self.updateReferenceStatus()

    # --- state of the panel ---

    def _showMarkupsChoice(self) -> None:
        """Check the markups nodes kept in the parameter node (the checkable combo box has no
        parameter connector)."""
        chosen = {node.GetID() for node in self._parameterNode.markups if node is not None}
        self._updatingMarkups = True
        try:
            for index in range(self.ui.markupsSelector.nodeCount()):
                node = self.ui.markupsSelector.nodeFromIndex(index)
                self.ui.markupsSelector.setCheckState(node, qt.Qt.Checked if node.GetID() in chosen else qt.Qt.Unchecked)
        finally:
            self._updatingMarkups = False

    def onMarkupsChecked(self) -> None:
        if self._parameterNode and not self._updatingMarkups:
            self._parameterNode.markups = list(self.ui.markupsSelector.checkedNodes())

    def _checkCanApply(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        hasInput = bool(parameters and (parameters.segmentation or self._checkedMarkups()))
        hasOutput = bool(parameters and self._chosenOutputs())
        hasTarget = bool(parameters and (str(parameters.outputFolder or "") not in ("", ".") or parameters.addToDatabase))
        canExport = bool(parameters and parameters.referenceVolume and hasInput and hasOutput and hasTarget)
        self.ui.exportButton.enabled = canExport
        if canExport:
            self.ui.exportButton.toolTip = _("Write the chosen encodings")
        else:
            self.ui.exportButton.toolTip = _("Choose a reference volume, a segmentation or markups, at least one "
                                             "output, and an output folder or 'Add to the DICOM database'")
        self.ui.segTypeComboBox.enabled = bool(parameters and (parameters.exportSeg or parameters.exportSr))
        self.ui.gspsOutlinesCheckBox.enabled = bool(parameters and parameters.exportGsps)
        self.ui.importButton.enabled = bool(parameters and str(parameters.importPath or "") not in ("", "."))

    def _chosenOutputs(self):
        parameters = self._parameterNode
        wanted = (parameters.exportOverlay, parameters.exportSeg, parameters.exportSr, parameters.exportRtstruct,
                  parameters.exportGsps)
        return [name for name, chosen in zip(OUTPUTS, wanted) if chosen]

    def _checkedMarkups(self):
        return [node for node in self._parameterNode.markups if node is not None] if self._parameterNode else []

    def updateReferenceStatus(self, volume=None) -> None:
        """Say whether the reference volume is from DICOM (on selection, and after export)."""
        if volume is None and self._parameterNode:
            volume = self._parameterNode.referenceVolume
        if volume is None:
            self.ui.referenceStatusLabel.text = _("No reference volume chosen.")
            self.ui.createSeriesButton.enabled = False
            return
        fromDicom = self.logic.isVolumeFromDicom(volume)
        self.ui.referenceStatusLabel.text = (
            _("From DICOM: the outputs reference its series.") if fromDicom else
            _("Not from DICOM: a DICOM series will be created for it on export."))
        self.ui.createSeriesButton.enabled = not fromDicom

    # --- actions ---

    def onExportButton(self) -> None:
        parameters = self._parameterNode
        outputs = self._chosenOutputs()
        outputFolder = str(parameters.outputFolder or "")
        outputFolder = outputFolder if outputFolder not in ("", ".") else None
        volume = parameters.referenceVolume
        with self._reportErrors(_("Export failed.")):
            self.logic.ensureDependencies()
            createSeries = False
            if not self.logic.isVolumeFromDicom(volume):
                createSeries = slicer.util.confirmYesNoDisplay(
                    _("The reference volume '{name}' was not loaded from DICOM, so there are no DICOM images for "
                      "the annotations to refer to.\n\nCreate a DICOM series (CT) for it and export onto that "
                      "series?").format(name=volume.GetName()), windowTitle=_("Create a DICOM series"))
                if not createSeries:
                    return
            with self._progress(_("Exporting to DICOM")) as progress:
                result = self.logic.exportToDicom(
                    parameters.segmentation, volume, self._checkedMarkups(), outputs=outputs,
                    outputFolder=outputFolder, addToDatabase=parameters.addToDatabase, segType=parameters.segType,
                    compression=parameters.compression, lidcPreset=parameters.lidcPreset,
                    observerName=parameters.observerName, fillMarkups=parameters.fillMarkups,
                    replaceFiles=parameters.replaceFiles, gspsOutlines=parameters.gspsOutlines,
                    sendTo=parameters.sendTo.strip(), createSeriesIfNeeded=createSeries, progress=progress)
            self._showResult(result.summary())
        self.updateReferenceStatus()

    def onCreateSeriesButton(self) -> None:
        parameters = self._parameterNode
        outputFolder = str(parameters.outputFolder or "")
        with self._reportErrors(_("Creating the DICOM series failed.")):
            self.logic.ensureDependencies()
            folder = None
            if outputFolder not in ("", "."):
                folder = os.path.join(outputFolder, self.logic.safeName(parameters.referenceVolume.GetName()) + "_dicom")
            with self._progress(_("Creating a DICOM series")) as progress:
                series = self.logic.createDicomSeriesForVolume(
                    parameters.referenceVolume, outputFolder=folder,
                    addToDatabase=parameters.addToDatabase or folder is None, progress=progress)
            self._showResult(_("DICOM series written: {summary}").format(summary=series.summary()))
        self.updateReferenceStatus()

    def onImportButton(self) -> None:
        parameters = self._parameterNode
        with self._reportErrors(_("Import failed.")):
            self.logic.ensureDependencies()
            with self._progress(_("Importing DICOM")) as progress:
                imports = self.logic.importFromPath(str(parameters.importPath),
                                                    referenceVolumeNode=parameters.referenceVolume, progress=progress)
            self._showResult("\n".join(item.summary() for item in imports))

    def _showResult(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text.splitlines()[0] if text else "", 5000)

    @contextlib.contextmanager
    def _progress(self, title):
        """A progress dialog whose Cancel stops the job (the callback raises Cancelled)."""
        from DicomAnnotEmbedLib.slicer.logic import Cancelled

        # The core reports each stage from 0 to total: with Qt's defaults (autoReset, autoClose) the
        # dialog would reset (clearing wasCanceled) and hide whenever a stage reaches 100 %.
        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=1000,
                                                  autoReset=False, autoClose=False)
        state = {"last": 0.0}

        def progress(done, total, message):
            now = time.monotonic()
            if now - state["last"] > 0.1 or done >= total:
                state["last"] = now
                dialog.labelText = message
                dialog.value = int(1000 * done / total) if total else 0
                slicer.app.processEvents()
            if dialog.wasCanceled:
                raise Cancelled(_("cancelled"))

        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            yield progress
        finally:
            qt.QApplication.restoreOverrideCursor()
            dialog.close()

    @contextlib.contextmanager
    def _reportErrors(self, title):
        """Show the error's message (no traceback: that goes to the application log)."""
        try:
            yield
        except Exception as error:  # the panel must stay usable whatever failed
            self._showError(title, error)

    def _showError(self, title, error) -> None:
        from DicomAnnotEmbedLib.core.errors import DicomAnnotEmbedError
        from DicomAnnotEmbedLib.slicer.logic import Cancelled

        if isinstance(error, Cancelled):
            self._showResult(_("Cancelled."))
            return
        if isinstance(error, DicomAnnotEmbedError):
            logging.error("%s %s", title, error)
            message = str(error)
        else:
            logging.error("%s", title, exc_info=error)
            message = f"{error.__class__.__name__}: {error}\n\n" + _("Details are in the application log.")
        self.ui.statusLabel.text = f"{title} {error}"
        slicer.util.errorDisplay(f"{title}\n\n{message}", windowTitle=_("DICOM Annotation Embed"))


#
# Logic
#


class DicomAnnotEmbedLogic(ScriptedLoadableModuleLogic):
    """Export and import on MRML nodes of ``slicer.mrmlScene``, usable without the panel (Python
    console, ``Slicer --no-main-window --python-script``). Errors raised on purpose are
    ``DicomAnnotEmbedLib.core.errors.DicomAnnotEmbedError`` whose message names the file or node.
    Every coordinate in DICOM is LPS; the nodes are RAS, as always in Slicer."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return DicomAnnotEmbedParameterNode(super().getParameterNode())

    # --- dependencies ---

    @staticmethod
    def requirements():
        """The module's Python requirements (``Resources/requirements.txt``) as strings."""
        from DicomAnnotEmbedLib.slicer.logic import read_requirements

        return read_requirements(REQUIREMENTS_FILE)

    def ensureDependencies(self, prompt: bool = True) -> None:
        """Install what ``Resources/requirements.txt`` lists and is missing (first use only).

        Uses ``slicer.packaging.pip_ensure`` (Slicer 5.12 and later: asks before installing when
        ``prompt``), else ``slicer.util.pip_install`` of the packages that are not installed.
        Packages Slicer bundles (pydicom, highdicom, numpy, SimpleITK, VTK) are not listed, so
        they are never replaced.

        Raises:
            RuntimeError: Slicer's pydicom is older than 3.0 (Slicer before 5.12), or the user
                declined the installation.
        """
        from DicomAnnotEmbedLib.slicer.logic import missing_requirements, pydicom_problem, pydicom_version

        problem = pydicom_problem(MINIMUM_PYDICOM, pydicom_version())
        if problem:
            raise RuntimeError(problem)
        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            testing = bool(slicer.app.testingEnabled()) if getattr(slicer, "app", None) else False
            packaging.pip_ensure(packaging.load_requirements(REQUIREMENTS_FILE), requester="DicomAnnotEmbed",
                                 prompt_install=prompt and not testing, skip_in_testing=False)
            return
        missing = missing_requirements(self.requirements())
        if missing:
            slicer.util.pip_install(missing)

    # --- reference volumes and their DICOM series ---

    @staticmethod
    def safeName(name: str) -> str:
        """A file-name-safe version of a node name."""
        from DicomAnnotEmbedLib.slicer.logic import safe_name

        return safe_name(name)

    def isVolumeFromDicom(self, volumeNode) -> bool:
        """True when the volume's DICOM series can be found: in Slicer's DICOM database (the
        volume was loaded by the DICOM module), or written by :meth:`createDicomSeriesForVolume`
        or loaded by :meth:`loadDicomSeries`."""
        from DicomAnnotEmbedLib.slicer.logic import volume_from_dicom

        return volume_from_dicom(volumeNode, getattr(slicer, "dicomDatabase", None))

    def openReferenceSeries(self, volumeNode, progress=None):
        """The DICOM series of a volume (``DicomAnnotEmbedLib.core.series.ReferenceSeries``), or None
        when it is not from DICOM (a context manager: files found in the database may be linked
        into a temporary folder while it is open)."""
        from DicomAnnotEmbedLib.slicer.logic import opened_reference_series

        return opened_reference_series(volumeNode, getattr(slicer, "dicomDatabase", None), progress)

    def loadDicomSeries(self, folder, seriesUID=None, progress=None):
        """Load a DICOM image series from a folder as a scalar volume node (without the DICOM
        database; handy in batch scripts). The node remembers the folder, so that
        :meth:`exportToDicom` writes outputs that reference this series. Returns the node."""
        from DicomAnnotEmbedLib.slicer.logic import load_series_volume

        node = load_series_volume(slicer.mrmlScene, folder, seriesUID, progress)
        if self._hasViews():
            slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node

    def createDicomSeriesForVolume(self, volumeNode, outputFolder=None, addToDatabase=True, modality="CT",
                                   patientName="Anonymous^", progress=None):
        """Write a volume that does not come from DICOM as a DICOM series (one file per slice, its
        own grid and voxel values; ``modality`` "CT", "MR" or "OT") and link the volume to it.
        ``outputFolder`` None: a temporary folder, kept only in the DICOM database (then
        ``addToDatabase`` must be True, which imports the copied files and gives the volume
        ``DICOM.instanceUIDs`` like a volume loaded from DICOM). Returns the ``ReferenceSeries``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.errors import InputError

        if outputFolder is None and not addToDatabase:
            raise InputError("choose an output folder for the DICOM series, or add it to the DICOM database")
        if addToDatabase:
            self._requireDatabase()
        folder = outputFolder or self._temporaryFolder("series")
        series = module_logic.dicomize_volume_node(volumeNode, folder, modality=modality, patient_name=patientName,
                                                   progress=progress)
        if addToDatabase:
            self.addFolderToDatabase(folder)
            volumeNode.SetAttribute(module_logic.DICOM_INSTANCE_UIDS_ATTRIBUTE,
                                    " ".join(s.sop_instance_uid for s in series.slices))
        return series

    # --- export ---

    def exportToDicom(self, segmentationNode, referenceVolumeNode, markupsNodes=(), outputs=DEFAULT_OUTPUTS,
                      outputFolder=None, addToDatabase=False, segType="auto", compression="auto",
                      lidcPreset=False, observerName="", fillMarkups=False, splitOverlays=False,
                      replaceFiles=False, seriesDescription=None, evaluations=None, gspsOutlines=False,
                      rtstructInterpretedType="", sendTo="", createSeriesIfNeeded=False, seriesModality="CT",
                      progress=None):
        """Write a segmentation node and markups nodes as DICOM that references the reference
        volume's DICOM series.

        Args:
            segmentationNode: vtkMRMLSegmentationNode, or None (markups only; no SEG/SR then).
            referenceVolumeNode: the volume the annotations were drawn on. From DICOM (loaded by
                the DICOM module, or by :meth:`loadDicomSeries`), or not: then, with
                ``createSeriesIfNeeded``, a DICOM series is created for it first (``seriesModality``;
                in ``outputFolder/<volume>_dicom`` or a temporary folder added to the database).
            markupsNodes: markups nodes (point list, line, angle, curve, closed curve, plane, ROI).
            outputs: any of "overlay" (overlay-embedded copy of the series), "seg", "sr" (it
                references a SEG, which is then written too), "rtstruct", "gsps".
            outputFolder: where ``overlay/``, ``seg.dcm``, ``sr.dcm``, ``rtstruct.dcm``,
                ``annotations.pr.dcm`` (and ``<volume>_dicom/`` for a created series) are written.
                With None, a temporary folder whose files are added to the (open) DICOM database.
            addToDatabase: import the written files into Slicer's DICOM database (copied).
            segType, compression, lidcPreset, observerName, fillMarkups, splitOverlays (more than
                16 planes), replaceFiles (``force``), seriesDescription, evaluations (a CSV),
                gspsOutlines, rtstructInterpretedType, sendTo (an archive node; NetworkError when
                a file is not stored): as ``DicomAnnotEmbedLib.slicer.logic.ExportOptions``.
            progress: ``progress(done, total, message)`` (raise ``module_logic.Cancelled`` to stop).

        Returns:
            ``DicomAnnotEmbedLib.slicer.logic.ExportResult`` (``.summary()``, ``.files``).

        Raises:
            DicomAnnotEmbedError: bad input, a reference volume without DICOM series (and not
                ``createSeriesIfNeeded``), an output that exists, ...
        """
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.errors import InputError

        if referenceVolumeNode is None:
            raise InputError("choose the reference volume the annotations were drawn on")
        temporary = outputFolder is None
        if addToDatabase or temporary:
            self._requireDatabase()  # before anything is written
        options = module_logic.ExportOptions(
            outputs=tuple(outputs), seg_type=segType, compression=compression, lidc=lidcPreset,
            observer_name=observerName or "", evaluations=evaluations, fill_markups=fillMarkups, split=splitOverlays,
            series_description=seriesDescription, force=replaceFiles, gsps_outlines=gspsOutlines,
            rtstruct_interpreted_type=rtstructInterpretedType or "", send_to=sendTo or "").checked()
        folder = pathlib.Path(outputFolder) if outputFolder else pathlib.Path(self._temporaryFolder("export"))
        if not self.isVolumeFromDicom(referenceVolumeNode):
            if not createSeriesIfNeeded:
                raise InputError(f"the reference volume {referenceVolumeNode.GetName()!r} was not loaded from DICOM: "
                                 "create a DICOM series for it first (createSeriesIfNeeded=True)")
            seriesFolder = None if temporary else folder / (self.safeName(referenceVolumeNode.GetName()) + "_dicom")
            if seriesFolder is not None and seriesFolder.exists() and replaceFiles:
                seriesFolder = folder / (self.safeName(referenceVolumeNode.GetName()) + f"_dicom_{int(time.time())}")
            self.createDicomSeriesForVolume(referenceVolumeNode, str(seriesFolder) if seriesFolder else None,
                                            addToDatabase=addToDatabase or temporary, modality=seriesModality,
                                            progress=progress)
        with self.openReferenceSeries(referenceVolumeNode, progress) as series:
            if series is None:
                raise InputError(f"the DICOM series of {referenceVolumeNode.GetName()!r} is not in the DICOM "
                                 "database any more")
            result = module_logic.export_nodes(series, segmentationNode, list(markupsNodes or []), folder,
                                               reference_volume_node=referenceVolumeNode, options=options,
                                               progress=progress)
        if addToDatabase or temporary:
            self.addFolderToDatabase(str(folder))
            result.notes.append("Added to the DICOM database.")
        return result

    # --- import ---

    def importOverlaySeries(self, folderOrFiles, seriesUID=None, referenceVolumeNode=None, progress=None):
        """Load an overlay-embedded series (a folder, or a list of its files): the images as a
        volume node (unless ``referenceVolumeNode`` is given), the overlay planes as a segmentation
        node, our markups as markups nodes. Returns ``module_logic.SceneImport``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        with module_logic.opened_folder_or_files(folderOrFiles, seriesUID, progress) as series:
            result = module_logic.import_overlay_to_scene(slicer.mrmlScene, series,
                                                          reference_volume_node=referenceVolumeNode, progress=progress)
        self._show(result)
        return result

    def importSeg(self, segFile, referenceVolumeNode=None, seriesFolder=None, progress=None):
        """Load a DICOM SEG as a segmentation node: on the grid of ``referenceVolumeNode``'s DICOM
        series, else of the series in ``seriesFolder``, else of its referenced series in the DICOM
        database, else on the SEG's own grid. Returns ``module_logic.SceneImport``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        with self._seriesFor(segFile, referenceVolumeNode, seriesFolder, progress) as series:
            result = module_logic.import_seg_to_scene(slicer.mrmlScene, segFile, series,
                                                      reference_volume_node=referenceVolumeNode, progress=progress)
        self._show(result)
        return result

    def importSr(self, srFile, referenceVolumeNode=None, seriesFolder=None, segFolders=(), progress=None):
        """Load a TID 1500 SR: markups nodes, a table of its measurements and evaluations, and the
        SEG it references (looked for beside the SR, in ``segFolders`` and in the DICOM database)
        as a segmentation node. Returns ``module_logic.SceneImport`` (``missing`` says what was
        not found)."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        kind = module_logic.classify_dicom(srFile)
        folders = list(segFolders) + module_logic.database_folders(getattr(slicer, "dicomDatabase", None),
                                                                   kind.referenced_instance_uids)
        with self._seriesFor(srFile, referenceVolumeNode, seriesFolder, progress) as series:
            result = module_logic.import_sr_to_scene(slicer.mrmlScene, srFile, series, seg_folders=folders,
                                                     reference_volume_node=referenceVolumeNode, progress=progress)
        self._show(result)
        return result

    def importRtstruct(self, rtstructFile, referenceVolumeNode=None, seriesFolder=None, progress=None):
        """Load an RT Structure Set (ours or another tool's) onto its referenced series (the
        reference volume's, ``seriesFolder``'s, the DICOM database's, else the one beside the
        file): a segmentation node and markups nodes. Returns ``module_logic.SceneImport``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        with self._seriesFor(rtstructFile, referenceVolumeNode, seriesFolder, progress) as series:
            result = module_logic.import_rtstruct_to_scene(slicer.mrmlScene, rtstructFile, series,
                                                           reference_volume_node=referenceVolumeNode, progress=progress)
        self._show(result)
        return result

    def importGsps(self, gspsFile, referenceVolumeNode=None, seriesFolder=None, progress=None):
        """Load a presentation state's graphics as markups nodes on the images it references (the
        reference volume's series, ``seriesFolder``'s or the DICOM database's). Returns
        ``module_logic.SceneImport``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.errors import InputError

        with self._seriesFor(gspsFile, referenceVolumeNode, seriesFolder, progress) as series:
            if series is None:
                raise InputError("the images this presentation state refers to are not found: choose their volume "
                                 "as reference volume, or add them to the DICOM database", gspsFile)
            result = module_logic.import_gsps_to_scene(slicer.mrmlScene, gspsFile, series,
                                                       reference_volume_node=referenceVolumeNode, progress=progress)
        return result

    def importFromPath(self, path, referenceVolumeNode=None, progress=None):
        """Import whatever of ours a path holds: a SEG, SR, RTSTRUCT or presentation state file, a
        file of an overlay-embedded series, or a folder (such as an export folder: all of these; a
        SEG that an SR of the folder references is loaded with that SR). Returns a list of
        ``module_logic.SceneImport``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        plan = module_logic.plan_import(path)
        imports = []
        for uid, seriesFiles in plan.overlay_series.items():
            if len(seriesFiles) == 1 and seriesFiles[0].is_dir():
                imports.append(self.importOverlaySeries(str(seriesFiles[0]), uid, progress=progress))
            else:
                imports.append(self.importOverlaySeries([str(f) for f in seriesFiles], uid, progress=progress))
        imports += [self.importSeg(str(f), referenceVolumeNode, progress=progress) for f in plan.segs]
        imports += [self.importSr(str(f), referenceVolumeNode, segFolders=[str(f.parent)], progress=progress)
                    for f in plan.srs]
        imports += [self.importRtstruct(str(f), referenceVolumeNode, progress=progress) for f in plan.rtstructs]
        imports += [self.importGsps(str(f), referenceVolumeNode, progress=progress) for f in plan.presentation_states]
        return imports

    # --- helpers ---

    @contextlib.contextmanager
    def _seriesFor(self, dicomFile, referenceVolumeNode, seriesFolder, progress):
        """The image series to put a SEG, SR, RTSTRUCT or GSPS on: the reference volume's, the
        folder's, or the referenced series from the DICOM database; None when none is found."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        if seriesFolder:
            yield module_logic.series_in_folder(dicomFile, seriesFolder, progress)
            return
        if referenceVolumeNode is not None:
            with self.openReferenceSeries(referenceVolumeNode, progress) as series:
                if series is not None:
                    yield series
                    return
        found = module_logic.referenced_image_files(getattr(slicer, "dicomDatabase", None), dicomFile)
        if found is None:
            yield None
            return
        with module_logic.opened_series(found[1], found[0], progress) as series:
            yield series

    def _temporaryFolder(self, what) -> str:
        root = slicer.app.temporaryPath if getattr(slicer, "app", None) else tempfile.gettempdir()
        base = os.path.join(root, "DicomAnnotEmbed")
        os.makedirs(base, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{what}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=base)

    def addFolderToDatabase(self, folder) -> None:
        """Import (copy) the DICOM files below ``folder`` into Slicer's DICOM database.

        Raises:
            RuntimeError: the database is not open (open the DICOM module once to create it).
        """
        database = self._requireDatabase()
        from DICOMLib import DICOMUtils

        if not DICOMUtils.importDicom(str(folder), database, copyFiles=True):
            raise RuntimeError(_("The files in {folder} could not be added to the DICOM database.").format(
                folder=folder))

    @staticmethod
    def _requireDatabase():
        """Slicer's open DICOM database; RuntimeError when there is none."""
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            raise RuntimeError(_("Slicer's DICOM database is not open: open the DICOM module once, or write to an "
                                 "output folder instead."))
        return database

    @staticmethod
    def _hasViews() -> bool:
        """False in batch mode (``--no-main-window``) and without the application."""
        return bool(getattr(slicer, "app", None) and slicer.app.layoutManager())

    def _show(self, result) -> None:
        """Show an import in the views (when there are views)."""
        if not self._hasViews():
            return
        if result.volume_node is not None:
            slicer.util.setSliceViewerLayers(background=result.volume_node, fit=True)
        if result.segmentation_node is not None and result.segmentation_node.GetDisplayNode() is None:
            result.segmentation_node.CreateDefaultDisplayNodes()


#
# Test
#


class DicomAnnotEmbedTest(ScriptedLoadableModuleTest):
    """Self-test in Slicer: an oblique volume that does not come from DICOM, a segmentation with
    three segments (two overlapping), a line, a curve and a point list -> DICOM series, overlays,
    SEG, SR, RTSTRUCT, GSPS -> imported back into new nodes (also through the DICOM browser plugin)
    -> the same voxels, names, colours, terminology and control points."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RoundTrip()
        self.setUp()
        self.test_DicomBrowserPlugin()

    # --- tests (the case and its comparison: DicomAnnotEmbedLib.slicer.self_test_case, MRML and VTK only) ---

    def _checkImport(self, imported, case, colorTolerance, markups=True):
        from DicomAnnotEmbedLib.slicer.self_test_case import import_differences

        self.assertEqual(import_differences(slicer.mrmlScene, imported, case, colorTolerance, markups=markups), [])

    def test_RoundTrip(self):
        self.delayDisplay("Export and import, in the module logic")
        from DicomAnnotEmbedLib.slicer.self_test_case import make_case

        logic = DicomAnnotEmbedLogic()
        logic.ensureDependencies(prompt=False)
        case = make_case(slicer.mrmlScene)
        with tempfile.TemporaryDirectory() as folder:
            result = logic.exportToDicom(case.segmentation, case.volume, case.markups, outputFolder=folder,
                                         outputs=OUTPUTS, createSeriesIfNeeded=True)
            for name in ("seg.dcm", "sr.dcm", "rtstruct.dcm", "annotations.pr.dcm"):
                self.assertTrue(os.path.isfile(os.path.join(folder, name)), name)
            self.assertEqual(result.seg.seg_type, "binary")  # two segments overlap
            overlay = logic.importOverlaySeries(os.path.join(folder, "overlay"), referenceVolumeNode=case.volume)
            self._checkImport(overlay, case, 1e-6)
            self._checkImport(logic.importSeg(os.path.join(folder, "seg.dcm"), case.volume), case, 1.0 / 255, False)
            sr = logic.importSr(os.path.join(folder, "sr.dcm"), case.volume)
            self._checkImport(sr, case, 1.0 / 255)
            self.assertIsNotNone(sr.table_node)
            rtstruct = logic.importRtstruct(os.path.join(folder, "rtstruct.dcm"), case.volume)
            self._checkImport(rtstruct, case, 1.0 / 255, False)
            gsps = logic.importGsps(os.path.join(folder, "annotations.pr.dcm"), case.volume)
            self.assertEqual(sorted(n.GetName() for n in gsps.markups_nodes), ["Diameter", "Lesions", "Vessel"])
        self.delayDisplay("Round trip passed")

    def test_DicomBrowserPlugin(self):
        self.delayDisplay("Loading through the DICOM browser plugin")
        from DICOMLib import DICOMUtils

        from DicomAnnotEmbedLib.slicer.self_test_case import make_case

        logic = DicomAnnotEmbedLogic()
        logic.ensureDependencies(prompt=False)
        case = make_case(slicer.mrmlScene)
        with tempfile.TemporaryDirectory() as folder, DICOMUtils.TemporaryDICOMDatabase():
            logic.exportToDicom(case.segmentation, case.volume, case.markups, outputs=OUTPUTS, segType="binary",
                                outputFolder=folder, createSeriesIfNeeded=True)
            logic.addFolderToDatabase(folder)
            plugin = slicer.modules.dicomPlugins["DICOMAnnotEmbedPlugin"]()
            fileLists = [list(slicer.dicomDatabase.filesForSeries(uid))
                         for study in slicer.dicomDatabase.studiesForPatient(slicer.dicomDatabase.patients()[0])
                         for uid in slicer.dicomDatabase.seriesForStudy(study)]
            loadables = plugin.examineForImport(fileLists)
            kinds = sorted(loadable.daeKind for loadable in loadables if loadable.selected)
            # Ours (the RTSTRUCT below SlicerRT's confidence); the BINARY SEG is left to Slicer's plugin.
            self.assertEqual(kinds, ["gsps", "overlay", "rtstruct", "sr"])
            slicer.mrmlScene.Clear()
            for loadable in sorted(loadables, key=lambda item: item.daeKind):
                if loadable.selected:
                    self.assertTrue(plugin.load(loadable))
            segmentations = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
            self.assertEqual(len(segmentations), 3)  # the overlays', the SR's SEG and the RTSTRUCT's
            for className in ("vtkMRMLMarkupsLineNode", "vtkMRMLMarkupsCurveNode", "vtkMRMLMarkupsFiducialNode"):
                # overlays, SR, GSPS; the RTSTRUCT holds the points and the polylines too
                self.assertEqual(len(slicer.util.getNodesByClass(className)), 4, className)
        self.delayDisplay("DICOM browser plugin passed")
