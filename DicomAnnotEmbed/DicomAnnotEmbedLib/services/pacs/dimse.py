"""DIMSE with pynetdicom: C-ECHO, C-FIND (Study Root), C-GET into folders, C-STORE with fallbacks.

Sending proposes, for every SOP class among the files, one presentation context per compressed
transfer syntax present plus Explicit and Implicit VR Little Endian. A file goes out as stored
(raw bytes, never decoded) when its own transfer syntax was accepted; otherwise it is decoded and
sent uncompressed (a peer refusing JPEG-LS, RLE or JPEG 2000 still gets the file). A SOP class
the peer refuses fails only that class's files. A lost association (timeout, abort, server gone)
is retried with a bound; what the archive already holds (C-FIND at IMAGE level per study, before
sending) is not sent again.
"""
from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

import pydicom
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet, Verification)

from ...core.errors import NetworkError
from ...core.progress import ProgressCallback
from .common import (STORAGE_SOP_CLASSES, UNCOMPRESSED, WRITTEN_TRANSFER_SYNTAXES, FindRow, GetReport,
                     Instance, SendReport, held_by, series_folder_name, with_retries)
from .nodes import DimseNode

log = logging.getLogger(__name__)
# pynetdicom logs each aborted association as an ERROR of its own; what was not stored and why is
# reported by us, per file. (Set the "pynetdicom" logger's level to see its messages.)
if logging.getLogger("pynetdicom").level == logging.NOTSET:
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
#: Storage SOP classes whose instances are never compressed (SR, RT Structure Set, presentation states).
NEVER_COMPRESSED = {uid for uid, name in STORAGE_SOP_CLASSES.items()
                    if name.endswith("SR") or "Structure Set" in name or "Presentation State" in name}
MAX_PDU = 0  # no limit on what we receive; the peer's limit bounds what we send


def _ae(node: DimseNode) -> AE:
    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = node.timeout
    ae.dimse_timeout = node.timeout
    ae.network_timeout = node.timeout
    ae.connection_timeout = min(node.timeout, 10)
    ae.maximum_pdu_size = MAX_PDU
    return ae


class TlsRefused(NetworkError):
    """A DICOM TLS certificate was not accepted (ours or the archive's): trying again will not help."""


def _reachable(node: DimseNode) -> None:
    """Connect (and with TLS, shake hands: pynetdicom only aborts when the certificate is not
    trusted, this says why), or NetworkError."""
    context = node.ssl_context()
    try:
        with socket.create_connection((node.host, node.port), timeout=min(node.timeout, 10)) as sock:
            if context is not None:
                with context.wrap_socket(sock, server_hostname=node.host):
                    pass
    except ssl.SSLCertVerificationError as exc:
        raise TlsRefused(f"{node}: DICOM TLS: the archive's certificate is not trusted "
                           f"({exc.verify_message or exc.reason}); name its CA with --tls-ca or ca_file in the "
                           "node config") from None
    except ssl.SSLError as exc:
        raise TlsRefused(f"{node}: DICOM TLS handshake failed ({exc.reason or exc}; does the archive speak "
                           "TLS on this port, and does it accept our client certificate?)") from None
    except OSError as exc:
        raise NetworkError(f"cannot reach {node} ({node.host}:{node.port}): {exc.strerror or exc}") from None


def _tls_refusal(node: DimseNode) -> Optional[str]:
    """Why the archive ends a TLS connection right after the handshake (TLS 1.3 reports a refused
    client certificate only then), or None."""
    context = node.ssl_context()
    if context is None:
        return None
    try:
        with socket.create_connection((node.host, node.port), timeout=min(node.timeout, 10)) as sock:
            with context.wrap_socket(sock, server_hostname=node.host) as tls:
                tls.settimeout(2)
                tls.recv(1)
    except ssl.SSLError as exc:
        return str(exc.reason or exc).lower().replace("_", " ")
    except OSError:
        return None
    return None


def _associate(ae: AE, node: DimseNode, **kwargs):
    """An established association, or NetworkError saying why not (unreachable, rejected, aborted)."""
    _reachable(node)
    context = node.ssl_context()
    if context is not None:
        kwargs["tls_args"] = (context, node.host)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, max_pdu=MAX_PDU, **kwargs)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        acse = assoc.acceptor.primitive
        reason = getattr(acse, "reason_str", None) or getattr(acse, "result_str", "")
        hint = " (is the called AE title right?)" if "called" in str(reason).lower() else ""
        raise NetworkError(f"{node} rejected the association: {reason}{hint}; calling AE title "
                           f"{node.calling_aet!r}, called {node.aet!r}")
    if assoc.is_aborted:
        refused = _tls_refusal(node)
        if refused:
            raise TlsRefused(f"{node}: DICOM TLS: the archive refused us ({refused}); does it need our client "
                               "certificate (--tls-cert, --tls-key) from a CA it trusts?")
        raise NetworkError(f"{node} aborted the association (calling AE title {node.calling_aet!r} "
                           "not allowed, no presentation context accepted"
                           + (")" if node.tls else ", or the port expects DICOM TLS: --tls-ca)"))
    raise NetworkError(f"no association with {node}: timeout after {node.timeout:g} s")


def echo(node: DimseNode) -> float:
    """C-ECHO; the round trip in seconds."""
    ae = _ae(node)
    ae.add_requested_context(Verification)
    start = time.perf_counter()
    assoc = _associate(ae, node)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or "Status" not in status or status.Status != 0:
        raise NetworkError(f"{node} answered C-ECHO with "
                           f"{'no response' if not status else hex(status.Status)}")
    return time.perf_counter() - start


def find(node: DimseNode, level: str, *, patient_id: Optional[str] = None, study_uid: Optional[str] = None,
         series_uid: Optional[str] = None, modality: Optional[str] = None) -> List[FindRow]:
    """C-FIND (Study Root) at STUDY, SERIES or IMAGE level; filters are exact matches."""
    ae = _ae(node)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = _associate(ae, node)
    try:
        if level == "IMAGE" and not series_uid:
            series = _find(assoc, node, "SERIES", patient_id, study_uid, None, modality)
            rows = []
            for s in series:
                rows += _find(assoc, node, "IMAGE", patient_id, s.study_instance_uid, s.series_instance_uid,
                              modality)
            return rows
        return _find(assoc, node, level, patient_id, study_uid, series_uid, modality)
    finally:
        assoc.release()


def _find(assoc, node, level, patient_id, study_uid, series_uid, modality) -> List[FindRow]:
    query = Dataset()
    query.QueryRetrieveLevel = level
    query.PatientID = patient_id or ""
    query.PatientName = ""
    query.StudyInstanceUID = study_uid or ""
    query.StudyDate = ""
    if level == "STUDY":
        query.StudyDescription = ""
        query.ModalitiesInStudy = modality or ""
        query.NumberOfStudyRelatedSeries = ""
    else:
        query.SeriesInstanceUID = series_uid or ""
        query.Modality = modality or ""
        query.SeriesNumber = ""
        query.SeriesDescription = ""
    if level == "SERIES":
        query.NumberOfSeriesRelatedInstances = ""
    if level == "IMAGE":
        query.SOPInstanceUID = ""
        query.SOPClassUID = ""
    rows = []
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        if not status or "Status" not in status:
            raise NetworkError(f"{node}: C-FIND got no response (association lost or timeout)")
        if status.Status in (0xFF00, 0xFF01) and identifier is not None:
            row = FindRow.from_dataset(level, identifier)
            if modality and level == "IMAGE" and not row.modality:
                row.modality = modality
            rows.append(row)
        elif status.Status not in (0x0000, 0xFF00, 0xFF01):
            raise NetworkError(f"{node} refused the C-FIND at {level} level: status 0x{status.Status:04X}")
    if modality and level == "STUDY":  # an archive may ignore ModalitiesInStudy
        rows = [r for r in rows if not r.modality or modality in r.modality.split("\\")]
    return rows


def held_instances(node: DimseNode, study_uids: Set[str]) -> Optional[Set[str]]:
    """SOP Instance UIDs the archive already holds in these studies, or None when it will not say."""
    return held_by(node, study_uids, find)


def _contexts(instances: Sequence[Instance]) -> List:
    by_class: Dict[str, Set[str]] = {}
    for item in instances:
        by_class.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
    contexts = []
    for sop_class, syntaxes in sorted(by_class.items()):
        for ts in sorted(syntaxes - set(UNCOMPRESSED)):
            contexts.append(build_context(sop_class, [ts]))
        contexts.append(build_context(sop_class, [UNCOMPRESSED[0]]))
        contexts.append(build_context(sop_class, [UNCOMPRESSED[1]]))
    if len(contexts) > 128:
        raise NetworkError(f"{len(by_class)} SOP classes and their transfer syntaxes need {len(contexts)} "
                           "presentation contexts, more than one association allows (128); send fewer kinds "
                           "of files at once")
    return contexts


class _Lost(Exception):
    """The association ended in the middle of the send."""


def send(node: DimseNode, instances: Sequence[Instance], report: SendReport, *, retries: int = 3,
         retry_delay: float = 1.0, progress: Optional[ProgressCallback] = None,
         associations: int = 4) -> SendReport:
    """C-STORE ``instances`` (already filtered for what the archive holds), filling ``report``.

    The files are shared out over ``associations`` concurrent associations (an archive stores
    each instance in its own time: Orthanc takes ~0.1 s per instance on one association), each
    retried on its own.
    """
    instances = list(instances)
    workers = max(1, min(associations, len(instances) // 8 or 1))
    lock = threading.Lock()
    done = [0]

    def tick():
        with lock:
            done[0] += 1
            if progress is not None:
                progress(min(done[0], len(instances)), len(instances), f"C-STORE to {node}")

    try:  # one reachability check (with the retries) before sharing the files out
        with_retries(lambda: _reachable(node), retries=retries, delay=retry_delay, what=f"connecting to {node}",
                     retry_on=(NetworkError,), final=(TlsRefused,))
    except NetworkError as exc:
        for item in instances:
            report.failed[item.path] = f"not sent: {exc.problem}"
        return report
    if workers == 1:
        _send_on_one(node, instances, report, retries, retry_delay, tick)
        return report
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(_send_on_one, node, instances[k::workers], report, retries, retry_delay, tick)
                       for k in range(workers)]:
            future.result()
    return report


def _send_on_one(node: DimseNode, instances: Sequence[Instance], report: SendReport, retries: int,
                 retry_delay: float, tick) -> None:
    todo = list(instances)
    attempt = 0
    while todo:
        attempt += 1
        report.attempts = max(report.attempts, attempt)
        ae = _ae(node)
        try:
            assoc = _associate(ae, node, contexts=_contexts(todo))
        except NetworkError as exc:
            if attempt > retries or isinstance(exc, TlsRefused):
                for item in todo:
                    report.failed[item.path] = f"not sent: {exc.problem}"
                return
            log.warning("%s; retrying in %.1f s (%d of %d)", exc, retry_delay * 2 ** (attempt - 1), attempt, retries)
            time.sleep(retry_delay * 2 ** (attempt - 1))
            continue
        accepted: Dict[str, Set[str]] = {}
        for context in assoc.accepted_contexts:
            accepted.setdefault(context.abstract_syntax, set()).add(context.transfer_syntax[0])
        remaining = []
        lost_reason = None
        try:
            for index, item in enumerate(todo):
                if lost_reason is not None or not assoc.is_established:
                    remaining = todo[index:]
                    lost_reason = lost_reason or "association ended"
                    break
                syntaxes = accepted.get(item.sop_class_uid, set())
                if not syntaxes:
                    report.failed[item.path] = (f"{item.sop_class_name} ({item.sop_class_uid}) not accepted by "
                                                f"{node} (presentation context rejected)")
                    continue
                try:
                    status = _store(assoc, item, syntaxes)
                except _Lost as exc:
                    lost_reason = str(exc)
                    remaining = todo[index:]
                    break
                except (OSError, ValueError, AttributeError, NotImplementedError) as exc:
                    report.failed[item.path] = f"cannot be sent: {exc}"
                    continue
                if not status or "Status" not in status:  # pynetdicom's empty Dataset: no response
                    lost_reason = f"no C-STORE response within {node.timeout:g} s or association aborted"
                    remaining = todo[index:]
                    break
                code = status.Status
                if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
                    report.stored.append(item.path)
                elif 0xA700 <= code <= 0xA7FF:  # out of resources: worth another try
                    remaining.append(item)
                    lost_reason = lost_reason or f"{node} out of resources (0x{code:04X})"
                else:
                    comment = str(status.get("ErrorComment", "") or "")
                    report.failed[item.path] = (f"rejected by {node}: C-STORE status 0x{code:04X}"
                                                + (f" ({comment})" if comment else ""))
                tick()
        finally:
            if assoc.is_established:
                assoc.release()
        todo = remaining
        if todo:
            if attempt > retries:
                for item in todo:
                    report.failed[item.path] = f"not stored: {lost_reason} (after {attempt} attempts)"
                return
            log.warning("%s: %s; %d files left, retrying in %.1f s (%d of %d)", node, lost_reason, len(todo),
                        retry_delay * 2 ** (attempt - 1), attempt, retries)
            time.sleep(retry_delay * 2 ** (attempt - 1))


def _store(assoc, item: Instance, syntaxes: Set[str]):
    if item.transfer_syntax_uid in syntaxes:
        source = item.path  # raw bytes, not decoded
    else:
        ds = pydicom.dcmread(item.path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
                _decompress(ds)  # the peer refused the compressed syntax: send it uncompressed
        source = ds
    try:
        return assoc.send_c_store(source)
    except RuntimeError as exc:  # "association is not established" etc.
        raise _Lost(str(exc)) from None


def _decompress(ds: Dataset) -> None:
    """Make ``ds`` Explicit VR Little Endian, as the same instance (pydicom 3's decompress gives it
    a new SOP Instance UID by default, and writes 1-bit data, a BINARY SEG's, one byte per pixel)."""
    if int(ds.get("BitsAllocated", 0)) == 1:
        from pydicom.pixels import pack_bits
        from pydicom.uid import ExplicitVRLittleEndian

        ds.PixelData = pack_bits(ds.pixel_array.ravel())
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = False
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.decompress(generate_instance_uid=False)


def write_received(event, folder: Path) -> Optional[Path]:
    """Write the instance of a C-STORE request (as received, not decoded) atomically as
    ``folder/<SOPInstanceUID>.dcm``; None (logged) when it cannot be written."""
    uid = event.request.AffectedSOPInstanceUID
    final = folder / f"{uid}.dcm"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{uid}.", suffix=".partial.dcm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(f, event.file_meta, enforce_standard=True)
            f.write(event.request.DataSet.getvalue())
        os.replace(tmp, final)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        log.error("%s: cannot write: %s", final, exc)
        return None
    return final


def get(node: DimseNode, study_uid: str, series: Sequence[FindRow], out_dir: Path, report: GetReport, *,
        retries: int = 3, retry_delay: float = 1.0, progress: Optional[ProgressCallback] = None,
        associations: int = 4) -> GetReport:
    """C-GET each series of ``series`` into ``out_dir/<Modality>_<SeriesUID>/<SOPInstanceUID>.dcm``.

    A series of more than 16 instances is shared out over ``associations`` concurrent
    associations, each retrieving its share by a list of SOP Instance UIDs (IMAGE level).
    """
    lock = threading.Lock()
    total = sum(int(s.count) for s in series if str(s.count).isdigit()) or len(series)
    received = [0]
    jobs: List[List[tuple]] = [[] for _ in range(max(1, associations))]
    for s in series:
        folder = out_dir / series_folder_name(s.modality, s.series_instance_uid)
        folder.mkdir(parents=True, exist_ok=True)
        report.series_dirs[s.series_instance_uid] = str(folder)
        count = int(s.count) if str(s.count).isdigit() else 0
        if associations > 1 and count > 16:
            uids = sorted(r.sop_instance_uid for r in find(node, "IMAGE", study_uid=study_uid,
                                                           series_uid=s.series_instance_uid))
            for k in range(len(jobs)):
                if uids[k::len(jobs)]:
                    jobs[k].append((s, folder, uids[k::len(jobs)]))
        else:
            min(jobs, key=len).append((s, folder, None))
    jobs = [job for job in jobs if job]

    def on_store(event):
        final = write_received(event, event.assoc.dae_folder)
        if final is None:
            return 0xA700
        with lock:
            report.files.append(str(final))
            received[0] += 1
            if progress is not None:
                progress(min(received[0], total), total, f"C-GET from {node}")
        return 0x0000

    def worker(job):
        _get_on_one(node, study_uid, job, report, on_store, retries, retry_delay)

    if len(jobs) == 1:
        worker(jobs[0])
    else:
        with ThreadPoolExecutor(len(jobs)) as pool:
            for future in [pool.submit(worker, job) for job in jobs]:
                future.result()
    return report


def _get_on_one(node: DimseNode, study_uid: str, job: List[tuple], report: GetReport, on_store, retries: int,
                retry_delay: float) -> None:
    ae = _ae(node)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for sop_class in STORAGE_SOP_CLASSES:
        # One context per transfer syntax, so that the archive sends each file as it holds it
        # (Orthanc 1.10 fails a C-GET it would have to transcode, e.g. a 1-bit JPEG 2000 SEG);
        # SR, RTSTRUCT and presentation states are never compressed: one uncompressed context.
        if sop_class in NEVER_COMPRESSED:
            ae.add_requested_context(sop_class, list(UNCOMPRESSED))
        else:
            for ts in WRITTEN_TRANSFER_SYNTAXES:
                ae.add_requested_context(sop_class, [ts])
        roles.append(build_role(sop_class, scp_role=True))
    todo = list(job)
    for attempt in range(retries + 1):
        try:
            assoc = _associate(ae, node, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        except NetworkError as exc:
            if attempt >= retries or isinstance(exc, TlsRefused):
                for s, _folder, _uids in todo:
                    report.failed[s.series_instance_uid] = exc.problem
                return
            time.sleep(retry_delay * 2 ** attempt)
            continue
        remaining = []
        try:
            for index, (s, folder, uids) in enumerate(todo):
                assoc.dae_folder = folder
                query = Dataset()
                query.StudyInstanceUID = study_uid
                query.SeriesInstanceUID = s.series_instance_uid
                if uids:
                    query.QueryRetrieveLevel = "IMAGE"
                    query.SOPInstanceUID = uids
                else:
                    query.QueryRetrieveLevel = "SERIES"
                final = None
                for status, _identifier in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
                    if not status or "Status" not in status:
                        final = None
                        break
                    final = status
                if final is None:
                    remaining = todo[index:]
                    break
                if final.Status != 0x0000:
                    failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
                    report.failed[s.series_instance_uid] = (f"C-GET status 0x{final.Status:04X}"
                                                            f" ({failed} instances not delivered)")
        finally:
            if assoc.is_established:
                assoc.release()
        if not remaining:
            return
        todo = remaining
        if attempt >= retries:
            for s, _folder, _uids in todo:
                report.failed[s.series_instance_uid] = "association lost during C-GET"
            return
        time.sleep(retry_delay * 2 ** attempt)
