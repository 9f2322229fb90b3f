"""``dicomannotembed seg export|import``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import OutputError
from ._common import plural
from ._common import add_send_option, send_outputs


def register(commands, command) -> None:
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
                            help=".seg.nrrd, a NRRD/NIfTI label map, a float volume of probabilities for FRACTIONAL, or a DICOM SEG, "
                                 "RTSTRUCT, SR or overlay series folder (read as convert reads them)")
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
    seg_import.add_argument("seg_file", nargs="+", metavar="SEG.dcm",
                            help="the SEG file; several SEGs of one series (e.g. the files of a --split-layers "
                                 "export) merge into one segmentation")
    seg_import.add_argument("--series", metavar="DIR", help="folder holding the referenced series")
    seg_import.add_argument("--out", required=True, metavar="FILE",
                            help="output .seg.nrrd (or .nrrd / .nii.gz label map when segments do not overlap)")
    seg_import.add_argument("--force", action="store_true", help="replace an existing output file")
    add_send_option(seg_export)
    seg_export.set_defaults(run=run_export)
    seg_import.set_defaults(run=run_import, pydicom_pixels=import_needs_pydicom_pixels)


def run_export(args: argparse.Namespace, progress) -> int:
    from .. import api
    from ..encodings.seg import SegExportOptions

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
        print(f"{result.seg_type.upper()} SEG ({result.compression}) written to {path}: {plural(frames, 'frame')}, "
              f"{plural(len(names), 'segment')}: {', '.join(names)}")
    send_outputs(args, result.paths, progress)
    return 0


#: Transfer syntaxes of SEGs whose frames the decoder reads without pydicom's pixel plugins
#: (encodings/seg/read_pixels.py, FrameDecoder): native pixel data, deflated or not, and JPEG-LS
#: Lossless, which it hands to CharLS itself.
#: Written out rather than taken from pydicom.uid, which this decides whether to import.
OWN_DECODED_SYNTAXES = frozenset((
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
))


def import_needs_pydicom_pixels(args: argparse.Namespace) -> bool:
    """Whether ``seg import`` may decode frames through pydicom's plugins: a SEG file in another
    transfer syntax (RLE, JPEG 2000, ...), or one whose syntax its first bytes do not tell. The
    reference series' headers are read without their pixel data."""
    from ..core.header_blocks import file_transfer_syntax

    return any(file_transfer_syntax(path) not in OWN_DECODED_SYNTAXES for path in args.seg_file)


def run_import(args: argparse.Namespace, progress) -> int:
    from .. import api
    imported = api.import_seg(args.seg_file, args.series, segmentation_out=args.out, progress=progress)
    seg = imported.segmentation
    where = (f"of series {imported.series.series_instance_uid}" if imported.series else "(its own frame grid)")
    files = f" from {plural(len(args.seg_file), 'SEG')}" if len(args.seg_file) > 1 else ""
    print(f"{imported.seg_type.upper()} SEG{files}: {plural(len(seg.segments), 'segment')} on "
          f"{seg.geometry.describe()} {where}, written to {args.out}")
    return 0
