"""DICOM Structured Reports, TID 1500 "Imaging Measurement Report", both ways.

Export (:func:`export_sr`, called by ``api.export_sr``, which reads the SEG, the segmentation
and the markups files) writes one Comprehensive 3D SR per call. By default (``engine="fast"``)
the document is built with pydicom alone (:mod:`template`, equal element by element to what
highdicom's TID 1500 classes build, tested; highdicom is not imported), ``engine="highdicom"``
builds it with those classes; sources of an image class the template does not list fall back to
highdicom for the header and the image library:

* the document: observer context (a person and/or a device), procedure reported (by modality),
  language (English, en-US), an image library of the source images, and the evidence (the SEG
  and every source image, in the Current Requested Procedure Evidence Sequence);
* one **volumetric** measurement group (TID 1411) per segment of the SEG, referencing that
  segment (Referenced Segment + Source Series for Segmentation) with the SEG's Tracking
  Identifier and Tracking UID; Finding Category / Finding / Finding Site from the segment's
  terminology (a type modifier is a concept modifier of the Finding: Laterality for CID 244
  codes, else Topographical modifier; the anatomic region modifier likewise of the Finding
  Site); the measurements of :mod:`measurements` with UCUM units, the algorithm (TID 4019:
  ``DicomAnnotEmbed`` and its version) and, for image statistics, their Derivation;
  qualitative evaluations from an evaluation CSV (:mod:`evaluations`): coded ones as CODE
  items, free text as TEXT items;
* one group per markup, coordinates as SCOORD3D in the series' Frame of Reference, in **LPS**
  millimetres (DICOM's patient coordinate system, which needs no conversion):

  ============  ===================================================================================
  point list    one planar group (TID 1410) per control point, Image Region POINT; the points of
                a list share the list's Tracking Identifier (its name) and Tracking UID
  line          TID 1501 group, Length (mm) inferred from a POLYLINE of its 2 points
  open curve    TID 1501 group, Path length (mm) inferred from the POLYLINE of its points
  angle         TID 1501 group, Angle (deg) inferred from the POLYLINE of its 3 points
  closed curve  planar group, Image Region POLYGON (closed, coplanar points) with Area (mm2) and
                Perimeter (mm); a non-planar closed curve: TID 1501 group whose Perimeter is
                inferred from a closed POLYLINE (a POLYGON must be planar), and its Area
  plane         planar group, Image Region POLYGON of the corners of its rectangle (no measurement)
  ROI box       volumetric group whose Volume Surface is the box's 6 faces, each a closed planar
                POLYGON of 4 corners, with its Volume (mm3)
  ============  ===================================================================================

  highdicom (after TID 1410) takes only POINT, POLYGON and ELLIPSE as a 3D planar image region;
  lines, curves and angles are therefore the coordinates their measurement is inferred from
  (TID 300), and a point list is one POINT group per point.

Import (:func:`import_sr`) reads any TID 1500 report (Enhanced, Comprehensive or Comprehensive
3D SR; ours, dcmqi's, highdicom's) into markups in **LPS** (SCOORD3D as they are; image-relative
SCOORD through the position and orientation of the referenced image, so oblique series are
right), a list of :class:`MeasurementRecord` (written as CSV by :func:`write_measurements_csv`),
and the referenced SEG(s) through the ``seg_reader`` the caller gives (``api.import_sr`` gives
the SEG encoding's import) when found beside the SR or in the given folders. What cannot be found is listed in :attr:`SrImport.missing` and logged.

Text that is not ASCII makes the document declare ISO_IR 192 (UTF-8); import reads any declared
character set. The image library of an enhanced multi-frame source takes its spacing, orientation
and position from the functional groups. Import keeps each group's Finding Category
(:attr:`MeasurementRecord.finding_category`).

When there are both segments and markups, the markup groups go in a second document of the same
series (``sr.dcm`` -> ``sr_markups.dcm``, :func:`markups_document_path`), which the first lists in
its Pertinent Other Evidence Sequence; import follows that reference and reads both. The standard
allows one report holding both, but PixelMed's DicomSRValidator (20220618) checks every group of a
report against TID 1411 once one group references a segment, and flags the TID 1410/1501 markup
groups; ``SrExportOptions(markups_in_own_document=False)`` still writes one document.

Modules: ``codes`` (SOP classes, concepts), ``records`` (:class:`MeasurementRecord` and its CSV),
``encode`` (export), ``decode`` (import). The LIDC preset is :mod:`presets.lidc`.
"""
from __future__ import annotations

from ...presets.lidc import apply_lidc_preset, lidc_numbers
from .codes import (ALGORITHM_NAME, COMPREHENSIVE_3D_SR, PRIVATE_SCHEME, PRIVATE_SCHEME_NAME, SEG_SOP_CLASSES,
                    SR_SOP_CLASSES, markups_document_path, private_concept)
from .decode import SegReader, SrImport, companion_report_uids, import_sr, read_sr_dataset, sr_summary
from .encode import (INSIDE_TOLERANCE_MM, SrExportOptions, SrExportResult, check_markup_inside, check_seg_series,
                     export_sr, read_seg_header)
from .records import CSV_COLUMNS, MeasurementRecord, read_measurements_csv, write_measurements_csv

__all__ = ["ALGORITHM_NAME", "COMPREHENSIVE_3D_SR", "CSV_COLUMNS", "INSIDE_TOLERANCE_MM", "MeasurementRecord",
           "PRIVATE_SCHEME", "PRIVATE_SCHEME_NAME", "SEG_SOP_CLASSES", "SR_SOP_CLASSES", "SegReader",
           "SrExportOptions", "SrExportResult", "SrImport", "apply_lidc_preset", "check_markup_inside",
           "check_seg_series", "companion_report_uids", "export_sr", "import_sr", "lidc_numbers", "markups_document_path", "private_concept", "read_measurements_csv",
           "read_seg_header", "read_sr_dataset", "sr_summary", "write_measurements_csv"]
