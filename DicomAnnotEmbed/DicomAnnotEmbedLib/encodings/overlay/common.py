"""What the overlay encoder and decoder share: the overlay groups, our private metadata block
and the frames of each file of a series."""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence, Tuple

from pydicom.dataset import Dataset

from ...core.series import ReferenceSeries

#: The 16 repeating overlay groups 6000, 6002, ... 601E.
OVERLAY_GROUPS: Tuple[int, ...] = tuple(0x6000 + 2 * n for n in range(16))
#: Private block holding the metadata our importer needs for an exact round trip.
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "DicomAnnotEmbed 1.0"
PRIVATE_METADATA_ELEMENT = 0x01
METADATA_VERSION = 1


def used_overlay_groups(datasets: Sequence[Dataset]) -> List[int]:
    """Overlay groups already present in any of the datasets (kept as they are on export)."""
    # Tags from the keys, not `Tag(g, e) in ds` for 16 groups x 2 elements x every file.
    present = {tag >> 16 for ds in datasets for tag in ds.keys() if tag & 0xFFFF in (0x0010, 0x3000)}
    return [g for g in OVERLAY_GROUPS if g in present]



def _frames_of_files(series: ReferenceSeries) -> List[List[Tuple[int, int]]]:
    """(frame, k) pairs of each file in frame order (series.slices_of_file for all files at once)."""
    frames: List[List[Tuple[int, int]]] = [[] for _ in series.files]
    for k, ref in enumerate(series.slices):
        frames[ref.file_index].append((ref.frame, k))
    return [sorted(pairs) for pairs in frames]



def _private_metadata(ds: Dataset, cache: Optional[Dict[object, dict]] = None) -> dict:
    """Our metadata from the private block, parsed once per distinct text with ``cache``."""
    creator, text = ds.get_item(PRIVATE_GROUP << 16 | 0x0010, keep_deferred=True), None
    if (creator is not None and creator.is_raw and creator.value is not None
            and creator.value.rstrip(b" \0") == PRIVATE_CREATOR.encode()):
        # Usual case, our block in the first slot: its raw bytes, without pydicom's conversion.
        element = ds.get_item(PRIVATE_GROUP << 16 | 0x1000 | PRIVATE_METADATA_ELEMENT, keep_deferred=True)
        text = element.value if element is not None and element.is_raw else None
    if text is None:
        try:
            text = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[PRIVATE_METADATA_ELEMENT].value
        except (KeyError, ValueError, TypeError):
            return {}
    if cache is not None and text in cache:
        return cache[text]
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        data = None
    data = data if isinstance(data, dict) and data.get("version") == METADATA_VERSION else {}
    if cache is not None:
        cache[text] = data
    return data

