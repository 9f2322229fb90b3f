"""DicomAnnotEmbed core: segmentations and markups to and from DICOM, without Slicer.

Coordinates: DICOM and every array/affine here are LPS; Slicer is RAS (see geometry.LPS_TO_RAS).
"""
__version__ = "0.1.0"
