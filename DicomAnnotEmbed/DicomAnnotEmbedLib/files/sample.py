"""A small bundled case, generated on demand: a CT-like DICOM series, a Slicer segmentation
with overlapping segments and a markups file, so that every command can be tried with nothing
else on the machine."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..core.geometry import VolumeGeometry
from ..core.model import Code, Markup, Segment, Segmentation, Terminology
from ..core.outputs import relocate, staged_folder
from ..core.progress import ProgressCallback

SHAPE = (32, 128, 128)          # slices, rows, columns
SPACING = (0.9, 0.9, 2.5)       # mm along i, j, k
ORIGIN_LPS = (-57.15, -57.15, -40.0)

_ANATOMY = Code("123037004", "SCT", "Anatomical Structure")
_RIGHT, _LEFT = Code("24028007", "SCT", "Right"), Code("7771000", "SCT", "Left")


@dataclass
class SampleCase:
    folder: Path
    series_dir: Path
    segmentation_path: Path
    markups_path: Path


def sample_geometry() -> VolumeGeometry:
    return VolumeGeometry.from_origin_spacing_directions(SHAPE, ORIGIN_LPS, SPACING, np.eye(3))


def sample_volume_and_segments() -> Tuple[np.ndarray, Segmentation, List[Markup]]:
    """The phantom (int16 HU, (K, J, I)), its segmentation and markups, all in LPS."""
    geometry = sample_geometry()
    k, j, i = np.indices(SHAPE, dtype=np.float32)
    lps = [geometry.origin[a] + (i, j, k)[a] * SPACING[a] for a in range(3)]
    x, y, z = lps  # x grows to the patient's left, y to posterior, z to superior

    def ellipsoid(center, radii):
        return sum(((c - c0) / r) ** 2 for c, c0, r in zip((x, y, z), center, radii)) <= 1.0

    body = ellipsoid((0, 0, 0), (52, 40, 400))
    right_lung = ellipsoid((-22, -2, 18), (15, 22, 38)) & body
    left_lung = ellipsoid((22, -2, 18), (14, 21, 36)) & body
    spine = (((x / 7) ** 2 + ((y - 28) / 7) ** 2) <= 1.0) & body
    liver = ellipsoid((-18, 5, -28), (25, 20, 16)) & body & ~right_lung
    tumor = ellipsoid((-12, 8, -32), (7, 7, 7))  # lies inside the liver: overlapping segments

    rng = np.random.default_rng(20261121)
    volume = np.full(SHAPE, -1000.0, dtype=np.float32)
    volume[body] = 30
    volume[right_lung | left_lung] = -840
    volume[liver] = 60
    volume[tumor] = 95
    volume[spine] = 650
    volume += rng.normal(0, 12, SHAPE).astype(np.float32) * body
    volume = np.round(volume).astype(np.int16)

    segmentation = Segmentation(geometry)
    for mask, name, color, terminology in (
        (liver, "Liver", (0.87, 0.51, 0.40),
         Terminology(_ANATOMY, Code("10200004", "SCT", "Liver"))),
        (tumor, "Tumor", (0.99, 0.91, 0.62),
         Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("4147007", "SCT", "Mass"),
                     anatomic_region=Code("10200004", "SCT", "Liver"))),
        (right_lung, "Right lung", (0.09, 0.77, 0.28), Terminology(_ANATOMY, Code("39607008", "SCT", "Lung"), _RIGHT)),
        (left_lung, "Left lung", (0.77, 0.10, 0.39), Terminology(_ANATOMY, Code("39607008", "SCT", "Lung"), _LEFT)),
        (spine, "Vertebral column", (0.95, 0.95, 0.85),
         Terminology(_ANATOMY, Code("421060004", "SCT", "Vertebral column"))),
    ):
        segmentation.add_segment(mask, Segment(id=name.replace(" ", "_"), name=name, color=color,
                                               terminology=terminology))

    tumor_center = np.array([-12.0, 8.0, -32.0])
    lung_z = geometry.ijk_to_lps_points([[0, 0, 18]])[0, 2]
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    lung_outline = np.stack([22 + 12 * np.cos(angles), -2 + 18 * np.sin(angles), np.full(12, lung_z)], axis=1)
    markups = [
        Markup("point_list", "Landmarks", [tumor_center, [0.0, 28.0, -32.0]], ["Tumor centre", "Spine"],
               color=(1.0, 0.2, 0.2)),
        Markup("line", "Tumor diameter", [tumor_center - [7, 0, 0], tumor_center + [7, 0, 0]], color=(1.0, 1.0, 0.0)),
        Markup("closed_curve", "Left lung outline", lung_outline, color=(0.2, 0.6, 1.0)),
        Markup("roi", "Tumor box", roi_center_lps=tumor_center, roi_size=[16.0, 16.0, 15.0],
               roi_axes_lps=np.eye(3), color=(0.2, 1.0, 0.2)),
    ]
    return volume, segmentation, markups


def write_sample(out_dir: os.PathLike | str, force: bool = False,
                 progress: Optional[ProgressCallback] = None) -> SampleCase:
    """Write ``series/``, ``segmentation.seg.nrrd`` and ``markups.mrk.json`` into ``out_dir``."""
    from ..dicom.dicomize import dicomize_array
    from .markups_io import write_markups
    from .segio import write_seg_nrrd

    volume, segmentation, markups = sample_volume_and_segments()
    with staged_folder(out_dir, force) as out:  # appears whole or not at all
        case = SampleCase(out, out / "series", out / "segmentation.seg.nrrd", out / "markups.mrk.json")
        dicomize_array(volume, segmentation.geometry, case.series_dir, modality="CT",
                       patient_name="DicomAnnotEmbed^Sample", patient_id="DAE-SAMPLE",
                       series_description="DicomAnnotEmbed sample CT", force=force, progress=progress)
        write_seg_nrrd(case.segmentation_path, segmentation)
        write_markups(case.markups_path, markups)
    return relocate(case, out, Path(out_dir))
