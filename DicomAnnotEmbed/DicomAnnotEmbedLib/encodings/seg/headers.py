"""SEG header pieces around highdicom: source headers it accepts, the references to every
source image, the true slice measures, the character set. Coordinates: LPS.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence, Tuple

import numpy as np
from pydicom.dataset import Dataset

from ...core.series import ReferenceSeries
from ...dicom import raw
from ...dicom.raw import encode_items


def _reference_all_sources(ds: Dataset, sources: Sequence[Dataset]) -> None:
    """Source Image Sequence and Referenced Series Sequence naming every source image, in the
    layout highdicom gives them (one item per image; one series item per source series).

    Written as bytes when every UID is plain (:func:`_raw_references`): 400 items built as
    datasets and encoded by pydicom took 0.010 s of a 0.22 s LABELMAP export of 200 images."""
    if _raw_references(ds, sources):
        return
    items, by_series = [], {}
    for source in sources:
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        items.append(reference)
        by_series.setdefault(source.SeriesInstanceUID, []).append(reference)
    ds.SourceImageSequence = items
    series_items = []
    for uid, references in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedInstanceSequence = references
        series_items.append(item)
    ds.ReferencedSeriesSequence = series_items


def _raw_references(ds: Dataset, sources: Sequence[Dataset]) -> bool:
    """The two sequences of :func:`_reference_all_sources` as raw elements, the bytes pydicom
    writes for them (test_seg_labelmap_fast.py); False (nothing set) when a UID is not a plain
    ASCII string."""
    items: List[bytes] = []
    by_series: dict = {}
    for source in sources:
        parts = [raw.plain_element(0x00081150, "UI", source.get("SOPClassUID")),
                 raw.plain_element(0x00081155, "UI", source.get("SOPInstanceUID"))]
        series = source.get("SeriesInstanceUID")
        if None in parts or not isinstance(series, str):
            return False
        items.append(raw.item(b"".join(parts)))  # type: ignore[arg-type]
        by_series.setdefault(series, []).append(items[-1])
    series_items = []
    for uid, references in by_series.items():
        series_uid = raw.plain_element(0x0020000E, "UI", uid)
        if series_uid is None:
            return False
        instances = b"".join(references)
        series_items.append(raw.item(raw.element_header(0x0008114A, "SQ", len(instances)) + instances + series_uid))
    _set_raw_sequence(ds, 0x00082112, b"".join(items))
    _set_raw_sequence(ds, 0x00081115, b"".join(series_items))
    return True


_TEXT_VRS = ("SH", "LO", "ST", "LT", "UT", "UC", "PN")


def _declare_character_set(ds: Dataset) -> None:
    """Specific Character Set ISO_IR 192 (UTF-8) when any text (segment labels, descriptions,
    names copied from the source, whatever its character set was) is not ASCII; else the
    default repertoire, or what highdicom copied from the source. pydicom then encodes every
    text as UTF-8 (values read from the source were decoded with the source's set)."""
    def non_ascii(value) -> bool:
        values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
        return any(v is not None and not str(v).isascii() for v in values)

    for element in ds.iterall():
        if element.VR in _TEXT_VRS and element.value not in (None, "") and non_ascii(element.value):
            ds.SpecificCharacterSet = "ISO_IR 192"
            return


def _clean_sources(datasets: Sequence[Dataset], thickness: Optional[float] = None) -> List[Dataset]:
    """Source headers highdicom accepts, changed on a copy (inputs are never changed): absent
    type 2 patient and study attributes are added empty (dicom.values.with_type2_attributes); an empty
    Specific Character Set (seen in dcmqi's test CT) means the default repertoire and is dropped;
    a single-frame image without Slice Thickness (type 2: may be empty) gets ``thickness``, which
    highdicom needs (the SEG's own value is set afterwards by :func:`_set_slice_measures`)."""
    from ...dicom.values import with_type2_attributes

    cleaned = []
    for ds in datasets:
        ds = with_type2_attributes(ds)
        no_charset = "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet
        no_thickness = (thickness is not None and "PerFrameFunctionalGroupsSequence" not in ds
                        and _positive(ds.get("SliceThickness")) is None)
        if no_charset or no_thickness:
            ds = copy.deepcopy(ds)
            if no_charset:
                del ds.SpecificCharacterSet
            if no_thickness:
                ds.SliceThickness = round(float(thickness), 6)
        cleaned.append(ds)
    return cleaned


def _source_value(series: ReferenceSeries, k: int, keyword: str):
    """A Pixel Measures value of slice k's source: per-frame, shared, then top level; None when absent/empty."""
    ref = series.slices[k]
    ds = series.datasets[ref.file_index]
    places = []
    if "PerFrameFunctionalGroupsSequence" in ds and len(ds.PerFrameFunctionalGroupsSequence) > ref.frame:
        places.append(ds.PerFrameFunctionalGroupsSequence[ref.frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        places.append(ds.SharedFunctionalGroupsSequence[0])
    for place in places:
        if "PixelMeasuresSequence" in place and len(place.PixelMeasuresSequence):
            value = place.PixelMeasuresSequence[0].get(keyword)
            if value not in (None, ""):
                return value
    value = ds.get(keyword)
    return None if value in (None, "") else value


def _slice_measures(series: ReferenceSeries) -> Optional[Tuple[float, Optional[float]]]:
    """(Slice Thickness, Spacing Between Slices) of the SEG, from the series geometry (LPS).

    The spacing is the distance of the series' planes along their normal: highdicom takes the
    source's 0018,0088 or, when the source has none, works it out from the planes it is given,
    which is 1.0 for the one-plane template of the fast writer. The thickness is the source's
    when it states one, else that spacing. None outside patient space.
    """
    geometry = series.geometry
    if not geometry.in_patient_space:
        return None
    spacing = None
    if geometry.shape[0] > 1:
        spacing = round(abs(float(np.dot(geometry.ijk_to_lps[:3, 2], geometry.slice_normal))), 6)
    thickness = _positive(_source_value(series, 0, "SliceThickness"))
    if geometry.shape[0] == 1:  # one plane: what the source says, its thickness for want of a spacing
        spacing = _positive(_source_value(series, 0, "SpacingBetweenSlices")) or thickness
    if thickness is None:
        thickness = spacing if spacing is not None else float(geometry.spacing[2])
    return thickness, spacing


def _positive(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and np.isfinite(number) else None


def _set_slice_measures(ds: Dataset, measures: Optional[Tuple[float, Optional[float]]]) -> None:
    """Write the true Slice Thickness / Spacing Between Slices into the shared Pixel Measures."""
    from pydicom.valuerep import format_number_as_ds

    if measures is None or "SharedFunctionalGroupsSequence" not in ds:
        return
    shared = ds.SharedFunctionalGroupsSequence[0]
    if "PixelMeasuresSequence" not in shared:
        return
    item = shared.PixelMeasuresSequence[0]
    thickness, spacing = measures
    item.SliceThickness = format_number_as_ds(float(thickness))
    if spacing is not None:
        item.SpacingBetweenSlices = format_number_as_ds(float(spacing))
    elif "SpacingBetweenSlices" in item:
        del item.SpacingBetweenSlices


# --- the header's large sequences as bytes ----------------------------------------------------------
# pydicom writes ~13 us per element and re-runs its ambiguous-VR pass on every nested item; the
# Segment Sequence (100 segments) and the two lists of the 200 source images are ~2,000 of the
# ~2,300 elements of a LABELMAP header: 0.033 s of the 0.040 s save_as (bench_seg.py notes).

#: Sequences of the SEG header encoded by :func:`raw.encode_items` (when every value is plain).
BULK_SEQUENCES = (0x00081115, 0x00082112, 0x00620002)  # Referenced Series, Source Image, Segment
#: Character sets in which an ASCII text encodes to its ASCII bytes, as pydicom writes it.
_ASCII_CHARSETS = (None, "", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192")
def _set_raw_sequence(ds: Dataset, tag: int, value: bytes) -> None:
    """Store an encoded sequence value; pydicom writes it as it is (see :func:`pre_encode_bulk_sequences`)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds[tag] = RawDataElement(Tag(tag), "SQ", len(value), value, 0, False, True)


def pre_encode_bulk_sequences(ds: Dataset) -> None:
    """Put the :data:`BULK_SEQUENCES` of a header that pydicom is about to write as bytes
    (:func:`encode_items`), and prepare ``ds`` so that pydicom writes those bytes as they are.

    pydicom's writer first corrects ambiguous VRs through the whole dataset, which would decode
    the bytes back into items; it skips that pass for a dataset whose original encoding is the
    one written (explicit VR little endian, the same character set). That pass is done here on
    everything else: the ambiguous top-level elements and the items of the other sequences (with
    the item and the header as the ancestors that resolve them). No-op for a character set whose
    ASCII text is not plain ASCII bytes (test_seg_labelmap_fast.py compares the bytes written)."""
    from pydicom.charset import convert_encodings, default_encoding
    from pydicom.filewriter import correct_ambiguous_vr, correct_ambiguous_vr_element
    from pydicom.valuerep import AMBIGUOUS_VR

    charset = ds.get("SpecificCharacterSet")
    if charset not in _ASCII_CHARSETS:
        return
    for tag in BULK_SEQUENCES:
        if tag in ds and not getattr(ds.get_item(tag), "is_raw", False):  # (the references may be bytes already)
            value = encode_items(ds[tag].value)
            if value is not None:
                _set_raw_sequence(ds, tag, value)
    for element in ds.elements():
        if element.VR == "SQ" and not getattr(element, "is_raw", False):
            for item in ds[element.tag].value:
                correct_ambiguous_vr(item, True, [item, ds])
        elif element.VR in AMBIGUOUS_VR:
            correct_ambiguous_vr_element(ds[element.tag], ds, True, [ds])
    ds.set_original_encoding(False, True, convert_encodings(charset) if charset else default_encoding)
