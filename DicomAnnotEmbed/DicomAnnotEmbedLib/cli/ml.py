"""``dicomannotembed export-ml``."""
from __future__ import annotations

import argparse
import sys

from ..core.errors import InputError, name_files
from ._common import plural


def register(commands, command) -> None:
    export_ml = command(commands, "export-ml", "label maps (NIfTI, NRRD), sidecars, a measurements CSV for machine learning",
        "From our DICOM outputs or other tools' SEG/SR (files or folders, searched recursively): per annotation object "
        "a case folder with label maps (labels.nii.gz, labels.nrrd; one per layer when segments overlap), a JSON sidecar "
        "of segment names, colours and codes, segmentation.seg.nrrd, the image as image.nii.gz when its series is among "
        "the inputs, optionally per-slice PNG masks; and OUT/measurements.csv (one row per finding, one column per "
        "concept) and OUT/cases.csv.")
    export_ml.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM files or folders: SEG, RTSTRUCT, TID 1500 SR, overlay series, and the image series they refer to")
    export_ml.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    export_ml.add_argument("--png", action="store_true", help="also write per-slice PNG masks (label values; 16-bit when above 255)")
    export_ml.add_argument("--no-image", action="store_true", help="do not write image.nii.gz")
    export_ml.add_argument("--code-table", default="lidc", metavar="NAME|FILE", help="code table used to turn coded evaluations back into scores (default: lidc)")
    export_ml.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    export_ml.set_defaults(run=run_export_ml)


def run_export_ml(args: argparse.Namespace, progress) -> int:
    from .. import api

    result = api.export_ml(args.inputs, args.out, png=args.png, image=not args.no_image,
                           code_table=args.code_table, force=args.force, progress=progress,
                           source_names=getattr(args, "source_names", None))  # inputs on a node
    progress.close()
    for case in result.cases:
        print(_case_line(case))
    print(f"{plural(len(result.cases), 'case')} written to {args.out}; measurements: {result.measurements_path} "
          f"({plural(result.findings, 'finding')})")
    for message in result.problems:
        print(f"problem: {message}", file=sys.stderr)
    if result.problems:  # each problem is "SOURCE: why": the error names the sources
        sources = list(dict.fromkeys(problem.split(": ", 1)[0] for problem in result.problems))
        raise InputError(f"could not be converted (listed above); the others were written to {args.out}",
                         name_files(sources))
    return 0


def _case_line(case) -> str:
    """``case NAME (SEG path): 1 segment, 2 markups, image``."""
    segments = len(case.segmentation.segments) if case.segmentation is not None else 0
    layers = f" in {len(case.label_maps)} label maps (overlapping)" if len(case.label_maps) > 1 else ""
    image = ", image" if "image" in case.files else ""
    return (f"case {case.name} ({case.kind.upper()} {case.source}): {plural(segments, 'segment')}{layers}, "
            f"{plural(len(case.markups), 'markup')}{image}")
