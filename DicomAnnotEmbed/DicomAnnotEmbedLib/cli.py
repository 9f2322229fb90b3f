"""The ``dicomannotembed`` command line.

Exit codes: 0 success, 2 bad command line, 3 bad input, 4 output cannot be written,
1 unexpected internal error (run again with --debug for the traceback).
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import List, Optional

from . import __version__
from pathlib import Path

from .core.errors import DicomAnnotEmbedError, InputError, OutputError
from .core.progress import TqdmProgress

log = logging.getLogger("DicomAnnotEmbedLib")

EXIT_CODES = """exit codes:
  0  success
  2  bad command line
  3  bad input (file, series, geometry, too many segments)
  4  output cannot be written (not empty, read-only)
  1  unexpected internal error (run again with --debug for the traceback)"""


def _slice_list(text: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated slice indices, got {text!r}") from None


def _format_list(text: str) -> List[str]:
    from .files.csv_table import FORMATS

    formats = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(FORMATS)}, got {text!r}")
    return formats


def build_parser() -> argparse.ArgumentParser:
    # The shared flags are accepted before or after the sub-command; SUPPRESS keeps a sub-command
    # from resetting a flag given earlier (argparse copies sub-parser defaults over the namespace).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bar, only warnings and errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also report what was skipped and why")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of unexpected errors")

    parser = argparse.ArgumentParser(
        prog="dicomannotembed", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Slicer segmentations and markups to DICOM (overlays, SEG, SR) and back. "
                    "Coordinates in files are as the files say (DICOM and .seg.nrrd: LPS; .mrk.json: LPS or RAS).",
        epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group, name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=[common], help=summary, description=description,
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)

    overlay = command(commands, "overlay", "overlay-embedded DICOM (60xx planes)",
                      "Overlay-embedded DICOM: every segment or markup as an overlay "
                                              "plane in a copy of the source images.")
    overlay_commands = overlay.add_subparsers(dest="action", metavar="ACTION", required=True)

    export = command(overlay_commands, "export", "write a copy of the series with segments and markups as overlay planes",
        "Write a copy of every image of the series with each segment as a Type R overlay "
                    "plane and each markup as a Type G plane, as a new DERIVED series.")
    export.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    export.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    export.add_argument("--segmentation", metavar="FILE", help=".seg.nrrd, or a NRRD/NIfTI label map (resampled onto the series if its grid differs)")
    export.add_argument("--markups", nargs="+", default=[], metavar="FILE", help="Slicer .mrk.json files (LPS or RAS)")
    export.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    export.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    export.add_argument("--split", action="store_true", help="when there are more segments and markups than free overlay groups, write several series")
    export.add_argument("--fill-markups", action="store_true", help="draw closed curves and ROI boxes filled instead of outlined")
    export.add_argument("--keep-uids", action="store_true", help="keep the source UIDs (risky: for in-place replacement only)")
    export.add_argument("--description", metavar="TEXT", help="Series Description of the output (default: source + list of planes)")
    export.add_argument("--preview", metavar="DIR", help="also write PNG previews with the overlays in their colours")
    export.add_argument("--preview-slices", type=_slice_list, metavar="K,K,...", help="slice indices (0-based, in sorted order) for --preview; default: the most annotated")

    imp = command(overlay_commands, "import", "read overlay planes of a series back into a segmentation",
        "Read every overlay plane of a series (ours, scanner-written, or legacy overlays in "
                    "unused pixel bits) into segments on the series grid.")
    imp.add_argument("--series", required=True, metavar="DIR", help="folder holding the overlay series")
    imp.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    imp.add_argument("--out", required=True, metavar="FILE", help="output .seg.nrrd (or .nrrd / .nii.gz label map when segments do not overlap)")
    imp.add_argument("--markups-out", metavar="FILE", help="output .mrk.json for markups stored by DicomAnnotEmbed")

    seg = command(commands, "seg", "DICOM Segmentation (BINARY, FRACTIONAL, LABELMAP)",
                  "DICOM SEG: export segments as BINARY, FRACTIONAL or LABELMAP (Supplement 243) "
                  "segmentations, and import any SEG back.")
    seg_commands = seg.add_subparsers(dest="action", metavar="ACTION", required=True)
    seg_export = command(seg_commands, "export", "write a DICOM SEG referencing the series",
        "Write the segmentation as one DICOM SEG instance referencing the series (segments that are "
        "empty are skipped with a warning; a segment without codes gets the default 'Tissue').")
    seg_export.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    seg_export.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    seg_export.add_argument("--segmentation", required=True, metavar="FILE",
                            help=".seg.nrrd, a NRRD/NIfTI label map, or a float volume of probabilities for FRACTIONAL")
    seg_export.add_argument("--out", required=True, metavar="FILE.dcm", help="output SEG file")
    seg_export.add_argument("--type", dest="seg_type", default="auto", choices=["auto", "binary", "labelmap", "fractional"],
                            help="SEG type (default auto: LABELMAP when no segments overlap, else BINARY; FRACTIONAL for probability volumes)")
    seg_export.add_argument("--compress", default="auto", choices=["auto", "none", "jpegls", "rle", "jpeg2000"],
                            help="lossless compression (default auto: JPEG-LS for LABELMAP and FRACTIONAL, none for BINARY)")
    seg_export.add_argument("--metadata", metavar="JSON", help="dcmqi segmentation metadata JSON (names, colours, codes by labelID)")
    seg_export.add_argument("--keep-empty-frames", action="store_true", help="BINARY/FRACTIONAL: a frame for every slice of every segment")
    seg_export.add_argument("--fractional-type", default="PROBABILITY", type=str.upper, choices=["PROBABILITY", "OCCUPANCY"])
    seg_export.add_argument("--palette", action="store_true", help="LABELMAP: add a palette colour LUT from the segment colours")
    seg_export.add_argument("--split-layers", action="store_true", help="LABELMAP with overlapping segments: one instance per layer")
    seg_export.add_argument("--series-description", metavar="TEXT")
    seg_export.add_argument("--series-number", type=int, metavar="N")
    seg_export.add_argument("--content-creator", metavar="NAME", help="Content Creator's Name (DICOM PN, e.g. Doe^Jane)")
    seg_export.add_argument("--algorithm-type", default="MANUAL", type=str.upper, choices=["MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"])
    seg_export.add_argument("--algorithm-name", metavar="NAME", help="for SEMIAUTOMATIC/AUTOMATIC segments")
    seg_export.add_argument("--clinical-trial-series-id", metavar="ID")
    seg_export.add_argument("--clinical-trial-time-point-id", metavar="ID")
    seg_export.add_argument("--clinical-trial-center", metavar="NAME", help="Clinical Trial Coordinating Center Name")
    seg_export.add_argument("--lidc", action="store_true",
                            help="LIDC preset: 'Nodule N - Annotation A', one tracking UID per nodule, Nodule in Lung")
    seg_export.add_argument("--force", action="store_true", help="replace an existing output file")

    seg_import = command(seg_commands, "import", "read a DICOM SEG back into a segmentation file",
        "Read any DICOM SEG (BINARY, FRACTIONAL, LABELMAP; from any writer) into segments on the grid of "
        "its reference series (when --series is given), else on the SEG's own frame grid.")
    seg_import.add_argument("seg_file", metavar="SEG.dcm", help="the SEG file")
    seg_import.add_argument("--series", metavar="DIR", help="folder holding the referenced series")
    seg_import.add_argument("--out", required=True, metavar="FILE",
                            help="output .seg.nrrd (or .nrrd / .nii.gz label map when segments do not overlap)")

    dicomize = command(commands, "dicomize", "write a DICOM series for a non-DICOM volume (NRRD, NIfTI, MHA)",
        "Write a DICOM series (one file per slice) for a volume that has none, so that "
                    "annotations drawn on it can be exported as DICOM.")
    dicomize.add_argument("volume", metavar="VOLUME", help="NRRD, NIfTI or MHA volume")
    dicomize.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    dicomize.add_argument("--modality", default="CT", choices=["CT", "MR", "OT"], help="CT Image, MR Image or Secondary Capture storage (default CT)")
    dicomize.add_argument("--patient-name", default="Anonymous", help="Patient's Name (default Anonymous)")
    dicomize.add_argument("--patient-id", help="Patient ID (default: random)")
    dicomize.add_argument("--description", help="Series Description")
    dicomize.add_argument("--force", action="store_true", help="write into a non-empty output folder")

    sr = command(commands, "sr", "DICOM SR TID 1500 measurement reports",
                 "DICOM SR (TID 1500 Imaging Measurement Report): measurements, coded and text evaluations of the "
                 "segments of a SEG, and markups as 3D coordinates (LPS); and any such report back.")
    sr_commands = sr.add_subparsers(dest="action", metavar="ACTION", required=True)
    sr_export = command(sr_commands, "export", "write a Comprehensive 3D SR about a SEG's segments and markups",
        "Write one Comprehensive 3D SR: a volumetric measurement group per segment of the SEG (volume, mean, SD, "
        "min, max of the image under it, maximum 3D diameter, surface area; evaluations from --evaluations) and "
        "a group per markup (SCOORD3D in the series' frame of reference).")
    sr_export.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    sr_export.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    sr_export.add_argument("--seg", required=True, metavar="SEG.dcm", help="the DICOM SEG of the segments (written by 'seg export' or another tool)")
    sr_export.add_argument("--segmentation", metavar="FILE", help="the .seg.nrrd the SEG was written from (its segment ids/names may then be used in --evaluations)")
    sr_export.add_argument("--markups", nargs="+", default=[], metavar="FILE", help="Slicer .mrk.json files (LPS or RAS)")
    sr_export.add_argument("--evaluations", metavar="FILE.csv", help="evaluation CSV: segment,concept,value (scores of the code table, codes or free text)")
    sr_export.add_argument("--code-table", default="lidc", metavar="NAME|FILE", help="code table for --evaluations (default: the bundled LIDC characteristics)")
    sr_export.add_argument("--lidc", action="store_true", help="LIDC preset: finding Nodule, site Lung, descriptions 'Nodule N - Annotation A'")
    sr_export.add_argument("--observer", metavar="NAME", help="person observer (DICOM PN, e.g. Doe^Jane)")
    sr_export.add_argument("--device", metavar="NAME", help="device observer name (default DicomAnnotEmbed when no --observer)")
    sr_export.add_argument("--series-description", metavar="TEXT")
    sr_export.add_argument("--out", required=True, metavar="SR.dcm", help="output SR file")
    sr_export.add_argument("--force", action="store_true", help="replace an existing output file")
    sr_import = command(sr_commands, "import", "read a TID 1500 SR into markups, a measurements table and the SEG",
        "Read any TID 1500 SR (ours, dcmqi's, highdicom's): markups.mrk.json (LPS), measurements.csv, and "
        "segmentation.seg.nrrd when the referenced SEG is found beside the SR or in --seg-dir.")
    sr_import.add_argument("sr_file", metavar="SR.dcm", help="the SR file")
    sr_import.add_argument("--series", metavar="DIR", help="folder holding the referenced image series (needed for image-relative coordinates)")
    sr_import.add_argument("--seg-dir", action="append", default=[], metavar="DIR", help="folder to search for the referenced SEG (repeatable; the SR's folder is always searched)")
    sr_import.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    sr_import.add_argument("--force", action="store_true", help="write into a non-empty output folder")

    csv_table = command(commands, "csv", "annotation tables (CSV databases) into DICOM",
                        "Annotation tables: one row per shape per slice (points, ellipses/ovals, circles, rectangles, "
                        "polygons, freehand/pencil, polylines; pixel or patient coordinates) rasterised onto a series and "
                        "written as overlays, SEG and SR. Format: README 'CSV in, ML out'; example: "
                        "Resources/Examples/annotations_example.csv.")
    csv_commands = csv_table.add_subparsers(dest="action", metavar="ACTION", required=True)
    csv_import = command(csv_commands, "import", "convert an annotation table into overlay series, SEG and SR",
        "Read TABLE onto the series (one segment per finding, overlapping findings allowed; points and polylines as "
        "markups; per-finding attributes such as LIDC characteristics as SR evaluations) and write OUT/overlay/, "
        "OUT/seg.dcm, OUT/sr.dcm, with OUT/segmentation.seg.nrrd, OUT/markups.mrk.json and OUT/evaluations.csv. "
        "Bad rows (an image not in the series, bad coordinates, unknown shapes, ...) are listed with their row numbers "
        "and in OUT/bad_rows.csv; the other rows are converted, and the exit code is 3 unless --skip-bad-rows.")
    csv_import.add_argument("table", metavar="TABLE.csv", help="the annotation table")
    csv_import.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    csv_import.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    csv_import.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    csv_import.add_argument("--formats", default="overlay,seg,sr", type=_format_list, metavar="LIST",
                            help="comma-separated outputs among overlay, seg, sr (default: all three; sr implies seg)")
    csv_import.add_argument("--skip-bad-rows", action="store_true", help="exit 0 even when some rows could not be converted (they are still listed)")
    csv_import.add_argument("--boundary", default="inside", choices=["inside", "outside"],
                            help="polygon vertices of rows without a boundary cell: on the region's border (inside, default) "
                                 "or just outside it (outside: the LIDC convention)")
    csv_import.add_argument("--lines-in-segments", action="store_true", help="also draw points and polylines into their finding's segment")
    csv_import.add_argument("--position-tolerance", type=float, metavar="MM", help="how far slice positions may lie from a slice (default: a quarter of the spacing)")
    csv_import.add_argument("--code-table", default="lidc", metavar="NAME|FILE", help="code table of the attribute columns (default: the bundled LIDC characteristics)")
    csv_import.add_argument("--lidc", action="store_true", help="LIDC preset for SEG and SR (finding Nodule, site Lung, 'Nodule N - Annotation A')")
    csv_import.add_argument("--split", action="store_true", help="overlay: when there are more findings than free overlay groups, write several series")
    csv_import.add_argument("--observer", metavar="NAME", help="SR person observer (DICOM PN, e.g. Doe^Jane)")
    csv_import.add_argument("--force", action="store_true", help="write into a non-empty output folder")

    export_ml = command(commands, "export-ml", "label maps (NIfTI, NRRD), sidecars, a measurements CSV for machine learning",
        "From our DICOM outputs or other tools' SEG/SR (files or folders, searched recursively): per annotation object "
        "a case folder with label maps (labels.nii.gz, labels.nrrd; one per layer when segments overlap), a JSON sidecar "
        "of segment names, colours and codes, segmentation.seg.nrrd, the image as image.nii.gz when its series is among "
        "the inputs, optionally per-slice PNG masks; and OUT/measurements.csv (one row per finding, one column per "
        "concept) and OUT/cases.csv.")
    export_ml.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM files or folders: SEG, TID 1500 SR, overlay series, and the image series they refer to")
    export_ml.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    export_ml.add_argument("--png", action="store_true", help="also write per-slice PNG masks (label values; 16-bit when above 255)")
    export_ml.add_argument("--no-image", action="store_true", help="do not write image.nii.gz")
    export_ml.add_argument("--code-table", default="lidc", metavar="NAME|FILE", help="code table used to turn coded evaluations back into scores (default: lidc)")
    export_ml.add_argument("--force", action="store_true", help="write into a non-empty output folder")

    sample = command(commands, "sample", "write the bundled sample case (DICOM series, .seg.nrrd, .mrk.json)",
        "Write OUT/series/ (a CT-like DICOM series), OUT/segmentation.seg.nrrd (5 segments, "
                    "one overlapping another) and OUT/markups.mrk.json (point list, line, closed curve, ROI).")
    sample.add_argument("out", metavar="OUT", help="output folder (must be empty unless --force)")
    sample.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    return parser


def _run(args: argparse.Namespace) -> int:
    from . import api

    progress = TqdmProgress(enabled=not args.quiet and sys.stderr.isatty())
    try:
        if args.command == "sample":
            from .files.sample import write_sample

            case = write_sample(args.out, force=args.force, progress=progress)
            print(f"sample written: {case.series_dir}, {case.segmentation_path}, {case.markups_path}")
        elif args.command == "dicomize":
            files = api.dicomize(args.volume, args.out, modality=args.modality, patient_name=args.patient_name,
                                 patient_id=args.patient_id, series_description=args.description,
                                 force=args.force, progress=progress)
            print(f"{len(files)} DICOM files written to {args.out}")
        elif args.command == "overlay" and args.action == "export":
            if not args.segmentation and not args.markups:
                raise DicomAnnotEmbedErrorUsage("give --segmentation and/or --markups")
            result = api.export_overlay(
                args.series, args.segmentation, args.markups, args.out, series_uid=args.series_uid,
                keep_uids=args.keep_uids, split=args.split, fill_markups=args.fill_markups, force=args.force,
                series_description=args.description, preview_dir=args.preview,
                preview_slices=args.preview_slices, progress=progress)
            for s in result.series:
                planes = ", ".join(f"{g}={name}" for g, name in s.planes.items())
                print(f"{len(s.files)} files written to {s.folder} (series {s.series_instance_uid}): {planes}")
            for path in getattr(result, "preview_files", []):
                print(f"preview: {path}")
        elif args.command == "seg" and args.action == "export":
            from .encodings.seg import SegExportOptions

            if Path(args.out).exists() and not args.force:
                raise OutputError("exists; use --force to replace it", args.out)
            options = SegExportOptions(
                series_description=args.series_description, content_creator_name=args.content_creator,
                algorithm_type=args.algorithm_type, algorithm_name=args.algorithm_name,
                clinical_trial_series_id=args.clinical_trial_series_id,
                clinical_trial_time_point_id=args.clinical_trial_time_point_id,
                clinical_trial_coordinating_center_name=args.clinical_trial_center)
            if args.series_number is not None:
                options.series_number = args.series_number
            result = api.export_seg(args.series, args.segmentation, args.out, series_uid=args.series_uid,
                                    metadata=args.metadata, lidc=args.lidc, seg_type=args.seg_type,
                                    compression=args.compress,
                                    keep_empty_frames=args.keep_empty_frames, fractional_type=args.fractional_type,
                                    palette=args.palette, split_layers=args.split_layers, options=options,
                                    progress=progress)
            for path, frames, names in zip(result.paths, result.frames, result.segments):
                print(f"{result.seg_type.upper()} SEG ({result.compression}) written to {path}: {frames} frames, "
                      f"{len(names)} segments: {', '.join(names)}")
        elif args.command == "seg" and args.action == "import":
            from .encodings.seg import seg_summary

            imported = api.import_seg(args.seg_file, args.series, segmentation_out=args.out, progress=progress)
            print(f"{seg_summary(imported)} written to {args.out}")
        elif args.command == "overlay" and args.action == "import":
            annotations = api.import_overlay(args.series, series_uid=args.series_uid, segmentation_out=args.out,
                                             markups_out=args.markups_out, progress=progress)
            names = ", ".join(s.name for s in annotations.segmentation.segments) if annotations.segmentation else ""
            print(f"{len(annotations.segmentation.segments) if annotations.segmentation else 0} segments "
                  f"written to {args.out}" + (f": {names}" if names else ""))
            if args.markups_out and annotations.markups:
                print(f"{len(annotations.markups)} markups written to {args.markups_out}")
        elif args.command == "sr" and args.action == "export":
            if Path(args.out).exists() and not args.force:
                raise OutputError("exists; use --force to replace it", args.out)
            result = api.export_sr(args.series, args.seg, args.out, segmentation=args.segmentation,
                                   markups=args.markups, evaluations=args.evaluations, series_uid=args.series_uid,
                                   code_table=args.code_table, lidc=args.lidc, observer_name=args.observer,
                                   device_name=args.device, series_description=args.series_description,
                                   progress=progress)
            numeric = sum(1 for r in result.records if r.kind == "numeric")
            print(f"SR written to {result.path}: {result.groups} measurement groups, {numeric} measurements, "
                  f"{len(result.records) - numeric} evaluations")
        elif args.command == "sr" and args.action == "import":
            from .encodings.sr import sr_summary

            imported = api.import_sr(args.sr_file, args.series, seg_folders=args.seg_dir, out_dir=args.out,
                                     force=args.force, progress=progress)
            print(sr_summary(imported))
            for path in imported.written:
                print(f"written: {path}")
            for message in imported.missing:
                print(f"missing: {message}")
        elif args.command == "csv" and args.action == "import":
            return _csv_import(args, progress)
        elif args.command == "export-ml":
            result = api.export_ml(args.inputs, args.out, png=args.png, image=not args.no_image,
                                   code_table=args.code_table, force=args.force, progress=progress)
            progress.close()
            for case in result.cases:
                print(f"{case.name}: {case.summary()}")
            print(f"{len(result.cases)} cases written to {args.out}; measurements: {result.measurements_path} "
                  f"({result.findings} findings)")
            for message in result.problems:
                print(f"problem: {message}", file=sys.stderr)
            if result.problems:
                raise InputError(f"{len(result.problems)} input(s) could not be converted (listed above); the others "
                                 "were written")
    finally:
        progress.close()
    return 0


def _csv_import(args: argparse.Namespace, progress: TqdmProgress) -> int:
    """``csv import``: convert, print what was written, list bad rows; 3 when some rows are bad
    (unless --skip-bad-rows)."""
    from . import api

    result = api.import_csv(args.table, args.series, args.out, formats=args.formats, series_uid=args.series_uid,
                            boundary=args.boundary, code_table=args.code_table,
                            lines_in_segments=args.lines_in_segments, position_tolerance_mm=args.position_tolerance,
                            lidc=args.lidc, split=args.split, observer_name=args.observer, force=args.force,
                            progress=progress)
    progress.close()
    conversion = result.conversion
    print(f"{args.table}: {conversion.summary()}")
    for path in (result.segmentation_path, result.markups_path, result.evaluations_path):
        if path is not None:
            print(f"written: {path}")
    if result.overlay is not None:
        for s in result.overlay.series:
            print(f"overlay: {len(s.files)} files written to {s.folder} (series {s.series_instance_uid})")
    if result.seg is not None:
        print(f"SEG ({result.seg.seg_type.upper()}) written to {', '.join(str(p) for p in result.seg.paths)}")
    if result.sr is not None:
        numeric = sum(1 for r in result.sr.records if r.kind == "numeric")
        print(f"SR written to {result.sr.path}: {result.sr.groups} measurement groups, {numeric} measurements, "
              f"{len(result.sr.records) - numeric} evaluations")
    for problem in conversion.warnings:
        print(f"warning: {problem}", file=sys.stderr)
    if conversion.bad_rows:
        label = "skipped" if args.skip_bad_rows else "bad"
        for problem in conversion.bad_rows:
            print(f"{label}: {problem}", file=sys.stderr)
        if not args.skip_bad_rows:
            print(f"error: {args.table}: {len(conversion.bad_rows)} of {conversion.rows} rows could not be converted "
                  f"(listed above and in {result.bad_rows_path}); the other rows were written; use --skip-bad-rows to "
                  "accept that", file=sys.stderr)
            return InputError.exit_code
    return 0


class DicomAnnotEmbedErrorUsage(Exception):
    """A combination of options that argparse cannot express."""


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("quiet", "verbose", "debug"):  # shared flags are absent unless given
        setattr(args, flag, getattr(args, flag, False))
    level = logging.WARNING if args.quiet else (logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
    warnings.simplefilter("ignore", category=UserWarning)  # our warnings are logged once, not twice
    try:
        return _run(args)
    except DicomAnnotEmbedErrorUsage as exc:
        parser.error(str(exc))
    except DicomAnnotEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure is a bug: say so in one line
        if args.debug:
            raise
        print(f"internal error: {exc.__class__.__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
