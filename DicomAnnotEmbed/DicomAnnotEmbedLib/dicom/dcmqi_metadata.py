"""dcmqi segmentation metadata: the JSON that ``itkimage2segimage`` reads and
``segimage2itkimage`` writes (dcmqi's "seg-schema"), also produced by lidc2dicom.

The file holds series-level fields (``ContentCreatorName``, ``SeriesDescription``, ...) and
``segmentAttributes``: a list of lists. The outer list has one item per label-map file given
to ``itkimage2segimage`` (in command-line order); each inner list describes the labels of that
file by ``labelID``. Here the position in the outer list is called the *layer*: it matches the
layers of :class:`~.model.Segmentation` when each layer is written to its own label-map file.

Segment attributes that the model has no field for are kept in ``Segment.attributes`` under
the dcmqi names (:data:`SEGMENT_ATTRIBUTE_KEYS`):

``"TrackingIdentifier"``, ``"TrackingUniqueIdentifier"``
    DICOM Tracking ID (0062,0020) and Tracking UID (0062,0021); each requires the other.
``"SegmentAlgorithmType"``
    ``MANUAL`` (written when absent), ``SEMIAUTOMATIC`` or ``AUTOMATIC``.
``"SegmentAlgorithmName"``
    required by DICOM (and by dcmqi) unless the type is ``MANUAL``.

Colours: dcmqi keeps ``recommendedDisplayRGBValue`` (0-255) in the JSON and converts it to the
DICOM RecommendedDisplayCIELabValue itself; :func:`.colors.rgb_to_dicom_lab` and
:func:`.colors.dicom_lab_to_rgb` do that conversion for our own SEG writer and reader.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..core.errors import InputError
from ..core.inputs import read_json_file
from ..core.model import DEFAULT_TERMINOLOGY, Code, Segment, Segmentation, Terminology
from ..core.outputs import prepare_output_file, write_atomic
from .colors import dicom_lab_to_rgb

log = logging.getLogger(__name__)

#: ``Segment.attributes`` keys read and written here (the dcmqi JSON names).
TRACKING_ID = "TrackingIdentifier"
TRACKING_UID = "TrackingUniqueIdentifier"
ALGORITHM_TYPE = "SegmentAlgorithmType"
ALGORITHM_NAME = "SegmentAlgorithmName"
SEGMENT_ATTRIBUTE_KEYS = (TRACKING_ID, TRACKING_UID, ALGORITHM_TYPE, ALGORITHM_NAME)

#: Enumerated values of Segment Algorithm Type (0062,0008).
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")

#: Series-level fields of the seg-schema, with their DICOM value representation.
SERIES_FIELDS: dict[str, str] = {
    "ContentCreatorName": "PN",
    "ClinicalTrialSeriesID": "LO",
    "ClinicalTrialTimePointID": "LO",
    "ClinicalTrialCoordinatingCenterName": "LO",
    "SeriesDescription": "LO",
    "SeriesNumber": "IS",
    "InstanceNumber": "IS",
    "BodyPartExamined": "CS",
    "ContentLabel": "CS",
    "ContentDescription": "LO",
}

# Terminology field -> dcmqi key, in the order dcmqi's examples use.
_CODE_KEYS = (
    ("category", "SegmentedPropertyCategoryCodeSequence"),
    ("type", "SegmentedPropertyTypeCodeSequence"),
    ("type_modifier", "SegmentedPropertyTypeModifierCodeSequence"),
    ("anatomic_region", "AnatomicRegionSequence"),
    ("anatomic_region_modifier", "AnatomicRegionModifierSequence"),
)
_REQUIRED_CODES = ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence")
_SEGMENT_KEYS = {"labelID", "SegmentLabel", "SegmentDescription", ALGORITHM_TYPE, ALGORITHM_NAME,
                 TRACKING_ID, TRACKING_UID, "recommendedDisplayRGBValue", "RecommendedDisplayCIELabValue",
                 *(key for _, key in _CODE_KEYS)}
_TOP_KEYS = {"@schema", "segmentAttributes", "segmentAttributesFileMapping", *SERIES_FIELDS}
_MAX_LENGTH = {"PN": 64, "LO": 64, "SH": 64, "CS": 16, "IS": 12, "UI": 64}  # as dcmqi's common-schema
_CS_CHARS = re.compile(r"^[A-Z0-9 _]*$")
_IS_VALUE = re.compile(r"^ *[+-]?[0-9]+ *$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
#: Largest label value dcmqi can read: it loads label maps as signed 16-bit images.
DCMQI_MAX_LABEL = 32767

SCHEMA_URL = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/seg-schema.json#"


@dataclass
class SegmentEntry:
    """One item of dcmqi's ``segmentAttributes``; field names are the JSON keys.

    Attributes:
        labelID: label value in the label-map file (0 only for the background entry that
            ``segimage2itkimage`` writes for label-map SEGs; it describes no segment).
        terminology: the coded meaning (category, type, their modifiers, anatomic region).
        layer: index of the inner list (= label-map file) the entry came from; None in an
            entry built by hand means "any layer" to :func:`apply_metadata`.
        SegmentLabel, SegmentDescription: None when absent from the file.
        SegmentAlgorithmType: one of :data:`ALGORITHM_TYPES`.
        SegmentAlgorithmName, TrackingIdentifier, TrackingUniqueIdentifier: None when absent.
        recommendedDisplayRGBValue: (r, g, b) in 0-255, or None.
        RecommendedDisplayCIELabValue: DICOM-encoded CIELab (0-65535 each), or None; dcmqi
            ignores it, it is only used here when the RGB value is absent.
    """

    labelID: int
    terminology: Terminology
    layer: int | None = 0
    SegmentLabel: str | None = None
    SegmentDescription: str | None = None
    SegmentAlgorithmType: str = "MANUAL"
    SegmentAlgorithmName: str | None = None
    TrackingIdentifier: str | None = None
    TrackingUniqueIdentifier: str | None = None
    recommendedDisplayRGBValue: tuple[int, int, int] | None = None
    RecommendedDisplayCIELabValue: tuple[int, int, int] | None = None

    @property
    def is_background(self) -> bool:
        """True for the labelID 0 entry (background of a label-map SEG)."""
        return self.labelID == 0

    @property
    def color(self) -> tuple[float, float, float] | None:
        """Colour as RGB in [0, 1]: from the RGB value, else from the CIELab value, else None."""
        if self.recommendedDisplayRGBValue is not None:
            return tuple(c / 255.0 for c in self.recommendedDisplayRGBValue)
        if self.RecommendedDisplayCIELabValue is not None:
            return dicom_lab_to_rgb(self.RecommendedDisplayCIELabValue)
        return None

    def attributes(self) -> dict[str, str]:
        """The values to keep in ``Segment.attributes`` (only those present and non-empty)."""
        values = {TRACKING_ID: self.TrackingIdentifier, TRACKING_UID: self.TrackingUniqueIdentifier,
                  ALGORITHM_TYPE: self.SegmentAlgorithmType, ALGORITHM_NAME: self.SegmentAlgorithmName}
        return {key: value for key, value in values.items() if value}

    def to_json(self) -> dict[str, Any]:
        """The dict that dcmqi expects for this entry (absent values are left out)."""
        item: dict[str, Any] = {"labelID": int(self.labelID)}
        for key in ("SegmentLabel", "SegmentDescription"):
            if getattr(self, key):
                item[key] = getattr(self, key)
        for attr, key in _CODE_KEYS:
            code = getattr(self.terminology, attr)
            if code is not None:
                item[key] = {"CodeValue": code.value, "CodingSchemeDesignator": code.scheme,
                             "CodeMeaning": code.meaning}
        item[ALGORITHM_TYPE] = self.SegmentAlgorithmType
        for key in (ALGORITHM_NAME, TRACKING_ID, TRACKING_UID):
            if getattr(self, key):
                item[key] = getattr(self, key)
        if self.recommendedDisplayRGBValue is not None:
            item["recommendedDisplayRGBValue"] = [int(c) for c in self.recommendedDisplayRGBValue]
        elif self.RecommendedDisplayCIELabValue is not None:
            item["RecommendedDisplayCIELabValue"] = [int(c) for c in self.RecommendedDisplayCIELabValue]
        return item

    @classmethod
    def from_segment(cls, segment: Segment, layer: int | None = None) -> SegmentEntry:
        """The entry describing a model segment (label value, name, colour, terminology,
        description and the :data:`SEGMENT_ATTRIBUTE_KEYS` attributes).

        A segment without terminology gets :data:`~.model.DEFAULT_TERMINOLOGY` (with a
        warning): dcmqi requires a category and a type. Nothing is validated here;
        :func:`write_dcmqi_metadata` validates what it writes.
        """
        terminology = segment.terminology
        if terminology is None:
            log.warning("segment %r has no terminology; dcmqi metadata gives it %s", segment.name,
                        DEFAULT_TERMINOLOGY.short_text())
            terminology = DEFAULT_TERMINOLOGY
        attributes = segment.attributes or {}
        return cls(labelID=int(segment.label_value), terminology=terminology,
                   layer=segment.layer if layer is None else layer,
                   SegmentLabel=segment.name or None, SegmentDescription=segment.description or None,
                   SegmentAlgorithmType=attributes.get(ALGORITHM_TYPE) or "MANUAL",
                   SegmentAlgorithmName=attributes.get(ALGORITHM_NAME) or None,
                   TrackingIdentifier=attributes.get(TRACKING_ID) or None,
                   TrackingUniqueIdentifier=attributes.get(TRACKING_UID) or None,
                   recommendedDisplayRGBValue=segment.color_rgb8)


@dataclass
class SegMetadata:
    """A dcmqi segmentation metadata file.

    Series-level fields are None when absent (dcmqi then uses its own defaults); the field
    names are the JSON keys (see :data:`SERIES_FIELDS`).

    Attributes:
        segments: every entry of ``segmentAttributes``, in file order; ``entry.layer`` is the
            index of its inner list.
        segmentAttributesFileMapping: file names given for the inner lists, or None.
        source: the file it was read from (for messages), or None.
    """

    segments: list[SegmentEntry] = field(default_factory=list)
    ContentCreatorName: str | None = None
    ClinicalTrialSeriesID: str | None = None
    ClinicalTrialTimePointID: str | None = None
    ClinicalTrialCoordinatingCenterName: str | None = None
    SeriesDescription: str | None = None
    SeriesNumber: str | None = None
    InstanceNumber: str | None = None
    BodyPartExamined: str | None = None
    ContentLabel: str | None = None
    ContentDescription: str | None = None
    segmentAttributesFileMapping: list[str] | None = None
    source: str | None = None

    @property
    def layer_count(self) -> int:
        """Number of inner lists (label-map files)."""
        layers = [e.layer for e in self.segments if e.layer is not None]
        return max(layers) + 1 if layers else (1 if self.segments else 0)

    def series_fields(self) -> dict[str, str]:
        """The series-level fields present, e.g. to pass on as ``**series_fields``."""
        return {name: getattr(self, name) for name in SERIES_FIELDS if getattr(self, name) is not None}

    def entry(self, label_id: int, layer: int | None = None) -> SegmentEntry | None:
        """The entry for a label value (in ``layer`` when given), or None."""
        for e in self.segments:
            if e.labelID == label_id and (layer is None or e.layer is None or e.layer == layer):
                return e
        return None

    def to_json(self) -> dict[str, Any]:
        """The JSON document (a dict) in dcmqi's layout.

        Raises:
            InputError: the layers of the entries are not 0..N-1, each with an entry.
        """
        data: dict[str, Any] = {"@schema": SCHEMA_URL}
        data.update(self.series_fields())
        count = self.layer_count
        groups: list[list[dict[str, Any]]] = [[] for _ in range(count)]
        for e in self.segments:
            groups[0 if e.layer is None else e.layer].append(e.to_json())
        empty = [n for n, group in enumerate(groups) if not group]
        if empty:
            raise InputError(f"segmentAttributes: layer(s) {empty} have no segment; every label-map file "
                             "needs at least one", self.source)
        data["segmentAttributes"] = groups
        if self.segmentAttributesFileMapping is not None:
            data["segmentAttributesFileMapping"] = list(self.segmentAttributesFileMapping)
        return data


# --- reading --------------------------------------------------------------------------------
def read_dcmqi_metadata(source: str | os.PathLike | Mapping[str, Any]) -> SegMetadata:
    """Read and check a dcmqi segmentation metadata JSON file (or its already parsed dict).

    Checks what dcmqi's seg-schema requires (a non-empty ``segmentAttributes`` list of
    non-empty lists, ``labelID`` integers unique within a list, category and type codes with
    CodeValue, CodingSchemeDesignator and CodeMeaning, ``SegmentAlgorithmType`` from
    :data:`ALGORITHM_TYPES`, RGB values 0-255, DICOM lengths of the text fields, UIDs).
    Keys unknown to the schema, a non-manual algorithm without a name and a Tracking ID
    without a Tracking UID (or the reverse) are only warned about: such files come from
    other tools and still carry usable names, colours and codes.

    Raises:
        InputError: the file is missing, is not JSON, or breaks the schema; the message names
            the file (``error.path``) and where in it the problem is.
    """
    if isinstance(source, Mapping):
        return _parse(source, None, strict=False)
    path = Path(source)
    data = read_json_file(path, "a dcmqi metadata JSON file")
    return _parse(data, str(path), strict=False)


def _parse(data: Any, source: str | None, strict: bool) -> SegMetadata:
    """Validate a parsed document; ``strict`` turns the DICOM conditions that are only warned
    about when reading (algorithm name, tracking pair, unknown keys) into errors."""

    def fail(message: str) -> InputError:
        return InputError(message, source)

    def lenient(message: str) -> None:
        if strict:
            raise fail(message)
        log.warning("%s%s", f"{source}: " if source else "", message)

    if not isinstance(data, Mapping):
        raise fail(f"expected a JSON object with 'segmentAttributes', got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        lenient(f"keys unknown to dcmqi's seg-schema are ignored: {', '.join(unknown)}")
    series = {name: _series_value(data[name], name, fail) for name in SERIES_FIELDS if name in data}

    groups = data.get("segmentAttributes")
    if groups is None:
        raise fail("'segmentAttributes' is missing; it must list the segments of each label-map file")
    if not isinstance(groups, list) or not groups:
        raise fail("'segmentAttributes' must be a non-empty list of lists (one per label-map file)")
    entries: list[SegmentEntry] = []
    for layer, group in enumerate(groups):
        if not isinstance(group, list) or not group:
            raise fail(f"segmentAttributes[{layer}] must be a non-empty list of segments "
                       f"(one list per label-map file), got {_show(group)}")
        seen: dict[int, int] = {}
        for n, item in enumerate(group):
            entry = _parse_entry(item, f"segmentAttributes[{layer}][{n}]", layer, fail, lenient)
            if entry.labelID in seen:
                raise fail(f"segmentAttributes[{layer}][{n}]: duplicate labelID {entry.labelID} "
                           f"(also segmentAttributes[{layer}][{seen[entry.labelID]}])")
            seen[entry.labelID] = n
            entries.append(entry)

    mapping = data.get("segmentAttributesFileMapping")
    if mapping is not None:
        if not isinstance(mapping, list) or not all(isinstance(m, str) and m for m in mapping):
            raise fail("'segmentAttributesFileMapping' must be a list of file names")
        if len(mapping) != len(groups):
            raise fail(f"'segmentAttributesFileMapping' names {len(mapping)} files but 'segmentAttributes' "
                       f"has {len(groups)} lists")
    return SegMetadata(segments=entries, segmentAttributesFileMapping=mapping, source=source, **series)


def _parse_entry(item: Any, where: str, layer: int, fail, lenient) -> SegmentEntry:
    if not isinstance(item, Mapping):
        raise fail(f"{where}: a segment must be a JSON object, got {_show(item)}")
    if "labelID" not in item:
        raise fail(f"{where}: segment has no labelID")
    label = item["labelID"]
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 65535:
        raise fail(f"{where}: labelID must be an integer 0-65535, got {_show(label)}")
    where = f"{where} (labelID {label})"
    unknown = sorted(set(item) - _SEGMENT_KEYS)
    if unknown:
        lenient(f"{where}: keys unknown to dcmqi's seg-schema are ignored: {', '.join(unknown)}")

    codes: dict[str, Code | None] = {}
    for attr, key in _CODE_KEYS:
        if key in item:
            codes[attr] = _parse_code(item[key], f"{where}: {key}", fail)
        elif key in _REQUIRED_CODES:
            raise fail(f"{where}: {key} is missing (dcmqi requires a category and a type code)")
    if codes.get("anatomic_region_modifier") and not codes.get("anatomic_region"):
        lenient(f"{where}: AnatomicRegionModifierSequence without AnatomicRegionSequence "
                "(dcmqi drops the modifier)")
    terminology = Terminology(**codes)

    def text(key: str, vr: str | None = None) -> str | None:
        if key not in item or item[key] is None:
            return None
        return _check_text(item[key], vr, f"{where}: {key}", fail)

    algorithm = item.get(ALGORITHM_TYPE)
    if algorithm is None:
        raise fail(f"{where}: {ALGORITHM_TYPE} is missing; expected one of {', '.join(ALGORITHM_TYPES)}")
    if algorithm not in ALGORITHM_TYPES:
        raise fail(f"{where}: {ALGORITHM_TYPE} must be one of {', '.join(ALGORITHM_TYPES)}, got {_show(algorithm)}")
    entry = SegmentEntry(
        labelID=label, terminology=terminology, layer=layer,
        SegmentLabel=text("SegmentLabel", "LO"), SegmentDescription=text("SegmentDescription"),
        SegmentAlgorithmType=algorithm, SegmentAlgorithmName=text(ALGORITHM_NAME, "LO"),
        TrackingIdentifier=text(TRACKING_ID), TrackingUniqueIdentifier=text(TRACKING_UID, "UI"),
        recommendedDisplayRGBValue=_triplet(item, "recommendedDisplayRGBValue", 255, where, fail),
        RecommendedDisplayCIELabValue=_triplet(item, "RecommendedDisplayCIELabValue", 65535, where, fail))
    if algorithm != "MANUAL" and not entry.SegmentAlgorithmName:
        lenient(f"{where}: {ALGORITHM_TYPE} {algorithm} needs a {ALGORITHM_NAME} "
                "(DICOM and itkimage2segimage require it unless MANUAL)")
    if bool(entry.TrackingIdentifier) != bool(entry.TrackingUniqueIdentifier):
        lenient(f"{where}: {TRACKING_ID} and {TRACKING_UID} must be given together (DICOM Tracking ID "
                "and Tracking UID each require the other)")
    return entry


def _parse_code(value: Any, where: str, fail) -> Code:
    if not isinstance(value, Mapping):
        raise fail(f"{where} must be an object with CodeValue, CodingSchemeDesignator and CodeMeaning, "
                   f"got {_show(value)}")
    parts = {}
    for key in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"):
        part = value.get(key)
        if part is None or (isinstance(part, str) and not part.strip()):
            raise fail(f"{where} has no {key}")
        parts[key] = _check_text(part, "LO" if key == "CodeMeaning" else "SH", f"{where}.{key}", fail)
    unknown = sorted(set(value) - set(parts))
    if unknown:
        raise fail(f"{where}: unknown keys {', '.join(unknown)} (a code has CodeValue, CodingSchemeDesignator "
                   "and CodeMeaning)")
    return Code(parts["CodeValue"], parts["CodingSchemeDesignator"], parts["CodeMeaning"])


def _triplet(item: Mapping, key: str, top: int, where: str, fail) -> tuple[int, int, int] | None:
    if key not in item:
        return None
    value = item[key]
    ok = isinstance(value, list) and len(value) == 3 and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer() and 0 <= v <= top
        for v in value)
    if not ok:
        raise fail(f"{where}: {key} must be 3 integers 0-{top}, got {_show(value)}")
    return tuple(int(v) for v in value)


def _check_text(value: Any, vr: str | None, where: str, fail) -> str:
    """A string field: right type, DICOM length and characters for its VR."""
    if not isinstance(value, str):
        raise fail(f"{where} must be a string, got {_show(value)}")
    if vr is None:
        return value
    limit = _MAX_LENGTH[vr]
    if len(value) > limit:
        raise fail(f"{where} is {len(value)} characters long; DICOM {vr} allows {limit}: {value[:80]!r}")
    if vr != "UI" and ("\\" in value or any(ord(c) < 32 for c in value)):
        raise fail(f"{where} contains a backslash or a control character: {value!r}")
    if vr == "CS" and not _CS_CHARS.match(value):
        raise fail(f"{where} must be upper-case letters, digits, space or underscore (DICOM CS): {value!r}")
    if vr == "IS" and value.strip() and not _IS_VALUE.match(value):
        raise fail(f"{where} must be an integer number (DICOM IS): {value!r}")
    if vr == "UI" and value and not _UID.match(value):
        raise fail(f"{where} is not a DICOM UID (digits and dots, no leading zeros): {value!r}")
    return value


def _series_value(value: Any, name: str, fail) -> str:
    vr = SERIES_FIELDS[name]
    if vr == "IS" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return _check_text(value, vr, name, fail)


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- writing --------------------------------------------------------------------------------
def write_dcmqi_metadata(segments: Segmentation | Iterable[Segment], path: str | os.PathLike, *,
                         file_mapping: Sequence[str] | None = None, **series_fields: str | int
                         ) -> SegMetadata:
    """Write a dcmqi metadata JSON describing ``segments`` for ``itkimage2segimage``.

    Each segment becomes an entry with labelID = its label value, SegmentLabel = its name,
    recommendedDisplayRGBValue = its colour, its terminology (DEFAULT_TERMINOLOGY, with a
    warning, when it has none), its description, and the :data:`SEGMENT_ATTRIBUTE_KEYS`
    found in ``segment.attributes`` (SegmentAlgorithmType defaults to MANUAL).

    The model's layers become the inner lists of ``segmentAttributes`` in ascending layer
    order; layers without a described segment are skipped, so inner list n describes the
    n-th distinct layer. Pass one label-map file per inner list to ``itkimage2segimage``,
    in that order (``entry.layer`` of the returned entries is that file index).

    Args:
        segments: a Segmentation or its segments (label values 1-32767: dcmqi reads label
            maps as signed 16-bit images).
        path: the JSON file to write (replaced atomically).
        file_mapping: optional label-map file names, one per inner list, written as
            ``segmentAttributesFileMapping`` (dcmqi then orders its inputs by these names).
        **series_fields: series-level fields from :data:`SERIES_FIELDS` (e.g.
            ``SeriesDescription="Liver"``, ``SeriesNumber=300``); those not given are left to
            dcmqi's defaults. Give ``ClinicalTrialCoordinatingCenterName``: without it dcmqi
            leaves out that Type 2 attribute of the Clinical Trial Series module it writes,
            and dciodvfy reports the SEG as invalid.

    Returns:
        The metadata written.

    Raises:
        TypeError: a keyword is not a series-level field.
        InputError: a value dcmqi or DICOM would reject (name longer than 64 characters,
            non-manual algorithm without a name, Tracking ID without UID, bad UID, label
            value above 32767, two segments with the same layer and label value ...).
        OutputError: the file cannot be written.
    """
    unknown = sorted(set(series_fields) - set(SERIES_FIELDS))
    if unknown:
        raise TypeError(f"unknown dcmqi series field(s) {', '.join(unknown)}; expected some of "
                        f"{', '.join(SERIES_FIELDS)}")
    segment_list = list(segments.segments if isinstance(segments, Segmentation) else segments)
    if not segment_list:
        raise InputError("no segments to describe in dcmqi metadata", path)
    layer_index = {layer: n for n, layer in enumerate(sorted({s.layer for s in segment_list}))}

    def fail(message: str) -> InputError:
        return InputError(message, path)

    def refuse(message: str) -> None:
        raise fail(message)

    entries = []
    owner: dict[tuple[int, int], str] = {}
    for s in segment_list:
        if s.label_value > DCMQI_MAX_LABEL:
            raise fail(f"segment {s.name!r}: label value {s.label_value} is above {DCMQI_MAX_LABEL}, "
                       "the largest that dcmqi reads from a label map")
        if (s.layer, s.label_value) in owner:
            raise fail(f"segments {owner[s.layer, s.label_value]!r} and {s.name!r} both have label value "
                       f"{s.label_value} in layer {s.layer}")
        owner[s.layer, s.label_value] = s.name
        entry = SegmentEntry.from_segment(s, layer=layer_index[s.layer])
        _parse_entry(entry.to_json(), f"segment {s.name!r}", entry.layer, fail, refuse)
        entries.append(entry)
    metadata = SegMetadata(segments=entries, **{k: str(v) for k, v in series_fields.items()},
                           segmentAttributesFileMapping=list(file_mapping) if file_mapping is not None else None,
                           source=str(path))
    data = metadata.to_json()
    _parse(data, str(path), strict=True)  # the whole document must pass our own reader, strictly
    prepare_output_file(path)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))
    return metadata


# --- applying to the model ------------------------------------------------------------------
def apply_metadata(segmentation: Segmentation,
                   metadata: SegMetadata | str | os.PathLike | Mapping[str, Any]) -> None:
    """Give the segments of ``segmentation`` the names, colours, terminology, descriptions and
    attributes (:data:`SEGMENT_ATTRIBUTE_KEYS`) of the matching metadata entries.

    An entry matches the segment with its labelID as label value, in the layer of the entry
    (its inner-list index; any layer when ``entry.layer`` is None). A name or description
    that is absent or empty in the entry keeps the segment's own; a colour absent keeps the
    segment's colour. The labelID 0 (background) entry is ignored. Segments no entry
    describes keep everything and are listed in one logged warning; so are entries that
    match no segment.

    Args:
        metadata: a :class:`SegMetadata`, or a file or dict for :func:`read_dcmqi_metadata`.

    Raises:
        InputError: the metadata cannot be read, or an entry without a layer matches segments
            in several layers, or two entries match the same segment.
    """
    if not isinstance(metadata, SegMetadata):
        metadata = read_dcmqi_metadata(metadata)
    described: dict[str, SegmentEntry] = {}
    unmatched: list[SegmentEntry] = []
    for entry in metadata.segments:
        if entry.is_background:
            continue
        matches = [s for s in segmentation.segments if s.label_value == entry.labelID
                   and (entry.layer is None or s.layer == entry.layer)]
        if len(matches) > 1:
            raise InputError(f"labelID {entry.labelID} matches segments {', '.join(repr(s.name) for s in matches)} "
                             "in several layers; give the entry a layer", metadata.source)
        if not matches:
            unmatched.append(entry)
            continue
        segment = matches[0]
        if segment.id in described:
            raise InputError(f"two entries (labelID {entry.labelID}) describe segment {segment.name!r}",
                             metadata.source)
        described[segment.id] = entry
        if entry.SegmentLabel:
            segment.name = entry.SegmentLabel
        color = entry.color
        if color is not None:
            segment.color = tuple(float(c) for c in color)
        segment.terminology = entry.terminology
        if entry.SegmentDescription:
            segment.description = entry.SegmentDescription
        segment.attributes.update(entry.attributes())
    origin = f" from {metadata.source}" if metadata.source else ""
    rest = [s for s in segmentation.segments if s.id not in described]
    if rest:
        log.warning("dcmqi metadata%s describes no segment with label value %s; %s keep their own name, "
                    "colour and terminology", origin,
                    ", ".join(f"{s.label_value} (layer {s.layer})" for s in rest),
                    ", ".join(repr(s.name) for s in rest))
    if unmatched:
        log.warning("dcmqi metadata%s: no segment has labelID %s; these entries are ignored", origin,
                    ", ".join(f"{e.labelID} (layer {e.layer})" if e.layer is not None else str(e.labelID)
                              for e in unmatched))
