"""DICOM browser plugin of DicomAnnotEmbed (registered as ``slicer.modules.dicomPlugins["DICOMAnnotEmbedPlugin"]``).

Offers, in the DICOM browser:

* **overlay-embedded series** (image series whose files carry overlay planes, 60xx): the images as
  a scalar volume (through Slicer's scalar volume plugin) plus the planes as a segmentation node
  and our markups as markups nodes. Series written by DicomAnnotEmbed (our private creator in
  every file) are selected with confidence 0.97, above the plain scalar volume loadable; other
  overlay series (scanner graphics) are offered unselected (confidence 0.45), the plain volume
  stays the default;
* **LABELMAP DICOM SEG** (Label Map Segmentation Storage, Supplement 243): selected with
  confidence 0.97, above Slicer's own SEG plugin; other SEGs (BINARY, FRACTIONAL) are offered
  unselected (0.5), Slicer's SEG plugin stays the default;
* **TID 1500 SR written by DicomAnnotEmbed**: markups nodes of every kind we write (lines,
  curves, angles, closed curves, planes, ROI boxes, point lists), a table of measurements and
  the referenced SEG, selected with confidence 0.97 (above Slicer's TID 1500 plugin, 0.95);
  other TID 1500 SRs are offered unselected (0.5);
* **RT Structure Sets** (ours or another tool's): a segmentation node (ROI names, colours,
  terminology) and markups nodes (POINT and open contours), offered selected with confidence 0.9.
  SlicerRT's DicomRtImportExport plugin offers an RTSTRUCT selected with confidence 1.0, and
  ``DICOMLib.selectHighestConfidenceLoadables`` keeps only the highest selected per series: with
  SlicerRT installed, SlicerRT loads it; without, we do;
* **presentation states** (GSPS; Slicer has no plugin for them): their graphics as markups nodes on
  the referenced images (which must be in the database); ours selected (0.97), others offered
  unselected (0.5).

The work is done by ``DicomAnnotEmbedLib.slicer.logic`` (files are recognised by
``classify_dicom``); this file adds the DICOM database and subject hierarchy.
"""
import contextlib
import logging
import os

import slicer
from DICOMLib import DICOMLoadable, DICOMPlugin

#: Files of an image series looked at for foreign overlay planes (first, middle, last).
OVERLAY_SAMPLES = 3


class DICOMAnnotEmbedPluginClass(DICOMPlugin):
    """Loads overlay-embedded series, LABELMAP SEG, our TID 1500 SR, RTSTRUCTs and presentation
    states (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.loadType = "DicomAnnotEmbed"

    # --- examine ---

    def examineFiles(self, files):
        """Loadables for one series' files: one per SEG/SR file, or one for an overlay series."""
        from DicomAnnotEmbedLib.slicer.logic import browser_preference, classify_dicom

        if not files:
            return []
        first = classify_dicom(files[0])
        objects = ("seg", "sr", "rtstruct", "gsps")
        if first.kind in objects:
            kinds = {path: first if path == files[0] else classify_dicom(path) for path in files}
            # a report's markups' own report (same series) is loaded with the report, not alone
            companions = {uid for kind in kinds.values() for uid in kind.companion_uids}
            return [self._objectLoadable(path, kind) for path, kind in kinds.items()
                    if kind.kind in objects and not (kind.kind == "sr" and kind.sop_instance_uid in companions)]
        if first.kind != "overlay" and not first.ours:
            samples = [files[len(files) // 2], files[-1]][:OVERLAY_SAMPLES - 1] if len(files) > 1 else []
            found = next((kind for kind in map(classify_dicom, samples) if kind.kind == "overlay"), None)
            if found is None:
                return []
            first = found
        loadable = DICOMLoadable()
        loadable.files = list(files)
        loadable.daeKind = "overlay"
        loadable.seriesUID = first.series_uid
        name = (first.description or "").split(" + overlays")[0].strip() or "Overlays"
        loadable.name = name
        if first.ours:
            loadable.tooltip = f"{name}: images with DicomAnnotEmbed overlay planes (segments and markups)"
        else:
            loadable.tooltip = f"{name}: images with overlay planes ({first.detail}) loaded as a segmentation"
        loadable.confidence, loadable.selected = browser_preference(first)
        return [loadable]

    def _objectLoadable(self, path, kind):
        from DicomAnnotEmbedLib.slicer.logic import browser_preference

        loadable = DICOMLoadable()
        loadable.files = [path]
        loadable.daeKind = kind.kind
        loadable.daeDetail = kind.detail
        names = {"seg": "Segmentation", "sr": "Measurements", "rtstruct": "Structures", "gsps": "Annotations"}
        loadable.name = kind.description or names[kind.kind]
        loadable.referencedSeriesUIDs = [uid for uid in kind.referenced_series_uids if uid]
        loadable.referencedInstanceUIDs = list(kind.referenced_instance_uids)
        tooltips = {"seg": f"{kind.detail} DICOM SEG", "sr": "TID 1500 measurement report with markups",
                    "rtstruct": "RT Structure Set (segments and markups; SlicerRT loads it when installed)",
                    "gsps": f"{kind.detail} (graphics as markups)"}
        loadable.tooltip = f"{loadable.name}: {tooltips[kind.kind]}"
        if kind.kind in ("seg", "rtstruct"):  # the images they lie on are loaded with them
            for uid in loadable.referencedSeriesUIDs:
                loadable.referencedInstanceUIDs += self._instanceUIDsOfSeries(uid)
        if loadable.referencedSeriesUIDs:
            loadable.referencedSeriesUID = loadable.referencedSeriesUIDs[0]
        loadable.confidence, loadable.selected = browser_preference(kind)
        return loadable

    @staticmethod
    def _instanceUIDsOfSeries(seriesUID):
        database = slicer.dicomDatabase
        return [uid for uid in (database.instanceForFile(f) for f in database.filesForSeries(seriesUID)) if uid]

    # --- load ---

    def load(self, loadable):
        """Create the nodes of a loadable; True on success."""
        from DicomAnnotEmbed import DicomAnnotEmbedLogic

        try:
            DicomAnnotEmbedLogic().ensureDependencies()
            if loadable.daeKind == "overlay":
                return self._loadOverlay(loadable)
            if loadable.daeKind == "seg":
                return self._loadSeg(loadable)
            if loadable.daeKind in ("rtstruct", "gsps"):
                return self._loadOnSeries(loadable)
            return self._loadSr(loadable)
        except Exception as error:  # the DICOM browser shows False as "could not be loaded"
            logging.error("DicomAnnotEmbed could not load %s: %s", loadable.name, error, exc_info=True)
            return False

    def _loadOverlay(self, loadable):
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        volume = self._loadVolume(loadable)
        with module_logic.opened_series(loadable.files, loadable.seriesUID or None) as series:
            imported = module_logic.import_overlay_to_scene(slicer.mrmlScene, series, reference_volume_node=volume,
                                                            load_volume=volume is None, name=loadable.name)
        if imported.volume_node is not None:
            self.addSeriesInSubjectHierarchy(loadable, imported.volume_node)
            volume = imported.volume_node
        self._beside(volume, [imported.segmentation_node, *imported.markups_nodes])
        return True

    def _loadVolume(self, loadable):
        """The images through Slicer's scalar volume plugin (None if it cannot load them)."""
        pluginClass = slicer.modules.dicomPlugins.get("DICOMScalarVolumePlugin")
        if pluginClass is None:
            return None
        plugin = pluginClass()
        candidates = plugin.examineFiles(loadable.files)
        if not candidates:
            return None
        best = max(candidates, key=lambda candidate: candidate.confidence)
        best.name = loadable.name
        try:
            return plugin.load(best)
        except Exception as error:  # our own reader is the fallback
            logging.warning("Slicer's scalar volume plugin could not load %s (%s); reading it directly",
                            loadable.name, error)
            return None

    def _loadSeg(self, loadable):
        from DicomAnnotEmbedLib.slicer import logic as module_logic
        from DicomAnnotEmbedLib.core.errors import GeometryError

        volume = self._volumeOfSeries(loadable.referencedSeriesUIDs)
        files = self._seriesFiles(loadable.referencedSeriesUIDs)
        try:
            if files:
                with module_logic.opened_series(files, self._seriesUID(files)) as series:
                    imported = module_logic.import_seg_to_scene(slicer.mrmlScene, loadable.files[0], series,
                                                                reference_volume_node=volume, name=loadable.name)
            else:
                imported = module_logic.import_seg_to_scene(slicer.mrmlScene, loadable.files[0],
                                                            reference_volume_node=volume, name=loadable.name)
        except GeometryError as error:
            logging.warning("%s does not lie on its referenced series (%s); loaded on its own grid",
                            loadable.name, error)
            imported = module_logic.import_seg_to_scene(slicer.mrmlScene, loadable.files[0], name=loadable.name)
        self.addSeriesInSubjectHierarchy(loadable, imported.segmentation_node)
        return True

    def _loadSr(self, loadable):
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        database = slicer.dicomDatabase
        segFiles = [database.fileForInstance(uid) for uid in loadable.referencedInstanceUIDs]
        segFiles = [f for f in segFiles if f and database.fileValue(f, self.tags["modality"]) == "SEG"]
        segUIDs = [database.instanceForFile(f) for f in segFiles]
        loadedSeg = any(self._nodesWithInstanceUID(uid) for uid in segUIDs)
        imageSeries = [uid for uid in loadable.referencedSeriesUIDs if database.filesForSeries(uid)
                       and database.fileValue(database.filesForSeries(uid)[0], self.tags["modality"]) not in ("SEG", "SR")]
        volume = self._volumeOfSeries(imageSeries)
        files = self._seriesFiles(imageSeries)
        folders = sorted({os.path.dirname(f) for f in segFiles})
        arguments = dict(seg_folders=folders, reference_volume_node=volume, load_seg=not loadedSeg, name=loadable.name)
        if files:
            with module_logic.opened_series(files, self._seriesUID(files)) as series:
                imported = module_logic.import_sr_to_scene(slicer.mrmlScene, loadable.files[0], series, **arguments)
        else:
            imported = module_logic.import_sr_to_scene(slicer.mrmlScene, loadable.files[0], **arguments)
        for message in imported.missing:
            logging.warning("%s: %s", loadable.name, message)
        nodes = [imported.table_node, imported.segmentation_node, *imported.markups_nodes]
        nodes = [node for node in nodes if node is not None]
        if nodes:
            self.addSeriesInSubjectHierarchy(loadable, nodes[0])
            self._beside(nodes[0], nodes[1:])
        return True

    def _loadOnSeries(self, loadable):
        """An RTSTRUCT (segmentation and markups nodes) or a presentation state (markups nodes) on
        the image series it references, from the DICOM database (an RTSTRUCT whose series is not
        there is placed on the series beside its file, if any)."""
        from DicomAnnotEmbedLib.core.errors import InputError
        from DicomAnnotEmbedLib.slicer import logic as module_logic

        volume = self._volumeOfSeries(loadable.referencedSeriesUIDs)
        files = self._seriesFiles(loadable.referencedSeriesUIDs)
        if not files and loadable.daeKind == "gsps":
            raise InputError("the images this presentation state refers to are not in the DICOM database",
                             loadable.files[0])
        with contextlib.ExitStack() as stack:
            series = None
            if files:
                series = stack.enter_context(module_logic.opened_series(files, self._seriesUID(files)))
            if loadable.daeKind == "rtstruct":
                imported = module_logic.import_rtstruct_to_scene(slicer.mrmlScene, loadable.files[0], series,
                                                                 reference_volume_node=volume, name=loadable.name)
            else:
                imported = module_logic.import_gsps_to_scene(slicer.mrmlScene, loadable.files[0], series,
                                                             reference_volume_node=volume)
        for message in imported.missing:
            logging.warning("%s: %s", loadable.name, message)
        nodes = [node for node in [imported.segmentation_node, *imported.markups_nodes] if node is not None]
        if nodes:
            self.addSeriesInSubjectHierarchy(loadable, nodes[0])
            self._beside(nodes[0], nodes[1:])
        return True

    # --- scene helpers ---

    @staticmethod
    def _seriesFiles(seriesUIDs):
        for uid in seriesUIDs:
            files = list(slicer.dicomDatabase.filesForSeries(uid))
            if files:
                return files
        return []

    @staticmethod
    def _seriesUID(files):
        return slicer.dicomDatabase.fileValue(files[0], "0020,000E") or None

    @staticmethod
    def _volumeOfSeries(seriesUIDs):
        """A volume node of the scene loaded from one of the series (subject hierarchy UID)."""
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        uidName = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
        for uid in seriesUIDs:
            item = shNode.GetItemByUID(uidName, uid)
            node = shNode.GetItemDataNode(item) if item else None
            if node is not None and node.IsA("vtkMRMLScalarVolumeNode"):
                return node
        return None

    @staticmethod
    def _nodesWithInstanceUID(uid):
        return [node for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
                if uid and uid in (node.GetAttribute("DICOM.instanceUIDs") or "").split()]

    @staticmethod
    def _beside(anchor, nodes):
        """Put nodes in the subject hierarchy beside (under the same study as) ``anchor``."""
        if anchor is None:
            return
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        parent = shNode.GetItemParent(shNode.GetItemByDataNode(anchor))
        for node in nodes:
            if node is not None:
                shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)


#
# DicomAnnotEmbedPlugin
#


class DicomAnnotEmbedPlugin:
    """The 'hook' by which Slicer finds the plugin: a hidden scripted module that registers
    :class:`DICOMAnnotEmbedPluginClass` in ``slicer.modules.dicomPlugins``."""

    def __init__(self, parent):
        parent.title = "DICOM Annotation Embed Plugin"
        parent.categories = ["Developer Tools.DICOM Plugins"]
        parent.contributors = ["DicomAnnotEmbed developers"]
        parent.helpText = """
Plugin to the DICOM module: loads overlay-embedded series (volume + segmentation + markups),
LABELMAP DICOM SEG, DicomAnnotEmbed TID 1500 SR, RT Structure Sets (when SlicerRT is not there
to load them) and presentation states (GSPS). No panel of its own.
"""
        parent.acknowledgementText = "Part of the DicomAnnotEmbed extension."
        parent.dependencies = ["DICOM", "Segmentations", "Markups"]
        parent.hidden = True
        # The DICOM module may be discovered after this module: create the list if needed.
        if not hasattr(slicer.modules, "dicomPlugins"):
            slicer.modules.dicomPlugins = {}
        slicer.modules.dicomPlugins["DICOMAnnotEmbedPlugin"] = DICOMAnnotEmbedPluginClass
