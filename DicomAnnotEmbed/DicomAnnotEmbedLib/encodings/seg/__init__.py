"""DICOM Segmentation (SEG): BINARY, FRACTIONAL and LABELMAP (Supplement 243), both ways.

Export builds the object with highdicom (modules, segment descriptions, references, codes,
validation). highdicom is slow where a SEG is large: it computes one mask per segment per
slice, empty ones included, and pydicom then writes one Python item per frame (the SEG
baseline profile: 3.2 s + 2.6 s for 100 segments on 512x512x200). So highdicom builds the
object on one plane only, and this module writes the frames itself: the per-frame
functional group items are assembled from pieces that pydicom encoded once, and the pixel
data is packed or compressed frame by frame straight into the file. The result is what
highdicom writes for the whole volume (tests compare the two element by element).

Import reads any SEG (ours, dcmqi's, highdicom's; with or without empty frames; overlapping
segments) onto the grid of its referenced series when given, otherwise on the SEG's own
frame geometry. The per-frame values are read from the raw bytes (:mod:`dicom.raw`) instead
of pydicom's parsed items.

Coordinates: LPS throughout, as in DICOM.

Modules: ``common`` (SOP classes, types, codecs, options), ``encode`` (export), ``headers`` (source
headers, references, slice measures, character set of the export), ``decode`` (import).
"""
from __future__ import annotations

from .common import (ALGORITHM_TYPES, ALLOWED_COMPRESSIONS, COMPRESSIONS, DEFAULT_COMPRESSION,
                     LABEL_MAP_SEGMENTATION_STORAGE, MAX_SEGMENTS, SEG_SOP_CLASSES, SEG_TYPES, SEGMENTATION_STORAGE,
                     TRANSFER_SYNTAXES, SegExportOptions, SegExportResult, check_compression)
from .decode import SegImport, import_seg, read_seg_dataset, read_seg_segments, seg_summary

__all__ = ["ALGORITHM_TYPES", "ALLOWED_COMPRESSIONS", "COMPRESSIONS", "DEFAULT_COMPRESSION",
           "LABEL_MAP_SEGMENTATION_STORAGE", "MAX_SEGMENTS", "SEG_SOP_CLASSES", "SEG_TYPES", "SEGMENTATION_STORAGE",
           "TRANSFER_SYNTAXES", "SegExportOptions", "check_compression", "SegExportResult", "SegImport", "export_seg", "import_seg",
           "read_seg_dataset", "read_seg_segments", "seg_summary"]


def __getattr__(name):
    # ``export_seg`` is imported when first used: ``seg import`` does not load the export side
    # (8 ms of its start-up; Testing/benchmarks/bench_startup.py notes).
    if name == "export_seg":
        from .encode import export_seg

        globals()["export_seg"] = export_seg
        return export_seg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
