"""The SEG header of the fast writer, built with pydicom alone (LPS).

highdicom builds the same header (``engine="highdicom"`` and the fallback of ``_SegWriter``), but a
command pays 0.2 s to import it, 0.28 s to parse its 22.6 MB table of the standard's modules and
0.25 s for 100 segment descriptions: more than the rest of a LABELMAP export of 200 slices
(bench_startup.py notes). This module writes what highdicom's one-plane template holds for the common
case: single-frame source images of the classes below, in patient space, no palette. Anything
else returns None and highdicom builds the template as before.

``Testing/Python/encodings/test_seg_template.py`` compares every element with highdicom's template
on every geometry of the conformance matrix, for BINARY, FRACTIONAL and LABELMAP. The one intended
difference: highdicom lists itself in the Contributing Equipment Sequence ("Software library used
to create this instance"); a header it did not build does not, and carries pydicom's
implementation UID in its file meta information.
"""
from __future__ import annotations

import datetime
from typing import List, Optional, Sequence

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, DS, TM

from ... import __version__
from ...core.model import Code
from ...dicom.header_items import COPIED_KEYWORDS, acquisition_equipment, code_item, put_element
from .common import LABEL_MAP_SEGMENTATION_STORAGE, SEGMENTATION_STORAGE, TRANSFER_SYNTAXES

#: Single-frame image classes whose IOD has the Patient, Clinical Trial Subject, General Study,
#: Patient Study, Clinical Trial Study and Specimen modules that :data:`COPIED_KEYWORDS` lists
#: (checked against highdicom's tables of the standard by the test).
OWN_TEMPLATE_SOURCE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",      # CT Image
    "1.2.840.10008.5.1.4.1.1.4",      # MR Image
    "1.2.840.10008.5.1.4.1.1.128",    # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.1",      # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",    # Digital X-Ray Image, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image, for processing
)


# Required by highdicom's constructor (read as attributes): without them it refuses the source.
# (the type 2 patient and study attributes are added empty by headers._clean_sources when absent)
_REQUIRED_SOURCE = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                    "StudyDate", "StudyTime", "StudyInstanceUID", "FrameOfReferenceUID", "ImageOrientationPatient",
                    "PixelSpacing")
_PATIENT_SEXES = ("M", "F", "O", "", None)

_SEGMENT_NUMBER, _SEGMENT_IDENTIFICATION = 0x0062000B, 0x0062000A
_IMAGE_POSITION, _PLANE_POSITION = 0x00200032, 0x00209113

SOURCE_FOR_PROCESSING = Code("121322", "DCM", "Source image for image processing operation")
SEGMENTATION_DERIVATION = Code("113076", "DCM", "Segmentation")
BACKGROUND = Code("125040", "DCM", "Background")
AI_ALGORITHM_FAMILY = Code("123110", "DCM", "Artificial Intelligence")  # CID 7162


def segment_description(number: int, label: str, category: Code, property_type: Code, algorithm_type: str, *,
                        algorithm_name: Optional[str] = None, algorithm_version: str = "",
                        tracking_id: Optional[str] = None, tracking_uid: Optional[str] = None,
                        anatomic_region: Optional[Code] = None) -> Dataset:
    """One Segment Sequence item, element for element what highdicom's SegmentDescription holds
    for the same arguments (a non-MANUAL algorithm gets the AI family of CID 7162)."""
    item = Dataset()  # elements set directly (put_element): 0.017 -> 0.00x s for 100 segments
    put_element(item, 0x00620004, "US", number)  # Segment Number
    put_element(item, 0x00620005, "LO", label)  # Segment Label
    put_element(item, 0x00620003, "SQ", DicomSequence([code_item(category)]))  # Segmented Property Category
    put_element(item, 0x0062000F, "SQ", DicomSequence([code_item(property_type)]))  # Segmented Property Type
    put_element(item, 0x00620008, "CS", algorithm_type)  # Segment Algorithm Type
    if algorithm_name is not None:
        identification = Dataset()
        put_element(identification, 0x00660036, "LO", algorithm_name)  # Algorithm Name
        put_element(identification, 0x00660031, "LO", algorithm_version)  # Algorithm Version
        put_element(identification, 0x0066002F, "SQ", DicomSequence([code_item(AI_ALGORITHM_FAMILY)]))
        put_element(item, 0x00620009, "LO", algorithm_name)  # Segment Algorithm Name
        put_element(item, 0x00620007, "SQ", DicomSequence([identification]))  # Algorithm Identification
    if tracking_id is not None and tracking_uid is not None:
        put_element(item, 0x00620020, "UT", tracking_id)  # Tracking ID
        put_element(item, 0x00620021, "UI", tracking_uid)  # Tracking UID
    if anatomic_region is not None:
        put_element(item, 0x00082218, "SQ", DicomSequence([code_item(anatomic_region)]))  # Anatomic Region
    return item


def supports(series, palette: bool, seg_type: str) -> bool:
    """Whether :func:`build_template` writes this header (else highdicom does)."""
    if palette and seg_type == "labelmap":
        return False
    if not series.geometry.in_patient_space or series.is_multiframe:
        return False
    for ds in series.datasets:
        if str(ds.get("SOPClassUID", "")) not in OWN_TEMPLATE_SOURCE_CLASSES:
            return False
    return True


def build_template(source: Dataset, *, seg_type: str, compression: str, descriptions: Sequence[Dataset],
                   series_uid: str, sop_uid: str, instance_number: int, series_number: int, series_description: str,
                   content_label: str, content_description: Optional[str], content_creator_name: Optional[str],
                   plane_position: Dataset, fractional_type: str = "PROBABILITY",
                   max_fractional_value: int = 255) -> Optional[Dataset]:
    """highdicom's one-plane template of a SEG on ``source`` (the image of that plane): every
    module but the Pixel Data, with one per-frame item per segment (one for LABELMAP).

    ``plane_position``: the Plane Position Sequence item of that plane (LPS, as the source
    states it). Returns None for a source highdicom would treat otherwise (a missing required
    attribute, a Patient's Sex it refuses, ...): the caller then lets highdicom build it.
    """
    if any(keyword not in source for keyword in _REQUIRED_SOURCE) or source.get("PatientSex") not in _PATIENT_SEXES:
        return None
    if series_number < 1 or instance_number < 1:
        return None
    labelmap = seg_type == "labelmap"
    sop_class = LABEL_MAP_SEGMENTATION_STORAGE if labelmap else SEGMENTATION_STORAGE
    now = datetime.datetime.now()
    ds = Dataset()
    ds.preamble = b"\x00" * 128
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = TRANSFER_SYNTAXES[compression]
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.FileMetaInformationVersion = b"\x00\x01"

    # SOP Common, General Series, General Equipment (the patient and study modules are copied below)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = sop_class, sop_uid, instance_number
    ds.InstanceCreationDate, ds.InstanceCreationTime = DA(now.date()), TM(now.time())
    ds.ContentDate, ds.ContentTime = DA(now.date()), TM(now.time())
    if source.get("SpecificCharacterSet") is not None:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series_uid, series_number, "SEG"
    ds.SeriesDescription = series_description
    ds.Manufacturer = ds.ManufacturerModelName = "DicomAnnotEmbed"
    ds.DeviceSerialNumber, ds.SoftwareVersions = "1", __version__
    ds.ReferringPhysicianName = None
    for keyword in COPIED_KEYWORDS:
        if keyword in source:
            ds.add(source[keyword])
    equipment = acquisition_equipment(source)
    ds.ContributingEquipmentSequence = [equipment] if equipment is not None else []

    # Segmentation Image, Image Pixel, General Image
    ds.SegmentationType = seg_type.upper()
    ds.ContentLabel = content_label
    ds.ContentDescription = content_description
    if content_creator_name is not None:
        ds.ContentCreatorName = content_creator_name
    if seg_type == "fractional":
        ds.SegmentationFractionalType = fractional_type
        ds.MaximumFractionalValue = max_fractional_value
        bits = 8
    elif labelmap:
        ds.PixelPaddingValue = 0
        bits = 8 if len(descriptions) < 256 else 16
    else:
        bits = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if labelmap:
        first = descriptions[0]
        background = segment_description(0, "Background", BACKGROUND, BACKGROUND, first.SegmentAlgorithmType,
                                         algorithm_name=first.get("SegmentAlgorithmName"))
        if "SegmentationAlgorithmIdentificationSequence" in background:
            del background.SegmentationAlgorithmIdentificationSequence
        if any("RecommendedDisplayCIELabValue" in d for d in descriptions):
            background.RecommendedDisplayCIELabValue = [0, 32896, 32896]  # CIELab black
        ds.SegmentSequence = [background, *descriptions]
    else:
        ds.SegmentSequence = list(descriptions)
    ds.SegmentsOverlap = "UNDEFINED" if seg_type == "fractional" else "NO"
    ds.FrameOfReferenceUID = source.FrameOfReferenceUID
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator")
    ds.BitsAllocated, ds.SamplesPerPixel = bits, 1
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = source.get("LossyImageCompression", "00")
    if ds.LossyImageCompression == "01":
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in source:
                ds.add(source[keyword])
    ds.Rows, ds.Columns = int(source.Rows), int(source.Columns)

    # Multi-frame Functional Groups and Dimensions
    organization = generate_uid()
    dimensions = ([] if labelmap else [(_SEGMENT_NUMBER, _SEGMENT_IDENTIFICATION, "Referenced Segment Number")]) + \
        [(_IMAGE_POSITION, _PLANE_POSITION, "Image Position Patient")]
    ds.DimensionIndexSequence = [_dimension_index(organization, *d) for d in dimensions]
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [DS(v, auto_format=True) for v in source.ImageOrientationPatient]
    shared.PlaneOrientationSequence = [orientation]
    measures = Dataset()
    measures.PixelSpacing = [DS(v, auto_format=True) for v in source.PixelSpacing]
    shared.PixelMeasuresSequence = [measures]
    numbers = [int(d.SegmentNumber) for d in descriptions]
    if not labelmap and len(numbers) == 1:
        shared.SegmentIdentificationSequence = [_segment_identification(numbers[0])]
    ds.SharedFunctionalGroupsSequence = [shared]
    item = Dataset()
    item.DimensionOrganizationUID = organization
    ds.DimensionOrganizationSequence = [item]
    frames = [None] if labelmap else numbers
    ds.PerFrameFunctionalGroupsSequence = [_frame_item(source, plane_position, number, len(numbers))
                                           for number in frames]
    ds.NumberOfFrames = len(frames)
    return ds


def _dimension_index(organization: str, pointer: int, group: int, label: str) -> Dataset:
    item = Dataset()
    item.DimensionOrganizationUID = organization
    item.add(DataElement(0x00209165, "AT", pointer))
    item.add(DataElement(0x00209167, "AT", group))
    item.DimensionDescriptionLabel = label
    return item


def _segment_identification(number: int) -> Dataset:
    item = Dataset()
    item.add(DataElement(_SEGMENT_NUMBER, "US", int(number)))
    return item


def _frame_item(source: Dataset, plane_position: Dataset, number: Optional[int], count: int) -> Dataset:
    """The per-frame item of the template's one plane: derivation, frame content, position and,
    for BINARY/FRACTIONAL with several segments, the segment."""
    item = Dataset()
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    reference.SpatialLocationsPreserved = "YES"
    reference.PurposeOfReferenceCodeSequence = [code_item(SOURCE_FOR_PROCESSING)]
    derivation = Dataset()
    derivation.SourceImageSequence = [reference]
    derivation.DerivationCodeSequence = [code_item(SEGMENTATION_DERIVATION)]
    item.DerivationImageSequence = [derivation]
    content = Dataset()
    content.DimensionIndexValues = 1 if number is None else [number, 1]
    item.FrameContentSequence = [content]
    item.PlanePositionSequence = [plane_position]
    if number is not None and count > 1:
        item.SegmentIdentificationSequence = [_segment_identification(number)]
    return item


def plane_position_item(position: List) -> Dataset:
    """A Plane Position Sequence item: Image Position (Patient), LPS, with the source's DS text."""
    item = Dataset()
    item.ImagePositionPatient = [DS(v, auto_format=True) for v in position]
    return item
