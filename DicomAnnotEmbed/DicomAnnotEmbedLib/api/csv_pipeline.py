"""Annotation table (CSV) to DICOM: the table read onto a series (:mod:`..files.csv_table`),
then the overlay series, the SEG, the SR, the RT Structure Set and the presentation state (GSPS)
written as a Slicer export writes them
(``api.import_csv``, ``dicomannotembed csv import``). Coordinates: markups are written in LPS.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ..core.errors import InputError
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries, load_series
from ..files.csv_table import PathLike, TableConversion, read_annotation_table

log = logging.getLogger(__name__)

FORMATS = ("overlay", "seg", "sr", "rtstruct", "gsps")


@dataclass
class TableImportResult:
    """What :func:`import_table` wrote.

    Attributes:
        conversion: the table as read (segments, markups, evaluations, bad rows).
        out_dir: the output folder.
        segmentation_path, markups_path, evaluations_path, bad_rows_path: files written there
            (None when there was nothing to write).
        overlay: :class:`overlay.OverlayExportResult` or None; seg: :class:`seg.SegExportResult`
            or None; sr: :class:`sr.SrExportResult` or None; rtstruct:
            :class:`rtstruct.RtStructExportResult` or None; gsps: :class:`gsps.GspsExportResult` or None.
        skipped: outputs that were not written, and why.
    """

    conversion: TableConversion
    out_dir: Path
    segmentation_path: Optional[Path] = None
    markups_path: Optional[Path] = None
    evaluations_path: Optional[Path] = None
    bad_rows_path: Optional[Path] = None
    overlay: object = None
    seg: object = None
    sr: object = None
    rtstruct: object = None
    gsps: object = None
    skipped: List[str] = field(default_factory=list)


def import_table(table: PathLike, series: Union[ReferenceSeries, PathLike], out_dir: PathLike, *,
                 force: bool = False, progress: Optional[ProgressCallback] = None, **options) -> TableImportResult:
    """:func:`_import_table` (its arguments and outputs), written into a hidden folder beside
    ``out_dir`` that is renamed into place when complete: a failure or a kill leaves no partial
    output (core.outputs.staged_folder)."""
    from ..core.outputs import check_output_dir, relocate, staged_folder

    check_output_dir(out_dir, force)
    with staged_folder(out_dir, force) as stage:
        result = _import_table(table, series, stage, force=force, progress=progress, **options)
    return relocate(result, stage, Path(out_dir))


def _import_table(table: PathLike, series: Union[ReferenceSeries, PathLike], out_dir: PathLike, *,
                 formats: Sequence[str] = FORMATS, series_uid: Optional[str] = None, boundary: str = "inside",
                 code_table: Union[str, PathLike] = "lidc", lines_in_segments: bool = False,
                 position_tolerance_mm: Optional[float] = None, lidc: bool = False, split: bool = False,
                 observer_name: Optional[str] = None, force: bool = False,
                 progress: Optional[ProgressCallback] = None) -> TableImportResult:
    """Read an annotation table onto a series and write what a Slicer export writes.

    Writes into ``out_dir`` (which must be empty unless ``force``): ``segmentation.seg.nrrd``
    (the rasterised findings, for Slicer), ``markups.mrk.json`` (points and polylines, LPS),
    ``evaluations.csv`` (the per-finding attributes in :mod:`evaluations`' format), and per
    ``formats``: ``overlay/`` (:func:`api.export_overlay`), ``seg.dcm`` (:func:`api.export_seg`),
    ``sr.dcm`` (:func:`api.export_sr`: measurements of every segment, the evaluations; the
    markups in ``sr_markups.dcm``, which ``sr.dcm`` references), ``rtstruct.dcm`` (:func:`api.export_rtstruct`: segments as closed contours, points
    and polylines as POINT / OPEN_PLANAR ROIs), ``annotations.pr.dcm`` (:func:`api.export_gsps`:
    the markups, the ovals and circles of findings drawn only with them as ELLIPSE graphics, and
    each other segment's outline, drawn on the images). ``sr`` needs the SEG, so it
    implies ``seg``. With bad rows, ``bad_rows.csv``
    lists them (row, finding, problem); the caller decides whether that is an error.

    Args:
        formats: any of "overlay", "seg", "sr", "rtstruct", "gsps".
        lidc: the LIDC preset (:func:`presets.lidc.apply_lidc_preset`, SR ``lidc``).
        split: overlay export: several series when there are more than 16 planes.
        Other arguments: see :func:`read_annotation_table` and :func:`sr.export_sr`.

    Raises:
        InputError: an unknown format, an unreadable table or series, or no row converted.
        OutputError: the output folder is not empty or not writable.
    """
    from ..core.outputs import prepare_output_dir
    from . import conversions as api

    formats = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"unknown format(s) {', '.join(unknown) or '(none)'}; expected some of {', '.join(FORMATS)}")
    if "sr" in formats and "seg" not in formats:
        log.info("the SR references a SEG: seg.dcm is written too")
        formats.append("seg")
    out = prepare_output_dir(out_dir, force)
    reference = series if isinstance(series, ReferenceSeries) else load_series(series, series_uid, progress)
    conversion = read_annotation_table(table, reference, boundary=boundary, code_table=code_table,
                                       lines_in_segments=lines_in_segments,
                                       position_tolerance_mm=position_tolerance_mm, progress=progress)
    result = TableImportResult(conversion, out)
    segmentation = conversion.segmentation
    if "overlay" in formats and not split:  # before anything is written
        from ..core.errors import TooManySegmentsError
        from ..encodings.overlay import OVERLAY_GROUPS, used_overlay_groups

        free = len(OVERLAY_GROUPS) - len(used_overlay_groups(reference.datasets))
        planes = len(segmentation.segments) + len(conversion.markups)
        if planes > free:
            raise TooManySegmentsError(
                f"{len(segmentation.segments)} segments and {len(conversion.markups)} markups need {planes} overlay "
                f"planes, but the images have {free} free overlay groups; use --split (split=True) to write several "
                "overlay series, or leave overlay out of --formats", table)
    if conversion.bad_rows:
        result.bad_rows_path = out / "bad_rows.csv"
        _write_csv(result.bad_rows_path, ["row", "finding", "problem"],
                   [[p.row, p.finding, p.problem] for p in conversion.bad_rows])
    if not segmentation.segments and not conversion.markups:
        shown = "; ".join(str(p) for p in conversion.bad_rows[:10])
        more = f" (+{len(conversion.bad_rows) - 10} more)" if len(conversion.bad_rows) > 10 else ""
        reason = (f"{len(conversion.bad_rows)} bad rows: {shown}{more}" if conversion.bad_rows else
                  f"{conversion.other_series_rows} rows of other series, none of series "
                  f"{reference.series_instance_uid}" if conversion.other_series_rows else "no data rows")
        raise InputError(f"nothing to convert: {reason}", table)
    if lidc and segmentation.segments:
        from ..presets.lidc import apply_lidc_preset

        apply_lidc_preset(segmentation)
    from ..files.markups_io import write_markups
    from ..files.segio import write_seg_nrrd

    if segmentation.segments:
        result.segmentation_path = out / "segmentation.seg.nrrd"
        write_seg_nrrd(result.segmentation_path, segmentation)
    if conversion.markups:
        result.markups_path = out / "markups.mrk.json"
        write_markups(result.markups_path, conversion.markups)
    if conversion.evaluations:
        result.evaluations_path = out / "evaluations.csv"
        _write_csv(result.evaluations_path, ["segment", "concept", "value"],
                   [[e.segment, str(e.concept) if e.concept and e.score is None else e.concept_name,
                     str(e.score) if e.score is not None else (str(e.value) if e.value else e.text)]
                    for e in conversion.evaluations])
    if "overlay" in formats:
        result.overlay = api.export_overlay(reference, segmentation if segmentation.segments else None,
                                            conversion.markups, out / "overlay", split=split, force=force,
                                            progress=progress)
    if "seg" in formats:
        if segmentation.segments:
            # BINARY when an SR references it: dsrdump and dciodvfy (before Supplement 243) refuse a LABELMAP one.
            result.seg = api.export_seg(reference, segmentation, out / "seg.dcm",
                                        seg_type="binary" if "sr" in formats else "auto", progress=progress)
        else:
            result.skipped.append("seg: no finding has an area (only points and polylines)")
    if "sr" in formats:
        if result.seg is not None:
            # the SEG's segments are taken from the segmentation in memory, not decoded back from seg.dcm
            result.sr = api.export_sr(reference, result.seg.paths[0], out / "sr.dcm", segmentation=segmentation,
                                      seg_written=result.seg, markups=conversion.markups,
                                      evaluations=conversion.evaluations, lidc=lidc, code_table=code_table,
                                      observer_name=observer_name, progress=progress)
        else:
            result.skipped.append("sr: it needs a SEG, and no finding has an area")
    if "rtstruct" in formats:
        from .rtstruct import export_rtstruct

        result.rtstruct = export_rtstruct(reference, segmentation if segmentation.segments else None,
                                          out / "rtstruct.dcm", markups=conversion.markups, force=force,
                                          progress=progress)
    if "gsps" in formats:
        from ..core.model import Segmentation
        from .gsps import export_gsps

        # A finding drawn only with ovals and circles is drawn as those ellipses, not as its outline.
        drawn = {markup.attributes["finding"] for markup in conversion.ellipses}
        outlined = Segmentation(reference.geometry, segmentation.layers,
                                [s for s in segmentation.segments if s.id not in drawn])
        result.gsps = export_gsps(reference, conversion.markups + conversion.ellipses, out / "annotations.pr.dcm",
                                  segmentation=outlined if outlined.segments else None,
                                  outlines=bool(outlined.segments), force=force, progress=progress)
    for message in result.skipped:
        log.warning("not written: %s", message)
    return result


def _write_csv(path: Path, header: List[str], rows: List[list]) -> None:
    from ..core.outputs import atomic_path

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buffer.getvalue(), encoding="utf-8")


__all__ = ["FORMATS", "TableImportResult", "import_table"]
