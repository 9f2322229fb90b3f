"""Grayscale Softcopy Presentation States (re-exported by ``api``; no Slicer needed).

Example::

    from DicomAnnotEmbedLib import api
    result = api.export_gsps("case/series", ["case/markups.mrk.json"], "case/annotations.pr.dcm",
                             segmentation="case/segmentation.seg.nrrd", outlines=True)
    imported = api.import_gsps("case/annotations.pr.dcm", "case/series", markups_out="back.mrk.json")

Markups in and out are **LPS** (``Markup.points_ras`` gives RAS; ``.mrk.json`` files say their own
frame); the presentation state's graphics are PIXEL coordinates of the referenced images.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from ..core.model import AnnotationSet
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries
from .conversions import MarkupsSource, PathLike, SegmentationSource, _series, load_annotations, write_annotations


def export_gsps(series: Union[ReferenceSeries, PathLike], markups: Sequence[MarkupsSource] = (),
                out: PathLike = "annotations.pr.dcm", *, segmentation: SegmentationSource = None,
                outlines: bool = False, series_uid: Optional[str] = None,
                window: Optional[Tuple[float, float]] = None, fill: Optional[bool] = None,
                interpolated: bool = False, text: bool = True,
                force: bool = False, progress: Optional[ProgressCallback] = None, **options):
    """Write one Grayscale Softcopy Presentation State that draws ``markups`` (``.mrk.json`` paths
    or LPS :class:`Markup` objects) and, with ``outlines``, each segment of ``segmentation``
    slice by slice on the images of ``series`` (a folder or a loaded series); nothing is copied.

    ``window``: (centre, width) of the presentation; default the series' own. ``fill``: draw
    closed shapes filled (None: as each markup says). ``interpolated``: curves as INTERPOLATED
    graphics (smooth in the viewer) instead of polylines. ``text``: name and measurement of each
    markup. ``options``: series_description, series_number, content_label, content_creator_name.
    Returns :class:`encodings.gsps.GspsExportResult`.
    """
    from ..encodings.gsps import export_gsps as write_gsps

    reference = _series(series, series_uid, progress)
    annotations = load_annotations(reference, segmentation if outlines else None, markups)
    return write_gsps(reference, annotations, out, outlines=outlines, fill=fill, interpolated=interpolated,
                      text=text, window=window, force=force, progress=progress, **options)


def import_gsps(gsps_file: PathLike, series: Union[ReferenceSeries, PathLike], *, series_uid: Optional[str] = None,
                markups_out: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None):
    """Read any presentation state's graphic annotations into markups (LPS) on the planes of the
    referenced images of ``series``; optionally write them to ``markups_out`` (``.mrk.json``, LPS).
    What could not be converted is in ``result.report``. Returns :class:`encodings.gsps.GspsImport`."""
    from ..encodings.gsps import import_gsps as read_gsps

    reference = _series(series, series_uid, progress)
    imported = read_gsps(gsps_file, reference, progress=progress)
    write_annotations(AnnotationSet(reference.geometry, None, imported.markups), markups_out=markups_out)
    return imported
