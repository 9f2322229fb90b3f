"""sRGB <-> DICOM-encoded CIELab (RecommendedDisplayCIELabValue), for the SEG and GSPS writers and
readers and the dcmqi metadata. Its own module so that reading a SEG does not load the dcmqi
metadata module (its import was 6 ms of ``seg import``'s start-up from source)."""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import InputError


def rgb_to_dicom_lab(rgb01: Sequence[float]) -> tuple[int, int, int]:
    """DICOM-encoded CIELab (RecommendedDisplayCIELabValue, 3 ints 0-65535) of an sRGB colour.

    sRGB (IEC 61966-2-1) to CIE XYZ to CIELab with the D65 white point, then the encoding of
    DICOM PS3.3 C.10.7.1.1: L* 0..100 and a*, b* -128..127 scaled linearly to 0..0xFFFF.
    This is what highdicom's ``CIELabColor``, dcmqi and pixelmed compute (the tests check
    highdicom's values); it is done here so that reading a SEG does not import highdicom.

    Args:
        rgb01: red, green, blue in [0, 1].

    Raises:
        InputError: not 3 finite numbers in [0, 1].
    """
    return _lab16_from_rgb01_builtin(_check_rgb01(rgb01))


def dicom_lab_to_rgb(lab16: Sequence[int]) -> tuple[float, float, float]:
    """sRGB in [0, 1] of a DICOM-encoded CIELab colour (the inverse of :func:`rgb_to_dicom_lab`;
    colours outside the sRGB gamut are clipped), not rounded to 8-bit steps.

    Raises:
        InputError: not 3 integers in 0-65535.
    """
    values = list(lab16) if not isinstance(lab16, (str, bytes)) else []
    if len(values) != 3 or not all(_is_integral(v) and 0 <= v <= 0xFFFF for v in values):
        raise InputError(f"a DICOM CIELab value must be 3 integers 0-65535, got {lab16!r}")
    return _rgb01_from_lab16_builtin([int(v) for v in values])


def _is_integral(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()


def _check_rgb01(rgb01: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in rgb01)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise InputError(f"an RGB colour must be 3 numbers in [0, 1], got {rgb01!r}")
    return values


# sRGB primaries with the D65 white point (IEC 61966-2-1), linear RGB -> XYZ (Y of white = 1).
_RGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805],
                        [0.2126, 0.7152, 0.0722],
                        [0.0193, 0.1192, 0.9505]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0


def _lab16_from_rgb01_builtin(rgb01: Sequence[float]) -> tuple[int, int, int]:
    """:func:`rgb_to_dicom_lab` without highdicom."""
    c = np.asarray(rgb01, dtype=float)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (_RGB_TO_XYZ @ linear) / _D65_WHITE
    f = np.where(t > _DELTA ** 3, np.cbrt(t), t / (3 * _DELTA ** 2) + 4.0 / 29.0)
    lightness, a, b = 116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])
    encoded = (lightness * 0xFFFF / 100.0, (a + 128.0) * 0xFFFF / 255.0, (b + 128.0) * 0xFFFF / 255.0)
    return tuple(int(min(max(round(v), 0), 0xFFFF)) for v in encoded)


def _rgb01_from_lab16_builtin(lab16: Sequence[int]) -> tuple[float, float, float]:
    """:func:`dicom_lab_to_rgb` without highdicom (not rounded to 8-bit steps)."""
    lightness = lab16[0] * 100.0 / 0xFFFF
    a = lab16[1] * 255.0 / 0xFFFF - 128.0
    b = lab16[2] * 255.0 / 0xFFFF - 128.0
    fy = (lightness + 16.0) / 116.0
    f = np.array([fy + a / 500.0, fy, fy - b / 200.0])
    t = np.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0))
    linear = np.clip(_XYZ_TO_RGB @ (t * _D65_WHITE), 0.0, 1.0)
    c = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))
