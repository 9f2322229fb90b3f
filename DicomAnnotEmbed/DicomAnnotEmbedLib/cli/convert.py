"""``dicomannotembed convert INPUT... --to TARGET --out PATH``: any encoding to any other."""
from __future__ import annotations

import argparse

from ._common import UsageError, add_send_option, send_outputs

#: api.convert.TARGETS, kept here so that parsing arguments imports nothing heavy (a test checks they agree).
TARGETS = ("overlay", "seg", "sr", "rtstruct", "gsps", "seg-nrrd", "nifti")
SERIES_TARGETS = ("overlay", "seg", "sr", "rtstruct", "gsps")
#: encodings.seg's SEG_TYPES and COMPRESSIONS, as constants: importing the SEG encoding (highdicom)
#: would slow every command's start (a test checks that they agree).
SEG_TYPES = ("auto", "binary", "labelmap", "fractional")
COMPRESSIONS = ("auto", "none", "jpegls", "rle", "jpeg2000")


def register(commands, command) -> None:
    from ..encodings.rtstruct import INTERPRETED_TYPES

    conv = command(commands, "convert", "any annotation encoding to any other, in one step",
        "Read annotations in any encoding (DICOM SEG, Label Map SEG, TID 1500 SR, RTSTRUCT, GSPS, an image "
        "series folder with overlay planes, .seg.nrrd, .nrrd/.nii.gz label maps, .mrk.json, CSV annotation "
        "tables; several inputs merge) and write them in another. Names, colours, codes, tracking ids and "
        "markups (LPS) carry over where the target holds them; what it cannot hold is listed in one warning.")
    conv.add_argument("inputs", nargs="+", metavar="INPUT", help="input files or series folders")
    conv.add_argument("--to", required=True, choices=TARGETS, help="target encoding")
    conv.add_argument("--out", required=True, metavar="PATH",
                      help="output file (a folder for overlay; for sr the SEG goes beside it as <stem>_seg.dcm)")
    conv.add_argument("--series", metavar="DIR",
                      help="folder holding the reference series (needed for DICOM targets, GSPS and CSV inputs)")
    conv.add_argument("--series-uid", metavar="UID", help="Series Instance UID to use when the folder holds several series")
    conv.add_argument("--markups-out", metavar="FILE.mrk.json", help="seg-nrrd/nifti: also write the markups here")
    conv.add_argument("--force", action="store_true", help="replace an existing output")
    seg = conv.add_argument_group("seg and sr targets")
    seg.add_argument("--type", dest="seg_type", choices=SEG_TYPES,
                     help="SEG type (default auto for seg, binary for the SEG beside an SR)")
    seg.add_argument("--compress", dest="compression", choices=COMPRESSIONS,
                     help="SEG lossless compression (default auto)")
    seg.add_argument("--split-layers", action="store_true", help="LABELMAP with overlapping segments: one file per layer")
    seg.add_argument("--palette", action="store_true", help="LABELMAP: add a palette colour LUT")
    rt = conv.add_argument_group("rtstruct target")
    rt.add_argument("--interpreted-type", type=str.upper, choices=INTERPRETED_TYPES, metavar="TYPE",
                    help="RT ROI Interpreted Type of the segments (default ORGAN)")
    gs = conv.add_argument_group("gsps target")
    gs.add_argument("--outlines", action="store_true", help="draw each segment's outline (else segments are dropped)")
    ov = conv.add_argument_group("overlay target")
    ov.add_argument("--split", action="store_true", help="several series when the overlay groups do not suffice")
    ov.add_argument("--fill-markups", action="store_true", help="draw closed curves and ROI boxes filled")
    add_send_option(conv)  # DICOM targets
    conv.set_defaults(run=run)


#: option -> the targets it applies to.
_APPLIES = {"seg_type": ("seg", "sr"), "compression": ("seg",), "split_layers": ("seg",), "palette": ("seg",),
            "interpreted_type": ("rtstruct",), "outlines": ("gsps",), "split": ("overlay",),
            "fill_markups": ("overlay",), "markups_out": ("seg-nrrd", "nifti")}


def run(args: argparse.Namespace, progress) -> int:
    from .. import api

    if args.to in SERIES_TARGETS and not args.series:
        raise UsageError(f"--to {args.to} needs --series DIR (the image series it references)")
    if args.send and args.to not in SERIES_TARGETS:
        raise UsageError(f"--send applies to the DICOM targets ({', '.join(SERIES_TARGETS)}), not to --to {args.to}")
    options = {}
    for name, targets in _APPLIES.items():
        value = getattr(args, name)
        if value in (None, False):
            continue
        if args.to not in targets:
            flag = "--" + {"seg_type": "type", "compression": "compress"}.get(name, name).replace("_", "-")
            raise UsageError(f"{flag} applies to --to {' or '.join(targets)}, not to --to {args.to}")
        options[name] = value
    result = api.convert(args.inputs, args.to, args.out, series=args.series, series_uid=args.series_uid,
                         force=args.force, progress=progress, **options)
    print(result.summary())
    send_outputs(args, result.paths, progress)
    return 0
