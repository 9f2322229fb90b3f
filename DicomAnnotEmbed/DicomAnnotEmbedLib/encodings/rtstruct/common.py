"""What the RT Structure Set encoder and decoder share: the SOP class, the interpreted types,
the options and results, and how a markup's kind is recorded."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ...core.model import AnnotationSet

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"

#: RT ROI Interpreted Type defined terms (PS3.3 C.8.8.8).
INTERPRETED_TYPES = ("EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "OAR", "BOLUS",
                     "AVOIDANCE", "ORGAN", "MARKER", "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY",
                     "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "SUPPORT",
                     "FIXATION", "DOSE_REGION", "CONTROL", "DOSE_MEASUREMENT")
#: CLOSEDPLANAR_XOR (contours of a plane combined by exclusive or) is read as CLOSED_PLANAR, which
#: the import combines the same way.
GEOMETRIC_TYPES = ("POINT", "OPEN_PLANAR", "OPEN_NONPLANAR", "CLOSED_PLANAR", "CLOSEDPLANAR_XOR")

#: ROI Generation Description of ROIs written from markups: this prefix and the markup kind (for a
#: closed curve marked as an ellipse, "closed_curve ellipse": its contour is the ellipse sampled
#: with a multiple of 4 points, the axis ends at 0, n/4, n/2, 3n/4, :func:`core.ellipses.ellipse_samples`).
MARKUP_PREFIX = "DicomAnnotEmbed markup "
#: Segment attribute that holds (and sets) a segment's RT ROI Interpreted Type.
INTERPRETED_TYPE_ATTRIBUTE = "RTROIInterpretedType"

#: Contours are on slice k when every point lies within this distance (mm) of its plane.
DEFAULT_TOLERANCE_MM = 0.1


@dataclass
class RtStructExportOptions:
    """Series-level and descriptive attributes of the structure set."""

    structure_set_label: str = "Annotations"
    structure_set_name: str = ""
    series_description: str = "RT Structure Set"
    series_number: int = 3100
    instance_number: int = 1
    #: RT ROI Interpreted Type of segments without their own (see ``interpreted_types``).
    interpreted_type: str = "ORGAN"
    #: Per segment (by name or id): its interpreted type; overrides the segment's attribute.
    interpreted_types: Dict[str, str] = field(default_factory=dict)
    roi_interpreter: str = ""
    #: Join each hole to the contour around it by a zero-width cut (for readers that unite the
    #: contours of a slice instead of combining them even-odd, such as plastimatch).
    keyhole: bool = True
    operators_name: str = ""
    manufacturer: str = "DicomAnnotEmbed"


@dataclass
class RtStructExportResult:
    path: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    rois: List[str] = field(default_factory=list)
    contours: int = 0
    points: int = 0
    skipped: List[str] = field(default_factory=list)


@dataclass
class RtStructImport:
    """What an RTSTRUCT holds, on the series grid: segments (closed contours) and markups (points
    and open contours), all in LPS. ``skipped`` says what could not be placed, and why."""

    annotations: AnnotationSet
    path: str = ""
    referenced_series_uid: str = ""
    frame_of_reference_uid: str = ""
    interpreted_types: Dict[str, str] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    series: Optional[object] = None

    @property
    def segmentation(self):
        return self.annotations.segmentation

    @property
    def markups(self):
        return self.annotations.markups


def rtstruct_summary(imported: RtStructImport) -> str:
    seg = imported.segmentation
    names = [s.name for s in seg.segments] if seg is not None else []
    text = f"{len(names)} segments" + (f" ({', '.join(names)})" if names else "")
    if imported.markups:
        text += f" and {len(imported.markups)} markups"
    if imported.skipped:
        text += f"; {len(imported.skipped)} items skipped"
    return text
