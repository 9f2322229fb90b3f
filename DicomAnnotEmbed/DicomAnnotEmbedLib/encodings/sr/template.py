"""The TID 1500 document of the fast SR export (``engine="fast"``), built with pydicom alone.

highdicom builds the same document (``engine="highdicom"``), but a command paid ~1 s CPU for it
on case C: importing highdicom (+ pydicom's code dictionary) 0.18 s, parsing its 22 MB table of
the standard's modules 0.33 s (for the image library's and the contributing equipment's "is this
an image" check and the copy of the patient and study modules), its checked content items for the
groups, the image library and the document. This module writes, element for element, what
highdicom's classes write for the content items, templates and modules the export uses:

* content items (CODE, TEXT, UIDREF, PNAME, NUM, SCOORD3D, IMAGE, CONTAINER) as highdicom's
  ``*ContentItem`` classes write them; the templates: observation context (TID 1002/1004),
  language, procedure reported, image library (TID 1600/1601/1602 with the descriptors of
  TID 1603/1604), measurement groups (TID 1410, 1411, 1501) with their tracking identifiers,
  findings, finding sites, measurements (TID 300 with derivation, method, the coordinates they
  are inferred from and the algorithm, TID 4019), qualitative evaluations, referenced segments,
  image regions and volume surfaces;
* the document (Comprehensive 3D SR): patient, study, series, equipment, SR document general
  (flags, evidence sequences) and SOP common modules, the patient and study modules copied from
  the first source as highdicom copies them, the source's acquisition equipment.

Source images of other SOP classes than :data:`IMAGE_MODALITIES` (whose patient and study
modules and modality codes are checked against highdicom's tables by the test) or with a Patient's
Sex highdicom refuses are left to highdicom: :func:`supports` is False and the caller builds the
document header and the image library with highdicom as before (the groups stay ours).

``Testing/Python/encodings/test_sr_speed_equivalence.py`` compares the documents of both engines
element by element. The one intended difference, as for the SEG (``encodings/seg/template.py``):
highdicom lists itself in the Contributing Equipment Sequence ("Highdicom open-source
contributors"); a document it did not build does not, and carries pydicom's implementation UID
in its file meta information.
"""
from __future__ import annotations

import datetime
import functools
from typing import Iterable, List, Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DA, DS, TM

from ...core.model import Code
from ...dicom.header_items import (PATIENT_AND_STUDY_KEYWORDS, acquisition_equipment, code_item, element_value,
                                  new_dataset, put_element)
from .codes import COMPREHENSIVE_3D_SR

_DCM = "DCM"


def _dcm(value: str, meaning: str) -> Code:
    return Code(value, _DCM, meaning)


def _modalities(codes: str, meaning: str, *uids: str) -> dict:
    return {f"1.2.840.10008.5.1.4.1.1.{uid}": Code(codes, _DCM, meaning) for uid in uids}


#: Image SOP classes written without highdicom, with their coded modality (CID 29) as highdicom's
#: image library codes it.
IMAGE_MODALITIES = {
    **_modalities("CT", "Computed Tomography", "2", "2.1", "2.2"),
    **_modalities("MR", "Magnetic Resonance", "4", "4.1", "4.3", "4.4"),
    **_modalities("PT", "Positron emission tomography", "128", "130", "128.1"),
    **_modalities("NM", "Nuclear Medicine", "20"),
    **_modalities("OT", "Other", "7", "7.1", "7.2", "7.3", "7.4"),
    **_modalities("CR", "Computed Radiography", "1"),
    **_modalities("DX", "Digital Radiography", "1.1", "1.1.1"),
    **_modalities("MG", "Mammography", "1.2", "1.2.1"),
    **_modalities("IO", "Intra-oral Radiography", "1.3", "1.3.1"),
    **_modalities("US", "Ultrasound", "3.1", "6.1", "6.2"),
    **_modalities("XA", "X-Ray Angiography", "12.1", "12.1.1"),
    **_modalities("RF", "Radiofluoroscopy", "12.2", "12.2.1"),
}

_PATIENT_SEXES = ("M", "F", "O", "", None)

# --- concepts -------------------------------------------------------------------------------------
CONTAINS, HAS_OBS_CONTEXT, HAS_CONCEPT_MOD, HAS_ACQ_CONTEXT, INFERRED_FROM = (
    "CONTAINS", "HAS OBS CONTEXT", "HAS CONCEPT MOD", "HAS ACQ CONTEXT", "INFERRED FROM")
REPORT_TITLE = Code("126000", _DCM, "Imaging Measurement Report")
LANGUAGE = _dcm("121049", "Language of Content Item and Descendants")
ENGLISH_US = Code("en-US", "RFC5646", "English (United States)")
OBSERVER_TYPE = _dcm("121005", "Observer Type")
PERSON, DEVICE = _dcm("121006", "Person"), _dcm("121007", "Device")
PERSON_NAME = _dcm("121008", "Person Observer Name")
DEVICE_UID, DEVICE_NAME = _dcm("121012", "Device Observer UID"), _dcm("121013", "Device Observer Name")
PROCEDURE_REPORTED = _dcm("121058", "Procedure reported")
IMAGING_MEASUREMENTS = _dcm("126010", "Imaging Measurements")
MEASUREMENT_GROUP = _dcm("125007", "Measurement Group")
TRACKING_IDENTIFIER = _dcm("112039", "Tracking Identifier")
TRACKING_UID = _dcm("112040", "Tracking Unique Identifier")
FINDING_CATEGORY = Code("276214006", "SCT", "Finding category")
FINDING = _dcm("121071", "Finding")
FINDING_SITE = Code("363698007", "SCT", "Finding Site")
LATERALITY = Code("272741003", "SCT", "Laterality")
TOPOGRAPHICAL_MODIFIER = Code("106233006", "SCT", "Topographical modifier")
MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
DERIVATION = _dcm("121401", "Derivation")
ALGORITHM_NAME_CONCEPT = _dcm("111001", "Algorithm Name")
ALGORITHM_VERSION_CONCEPT = _dcm("111003", "Algorithm Version")
SOURCE = Code("260753009", "SCT", "Source")
REFERENCED_SEGMENT = _dcm("121191", "Referenced Segment")
SOURCE_SERIES = _dcm("121232", "Source Series for Segmentation")
IMAGE_REGION = _dcm("111030", "Image Region")
VOLUME_SURFACE = _dcm("121231", "Volume Surface")
IMAGE_LIBRARY = _dcm("111028", "Image Library")
IMAGE_LIBRARY_GROUP = _dcm("126200", "Image Library Group")
FRAME_OF_REFERENCE_UID = _dcm("112227", "Frame of Reference UID")
MODALITY = _dcm("121139", "Modality")
PIXELS, MILLIMETER, DIRECTION = Code("{pixels}", "UCUM", "Pixels"), Code("mm", "UCUM", "mm"), \
    Code("{-1:1}", "UCUM", "{-1:1}")
_CROSS_SECTIONAL = ("CT", "MR", "PT")
_PROJECTION = ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")


def supports(evidence: Sequence[Dataset]) -> bool:
    """Whether :func:`build_document` writes the header of an SR with this ``evidence`` (else
    highdicom does): its first item, whose patient and study modules and acquisition equipment
    the SR copies, is an image of :data:`IMAGE_MODALITIES` with a Patient's Sex highdicom takes."""
    return bool(evidence) and evidence[0].get("PatientSex") in _PATIENT_SEXES and \
        str(evidence[0].get("SOPClassUID", "")) in IMAGE_MODALITIES


# --- content items (highdicom's value_types) --------------------------------------------------------

_VALUE_TYPE, _RELATIONSHIP, _CONCEPT_NAME, _CONCEPT_CODE = Tag(0x0040A040), Tag(0x0040A010), Tag(0x0040A043), \
    Tag(0x0040A168)
_TEXT_VALUE, _UID, _NUMERIC, _FLOATING, _UNITS = Tag(0x0040A160), Tag(0x0040A124), Tag(0x0040A30A), \
    Tag(0x0040A161), Tag(0x004008EA)
_MEASURED_VALUE, _CONTENT, _CONTINUITY = Tag(0x0040A300), Tag(0x0040A730), Tag(0x0040A050)
_MAPPING_RESOURCE, _TEMPLATE_IDENTIFIER, _CONTENT_TEMPLATE = Tag(0x00080105), Tag(0x0040DB00), Tag(0x0040A504)


@functools.lru_cache(maxsize=4096)
def _code(code: Code) -> Dataset:
    """The code sequence item of ``code`` (:func:`dicom.header_items.code_item`), made once a process and shared
    by every item naming that code: it is written as it is and never changed."""
    return code_item(code)


def content_item(value_type: str, name: Code, relationship: Optional[str]) -> Dataset:
    item = new_dataset()
    put_element(item, _VALUE_TYPE, "CS", value_type)
    put_element(item, _CONCEPT_NAME, "SQ", DicomSequence([_code(name)]))
    if relationship is not None:
        put_element(item, _RELATIONSHIP, "CS", relationship)
    return item


def code_content(name: Code, value: Code, relationship: Optional[str]) -> Dataset:
    item = content_item("CODE", name, relationship)
    put_element(item, _CONCEPT_CODE, "SQ", DicomSequence([_code(value)]))
    return item


def text_content(name: Code, value: str, relationship: Optional[str]) -> Dataset:
    item = content_item("TEXT", name, relationship)
    if type(value) is str:
        put_element(item, _TEXT_VALUE, "UT", value)
    else:
        item.TextValue = value
    return item


def uid_content(name: Code, value: str, relationship: Optional[str]) -> Dataset:
    item = content_item("UIDREF", name, relationship)
    item.UID = value
    return item


def num_content(name: Code, value, unit: Code, relationship: Optional[str]) -> Dataset:
    """A NUM item; TypeError for a value that is not a number (an empty type 2 attribute), as highdicom."""
    if not isinstance(value, (int, float)):
        raise TypeError('Argument "value" must have type "int" or "float".')
    item = content_item("NUM", name, relationship)
    measured = new_dataset()
    put_element(measured, _NUMERIC, "DS", DS(value, auto_format=True))
    if isinstance(value, float):
        put_element(measured, _FLOATING, "FD", value)
    put_element(measured, _UNITS, "SQ", DicomSequence([_code(unit)]))
    put_element(item, _MEASURED_VALUE, "SQ", DicomSequence([measured]))
    return item


def scoord3d_content(name: Code, graphic_type: str, points, frame_of_reference: str,
                     relationship: Optional[str]) -> Dataset:
    item = content_item("SCOORD3D", name, relationship)
    item.GraphicType = graphic_type
    item.GraphicData = np.asarray(points, dtype=float).flatten().tolist()
    item.ReferencedFrameOfReferenceUID = frame_of_reference
    return item


def image_content(name: Code, sop_class: str, sop_instance: str, relationship: Optional[str],
                  segment_number: Optional[int] = None) -> Dataset:
    item = content_item("IMAGE", name, relationship)
    reference = Dataset()
    reference.ReferencedSOPClassUID = sop_class
    reference.ReferencedSOPInstanceUID = sop_instance
    if segment_number is not None:
        reference.ReferencedSegmentNumber = segment_number
    item.ReferencedSOPSequence = [reference]
    return item


def container(name: Code, relationship: Optional[str], content: Iterable[Dataset],
              template_id: Optional[str] = None) -> Dataset:
    item = content_item("CONTAINER", name, relationship)
    put_element(item, _CONTINUITY, "CS", "CONTINUOUS")
    if template_id is not None:
        template = new_dataset()
        put_element(template, _MAPPING_RESOURCE, "CS", "DCMR")
        put_element(template, _TEMPLATE_IDENTIFIER, "CS", template_id)
        put_element(item, _CONTENT_TEMPLATE, "SQ", DicomSequence([template]))
    return _with_content(item, list(content))


# --- templates ----------------------------------------------------------------------------------------

def observer(kind: Code, *identifying: Dataset) -> List[Dataset]:
    """TID 1002 observer context: the observer type, then the person's or device's attributes."""
    return [code_content(OBSERVER_TYPE, kind, HAS_OBS_CONTEXT), *identifying]


def person_observer(name: str) -> List[Dataset]:
    """TID 1003 person observer; a name of one component (no caret) is warned about, as highdicom does."""
    import warnings

    from pydicom.valuerep import PersonName

    if "^" not in str(name) and str(name) != "":
        warnings.warn(f'The string "{name}" is unlikely to represent the intended person name since it contains '
                      f'only a single component (family^given; a trailing caret marks a one-component name)',
                      UserWarning, stacklevel=2)
    item = content_item("PNAME", PERSON_NAME, HAS_OBS_CONTEXT)
    item.PersonName = PersonName(name) if not isinstance(name, PersonName) else name
    return observer(PERSON, item)


def device_observer(uid: str, name: Optional[str]) -> List[Dataset]:
    items = [uid_content(DEVICE_UID, uid, HAS_OBS_CONTEXT)]
    if name is not None:
        items.append(text_content(DEVICE_NAME, name, HAS_OBS_CONTEXT))
    return observer(DEVICE, *items)


def algorithm_items(name: str, version: str) -> List[Dataset]:
    """TID 4019 (algorithm name and version)."""
    return [text_content(ALGORITHM_NAME_CONCEPT, name, HAS_CONCEPT_MOD),
            text_content(ALGORITHM_VERSION_CONCEPT, version, HAS_CONCEPT_MOD)]


def measurement(name: Code, value: float, unit: Code, algorithm: Sequence[Dataset], *,
                derivation: Optional[Code] = None, method: Optional[Code] = None,
                coordinates: Sequence[Dataset] = ()) -> Dataset:
    """TID 300 as highdicom's Measurement writes it: the NUM item with its method, derivation,
    the coordinates it is inferred from and the algorithm."""
    modifiers = _codes(((MEASUREMENT_METHOD, method), (DERIVATION, derivation)), HAS_CONCEPT_MOD)
    return _with_content(num_content(name, value, unit, CONTAINS), [*modifiers, *coordinates, *algorithm])


def inferred_from(graphic_type: str, points, frame_of_reference: str) -> Dataset:
    """The coordinates a measurement is inferred from (highdicom's CoordinatesForMeasurement3D)."""
    return scoord3d_content(SOURCE, graphic_type, points, frame_of_reference, INFERRED_FROM)


def finding_site(site: Code, laterality: Optional[Code] = None, modifier: Optional[Code] = None) -> Dataset:
    return _with_content(code_content(FINDING_SITE, site, HAS_CONCEPT_MOD),
                         _codes(((LATERALITY, laterality), (TOPOGRAPHICAL_MODIFIER, modifier)), HAS_CONCEPT_MOD))


def _codes(pairs, relationship: str) -> List[Dataset]:
    """CODE items of the (concept, value) pairs whose value is given."""
    return [code_content(concept, value, relationship) for concept, value in pairs if value is not None]


def _with_content(item: Dataset, content: List[Dataset]) -> Dataset:
    """``item`` with the Content Sequence ``content``, which highdicom leaves out when empty."""
    if content:
        put_element(item, _CONTENT, "SQ", DicomSequence(content))
    return item


def measurement_group(template_id: str, tracking_id: str, tracking_uid: str, *, finding: Optional[Code] = None,
                      category: Optional[Code] = None, sites: Sequence[Dataset] = (),
                      items: Sequence[Dataset] = (), region: Sequence[Dataset] = ()) -> Dataset:
    """A measurement group (TID 1410, 1411 or 1501) in highdicom's order: tracking identifier and
    UID, finding category, finding, finding sites, the measurements and evaluations (``items``),
    then the region (referenced segment, image region or volume surface)."""
    content = [text_content(TRACKING_IDENTIFIER, tracking_id, HAS_OBS_CONTEXT),
               uid_content(TRACKING_UID, tracking_uid, HAS_OBS_CONTEXT)]
    content += _codes(((FINDING_CATEGORY, category), (FINDING, finding)), CONTAINS)
    content += [*sites, *items, *region]
    return container(MEASUREMENT_GROUP, CONTAINS, content, template_id)


def referenced_segment(sop_class: str, sop_instance: str, number: int, series_uid: str) -> List[Dataset]:
    return [image_content(REFERENCED_SEGMENT, sop_class, sop_instance, CONTAINS, int(number)),
            uid_content(SOURCE_SERIES, series_uid, CONTAINS)]


def image_region(graphic_type: str, points, frame_of_reference: str) -> List[Dataset]:
    return [scoord3d_content(IMAGE_REGION, graphic_type, points, frame_of_reference, CONTAINS)]


def volume_surface(faces: Sequence, frame_of_reference: str, series_uid: str) -> List[Dataset]:
    return [scoord3d_content(VOLUME_SURFACE, "POLYGON", face, frame_of_reference, CONTAINS) for face in faces] + \
        [uid_content(SOURCE_SERIES, series_uid, CONTAINS)]


def report(context: Sequence[Dataset], procedure: Code, groups: Sequence[Dataset],
           library: Optional[Sequence[Dataset]] = None) -> Dataset:
    """The root container of TID 1500: language, observation context, procedure reported, the
    image library entries (when given), the imaging measurements."""
    content = [code_content(LANGUAGE, ENGLISH_US, HAS_CONCEPT_MOD), *context,
               code_content(PROCEDURE_REPORTED, procedure, HAS_CONCEPT_MOD)]
    content.extend(library or ())
    content.append(container(IMAGING_MEASUREMENTS, CONTAINS, groups))
    return container(REPORT_TITLE, None, content, "1500")


# --- image library (TID 1600) ---------------------------------------------------------------------------

def image_library(datasets: Sequence[Dataset]) -> List[Dataset]:
    """The Image Library container of ``datasets`` (headers as :func:`document._library_header`
    makes them), its images grouped by modality and Frame of Reference as highdicom groups them.
    Raises TypeError/AttributeError where highdicom does (e.g. an empty Slice Thickness)."""
    groups: dict = {}
    for ds in datasets:
        modality = IMAGE_MODALITIES[str(ds.SOPClassUID)]
        entry = image_content(SOURCE, ds.SOPClassUID, ds.SOPInstanceUID, CONTAINS)
        entry.ContentSequence = _descriptors(ds, modality)
        key = (modality.value, str(ds.FrameOfReferenceUID)) if "FrameOfReferenceUID" in ds else (modality.value,)
        groups.setdefault(key, []).append(entry)
    return [container(IMAGE_LIBRARY, CONTAINS, [container(IMAGE_LIBRARY_GROUP, CONTAINS, entries)
                                                 for entries in groups.values()])]


def _descriptors(ds: Dataset, modality: Code) -> List[Dataset]:
    """TID 1602 image library entry descriptors, with TID 1604 (cross-sectional) or 1603 (projection)."""
    items = [code_content(MODALITY, modality, HAS_ACQ_CONTEXT)]
    if "FrameOfReferenceUID" in ds:
        items.append(uid_content(FRAME_OF_REFERENCE_UID, ds.FrameOfReferenceUID, HAS_ACQ_CONTEXT))
    items.append(num_content(_dcm("110910", "Pixel Data Rows"), ds.Rows, PIXELS, HAS_ACQ_CONTEXT))
    items.append(num_content(_dcm("110911", "Pixel Data Columns"), ds.Columns, PIXELS, HAS_ACQ_CONTEXT))
    millimeter = MILLIMETER
    if ds.Modality in _CROSS_SECTIONAL:
        spacing, orientation, position = ds.PixelSpacing, ds.ImageOrientationPatient, ds.ImagePositionPatient
        values = [("111026", "Horizontal Pixel Spacing", spacing[1], millimeter),
                  ("111066", "Vertical Pixel Spacing", spacing[0], millimeter),
                  ("112225", "Slice Thickness", ds.SliceThickness, millimeter)]
        values += [(f"11090{1 + axis}", f"Image Position (Patient) {'XYZ'[axis]}", position[axis], millimeter)
                   for axis in range(3)]
        values += [(f"11090{4 + index}", f"Image Orientation (Patient) {('Row', 'Column')[index // 3]} "
                                         f"{'XYZ'[index % 3]}", orientation[index], DIRECTION) for index in range(6)]
        if hasattr(ds, "SpacingBetweenSlices"):
            values.append(("112226", "Spacing between slices", ds.SpacingBetweenSlices, millimeter))
        items += [num_content(_dcm(code, meaning), value, unit, HAS_ACQ_CONTEXT) for code, meaning, value, unit in values]
    elif ds.Modality in _PROJECTION:
        orientation, spacing = ds.PatientOrientation, ds.ImagerPixelSpacing
        items += [text_content(_dcm("111044", "Patient Orientation Row"), orientation[0], HAS_ACQ_CONTEXT),
                  text_content(_dcm("111043", "Patient Orientation Column"), orientation[1], HAS_ACQ_CONTEXT),
                  num_content(_dcm("111026", "Horizontal Pixel Spacing"), spacing[1], millimeter, HAS_ACQ_CONTEXT),
                  num_content(_dcm("111066", "Vertical Pixel Spacing"), spacing[0], millimeter, HAS_ACQ_CONTEXT)]
    return items


# --- the document ---------------------------------------------------------------------------------------

def build_document(evidence: Sequence[Dataset], root: Dataset, *, series_instance_uid: str, series_number: int,
                   sop_instance_uid: str, instance_number: int, manufacturer: str, series_description: str,
                   software_versions: str) -> Dataset:
    """The Comprehensive 3D SR of the root container ``root`` (:func:`report`) with its evidence,
    as highdicom's Comprehensive3DSR writes it (see the module docstring for the one difference;
    the keywords are its constructor's). Raises ValueError when the content references an instance
    that is not evidence."""
    check_evidence(root, evidence)
    first = evidence[0]
    now = datetime.datetime.now()
    ds = Dataset()
    ds.preamble = b"\x00" * 128
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = COMPREHENSIVE_3D_SR
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.file_meta.FileMetaInformationVersion = b"\x00\x01"
    # Patient, General Study (then replaced by the source's own elements where it has them)
    ds.PatientID, ds.PatientName, ds.PatientSex = first.PatientID, first.PatientName, first.PatientSex
    ds.PatientBirthDate = DA(first.PatientBirthDate)
    ds.StudyInstanceUID = str(first.StudyInstanceUID)
    ds.AccessionNumber, ds.StudyID = first.AccessionNumber, first.StudyID
    ds.StudyDate = DA(first.StudyDate) if first.StudyDate is not None else None
    ds.StudyTime = TM(first.StudyTime) if first.StudyTime is not None else None
    ds.ReferringPhysicianName = getattr(first, "ReferringPhysicianName", None)
    # SR Document Series, General Equipment, SOP Common
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series_instance_uid, series_number, "SR"
    ds.SeriesDescription = series_description
    ds.Manufacturer, ds.SoftwareVersions = manufacturer, software_versions
    ds.SOPInstanceUID, ds.SOPClassUID, ds.InstanceNumber = sop_instance_uid, COMPREHENSIVE_3D_SR, instance_number
    ds.InstanceCreationDate, ds.InstanceCreationTime = DA(now.date()), TM(now.time())
    if first.get("SpecificCharacterSet") is not None:
        ds.SpecificCharacterSet = first.SpecificCharacterSet
    ds.ContentDate, ds.ContentTime = DA(now.date()), TM(now.time())
    # SR Document General, SR Document Content
    ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag = "PARTIAL", "UNVERIFIED", "PRELIMINARY"
    for element in root:
        ds.add(element)
    same, other = _evidence_items(evidence, ds.StudyInstanceUID)
    if same:
        ds.CurrentRequestedProcedureEvidenceSequence = same
    if other:
        ds.PertinentOtherEvidenceSequence = other
    ds.PerformedProcedureCodeSequence = []
    ds.ReferencedPerformedProcedureStepSequence = []
    for keyword in PATIENT_AND_STUDY_KEYWORDS:
        if keyword in first:
            ds.add(first[keyword])
    equipment = acquisition_equipment(first)
    ds.ContributingEquipmentSequence = [equipment] if equipment is not None else []
    return ds


def check_evidence(root: Dataset, evidence: Sequence[Dataset]) -> None:
    """highdicom's check: every instance an IMAGE or COMPOSITE item references is evidence."""
    known = {str(ds.SOPInstanceUID) for ds in evidence}
    missing, stack = set(), [root]
    while stack:  # (the items' own dictionaries: Dataset.get took 0.025 s CPU on case C's 5,000 items)
        item = stack.pop()
        if element_value(item, _VALUE_TYPE) in ("IMAGE", "COMPOSITE"):
            uid = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            if uid not in known:
                missing.add(uid)
        stack.extend(element_value(item, _CONTENT) or ())
    if missing:
        raise ValueError(f'No evidence was provided for the following SOP instances, which are referenced in the '
                         f'document content: "{", ".join(sorted(missing))}"')


_REFERENCED_SOP_CLASS, _REFERENCED_SOP_INSTANCE = Tag(0x00081150), Tag(0x00081155)


def _evidence_items(evidence: Sequence[Dataset], study_uid: str):
    """The Current Requested Procedure Evidence items (study ``study_uid``) and the Pertinent Other
    Evidence items (other studies): study, series, instances, in the order first seen."""
    groups: List[dict] = [{}, {}]
    seen = set()
    for ds in evidence:
        uid = str(ds.SOPInstanceUID)
        if uid in seen:
            continue
        seen.add(uid)
        item = new_dataset()
        # the headers' UIDs as they are (setting them as attributes checked each again: 0.02 s CPU
        # for 200 images)
        put_element(item, _REFERENCED_SOP_CLASS, "UI", ds.SOPClassUID)
        put_element(item, _REFERENCED_SOP_INSTANCE, "UI", ds.SOPInstanceUID)
        study = ds.StudyInstanceUID
        groups[0 if study == study_uid else 1].setdefault((study, ds.SeriesInstanceUID), []).append(item)
    result = []
    for group in groups:
        studies: dict = {}
        for (study, series_uid), instances in group.items():
            series = Dataset()
            series.SeriesInstanceUID = series_uid
            series.ReferencedSOPSequence = instances
            studies.setdefault(study, []).append(series)
        items = []
        for study, series_items in studies.items():
            item = Dataset()
            item.StudyInstanceUID = study
            item.ReferencedSeriesSequence = series_items
            items.append(item)
        result.append(items)
    return result


def are_points_coplanar(points, tolerance: float = 1e-5) -> bool:
    """Whether the points (n x 3) lie in one plane, within ``tolerance`` (mm) of their best-fit
    plane: the test highdicom applies to a POLYGON or ELLIPSE."""
    points = np.asarray(points, dtype=float)
    if len(points) < 4:
        return True
    centred = points - points.mean(axis=0, keepdims=True)
    normal = np.linalg.svd(centred.T)[0][:, -1]
    return float(np.abs(normal @ centred.T).max()) <= tolerance
