"""DICOM RT Structure Set (RTSTRUCT), both ways: segments as CLOSED_PLANAR contours traced
along pixel edges (their centre-inside, even-odd rasterisation is exactly the mask), markups as
POINT and open contours; any RTSTRUCT read back onto its referenced series' grid.

Coordinates: LPS throughout, as in DICOM.

Modules: ``common`` (SOP class, types, options, results), ``contours`` (tracing and filling),
``encode`` (export), ``decode`` (import).
"""
#: Names re-exported lazily (PEP 562): the command line reads the constants of ``common`` while it
#: builds its parser, without importing the decoder (pydicom). Name -> module of this package.
_LAZY = dict.fromkeys(("DEFAULT_TOLERANCE_MM", "INTERPRETED_TYPES", "RtStructExportOptions", "RtStructExportResult",
                       "RtStructImport", "rtstruct_summary"), "common")
_LAZY.update({"import_rtstruct": "decode", "read_rtstruct_dataset": "decode", "export_rtstruct": "encode"})
__all__ = ["DEFAULT_TOLERANCE_MM", "INTERPRETED_TYPES", "RtStructExportOptions", "RtStructExportResult",
           "RtStructImport", "export_rtstruct", "import_rtstruct", "read_rtstruct_dataset", "rtstruct_summary"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
