"""The Python API: one call per conversion, for scripts, Slicer's Python console and services.

Coordinates: every path or object passed in or out is in the frame its file format defines
(DICOM, .seg.nrrd: LPS; .mrk.json: as the file says, LPS or RAS); ``Markup`` and
``Segmentation`` objects hold LPS.

Each topic lives in its own module of this package; this module only re-exports the public names.
"""
# ``convert`` is both a module of this package and a function: bound here, before anything imports
# the module (which would set ``api.convert`` to the module); api.convert needs only what
# api.conversions needs.
from .convert import convert, read_annotations_any  # noqa: E402

#: The other public names are re-exported lazily (PEP 562), so that ``api.export_seg`` does not
#: import RTSTRUCT and GSPS (the command line's start-up, Testing/benchmarks/bench_seg.py notes):
#: name -> module relative to this package's parent.
_LAZY = dict.fromkeys(("MarkupsSource", "PathLike", "SegmentationSource", "dicomize", "export_ml", "export_overlay",
                       "export_seg", "export_sr", "import_csv", "import_overlay", "import_seg", "import_sr",
                       "load_annotations", "write_annotations", "write_preview"), "api.conversions")
_LAZY.update(dict.fromkeys(("export_gsps", "import_gsps"), "api.gsps"))
_LAZY.update(dict.fromkeys(("export_rtstruct", "import_rtstruct"), "api.rtstruct"))
__all__ = list(_LAZY) + ["convert", "read_annotations_any"]
_LAZY["run_batch"] = "services.batch"
_LAZY.update(dict.fromkeys(("pacs_echo", "pacs_find", "pacs_get", "pacs_send"), "services.pacs"))


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__package__.rpartition('.')[0]}.{module}"), name)
    if module.startswith("api."):
        globals()[name] = value  # once
    return value
