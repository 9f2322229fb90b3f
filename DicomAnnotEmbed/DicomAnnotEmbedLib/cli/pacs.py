"""``dicomannotembed pacs echo|find|get|send``: DIMSE (AET@HOST:PORT) or DICOMweb (URL) nodes."""
from __future__ import annotations

import argparse

from ._common import UsageError, add_node_options, finish_send, node_from_args

NODE_HELP = ("AET@HOST:PORT (DIMSE), a DICOMweb base URL (https:// unless given), or a name in the node "
             "config file (--nodes)")


def register(commands, command) -> None:
    pacs = command(commands, "pacs", "talk to an archive: echo, find, get, send (DIMSE or DICOMweb)",
                   "Fetch images from an archive, send results to it, find them again. A node is "
                   + NODE_HELP + ". DICOMweb credentials come from the environment "
                   "(DICOMANNOTEMBED_DICOMWEB_TOKEN, or DICOMANNOTEMBED_DICOMWEB_USER and _PASSWORD). "
                   "Network failures exit with code 5.")
    actions = pacs.add_subparsers(dest="action", metavar="ACTION", required=True)

    echo = command(actions, "echo", "check that a node answers (C-ECHO or a QIDO-RS query)",
                   "Check that a node answers and accepts us (C-ECHO over DIMSE, a one-study QIDO-RS query over DICOMweb).")
    echo.add_argument("node", metavar="NODE", help=NODE_HELP)
    add_node_options(echo)
    echo.set_defaults(run=run_echo)

    find = command(actions, "find", "list studies, series or instances on a node (C-FIND or QIDO-RS)",
                   "List what a node holds as a tab-separated table (header first).")
    find.add_argument("node", metavar="NODE", help=NODE_HELP)
    find.add_argument("--patient-id", metavar="ID")
    find.add_argument("--study", metavar="UID", help="Study Instance UID")
    find.add_argument("--series", metavar="UID", help="Series Instance UID")
    find.add_argument("--modality", metavar="MODALITY", type=str.upper,
                      help="series of this modality (SEG, SR, RTSTRUCT, PR, CT, MR, ...)")
    find.add_argument("--level", default="series", choices=["study", "series", "instance"],
                      help="one row per study, series (default) or instance")
    add_node_options(find)
    find.set_defaults(run=run_find)

    get = command(actions, "get", "retrieve a study or series into a folder (C-GET or WADO-RS)",
                  "Retrieve a study (or one series) into OUT/<Modality>_<SeriesInstanceUID>/<SOPInstanceUID>.dcm, "
                  "as the archive holds the files.")
    get.add_argument("node", metavar="NODE", help=NODE_HELP)
    get.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    get.add_argument("--series", metavar="UID", help="only this Series Instance UID")
    get.add_argument("--modality", metavar="MODALITY", type=str.upper, help="only series of this modality")
    get.add_argument("--out", required=True, metavar="DIR", help="output folder (created; may hold earlier retrievals)")
    get.add_argument("--associations", type=int, default=4, metavar="N",
                     help="DIMSE: concurrent associations for large series (default 4)")
    get.add_argument("--via", choices=["get", "move"], default="get",
                     help="DIMSE: C-GET (default), or C-MOVE to our own Storage SCP (--move-port)")
    get.add_argument("--move-port", type=int, metavar="PORT",
                     help="C-MOVE: the port our Storage SCP listens on while retrieving (the archive must know "
                          "our AE title with this host and port)")
    get.add_argument("--move-aet", metavar="AET", help="C-MOVE: the destination AE title (default: --calling-aet)")
    get.add_argument("--move-host", default="", metavar="ADDRESS",
                     help="C-MOVE: the address our Storage SCP binds (default: all interfaces)")
    add_node_options(get)
    get.set_defaults(run=run_get)

    send = command(actions, "send", "store DICOM files on a node (C-STORE or STOW-RS)",
                   "Store DICOM files (folders are searched recursively) on a node. What the archive already "
                   "holds (same SOP Instance UID) is not sent again; lost connections are retried (--retries); "
                   "files that were not stored are listed with the reason, and the local files are kept.")
    send.add_argument("node", metavar="NODE", help=NODE_HELP)
    send.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    send.add_argument("--associations", type=int, default=4, metavar="N",
                      help="DIMSE: concurrent associations (default 4)")
    add_node_options(send)
    send.set_defaults(run=run_send)


def run_echo(args: argparse.Namespace, progress) -> int:
    from ..services import pacs

    seconds = pacs.echo(node_from_args(args.node, args))
    print(f"{args.node} answered in {seconds * 1000:.0f} ms")
    return 0


def run_find(args: argparse.Namespace, progress) -> int:
    from ..services import pacs

    rows = pacs.find(node_from_args(args.node, args), level=args.level, patient_id=args.patient_id,
                     study_uid=args.study, series_uid=args.series, modality=args.modality)
    print(pacs.format_rows(rows, pacs.LEVELS[args.level]))
    return 0


def run_get(args: argparse.Namespace, progress) -> int:
    from ..services import pacs

    if args.via == "move" and args.move_port is None:
        raise UsageError("--via move needs --move-port PORT (where the archive sends the instances)")
    report = pacs.get(node_from_args(args.node, args), args.study, args.out, series_uid=args.series,
                      modality=args.modality, retries=args.retries, associations=max(1, args.associations),
                      progress=progress, via=args.via, move_port=args.move_port, move_aet=args.move_aet,
                      move_host=args.move_host)
    print(report.summary())
    for uid, folder in report.series_dirs.items():
        print(f"  {folder}")
    return 0


def run_send(args: argparse.Namespace, progress) -> int:
    from ..services import pacs

    report = pacs.send(node_from_args(args.node, args), args.paths, retries=args.retries,
                       associations=max(1, args.associations), progress=progress, check=False)
    finish_send(report)
    return 0
