"""Overlay-embedded DICOM: segments and markups as overlay planes (60xx) in copies of the
source images, readable by any DICOM viewer, and overlay planes back into segments.

Each segment becomes one Type R (ROI) plane with Overlay Label = segment name, Overlay
Description = its coded meaning and ROI Area / Mean / Standard Deviation computed from the
image under the mask. Each markup becomes one Type G (graphics) plane drawn on the slices it
crosses. A plane is written on the images where it has pixels; its group is the same on every
image of the output series. Full names, colours, codes and markup control points (LPS) are
kept in one private element so that our own files import back exactly.

encode.py writes (export_overlays), decode.py reads (import_overlays), common.py holds what
both use (overlay groups, the private metadata block).
"""
from .common import (METADATA_VERSION, OVERLAY_GROUPS, PRIVATE_CREATOR, PRIVATE_GROUP, PRIVATE_METADATA_ELEMENT,
                     used_overlay_groups)
from .decode import import_overlays
from .encode import UID_WARNING, KeepUidsWarning, OverlayExportResult, OverlaySeries, export_overlays

__all__ = ["export_overlays", "import_overlays", "used_overlay_groups", "OverlayExportResult", "OverlaySeries",
           "KeepUidsWarning", "UID_WARNING", "OVERLAY_GROUPS", "PRIVATE_GROUP", "PRIVATE_CREATOR",
           "PRIVATE_METADATA_ELEMENT", "METADATA_VERSION"]
