"""What the Slicer module does, on MRML scenes and nodes, without Qt and without ``slicer.app``.

The Slicer module's Logic (``DicomAnnotEmbed.py``) adds the application parts (the DICOM
database, dialogs, ``slicer.mrmlScene``) and calls these functions for the work; scripts and the
tests call them directly, in Slicer or under the PyPI wheel ``slicer-core``. Scenes and nodes are
always arguments. The encoders are the core's (:mod:`.api`); nodes are converted by
:mod:`.mrml_adapter`.

Coordinates: MRML nodes are in Slicer's world coordinates (**RAS**); DICOM and the core model are
**LPS**. A reference volume's own frame (its IJKToRAS, before any parent transform) is taken as
the patient coordinate system of its DICOM series.

Output layout of :func:`export_nodes` in ``out_dir``: ``overlay/`` (the overlay-embedded copy of
the series; ``overlay/series_NN/`` when split), ``seg.dcm`` (DICOM SEG), ``sr.dcm`` (TID 1500 SR
referencing ``seg.dcm``; with markups too, ``sr_markups.dcm`` holds their groups), ``rtstruct.dcm`` (RT Structure Set), ``annotations.pr.dcm`` (Grayscale
Softcopy Presentation State). Optionally sent to an archive node afterwards (:mod:`.services.pacs`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Union

import numpy as np

from .. import api
from . import mrml_adapter
from ..core.errors import DicomAnnotEmbedError, GeometryError, InputError, OutputError, SeriesError
from ..core.geometry import VolumeGeometry
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries, load_series
from .module_support import (DICOM_INSTANCE_UIDS_ATTRIBUTE, ImportPlan,  # noqa: F401 (re-exported)
                             database_files_of_volume, database_folders, missing_requirements, opened_folder_or_files,
                             plan_import, pydicom_problem, read_requirements, referenced_image_files, safe_name,
                             series_in_folder)
from .browser import (OTHER_OBJECT_CONFIDENCE, OTHER_OVERLAY_CONFIDENCE, OURS_CONFIDENCE,  # noqa: F401 (re-exported)
                      RTSTRUCT_CONFIDENCE, DicomKind, browser_preference, classify_dicom, pydicom_version)

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
MRMLNode = Any
MRMLScene = Any

#: The encodings :func:`export_nodes` writes, by name; DEFAULT_OUTPUTS when none are chosen.
OUTPUTS = ("overlay", "seg", "sr", "rtstruct", "gsps")
DEFAULT_OUTPUTS = ("overlay", "seg", "sr")
OVERLAY_FOLDER = "overlay"
SEG_FILE = "seg.dcm"
SR_FILE = "sr.dcm"
RTSTRUCT_FILE = "rtstruct.dcm"
GSPS_FILE = "annotations.pr.dcm"

#: Volume node attributes set by :func:`dicomize_volume_node` (and the module) that link a
#: non-DICOM volume to the DICOM series written for it.
SERIES_FOLDER_ATTRIBUTE = "DicomAnnotEmbed.SeriesFolder"
SERIES_UID_ATTRIBUTE = "DicomAnnotEmbed.SeriesInstanceUID"


class Cancelled(DicomAnnotEmbedError):
    """The user cancelled a long operation (raised from a progress callback)."""


# --- export --------------------------------------------------------------------------------------

@dataclass
class ExportOptions:
    """What :func:`export_nodes` writes and how.

    Attributes:
        outputs: any of :data:`OUTPUTS`. An SR references the segments of a SEG: with "sr" and a
            segmentation, the SEG is written too even when "seg" is not asked for.
        seg_type: "auto" (LABELMAP when no two segments overlap, else BINARY; always BINARY
            when an SR is written too), "binary", "labelmap" or "fractional".
        compression: SEG pixel data: "auto", "none", "jpegls", "rle" or "jpeg2000".
        lidc: the LIDC preset (finding Nodule in Lung, "Nodule N - Annotation A" descriptions, one
            Tracking UID per nodule in the SEG and the SR; see :func:`presets.lidc.apply_lidc_preset`).
        observer_name: the person observer of the SR and the SEG's content creator (DICOM PN,
            ``Family^Given``); empty: the SR names the device "DicomAnnotEmbed".
        evaluations: an evaluation CSV for the SR (see :mod:`.evaluations`), or None.
        fill_markups: overlays: draw closed curves and ROI boxes filled.
        split: overlays: several series when there are more planes than free overlay groups.
        series_description: description of the written series (each encoder's default when None).
        force: write into a non-empty output folder, replacing our own files.
        rtstruct_interpreted_type: RT ROI Interpreted Type of every segment ("" : ORGAN, or the
            segment's own); one of :data:`encodings.rtstruct.INTERPRETED_TYPES`.
        gsps_outlines: the presentation state also draws each segment's outline, slice by slice.
        send_to: an archive node (``AET@HOST:PORT``, a DICOMweb URL or a configured name; see
            :func:`services.pacs.parse_node`) to send every written file to; "" sends nothing.
        send_retries: tries again after a lost connection, at most this many times.
    """

    outputs: Sequence[str] = DEFAULT_OUTPUTS
    seg_type: str = "auto"
    compression: str = "auto"
    lidc: bool = False
    observer_name: str = ""
    evaluations: Optional[PathLike] = None
    fill_markups: bool = False
    split: bool = False
    series_description: Optional[str] = None
    force: bool = False
    rtstruct_interpreted_type: str = ""
    gsps_outlines: bool = False
    send_to: str = ""
    send_retries: int = 3

    def checked(self) -> "ExportOptions":
        """A copy with normalised values. Raises InputError for unknown outputs or SEG options."""
        from ..encodings.seg import COMPRESSIONS, SEG_TYPES

        outputs = tuple(dict.fromkeys(str(o).strip().lower() for o in self.outputs))
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown:
            raise InputError(f"unknown output(s) {', '.join(unknown)}; choose from {', '.join(OUTPUTS)}")
        if not outputs:
            raise InputError("no output chosen; choose at least one of " + ", ".join(OUTPUTS))
        seg_type, compression = self.seg_type.lower(), self.compression.lower()
        if seg_type not in SEG_TYPES:
            raise InputError(f"unknown SEG type {self.seg_type!r}; choose from {', '.join(SEG_TYPES)}")
        if compression not in COMPRESSIONS:
            raise InputError(f"unknown compression {self.compression!r}; choose from {', '.join(COMPRESSIONS)}")
        from ..encodings.rtstruct import INTERPRETED_TYPES

        interpreted = (self.rtstruct_interpreted_type or "").strip().upper()
        if interpreted and interpreted not in INTERPRETED_TYPES:
            raise InputError(f"unknown RT ROI Interpreted Type {self.rtstruct_interpreted_type!r}; choose from "
                             f"{', '.join(INTERPRETED_TYPES)}")
        return dataclasses.replace(self, outputs=outputs, seg_type=seg_type, compression=compression,
                                   observer_name=(self.observer_name or "").strip(), rtstruct_interpreted_type=interpreted,
                                   send_to=(self.send_to or "").strip())


@dataclass
class ExportResult:
    """What :func:`export_nodes` wrote (results of the core encoders) and what it noted."""

    out_dir: Path
    overlay: Any = None  # overlay.OverlayExportResult
    seg: Any = None  # seg.SegExportResult
    sr: Any = None  # sr.SrExportResult
    rtstruct: Any = None  # rtstruct.RtStructExportResult
    gsps: Any = None  # gsps.GspsExportResult
    sent: Any = None  # services.pacs SendReport, when sent
    notes: List[str] = field(default_factory=list)

    @property
    def files(self) -> List[str]:
        """Every DICOM file written."""
        files: List[str] = []
        if self.overlay is not None:
            files += [f for series in self.overlay.series for f in series.files]
        if self.seg is not None:
            files += [str(p) for p in self.seg.paths]
        if self.sr is not None:
            files += [str(p) for p in self.sr.paths]
        files += [str(r.path) for r in (self.rtstruct, self.gsps) if r is not None]
        return files

    def summary(self) -> str:
        """A few lines for a message box or a log."""
        lines = []
        if self.overlay is not None:
            for series in self.overlay.series:
                lines.append(f"Overlay series: {len(series.files)} images, {len(series.planes)} planes in {series.folder}")
        if self.seg is not None:
            for path, frames in zip(self.seg.paths, self.seg.frames):
                lines.append(f"{self.seg.seg_type.upper()} SEG ({self.seg.compression}, {frames} frames): {path}")
        if self.sr is not None:
            lines.append(f"TID 1500 SR ({self.sr.groups} measurement groups, {len(self.sr.records)} records): "
                         + ", ".join(str(p) for p in self.sr.paths))
        if self.rtstruct is not None:
            lines.append(f"RT Structure Set ({len(self.rtstruct.rois)} ROIs, {self.rtstruct.contours} contours): "
                         f"{self.rtstruct.path}")
        if self.gsps is not None:
            lines.append(f"Presentation state ({self.gsps.graphics} graphics on {self.gsps.images} images): "
                         f"{self.gsps.path}")
        if self.sent is not None:
            lines.append(f"Sent to {self.sent.node}: {self.sent.summary()}")
        return "\n".join(lines + self.notes)


class _Stage:
    """Progress of one step of a longer job: messages get the step's name in front."""

    def __init__(self, progress: Optional[ProgressCallback], name: str):
        self.progress, self.name = progress, name

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.progress is not None:
            self.progress(done, total, f"{self.name}: {message}")

    def start(self) -> None:
        self(0, 1, "starting")


def export_nodes(series: ReferenceSeries, segmentation_node: Optional[MRMLNode] = None,
                 markups_nodes: Sequence[MRMLNode] = (), out_dir: PathLike = ".", *,
                 reference_volume_node: Optional[MRMLNode] = None,
                 options: Optional[ExportOptions] = None,
                 progress: Optional[ProgressCallback] = None) -> ExportResult:
    """Write a segmentation node and markups nodes as DICOM beside ``series``.

    Args:
        series: the DICOM series the annotations were drawn on (its files are read, never changed).
        segmentation_node: a vtkMRMLSegmentationNode, or None for markups only.
        markups_nodes: markups nodes (point list, line, angle, curve, closed curve, plane, ROI).
        out_dir: output folder (see the module docstring for its layout).
        reference_volume_node: the volume loaded from (or written as) ``series``. The segments are
            put on its grid by Slicer's logic and the markups are read in its own frame (so a
            transform above both is ignored); it must lie on the series grid. Without it the
            segments and markups are read in world coordinates and put on the series grid.
        options: :class:`ExportOptions` (defaults: overlay, SEG and SR, automatic SEG type).
        progress: ``progress(done, total, message)``; raise :class:`Cancelled` in it to stop.

    Returns:
        :class:`ExportResult`.

    Raises:
        InputError: nothing to export, a node that cannot be converted, bad options.
        GeometryError: the reference volume does not lie on the series, a sheared grid.
        OutputError: an output exists (and not ``options.force``) or cannot be written.
        NetworkError: ``options.send_to`` did not store every file (the files stay written).
    """
    options = (options or ExportOptions()).checked()
    out_dir = Path(out_dir)
    result = ExportResult(out_dir)
    if reference_volume_node is not None:
        check_volume_on_series(reference_volume_node, series)

    segmentation = None
    if segmentation_node is not None:
        stage = _Stage(progress, "Reading the segmentation")
        stage.start()
        if reference_volume_node is not None:
            segmentation = mrml_adapter.segmentation_from_node(segmentation_node, reference_volume_node)
        else:
            segmentation = mrml_adapter.segmentation_from_node(segmentation_node, geometry=series.geometry)
    placed = []
    for node in markups_nodes:
        if node.GetNumberOfControlPoints() == 0:
            result.notes.append(f"Markup {node.GetName()!r} has no control point and is skipped.")
        else:
            placed.append(node)
    markups = mrml_adapter.markups_from_nodes(placed, reference_volume_node=reference_volume_node)
    annotations = api.load_annotations(series, segmentation, markups)
    segmentation = annotations.segmentation
    has_segments = segmentation is not None and any(segmentation.voxel_counts().get(s.id, 0) for s in
                                                    segmentation.segments)

    outputs = set(options.outputs)
    write_seg = "seg" in outputs or ("sr" in outputs and has_segments)
    if "sr" in outputs and not has_segments:
        raise InputError("a TID 1500 SR written by DicomAnnotEmbed references the segments of a DICOM SEG: "
                         "choose a segmentation with at least one non-empty segment, or leave SR out")
    if write_seg and not has_segments:
        raise InputError("a DICOM SEG needs a segmentation with at least one non-empty segment")
    if ("overlay" in outputs or "rtstruct" in outputs) and not has_segments and not markups:
        raise InputError("nothing to export: no non-empty segment and no markup")
    if "gsps" in outputs and not markups and not (options.gsps_outlines and has_segments):
        raise InputError("a presentation state draws markups (and, with outlines, segments): choose markups, or a "
                         "segmentation with segment outlines, or leave GSPS out")
    if "sr" in outputs and "seg" not in outputs:
        result.notes.append(f"The SEG ({SEG_FILE}) was written too: the SR references its segments.")
    _check_outputs(out_dir, "overlay" in outputs, {SEG_FILE: write_seg, SR_FILE: "sr" in outputs,
                                                   RTSTRUCT_FILE: "rtstruct" in outputs, GSPS_FILE: "gsps" in outputs},
                   options.force)

    if options.lidc and segmentation is not None:
        from ..presets.lidc import apply_lidc_preset

        apply_lidc_preset(segmentation)
    if "overlay" in outputs:
        result.overlay = api.export_overlay(
            series, segmentation, annotations.markups, out_dir / OVERLAY_FOLDER, fill_markups=options.fill_markups,
            split=options.split, series_description=options.series_description, force=options.force,
            progress=_Stage(progress, "Overlays"))
        result.notes.extend(f"Segment {name!r} is empty: no overlay plane." for name in result.overlay.skipped_segments)
    if write_seg:
        from ..encodings.seg import SegExportOptions

        seg_options = SegExportOptions(series_description=options.series_description,
                                       content_creator_name=options.observer_name or None)
        # An SR references a BINARY SEG: checkers before Supplement 243 (dsrdump, dciodvfy) refuse a LABELMAP one.
        seg_type = "binary" if options.seg_type == "auto" and "sr" in outputs else options.seg_type
        result.seg = api.export_seg(series, segmentation, out_dir / SEG_FILE, seg_type=seg_type,
                                    compression=options.compression, options=seg_options,
                                    progress=_Stage(progress, "DICOM SEG"))
        result.notes.extend(f"Segment {name!r} is empty and is not in the SEG." for name in result.seg.skipped_segments)
    if "sr" in outputs:
        if len(result.seg.paths) != 1:
            raise InputError("the SEG was split into several files; an SR references one SEG")
        result.sr = api.export_sr(series, result.seg.paths[0], out_dir / SR_FILE, segmentation=segmentation,
                                  markups=annotations.markups, evaluations=options.evaluations,
                                  observer_name=options.observer_name or None, lidc=options.lidc,
                                  series_description=options.series_description,
                                  progress=_Stage(progress, "DICOM SR"))
        result.notes.extend(result.sr.skipped)
    if "rtstruct" in outputs:
        result.rtstruct = api.export_rtstruct(series, segmentation if has_segments else None, out_dir / RTSTRUCT_FILE,
                                              markups=annotations.markups,
                                              interpreted_type=options.rtstruct_interpreted_type or None,
                                              progress=_Stage(progress, "RT Structure Set"))
        result.notes.extend(result.rtstruct.skipped)
    if "gsps" in outputs:
        result.gsps = api.export_gsps(series, annotations.markups, out_dir / GSPS_FILE,
                                      segmentation=segmentation if options.gsps_outlines and has_segments else None,
                                      outlines=options.gsps_outlines and has_segments, force=True,
                                      progress=_Stage(progress, "Presentation state"),
                                      **({"series_description": options.series_description}
                                         if options.series_description else {}))
        result.notes.extend(result.gsps.skipped)
    if options.send_to:
        result.sent = send_files(options.send_to, result.files, retries=options.send_retries,
                                 progress=_Stage(progress, f"Sending to {options.send_to}"))
    return result


def send_files(node: str, files: Sequence[PathLike], *, retries: int = 3, timeout: Optional[float] = None,
               progress: Optional[ProgressCallback] = None):
    """Send DICOM files (or folders) to an archive node (``AET@HOST:PORT``, a DICOMweb URL or a
    configured name) with :func:`services.pacs.send`; returns its report.

    Raises:
        InputError: a bad node string or a file that is not DICOM. NetworkError: the node cannot be
            reached, refused us, or did not store every file (the message lists each and why).
    """
    from ..services import pacs

    return pacs.send(node, [str(f) for f in files], retries=retries, retry_delay=0.5, timeout=timeout,
                     progress=progress)


def _check_outputs(out_dir: Path, overlay: bool, files: dict, force: bool) -> None:
    """Refuse before writing anything when an output is already there (and not ``force``)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("exists and is not a folder", out_dir)
    if force:
        return
    folder = out_dir / OVERLAY_FOLDER
    if overlay and folder.is_dir() and any(folder.iterdir()):
        raise OutputError("output folder is not empty; choose another folder or allow replacing (force)", folder)
    for name, wanted in files.items():
        if wanted and (out_dir / name).exists():
            raise OutputError("exists; choose another folder or allow replacing (force)", out_dir / name)


# --- reference volumes and their DICOM series ---------------------------------------------------

def check_volume_on_series(volume_node: MRMLNode, series: ReferenceSeries) -> None:
    """Raise GeometryError unless the volume's own grid covers the same voxel centres as the
    series (the same grid, possibly indexed in another axis order or direction)."""
    geometry = mrml_adapter.volume_geometry_of(volume_node)
    if same_voxels(geometry, series.geometry):
        return
    raise GeometryError(
        f"reference volume {volume_node.GetName()!r} ({geometry.describe()}) does not lie on the grid of its DICOM "
        f"series ({series.geometry.describe()}): it was resampled, cropped or moved after loading. Choose the "
        "volume as loaded from the series, or create a DICOM series for this volume", series.folder)


def same_voxels(a: VolumeGeometry, b: VolumeGeometry, tolerance_mm: float = 0.01) -> bool:
    """True when two grids have the same voxel centres (the same corners, in any index order)."""
    if a.same_as(b):
        return True
    if sorted(a.shape) != sorted(b.shape):
        return False
    ca, cb = a.corners_lps(), b.corners_lps()
    ca, cb = ca[np.lexsort(np.round(ca / tolerance_mm).T)], cb[np.lexsort(np.round(cb / tolerance_mm).T)]
    return bool(np.allclose(ca, cb, atol=tolerance_mm))


def volume_array_of(volume_node: MRMLNode) -> np.ndarray:
    """The voxels of a scalar volume node as a (K, J, I) numpy array (a view of its image data).

    Raises:
        InputError: no image data, or several components per voxel (RGB, vectors).
    """
    from vtkmodules.util import numpy_support

    mrml_adapter.volume_geometry_of(volume_node)  # checks image data and extent
    image = volume_node.GetImageData()
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise InputError(f"volume {volume_node.GetName()!r} has no voxel values")
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"volume {volume_node.GetName()!r} has {scalars.GetNumberOfComponents()} values per voxel; "
                         "only scalar volumes can be written as DICOM images")
    extent = image.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return numpy_support.vtk_to_numpy(scalars).reshape(shape)


def dicomize_volume_node(volume_node: MRMLNode, out_dir: PathLike, *, modality: str = "CT",
                         patient_name: str = "Anonymous^", patient_id: Optional[str] = None,
                         study_instance_uid: Optional[str] = None, series_description: Optional[str] = None,
                         force: bool = False, progress: Optional[ProgressCallback] = None) -> ReferenceSeries:
    """Write a volume node that does not come from DICOM as a DICOM series, and return it loaded.

    The series has the volume's own grid (its IJKToRAS, **RAS**, written as **LPS** positions and
    orientations) and its voxel values (exact for integers; see :mod:`.dicomize`). The volume node
    gets the attributes :data:`SERIES_FOLDER_ATTRIBUTE` and :data:`SERIES_UID_ATTRIBUTE`, so that
    :func:`series_of_volume` finds the series again.

    Args:
        volume_node: a scalar volume node (any orientation; not sheared).
        out_dir: folder for the series (created; must be empty unless ``force``).
        modality: "CT", "MR" or "OT" (secondary capture).
        patient_name, patient_id, study_instance_uid: identification (new random ids when None).
        series_description: defaults to the node name.

    Raises:
        InputError: not a scalar volume; GeometryError: the grid cannot be written;
        OutputError: ``out_dir`` not empty or not writable.
    """
    from ..dicom.dicomize import dicomize_array

    geometry = mrml_adapter.volume_geometry_of(volume_node)
    files = dicomize_array(volume_array_of(volume_node), geometry, out_dir, modality=modality,
                           patient_name=patient_name, patient_id=patient_id, study_instance_uid=study_instance_uid,
                           series_description=series_description or volume_node.GetName() or "Volume",
                           force=force, progress=progress)
    series = load_series_files(files)
    volume_node.SetAttribute(SERIES_FOLDER_ATTRIBUTE, str(Path(out_dir).resolve()))
    volume_node.SetAttribute(SERIES_UID_ATTRIBUTE, series.series_instance_uid)
    return series


def series_of_volume(volume_node: MRMLNode, progress: Optional[ProgressCallback] = None
                     ) -> Optional[ReferenceSeries]:
    """The series written for a volume by :func:`dicomize_volume_node` (its attributes), or None."""
    folder = volume_node.GetAttribute(SERIES_FOLDER_ATTRIBUTE) if volume_node is not None else None
    if not folder or not Path(folder).is_dir():
        return None
    try:
        return load_series(folder, volume_node.GetAttribute(SERIES_UID_ATTRIBUTE) or None, progress)
    except SeriesError as error:
        log.warning("volume %r: its DICOM series in %s cannot be loaded (%s)", volume_node.GetName(), folder,
                    error.problem)
        return None


def volume_from_dicom(volume_node: Optional[MRMLNode], database=None) -> bool:
    """True when a volume's DICOM series can be found: written by :func:`dicomize_volume_node` or
    loaded by :func:`load_series_volume` (its folder attribute), or in ``database`` (Slicer's DICOM
    database, as an argument: the volume was loaded by the DICOM module)."""
    if volume_node is None:
        return False
    folder = volume_node.GetAttribute(SERIES_FOLDER_ATTRIBUTE)
    return bool(folder and os.path.isdir(folder)) or bool(database_files_of_volume(database, volume_node, True))


@contextlib.contextmanager
def opened_reference_series(volume_node: MRMLNode, database=None,
                            progress: Optional[ProgressCallback] = None) -> Iterator[Optional[ReferenceSeries]]:
    """The DICOM series of a volume (see :func:`volume_from_dicom`), or None when it is not from
    DICOM (a context manager: database files may be linked into a temporary folder meanwhile)."""
    series = series_of_volume(volume_node, progress)
    if series is not None:
        yield series
        return
    files = database_files_of_volume(database, volume_node)
    if not files:
        yield None
        return
    with opened_series(files, database.fileValue(files[0], "0020,000E") or None, progress) as series:
        yield series


def load_series_volume(scene: MRMLScene, folder: PathLike, series_uid: Optional[str] = None,
                       progress: Optional[ProgressCallback] = None) -> MRMLNode:
    """A DICOM image series of a folder as a volume node that remembers the folder (so that
    :func:`series_of_volume` finds the series again)."""
    series = load_series(folder, series_uid, progress)
    node = volume_node_of_series(scene, series, progress=progress)
    node.SetAttribute(SERIES_FOLDER_ATTRIBUTE, str(Path(folder).resolve()))
    node.SetAttribute(SERIES_UID_ATTRIBUTE, series.series_instance_uid)
    return node


def load_series_files(files: Sequence[PathLike], series_uid: Optional[str] = None,
                      progress: Optional[ProgressCallback] = None) -> ReferenceSeries:
    """Load a series from its files when they are the only files of one folder (as Slicer's DICOM
    database and :func:`dicomize_volume_node` store them); see :func:`opened_series` for any list."""
    files = [Path(f) for f in files]
    if not files:
        raise SeriesError("no files given for the series")
    folders = {f.resolve().parent for f in files}
    if len(folders) != 1:
        raise SeriesError(f"the files of the series are in {len(folders)} folders; use opened_series()")
    return load_series(folders.pop(), series_uid, progress)


@contextlib.contextmanager
def opened_series(files: Sequence[PathLike], series_uid: Optional[str] = None,
                  progress: Optional[ProgressCallback] = None) -> Iterator[ReferenceSeries]:
    """A series loaded from a list of files, wherever they are (a context manager).

    When the files are the bulk of the files below their common folder, that folder is scanned
    (other series in it are skipped by ``series_uid``); otherwise the files are linked (copied
    where links are not allowed) into a temporary folder that lives as long as the context.
    """
    files = [Path(f).resolve() for f in files]
    if not files:
        raise SeriesError("no files given for the series")
    common = Path(os.path.commonpath([str(f.parent) for f in files]))
    limit = 2 * len(files) + 16
    count = 0
    for _, _, names in os.walk(common):
        count += len(names)
        if count > limit:
            break
    if count <= limit:
        yield load_series(common, series_uid, progress)
        return
    folder = Path(tempfile.mkdtemp(prefix="DicomAnnotEmbed-series-"))
    try:
        for n, path in enumerate(files):
            target = folder / f"{n:06d}_{path.name}"
            try:
                os.symlink(path, target)
            except OSError:
                shutil.copy2(path, target)
        yield load_series(folder, series_uid, progress)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- import --------------------------------------------------------------------------------------

@dataclass
class SceneImport:
    """Nodes created by an import, and what could not be loaded (in words)."""

    volume_node: Optional[MRMLNode] = None
    segmentation_node: Optional[MRMLNode] = None
    markups_nodes: List[MRMLNode] = field(default_factory=list)
    table_node: Optional[MRMLNode] = None
    missing: List[str] = field(default_factory=list)
    source: Any = None  # the core result: AnnotationSet, seg.SegImport or sr.SrImport

    @property
    def nodes(self) -> List[MRMLNode]:
        return [n for n in [self.volume_node, self.segmentation_node, *self.markups_nodes, self.table_node]
                if n is not None]

    def summary(self) -> str:
        parts = []
        if self.volume_node is not None:
            parts.append(f"volume {self.volume_node.GetName()!r}")
        if self.segmentation_node is not None:
            count = self.segmentation_node.GetSegmentation().GetNumberOfSegments()
            parts.append(f"segmentation {self.segmentation_node.GetName()!r} ({count} segments)")
        if self.markups_nodes:
            parts.append(f"{len(self.markups_nodes)} markups")
        if self.table_node is not None:
            parts.append(f"table {self.table_node.GetName()!r} ({self.table_node.GetNumberOfRows()} rows)")
        text = "Loaded " + (", ".join(parts) if parts else "nothing")
        return "\n".join([text] + self.missing)


def volume_node_of_series(scene: MRMLScene, series: ReferenceSeries, name: Optional[str] = None,
                          progress: Optional[ProgressCallback] = None) -> MRMLNode:
    """A scalar volume node with the series' voxels in modality units (HU for CT) on its grid.

    Integer-valued data that fits int16 is stored as int16, anything else as float32. The node
    gets the series' SOP Instance UIDs as ``DICOM.instanceUIDs``, as Slicer's DICOM loader does.
    """
    volume = series.read_volume(progress)
    if volume.size and np.array_equal(volume, np.round(volume)) and volume.min() >= -32768 and volume.max() <= 32767:
        volume = volume.astype(np.int16)
    node = mrml_adapter.volume_node_from_array(scene, volume, series.geometry,
                                               name or series.description or "DICOM series")
    uids = " ".join(dict.fromkeys(s.sop_instance_uid for s in series.slices))
    node.SetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE, uids)
    return node


def import_overlay_to_scene(scene: MRMLScene, series: ReferenceSeries, *,
                            reference_volume_node: Optional[MRMLNode] = None, load_volume: bool = True,
                            name: Optional[str] = None,
                            progress: Optional[ProgressCallback] = None) -> SceneImport:
    """Load an overlay-embedded series: its overlay planes as a segmentation node (names, colours,
    terminology restored for our files) and our markups as markups nodes; with ``load_volume``
    and no ``reference_volume_node``, the images as a volume node too.

    Raises:
        InputError: the series carries no overlay plane.
    """
    result = SceneImport()
    annotations = api.import_overlay(series, progress=_Stage(progress, "Overlays"))
    result.source = annotations
    volume = reference_volume_node
    base = name or (series.description or "").split(" + overlays")[0].strip() or "Overlays"
    if volume is None and load_volume:
        volume = result.volume_node = volume_node_of_series(scene, series, base, progress=_Stage(progress, "Images"))
    if annotations.segmentation is not None and annotations.segmentation.segments:
        result.segmentation_node = mrml_adapter.segmentation_to_node(
            scene, annotations.segmentation, f"{base} overlays", reference_volume_node=volume)
    result.markups_nodes = mrml_adapter.markups_to_nodes(scene, annotations.markups, reference_volume_node=volume)
    return result


def import_seg_to_scene(scene: MRMLScene, seg_file: PathLike, series: Optional[ReferenceSeries] = None, *,
                        reference_volume_node: Optional[MRMLNode] = None, name: Optional[str] = None,
                        progress: Optional[ProgressCallback] = None) -> SceneImport:
    """Load a DICOM SEG (BINARY, FRACTIONAL or LABELMAP) as a segmentation node: on the series
    grid when ``series`` is given, else on the SEG's own frame grid. Names, colours, terminology
    and descriptions are those of the SEG (FRACTIONAL segments: thresholded at one half)."""
    imported = api.import_seg(seg_file, series, progress=_Stage(progress, "DICOM SEG"))
    node = mrml_adapter.segmentation_to_node(scene, imported.segmentation, name or _dicom_name(seg_file, "Segmentation"),
                                             reference_volume_node=reference_volume_node)
    node.SetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE, sop_instance_uid(seg_file))
    return SceneImport(segmentation_node=node, source=imported)


def import_sr_to_scene(scene: MRMLScene, sr_file: PathLike, series: Optional[ReferenceSeries] = None, *,
                       seg_folders: Sequence[PathLike] = (), reference_volume_node: Optional[MRMLNode] = None,
                       load_seg: bool = True, name: Optional[str] = None,
                       progress: Optional[ProgressCallback] = None) -> SceneImport:
    """Load a TID 1500 SR: its coordinates as markups nodes, its measurements and evaluations as a
    table node, and (``load_seg``) the SEG it references, when found beside the SR or in
    ``seg_folders``, as a segmentation node. What cannot be found is listed in ``missing``."""
    imported = api.import_sr(sr_file, series, seg_folders=seg_folders, progress=_Stage(progress, "DICOM SR"))
    base = name or _dicom_name(sr_file, "Measurements")
    result = SceneImport(missing=list(imported.missing), source=imported)
    result.markups_nodes = mrml_adapter.markups_to_nodes(scene, imported.markups,
                                                         reference_volume_node=reference_volume_node)
    if imported.records:
        result.table_node = measurements_table_node(scene, imported.records, f"{base} measurements")
    if load_seg and imported.segmentation is not None:
        result.segmentation_node = mrml_adapter.segmentation_to_node(
            scene, imported.segmentation, f"{base} segmentation", reference_volume_node=reference_volume_node)
    return result


def import_rtstruct_to_scene(scene: MRMLScene, rtstruct_file: PathLike, series: Optional[ReferenceSeries] = None, *,
                             reference_volume_node: Optional[MRMLNode] = None, name: Optional[str] = None,
                             progress: Optional[ProgressCallback] = None) -> SceneImport:
    """Load an RT Structure Set (ours or another tool's) onto its referenced series' grid: closed
    contours as a segmentation node (ROI names, colours, terminology from the ROI codes), points and
    open contours as markups nodes (LPS in the file, RAS in the scene). ``series``: the referenced
    series (None: searched beside the file). What could not be placed is listed in ``missing``.

    Raises:
        InputError: not an RTSTRUCT, its series not found, no contour on the series.
    """
    imported = api.import_rtstruct(rtstruct_file, series, progress=_Stage(progress, "RT Structure Set"))
    base = name or _dicom_name(rtstruct_file, "Structures")
    result = SceneImport(missing=list(imported.skipped), source=imported)
    if imported.segmentation is not None and imported.segmentation.segments:
        result.segmentation_node = mrml_adapter.segmentation_to_node(scene, imported.segmentation, base,
                                                                     reference_volume_node=reference_volume_node)
        result.segmentation_node.SetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE, sop_instance_uid(rtstruct_file))
    result.markups_nodes = mrml_adapter.markups_to_nodes(scene, imported.markups,
                                                         reference_volume_node=reference_volume_node)
    return result


def import_gsps_to_scene(scene: MRMLScene, gsps_file: PathLike, series: ReferenceSeries, *,
                         reference_volume_node: Optional[MRMLNode] = None,
                         progress: Optional[ProgressCallback] = None) -> SceneImport:
    """Load a presentation state's graphic annotations (ours: every markup whole, with its kind and
    name; another's: polylines, points, circles, ellipses) as markups nodes on the planes of the
    referenced images of ``series`` (LPS in the model, RAS in the scene). What could not be
    converted is listed in ``missing``."""
    imported = api.import_gsps(gsps_file, series, progress=_Stage(progress, "Presentation state"))
    result = SceneImport(missing=list(imported.report), source=imported)
    result.markups_nodes = mrml_adapter.markups_to_nodes(scene, imported.markups,
                                                         reference_volume_node=reference_volume_node)
    return result


def convert(inputs, to: str, out: PathLike, **options):
    """Any encoding to any other, as ``dicomannotembed convert`` (see :func:`api.convert`; files
    in, files out, coordinates LPS); ``result.dropped`` lists what the target could not hold."""
    return api.convert(inputs, to, out, **options)


def measurements_table_node(scene: MRMLScene, records, name: str = "Measurements") -> MRMLNode:
    """A vtkMRMLTableNode with one row per SR record (the columns of ``measurements.csv``;
    ``value`` numeric, the rest text)."""
    from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkTable

    from ..encodings.sr import CSV_COLUMNS

    table = vtkTable()
    columns = {}
    for column in CSV_COLUMNS:
        array = vtkDoubleArray() if column == "value" else vtkStringArray()
        array.SetName(column)
        table.AddColumn(array)
        columns[column] = array
    for record in records:
        for column, array in columns.items():
            if column == "value":
                array.InsertNextValue(float("nan") if record.value is None else float(record.value))
            elif column == "kind":
                array.InsertNextValue(record.kind)
            else:
                value = getattr(record, column)
                array.InsertNextValue("" if value is None else str(value))
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetAndObserveTable(table)
    return node


def _dicom_name(path: PathLike, default: str) -> str:
    """Series Description of a DICOM file (for node names), else ``default``."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesDescription"])
        return str(header.get("SeriesDescription", "") or "") or default
    except Exception:  # any unreadable file: the default name
        return default


def sop_instance_uid(path: PathLike) -> str:
    """The SOP Instance UID of a DICOM file, '' when it cannot be read."""
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:  # not readable: no UID attribute value
        return ""


__all__ = [
    "load_series_volume", "opened_reference_series", "volume_from_dicom", "DEFAULT_OUTPUTS", "GSPS_FILE", "RTSTRUCT_FILE", "import_gsps_to_scene", "import_rtstruct_to_scene", "send_files",
    "Cancelled", "DicomKind", "browser_preference", "ExportOptions", "ExportResult", "OUTPUTS", "SceneImport", "check_volume_on_series",
    "classify_dicom", "dicomize_volume_node", "export_nodes", "import_overlay_to_scene", "import_seg_to_scene",
    "import_sr_to_scene", "load_series_files", "measurements_table_node", "opened_series", "same_voxels",
    "pydicom_version", "series_of_volume", "sop_instance_uid", "volume_array_of", "volume_node_of_series",
]
