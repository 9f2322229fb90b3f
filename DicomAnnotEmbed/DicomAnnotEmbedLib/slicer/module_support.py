"""What the Slicer module (``DicomAnnotEmbed.py``) needs that is not the application's: its
requirements, node names, what a path holds to import, and the DICOM database lookups, with the
database (Slicer's ``ctkDICOMDatabase``: ``isOpen``, ``filesForSeries``, ``fileForInstance``) as an
argument. No ``slicer.util``, ``slicer.app`` or Qt. Re-exported by :mod:`.logic`.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

from ..core.errors import InputError, SeriesError
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries, load_series
from .browser import classify_dicom, pydicom_version

PathLike = Union[str, os.PathLike]
#: Node attribute Slicer's DICOM plugins set: space-separated SOP Instance UIDs of the node's source.
DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
#: What classify_dicom calls our annotation objects (as opposed to images).
OBJECT_KINDS = ("seg", "sr", "rtstruct", "gsps")


@dataclass
class ImportPlan:
    """What :func:`plan_import` found under a path, by kind (each a list of files, overlay series
    by Series Instance UID: a list of files or ``[folder]``)."""

    overlay_series: dict = field(default_factory=dict)
    segs: List[Path] = field(default_factory=list)
    srs: List[Path] = field(default_factory=list)
    rtstructs: List[Path] = field(default_factory=list)
    presentation_states: List[Path] = field(default_factory=list)


def plan_import(path: PathLike) -> ImportPlan:
    """Classify what of ours a file or folder holds (:func:`classify_dicom`): overlay-embedded
    series (one file stands for its whole folder), SEGs (except those an SR of the path references:
    the SR loads them), TID 1500 SRs (except a report's markups' own report, which it loads),
    RTSTRUCTs and presentation states.

    Raises:
        InputError: the path does not exist or holds none of these.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("does not exist", path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    kinds = {f: classify_dicom(f) for f in files}
    plan = ImportPlan()
    companions = {uid for k in kinds.values() if k.kind == "sr" for uid in k.companion_uids}
    plan.srs = [f for f, k in kinds.items() if k.kind == "sr" and k.sop_instance_uid not in companions]
    referenced = {uid for f in plan.srs for uid in kinds[f].referenced_instance_uids}
    plan.segs = [f for f, k in kinds.items() if k.kind == "seg" and _sop_instance_uid(f) not in referenced]
    plan.rtstructs = [f for f, k in kinds.items() if k.kind == "rtstruct"]
    plan.presentation_states = [f for f, k in kinds.items() if k.kind == "gsps"]
    for f, k in kinds.items():
        if k.kind == "overlay":
            plan.overlay_series.setdefault(k.series_uid, []).append(f)
    if path.is_file() and kinds[path].kind == "overlay":  # one file: its whole series
        plan.overlay_series = {kinds[path].series_uid: [path.parent]}
    if not (plan.srs or plan.segs or plan.overlay_series or plan.rtstructs or plan.presentation_states):
        raise InputError("holds no overlay-embedded series, DICOM SEG, TID 1500 SR, RTSTRUCT or presentation state",
                         path)
    return plan


def read_requirements(path: PathLike) -> List[str]:
    """The requirement lines of a pip requirements file (no comments, no options)."""
    with open(path, encoding="utf-8") as stream:
        return [line.strip() for line in stream if line.strip() and not line.strip().startswith(("#", "-"))]


def missing_requirements(requirements: Sequence[str]) -> List[str]:
    """The requirements whose distribution is not installed (any version counts as installed)."""
    import importlib.metadata
    import re

    missing = []
    for requirement in requirements:
        try:
            importlib.metadata.version(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def pydicom_problem(minimum: tuple = (3, 0), version: Optional[tuple] = None) -> str:
    """Why a pydicom ``version`` (default: the one in use) cannot be used ("" when it can): the
    core needs pydicom 3, first bundled by Slicer 5.12."""
    version = tuple(version) if version is not None else pydicom_version()
    if version >= tuple(minimum):
        return ""
    return (f"DicomAnnotEmbed needs Slicer 5.12 or later (pydicom {'.'.join(map(str, minimum))}); this Slicer has "
            f"pydicom {'.'.join(map(str, version))}.")


def safe_name(name: str) -> str:
    """A file-name-safe version of a node name ("volume" for none)."""
    from ..core.model import safe_file_stem

    return safe_file_stem(name or "volume")


def _sop_instance_uid(path: PathLike) -> str:
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:  # not readable: no UID attribute value
        return ""


# --- Slicer's DICOM database (passed in) ----------------------------------------------------------

def _open(database) -> bool:
    return database is not None and bool(database.isOpen)


def database_files_of_volume(database, volume_node, first_only: bool = False) -> List[str]:
    """Files of a volume's DICOM series (its ``DICOM.instanceUIDs``) in the database (only the
    first with ``first_only``), or [] when they are not all there or the database is not open."""
    uids = (volume_node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids or not _open(database):
        return []
    files = [database.fileForInstance(uid) for uid in (uids[:1] if first_only else uids)]
    return files if all(files) and all(os.path.isfile(f) for f in files) else []


def database_folders(database, instance_uids: Sequence[str]) -> List[str]:
    """Folders of the database's files of these SOP instances (where an SR's SEG may be)."""
    if not _open(database):
        return []
    return sorted({os.path.dirname(f) for f in (database.fileForInstance(uid) for uid in instance_uids) if f})


def referenced_image_files(database, dicom_file: PathLike):
    """(series UID, files) of the first image series a SEG, SR, RTSTRUCT or presentation state
    refers to that the database holds; None when there is none."""
    if not _open(database):
        return None
    for uid in classify_dicom(dicom_file).referenced_series_uids:
        files = list(database.filesForSeries(uid)) if uid else []
        if files and classify_dicom(files[0]).kind not in OBJECT_KINDS:
            return uid, files
    return None


def series_in_folder(dicom_file: PathLike, folder: PathLike,
                     progress: Optional[ProgressCallback] = None) -> ReferenceSeries:
    """The series of ``folder`` that ``dicom_file`` refers to, else the folder's only series."""
    uid = next((u for u in classify_dicom(dicom_file).referenced_series_uids if u), None)
    try:
        return load_series(folder, uid, progress)
    except SeriesError:  # the referenced UID is not there: the folder's only series
        return load_series(folder, None, progress)


@contextlib.contextmanager
def opened_folder_or_files(folder_or_files, series_uid: Optional[str] = None,
                           progress: Optional[ProgressCallback] = None) -> Iterator[ReferenceSeries]:
    """A series from a folder, or from a list of its files wherever they are (a context manager)."""
    from .logic import opened_series

    files = [folder_or_files] if isinstance(folder_or_files, (str, os.PathLike)) else list(folder_or_files)
    if len(files) == 1 and os.path.isdir(files[0]):
        yield load_series(files[0], series_uid, progress)
        return
    with opened_series(files, series_uid, progress) as series:
        yield series


__all__ = ["DICOM_INSTANCE_UIDS_ATTRIBUTE", "ImportPlan", "OBJECT_KINDS", "database_files_of_volume",
           "database_folders", "missing_requirements", "opened_folder_or_files", "plan_import", "pydicom_problem",
           "read_requirements", "referenced_image_files", "safe_name", "series_in_folder"]
