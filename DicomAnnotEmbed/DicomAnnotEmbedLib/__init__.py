"""DicomAnnotEmbed's library: segmentations and markups to and from DICOM, without Slicer.

Coordinates: DICOM and every array/affine here are LPS; Slicer is RAS (see core.geometry.LPS_TO_RAS).
Layers, bottom to top: core, dicom, presets, encodings, files, api, cli/services, slicer
(README "Architecture").
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

#: Where the modules of release 0.1 (one flat folder) live now. Importing an old name still works
#: for one release, with a DeprecationWarning, and gives the very same module object.
MOVED_MODULES = {
    "geometry": "core.geometry", "model": "core.model", "series": "core.series",
    "rasterize": "core.rasterize", "measurements": "core.measurements", "errors": "core.errors",
    "inputs": "core.inputs", "outputs": "core.outputs", "progress": "core.progress", "arrays": "core.arrays",
    "dicom_raw": "dicom.raw", "dicom_values": "dicom.values", "dcmqi_metadata": "dicom.dcmqi_metadata",
    "evaluations": "dicom.evaluations", "dicomize": "dicom.dicomize",
    "overlay": "encodings.overlay", "seg": "encodings.seg", "sr": "encodings.sr",
    "segio": "files.segio", "markups_io": "files.markups_io", "csv_table": "files.csv_table",
    "ml_export": "files.ml_export", "preview": "files.preview", "sample": "files.sample",
    "mrml_adapter": "slicer.mrml_adapter", "module_logic": "slicer.logic",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``DicomAnnotEmbedLib.<old name>`` to the module's new home."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new_name = f"{__name__}.{MOVED_MODULES[spec.name.rpartition('.')[2]]}"
        warnings.warn(f"{spec.name} moved to {new_name}; the old name will be removed in the next release",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new_name)

    def exec_module(self, module):
        pass  # the module is the new one, already executed


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
