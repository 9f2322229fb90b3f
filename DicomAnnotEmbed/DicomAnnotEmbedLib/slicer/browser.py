"""Recognising our objects in DICOM files, for the DICOM browser plugin (no Slicer needed): what a
file is (:func:`classify_dicom`: overlay series, SEG, TID 1500 SR, RTSTRUCT, presentation state)
and how the browser should offer it (:func:`browser_preference`: confidence, preselected).
Re-exported by :mod:`.logic`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Union

PathLike = Union[str, os.PathLike]


def pydicom_version() -> tuple:
    """(major, minor) of the pydicom in use (Slicer 5.12 bundles 3.0; the core needs 3)."""
    import pydicom

    parts = []
    for part in pydicom.__version__.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@dataclass
class DicomKind:
    """What a DICOM file is, for the DICOM browser plugin.

    Attributes:
        kind: "overlay" (an image with overlay planes), "seg", "sr" (TID 1500), "rtstruct" (RT
            Structure Set), "gsps" (a softcopy presentation state) or "" (none of these).
        ours: written by DicomAnnotEmbed.
        detail: for a SEG its type ("LABELMAP", "BINARY", "FRACTIONAL"); for overlays the groups.
        series_uid, description: of the file.
        referenced_series_uids: series a SEG, SR, RTSTRUCT or presentation state refers to
            (images, for SR also SEGs).
        referenced_instance_uids: SOP Instance UIDs an SR refers to (its evidence, and the
            markups' own report it lists as pertinent evidence).
        sop_instance_uid: of the file.
        companion_uids: for an SR, the reports it lists as pertinent evidence (our markups' own
            report), which its import reads with it: they are not loaded on their own.
    """

    kind: str = ""
    ours: bool = False
    detail: str = ""
    series_uid: str = ""
    description: str = ""
    referenced_series_uids: List[str] = field(default_factory=list)
    referenced_instance_uids: List[str] = field(default_factory=list)
    sop_instance_uid: str = ""
    companion_uids: List[str] = field(default_factory=list)


def classify_dicom(path: PathLike) -> DicomKind:
    """Read a file's header and say whether it is one of ours to load (never raises)."""
    import pydicom

    from ..encodings.gsps.common import PRESENTATION_STATE_CLASSES
    from ..encodings.overlay import OVERLAY_GROUPS, PRIVATE_CREATOR, PRIVATE_GROUP
    from ..encodings.rtstruct.common import RT_STRUCTURE_SET_STORAGE
    from ..encodings.rtstruct.decode import referenced_series_uid
    from ..encodings.seg import LABEL_MAP_SEGMENTATION_STORAGE, SEG_SOP_CLASSES
    from ..encodings.sr import companion_report_uids
    from ..encodings.sr import SR_SOP_CLASSES

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not DICOM or unreadable: nothing of ours
        return DicomKind()
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    ours = str(ds.get("Manufacturer", "")) == "DicomAnnotEmbed"
    kind = DicomKind(series_uid=str(ds.get("SeriesInstanceUID", "")), description=str(ds.get("SeriesDescription", "")),
                     sop_instance_uid=str(ds.get("SOPInstanceUID", "")))
    if sop_class in SEG_SOP_CLASSES or modality == "SEG":
        kind.kind, kind.ours = "seg", ours
        kind.detail = "LABELMAP" if sop_class == LABEL_MAP_SEGMENTATION_STORAGE else \
            str(ds.get("SegmentationType", "BINARY")).upper()
        kind.referenced_series_uids = [str(item.get("SeriesInstanceUID", ""))
                                       for item in ds.get("ReferencedSeriesSequence", []) or []]
        return kind
    if sop_class in SR_SOP_CLASSES or modality == "SR":
        template = ""
        if ds.get("ContentTemplateSequence"):
            template = str(ds.ContentTemplateSequence[0].get("TemplateIdentifier", ""))
        if template == "1500":
            kind.kind, kind.ours = "sr", ours
            for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []) or []:
                for item in study.get("ReferencedSeriesSequence", []) or []:
                    kind.referenced_series_uids.append(str(item.get("SeriesInstanceUID", "")))
                    kind.referenced_instance_uids += [str(i.get("ReferencedSOPInstanceUID", ""))
                                                      for i in item.get("ReferencedSOPSequence", []) or []]
            kind.companion_uids = companion_report_uids(ds)
            kind.referenced_instance_uids += kind.companion_uids
        return kind
    if sop_class == RT_STRUCTURE_SET_STORAGE or modality == "RTSTRUCT":
        kind.kind, kind.ours = "rtstruct", ours
        kind.referenced_series_uids = [uid for uid in [referenced_series_uid(ds)[0]] if uid]
        return kind
    if sop_class in PRESENTATION_STATE_CLASSES or modality == "PR":
        kind.kind, kind.ours = "gsps", ours
        kind.detail = PRESENTATION_STATE_CLASSES.get(sop_class, "Presentation State")
        for item in ds.get("ReferencedSeriesSequence", []) or []:
            kind.referenced_series_uids.append(str(item.get("SeriesInstanceUID", "")))
            kind.referenced_instance_uids += [str(i.get("ReferencedSOPInstanceUID", ""))
                                              for i in item.get("ReferencedImageSequence", []) or []]
        return kind
    groups = sorted({tag >> 16 for tag in ds.keys() if tag >> 16 in OVERLAY_GROUPS and tag & 0xFFFF == 0x0010})
    creator = any(tag >> 16 == PRIVATE_GROUP and 0x10 <= tag & 0xFFFF <= 0xFF
                  and str(ds[tag].value).strip() == PRIVATE_CREATOR for tag in ds.keys())
    if groups or creator:
        kind.kind, kind.ours = "overlay", creator
        kind.detail = ", ".join(f"{g:04X}" for g in groups)
    return kind


#: DICOM browser confidences: Slicer's scalar volume plugin gives an image series 0.5, its SEG and
#: TID 1500 plugins 0.95, SlicerRT's DicomRtImportExport plugin an RTSTRUCT 1.0 (selected); per
#: series, DICOMLib.selectHighestConfidenceLoadables keeps only the highest confidence selected.
OURS_CONFIDENCE = 0.97
#: An RT Structure Set: selected, but below SlicerRT's 1.0, so that SlicerRT loads it when installed
#: (ours is then unselected by DICOMLib) and we do when it is not.
RTSTRUCT_CONFIDENCE = 0.9
OTHER_OVERLAY_CONFIDENCE = 0.45
OTHER_OBJECT_CONFIDENCE = 0.5


def browser_preference(kind: DicomKind) -> tuple:
    """(confidence, selected) of the DICOM browser loadable for a recognised file.

    Preselected, above Slicer's own plugins: our overlay-embedded series, any LABELMAP SEG (which
    Slicer's SEG plugin does not load), our TID 1500 SR (whose curves, angles, closed curves,
    planes and ROIs Slicer's TID 1500 plugin does not load). Offered unselected, Slicer's plugins
    staying the default: other overlay series (scanner graphics), BINARY/FRACTIONAL SEG, other SRs.
    Any RT Structure Set: selected at :data:`RTSTRUCT_CONFIDENCE`, below SlicerRT's 1.0 (SlicerRT
    loads it when installed). Presentation states (no plugin of Slicer loads them): ours
    preselected, others offered unselected.
    """
    if kind.kind == "overlay":
        return (OURS_CONFIDENCE, True) if kind.ours else (OTHER_OVERLAY_CONFIDENCE, False)
    if kind.kind == "seg":
        return (OURS_CONFIDENCE, True) if kind.detail == "LABELMAP" else (OTHER_OBJECT_CONFIDENCE, False)
    if kind.kind == "sr":
        return (OURS_CONFIDENCE, True) if kind.ours else (OTHER_OBJECT_CONFIDENCE, False)
    if kind.kind == "rtstruct":
        return (RTSTRUCT_CONFIDENCE, True)
    if kind.kind == "gsps":
        return (OURS_CONFIDENCE, True) if kind.ours else (OTHER_OBJECT_CONFIDENCE, False)
    return (0.0, False)


__all__ = ["DicomKind", "OTHER_OBJECT_CONFIDENCE", "OTHER_OVERLAY_CONFIDENCE", "OURS_CONFIDENCE",
           "RTSTRUCT_CONFIDENCE", "browser_preference", "classify_dicom", "pydicom_version"]
