"""Fetch the images, send the results, find them again: DIMSE (pynetdicom) or DICOMweb (dicomweb-client).

A node is ``AET@HOST:PORT`` (DIMSE; our own AE title is ``calling_aet``), a DICOMweb base URL, or
a name in the node config file (see :mod:`.nodes`). The four calls are the same for both::

    from DicomAnnotEmbedLib.services import pacs
    pacs.echo("ORTHANC@127.0.0.1:4242")
    rows = pacs.find("https://pacs.example.org/dicom-web", modality="SEG")
    report = pacs.get("ORTHANC@127.0.0.1:4242", study_uid, out_dir="/tmp/study")
    report = pacs.send("ORTHANC@127.0.0.1:4242", ["/tmp/out/seg.dcm"])
    with pacs.fetched_series(f"ORTHANC@127.0.0.1:4242/{study_uid}/{series_uid}") as folder:
        ...  # the series, retrieved into a temporary folder (removed on exit)

Nothing here touches coordinates: files travel as they are (DICOM, LPS). Local files are never
changed or removed; network failures raise :class:`~DicomAnnotEmbedLib.core.errors.NetworkError`
(exit code 5 on the command line) after the bounded retries, listing per file what was not
stored and why.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence, Union

from ...core.errors import InputError
from ...core.outputs import existing_output_dir
from ...core.progress import ProgressCallback
from .common import MODALITIES, FindRow, GetReport, SendReport, collect_instances, format_rows
from .nodes import DimseNode, Node, WebNode, parse_node
from .remote import SeriesRef, fetched_series, parse_series_ref

__all__ = ["DimseNode", "WebNode", "Node", "FindRow", "GetReport", "SendReport", "MODALITIES", "parse_node",
           "echo", "find", "get", "send", "format_rows", "pacs_echo", "pacs_find", "pacs_get", "pacs_send",
           "SeriesRef", "fetched_series", "parse_series_ref"]
log = logging.getLogger(__name__)
NodeLike = Union[str, DimseNode, WebNode]
LEVELS = {"study": "STUDY", "series": "SERIES", "instance": "IMAGE", "image": "IMAGE"}


def _backend(node: Node):
    if isinstance(node, DimseNode):
        from . import dimse
        return dimse
    from . import dicomweb
    return dicomweb


def echo(node: NodeLike, *, calling_aet: Optional[str] = None, timeout: Optional[float] = None) -> float:
    """Check that ``node`` answers (C-ECHO, or a QIDO-RS query); returns the round trip in seconds.

    Raises:
        NetworkError: unreachable, association rejected (e.g. a wrong AE title), HTTP error.
    """
    node = parse_node(node, calling_aet=calling_aet, timeout=timeout)
    return _backend(node).echo(node)


def find(node: NodeLike, *, level: str = "series", patient_id: Optional[str] = None,
         study_uid: Optional[str] = None, series_uid: Optional[str] = None, modality: Optional[str] = None,
         calling_aet: Optional[str] = None, timeout: Optional[float] = None) -> List[FindRow]:
    """Studies, series or instances (``level``) on ``node`` matching the filters (C-FIND or QIDO-RS).

    ``modality`` filters series by Modality (SEG, SR, RTSTRUCT, PR, CT, ...), studies by
    Modalities in Study.
    """
    if level.lower() not in LEVELS:
        raise InputError(f"level must be one of study, series, instance, not {level!r}")
    node = parse_node(node, calling_aet=calling_aet, timeout=timeout)
    return _backend(node).find(node, LEVELS[level.lower()], patient_id=patient_id, study_uid=study_uid,
                               series_uid=series_uid, modality=modality.upper() if modality else None)


def get(node: NodeLike, study_uid: str, out_dir: Union[str, os.PathLike], *, series_uid: Optional[str] = None,
        modality: Optional[str] = None, calling_aet: Optional[str] = None, timeout: Optional[float] = None,
        retries: int = 3, associations: int = 4, progress: Optional[ProgressCallback] = None,
        check: bool = True, via: str = "get", move_port: Optional[int] = None, move_aet: Optional[str] = None,
        move_host: str = "") -> GetReport:
    """Retrieve a study (or one series of it) into ``out_dir/<Modality>_<SeriesInstanceUID>/``.

    C-GET over DIMSE (our AE receives the instances on the same association), WADO-RS over
    DICOMweb, both in the transfer syntax the archive holds. Over DIMSE a series of more than 16
    instances is shared out over ``associations`` concurrent associations. Each file is written atomically as
    ``<SOPInstanceUID>.dcm``; files already in ``out_dir`` are replaced by the same instance.

    ``via="move"`` (DIMSE only): C-MOVE instead of C-GET. Our Storage SCP listens on
    ``move_host:move_port`` (all interfaces when ``move_host`` is empty) while the retrieval runs,
    with the AE title ``move_aet`` (default: our calling AE title), which the archive must know
    with that host and port (see :mod:`.move`).

    Raises:
        InputError: no such study/series on the node; ``via="move"`` on a DICOMweb node or without
        ``move_port``. NetworkError: (``check``) something was not delivered.
    """
    node = parse_node(node, calling_aet=calling_aet, timeout=timeout)
    if via not in ("get", "move"):
        raise InputError(f"via must be get or move, not {via!r}")
    if via == "move" and not isinstance(node, DimseNode):
        raise InputError(f"{node}: C-MOVE is DIMSE; a DICOMweb node is retrieved with WADO-RS")
    out = existing_output_dir(out_dir)
    series = _backend(node).find(node, "SERIES", study_uid=study_uid, series_uid=series_uid,
                                 modality=modality.upper() if modality else None)
    if series_uid:
        series = [s for s in series if s.series_instance_uid == series_uid]
    if not series:
        what = f"series {series_uid} of study {study_uid}" if series_uid else f"study {study_uid}"
        raise InputError(f"{node} holds no {what}" + (f" with modality {modality}" if modality else ""))
    report = GetReport(str(node), str(out))
    if via == "move":
        from . import move
        move.get(node, study_uid, series, out, report, move_port=move_port, move_aet=move_aet,
                 move_host=move_host, retries=retries, progress=progress)
    else:
        extra = {"associations": associations} if isinstance(node, DimseNode) else {}
        _backend(node).get(node, study_uid, series, out, report, retries=retries, progress=progress, **extra)
    if check:
        report.raise_for_failures()
    return report


def send(node: NodeLike, paths: Sequence[Union[str, os.PathLike]], *, calling_aet: Optional[str] = None,
         timeout: Optional[float] = None, retries: int = 3, retry_delay: float = 1.0, skip_held: bool = True,
         verify: bool = True, associations: int = 4, progress: Optional[ProgressCallback] = None, check: bool = True) -> SendReport:
    """Store the DICOM files (or folders of them) on ``node``: C-STORE, or STOW-RS.

    Before sending, asks the archive which of the SOP Instance UIDs it already holds (C-FIND /
    QIDO-RS per study) and leaves those out (``skip_held``), so that a resend after a partial
    failure sends only what is missing. Over DIMSE the files are shared out over
    ``associations`` concurrent associations. Lost associations and connection errors are retried
    ``retries`` times with a doubling delay. With ``verify``, the archive is asked afterwards
    whether it holds every instance it acknowledged (an archive may acknowledge an instance that
    a filter then discards: Orthanc's Lua ReceivedInstanceFilter does); those are reported as not
    stored. Local files are never changed.

    Raises:
        InputError: a path is missing or not DICOM. NetworkError: (``check``) some file was not
        stored; the message lists each and why (rejected SOP class, refused association, timeout).
    """
    node = parse_node(node, calling_aet=calling_aet, timeout=timeout)
    instances = collect_instances(paths)
    report = SendReport(str(node))
    backend = _backend(node)
    if skip_held:
        held = backend.held_instances(node, {i.study_instance_uid for i in instances})
        if held:
            report.already_held = [i.path for i in instances if i.sop_instance_uid in held]
            instances = [i for i in instances if i.sop_instance_uid not in held]
    if instances:
        extra = {"associations": associations} if isinstance(node, DimseNode) else {}
        backend.send(node, instances, report, retries=retries, retry_delay=retry_delay, progress=progress, **extra)
        if verify and report.stored:
            _verify(backend, node, instances, report)
    if check:
        report.raise_for_failures()
    return report


def _verify(backend, node: Node, instances, report: SendReport) -> None:
    held = backend.held_instances(node, {i.study_instance_uid for i in instances})
    if held is None:
        log.info("%s cannot list what it holds: the stored files are not verified", node)
        return
    uid_of = {i.path: i.sop_instance_uid for i in instances}
    missing = [path for path in report.stored if uid_of.get(path) not in held]
    for path in missing:
        report.stored.remove(path)
        report.failed[path] = (f"acknowledged by {node} but not held afterwards (discarded by the archive, "
                               "e.g. by a filter)")


# The names api re-exports lazily (api.pacs_send is this send).
pacs_echo, pacs_find, pacs_get, pacs_send = echo, find, get, send
