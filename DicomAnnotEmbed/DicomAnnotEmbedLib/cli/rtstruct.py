"""``dicomannotembed rtstruct export|import``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import OutputError
from ._common import UsageError, plural
from ._common import add_send_option, send_outputs


def _type_mapping(text: str):
    name, sep, value = text.rpartition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected SEGMENT=TYPE (e.g. Tumor=GTV), got {text!r}")
    return name, value.upper()


def register(commands, command) -> None:
    from ..encodings.rtstruct import DEFAULT_TOLERANCE_MM, INTERPRETED_TYPES

    rt = command(commands, "rtstruct", "DICOM RT Structure Set (contours)",
                 "RT Structure Set: export segments as closed planar contours (and markups as points and "
                 "open contours), and import any RTSTRUCT back onto its series.")
    rt_commands = rt.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = command(rt_commands, "export", "write an RTSTRUCT referencing the series",
        "Write segments as CLOSED_PLANAR contours along pixel edges (rasterised by pixel centre, even-odd, "
        "they give back the masks exactly) and markups as POINT / OPEN_PLANAR / OPEN_NONPLANAR / "
        "CLOSED_PLANAR contours, all in LPS, as one RT Structure Set.")
    export.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    export.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    export.add_argument("--segmentation", metavar="FILE", help=".seg.nrrd or a NRRD/NIfTI label map (or a DICOM SEG, RTSTRUCT, SR or overlay series folder, read as convert reads them)")
    export.add_argument("--markups", metavar="FILE", action="append", default=[], help=".mrk.json (repeatable)")
    export.add_argument("--out", required=True, metavar="FILE.dcm", help="output RTSTRUCT file")
    export.add_argument("--interpreted-type", default="ORGAN", type=str.upper, choices=INTERPRETED_TYPES,
                        metavar="TYPE", help="RT ROI Interpreted Type of the segments (default ORGAN)")
    export.add_argument("--type-of", action="append", default=[], type=_type_mapping, metavar="SEGMENT=TYPE",
                        help="interpreted type of one segment by name, e.g. Tumor=GTV (repeatable)")
    export.add_argument("--label", metavar="TEXT", help="Structure Set Label (at most 16 characters)")
    export.add_argument("--series-description", metavar="TEXT")
    export.add_argument("--series-number", type=int, metavar="N")
    export.add_argument("--force", action="store_true", help="replace an existing output file")

    imp = command(rt_commands, "import", "read an RTSTRUCT back into segments and markups",
        "Read any RT Structure Set onto the grid of its referenced series: closed contours become segments "
        "(pixel centre inside, contours of a slice combined even-odd), points and open contours markups. "
        "Contours that are not on a slice of the series are skipped with a warning.")
    imp.add_argument("rtstruct_file", metavar="FILE.dcm", help="the RTSTRUCT file")
    imp.add_argument("--series", metavar="DIR", help="folder holding the referenced series (default: the RTSTRUCT's folder)")
    imp.add_argument("--out", required=True, metavar="FILE", help="output .seg.nrrd (or .nrrd / .nii.gz label map)")
    imp.add_argument("--markups-out", metavar="FILE.mrk.json", help="output for points and open contours")
    imp.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_MM, metavar="MM",
                     help=f"a contour is on a slice when all its points are this close to its plane (default {DEFAULT_TOLERANCE_MM})")
    imp.add_argument("--boundary-pixels", default="auto", choices=["auto", "include", "exclude"],
                     help="whether pixels whose centres a contour passes through belong to it (default auto: yes for "
                          "contours whose vertices all lie on pixel centres, as rt-utils and OpenCV trace them)")
    add_send_option(export)
    export.set_defaults(run=run_export)
    imp.set_defaults(run=run_import)


def run_export(args: argparse.Namespace, progress) -> int:
    from .. import api
    from ..encodings.rtstruct import INTERPRETED_TYPES, RtStructExportOptions

    if not args.segmentation and not args.markups:
        raise UsageError("give --segmentation and/or --markups")
    if Path(args.out).exists() and not args.force:
        raise OutputError("exists; use --force to replace it", args.out)
    mapping = dict(args.type_of)
    bad = [f"{name}={value}" for name, value in mapping.items() if value not in INTERPRETED_TYPES]
    if bad:
        raise UsageError(f"--type-of {', '.join(bad)}: the type must be one of {', '.join(INTERPRETED_TYPES)}")
    options = RtStructExportOptions(interpreted_type=args.interpreted_type, interpreted_types=mapping)
    if args.label:
        options.structure_set_label = args.label
    if args.series_description:
        options.series_description = args.series_description
    if args.series_number is not None:
        options.series_number = args.series_number
    result = api.export_rtstruct(args.series, args.segmentation, args.out, markups=args.markups,
                                 series_uid=args.series_uid, options=options, progress=progress)
    print(f"RTSTRUCT written to {result.path}: {plural(len(result.rois), 'ROI')}, {plural(result.contours, 'contour')}, "
          f"{plural(result.points, 'point')}: {', '.join(result.rois)}")
    send_outputs(args, [result.path], progress)
    return 0


def run_import(args: argparse.Namespace, progress) -> int:
    from .. import api
    from ..encodings.rtstruct import rtstruct_summary

    if not str(args.out).lower().endswith((".nrrd", ".nii.gz", ".nii")):
        raise UsageError("--out must end in .seg.nrrd, .nrrd, .nii or .nii.gz")
    imported = api.import_rtstruct(args.rtstruct_file, args.series, segmentation_out=args.out,
                                   markups_out=args.markups_out, tolerance_mm=args.tolerance,
                                   boundary_pixels=args.boundary_pixels, progress=progress)
    written = ([args.out] if imported.segmentation is not None else []) + \
        ([args.markups_out] if args.markups_out and imported.markups else [])
    print(f"{rtstruct_summary(imported)}; written: {', '.join(map(str, written)) or 'nothing'}")
    if imported.markups and not args.markups_out:
        print(f"{plural(len(imported.markups), 'markup')} (points, open contours) not written: give --markups-out")
    return 0
