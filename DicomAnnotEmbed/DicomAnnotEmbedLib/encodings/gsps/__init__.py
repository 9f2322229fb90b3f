"""Grayscale Softcopy Presentation States (GSPS): markups and segment outlines as graphics on the
original images, both ways.

Modules: ``common`` (layer names, pixel coordinates, results), ``encode`` (export: one presentation
state per series, built with highdicom), ``decode`` (import of any presentation state's graphic
annotations into markups). Coordinates: LPS throughout, as in DICOM; graphics in PIXEL units.
"""
from __future__ import annotations

from .common import GspsExportResult, GspsImport, kind_of_layer, layer_name
from .decode import import_gsps
from .encode import export_gsps, markup_graphics, markup_text, polyline_pieces, segment_outlines

__all__ = ["GspsExportResult", "GspsImport", "export_gsps", "import_gsps", "kind_of_layer", "layer_name",
           "markup_graphics", "markup_text", "polyline_pieces", "segment_outlines"]
