"""The one-case conversions of the Python API (re-exported by ``api``; no Slicer needed).

Example::

    from DicomAnnotEmbedLib import api
    result = api.export_overlay("case/series", "case/segmentation.seg.nrrd",
                                markups=["case/markups.mrk.json"], out_dir="case/overlay")
    annotations = api.import_overlay("case/overlay", segmentation_out="back.seg.nrrd",
                                     markups_out="back.mrk.json")

Every coordinate in and out is LPS, as in DICOM; ``model.Markup.points_ras`` gives RAS.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from ..core.errors import DicomAnnotEmbedError, GeometryError, InputError
from ..core.model import AnnotationSet, Markup, Segmentation
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries, gc_paused, load_series

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
SegmentationSource = Union[PathLike, Segmentation, np.ndarray, None]
MarkupsSource = Union[PathLike, Markup]


def load_annotations(series: ReferenceSeries, segmentation: SegmentationSource = None,
                     markups: Iterable[MarkupsSource] = (),
                     label_names: Optional[Dict[int, str]] = None) -> AnnotationSet:
    """Segments and markups placed on the series grid.

    Args:
        series: the reference series.
        segmentation: a ``.seg.nrrd`` / label map path, a DICOM SEG / RTSTRUCT / SR path or an
            overlay series folder (read by :func:`convert.read_segmentation_any`), a :class:`Segmentation` (any grid in the
            same patient space: resampled by nearest neighbour), or a numpy label array (K, J, I)
            or boolean stack (N, K, J, I) already on the series grid.
        markups: ``.mrk.json`` paths and/or :class:`Markup` objects (LPS).
        label_names: names for the values of a plain label map.

    Raises:
        GeometryError: the segmentation cannot lie on the series (names the file).
    """
    from ..files.markups_io import read_markups
    from ..files.segio import load_segmentation, segmentation_from_array

    seg = None
    if isinstance(segmentation, np.ndarray):
        seg = segmentation_from_array(segmentation, series.geometry, label_names)
    elif isinstance(segmentation, Segmentation):
        seg = segmentation.resampled_to(series.geometry)
    elif segmentation is not None:
        from .convert import read_segmentation_any  # DICOM SEG, RTSTRUCT, SR, overlay series: no temporary file

        seg = read_segmentation_any(segmentation, series)
    if seg is None and segmentation is not None and not isinstance(segmentation, (np.ndarray, Segmentation)):
        loaded = load_segmentation(segmentation, label_names)
        try:
            seg = loaded.resampled_to(series.geometry, what=f"segmentation {Path(segmentation).name}")
        except GeometryError as exc:
            raise GeometryError(exc.problem, segmentation) from None
        if seg is not loaded:
            log.info("%s: resampled onto the series grid (%s)", segmentation, series.geometry.describe())
    shapes: List[Markup] = []
    for item in markups:
        shapes.extend([item] if isinstance(item, Markup) else read_markups(item))
    return AnnotationSet(series.geometry, seg, shapes)


def _input_names(segmentation: SegmentationSource, markups: Sequence[MarkupsSource]) -> Optional[str]:
    """The input files given by path (the segmentation, then the markups), for an error that is
    about all of them ("nothing to export"); None when every input is an object."""
    from ..core.errors import name_files

    paths = [p for p in [segmentation, *markups] if isinstance(p, (str, os.PathLike))]
    return name_files(paths) if paths else None


def _series(series: Union[ReferenceSeries, PathLike], series_uid: Optional[str],
            progress: Optional[ProgressCallback]) -> ReferenceSeries:
    return series if isinstance(series, ReferenceSeries) else load_series(series, series_uid, progress)


def export_overlay(series: Union[ReferenceSeries, PathLike], segmentation: SegmentationSource = None,
                   markups: Sequence[MarkupsSource] = (), out_dir: PathLike = "overlay", *,
                   series_uid: Optional[str] = None, preview_dir: Optional[PathLike] = None,
                   preview_slices: Optional[Sequence[int]] = None,
                   progress: Optional[ProgressCallback] = None, **options):
    """Write the overlay-embedded copy of a series (see :func:`overlay.export_overlays` for
    ``options``: keep_uids, split, fill_markups, force, series_description).

    ``preview_dir`` also writes PNG previews of ``preview_slices`` (slice indices k, 0-based along
    the sorted series; default: the most annotated slices).
    """
    from ..encodings.overlay import export_overlays

    reference = _series(series, series_uid, progress)
    if preview_dir is not None:  # options are checked before any work
        from ..core.outputs import check_output_dir

        _check_preview_slices(preview_slices, reference.geometry.shape[0])
        check_output_dir(preview_dir, options.get("force", False))
    annotations = load_annotations(reference, segmentation, markups)
    from ..core.inputs import reading

    named = _input_names(segmentation, markups)  # errors that name no file name the inputs
    if preview_dir is None:
        with reading(named):
            return export_overlays(reference, annotations, out_dir, progress=progress, **options)
    from ..core.outputs import relocate, staged_folder

    # The previews are rendered first and committed right after the series (two renames), so
    # that a killed export leaves both or neither under their final names.
    with staged_folder(preview_dir, options.get("force", False)) as stage:
        files = _render_previews(reference, annotations, stage, preview_slices)
        with reading(named):
            result = export_overlays(reference, annotations, out_dir, progress=progress, **options)
    result.preview_files = relocate(files, stage, Path(preview_dir))
    return result


def import_overlay(series: Union[ReferenceSeries, PathLike], *, series_uid: Optional[str] = None,
                   segmentation_out: Optional[PathLike] = None, markups_out: Optional[PathLike] = None,
                   progress: Optional[ProgressCallback] = None) -> AnnotationSet:
    """Read the overlay planes of a series back into segments (and markups, for our files);
    optionally write them as ``.seg.nrrd`` (or a label map by suffix) and ``.mrk.json``."""
    from ..encodings.overlay import import_overlays

    # The headers die with this call: the cyclic GC need never walk them (a full collection
    # over a series' headers cost 20-30 ms, as much as decoding every plane; benchmark notes).
    with gc_paused():
        annotations = import_overlays(series, series_uid, progress=progress)
    write_annotations(annotations, segmentation_out, markups_out)
    return annotations


def write_annotations(annotations: AnnotationSet, segmentation_out: Optional[PathLike] = None,
                      markups_out: Optional[PathLike] = None) -> None:
    """Write segments (``.seg.nrrd``, or ``.nrrd``/``.nii.gz`` label map) and markups (``.mrk.json``)."""
    from ..core.outputs import prepare_output_file
    from ..files.segio import write_label_map, write_seg_nrrd

    if segmentation_out is not None and annotations.segmentation is not None:
        prepare_output_file(segmentation_out)
        if str(segmentation_out).lower().endswith(".seg.nrrd"):
            write_seg_nrrd(segmentation_out, annotations.segmentation)
        else:
            write_label_map(segmentation_out, annotations.segmentation)
    if markups_out is not None:
        if not annotations.markups:
            log.warning("no markups to write to %s", markups_out)
        else:
            from ..files.markups_io import write_markups  # only here: seg import writes no markups

            prepare_output_file(markups_out)
            write_markups(markups_out, annotations.markups)


def write_preview(series: ReferenceSeries, annotations: AnnotationSet, out_dir: PathLike,
                  slices: Optional[Sequence[int]] = None, force: bool = False) -> List[str]:
    """PNG previews of chosen slices with every segment and markup in its colour."""
    from ..core.outputs import relocate, staged_folder

    with staged_folder(out_dir, force) as stage:  # the previews appear together or not at all
        files = _render_previews(series, annotations, stage, slices)
    return relocate(files, stage, Path(out_dir))


def _render_previews(series: ReferenceSeries, annotations: AnnotationSet, folder: Path,
                     slices: Optional[Sequence[int]] = None) -> List[str]:
    """Render the previews of :func:`write_preview` into an existing (staged) folder."""
    from ..files.preview import render_preview
    from ..core.rasterize import markup_slice_masks

    geometry = series.geometry
    overlays = []
    if annotations.segmentation is not None:
        seg = annotations.segmentation
        overlays += [(seg.mask(s), s.color, s.name) for s in seg.segments]
    for markup in annotations.markups:
        mask = np.zeros(geometry.shape, dtype=bool)
        for k, plane in markup_slice_masks(markup, geometry).items():
            mask[k] = plane
        overlays.append((mask, markup.color, markup.name))
    if slices is None:  # each segment and markup where it is largest
        largest = {int(np.argmax(m.sum(axis=(1, 2)))) for m, _, _ in overlays if m.any()}
        slices = sorted(largest)[:8] or [geometry.shape[0] // 2]
    _check_preview_slices(slices, geometry.shape[0])
    scale = max(1, 512 // max(geometry.shape[1:]))  # small images are magnified to be readable
    return render_preview(folder, series.read_volume(), list(slices), overlays, scale=scale, geometry=geometry)


def _check_preview_slices(slices: Optional[Sequence[int]], count: int) -> None:
    bad = [k for k in slices or () if not 0 <= k < count]
    if bad:
        raise InputError(f"--preview-slices {bad} are outside 0..{count - 1} (the series has {count} slices)")


def export_seg(series: Union[ReferenceSeries, PathLike], segmentation: SegmentationSource, out: PathLike, *,
               series_uid: Optional[str] = None, metadata=None, lidc: bool = False,
               progress: Optional[ProgressCallback] = None, **options):
    """Write a DICOM SEG of ``segmentation`` on ``series`` (see :func:`seg.export_seg` for
    ``options``: seg_type, compression, keep_empty_frames, fractional_type, palette, split_layers,
    options=SegExportOptions(...)).

    ``lidc``: the LIDC conversion's conventions (:func:`presets.lidc.apply_lidc_preset`): descriptions
    "Nodule N - Annotation A", one tracking UID per nodule shared by its annotations, finding
    Nodule in Lung; give ``--lidc`` to ``sr export`` too, so that the SR says the same.

    ``metadata``: a dcmqi segmentation metadata JSON (path or dict) whose names, colours, codes,
    algorithm and tracking ids are applied to the segments by label value, and whose series-level
    fields (content creator, series description/number, clinical trial ids) fill
    ``SegExportOptions`` where the caller did not.
    Returns :class:`seg.SegExportResult`.
    """
    import dataclasses

    from ..encodings.seg import SegExportOptions
    from ..encodings.seg import export_seg as write_seg

    reference = _series(series, series_uid, progress)
    annotations = load_annotations(reference, segmentation)
    if annotations.segmentation is None:
        raise InputError("no segmentation given")
    seg_options = options.pop("options", None) or SegExportOptions()
    if lidc:
        from ..presets.lidc import apply_lidc_preset

        apply_lidc_preset(annotations.segmentation)
    if metadata is not None:
        from ..dicom.dcmqi_metadata import apply_metadata, read_dcmqi_metadata

        meta = read_dcmqi_metadata(metadata)
        apply_metadata(annotations.segmentation, meta)
        defaults = SegExportOptions()
        for name, value in (("content_creator_name", meta.ContentCreatorName),
                            ("series_description", meta.SeriesDescription),
                            ("series_number", int(meta.SeriesNumber) if meta.SeriesNumber else None),
                            ("instance_number", int(meta.InstanceNumber) if meta.InstanceNumber else None),
                            ("clinical_trial_series_id", meta.ClinicalTrialSeriesID),
                            ("clinical_trial_time_point_id", meta.ClinicalTrialTimePointID),
                            ("clinical_trial_coordinating_center_name", meta.ClinicalTrialCoordinatingCenterName),
                            ("body_part_examined", meta.BodyPartExamined)):
            if value and getattr(seg_options, name) == getattr(defaults, name):
                seg_options = dataclasses.replace(seg_options, **{name: value})
    try:
        return write_seg(reference, annotations.segmentation, out, options=seg_options, progress=progress, **options)
    except DicomAnnotEmbedError as exc:  # "nothing to export": about the segmentation given
        if exc.path is None and _input_names(segmentation, ()):
            exc.set_path(_input_names(segmentation, ()))
        raise


def import_seg(seg_file: Union[PathLike, Sequence[PathLike]], series: Union[ReferenceSeries, PathLike, None] = None,
               *, segmentation_out: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None):
    """Read a DICOM SEG into segments (on the series grid when ``series`` is given, else on the
    SEG's own frame grid); optionally write them as ``.seg.nrrd`` or a ``.nrrd``/``.nii.gz`` label
    map. Returns :class:`seg.SegImport`.

    ``seg_file`` may be several SEGs of one series (e.g. the files of a ``--split-layers`` export):
    they merge into one segmentation (on the series grid, else the first SEG's grid; repeated
    segment ids get a suffix); ``path`` then lists the files joined by ", ".
    """
    from ..encodings.seg import import_seg as read_seg

    files = [seg_file] if isinstance(seg_file, (str, bytes)) or hasattr(seg_file, "__fspath__") else list(seg_file)
    if not files:
        raise InputError("no SEG file given")
    if len(files) > 1:
        return _import_segs(files, series, segmentation_out, progress)
    imported = read_seg(files[0], series, progress)
    if segmentation_out is not None:
        write_annotations(AnnotationSet(imported.segmentation.geometry, imported.segmentation), segmentation_out)
    return imported


def _import_segs(files: Sequence[PathLike], series, segmentation_out, progress):
    """Several SEGs of one series merged into one :class:`seg.SegImport` (see :func:`import_seg`)."""
    import dataclasses

    from ..encodings.seg import import_seg as read_seg
    from .convert import merge_segmentations

    reference = _series(series, None, progress) if series is not None else None
    parts = [read_seg(f, reference, progress) for f in files]
    uids = {p.referenced_series_uid for p in parts if p.referenced_series_uid}
    if len(uids) > 1:
        raise InputError(f"the SEGs reference {len(uids)} different series ({', '.join(sorted(uids))}); "
                         f"give the SEGs of one series", files[0])
    geometry = parts[0].segmentation.geometry
    merged = merge_segmentations([(p.segmentation, p.path) for p in parts], geometry)
    types = sorted({p.seg_type for p in parts})
    imported = dataclasses.replace(parts[0], segmentation=merged, seg_type="+".join(types),
                                   segment_numbers={}, path=", ".join(str(p.path) for p in parts))
    if segmentation_out is not None:
        write_annotations(AnnotationSet(merged.geometry, merged), segmentation_out)
    return imported


def dicomize(volume: PathLike, out_dir: PathLike, **options) -> List[str]:
    """A DICOM series for a non-DICOM volume (NRRD, NIfTI, MHA); see :mod:`dicomize`."""
    from ..dicom.dicomize import dicomize_file

    return dicomize_file(volume, out_dir, **options)


def export_sr(series: Union[ReferenceSeries, PathLike], seg_file: PathLike, out: PathLike, *,
              segmentation: SegmentationSource = None, markups: Sequence[MarkupsSource] = (),
              evaluations=None, series_uid: Optional[str] = None, seg_written=None,
              progress: Optional[ProgressCallback] = None, **options):
    """Write a TID 1500 Comprehensive 3D SR: one volumetric group per segment of ``seg_file``
    (measurements, evaluations from the ``evaluations`` CSV) and one group per markup (LPS).

    Reads the SEG (through the SEG encoding, onto the series grid), the ``segmentation`` the SEG
    was written from (its segment ids/names may then be used in the evaluation CSV) and the
    markups (``.mrk.json`` paths or :class:`Markup` objects), and hands them to the SR encoding.
    ``seg_written``: the :class:`seg.SegExportResult` of the export that wrote ``seg_file`` from
    ``segmentation`` (a :class:`Segmentation` on the series grid, unchanged since): the SEG's
    segments are then its header's descriptions on the voxels in memory, instead of its frames
    decoded again (the same segments and voxels; ``csv import`` does this).
    ``options``: fields of :class:`sr.SrExportOptions` (observer_name, device_name, lidc,
    code_table, series_description, ...), or ``options=SrExportOptions(...)``.
    Returns :class:`sr.SrExportResult`; see :func:`sr.encode.export_sr`.
    """
    from ..core.outputs import prepare_output_file
    from ..encodings.seg import import_seg as read_seg
    from ..encodings.sr import check_seg_series, read_seg_header
    from ..encodings.sr import export_sr as write_sr
    from ..files.markups_io import read_markups

    reference = _series(series, series_uid, progress)
    prepare_output_file(out)
    seg_header = read_seg_header(seg_file)
    check_seg_series(seg_header, reference)
    as_written = _seg_as_written(seg_header, seg_file, seg_written, segmentation, reference)
    if as_written is None:
        seg_import = read_seg(seg_file, reference, progress)
        as_written = seg_import.segmentation, seg_import.segment_numbers
    work = None
    if segmentation is not None:
        work = load_annotations(reference, segmentation).segmentation
    shapes: List[Markup] = []
    for item in markups:
        shapes.extend([item] if isinstance(item, Markup) else read_markups(item))
    return write_sr(reference, seg_header, as_written[0], as_written[1], out,
                    segmentation=work, markups=shapes, evaluations=evaluations, progress=progress, **options)


def _seg_as_written(seg_header, seg_file: PathLike, seg_written, segmentation, reference: ReferenceSeries):
    """(segments, {segment id: Segment Number}) of ``seg_file`` as :func:`seg.import_seg` would give
    them, without decoding its frames: the header's segment descriptions (read the way import reads
    them) on the layers of ``segmentation``, which the SEG export ``seg_written`` wrote into the file
    (BINARY or LABELMAP: lossless, a segment's frames are its mask). None when that cannot be
    vouched for (another file, grid or type, fractional values, segments that do not pair up)."""
    from ..encodings.seg import read_seg_segments

    if (seg_written is None or not isinstance(segmentation, Segmentation) or segmentation.fractions
            or not segmentation.geometry.same_as(reference.geometry)
            or getattr(seg_written, "seg_type", "") not in ("binary", "labelmap")
            or [Path(p) for p in getattr(seg_written, "paths", [])] != [Path(seg_file)]
            or len(getattr(seg_written, "segment_numbers", [])) != 1):
        return None
    by_number = {number: segment_id for segment_id, number in seg_written.segment_numbers[0].items()}
    segments, numbers = read_seg_segments(seg_header, seg_file)
    mine = {s.id: s for s in segmentation.segments}
    if sorted(numbers.values()) != sorted(by_number) or any(by_number[n] not in mine for n in numbers.values()):
        return None
    for segment in segments:
        source = mine[by_number[numbers[segment.id]]]
        segment.layer, segment.label_value = source.layer, source.label_value
    return Segmentation(reference.geometry, segmentation.layers, segments), numbers


def import_sr(sr_file: PathLike, series: Union[ReferenceSeries, PathLike, None] = None, *,
              seg_folders: Sequence[PathLike] = (), out_dir: Optional[PathLike] = None, force: bool = False,
              load_seg: bool = True, progress: Optional[ProgressCallback] = None):
    """Read a TID 1500 SR (markups in LPS, measurement records, the referenced SEG when found
    beside the SR or in ``seg_folders``, read through the SEG encoding; ``load_seg=False`` only
    lists the SEGs); with ``out_dir`` also write ``measurements.csv``, ``markups.mrk.json`` and
    ``segmentation.seg.nrrd`` (``segmentation_N.seg.nrrd`` for several SEGs) there, listed in
    ``written``. Returns :class:`sr.SrImport`."""
    from ..core.outputs import prepare_output_dir
    from ..encodings.seg import import_seg as read_seg
    from ..encodings.sr import import_sr as read_sr
    from ..encodings.sr import write_measurements_csv
    from ..files.markups_io import write_markups
    from ..files.segio import write_seg_nrrd

    imported = read_sr(sr_file, series, seg_folders=seg_folders, seg_reader=read_seg if load_seg else None,
                       progress=progress)
    if out_dir is not None:
        out = prepare_output_dir(out_dir, force)
        written = [out / "measurements.csv"]
        write_measurements_csv(written[0], imported.records)
        if imported.markups:
            written.append(out / "markups.mrk.json")
            write_markups(written[-1], imported.markups)
        for n, seg_import in enumerate(imported.seg_imports, 1):
            written.append(out / ("segmentation.seg.nrrd" if len(imported.seg_imports) == 1
                                  else f"segmentation_{n}.seg.nrrd"))
            write_seg_nrrd(written[-1], seg_import.segmentation)
        imported.written = [str(p) for p in written]
    return imported


def import_csv(table: PathLike, series: Union[ReferenceSeries, PathLike], out_dir: PathLike, *,
               formats: Sequence[str] = ("overlay", "seg", "sr"), series_uid: Optional[str] = None,
               progress: Optional[ProgressCallback] = None, **options):
    """Convert an annotation table (CSV; format in :mod:`csv_table`) into what a Slicer export
    writes: ``out_dir/overlay/`` (overlay series), ``seg.dcm``, ``sr.dcm`` (per ``formats``), with
    ``segmentation.seg.nrrd``, ``markups.mrk.json``, ``evaluations.csv`` and, for bad rows,
    ``bad_rows.csv``. ``options``: boundary, code_table, lines_in_segments,
    position_tolerance_mm, lidc, split, observer_name, force. Bad rows do not raise: see
    ``result.conversion.bad_rows``. Returns :class:`csv_pipeline.TableImportResult`."""
    from .csv_pipeline import import_table

    return import_table(table, series, out_dir, formats=formats, series_uid=series_uid, progress=progress, **options)


def export_ml(inputs: Union[PathLike, Sequence[PathLike]], out_dir: PathLike, *,
              progress: Optional[ProgressCallback] = None, **options):
    """Machine-learning formats from DICOM annotations (SEG, TID 1500 SR, overlay series; files or
    folders): per case label maps (NIfTI, NRRD) with a JSON sidecar, ``measurements.csv`` (one row
    per finding) and ``cases.csv``; see :func:`ml_export.export_ml` for ``options`` (png, image,
    code_table, force). Returns :class:`ml_export.MlExportResult`."""
    from ..files.ml_export import export_ml as write_ml

    return write_ml(inputs, out_dir, progress=progress, **options)
