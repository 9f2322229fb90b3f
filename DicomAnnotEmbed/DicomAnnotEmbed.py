"""DicomAnnotEmbed: Slicer segmentations and markups to overlay-embedded DICOM, DICOM SEG and
TID 1500 SR, and back.

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

#: Outputs, SEG types and compressions offered (the same names as DicomAnnotEmbedLib.slicer.logic.OUTPUTS,
#: seg.SEG_TYPES and seg.COMPRESSIONS; repeated here so that this file loads before the
#: library's dependencies are installed).
OUTPUTS = ("overlay", "seg", "sr")
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
    exportOverlay, exportSeg, exportSr - which encodings to write.
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
        hasOutput = bool(parameters and (parameters.exportOverlay or parameters.exportSeg or parameters.exportSr))
        hasTarget = bool(parameters and (str(parameters.outputFolder or "") not in ("", ".") or parameters.addToDatabase))
        canExport = bool(parameters and parameters.referenceVolume and hasInput and hasOutput and hasTarget)
        self.ui.exportButton.enabled = canExport
        if canExport:
            self.ui.exportButton.toolTip = _("Write the chosen encodings")
        else:
            self.ui.exportButton.toolTip = _("Choose a reference volume, a segmentation or markups, at least one "
                                             "output, and an output folder or 'Add to the DICOM database'")
        self.ui.segTypeComboBox.enabled = bool(parameters and (parameters.exportSeg or parameters.exportSr))
        self.ui.importButton.enabled = bool(parameters and str(parameters.importPath or "") not in ("", "."))

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
        outputs = [name for name, wanted in zip(OUTPUTS, (parameters.exportOverlay, parameters.exportSeg,
                                                           parameters.exportSr)) if wanted]
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
                    replaceFiles=parameters.replaceFiles, createSeriesIfNeeded=createSeries, progress=progress)
            self._showResult(result.summary())
        self.updateReferenceStatus()

    def onCreateSeriesButton(self) -> None:
        parameters = self._parameterNode
        outputFolder = str(parameters.outputFolder or "")
        with self._reportErrors(_("Creating the DICOM series failed.")):
            self.logic.ensureDependencies()
            folder = None
            if outputFolder not in ("", "."):
                folder = os.path.join(outputFolder, DicomAnnotEmbedLogic.safeName(parameters.referenceVolume.GetName())
                                      + "_dicom")
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
        with open(REQUIREMENTS_FILE, encoding="utf-8") as stream:
            return [line.strip() for line in stream
                    if line.strip() and not line.strip().startswith(("#", "-"))]

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
        from DicomAnnotEmbedLib.slicer.logic import pydicom_version

        if pydicom_version() < MINIMUM_PYDICOM:
            raise RuntimeError(_("DicomAnnotEmbed needs Slicer 5.12 or later (pydicom 3); this Slicer has pydicom "
                                 "{version}.").format(version=".".join(map(str, pydicom_version()))))
        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            testing = bool(slicer.app.testingEnabled()) if getattr(slicer, "app", None) else False
            packaging.pip_ensure(packaging.load_requirements(REQUIREMENTS_FILE), requester="DicomAnnotEmbed",
                                 prompt_install=prompt and not testing, skip_in_testing=False)
            return
        missing = [requirement for requirement in self.requirements() if not self._installed(requirement)]
        if missing:
            slicer.util.pip_install(missing)

    @staticmethod
    def _installed(requirement: str) -> bool:
        """Whether the distribution a requirement names is installed (any version: the fallback
        for Slicers without slicer.packaging)."""
        import importlib.metadata
        import re

        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            return False

    # --- reference volumes and their DICOM series ---

    @staticmethod
    def safeName(name: str) -> str:
        """A file-name-safe version of a node name."""
        from DicomAnnotEmbedLib.core.model import safe_file_stem

        return safe_file_stem(name or "volume")

    def _databaseFiles(self, volumeNode, firstOnly=False):
        """Files of the volume's DICOM series in Slicer's DICOM database (only the first one with
        ``firstOnly``), or [] when they are not all there."""
        from DicomAnnotEmbedLib.slicer.logic import DICOM_INSTANCE_UIDS_ATTRIBUTE

        uids = (volumeNode.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None or not database.isOpen:
            return []
        files = [database.fileForInstance(uid) for uid in (uids[:1] if firstOnly else uids)]
        return files if all(files) and all(os.path.isfile(f) for f in files) else []

    def isVolumeFromDicom(self, volumeNode) -> bool:
        """True when the volume's DICOM series can be found: in Slicer's DICOM database (the
        volume was loaded by the DICOM module), or written by :meth:`createDicomSeriesForVolume`
        or loaded by :meth:`loadDicomSeries`."""
        from DicomAnnotEmbedLib.slicer.logic import SERIES_FOLDER_ATTRIBUTE

        if volumeNode is None:
            return False
        folder = volumeNode.GetAttribute(SERIES_FOLDER_ATTRIBUTE)
        return bool(folder and os.path.isdir(folder)) or bool(self._databaseFiles(volumeNode, firstOnly=True))

    @contextlib.contextmanager
    def openReferenceSeries(self, volumeNode, progress=None):
        """The DICOM series of a volume (``DicomAnnotEmbedLib.core.series.ReferenceSeries``), or None
        when it is not from DICOM (a context manager: files found in the database may be linked
        into a temporary folder while it is open)."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        series = module_logic.series_of_volume(volumeNode, progress)
        if series is not None:
            yield series
            return
        files = self._databaseFiles(volumeNode)
        if not files:
            yield None
            return
        seriesUID = slicer.dicomDatabase.fileValue(files[0], "0020,000E") or None
        with module_logic.opened_series(files, seriesUID, progress) as series:
            yield series

    def loadDicomSeries(self, folder, seriesUID=None, progress=None):
        """Load a DICOM image series from a folder as a scalar volume node (without the DICOM
        database; handy in batch scripts). The node remembers the folder, so that
        :meth:`exportToDicom` writes outputs that reference this series. Returns the node."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.series import load_series

        series = load_series(folder, seriesUID, progress)
        node = module_logic.volume_node_of_series(slicer.mrmlScene, series, progress=progress)
        node.SetAttribute(module_logic.SERIES_FOLDER_ATTRIBUTE, str(pathlib.Path(folder).resolve()))
        node.SetAttribute(module_logic.SERIES_UID_ATTRIBUTE, series.series_instance_uid)
        if self._hasViews():
            slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node

    def createDicomSeriesForVolume(self, volumeNode, outputFolder=None, addToDatabase=True, modality="CT",
                                   patientName="Anonymous^", progress=None):
        """Write a volume that does not come from DICOM as a DICOM series (one file per slice, its
        own grid and voxel values) and link the volume to it.

        Args:
            volumeNode: a scalar volume node.
            outputFolder: folder for the series; a temporary folder when None (then the series is
                kept only in the DICOM database, so ``addToDatabase`` must be True).
            addToDatabase: import the series into Slicer's DICOM database (copying the files); the
                volume then gets ``DICOM.instanceUIDs`` like a volume loaded from DICOM.
            modality: "CT", "MR" or "OT" (secondary capture).

        Returns:
            The series (``ReferenceSeries``).
        """
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

    def exportToDicom(self, segmentationNode, referenceVolumeNode, markupsNodes=(), outputs=OUTPUTS,
                      outputFolder=None, addToDatabase=False, segType="auto", compression="auto",
                      lidcPreset=False, observerName="", fillMarkups=False, splitOverlays=False,
                      replaceFiles=False, seriesDescription=None, evaluations=None,
                      createSeriesIfNeeded=False, seriesModality="CT", progress=None):
        """Write a segmentation node and markups nodes as DICOM that references the reference
        volume's DICOM series.

        Args:
            segmentationNode: vtkMRMLSegmentationNode, or None (markups only; no SEG/SR then).
            referenceVolumeNode: the volume the annotations were drawn on. From DICOM (loaded by
                the DICOM module, or by :meth:`loadDicomSeries`), or not: then, with
                ``createSeriesIfNeeded``, a DICOM series is created for it first (``seriesModality``;
                in ``outputFolder/<volume>_dicom`` or a temporary folder added to the database).
            markupsNodes: markups nodes (point list, line, angle, curve, closed curve, plane, ROI).
            outputs: any of "overlay" (a copy of the series with overlay planes), "seg" (DICOM SEG),
                "sr" (TID 1500 SR; it references a SEG, which is then written too).
            outputFolder: where files are written: ``overlay/``, ``seg.dcm``, ``sr.dcm`` (and
                ``<volume>_dicom/`` when a series is created). With None, a temporary folder whose
                files are added to the DICOM database (which must be open).
            addToDatabase: import the written files into Slicer's DICOM database (copied).
            segType: "auto", "binary", "labelmap" or "fractional".
            compression: "auto", "none", "jpegls", "rle" or "jpeg2000".
            lidcPreset: LIDC conventions (nodule/annotation descriptions, finding Nodule in Lung).
            observerName: person observer of the SR and content creator of the SEG (``Family^Given``).
            fillMarkups: draw closed curves and ROIs filled in overlays.
            splitOverlays: several overlay series when there are more than 16 planes.
            replaceFiles: write into an output folder that already holds our outputs.
            seriesDescription: description of the written series.
            evaluations: an evaluation CSV for the SR (segment,concept,value).
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
            series_description=seriesDescription, force=replaceFiles).checked()
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

        files = [folderOrFiles] if isinstance(folderOrFiles, (str, os.PathLike)) else list(folderOrFiles)
        if len(files) == 1 and os.path.isdir(files[0]):
            from DicomAnnotEmbedLib.core.series import load_series

            series = load_series(files[0], seriesUID, progress)
            result = module_logic.import_overlay_to_scene(slicer.mrmlScene, series,
                                                          reference_volume_node=referenceVolumeNode, progress=progress)
        else:
            with module_logic.opened_series(files, seriesUID, progress) as series:
                result = module_logic.import_overlay_to_scene(slicer.mrmlScene, series,
                                                              reference_volume_node=referenceVolumeNode,
                                                              progress=progress)
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
        folders = list(segFolders) + self._databaseFolders(kind.referenced_instance_uids)
        with self._seriesFor(srFile, referenceVolumeNode, seriesFolder, progress) as series:
            result = module_logic.import_sr_to_scene(slicer.mrmlScene, srFile, series, seg_folders=folders,
                                                     reference_volume_node=referenceVolumeNode, progress=progress)
        self._show(result)
        return result

    def importFromPath(self, path, referenceVolumeNode=None, progress=None):
        """Import whatever of ours a path holds: a SEG or SR file, a file of an overlay-embedded
        series, or a folder (such as an export folder: its overlay series, SEGs and SRs; a SEG
        that an SR of the folder references is loaded with that SR). Returns a list of
        ``module_logic.SceneImport``."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.errors import InputError

        path = pathlib.Path(path)
        if not path.exists():
            raise InputError("does not exist", path)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        kinds = {f: module_logic.classify_dicom(f) for f in files}
        srs = [f for f, k in kinds.items() if k.kind == "sr"]
        referenced = {uid for f in srs for uid in kinds[f].referenced_instance_uids}
        segs = [f for f, k in kinds.items() if k.kind == "seg" and module_logic.sop_instance_uid(f) not in referenced]
        overlaySeries = {}
        for f, k in kinds.items():
            if k.kind == "overlay":
                overlaySeries.setdefault(k.series_uid, []).append(f)
        if path.is_file() and kinds[path].kind == "overlay":  # one file: its whole series
            overlaySeries = {kinds[path].series_uid: [path.parent]}
        if not (srs or segs or overlaySeries):
            raise InputError("holds no overlay-embedded series, DICOM SEG or TID 1500 SR", path)
        imports = []
        for uid, seriesFiles in overlaySeries.items():
            if len(seriesFiles) == 1 and seriesFiles[0].is_dir():
                imports.append(self.importOverlaySeries(str(seriesFiles[0]), uid, progress=progress))
            else:
                imports.append(self.importOverlaySeries([str(f) for f in seriesFiles], uid, progress=progress))
        for seg in segs:
            imports.append(self.importSeg(str(seg), referenceVolumeNode, progress=progress))
        for sr in srs:
            imports.append(self.importSr(str(sr), referenceVolumeNode, segFolders=[str(sr.parent)], progress=progress))
        return imports

    # --- helpers ---

    @contextlib.contextmanager
    def _seriesFor(self, dicomFile, referenceVolumeNode, seriesFolder, progress):
        """The image series to put a SEG or SR on: the reference volume's, the folder's, or the
        referenced series from the DICOM database; None when none is found."""
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.series import load_series

        if seriesFolder:
            from DicomAnnotEmbedLib.core.errors import SeriesError

            kind = module_logic.classify_dicom(dicomFile)
            uid = next((u for u in kind.referenced_series_uids if u), None)
            try:
                series = load_series(seriesFolder, uid, progress)
            except SeriesError:  # the referenced UID is not there: the folder's only series
                series = load_series(seriesFolder, None, progress)
            yield series
            return
        if referenceVolumeNode is not None:
            with self.openReferenceSeries(referenceVolumeNode, progress) as series:
                if series is not None:
                    yield series
                    return
        database = getattr(slicer, "dicomDatabase", None)
        if database is not None and database.isOpen:
            kind = module_logic.classify_dicom(dicomFile)
            for uid in kind.referenced_series_uids:
                files = list(database.filesForSeries(uid)) if uid else []
                if files and module_logic.classify_dicom(files[0]).kind not in ("seg", "sr"):
                    with module_logic.opened_series(files, uid, progress) as series:
                        yield series
                    return
        yield None

    def _databaseFolders(self, instanceUIDs):
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            return []
        files = [database.fileForInstance(uid) for uid in instanceUIDs]
        return sorted({os.path.dirname(f) for f in files if f})

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
    SEG, SR -> imported back into new nodes (also through the DICOM browser plugin) -> the same
    voxels, names, colours, terminology and control points."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RoundTrip()
        self.setUp()
        self.test_DicomBrowserPlugin()

    # --- scene ---

    def _scene(self):
        import numpy as np
        from vtk.util import numpy_support

        shape = (10, 12, 14)
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Oblique CT")
        volume.SetSpacing(0.7, 0.8, 1.5)
        volume.SetOrigin(-31.5, 12.25, -80.0)
        angle = np.deg2rad(25.0)
        directions = vtk.vtkMatrix4x4()
        rotation = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle) * 0.8, np.cos(angle) * 0.8, -0.6],
                    [np.sin(angle) * 0.6, np.cos(angle) * 0.6, 0.8]]
        for r in range(3):
            for c in range(3):
                directions.SetElement(r, c, rotation[r][c])
        volume.SetIJKToRASDirectionMatrix(directions)
        slicer.util.updateVolumeFromArray(volume, (np.arange(np.prod(shape)).reshape(shape) % 2000 - 1000)
                                          .astype(np.int16))
        volume.CreateDefaultDisplayNodes()
        masks = {"liver": np.zeros(shape, bool), "tumor": np.zeros(shape, bool), "kidney": np.zeros(shape, bool)}
        masks["liver"][2:7, 3:9, 2:10] = True
        masks["tumor"][4:6, 5:7, 6:9] = True
        masks["tumor"][4, 5, 10] = True
        masks["kidney"][1:5, 2:6, 11:14] = True
        ijkToRas = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(ijkToRas)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        terminology = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
                       "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
        colors = {"liver": (0.85, 0.4, 0.3), "tumor": (0.9, 0.9, 0.1), "kidney": (0.2, 0.5, 0.95)}
        names = {"liver": "Liver", "tumor": "Tumour 1", "kidney": "Right kidney"}
        for segmentID, mask in masks.items():
            # One labelmap per segment, then shared layers as Slicer packs them (the tumour overlaps).
            image = slicer.vtkOrientedImageData()
            image.SetDimensions(shape[2], shape[1], shape[0])
            image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True))
            image.SetImageToWorldMatrix(ijkToRas)
            segmentation.AddSegmentFromBinaryLabelmapRepresentation(image, names[segmentID], list(colors[segmentID]),
                                                                    segmentID)
            segmentation.GetSegmentation().GetSegment(segmentID).SetTerminology(terminology)
        segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfLayers(), 2)

        def ras(i, j, k):
            return list(ijkToRas.MultiplyPoint([i, j, k, 1.0])[:3])

        markups = []
        for className, name, points in (
                ("vtkMRMLMarkupsLineNode", "Diameter", [ras(3, 4, 2), ras(9, 8, 6)]),
                ("vtkMRMLMarkupsCurveNode", "Vessel", [ras(2 + t, 3 + t / 2, 1 + t / 1.5) for t in range(5)]),
                ("vtkMRMLMarkupsFiducialNode", "Lesions", [ras(5, 5, 5), ras(7, 6, 3), ras(10, 9, 8)])):
            node = slicer.mrmlScene.AddNewNodeByClass(className, name)
            for point in points:
                node.AddControlPoint(point)
            markups.append(node)
        return volume, segmentation, markups, masks, names, colors, terminology

    def _checkImport(self, imported, volume, masks, names, colors, terminology, markups, colorTolerance):
        import numpy as np

        segmentation = imported.segmentation_node.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 3)
        for segmentID, name in names.items():
            segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
            self.assertIsNotNone(segment, name)
            np.testing.assert_allclose(segment.GetColor(), colors[segmentID], atol=colorTolerance)
            self.assertEqual(segment.GetTerminology(), terminology)
            array = slicer.util.arrayFromSegmentBinaryLabelmap(
                imported.segmentation_node, segmentation.GetSegmentIdBySegmentName(name), volume)
            np.testing.assert_array_equal(array != 0, masks[segmentID])
        byName = {node.GetName(): node for node in imported.markups_nodes}
        for node in markups:
            new = byName[node.GetName()]
            self.assertEqual(new.GetClassName(), node.GetClassName())
            np.testing.assert_allclose(slicer.util.arrayFromMarkupsControlPoints(new, world=True),
                                       slicer.util.arrayFromMarkupsControlPoints(node, world=True), atol=1e-3)

    # --- tests ---

    def test_RoundTrip(self):
        self.delayDisplay("Export and import, in the module logic")
        logic = DicomAnnotEmbedLogic()
        logic.ensureDependencies(prompt=False)
        volume, segmentation, markups, masks, names, colors, terminology = self._scene()
        with tempfile.TemporaryDirectory() as folder:
            result = logic.exportToDicom(segmentation, volume, markups, outputFolder=folder,
                                         createSeriesIfNeeded=True)
            self.assertTrue(os.path.isfile(os.path.join(folder, "seg.dcm")))
            self.assertTrue(os.path.isfile(os.path.join(folder, "sr.dcm")))
            self.assertEqual(result.seg.seg_type, "binary")  # two segments overlap
            overlay = logic.importOverlaySeries(os.path.join(folder, "overlay"), referenceVolumeNode=volume)
            self._checkImport(overlay, volume, masks, names, colors, terminology, markups, 1e-6)
            seg = logic.importSeg(os.path.join(folder, "seg.dcm"), volume)
            self._checkImport(seg, volume, masks, names, colors, terminology, [], 1.0 / 255)
            sr = logic.importSr(os.path.join(folder, "sr.dcm"), volume)
            self._checkImport(sr, volume, masks, names, colors, terminology, markups, 1.0 / 255)
            self.assertIsNotNone(sr.table_node)
        self.delayDisplay("Round trip passed")

    def test_DicomBrowserPlugin(self):
        self.delayDisplay("Loading through the DICOM browser plugin")
        from DICOMLib import DICOMUtils

        logic = DicomAnnotEmbedLogic()
        logic.ensureDependencies(prompt=False)
        volume, segmentation, markups, masks, names, colors, terminology = self._scene()
        with tempfile.TemporaryDirectory() as folder, DICOMUtils.TemporaryDICOMDatabase():
            logic.exportToDicom(segmentation, volume, markups, outputs=("overlay", "seg", "sr"), segType="binary",
                                outputFolder=folder, createSeriesIfNeeded=True)
            logic.addFolderToDatabase(folder)
            plugin = slicer.modules.dicomPlugins["DICOMAnnotEmbedPlugin"]()
            fileLists = [list(slicer.dicomDatabase.filesForSeries(uid))
                         for study in slicer.dicomDatabase.studiesForPatient(slicer.dicomDatabase.patients()[0])
                         for uid in slicer.dicomDatabase.seriesForStudy(study)]
            loadables = plugin.examineForImport(fileLists)
            kinds = sorted(loadable.daeKind for loadable in loadables if loadable.selected)
            self.assertEqual(kinds, ["overlay", "sr"])  # ours; the BINARY SEG is left to Slicer's plugin
            slicer.mrmlScene.Clear()
            for loadable in sorted(loadables, key=lambda item: item.daeKind):
                if loadable.selected:
                    self.assertTrue(plugin.load(loadable))
            segmentations = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
            self.assertEqual(len(segmentations), 2)  # the overlays' and the SR's SEG
            for className in ("vtkMRMLMarkupsLineNode", "vtkMRMLMarkupsCurveNode", "vtkMRMLMarkupsFiducialNode"):
                self.assertEqual(len(slicer.util.getNodesByClass(className)), 2, className)
        self.delayDisplay("DICOM browser plugin passed")
