"""What the GSPS encoder and decoder share: layer names, units and pixel coordinates.

Pixel coordinates of a presentation state (PS3.3 C.10.5.1.2, units PIXEL) are ``(column, row)``
with ``(0, 0)`` the top-left corner of the top-left pixel, so the centre of pixel ``(i, j)`` is
``(i + 0.5, j + 0.5)``. Our grids index pixel centres: ``i = column - 0.5``, ``j = row - 0.5``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

#: Manufacturer written into our presentation states; the decoder trusts our layer names only then.
MANUFACTURER = "DicomAnnotEmbed"
GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
#: The presentation state SOP classes whose graphic annotations the decoder reads.
PRESENTATION_STATE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.11.2": "Color Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.11.3": "Pseudo-Color Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.11.4": "Blending Softcopy Presentation State",
}

#: Graphic layer name (CS, at most 16 characters) prefix of each markup kind, and of segment outlines.
LAYER_PREFIX = {"point_list": "POINTS", "line": "LINE", "angle": "ANGLE", "curve": "CURVE",
                "closed_curve": "CLOSED_CURVE", "roi": "ROI", "plane": "PLANE", "outline": "OUTLINE"}
KIND_OF_PREFIX = {prefix: kind for kind, prefix in LAYER_PREFIX.items()}
_LAYER_RE = re.compile(r"^([A-Z_]+) (\d+)$")
#: Most layers one presentation state can name with our scheme ("CLOSED_CURVE 999" is 16 characters).
MAX_LAYERS = 999


def layer_name(kind: str, number: int) -> str:
    return f"{LAYER_PREFIX[kind]} {number}"


def kind_of_layer(name: str) -> Optional[str]:
    """The markup kind (or "outline") a layer name of ours stands for; None for other names."""
    match = _LAYER_RE.match(name.strip())
    return KIND_OF_PREFIX.get(match.group(1)) if match else None


def ij_to_pixel(ij: np.ndarray) -> np.ndarray:
    """(N, 2) continuous (i, j) grid indices to (column, row) PIXEL coordinates."""
    return np.asarray(ij, dtype=float).reshape(-1, 2) + 0.5


def pixel_to_ij(cr: np.ndarray) -> np.ndarray:
    """(N, 2) (column, row) PIXEL coordinates to continuous (i, j) grid indices."""
    return np.asarray(cr, dtype=float).reshape(-1, 2) - 0.5


@dataclass
class GspsExportResult:
    """What :func:`export_gsps` wrote.

    Attributes:
        path: the presentation state file.
        layers: graphic layer name -> what it holds (markup or segment name).
        graphics: number of graphic objects, texts: number of text objects.
        images: number of (image, frame) pairs that carry annotations.
        skipped: markups or segments that drew nothing on the series, were cut at the image
            border, or (ellipses) were drawn otherwise than as an ELLIPSE, with the reason.
    """

    path: str
    layers: Dict[str, str] = field(default_factory=dict)
    graphics: int = 0
    texts: int = 0
    images: int = 0
    skipped: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"GSPS written to {self.path}: {len(self.layers)} layers, {self.graphics} graphics, "
                f"{self.texts} texts on {self.images} images")


@dataclass
class GspsImport:
    """What :func:`import_gsps` read.

    Attributes:
        markups: the graphics as markups in **LPS** on the referenced images' planes.
        report: what was not turned into markups, and why.
        window: (centre, width) of the presentation's first VOI window, or None.
        ours: True when the presentation state was written by this package.
    """

    markups: list
    report: List[str] = field(default_factory=list)
    window: Optional[Tuple[float, float]] = None
    ours: bool = False

    def summary(self) -> str:
        text = f"{len(self.markups)} markups"
        if self.report:
            text += f" ({len(self.report)} items not converted: {'; '.join(self.report[:3])}" + \
                    (" ..." if len(self.report) > 3 else "") + ")"
        return text


__all__ = ["MANUFACTURER", "GSPS_SOP_CLASS", "PRESENTATION_STATE_CLASSES", "LAYER_PREFIX", "MAX_LAYERS",
           "layer_name", "kind_of_layer", "ij_to_pixel", "pixel_to_ij", "GspsExportResult", "GspsImport"]
