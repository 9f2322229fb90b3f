"""Write a DICOM image series for a volume that is not DICOM (NRRD, NIfTI, MHA, numpy).

DICOM annotations (overlays, SEG, SR) must reference DICOM images; users whose reference
volume is NRRD or NIfTI first turn it into a series with :func:`dicomize_file` or
:func:`dicomize_array`.

Output: one single-frame, uncompressed Explicit VR Little Endian file per slice ``k``
(CT Image Storage, MR Image Storage or Secondary Capture Image Storage), geometry in
**LPS**: ImagePositionPatient is the centre of voxel (0, 0, k), ImageOrientationPatient the
i (column index) and j (row index) directions.

Pixel values (see :func:`choose_pixel_encoding`):

* integer data that fits int16 is stored as int16 (slope 1, intercept 0), unsigned data
  that fits uint16 as uint16; other integer data whose range spans at most 65536 values
  gets an integer RescaleIntercept: all of these are exact;
* anything else (fractional floats, very wide integer ranges) is quantised to int16 with a
  RescaleSlope and RescaleIntercept: the error is at most half a step,
  ``(max - min) / 131064``, and is written to DerivationDescription.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, MRImageStorage,
                         SecondaryCaptureImageStorage, generate_uid)

from .. import __version__
from ..core.outputs import check_output_dir, staged_folder, write_atomic
from ..core.errors import GeometryError, InputError
from ..core.geometry import DIRECTION_TOLERANCE, VolumeGeometry
from ..core.progress import ProgressCallback, track

log = logging.getLogger(__name__)

MANUFACTURER = "DicomAnnotEmbed"

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "OT": SecondaryCaptureImageStorage}
_IMAGE_TYPES = {"CT": ["DERIVED", "SECONDARY", "AXIAL"],
                "MR": ["DERIVED", "SECONDARY", "OTHER"],
                "OT": ["DERIVED", "SECONDARY"]}

_INT16 = np.iinfo(np.int16)
_UINT16 = np.iinfo(np.uint16)
# Lossy quantisation uses 65532 of the 65536 int16 codes: the spare codes absorb the
# rounding of RescaleSlope/Intercept to 16-character decimal strings without clipping.
_QUANTISATION_STEPS = 65532


# --- pixel encoding ---------------------------------------------------------------

@dataclass(frozen=True)
class PixelEncoding:
    """How real-world voxel values are stored: ``value = stored * slope + intercept``.

    Attributes:
        dtype: numpy type of the stored values (int16, uint16, or uint8 for OT only).
        slope, intercept: RescaleSlope and RescaleIntercept, exactly as written (their
            16-character decimal strings parse back to these floats).
        max_error: upper bound of ``|decoded - original|``; 0 when storage is exact.
    """

    dtype: np.dtype
    slope: float
    intercept: float
    max_error: float

    @property
    def exact(self) -> bool:
        return self.max_error == 0.0

    @property
    def bits_allocated(self) -> int:
        return 8 * np.dtype(self.dtype).itemsize

    @property
    def pixel_representation(self) -> int:
        """0 unsigned, 1 two's complement."""
        return 1 if np.dtype(self.dtype).kind == "i" else 0

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored values for ``values`` (any shape)."""
        info = np.iinfo(self.dtype)
        if self.slope == 1.0 and float(self.intercept).is_integer() and _is_integral(values):
            # Integer arithmetic: exact for any int64 input.
            stored = np.asarray(values).astype(np.int64) - int(self.intercept)
        else:
            stored = np.rint((np.asarray(values, dtype=np.float64) - self.intercept) / self.slope)
        return np.clip(stored, info.min, info.max).astype(self.dtype)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Real-world values (float64) for stored values."""
        return np.asarray(stored, dtype=np.float64) * self.slope + self.intercept


def choose_pixel_encoding(volume: np.ndarray, modality: str = "CT") -> PixelEncoding:
    """Pick the storage of ``volume`` for ``modality`` (see the module docstring).

    Raises:
        InputError: for empty, complex or non-finite volumes.
    """
    volume = np.asarray(volume)
    if volume.size == 0:
        raise InputError("the volume is empty")
    if volume.dtype == bool:
        volume = volume.view(np.uint8)
    if volume.dtype.kind not in "iuf":
        raise InputError(f"cannot store voxels of type {volume.dtype} in DICOM")
    if volume.dtype.kind == "f" and not np.all(np.isfinite(volume)):
        raise InputError("the volume holds NaN or infinite values")

    vmin, vmax = volume.min(), volume.max()
    if _is_integral(volume) and abs(float(vmin)) < 2**62 and abs(float(vmax)) < 2**62:
        lo, hi = int(vmin), int(vmax)
        if modality == "OT" and volume.dtype == np.uint8:
            return PixelEncoding(np.dtype(np.uint8), 1.0, 0.0, 0.0)
        if volume.dtype.kind == "u" and hi <= _UINT16.max:
            return PixelEncoding(np.dtype(np.uint16), 1.0, 0.0, 0.0)
        if lo >= _INT16.min and hi <= _INT16.max:
            return PixelEncoding(np.dtype(np.int16), 1.0, 0.0, 0.0)
        if lo >= 0 and hi <= _UINT16.max:
            return PixelEncoding(np.dtype(np.uint16), 1.0, 0.0, 0.0)
        offset = lo - int(_INT16.min)
        if hi - lo <= _UINT16.max and abs(offset) < 10**15 and float(_ds(offset)) == offset:
            # Shift the range into int16 with an integer intercept: still exact.
            return PixelEncoding(np.dtype(np.int16), 1.0, float(offset), 0.0)

    lo, hi = float(vmin), float(vmax)
    if hi == lo:
        intercept = _ds_float(lo)
        return PixelEncoding(np.dtype(np.int16), 1.0, intercept, abs(intercept - lo))
    slope = _ds_float((hi - lo) / _QUANTISATION_STEPS, round_up=True)
    intercept = _ds_float((hi + lo) / 2.0)
    # Half a step, plus float64 rounding of the arithmetic ...
    bound = slope / 2.0 + 4 * np.finfo(np.float64).eps * max(abs(lo), abs(hi))
    encoding = PixelEncoding(np.dtype(np.int16), slope, intercept, float(bound))
    # ... unless the 16-character intercept is far off (range tiny next to the values,
    # values then clip): measure, in chunks to bound memory.
    flat, chunk = volume.reshape(-1), 1 << 22
    measured = max(float(np.max(np.abs(encoding.decode(encoding.encode(part)) - part)))
                   for part in (flat[start:start + chunk] for start in range(0, flat.size, chunk)))
    if measured > bound:
        encoding = dataclasses.replace(encoding, max_error=measured)
    return encoding


def _is_integral(values: np.ndarray) -> bool:
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return True
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _ds(value: float) -> str:
    """A float as a DICOM DS string: the most significant digits that fit 16 characters.

    (pydicom's format_number_as_ds can return 17 characters, e.g. for 9.999999999999996.)
    """
    value = float(value)
    if not np.isfinite(value):
        raise InputError(f"cannot write {value} as a DICOM decimal string")
    for digits in range(16, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return "0" if float(text) == 0.0 else text
    raise AssertionError("unreachable: 1 significant digit always fits")


def _ds_float(value: float, round_up: bool = False) -> float:
    """``value`` rounded to what a DS string holds (so encoding uses the written number)."""
    result = float(_ds(value))
    if round_up:
        while result < value:  # keep a quantisation step at least as large as asked
            value = np.nextafter(value, np.inf) * (1 + 1e-14)
            result = float(_ds(value))
    return result


# --- public API -------------------------------------------------------------------

def dicomize_array(volume: np.ndarray, geometry: VolumeGeometry, out_dir: os.PathLike | str, *,
                   modality: str = "CT", patient_name: str = "Anonymous",
                   patient_id: Optional[str] = None, study_instance_uid: Optional[str] = None,
                   series_description: Optional[str] = None, series_number: int = 1,
                   standard_orientation: bool = False,
                   force: bool = False, progress: Optional[ProgressCallback] = None) -> List[str]:
    """Write ``volume`` as a DICOM series, one file per slice, into ``out_dir``.

    By default the series keeps the volume's storage order, flipped axes included (a NIfTI stored
    right to left gives images whose columns run right to left; the geometry says so and every
    reader that honours Image Orientation places them right). ``standard_orientation=True``
    writes the standard display orientation instead (:func:`to_standard_orientation`: axial
    columns from the patient's right to left, rows from anterior to posterior), the same voxels
    at the same LPS positions.

    Args:
        volume: voxel values indexed ``[k, j, i]`` (slice, row, column).
        geometry: its grid; ``geometry.ijk_to_lps`` maps (i, j, k) to **LPS** mm.
        out_dir: folder to create (or an empty existing one).
        modality: "CT" (CT Image Storage), "MR" (MR Image Storage) or "OT" (Secondary Capture).
        patient_name, patient_id: patient identification; a random ID when None.
        study_instance_uid: put the series into this study; a new study when None.
        series_description, series_number: shown in DICOM browsers.
        standard_orientation: reorder the in-plane axes to the standard orientation (default
            False: the storage order of ``volume``).
        force: write into a non-empty folder; same-named files are replaced, others are kept.
        progress: ``progress(done, total, message)``, called once per file.

    Returns:
        Paths of the files written, in slice order (k = 0 first).

    Raises:
        InputError: unusable volume or option; GeometryError: the grid cannot be
        described in DICOM (volume shape differs, sheared rows/columns, no patient space).
        OutputError: ``out_dir`` is not empty (and not ``force``) or cannot be written.
    """
    modality = str(modality).upper()
    if modality not in _SOP_CLASSES:
        raise InputError(f"modality must be one of {', '.join(_SOP_CLASSES)}, got {modality!r}")
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError(f"the volume must be 3D (K, J, I), got shape {volume.shape}")
    if volume.dtype == bool:
        volume = volume.view(np.uint8)
    _check_geometry(volume, geometry)
    if standard_orientation:
        volume, geometry = to_standard_orientation(volume, geometry)
    if not 0 <= int(series_number) <= 2**31 - 1:
        raise InputError(f"series number must be a non-negative 32-bit integer, got {series_number}")

    encoding = choose_pixel_encoding(volume, modality)
    if not encoding.exact:
        log.info("voxel values quantised to int16: slope %s, intercept %s, max error %.3g",
                 encoding.slope, encoding.intercept, encoding.max_error)

    out = Path(out_dir)
    check_output_dir(out, force)
    template = _series_template(volume, geometry, encoding, modality, patient_name,
                                patient_id, study_instance_uid, series_description, series_number)
    n_slices = volume.shape[0]
    width = max(4, len(str(n_slices)))
    names: List[str] = []
    # The series is written into a hidden folder beside ``out`` and renamed into place whole:
    # a failure or a kill leaves no partial series (core.outputs.staged_folder).
    with staged_folder(out, force) as stage:
        for k in track(range(n_slices), progress, "Writing DICOM slices"):
            ds = _slice_dataset(template, volume[k], k, geometry, encoding)
            name = f"IMG{k + 1:0{width}d}.dcm"
            write_atomic(stage / name, lambda f, ds=ds: pydicom.dcmwrite(f, ds, enforce_file_format=True))
            names.append(name)
    written = [str(out / name) for name in names]
    return written


#: Per slice axis (the LPS axis the slice normal is closest to: 0 sagittal, 1 coronal, 2 axial):
#: (LPS axis, sign) that the column index i and the row index j should follow on screen.
_STANDARD_IN_PLANE = {2: ((0, 1), (1, 1)),    # axial: columns to the patient's left, rows to posterior
                      1: ((0, 1), (2, -1)),   # coronal: columns to the left, rows to inferior
                      0: ((1, 1), (2, -1))}   # sagittal: columns to posterior, rows to inferior


def to_standard_orientation(volume: np.ndarray, geometry: VolumeGeometry) -> Tuple[np.ndarray, VolumeGeometry]:
    """The same voxels at the same LPS positions with the in-plane axes swapped and flipped into
    the standard (radiological) display order: axial images with columns running from the
    patient's right to left (+L) and rows from anterior to posterior (+P); coronal: left, then
    inferior; sagittal: posterior, then inferior. The slice axis and its order are kept.
    ``volume`` is (K, J, I); returns a view of it and the new geometry (LPS)."""
    d = geometry.directions
    plane = int(np.argmax(np.abs(d[:, 2])))
    (wi, si), (wj, sj) = _STANDARD_IN_PLANE[plane]
    src_i, src_j = (0, 1) if abs(d[wi, 0]) >= abs(d[wi, 1]) else (1, 0)
    flips = (np.sign(d[wi, src_i]) != si, np.sign(d[wj, src_j]) != sj)
    sizes = (geometry.shape[2], geometry.shape[1], geometry.shape[0])  # along i, j, k
    new_to_old = np.zeros((4, 4))
    new_to_old[2, 2] = new_to_old[3, 3] = 1.0
    for new_axis, (old_axis, flip) in enumerate(zip((src_i, src_j), flips)):
        new_to_old[old_axis, new_axis] = -1.0 if flip else 1.0
        new_to_old[old_axis, 3] = sizes[old_axis] - 1 if flip else 0.0
    out = volume if (src_i, src_j) == (0, 1) else volume.transpose(0, 2, 1)
    out = out[:, ::-1 if flips[1] else 1, ::-1 if flips[0] else 1]
    affine = geometry.ijk_to_lps @ new_to_old
    return out, VolumeGeometry(out.shape, affine, geometry.in_patient_space)


def dicomize_file(path: os.PathLike | str, out_dir: os.PathLike | str, **options) -> List[str]:
    """Read an NRRD, NIfTI or MHA volume with SimpleITK (LPS) and write it as a DICOM series.

    Takes the keyword options of :func:`dicomize_array`; ``series_description`` defaults to
    the file name. A 2D image becomes a single slice of 1 mm thickness.

    Raises:
        InputError: the file is missing, unreadable, 4D, or holds vector/multi-component
        voxels (a segmentation with several layers, RGB); plus what dicomize_array raises.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"cannot read as an image volume (NRRD, NIfTI, MHA): "
                         f"{_first_line(error)}", path) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"has {image.GetNumberOfComponentsPerPixel()} values per voxel; "
                         f"only scalar (single-component) volumes can be dicomized", path)
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputError(f"is a {image.GetDimension()}D image; only 3D volumes can be "
                         f"dicomized", path)
    try:
        geometry = VolumeGeometry.from_sitk(image)
    except GeometryError as error:
        raise GeometryError(error.problem, path) from None
    options.setdefault("series_description", _stem(path))
    return dicomize_array(sitk.GetArrayViewFromImage(image), geometry, out_dir, **options)


# --- datasets ---------------------------------------------------------------------

def _check_geometry(volume: np.ndarray, geometry: VolumeGeometry) -> None:
    if tuple(volume.shape) != tuple(geometry.shape):
        raise GeometryError(f"volume shape {volume.shape} (K, J, I) differs from its geometry "
                            f"{geometry.shape}")
    if not geometry.in_patient_space:
        raise GeometryError("the volume has no position in patient space; a DICOM image "
                            "series needs one")
    d = geometry.directions
    if abs(float(np.dot(d[:, 0], d[:, 1]))) > DIRECTION_TOLERANCE:
        # DICOM rows and columns are orthogonal by definition.
        raise GeometryError("row and column directions of the volume are not orthogonal; "
                            "resample it before dicomizing")


def _series_template(volume: np.ndarray, geometry: VolumeGeometry, encoding: PixelEncoding,
                     modality: str, patient_name: str, patient_id: Optional[str],
                     study_instance_uid: Optional[str], series_description: Optional[str],
                     series_number: int) -> Dataset:
    """The attributes shared by every slice."""
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = Dataset()
    texts = [patient_name, patient_id or "", series_description or ""]
    if not all(str(t).isascii() for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = _SOP_CLASSES[modality]
    ds.ImageType = _IMAGE_TYPES[modality]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StudyDate, ds.StudyTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series_description or "Dicomized volume"
    ds.ManufacturerModelName = MANUFACTURER
    ds.DerivationDescription = _derivation_description(encoding)
    ds.PatientName = patient_name
    ds.PatientID = patient_id if patient_id is not None else f"DAE-{uuid.uuid4().hex[:12]}"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    if modality == "OT":
        ds.ConversionType = "WSD"  # workstation: the volume came from software
    else:
        ds.SliceThickness = _ds(_slice_spacing(geometry))
        ds.SpacingBetweenSlices = _ds(_slice_spacing(geometry))
    if modality == "CT":
        ds.KVP = ""
    if modality == "MR":
        # Acquisition is unknown; these Type 1/2 attributes get neutral values.
        ds.ScanningSequence = "RM"  # research mode
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = ""
        ds.RepetitionTime = ""
        ds.EchoTime = ""
        ds.EchoTrainLength = ""
    ds.SoftwareVersions = __version__
    ds.PatientPosition = ""
    ds.Laterality = ""  # Type 2C; the body part is unknown, so it may be paired
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(volume.shape[1])
    ds.Columns = int(volume.shape[2])
    spacing = geometry.spacing
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (j), column spacing (i)
    ds.BitsAllocated = encoding.bits_allocated
    ds.BitsStored = encoding.bits_allocated
    ds.HighBit = encoding.bits_allocated - 1
    ds.PixelRepresentation = encoding.pixel_representation
    ds.BurnedInAnnotation = "NO"
    center, width = _window(volume)
    ds.WindowCenter = _ds(center)
    ds.WindowWidth = _ds(width)
    ds.WindowCenterWidthExplanation = "1st to 99th percentile"
    if modality != "MR" or encoding.slope != 1.0 or encoding.intercept != 0.0:
        # Rescale is not part of the MR Image IOD: written there only when needed (common
        # practice, dciodvfy calls it a "Standard Extended SOP Class").
        ds.RescaleIntercept = _ds(encoding.intercept)
        ds.RescaleSlope = _ds(encoding.slope)
        if modality != "CT":
            ds.RescaleType = "US"  # unspecified; CT values are Hounsfield units by default
    if modality == "OT":
        # Secondary Capture has no Image Plane module: Patient Orientation is required
        # instead (the plane attributes are still written, as a standard extension).
        directions = geometry.directions
        ds.PatientOrientation = [_orientation_letters(directions[:, 0]),
                                 _orientation_letters(directions[:, 1])]
    return ds


def _slice_dataset(template: Dataset, image: np.ndarray, k: int, geometry: VolumeGeometry,
                   encoding: PixelEncoding) -> Dataset:
    ds = copy.deepcopy(template)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = k + 1
    position = geometry.ijk_to_lps_points(np.array([[0.0, 0.0, float(k)]]))[0]
    directions = geometry.directions
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([directions[:, 0],
                                                                  directions[:, 1]])]
    ds.SliceLocation = _ds(float(np.dot(position, geometry.slice_normal)))
    ds.PixelData = np.ascontiguousarray(encoding.encode(image)).astype(
        np.dtype(encoding.dtype).newbyteorder("<"), copy=False).tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _orientation_letters(direction_lps: np.ndarray) -> str:
    """DICOM Patient Orientation letters of an LPS direction, strongest component first."""
    letters = []
    for axis in np.argsort(-np.abs(direction_lps)):
        if abs(direction_lps[axis]) > 1e-3 and len(letters) < 3:
            # Patient Orientation says H(ead)/F(eet), not S/I.
            letters.append("LPH"[axis] if direction_lps[axis] > 0 else "RAF"[axis])
    return "".join(letters)


def _slice_spacing(geometry: VolumeGeometry) -> float:
    """Distance between slice planes (k step projected on the normal, for sheared stacks)."""
    step = geometry.ijk_to_lps[:3, 2]
    return abs(float(np.dot(step, geometry.slice_normal)))


def _window(volume: np.ndarray) -> Tuple[float, float]:
    """Window centre and width (real-world values) from the 1st and 99th percentiles.

    Voxels at the minimum are left out when they are a fill value (more than 2% of the
    volume, like CT's -3024 outside the reconstruction circle): they would widen the
    window to useless.
    """
    flat = volume.reshape(-1)
    stride = max(1, flat.size // 2_000_000)  # a sample keeps percentiles fast on big volumes
    sample = flat[::stride].astype(np.float64)
    lowest = sample.min()
    at_lowest = sample == lowest
    if 0.02 < at_lowest.mean() < 1.0:
        sample = sample[~at_lowest]
    lo, hi = np.percentile(sample, [1, 99])
    width = max(float(hi - lo), 1.0)  # DICOM requires a width of at least 1
    return float(f"{(lo + hi) / 2.0:.6g}"), float(f"{width:.6g}")


def _derivation_description(encoding: PixelEncoding) -> str:
    text = "Converted to DICOM by DicomAnnotEmbed"
    if not encoding.exact:
        text += f"; values quantised to int16, max error {encoding.max_error:.3g}"
    return text


# --- files ------------------------------------------------------------------------

def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK messages start with a source location; the last line holds the reason.
    return lines[-1] if lines else type(error).__name__


def _stem(path: Path) -> str:
    name = path.name
    return re.sub(r"(\.nii\.gz|\.seg\.nrrd|\.[^.]+)$", "", name, flags=re.IGNORECASE) or name
