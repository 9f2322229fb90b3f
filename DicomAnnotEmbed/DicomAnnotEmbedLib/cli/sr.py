"""``dicomannotembed sr export|import``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import OutputError
from ._common import plural
from ._common import add_send_option, send_outputs


def register(commands, command) -> None:
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
    add_send_option(sr_export)
    sr_export.set_defaults(run=run_export)
    sr_import.set_defaults(run=run_import)


def run_export(args: argparse.Namespace, progress) -> int:
    from .. import api

    if Path(args.out).exists() and not args.force:
        raise OutputError("exists; use --force to replace it", args.out)
    result = api.export_sr(args.series, args.seg, args.out, segmentation=args.segmentation,
                           markups=args.markups, evaluations=args.evaluations, series_uid=args.series_uid,
                           code_table=args.code_table, lidc=args.lidc, observer_name=args.observer,
                           device_name=args.device, series_description=args.series_description,
                           progress=progress)
    numeric = sum(1 for r in result.records if r.kind == "numeric")
    print(f"SR written to {result.path}: {plural(result.groups, 'measurement group')}, "
          f"{plural(numeric, 'measurement')}, {plural(len(result.records) - numeric, 'evaluation')}")
    if result.markups_path is not None:
        print(f"the markups' groups are in their own report, which the SR lists as pertinent evidence: "
              f"{result.markups_path}")
    send_outputs(args, result.paths, progress)
    return 0


def run_import(args: argparse.Namespace, progress) -> int:
    from .. import api

    imported = api.import_sr(args.sr_file, args.series, seg_folders=args.seg_dir, out_dir=args.out,
                             force=args.force, progress=progress)
    # what is missing was logged as a warning (once, on stderr) by the import
    numeric = sum(1 for r in imported.records if r.kind == "numeric")
    print(f"{imported.sop_class}: {plural(len(imported.records), 'record')} "
          f"({plural(numeric, 'measurement')}, {plural(len(imported.records) - numeric, 'evaluation')}), "
          f"{plural(len(imported.markups), 'markup')}, {len(imported.seg_imports)} of "
          f"{plural(len(imported.referenced_seg_uids), 'referenced SEG')} loaded")
    for path in imported.companions:
        print(f"read with it (the markups' own report it references): {path}")
    for path in imported.written:
        print(f"written: {path}")
    return 0
