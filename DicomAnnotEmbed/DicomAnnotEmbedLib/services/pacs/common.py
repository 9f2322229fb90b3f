"""What DIMSE and DICOMweb share: the files to send, the reports, the table rows, retries."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import pydicom
from pydicom.errors import InvalidDicomError

from ...core.errors import InputError, NetworkError, name_files

log = logging.getLogger(__name__)
T = TypeVar("T")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE)
#: The transfer syntaxes this package writes: uncompressed, JPEG-LS lossless, RLE, JPEG 2000
#: lossless, deflated explicit little endian.
WRITTEN_TRANSFER_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE, "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5",
                             "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1.99")
#: Storage SOP classes we write or read: images (CT, MR, enhanced CT/MR, PET, CR/DX, US,
#: secondary capture), SEG and Label Map SEG, SR (Comprehensive 3D, Enhanced, Comprehensive,
#: Basic Text), RT Structure Set, grayscale and colour softcopy presentation states.
STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image", "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image", "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
    "1.2.840.10008.5.1.4.1.1.128": "PET Image", "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image",
    "1.2.840.10008.5.1.4.1.1.1": "CR Image", "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte SC Image",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word SC Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color SC Image",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation", "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR", "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR", "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.11.2": "Color Softcopy Presentation State",
}
#: ``--modality`` values and the Modality attribute they query.
MODALITIES = ("SEG", "SR", "RTSTRUCT", "PR", "CT", "MR", "PT", "OT")


@dataclass(frozen=True)
class Instance:
    """One local DICOM file to send, with what its header says."""
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str

    @property
    def sop_class_name(self) -> str:
        return STORAGE_SOP_CLASSES.get(self.sop_class_uid, self.sop_class_uid)


@dataclass
class SendReport:
    """What a send did, per file. Local files are never changed or removed.

    ``stored``: sent and acknowledged; ``already_held``: the archive held that SOP Instance UID
    before (not sent again); ``failed``: path -> why it was not stored.
    """
    node: str
    stored: List[str] = field(default_factory=list)
    already_held: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = (f"{len(self.stored)} stored, {len(self.already_held)} already held, "
                f"{len(self.failed)} not stored")
        return text

    def raise_for_failures(self) -> None:
        """Raise :class:`NetworkError` listing every file that was not stored and why."""
        if self.failed:
            reasons = {}
            for reason in self.failed.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            grouped = "; ".join(f"{reason} ({count} file{'s' if count > 1 else ''})" for reason, count in reasons.items())
            error = NetworkError(f"{self.summary()}; the local files are kept. {grouped}", self.node)
            error.report = self
            raise error

    def failure_lines(self) -> List[str]:
        """``not stored: PATH: why`` for every file that was not stored."""
        return [f"not stored: {path}: {reason}" for path, reason in sorted(self.failed.items())]

    def failures_text(self, limit: int = 20) -> str:
        """One line per reason, naming its files (all of them when few, else the first ones)."""
        by_reason: Dict[str, List[str]] = {}
        for path, reason in sorted(self.failed.items()):
            by_reason.setdefault(reason, []).append(path)
        lines = []
        for reason, paths in by_reason.items():
            lines.append(f"  {reason}: {len(paths)} file{'s' if len(paths) > 1 else ''}: {name_files(paths, limit)}")
        return "\n".join(lines)


@dataclass
class FindRow:
    """One row of ``pacs find``: a study, a series or an instance (fields of the lower levels empty)."""
    level: str
    patient_id: str = ""
    patient_name: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    count: str = ""  # instances of the series / series of the study, as the archive says

    @classmethod
    def from_dataset(cls, level: str, ds) -> "FindRow":
        def text(keyword):
            value = ds.get(keyword, "")
            if value is None:
                return ""
            if isinstance(value, pydicom.multival.MultiValue):
                return "\\".join(str(v) for v in value)
            return str(value)
        count = text("NumberOfSeriesRelatedInstances") if level == "SERIES" else (
            text("NumberOfStudyRelatedSeries") if level == "STUDY" else "")
        modality = text("Modality") or text("ModalitiesInStudy")
        return cls(level, text("PatientID"), text("PatientName"), text("StudyInstanceUID"), text("StudyDate"),
                   text("StudyDescription"), text("SeriesInstanceUID"), modality, text("SeriesNumber"),
                   text("SeriesDescription"), text("SOPInstanceUID"), text("SOPClassUID"), count)


@dataclass
class GetReport:
    """Files written by a get, by series folder; ``failed``: what the archive did not deliver."""
    node: str
    out_dir: str
    files: List[str] = field(default_factory=list)
    series_dirs: Dict[str, str] = field(default_factory=dict)  # Series Instance UID -> folder
    failed: Dict[str, str] = field(default_factory=dict)  # series UID -> why

    def summary(self) -> str:
        return (f"{len(self.files)} files in {len(self.series_dirs)} series from {self.node} written to "
                f"{self.out_dir}" + (f"; {len(self.failed)} series incomplete" if self.failed else ""))

    def raise_for_failures(self) -> None:
        if self.failed:
            raise NetworkError(self.summary() + ": " + "; ".join(f"series {uid}: {why}"
                                                                for uid, why in self.failed.items()), self.node)


def series_folder_name(modality: str, series_uid: str) -> str:
    """The folder a retrieved series is written to: ``<Modality>_<SeriesInstanceUID>``."""
    safe = "".join(c for c in (modality or "OT") if c.isalnum()) or "OT"
    return f"{safe}_{series_uid}"


def collect_instances(paths: Sequence[os.PathLike | str]) -> List[Instance]:
    """The DICOM files named by ``paths`` (files, or folders searched recursively).

    Files in a folder that are not DICOM (or are a DICOMDIR) are skipped; a file named
    explicitly that is not DICOM is an error.

    Raises:
        InputError: a path does not exist, a named file is not DICOM, or nothing was found.
    """
    found: List[Instance] = []
    skipped: List[str] = []
    seen = set()
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise InputError("not found", given)
        candidates = sorted(p for p in given.rglob("*") if p.is_file()) if given.is_dir() else [given]
        for path in candidates:
            if path.name.startswith(".") and path.name.endswith(".partial" + path.suffix):
                continue  # another writer's unfinished file
            instance = _read_instance(path)
            if instance is None:
                if not given.is_dir():
                    raise InputError("not a DICOM file (no SOP Class/Instance UID in its header)", path)
                skipped.append(str(path))
                continue
            if instance.sop_instance_uid in seen:
                log.info("%s: SOP Instance UID %s seen twice; sent once", path, instance.sop_instance_uid)
                continue
            seen.add(instance.sop_instance_uid)
            found.append(instance)
    if skipped:
        log.info("skipped %d files that are not DICOM instances: %s", len(skipped), name_files(skipped))
    if not found:
        raise InputError("no DICOM instances to send", name_files(paths))
    return found


def _read_instance(path: Path) -> Optional[Instance]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=False,
                             specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
                                            "SeriesInstanceUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    sop_uid = str(ds.get("SOPInstanceUID", "") or (meta.get("MediaStorageSOPInstanceUID", "") if meta else ""))
    if not sop_class or not sop_uid or sop_class == "1.2.840.10008.1.3.10":  # DICOMDIR
        return None
    ts = str(meta.get("TransferSyntaxUID", EXPLICIT_LE)) if meta else IMPLICIT_LE
    return Instance(str(path), sop_class, sop_uid, ts, str(ds.get("StudyInstanceUID", "")),
                    str(ds.get("SeriesInstanceUID", "")))


def with_retries(action: Callable[[], T], *, retries: int, delay: float, what: str,
                 retry_on: Tuple[type, ...], final: Tuple[type, ...] = ()) -> T:
    """Run ``action``; on one of ``retry_on`` wait ``delay * 2**n`` seconds and try again, at most
    ``retries`` more times, then let the last error through (at once for one of ``final``)."""
    for attempt in range(retries + 1):
        try:
            return action()
        except retry_on as exc:
            if attempt >= retries or isinstance(exc, final):
                raise
            log.warning("%s failed (%s); retrying in %.1f s (%d of %d)", what, exc, delay * 2 ** attempt,
                        attempt + 1, retries)
            time.sleep(delay * 2 ** attempt)
    raise AssertionError("unreachable")


def format_rows(rows: Iterable[FindRow], level: str) -> str:
    """A plain text table (tab-separated, header first) of find results."""
    columns = {"STUDY": ["patient_id", "patient_name", "study_date", "study_instance_uid", "modality",
                         "study_description", "count"],
               "SERIES": ["patient_id", "study_instance_uid", "series_instance_uid", "modality", "series_number",
                          "series_description", "count"],
               "IMAGE": ["patient_id", "study_instance_uid", "series_instance_uid", "modality", "sop_instance_uid",
                         "sop_class_uid"]}[level]
    lines = ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join(str(getattr(row, c)) for c in columns))
    return "\n".join(lines)


def held_by(node, study_uids, find) -> Optional[set]:
    """SOP Instance UIDs the archive already holds in these studies (``find`` is the protocol's
    query, at IMAGE level), or None when it will not say."""
    held: set = set()
    try:
        for study in sorted(u for u in study_uids if u):
            held |= {r.sop_instance_uid for r in find(node, "IMAGE", study_uid=study)}
    except NetworkError as exc:
        log.info("%s: cannot list what it holds (%s); sending everything", node, exc)
        return None
    return held
