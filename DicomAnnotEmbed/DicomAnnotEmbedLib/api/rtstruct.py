"""RT Structure Set conversions of the Python API (re-exported by ``api``; no Slicer needed).

Example::

    from DicomAnnotEmbedLib import api
    api.export_rtstruct("case/series", "case/segmentation.seg.nrrd", "case/rtstruct.dcm",
                        markups=["case/markups.mrk.json"], interpreted_types={"Tumor": "GTV"})
    imported = api.import_rtstruct("case/rtstruct.dcm", "case/series",
                                   segmentation_out="back.seg.nrrd", markups_out="back.mrk.json")

Coordinates: DICOM contours are LPS; ``Segmentation`` and ``Markup`` objects hold LPS, and
``Markup.points_ras`` gives RAS for Slicer.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Union

from ..core.errors import InputError
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries
from ..encodings.rtstruct import (DEFAULT_TOLERANCE_MM, RtStructExportOptions, RtStructExportResult,
                                  RtStructImport)
from .conversions import MarkupsSource, PathLike, SegmentationSource, _series, load_annotations, write_annotations


def export_rtstruct(series: Union[ReferenceSeries, PathLike], segmentation: SegmentationSource = None,
                    out: PathLike = "rtstruct.dcm", *, markups: Sequence[MarkupsSource] = (),
                    series_uid: Optional[str] = None, interpreted_type: Optional[str] = None,
                    interpreted_types: Optional[Dict[str, str]] = None,
                    options: Optional[RtStructExportOptions] = None, force: bool = True,
                    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                    progress: Optional[ProgressCallback] = None) -> RtStructExportResult:
    """Write an RT Structure Set of ``segmentation`` (a ``.seg.nrrd`` or label map path, a
    ``Segmentation`` or a label array; resampled onto the series when needed) and ``markups``
    (``.mrk.json`` paths or ``Markup`` objects, LPS) referencing ``series``.

    ``interpreted_type``: RT ROI Interpreted Type of every segment (default ORGAN, or the
    segment's ``RTROIInterpretedType`` attribute); ``interpreted_types``: per segment name or id.
    ``force=False`` refuses to replace ``out``. Returns :class:`encodings.rtstruct.RtStructExportResult`.
    """
    from pathlib import Path

    from ..core.errors import OutputError
    from ..encodings.rtstruct import export_rtstruct as write_rtstruct

    if not force and Path(out).exists():
        raise OutputError("exists; use --force (force=True) to replace it", out)
    reference = _series(series, series_uid, progress)
    annotations = load_annotations(reference, segmentation, markups)
    if annotations.segmentation is None and not annotations.markups:
        raise InputError("nothing to export: give a segmentation and/or markups")
    options = dataclasses.replace(options or RtStructExportOptions())
    if interpreted_type:
        options.interpreted_type = interpreted_type.upper()
    if interpreted_types:
        options.interpreted_types = {**options.interpreted_types, **interpreted_types}
    return write_rtstruct(reference, annotations.segmentation, out, markups=annotations.markups, options=options,
                          tolerance_mm=tolerance_mm, progress=progress)


def import_rtstruct(rtstruct_file: PathLike, series: Union[ReferenceSeries, PathLike, None] = None, *,
                    segmentation_out: Optional[PathLike] = None, markups_out: Optional[PathLike] = None,
                    tolerance_mm: float = DEFAULT_TOLERANCE_MM, boundary_pixels: str = "auto",
                    progress: Optional[ProgressCallback] = None) -> RtStructImport:
    """Read any RT Structure Set onto its referenced series' grid (``series``: the series or a
    folder holding it; None: searched beside the file): closed contours become segments (names,
    colours, interpreted types, codes), points and open contours markups (LPS). Optionally write
    ``.seg.nrrd`` (or a label map by suffix) and ``.mrk.json``. What was skipped, and why, is in
    ``result.skipped`` (and logged). ``boundary_pixels`` ("auto", "include", "exclude"): whether the
    pixels a contour passes through the centres of belong to it (see
    :func:`encodings.rtstruct.import_rtstruct`). Returns :class:`encodings.rtstruct.RtStructImport`."""
    from ..encodings.rtstruct import import_rtstruct as read_rtstruct

    imported = read_rtstruct(rtstruct_file, series, tolerance_mm=tolerance_mm, boundary_pixels=boundary_pixels,
                             progress=progress)
    write_annotations(imported.annotations, segmentation_out, markups_out)
    return imported
