"""Codes, SOP classes and concept sets of the TID 1500 encoding (written and read)."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from pydicom.dataset import Dataset

from ...core.model import Code
from ...dicom.values import code_of, long_string

PathLike = Union[str, os.PathLike]

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR", "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR", COMPREHENSIVE_3D_SR: "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}
LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", LABEL_MAP_SEGMENTATION)

#: Private coding scheme of codes this package makes up (concepts written as plain text in an
#: evaluation CSV, image values of modalities without a standard concept).
PRIVATE_SCHEME = "99DAE"
PRIVATE_SCHEME_NAME = "DicomAnnotEmbed local codes"
ALGORITHM_NAME = "DicomAnnotEmbed"

# --- concepts written --------------------------------------------------------------------------
VOLUME = Code("118565006", "SCT", "Volume")
SURFACE_AREA = Code("C0JK", "IBSI", "Surface Area of Mesh")
MAXIMUM_DIAMETER = Code("L0JK", "IBSI", "Maximum 3D Diameter of a Mesh")
VOXEL_SUM_METHOD = Code("126030", "DCM", "Sum of segmented voxel method for volume")
LENGTH = Code("410668003", "SCT", "Length")
PATH_LENGTH = Code("121211", "DCM", "Path length")
PERIMETER = Code("131191004", "SCT", "Perimeter")
AREA = Code("42798000", "SCT", "Area")
ANGLE = Code("1483009", "SCT", "Angle")
DERIVATIONS = {"mean": Code("373098007", "SCT", "Mean"),
               "standard_deviation": Code("386136009", "SCT", "Standard Deviation"),
               "minimum": Code("255605001", "SCT", "Minimum"), "maximum": Code("56851009", "SCT", "Maximum")}
#: Concept of the image values under a segment, by modality (with the statistic as Derivation).
INTENSITY_CONCEPTS = {"CT": Code("112031", "DCM", "Attenuation Coefficient"),
                      "MR": Code("110852", "DCM", "MR signal intensity")}
IMAGE_VALUE = Code("IMAGEVALUE", PRIVATE_SCHEME, "Image value")
PROCEDURES = {"CT": Code("25045-6", "LN", "CT unspecified body region"),
              "MR": Code("25056-3", "LN", "MRI unspecified body region"),
              "PT": Code("44136-0", "LN", "PET unspecified body region"),
              "NM": Code("49118-3", "LN", "NM unspecified body region")}
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")
LATERALITIES = {("24028007", "SCT"), ("7771000", "SCT"), ("51440002", "SCT"), ("66459002", "SCT"),
                ("G-A100", "SRT"), ("G-A101", "SRT"), ("G-A102", "SRT"), ("G-A103", "SRT")}
COMMENT = Code("121106", "DCM", "Comment")
# LIDC preset (the seed's conversion, in today's SNOMED CT codes).

# --- concepts read (legacy SRT equivalents included) -------------------------------------------
_IMAGING_MEASUREMENTS = {("126010", "DCM")}
_MEASUREMENT_GROUP = {("125007", "DCM")}
_TRACKING_ID = {("112039", "DCM")}
_TRACKING_UID = {("112040", "DCM")}
_FINDING = {("121071", "DCM")}
_FINDING_CATEGORY = {("276214006", "SCT")}
_FINDING_SITE = {("363698007", "SCT"), ("G-C0E3", "SRT")}
_LATERALITY = {("272741003", "SCT"), ("G-C171", "SRT")}
_TOPOGRAPHICAL = {("106233006", "SCT"), ("G-A1F8", "SRT")}
_DERIVATION = {("121401", "DCM")}
_METHOD = {("370129005", "SCT"), ("G-C036", "SRT")}
_ALGORITHM_NAME = {("111001", "DCM")}
_ALGORITHM_VERSION = {("111003", "DCM")}
_REFERENCED_SEGMENT = {("121191", "DCM")}
_REFERENCED_SEGMENTATION_FRAME = {("121214", "DCM")}
_SOURCE_SERIES_FOR_SEGMENTATION = {("121232", "DCM")}
_IMAGE_REGION = {("111030", "DCM")}
_VOLUME_SURFACE = {("121231", "DCM")}
_GEOMETRIC_PURPOSE = {("130400", "DCM")}
_NOT_EVALUATIONS = (_FINDING | _FINDING_CATEGORY | _FINDING_SITE | _METHOD | _GEOMETRIC_PURPOSE
                    | {("C67447", "NCIt"), ("C2348792", "UMLS"), ("126100", "DCM")})
_REPORT_TITLES = {("126000", "DCM"), ("126001", "DCM"), ("126002", "DCM"), ("126003", "DCM")}
_ANGLE_CONCEPTS = {("1483009", "SCT"), ("110859", "DCM")}
_LINE_CONCEPTS = {("410668003", "SCT"), ("121206", "DCM"), ("121227", "DCM"), ("81827009", "SCT"),
                  ("G-A22A", "SRT"), ("M-02550", "SRT"), ("G-D7FE", "SRT")}
_PERIMETER_CONCEPTS = {("131191004", "SCT"), ("74551000", "SCT"), ("G-A197", "SRT")}
_AREA_CONCEPTS = {("42798000", "SCT"), ("131184002", "SCT"), ("G-A166", "SRT"), ("G-A16A", "SRT")}

#: Tolerance for "inside the series": control points may lie this far (mm) outside the outer voxel faces.
INSIDE_TOLERANCE_MM = 1e-3



def private_concept(text: str) -> Code:
    """The code standing for a concept written as plain text: (121106, DCM, "Comment") for
    "comment", else a code of :data:`PRIVATE_SCHEME` derived from the text, meaning = the text."""
    text = " ".join(str(text).split())
    if re.sub(r"[^a-z]", "", text.lower()) == "comment":
        return COMMENT
    digest = hashlib.sha1(text.casefold().encode("utf-8")).hexdigest()[:12].upper()
    return Code(f"T{digest}", PRIVATE_SCHEME, text[:64])



def markups_document_path(out: PathLike) -> Path:
    """Where the markups' own report goes beside the report ``out``: ``sr.dcm`` -> ``sr_markups.dcm``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_markups{out.suffix or '.dcm'}")


# --- content items --------------------------------------------------------------------------------

def _key(item: Dataset) -> Optional[Tuple[str, str]]:
    code = item.get("ConceptNameCodeSequence")
    if not code or not isinstance(code[0], Dataset):  # absent, or a value of another VR (a broken file)
        return None
    return (str(code[0].get("CodeValue", "") or code[0].get("LongCodeValue", "") or code[0].get("URNCodeValue", "")),
            str(code[0].get("CodingSchemeDesignator", "")))


def _name(item: Dataset) -> Optional[Code]:
    sequence = item.get("ConceptNameCodeSequence")
    return code_of(sequence[0]) if sequence else None


def _value_code(item: Dataset) -> Optional[Code]:
    sequence = item.get("ConceptCodeSequence")
    return code_of(sequence[0]) if sequence else None


def _children(item: Dataset) -> list:
    return list(item.get("ContentSequence", []) or [])


def _unique(name: str, used: Dict[str, int]) -> str:
    name = long_string(name) or "Markup"
    if name not in used:
        used[name] = 1
        return name
    used[name] += 1
    candidate = long_string(f"{name[:58]} ({used[name]})")
    used[candidate] = 1
    return candidate
