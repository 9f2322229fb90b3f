"""Conventions of known datasets applied to segmentations before they are written (SEG, SR).

Presets sit above ``core`` and ``dicom`` and below the encodings: the SEG export, the SR export
and the CSV pipeline all take a preset from here, so that every object they write agrees.
"""
from .lidc import LIDC_CATEGORY, LIDC_LUNG, LIDC_NODULE, apply_lidc_preset, check_lidc_tracking, lidc_numbers, lidc_terminology

__all__ = ["LIDC_CATEGORY", "LIDC_LUNG", "LIDC_NODULE", "apply_lidc_preset", "check_lidc_tracking", "lidc_numbers",
           "lidc_terminology"]
