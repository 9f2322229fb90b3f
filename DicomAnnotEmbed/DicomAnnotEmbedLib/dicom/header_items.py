"""Header pieces that highdicom writes the same way into every object it derives from images,
written with pydicom alone: code sequence items, the source's patient and study modules, its
acquisition equipment. Used by the SEG's and the SR's own templates (``encodings/seg/template.py``,
``encodings/sr/template.py``; an encoding does not import another encoding)."""
from __future__ import annotations

import datetime
from typing import Optional

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import DT

from ..core.model import Code

ACQUISITION_EQUIPMENT = Code("109101", "DCM", "Acquisition Equipment")

#: The root attributes of an image's patient, study and specimen modules (PS3.3: Patient, Clinical
#: Trial Subject, General Study, Patient Study, Clinical Trial Study, Specimen), which highdicom copies
#: as they are from the source into a SEG (all) and an SR (all but the Specimen module: see
#: :data:`PATIENT_AND_STUDY_KEYWORDS`).
COPIED_KEYWORDS = (
    # Patient
    "ReferencedPatientSequence", "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence", "PatientBirthDate", "PatientBirthTime",
    "PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar", "PatientSex", "QualityControlSubject", "StrainDescription",
    "StrainNomenclature", "StrainStockSequence", "StrainAdditionalInformation", "StrainCodeSequence",
    "GeneticModificationsSequence", "OtherPatientNames", "OtherPatientIDsSequence",
    "ReferencedPatientPhotoSequence", "EthnicGroupCodeSequence", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    # Clinical Trial Subject
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "IssuerOfClinicalTrialProtocolID", "OtherClinicalTrialProtocolIDsSequence", "ClinicalTrialSiteID",
    "ClinicalTrialSiteName", "IssuerOfClinicalTrialSiteID", "ClinicalTrialSubjectID",
    "IssuerOfClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "IssuerOfClinicalTrialSubjectReadingID", "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
    # General Study
    "StudyDate", "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "StudyDescription", "ProcedureCodeSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "ReferencedStudySequence", "StudyInstanceUID", "StudyID",
    "RequestingService", "RequestingServiceCodeSequence", "ReasonForPerformedProcedureCodeSequence",
    # Patient Study
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge", "PatientSize",
    "PatientSizeCodeSequence", "PatientBodyMassIndex", "MeasuredAPDimension", "MeasuredLateralDimension",
    "PatientWeight", "MedicalAlerts", "Allergies", "Occupation", "SmokingStatus", "AdditionalPatientHistory",
    "PregnancyStatus", "LastMenstrualDate", "PatientSexNeutered", "ReasonForVisit",
    "ReasonForVisitCodeSequence", "AdmissionID", "IssuerOfAdmissionIDSequence", "ServiceEpisodeID",
    "ServiceEpisodeDescription", "IssuerOfServiceEpisodeIDSequence", "PatientState",
    # Clinical Trial Study
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription", "LongitudinalTemporalOffsetFromEvent",
    "LongitudinalTemporalEventType", "ClinicalTrialTimePointTypeCodeSequence",
    "IssuerOfClinicalTrialTimePointID", "ConsentForClinicalTrialUseSequence",
    # Specimen
    "ContainerIdentifier", "IssuerOfTheContainerIdentifierSequence", "AlternateContainerIdentifierSequence",
    "ContainerTypeCodeSequence", "ContainerDescription", "ContainerComponentSequence",
    "SpecimenDescriptionSequence",
)

#: The Patient, Clinical Trial Subject, General Study, Patient Study and Clinical Trial Study modules.
PATIENT_AND_STUDY_KEYWORDS = COPIED_KEYWORDS[:COPIED_KEYWORDS.index("ContainerIdentifier")]


#: An empty Dataset's attributes, and those of them that each Dataset has its own of (dictionaries).
_EMPTY_DATASET = Dataset().__dict__
_OWN_ATTRIBUTES = tuple(name for name, value in _EMPTY_DATASET.items() if isinstance(value, (dict, list)))


def new_dataset() -> Dataset:
    """``Dataset()``, made faster: pydicom's ``__init__`` sets its dozen attributes through
    ``Dataset.__setattr__``, which looks each name up as a DICOM keyword first (~5 microseconds a
    dataset; an SR's content tree has ~5,000). The new dataset gets an empty one's attributes, its
    own copy of each dictionary among them (the elements, private blocks, pixel options)."""
    ds = Dataset.__new__(Dataset)
    state = ds.__dict__
    state.update(_EMPTY_DATASET)
    for name in _OWN_ATTRIBUTES:
        state[name] = _EMPTY_DATASET[name].copy()
    return ds


def put_element(ds: Dataset, tag: int, vr: str, value) -> None:
    """Set an element whose value is already what pydicom would store (a str of a string VR, an
    int, a DS, a float, a pydicom Sequence): pydicom's ``__setattr__`` looks the keyword up and
    checks and converts the value again, ~10 microseconds an element (an SR's content tree has
    ~75,000; a SEG's 100 segment items ~1,500)."""
    tag = BaseTag(tag)  # (pydicom reads .group, .is_private off it)
    element = DataElement.__new__(DataElement)
    element.__dict__.update(tag=tag, VR=vr, validation_mode=1, _value=value, file_tell=None,
                            is_undefined_length=False, private_creator=None)
    ds._dict[tag] = element


def element_value(ds: Dataset, tag: int):
    """``ds.get(tag)``'s value (None when ``ds`` has no such element) read from the dataset's own
    dictionary: ``Dataset.get`` and ``__getitem__`` cost ~5 microseconds a call, which walks of an
    SR's content tree (5,000 to 16,000 items) make several times an item. An element read from a
    file and not yet converted is converted as ``Dataset.__getitem__`` converts it."""
    element = ds._dict.get(tag)
    if element is None:
        return None
    if type(element) is not DataElement:
        element = ds[tag]
    return element.value


_CODE_VALUE, _CODING_SCHEME, _CODE_MEANING = 0x00080100, 0x00080102, 0x00080104
_LONG_CODE_VALUE, _URN_CODE_VALUE = 0x00080119, 0x00080120


def code_item(code: Code) -> Dataset:
    """A Code Sequence item as highdicom's CodedConcept writes it (long and URN values, meaning
    defaulting to the value). Raises ValueError for a meaning over 64 characters, as it does."""
    meaning = code.meaning or code.value
    if len(meaning) > 64:
        raise ValueError("Code meaning can have maximally 64 characters.")
    item = Dataset()
    value = str(code.value)
    if len(value) > 16:
        if value.startswith("urn") or "://" in value:
            put_element(item, _URN_CODE_VALUE, "UR", value)
        else:
            put_element(item, _LONG_CODE_VALUE, "UC", value)
    else:
        put_element(item, _CODE_VALUE, "SH", value)
    put_element(item, _CODE_MEANING, "LO", str(meaning))
    put_element(item, _CODING_SCHEME, "SH", str(code.scheme))
    return item


def acquisition_equipment(source: Dataset) -> Optional[Dataset]:
    """The source's acquisition equipment as a Contributing Equipment item (none without a Manufacturer)."""
    manufacturer = source.get("Manufacturer")
    if manufacturer in (None, ""):
        return None
    item = Dataset()
    item.Manufacturer = manufacturer
    item.PurposeOfReferenceCodeSequence = [code_item(ACQUISITION_EQUIPMENT)]
    for keyword in ("ManufacturerModelName", "InstitutionName", "InstitutionalDepartmentName", "InstitutionAddress",
                    "StationName", "DeviceSerialNumber", "SoftwareVersions"):
        value = source.get(keyword)
        if value is not None:
            setattr(item, keyword, value)
    when = source.get("AcquisitionDateTime")
    if when is None:
        date, time = source.get("AcquisitionDate"), source.get("AcquisitionTime")
        if isinstance(date, datetime.date) and isinstance(time, datetime.time):
            when = datetime.datetime.combine(date, time)
    if when is not None:
        item.ContributionDateTime = DT(when)
    item.ContributionDescription = "Acquisition equipment of the source image(s)"
    return item
