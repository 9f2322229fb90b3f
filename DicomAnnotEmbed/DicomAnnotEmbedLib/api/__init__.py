"""The Python API: one call per conversion, for scripts, Slicer's Python console and services.

Coordinates: every path or object passed in or out is in the frame its file format defines
(DICOM, .seg.nrrd: LPS; .mrk.json: as the file says, LPS or RAS); ``Markup`` and
``Segmentation`` objects hold LPS.

Each topic lives in its own module of this package; this module only re-exports the public names.
"""
from .conversions import (MarkupsSource, PathLike, SegmentationSource, dicomize, export_ml, export_overlay,
                          export_seg, export_sr, import_csv, import_overlay, import_seg, import_sr,
                          load_annotations, write_annotations, write_preview)
from .gsps import export_gsps, import_gsps

__all__ = ["MarkupsSource", "PathLike", "SegmentationSource", "dicomize", "export_ml", "export_overlay",
           "export_seg", "export_sr", "import_csv", "import_overlay", "import_seg", "import_sr",
           "load_annotations", "write_annotations", "write_preview"]
__all__ += ["export_gsps", "import_gsps"]
from .rtstruct import export_rtstruct, import_rtstruct  # noqa: E402
__all__ += ["export_rtstruct", "import_rtstruct"]
from .convert import convert, read_annotations_any  # noqa: E402
__all__ += ["convert", "read_annotations_any"]

#: Names re-exported lazily (``api`` imports nothing of ``services`` until one is used):
#: name -> module relative to this package's parent.
_LAZY = {"run_batch": "services.batch"}
_LAZY.update(dict.fromkeys(("pacs_echo", "pacs_find", "pacs_get", "pacs_send"), "services.pacs"))


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__package__.rpartition('.')[0]}.{module}"), name)
