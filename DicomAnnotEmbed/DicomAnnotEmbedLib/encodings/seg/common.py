"""Names shared by SEG encode and decode: SOP classes, types, codecs, options, tag numbers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from ... import __version__


SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASSES = (SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE)

SEG_TYPES = ("auto", "binary", "labelmap", "fractional")
COMPRESSIONS = ("auto", "none", "jpegls", "rle", "jpeg2000")
TRANSFER_SYNTAXES = {"none": ExplicitVRLittleEndian, "jpegls": JPEGLSLossless, "rle": RLELossless,
                     "jpeg2000": JPEG2000Lossless}
# BINARY frames are 1 bit deep: of the lossless codecs only JPEG 2000 takes them (as highdicom).
ALLOWED_COMPRESSIONS = {"binary": ("none", "jpeg2000"), "labelmap": ("none", "jpegls", "rle", "jpeg2000"),
                        "fractional": ("none", "jpegls", "rle", "jpeg2000")}
DEFAULT_COMPRESSION = {"binary": "none", "labelmap": "jpegls", "fractional": "jpegls"}
# openjpeg (through highdicom and pydicom) encodes no frame narrower or shorter than this.
JPEG2000_MIN_SIZE = 32
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
MAX_SEGMENTS = 65535  # Segment Number is US; LABELMAP pixels are at most 16 bits

_DERIVATION_IMAGE = 0x00089124
_FRAME_CONTENT = 0x00209111
_PLANE_POSITION = 0x00209113
_SEGMENT_IDENTIFICATION = 0x0062000A
_PER_FRAME = 0x52009230
_PIXEL_DATA = 0x7FE00010
_DIMENSION_INDEX_VALUES = 0x00209157
_SEGMENT_NUMBER = 0x0062000B
_IMAGE_POSITION = 0x00200032


@dataclass
class SegExportResult:
    """What :func:`export_seg` wrote.

    Attributes:
        paths: the SEG files (one, or one per layer with ``split_layers``).
        seg_type: "binary", "labelmap" or "fractional".
        compression: "none", "jpegls", "rle" or "jpeg2000".
        frames: number of frames of each file.
        segments: names of the segments of each file, by segment number order.
        skipped_segments: names of empty segments that were left out (``keep_empty_segments=False``).
        empty_segments: names of empty segments described in the SEG without frames.
        series_instance_uid: of the SEG series.
        sop_instance_uids: one per file.
        tracking: {segment id: (tracking identifier, tracking UID)} as written (for the SR).
        segment_numbers: per file, {segment id of the segmentation given: its Segment Number}.
    """

    paths: List[Path] = field(default_factory=list)
    seg_type: str = ""
    compression: str = ""
    frames: List[int] = field(default_factory=list)
    segments: List[List[str]] = field(default_factory=list)
    skipped_segments: List[str] = field(default_factory=list)
    empty_segments: List[str] = field(default_factory=list)
    series_instance_uid: str = ""
    sop_instance_uids: List[str] = field(default_factory=list)
    tracking: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    segment_numbers: List[Dict[str, int]] = field(default_factory=list)


@dataclass
class SegExportOptions:
    """Series-level and descriptive options of a SEG export (all optional).

    ``algorithm_type`` / ``algorithm_name`` / ``algorithm_version`` apply to segments whose
    attributes do not say (keys ``SegmentAlgorithmType``, ``SegmentAlgorithmName``). Clinical
    trial attributes are written when given.
    """

    series_description: Optional[str] = None
    series_number: int = 300
    instance_number: int = 1
    content_label: str = "SEGMENTATION"
    content_description: Optional[str] = None
    content_creator_name: Optional[str] = None
    algorithm_type: str = "MANUAL"
    algorithm_name: Optional[str] = None
    algorithm_version: str = __version__
    clinical_trial_series_id: Optional[str] = None
    clinical_trial_time_point_id: Optional[str] = None
    clinical_trial_coordinating_center_name: Optional[str] = None
    body_part_examined: Optional[str] = None


def check_compression(rows: int, columns: int, compression: str, where: str = "") -> None:
    """Refuse, before any work, a codec that cannot encode frames of rows x columns pixels.

    Raises:
        InputError: JPEG 2000 for frames under 32 pixels along a side (names --compress).
    """
    from ...core.errors import InputError

    if compression == "jpeg2000" and min(rows, columns) < JPEG2000_MIN_SIZE:
        raise InputError(f"{where + ': ' if where else ''}JPEG 2000 cannot encode frames smaller than "
                         f"{JPEG2000_MIN_SIZE} pixels along a side (these are {rows}x{columns}): use --compress none "
                         "(or, for LABELMAP and FRACTIONAL, --compress jpegls or rle)")
