"""``dicomannotembed csv import``."""
from __future__ import annotations

import argparse
import sys

from ..core.errors import InputError
from ._common import format_list
from ._common import add_send_option, send_outputs


def register(commands, command) -> None:
    csv_table = command(commands, "csv", "annotation tables (CSV databases) into DICOM",
                        "Annotation tables: one row per shape per slice (points, ellipses/ovals, circles, rectangles, "
                        "polygons, freehand/pencil, polylines; pixel or patient coordinates) rasterised onto a series and "
                        "written as overlays, SEG and SR. Format: README 'CSV in, ML out'; example: "
                        "Resources/Examples/annotations_example.csv.")
    csv_commands = csv_table.add_subparsers(dest="action", metavar="ACTION", required=True)
    csv_import = command(csv_commands, "import", "convert an annotation table into overlay series, SEG and SR",
        "Read TABLE onto the series (one segment per finding, overlapping findings allowed; points and polylines as "
        "markups; per-finding attributes such as LIDC characteristics as SR evaluations) and write OUT/overlay/, "
        "OUT/seg.dcm, OUT/sr.dcm (and OUT/sr_markups.dcm for points and polylines), with OUT/segmentation.seg.nrrd, OUT/markups.mrk.json and OUT/evaluations.csv. "
        "Bad rows (an image not in the series, bad coordinates, unknown shapes, ...) are listed with their row numbers "
        "and in OUT/bad_rows.csv; the other rows are converted, and the exit code is 3 unless --skip-bad-rows.")
    csv_import.add_argument("table", metavar="TABLE.csv", help="the annotation table")
    csv_import.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    csv_import.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    csv_import.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    csv_import.add_argument("--formats", default="overlay,seg,sr", type=format_list, metavar="LIST",
                            help="comma-separated outputs among overlay, seg, sr, rtstruct, gsps (default: overlay,seg,sr; sr implies seg)")
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
    add_send_option(csv_import)
    csv_import.set_defaults(run=run_import)


def run_import(args: argparse.Namespace, progress) -> int:
    """``csv import``: convert, print what was written, list bad rows; 3 when some rows are bad
    (unless --skip-bad-rows)."""
    from .. import api

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
        print(f"SR written to {', '.join(str(p) for p in result.sr.paths)}: {result.sr.groups} measurement groups, "
              f"{numeric} measurements, {len(result.sr.records) - numeric} evaluations")
    if result.rtstruct is not None:
        print(f"RTSTRUCT written to {result.rtstruct.path}: {len(result.rtstruct.rois)} ROIs")
    if result.gsps is not None:
        print(f"GSPS written to {result.gsps.path}: {result.gsps.graphics} graphics on {result.gsps.images} images")
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
    send_outputs(args, [s.folder for s in (result.overlay.series if result.overlay is not None else [])]
                 + list(result.seg.paths if result.seg is not None else []) + (list(result.sr.paths) if result.sr is not None else [])
                 + [r.path for r in (result.rtstruct, result.gsps) if r is not None],
                 progress)
    return 0
