"""``dicomannotembed gsps export|import``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import OutputError
from ._common import UsageError, plural
from ._common import add_send_option, send_outputs


def register(commands, command) -> None:
    gsps = command(commands, "gsps", "Grayscale Softcopy Presentation States (graphics on the original images)",
                   "DICOM GSPS: markups (and segment outlines) as graphic and text annotations on the original "
                   "images, in one small object that PACS viewers show without a new series; and any GSPS back "
                   "into markups (LPS).")
    actions = gsps.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = command(actions, "export", "write one GSPS drawing markups (and outlines) on the series",
        "Write one Grayscale Softcopy Presentation State referencing the series' images: one graphic layer per "
        "markup (and per segment with --outlines) in its colour, on each slice it crosses, with a text of its "
        "name and measurement; the series' window as the presentation's VOI unless --window-center/--window-width.")
    export.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    export.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    export.add_argument("--markups", nargs="+", default=[], metavar="FILE", help="Slicer .mrk.json files (LPS or RAS)")
    export.add_argument("--segmentation", metavar="FILE", help=".seg.nrrd or label map whose segments --outlines draws (or a DICOM SEG, RTSTRUCT, SR or overlay series folder, read as convert reads them)")
    export.add_argument("--outlines", action="store_true", help="draw each segment's outline on each slice as closed polylines")
    export.add_argument("--fill", dest="fill", action="store_true", default=None, help="draw closed shapes filled")
    export.add_argument("--no-fill", dest="fill", action="store_false", help="draw closed shapes as outlines even when the markup says filled")
    export.add_argument("--interpolated", action="store_true",
                        help="curves and closed curves as INTERPOLATED graphics (drawn smooth by the viewer) instead of polylines")
    export.add_argument("--no-text", action="store_true", help="no text objects (markup names and measurements)")
    export.add_argument("--window-center", type=float, metavar="VALUE", help="VOI window centre (with --window-width)")
    export.add_argument("--window-width", type=float, metavar="VALUE", help="VOI window width, at least 1 (with --window-center)")
    export.add_argument("--series-description", default="Annotations (GSPS)", metavar="TEXT")
    export.add_argument("--content-creator", metavar="NAME", help="Content Creator's Name (DICOM PN, e.g. Doe^Jane)")
    export.add_argument("--out", required=True, metavar="FILE.dcm", help="output presentation state file")
    export.add_argument("--force", action="store_true", help="replace an existing output file")
    imp = command(actions, "import", "read a GSPS (ours or another tool's) into markups",
        "Read the graphic annotations of any presentation state into markups (LPS) on the planes of the "
        "referenced images: polylines as curves (closed ones as closed curves, two points as lines), points as "
        "point lists, circles and ellipses as closed curves, anchored texts as names; the rest is reported.")
    imp.add_argument("gsps_file", metavar="FILE.dcm", help="the presentation state file")
    imp.add_argument("--series", required=True, metavar="DIR", help="folder holding the referenced image series")
    imp.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    imp.add_argument("--markups-out", required=True, metavar="FILE.mrk.json", help="output markups file (LPS)")
    imp.add_argument("--force", action="store_true", help="replace an existing output file")
    add_send_option(export)
    export.set_defaults(run=run_export)
    imp.set_defaults(run=run_import)


def run_export(args: argparse.Namespace, progress) -> int:
    from .. import api

    if Path(args.out).exists() and not args.force:
        raise OutputError("exists; use --force to replace it", args.out)
    if not args.markups and not args.outlines:
        raise UsageError("give --markups, or --segmentation with --outlines")
    if args.outlines and not args.segmentation:
        raise UsageError("--outlines needs --segmentation")
    if (args.window_center is None) != (args.window_width is None):
        raise UsageError("give --window-center and --window-width together")
    window = None
    if args.window_width is not None:
        if not args.window_width >= 1:
            raise UsageError(f"--window-width must be at least 1, got {args.window_width:g}")
        window = (args.window_center, args.window_width)
    result = api.export_gsps(args.series, args.markups, args.out, segmentation=args.segmentation,
                             outlines=args.outlines, series_uid=args.series_uid, window=window, fill=args.fill,
                             interpolated=args.interpolated,
                             text=not args.no_text, force=args.force, progress=progress,
                             series_description=args.series_description,
                             content_creator_name=args.content_creator)
    print(result.summary())
    for name, what in result.layers.items():
        print(f"  layer {name}: {what}")
    for line in result.skipped:
        print(f"  skipped: {line}")
    send_outputs(args, [result.path], progress)
    return 0


def run_import(args: argparse.Namespace, progress) -> int:
    from .. import api

    if Path(args.markups_out).exists() and not args.force:
        raise OutputError("exists; use --force to replace it", args.markups_out)
    imported = api.import_gsps(args.gsps_file, args.series, series_uid=args.series_uid,
                               markups_out=args.markups_out, progress=progress)
    print(f"{plural(len(imported.markups), 'markup')} written to {args.markups_out}")
    for line in imported.report:
        print(f"  not converted: {line}")
    return 0
