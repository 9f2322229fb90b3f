"""``dicomannotembed overlay export|import``."""
from __future__ import annotations

import argparse
import logging

from ._common import UsageError, plural, slice_list
from ._common import add_send_option, send_outputs


def register(commands, command) -> None:
    overlay = command(commands, "overlay", "overlay-embedded DICOM (60xx planes)",
                      "Overlay-embedded DICOM: every segment or markup as an overlay "
                                              "plane in a copy of the source images.")
    overlay_commands = overlay.add_subparsers(dest="action", metavar="ACTION", required=True)

    export = command(overlay_commands, "export", "write a copy of the series with segments and markups as overlay planes",
        "Write a copy of every image of the series with each segment as a Type R overlay "
                    "plane and each markup as a Type G plane, as a new DERIVED series.")
    export.add_argument("--series", required=True, metavar="DIR", help="folder holding the reference series (searched recursively)")
    export.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    export.add_argument("--segmentation", metavar="FILE", help=".seg.nrrd, or a NRRD/NIfTI label map (resampled onto the series if its grid differs) (or a DICOM SEG, RTSTRUCT, SR or overlay series folder, read as convert reads them)")
    export.add_argument("--markups", nargs="+", default=[], metavar="FILE", help="Slicer .mrk.json files (LPS or RAS)")
    export.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    export.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    export.add_argument("--split", action="store_true", help="when there are more segments and markups than free overlay groups, write several series")
    export.add_argument("--fill-markups", action="store_true", help="draw closed curves and ROI boxes filled instead of outlined")
    export.add_argument("--keep-uids", action="store_true", help="keep the source UIDs (risky: for in-place replacement only)")
    export.add_argument("--description", metavar="TEXT", help="Series Description of the output (default: source + list of planes)")
    export.add_argument("--preview", metavar="DIR", help="also write PNG previews with the overlays in their colours")
    export.add_argument("--preview-slices", type=slice_list, metavar="K,K,...", help="slice indices (0-based, in sorted order) for --preview; default: the most annotated")

    imp = command(overlay_commands, "import", "read overlay planes of a series back into a segmentation",
        "Read every overlay plane of a series (ours, scanner-written, or legacy overlays in "
                    "unused pixel bits) into segments on the series grid.")
    imp.add_argument("--series", required=True, metavar="DIR", help="folder holding the overlay series")
    imp.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    imp.add_argument("--out", required=True, metavar="FILE", help="output .seg.nrrd (or .nrrd / .nii.gz label map when segments do not overlap)")
    imp.add_argument("--markups-out", metavar="FILE", help="output .mrk.json for markups stored by DicomAnnotEmbed")
    imp.add_argument("--force", action="store_true", help="replace existing output files")
    add_send_option(export)
    export.set_defaults(run=run_export)
    imp.set_defaults(run=run_import)


def run_export(args: argparse.Namespace, progress) -> int:
    from .. import api

    if not args.segmentation and not args.markups:
        raise UsageError("give --segmentation and/or --markups")
    if args.preview_slices is not None and not args.preview:
        raise UsageError("--preview-slices needs --preview DIR")
    result = api.export_overlay(
        args.series, args.segmentation, args.markups, args.out, series_uid=args.series_uid,
        keep_uids=args.keep_uids, split=args.split, fill_markups=args.fill_markups, force=args.force,
        series_description=args.description, preview_dir=args.preview,
        preview_slices=args.preview_slices, progress=progress)
    for s in result.series:
        planes = ", ".join(f"{g}={name}" for g, name in s.planes.items())
        print(f"{plural(len(s.files), 'file')} written to {s.folder} (series {s.series_instance_uid}): {planes}")
    for path in getattr(result, "preview_files", []):
        print(f"preview: {path}")
    send_outputs(args, [s.folder for s in result.series], progress)
    return 0


def run_import(args: argparse.Namespace, progress) -> int:
    from .. import api

    annotations = api.import_overlay(args.series, series_uid=args.series_uid, segmentation_out=args.out,
                                     markups_out=args.markups_out, progress=progress)
    names = ", ".join(s.name for s in annotations.segmentation.segments) if annotations.segmentation else ""
    print(f"{plural(len(annotations.segmentation.segments) if annotations.segmentation else 0, 'segment')} "
          f"written to {args.out}" + (f": {names}" if names else ""))
    if args.markups_out and annotations.markups:
        print(f"{plural(len(annotations.markups), 'markup')} written to {args.markups_out}")
    elif annotations.markups:
        logging.getLogger(__name__).warning(
            "%d markups stored in the series (%s) are not written: give --markups-out FILE.mrk.json to keep them",
            len(annotations.markups), ", ".join(m.name for m in annotations.markups))
    return 0
