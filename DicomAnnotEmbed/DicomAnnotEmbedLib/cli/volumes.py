"""``dicomannotembed sample`` and ``dicomannotembed dicomize``."""
from __future__ import annotations

import argparse

from ._common import add_send_option, plural, send_outputs


def register(commands, command) -> None:
    dicomize = command(commands, "dicomize", "write a DICOM series for a non-DICOM volume (NRRD, NIfTI, MHA)",
        "Write a DICOM series (one file per slice) for a volume that has none, so that "
                    "annotations drawn on it can be exported as DICOM.")
    dicomize.add_argument("volume", metavar="VOLUME", help="NRRD, NIfTI or MHA volume")
    dicomize.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    dicomize.add_argument("--modality", default="CT", choices=["CT", "MR", "OT"], help="CT Image, MR Image or Secondary Capture storage (default CT)")
    dicomize.add_argument("--patient-name", default="Anonymous", help="Patient's Name (default Anonymous)")
    dicomize.add_argument("--patient-id", help="Patient ID (default: random)")
    dicomize.add_argument("--description", help="Series Description")
    dicomize.add_argument("--standard-orientation", action="store_true",
                          help="write the standard orientation (axial: columns from the patient's right to left, rows "
                               "from anterior to posterior) instead of the default, the volume's own storage order "
                               "(flipped axes included)")
    dicomize.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    add_send_option(dicomize)
    sample = command(commands, "sample", "write the bundled sample case (DICOM series, .seg.nrrd, .mrk.json)",
        "Write OUT/series/ (a CT-like DICOM series), OUT/segmentation.seg.nrrd (5 segments, "
                    "one overlapping another) and OUT/markups.mrk.json (point list, line, closed curve, ROI).")
    sample.add_argument("out", metavar="OUT", help="output folder (must be empty unless --force)")
    sample.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    dicomize.set_defaults(run=run_dicomize)
    sample.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace, progress) -> int:
    from ..files.sample import write_sample

    case = write_sample(args.out, force=args.force, progress=progress)
    print(f"sample written: {case.series_dir}, {case.segmentation_path}, {case.markups_path}")
    return 0


def run_dicomize(args: argparse.Namespace, progress) -> int:
    from .. import api

    files = api.dicomize(args.volume, args.out, modality=args.modality, patient_name=args.patient_name,
                         patient_id=args.patient_id, series_description=args.description,
                         standard_orientation=args.standard_orientation,
                         force=args.force, progress=progress)
    print(f"{plural(len(files), 'DICOM file')} written to {args.out}")
    send_outputs(args, files, progress)
    return 0
