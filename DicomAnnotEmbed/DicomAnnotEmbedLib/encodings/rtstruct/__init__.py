"""DICOM RT Structure Set (RTSTRUCT), both ways: segments as CLOSED_PLANAR contours traced
along pixel edges (their centre-inside, even-odd rasterisation is exactly the mask), markups as
POINT and open contours; any RTSTRUCT read back onto its referenced series' grid.

Coordinates: LPS throughout, as in DICOM.

Modules: ``common`` (SOP class, types, options, results), ``contours`` (tracing and filling),
``encode`` (export), ``decode`` (import).
"""
from .common import (DEFAULT_TOLERANCE_MM, INTERPRETED_TYPES, RtStructExportOptions, RtStructExportResult,
                     RtStructImport, rtstruct_summary)
from .decode import import_rtstruct, read_rtstruct_dataset
from .encode import export_rtstruct

__all__ = ["DEFAULT_TOLERANCE_MM", "INTERPRETED_TYPES", "RtStructExportOptions", "RtStructExportResult",
           "RtStructImport", "export_rtstruct", "import_rtstruct", "read_rtstruct_dataset", "rtstruct_summary"]
