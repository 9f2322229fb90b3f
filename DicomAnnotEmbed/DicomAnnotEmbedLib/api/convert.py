"""Any encoding to any other in one call (re-exported by ``api``; no Slicer needed).

Example::

    from DicomAnnotEmbedLib import api
    result = api.convert(["case/seg.dcm", "case/sr.dcm"], "rtstruct", "case/rtstruct.dcm", series="case/series")
    print(result.dropped)          # what the target could not hold (also logged as ONE warning)
    annotations = api.read_annotations_any(["case/rtstruct.dcm"], "case/series")

Inputs (several merge into one :class:`AnnotationSet`): DICOM files recognised by their SOP Class
UID (SEG and Label Map SEG, Enhanced / Comprehensive / Comprehensive 3D SR, RT Structure Set,
Grayscale Softcopy Presentation State), a folder holding an image series with overlay planes,
and files by suffix: ``.seg.nrrd``, label maps (``.nrrd``, ``.nii``, ``.nii.gz``, ``.mha``),
``.mrk.json`` markups and ``.csv`` annotation tables. The conversion goes through the shared model
in memory: segments (names, colours, codes, tracking ids, empty ones) and markups (LPS) carry
over wherever the target can hold them. Every coordinate in and out is **LPS** (DICOM's frame;
``.mrk.json`` files say their own frame).

Targets: ``overlay`` (a folder), ``seg``, ``sr`` (the SR, plus the SEG of its segments written
beside it as ``<stem>_seg.dcm``), ``rtstruct``, ``gsps`` (markups; segments only with
``outlines=True``), ``seg-nrrd`` and ``nifti`` (a label map; markups to ``markups_out`` when given).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..core.errors import InputError
from ..core.model import AnnotationSet, Markup, Segment, Segmentation
from ..core.progress import ProgressCallback
from ..core.series import ReferenceSeries, load_series
from .conversions import PathLike

log = logging.getLogger(__name__)

#: Targets of :func:`convert`.
TARGETS = ("overlay", "seg", "sr", "rtstruct", "gsps", "seg-nrrd", "nifti")
#: Targets that reference an image series (need ``series``).
SERIES_TARGETS = ("overlay", "seg", "sr", "rtstruct", "gsps")

#: SOP Class UID -> input kind.
SOP_CLASS_KINDS = {
    "1.2.840.10008.5.1.4.1.1.66.4": "seg",        # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.66.7": "seg",        # Label Map Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.88.22": "sr",        # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33": "sr",        # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34": "sr",        # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.481.3": "rtstruct",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.11.1": "gsps",       # Grayscale Softcopy Presentation State
}
_LABEL_MAP_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")


@dataclass
class ConvertResult:
    """What :func:`convert` wrote.

    Attributes:
        target: the target encoding.
        paths: the files (or the folder, for overlay) written.
        annotations: the merged annotations that were converted (on the target's grid, LPS).
        dropped: what the target could not hold, one line each (also logged as one warning).
        detail: the target encoder's own result (e.g. :class:`seg.SegExportResult`), or None.
    """

    target: str
    paths: List[str] = field(default_factory=list)
    annotations: Optional[AnnotationSet] = None
    dropped: List[str] = field(default_factory=list)
    detail: object = None

    def summary(self) -> str:
        seg = self.annotations.segmentation if self.annotations else None
        n_segments = len(seg.segments) if seg is not None else 0
        n_markups = len(self.annotations.markups) if self.annotations else 0
        return (f"{self.target} written to {', '.join(self.paths)} from {_count(n_segments, 'segment')} and "
                f"{_count(n_markups, 'markup')}" + (f"; {_count(len(self.dropped), 'item')} the target cannot hold "
                                                   f"(see the warning)" if self.dropped else ""))


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- reading --------------------------------------------------------------------------

def input_kind(path: PathLike) -> str:
    """The kind of an input: "overlay" (a folder), "seg", "sr", "rtstruct", "gsps" (DICOM, by SOP
    Class UID), "seg-nrrd", "labelmap", "markups", "csv" (by suffix).

    Raises:
        InputError: missing, or neither a known suffix nor a DICOM object of a known SOP class.
    """
    p = Path(path)
    if p.is_dir():
        return "overlay"
    if not p.is_file():
        raise InputError("input not found", p)
    name = p.name.lower()
    if name.endswith(".seg.nrrd"):
        return "seg-nrrd"
    if name.endswith(".mrk.json") or name.endswith(".json"):
        return "markups"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(_LABEL_MAP_SUFFIXES):
        return "labelmap"
    import pydicom

    try:
        header = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["SOPClassUID"])
        sop_class = str(getattr(header, "SOPClassUID", "") or "")
    except Exception:  # noqa: BLE001 - any unreadable file is one clear input error
        raise InputError("not an input convert can read (DICOM SEG, SR, RTSTRUCT, GSPS, an image series folder, "
                         ".seg.nrrd, .nrrd/.nii.gz label map, .mrk.json or .csv)", p) from None
    kind = SOP_CLASS_KINDS.get(sop_class)
    if kind is None:
        raise InputError(f"a DICOM object of SOP class {sop_class or '(none)'}, which convert does not read "
                         f"(SEG, SR, RT Structure Set, Grayscale Softcopy Presentation State; give an image "
                         f"series as its folder)", p)
    return kind


def read_annotations_any(inputs: Union[PathLike, Sequence[PathLike]],
                         series: Union[ReferenceSeries, PathLike, None] = None, *,
                         series_uid: Optional[str] = None, label_names: Optional[Dict[int, str]] = None,
                         progress: Optional[ProgressCallback] = None) -> AnnotationSet:
    """Read any of the inputs :func:`convert` takes and merge them into one :class:`AnnotationSet`
    (LPS): segments on the series grid when ``series`` is given, else on the grid of the first
    input that has one; markups as they are. Segment ids that repeat across inputs get a suffix.

    Raises:
        InputError: an unreadable input (named), a GSPS or CSV without ``series``, nothing on a grid.
    """
    paths = [inputs] if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__") else list(inputs)
    if not paths:
        raise InputError("no input given")
    reference = series
    if series is not None and not isinstance(series, ReferenceSeries):
        reference = load_series(series, series_uid, progress)
    kinds = [(Path(p), input_kind(p)) for p in paths]
    explicit_segs = {p.resolve() for p, kind in kinds if kind == "seg"}
    segmentations: List[Tuple[Segmentation, str]] = []
    markups: List[Markup] = []
    geometry = reference.geometry if reference is not None else None
    for path, kind in kinds:
        segs, shapes, grid = _read_one(path, kind, reference, explicit_segs, label_names, progress)
        segmentations += [(s, str(path)) for s in segs]
        markups += shapes
        geometry = geometry or grid
    if geometry is None:
        raise InputError("none of the inputs has a voxel grid; give --series (series=...)", paths[0])
    return AnnotationSet(geometry, merge_segmentations(segmentations, geometry), markups)


def read_segmentation_any(path: PathLike, series: ReferenceSeries,
                          progress: Optional[ProgressCallback] = None) -> Optional[Segmentation]:
    """The segments of a DICOM input (SEG, Label Map SEG, RTSTRUCT, an SR's SEG, an overlay series
    folder) on the series grid, for the ``--segmentation`` of every export; None when ``path`` is
    a file that :func:`files.segio.load_segmentation` reads (``.seg.nrrd``, label maps) or absent.

    Raises:
        InputError: a DICOM input that holds no segments (names the file).
    """
    p = Path(path)
    if not p.exists() or (p.is_file() and p.name.lower().endswith(_LABEL_MAP_SUFFIXES)):
        return None
    kind = input_kind(p)
    if kind in ("seg-nrrd", "labelmap"):
        return None
    annotations = read_annotations_any([p], series, progress=progress)
    if annotations.segmentation is None:
        raise InputError(f"holds no segments (a {kind} input given as a segmentation)", p)
    if annotations.markups:
        log.info("%s: its %d markups are not part of the segmentation (give it to --markups / convert)",
                 p, len(annotations.markups))
    return annotations.segmentation


def _read_one(path: Path, kind: str, reference: Optional[ReferenceSeries], explicit_segs, label_names, progress):
    """([Segmentation], [Markup], grid or None) of one input."""
    from . import conversions
    from .gsps import import_gsps
    from .rtstruct import import_rtstruct

    if kind == "seg":
        seg = conversions.import_seg(path, reference, progress=progress).segmentation
        return [seg], [], seg.geometry
    if kind == "sr":
        imported = conversions.import_sr(path, reference, load_seg=not explicit_segs, progress=progress)
        segs = [i.segmentation for i in imported.seg_imports]
        return segs, list(imported.markups), segs[0].geometry if segs else None
    if kind == "rtstruct":
        annotations = import_rtstruct(path, reference, progress=progress).annotations
        segs = [annotations.segmentation] if annotations.segmentation is not None else []
        return segs, list(annotations.markups), annotations.geometry
    if kind == "gsps":
        if reference is None:
            raise InputError("a presentation state (GSPS) input needs its image series: give --series", path)
        return [], list(import_gsps(path, reference, progress=progress).markups), reference.geometry
    if kind == "overlay":
        annotations = conversions.import_overlay(reference if _same_folder(reference, path) else path,
                                                 progress=progress)
        segs = [annotations.segmentation] if annotations.segmentation is not None else []
        return segs, list(annotations.markups), annotations.geometry
    if kind in ("seg-nrrd", "labelmap"):
        from ..files.segio import load_segmentation

        seg = load_segmentation(path, label_names)
        return [seg], [], seg.geometry
    if kind == "markups":
        from ..files.markups_io import read_markups

        return [], list(read_markups(path)), None
    if kind == "csv":
        from ..files.csv_table import read_annotation_table

        if reference is None:
            raise InputError("an annotation table (CSV) input needs its image series: give --series", path)
        table = read_annotation_table(path, reference, progress=progress)
        for bad in table.bad_rows:
            log.warning("%s: row not converted: %s", path, bad)
        return [table.segmentation], list(table.markups), reference.geometry
    raise InputError(f"unknown input kind {kind!r}", path)


def _same_folder(reference: Optional[ReferenceSeries], path: Path) -> bool:
    folder = getattr(reference, "folder", None)
    return folder is not None and Path(folder).resolve() == path.resolve()


def merge_segmentations(parts: Sequence[Tuple[Segmentation, str]], geometry) -> Optional[Segmentation]:
    """One segmentation on ``geometry`` holding every segment of ``parts`` ((segmentation, source)
    pairs; resampled by nearest neighbour when their grid differs), overlapping ones in further
    layers. A single part already on the grid is returned as it is."""
    if not parts:
        return None
    placed = [(seg.resampled_to(geometry, what=f"segmentation {Path(source).name}"), source)
              for seg, source in parts]
    if len(placed) == 1:
        return placed[0][0]
    merged = Segmentation(geometry)
    for seg, source in placed:
        presence = seg.slice_presence()
        for segment in seg.segments:
            copy = dataclasses.replace(segment, attributes=dict(segment.attributes))
            copy.id = _unique_id(copy.id, merged)
            layer = seg.layers[segment.layer]
            present = [int(k) for k in (presence[segment.id].nonzero()[0] if segment.id in presence else [])]
            merged.add_segment_slices({k: layer[k] == segment.label_value for k in present}, copy)
            if segment.id in seg.fractions:
                merged.fractions[copy.id] = seg.fractions[segment.id]
    return merged


def _unique_id(wanted: str, seg: Segmentation) -> str:
    taken = {s.id for s in seg.segments}
    candidate, n = wanted, 1
    while candidate in taken:
        n += 1
        candidate = f"{wanted}_{n}"
    return candidate


# --- writing --------------------------------------------------------------------------

def convert(inputs: Union[PathLike, Sequence[PathLike]], to: str, out: PathLike, *,
            series: Union[ReferenceSeries, PathLike, None] = None, series_uid: Optional[str] = None,
            markups_out: Optional[PathLike] = None, force: bool = False, label_names: Optional[Dict[int, str]] = None,
            progress: Optional[ProgressCallback] = None, **options) -> ConvertResult:
    """Convert ``inputs`` (see :func:`read_annotations_any`) into the encoding ``to`` (one of
    :data:`TARGETS`) at ``out``; coordinates stay in LPS throughout.

    ``options`` are the target's own: for ``seg`` those of :func:`api.export_seg` (seg_type,
    compression, split_layers, palette, ...); ``rtstruct``: interpreted_type, interpreted_types;
    ``gsps``: outlines, fill, interpolated, text, window; ``overlay``: split, fill_markups,
    series_description; ``sr``: those of :class:`sr.SrExportOptions` (observer_name, ...) plus
    ``seg_type`` for the SEG written beside it (default binary). ``markups_out``: for ``seg-nrrd``
    and ``nifti``, a ``.mrk.json`` for the markups (else they are dropped).

    What the target cannot hold is listed in ``result.dropped`` and logged as one warning.

    Raises:
        InputError: unknown target, unreadable input, nothing the target can hold; GeometryError;
        OutputError: ``out`` exists and not ``force``.
    """
    from ..core.errors import DicomAnnotEmbedError, OutputError, name_files

    if to not in TARGETS:
        raise InputError(f"unknown target {to!r}: expected one of {', '.join(TARGETS)}")
    if to in SERIES_TARGETS and series is None:
        raise InputError(f"a {to} output references an image series: give --series (series=...)")
    out = Path(out)
    if not force and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError("exists; use --force to replace it", out)
    reference = series
    if series is not None and not isinstance(series, ReferenceSeries):
        reference = load_series(series, series_uid, progress)
    annotations = read_annotations_any(inputs, reference, label_names=label_names, progress=progress)
    seg = annotations.segmentation
    result = ConvertResult(target=to, annotations=annotations)
    dropped = result.dropped
    segments = list(seg.segments) if seg is not None else []
    counts = seg.voxel_counts() if segments else {}
    empty = [s.name for s in segments if counts[s.id] == 0]
    writer = _WRITERS[to]
    import importlib  # the target's encoder loggers must exist before their warnings are held back

    for package in {"sr": ("seg", "sr")}.get(to, (to,) if to in SERIES_TARGETS else ()):
        importlib.import_module(f"{__package__.rpartition('.')[0]}.encodings.{package}")
    with _skips_held_back() as held:  # the encoders' own "... is skipped" warnings: said once, below
        try:
            writer(reference, annotations, out, result, markups_out=markups_out, force=force, progress=progress,
                   empty=empty, **options)
        except DicomAnnotEmbedError as exc:  # "nothing to write ...": about the inputs, which it names
            if exc.path is None:
                paths = [inputs] if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__") else inputs
                exc.set_path(name_files(paths))
            raise
    dropped += [message for message in held if not any(_quoted(message) in line for line in dropped)]
    if dropped:
        log.warning("%s cannot hold everything given; not converted: %s", to, "; ".join(dropped))
    return result


class _HoldSkips(logging.Filter):
    """Keeps back WARNING records that say something was skipped, remembering their text."""

    def __init__(self):
        super().__init__()
        self.messages: List[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.WARNING and ("skipped" in message or "is empty" in message):
            self.messages.append(message)
            return False
        return True


class _skips_held_back:
    """Context: the package's loggers hold back "skipped" warnings (the dropped list says them)."""

    def __enter__(self) -> List[str]:
        self.hold = _HoldSkips()
        prefix = __name__.split(".")[0]
        self.loggers = [logger for name, logger in logging.Logger.manager.loggerDict.items()
                        if name.startswith(prefix) and isinstance(logger, logging.Logger)]
        for logger in self.loggers:
            logger.addFilter(self.hold)
        return self.hold.messages

    def __exit__(self, *exc) -> None:
        for logger in self.loggers:
            logger.removeFilter(self.hold)


def _quoted(message: str) -> str:
    """The first quoted name in a message ('x'), or the message itself."""
    import re

    found = re.search(r"'[^']*'", message)
    return found.group(0) if found else message


def _markup_names(markups: Sequence[Markup]) -> str:
    return ", ".join(repr(m.name) for m in markups)


def _write_overlay(reference, annotations, out, result, *, force, progress, empty, markups_out=None, **options):
    from . import conversions

    written = conversions.export_overlay(reference, annotations.segmentation, annotations.markups, out, force=force,
                                         progress=progress, **_only(options, ("split", "fill_markups", "keep_uids",
                                                                              "series_description")))
    result.detail = written
    result.paths = [str(s.folder) for s in written.series]
    result.dropped += [f"empty segment {name!r} (an overlay plane needs pixels)" for name in written.skipped_segments]
    result.dropped += [f"markup {name!r}: does not cross the series" for name in written.skipped_markups]


def _write_seg(reference, annotations, out, result, *, force, progress, empty, markups_out=None, **options):
    from . import conversions
    seg = annotations.segmentation
    if seg is None or not seg.segments:
        raise InputError("nothing to write as a SEG: the inputs hold no segments")
    if annotations.markups:
        result.dropped.append(f"{_count(len(annotations.markups), 'markup')} ({_markup_names(annotations.markups)}): "
                              f"a SEG holds no markups (use --to sr, rtstruct or gsps)")
    result.dropped += [f"empty segment {name!r} (a SEG holds no empty segment)" for name in empty]
    if options.get("seg_type") == "labelmap" and not options.get("split_layers"):
        seg = _first_layer_only(seg, result, "one LABELMAP SEG (give --split-layers)")
    seg_options = _only(options, ("seg_type", "compression", "keep_empty_frames", "fractional_type", "palette",
                                  "split_layers", "options", "metadata", "lidc"))
    written = conversions.export_seg(reference, seg, out, progress=progress, **seg_options)
    result.detail = written
    result.paths = [str(p) for p in written.paths]


def _write_sr(reference, annotations, out, result, *, force, progress, empty, markups_out=None, **options):
    from . import conversions

    seg = annotations.segmentation
    has_segments = seg is not None and len(empty) < len(seg.segments)
    if not has_segments:
        raise InputError("an SR (TID 1500) written by convert describes the segments of a SEG: the inputs hold no "
                         "non-empty segment (for markups alone use --to gsps or rtstruct)")
    seg_file = Path(out).with_name(f"{_stem(Path(out))}_seg.dcm")
    if seg_file.exists() and not force:
        from ..core.errors import OutputError

        raise OutputError("exists (the SEG written beside the SR); use --force to replace it", seg_file)
    result.dropped += [f"empty segment {name!r} (the SEG beside the SR holds no empty segment)" for name in empty]
    if annotations.markups:
        result.dropped.append("markup colours (an SR stores coordinates, not display colours)")
    seg_written = conversions.export_seg(reference, seg, seg_file, progress=progress,
                                         seg_type=options.pop("seg_type", None) or "binary")
    sr_options = _only(options, ("observer_name", "device_name", "series_description", "lidc", "code_table",
                                 "evaluations"))
    written = conversions.export_sr(reference, seg_file, out, segmentation=seg, markups=annotations.markups,
                                    progress=progress, **sr_options)
    result.detail = written
    result.paths = [str(p) for p in written.paths] + [str(p) for p in seg_written.paths]
    result.dropped += [line for line in getattr(written, "skipped", []) if "empty" not in line]


def _write_rtstruct(reference, annotations, out, result, *, force, progress, empty, markups_out=None, **options):
    from .rtstruct import export_rtstruct

    if annotations.segmentation is None and not annotations.markups:
        raise InputError("nothing to write as an RTSTRUCT: the inputs hold no segments or markups")
    written = export_rtstruct(reference, annotations.segmentation, out, markups=annotations.markups,
                              force=True, progress=progress,
                              **_only(options, ("interpreted_type", "interpreted_types", "options")))
    result.detail = written
    result.paths = [str(written.path)]
    names = {s.name for s in annotations.segmentation.segments} if annotations.segmentation is not None else set()
    for name in written.skipped:
        result.dropped.append(f"empty segment {name!r} (an ROI needs contours)" if name in names else
                              f"markup {name!r}: an RTSTRUCT has no contour form for it")


def _write_gsps(reference, annotations, out, result, *, force, progress, empty, markups_out=None, **options):
    from .gsps import export_gsps

    outlines = bool(options.pop("outlines", False))
    seg = annotations.segmentation
    if seg is not None and seg.segments and not outlines:
        result.dropped.append(f"{_count(len(seg.segments), 'segment')} "
                              f"({', '.join(repr(s.name) for s in seg.segments)}): a GSPS draws segments only "
                              f"as outlines (give --outlines)")
    elif seg is not None and seg.segments:
        result.dropped.append("segment codes and masks: --outlines draws each segment as closed polylines, which "
                              "read back as markups")
    if not annotations.markups and not (outlines and seg is not None and seg.segments):
        raise InputError("nothing to draw as a GSPS: no markups (and no segments with --outlines)")
    written = export_gsps(reference, annotations.markups, out, segmentation=seg if outlines else None,
                          outlines=outlines, force=True, progress=progress,
                          **_only(options, ("fill", "interpolated", "text", "window", "series_description",
                                            "content_creator_name")))
    result.detail = written
    result.paths = [str(getattr(written, "path", out))]
    result.dropped += [line for line in written.skipped if not (outlines and "empty" in line)] + \
        ([f"empty segment {name!r}" for name in empty] if outlines else [])


def _write_seg_nrrd(reference, annotations, out, result, *, markups_out=None, **kwargs):
    _write_file(annotations, out, result, markups_out)


def _write_nifti(reference, annotations, out, result, *, markups_out=None, empty=(), **kwargs):
    seg = annotations.segmentation
    if seg is not None:
        seg = _first_layer_only(seg, result, "one label map (use --to seg-nrrd)")
        annotations = AnnotationSet(annotations.geometry, seg, annotations.markups)
        result.dropped.append("segment names, colours and codes (a label map holds label values only)")
        result.dropped += [f"empty segment {name!r} (a label map holds no empty segment)" for name in empty]
    _write_file(annotations, out, result, markups_out)


def _write_file(annotations, out, result, markups_out):
    from .conversions import write_annotations

    if annotations.segmentation is None:
        raise InputError(f"nothing to write to {Path(out).name}: the inputs hold no segments")
    if annotations.markups and markups_out is None:
        result.dropped.append(f"{_count(len(annotations.markups), 'markup')} ({_markup_names(annotations.markups)}): "
                              f"give --markups-out FILE.mrk.json to keep them")
    write_annotations(annotations, out, markups_out if annotations.markups else None)
    result.paths = [str(out)] + ([str(markups_out)] if markups_out and annotations.markups else [])


def _first_layer_only(seg: Segmentation, result: ConvertResult, what: str) -> Segmentation:
    """The segments of the first layer; those stored in further layers (they overlap others)
    are listed in ``result.dropped``."""
    rest = [s for s in seg.segments if s.layer != 0]
    if not rest or not seg.has_overlap:
        return seg
    result.dropped.append(f"{_count(len(rest), 'segment')} overlapping others "
                          f"({', '.join(repr(s.name) for s in rest)}): they cannot share {what}")
    return Segmentation(seg.geometry, seg.layers[:1], [s for s in seg.segments if s.layer == 0])


def _only(options: dict, names) -> dict:
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise InputError(f"options {', '.join(unknown)} do not apply to this target")
    return {k: v for k, v in options.items() if v is not None}


def _stem(path: Path) -> str:
    name = path.name
    return name[:-4] if name.lower().endswith(".dcm") else path.stem


_WRITERS = {"overlay": _write_overlay, "seg": _write_seg, "sr": _write_sr, "rtstruct": _write_rtstruct,
            "gsps": _write_gsps, "seg-nrrd": _write_seg_nrrd, "nifti": _write_nifti}
