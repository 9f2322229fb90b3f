"""The LIDC-IDRI conversion's conventions (the seed's SEG/SR): each segment is an annotation
``A`` of a nodule ``N``, described "Nodule N - Annotation A", tracked as "Nodule N" with one
Tracking UID per nodule, finding Morphologically Altered Structure / Nodule in Lung.

Used by the SEG export, the SR export and the CSV pipeline alike (``--lidc``)."""
from __future__ import annotations

import logging
import re
from typing import Dict, Optional, Sequence, Tuple

from pydicom.uid import generate_uid

from ..core.model import Code, Segment, Segmentation, Terminology

log = logging.getLogger(__name__)

LIDC_CATEGORY = Code("49755003", "SCT", "Morphologically Altered Structure")
LIDC_NODULE = Code("27925004", "SCT", "Nodule")
LIDC_LUNG = Code("39607008", "SCT", "Lung")


def lidc_terminology() -> Terminology:
    """Morphologically Altered Structure / Nodule, anatomic region Lung."""
    return Terminology(LIDC_CATEGORY, LIDC_NODULE, anatomic_region=LIDC_LUNG)


def apply_lidc_preset(segmentation: Segmentation,
                      nodules: Optional[Dict[str, Tuple[int, str]]] = None) -> Dict[str, Tuple[int, str]]:
    """Give segments the LIDC conversion's conventions (the seed's SEG/SR), in place; use it
    before the SEG export so that the SEG and the SR agree.

    Each segment is an annotation ``A`` of a nodule ``N``: from ``nodules`` ({segment id: (N, A)}),
    else from its name or description ("Nodule 2 - Annotation 001"), else segments sharing a
    Tracking UID form one nodule, else each segment is its own nodule. Then: description
    "Nodule N - Annotation A", Tracking Identifier "Nodule N", one Tracking UID per nodule shared
    by its annotations (kept when the nodule's segments already share one), terminology
    Morphologically Altered Structure / Nodule in Lung.

    Returns:
        {segment id: (N, A)}.
    """
    numbers = nodules or lidc_numbers(segmentation.segments)
    uids: Dict[int, str] = {}
    for segment in segmentation.segments:
        if segment.id not in numbers:
            continue
        nodule, annotation = numbers[segment.id]
        existing = segment.attributes.get("TrackingUniqueIdentifier")
        uids.setdefault(nodule, existing or generate_uid())
    for segment in segmentation.segments:
        if segment.id not in numbers:
            continue
        nodule, annotation = numbers[segment.id]
        segment.description = f"Nodule {nodule} - Annotation {annotation}"
        segment.attributes["TrackingIdentifier"] = f"Nodule {nodule}"
        segment.attributes["TrackingUniqueIdentifier"] = uids[nodule]
        segment.terminology = lidc_terminology()
    return numbers


def lidc_numbers(segments: Sequence[Segment]) -> Dict[str, Tuple[int, str]]:
    """{segment id: (nodule number, annotation id)} as :func:`apply_lidc_preset` finds them."""
    result: Dict[str, Tuple[int, str]] = {}
    by_uid: Dict[str, int] = {}
    next_nodule = 1
    counts: Dict[int, int] = {}
    parsed = {}
    for segment in segments:
        text = f"{segment.name} {segment.description} {segment.attributes.get('TrackingIdentifier', '')}"
        nodule = re.search(r"nodule\s*(\d+)", text, re.IGNORECASE)
        annotation = re.search(r"annotation\s+(.+?)\s*$", segment.description or segment.name, re.IGNORECASE)
        parsed[segment.id] = (int(nodule.group(1)) if nodule else None, annotation.group(1) if annotation else None)
    used = {n for n, _ in parsed.values() if n is not None}
    for segment in segments:
        nodule, annotation = parsed[segment.id]
        if nodule is None:
            uid = segment.attributes.get("TrackingUniqueIdentifier")
            if uid and uid in by_uid:
                nodule = by_uid[uid]
            else:
                while next_nodule in used:
                    next_nodule += 1
                nodule = next_nodule
                used.add(nodule)
            if uid:
                by_uid.setdefault(uid, nodule)
        counts[nodule] = counts.get(nodule, 0) + 1
        result[segment.id] = (nodule, annotation or str(counts[nodule]))
    return result



def check_lidc_tracking(segments: Sequence[Segment], numbers: Dict[str, Tuple[int, str]]) -> None:
    """Warn when the annotations of one nodule have different Tracking UIDs (the SR keeps the SEG's)."""
    uids: Dict[int, set] = {}
    for segment in segments:
        uids.setdefault(numbers[segment.id][0], set()).add(segment.attributes.get("TrackingUniqueIdentifier"))
    split = [n for n, found in uids.items() if len(found) > 1]
    if split:
        log.warning("LIDC preset: the annotations of nodule(s) %s have different Tracking UIDs in the SEG; the SR "
                    "keeps the SEG's (apply presets.lidc.apply_lidc_preset before writing the SEG, or give the SEG export "
                    "dcmqi metadata with shared TrackingUniqueIdentifier values)", ", ".join(map(str, split)))

