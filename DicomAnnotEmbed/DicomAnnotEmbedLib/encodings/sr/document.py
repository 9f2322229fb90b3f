"""Assembling the TID 1500 document around its measurement groups: the report's skeleton,
the image library and the evidence, and the marks that let pydicom write it without its
ambiguous-VR pass (``engine="fast"``, equal element by element to highdicom's own document:
``Testing/Python/encodings/test_sr_speed_equivalence.py``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import pydicom
from pydicom.dataset import Dataset

from ...dicom.header_items import new_dataset

log = logging.getLogger(__name__)

def mark_explicit(document: Dataset, content: bool = True) -> None:
    """Mark the document's datasets made here as already in explicit VR little endian, in the
    character set they are in, so that pydicom's writer skips its ambiguous-VR pass: it runs it
    on every dataset it writes whose encoding "changes", over all that dataset's items, for each
    level of nesting (1.2 of the 1.7 s CPU writing 75,000 elements took). Not done when any
    element has an ambiguous VR (e.g. "US or SS") or was read from a file (raw, maybe implicit
    VR): those datasets keep the pass. The file is the same (test_sr_speed_equivalence).
    ``content=False``: the Content Sequence's items are left as they are (not walked, not marked):
    :func:`writer.write_document` encodes them itself, each item as pydicom would."""
    from pydicom.dataelem import DataElement
    from pydicom.valuerep import AMBIGUOUS_VR

    marked = []

    def walk(ds: Dataset) -> bool:
        # (a dataset marked before is one of ours too: the image library both reports of an export share)
        ok = ds.original_encoding == (None, None) or ds.__dict__.get("_dae_explicit", False)
        for element in ds._dict.values():
            if type(element) is not DataElement or element.VR in AMBIGUOUS_VR:
                ok = False
            elif element.VR == "SQ" and (content or element.tag != 0x0040A730 or ds is not document):
                for item in element.value:
                    ok = walk(item) and ok
        if ok:
            marked.append(ds)
        return ok

    walk(document)
    if document.file_meta.get("TransferSyntaxUID") != pydicom.uid.ExplicitVRLittleEndian:
        return
    for ds in marked:  # (an unmarked dataset's pass covers its items: the marked ones are still checked once)
        ds.set_original_encoding(False, True, ds._character_set)
        ds.__dict__["_dae_explicit"] = True


def report_skeleton(root: Dataset, evidence: Sequence[Dataset]) -> Dataset:
    """The report's root container (:func:`template.report`) with only its first content items
    (observer context, procedure, language), for highdicom's SR constructor when it builds the
    header of the fast engine's document (sources :mod:`.template` does not describe): it
    deep-copies, converts and searches the content it is given (1.6 s CPU for 100 segments), and
    what it makes of it (the document's Evidence sequences, the root container's elements) does
    not depend on the measurement groups but through a check: that every instance they reference
    is evidence, done here (ValueError)."""
    from .template import check_evidence

    check_evidence(root, evidence)
    skeleton = Dataset()
    for element in root:
        if element.keyword != "ContentSequence":
            skeleton.add(element)
    skeleton.ContentSequence = [item for item in root.ContentSequence if item.ValueType != "CONTAINER"]
    return skeleton


def image_library(datasets: Sequence[Dataset], engine: str = "fast") -> Optional[List[Dataset]]:
    """The TID 1600 Image Library entries of ``datasets``, or None (with a warning) when the images
    cannot be described as highdicom describes them (e.g. an empty Slice Thickness).

    ``engine="fast"`` (:func:`_image_library`): the entry of one image per pattern is built
    (:func:`template.image_library`; by highdicom for SOP classes it does not list) and the others
    are copies of it with their own SOP Instance UID and position; ``"highdicom"``: highdicom
    builds every entry (Testing/Python/encodings/test_sr_speed_equivalence.py compares the two).
    The two reports of one export share the entries: built once, written twice.
    """
    from . import template

    try:
        headers = [_library_header(ds) for ds in datasets]
        if engine == "fast":
            known = all(str(ds.get("SOPClassUID", "")) in template.IMAGE_MODALITIES for ds in headers)
            return _image_library(headers, template.image_library if known else _highdicom_library)
        return _highdicom_library(headers)
    except (ValueError, TypeError, AttributeError) as error:
        # e.g. an empty Slice Thickness (type 2 in CT): the report stands without the library
        log.warning("the SR has no image library: highdicom cannot describe the images (%s)", error)
        return None


def _highdicom_library(headers: Sequence[Dataset]) -> List[Dataset]:
    import highdicom as hd

    return list(hd.sr.ImageLibrary(headers))


def insert_image_library(document: Dataset, library: List[Dataset]) -> None:
    """Put the image library entries (:func:`image_library`) where MeasurementReport puts them
    (after the procedure, before the first container).

    Not given to MeasurementReport: the SR's constructor deep-copies, searches and converts its
    whole content, and 17 items for each of 200 images made that 6 of the 8 s an export took
    (Testing/benchmarks/bench_csv.py notes). The images are evidence all the same.
    """
    items = document.ContentSequence
    names = [item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else "" for item in items]
    at = names.index("126010") if "126010" in names else len(items)  # before Imaging Measurements
    document.ContentSequence = list(items[:at]) + library + list(items[at:])


#: What a TID 1602/1604 image library entry holds of an image besides its SOP Instance UID and position.
_LIBRARY_PATTERN = ("SOPClassUID", "Modality", "FrameOfReferenceUID", "Rows", "Columns", "PixelSpacing",
                    "SliceThickness", "ImageOrientationPatient", "SpacingBetweenSlices", "PatientOrientation",
                    "ImagerPixelSpacing")


def _image_library(headers: Sequence[Dataset], describe) -> List[Dataset]:
    """The ImageLibrary of ``headers``, built faster: ``describe`` (highdicom's or
    :func:`template.image_library`) describes the first image of each pattern
    (:data:`_LIBRARY_PATTERN`, and the types of the position's values) and every other image's entry is a copy of its pattern's with its own Referenced SOP Instance UID and
    Image Position (Patient) X, Y, Z (formatted as highdicom's NumContentItem does). highdicom
    builds, and searches, 17 content items an image: 200 images took ~14 s of a profiled export."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import tag_for_keyword
    from pydicom.tag import Tag
    from pydicom.valuerep import DS

    from .template import put_element

    pattern_tags = [(keyword, tag_for_keyword(keyword)) for keyword in _LIBRARY_PATTERN]

    def pattern(ds: Dataset):
        values = []
        for keyword, tag in pattern_tags:
            element = ds._dict.get(tag)
            if type(element) is RawDataElement and element.value is not None:  # (None: a deferred read)
                # as read from the file: the same bytes make the same value, and converting them
                # (0.02 s CPU for 200 headers) is left to the representative (bytes that differ but
                # convert to the same value only make one more representative)
                values.append((element.VR, element.value, element.is_implicit_VR, element.is_little_endian))
                continue
            value = ds.get(keyword, _LIBRARY_PATTERN)
            values.append((type(value).__name__, str(value) if not isinstance(value, (list, tuple)) and
                           type(value).__name__ != "MultiValue" else tuple(map(repr, value))))
        position = ds.get("ImagePositionPatient")
        values.append(tuple(type(v).__name__ for v in position) if position is not None else None)
        return tuple(values)

    keys = [pattern(ds) for ds in headers]
    first: Dict[tuple, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    representatives = [headers[index] for index in first.values()]
    library = describe(representatives)
    container = library[-1]
    entries, group_of = {}, {}
    for group in container.ContentSequence:
        for item in group.ContentSequence:
            if item.ValueType == "IMAGE":
                uid = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                entries[uid] = item
                group_of[uid] = group
    position_codes = {"110901": 0, "110902": 1, "110903": 2}  # Image Position (Patient) X, Y, Z
    templates, contents = {}, {}
    for key, index in first.items():
        uid = str(headers[index].SOPInstanceUID)
        group = group_of[uid]
        templates[key] = entries[uid], id(group)
        contents.setdefault(id(group), (group, [item for item in group.ContentSequence if item.ValueType != "IMAGE"]))
    # each template's content items, with the axis of those that are a position's X, Y or Z
    plans = {id(entry): [(item, position_codes.get(item.ConceptNameCodeSequence[0].CodeValue)
                          if item.ValueType == "NUM" else None) for item in entry.ContentSequence]
             for entry, _ in templates.values()}
    sop_uid, content_tag, sequence_tag = Tag(0x00081155), Tag(0x0040A730), Tag(0x00081199)
    numeric, floating, measured_tag = Tag(0x0040A30A), Tag(0x0040A161), Tag(0x0040A300)
    for ds, key in zip(headers, keys):
        template, group_id = templates[key]
        items = contents[group_id][1]
        if ds is headers[first[key]]:
            items.append(template)
            continue
        # the entry, its SOP reference and the position's X, Y, Z items are the template's with
        # the elements that differ replaced; the other content items are the template's, shared
        # (written, not changed)
        entry = _shared_copy(template)
        reference = _shared_copy(template.ReferencedSOPSequence[0])
        put_element(reference, sop_uid, "UI", ds.SOPInstanceUID)
        put_element(entry, sequence_tag, "SQ", pydicom.Sequence([reference]))
        content = []
        position = ds.ImagePositionPatient
        for item, axis in plans[id(template)]:
            if axis is not None:
                item = _shared_copy(item)
                value = position[axis]
                measured = _shared_copy(item.MeasuredValueSequence[0])
                put_element(measured, numeric, "DS", DS(value, auto_format=True))
                if isinstance(value, float):
                    put_element(measured, floating, "FD", value)
                put_element(item, measured_tag, "SQ", pydicom.Sequence([measured]))
            content.append(item)
        put_element(entry, content_tag, "SQ", pydicom.Sequence(content))
        items.append(entry)
    for group, items in contents.values():
        # highdicom's ContentItem would re-check every item (the copies are plain Datasets)
        Dataset.__setattr__(group, "ContentSequence", pydicom.Sequence(items))
    return library


def _shared_copy(ds: Dataset) -> Dataset:
    """A plain Dataset holding the elements of ``ds`` (a Dataset, or highdicom's content item), the
    same element objects: the caller replaces the elements that differ (``put_element``) and
    changes none in place. Copying each element, and its sequence, took 0.075 s CPU for the
    image library's 199 copied entries (case C)."""
    copy = new_dataset()
    copy._dict.update(ds._dict)
    return copy


def _library_header(ds: Dataset) -> Dataset:
    """The header as highdicom's image library reads it: an enhanced multi-frame image keeps its
    Pixel Spacing, Slice Thickness, Image Orientation and Position (of the first frame) in its
    functional groups, which are copied to the top level (of a shallow copy; ``ds`` is unchanged)."""
    if "PixelSpacing" in ds or "SharedFunctionalGroupsSequence" not in ds and "PerFrameFunctionalGroupsSequence" not in ds:
        return ds
    groups = []
    for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        sequence = ds.get(keyword)
        if sequence:
            groups.append(sequence[0])
    flat = Dataset()
    flat.update(ds)
    for sequence, attributes in (("PixelMeasuresSequence", ("PixelSpacing", "SliceThickness")),
                                 ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
                                 ("PlanePositionSequence", ("ImagePositionPatient",))):
        for attribute in attributes:
            for group in groups:
                items = group.get(sequence)
                if items and attribute in items[0] and items[0].get(attribute) not in (None, ""):
                    setattr(flat, attribute, items[0].get(attribute))
                    break
    return flat


def evidence(datasets: Sequence[Dataset]) -> List[Dataset]:
    """The source headers as evidence; the first one (whose patient and study attributes the SR
    copies) gets the Type 2 attributes it lacks, empty, as highdicom reads them unconditionally."""
    from ...dicom.values import with_type2_attributes

    return [with_type2_attributes(datasets[0])] + list(datasets[1:])
