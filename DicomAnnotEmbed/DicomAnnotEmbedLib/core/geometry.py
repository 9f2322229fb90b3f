"""Voxel grids in patient space.

Conventions used throughout the package:

* Arrays are indexed ``[k, j, i]`` = ``[slice, row, column]`` (numpy / SimpleITK order).
* Affines map ``(i, j, k, 1)`` (column, row, slice) to patient coordinates in **LPS**
  (DICOM). Slicer works in **RAS**; :data:`LPS_TO_RAS` converts between the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import GeometryError

#: Multiply an LPS point (homogeneous) or affine by this to get RAS, and vice versa.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Geometry comparisons: positions within this many mm are the same.
POSITION_TOLERANCE_MM = 1e-3
#: Geometry comparisons: direction cosines within this are the same.
DIRECTION_TOLERANCE = 1e-4


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert (N, 3) points between LPS and RAS (the same flip works both ways)."""
    points = np.array(points, dtype=float, copy=True)
    points[..., :2] *= -1.0
    return points


ras_to_lps = lps_to_ras


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    """A regular voxel grid placed in patient space (LPS).

    Args:
        shape: number of slices, rows and columns, ``(K, J, I)`` in numpy order.
        ijk_to_lps: 4x4 affine from (column i, row j, slice k) to LPS millimetres.
            Its columns may be non-orthogonal only if ``allow_shear`` was set at creation.
        in_patient_space: False when the source images carry no position or orientation
            (CR/DX, some secondary captures): the grid is then nominal, and annotations
            defined in patient space cannot be placed on it.
    """

    shape: Tuple[int, int, int]
    ijk_to_lps: np.ndarray
    in_patient_space: bool = True

    def __post_init__(self):
        affine = np.asarray(self.ijk_to_lps, dtype=float)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise GeometryError(f"IJK to LPS must be a finite 4x4 matrix, got {affine!r}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise GeometryError("IJK to LPS matrix is singular (zero spacing or parallel axes)")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"volume shape must be 3 positive sizes (K, J, I), got {self.shape}")
        object.__setattr__(self, "ijk_to_lps", affine)
        object.__setattr__(self, "shape", shape)

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_origin_spacing_directions(cls, shape: Sequence[int], origin_lps: Sequence[float],
                                       spacing: Sequence[float], directions: np.ndarray,
                                       in_patient_space: bool = True) -> "VolumeGeometry":
        """Build from origin (LPS), spacing (i, j, k) and a 3x3 matrix whose columns are
        the unit i, j, k directions in LPS."""
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(directions, dtype=float) * np.asarray(spacing, dtype=float)
        affine[:3, 3] = origin_lps
        return cls(tuple(shape), affine, in_patient_space)

    @classmethod
    def from_ras_affine(cls, shape: Sequence[int], ijk_to_ras: np.ndarray) -> "VolumeGeometry":
        """Build from Slicer's IJK to RAS matrix."""
        return cls(tuple(shape), LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float))

    @classmethod
    def from_sitk(cls, image) -> "VolumeGeometry":
        """Geometry of a SimpleITK image (SimpleITK works in LPS)."""
        size = image.GetSize()
        directions = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
        return cls.from_origin_spacing_directions((size[2], size[1], size[0]), image.GetOrigin(),
                                                  image.GetSpacing(), directions)

    # --- properties ---------------------------------------------------------------
    @property
    def ijk_to_ras(self) -> np.ndarray:
        """Slicer's IJK to RAS matrix."""
        return LPS_TO_RAS @ self.ijk_to_lps

    @property
    def origin(self) -> np.ndarray:
        """LPS position of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_lps[:3, 3].copy()

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit i, j, k directions in LPS."""
        return self.ijk_to_lps[:3, :3] / self.spacing

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit normal of the slice planes (row direction x column direction)."""
        n = np.cross(self.directions[:, 0], self.directions[:, 1])
        return n / np.linalg.norm(n)

    @property
    def is_orthogonal(self) -> bool:
        d = self.directions
        return bool(np.allclose(d.T @ d, np.eye(3), atol=DIRECTION_TOLERANCE))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.ijk_to_lps[:3, :3])))

    # --- mapping ------------------------------------------------------------------
    def ijk_to_lps_points(self, ijk: np.ndarray) -> np.ndarray:
        """Map (N, 3) continuous (i, j, k) indices to LPS points."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.ijk_to_lps[:3, :3].T + self.ijk_to_lps[:3, 3]

    def lps_to_ijk_points(self, lps: np.ndarray) -> np.ndarray:
        """Map (N, 3) LPS points to continuous (i, j, k) indices."""
        inverse = np.linalg.inv(self.ijk_to_lps)
        lps = np.asarray(lps, dtype=float)
        return lps @ inverse[:3, :3].T + inverse[:3, 3]

    def corners_lps(self) -> np.ndarray:
        """LPS centres of the 8 corner voxels."""
        k, j, i = (s - 1 for s in self.shape)
        ijk = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], dtype=float)
        return self.ijk_to_lps_points(ijk)

    # --- comparison ---------------------------------------------------------------
    def same_as(self, other: "VolumeGeometry", tolerance_mm: float = POSITION_TOLERANCE_MM) -> bool:
        """True when both grids have the same shape and voxel centres (within tolerance)."""
        return self.shape == other.shape and self.lattice_offset(other, tolerance_mm) == (0, 0, 0)

    def lattice_offset(self, other: "VolumeGeometry",
                       tolerance_mm: float = POSITION_TOLERANCE_MM) -> Optional[Tuple[int, int, int]]:
        """If ``other`` lies on this grid's lattice (same axes and spacing, origin on a voxel
        centre of this grid), return the (k, j, i) index of other's first voxel here; else None.

        Lets a cropped segmentation (Slicer saves the effective extent) be pasted, not resampled.
        """
        if not np.allclose(self.ijk_to_lps[:3, :3], other.ijk_to_lps[:3, :3], atol=tolerance_mm):
            return None
        ijk = self.lps_to_ijk_points(other.origin[None])[0]
        rounded = np.round(ijk)
        error_mm = np.linalg.norm(self.ijk_to_lps[:3, :3] @ (ijk - rounded))
        if error_mm > tolerance_mm * max(1.0, float(np.max(np.abs(other.origin))) / 100.0):
            return None
        i, j, k = (int(v) for v in rounded)
        return (k, j, i)

    def to_sitk_image(self, array: np.ndarray):
        """A SimpleITK image holding ``array`` (K, J, I) on this grid."""
        import SimpleITK as sitk

        if not self.is_orthogonal:
            raise GeometryError("a sheared grid cannot be represented as a SimpleITK image")
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetOrigin(tuple(self.origin))
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetDirection(tuple(self.directions.flatten()))
        return image

    def describe(self) -> str:
        sp = ", ".join(f"{s:g}" for s in self.spacing)
        o = ", ".join(f"{v:.2f}" for v in self.origin)
        return f"{self.shape[2]}x{self.shape[1]}x{self.shape[0]} voxels, spacing ({sp}) mm, origin LPS ({o})"


def resample_nearest(array: np.ndarray, source: VolumeGeometry, target: VolumeGeometry,
                     what: str = "segmentation") -> np.ndarray:
    """Place ``array`` (K, J, I, on ``source``) onto ``target`` by nearest neighbour.

    Exact paste or crop when ``source`` lies on ``target``'s lattice; SimpleITK resampling
    otherwise. Raises :class:`GeometryError` when the two grids do not intersect at all.
    """
    if not source.in_patient_space or not target.in_patient_space:
        if array.shape == target.shape:
            return array
        raise GeometryError(f"{what} has {array.shape[::-1]} voxels but the series has "
                            f"{target.shape[::-1]} and no patient position to resample with")
    if not _bounds_overlap(source, target):
        raise GeometryError(
            f"{what} cannot lie on the series: its grid ({source.describe()}) does not intersect "
            f"the series ({target.describe()})")
    offset = target.lattice_offset(source)
    if offset is not None:
        out = np.zeros(target.shape, dtype=array.dtype)
        src_slices, dst_slices = [], []
        for axis in range(3):
            start = offset[axis]
            d0, d1 = max(start, 0), min(start + array.shape[axis], target.shape[axis])
            if d1 <= d0:
                raise GeometryError(f"{what} cannot lie on the series: no voxel in common "
                                    f"({source.describe()} vs {target.describe()})")
            dst_slices.append(slice(d0, d1))
            src_slices.append(slice(d0 - start, d1 - start))
        out[tuple(dst_slices)] = array[tuple(src_slices)]
        return out
    import SimpleITK as sitk

    image = source.to_sitk_image(array)
    reference = sitk.Image(target.shape[2], target.shape[1], target.shape[0], image.GetPixelID())
    reference.SetOrigin(tuple(target.origin))
    reference.SetSpacing(tuple(float(s) for s in target.spacing))
    reference.SetDirection(tuple(target.directions.flatten()))
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(resampled)


def _bounds_overlap(a: VolumeGeometry, b: VolumeGeometry) -> bool:
    """Whether the voxel boxes of a and b intersect (checked in b's index space)."""
    ijk = b.lps_to_ijk_points(_box_corners_lps(a))
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    size_ijk = np.array(b.shape[::-1], dtype=float)
    return bool(np.all(hi >= -0.5) and np.all(lo <= size_ijk - 0.5))


def _box_corners_lps(g: VolumeGeometry) -> np.ndarray:
    """LPS corners of the box covering all voxels (voxel edges, not centres)."""
    k, j, i = (s - 0.5 for s in g.shape)
    ijk = np.array([[a, b, c] for a in (-0.5, i) for b in (-0.5, j) for c in (-0.5, k)])
    return g.ijk_to_lps_points(ijk)
