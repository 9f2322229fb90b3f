"""C-MOVE: the archive sends the instances to our own Storage SCP, started for the retrieval.

For archives that do not offer C-GET. The archive must know our AE title (``move_aet``, by default
our calling AE title) with the host and port we listen on (``move_port``; ``move_host`` is the
address we bind, all interfaces by default); that is configured on the archive (Orthanc:
``DicomModalities``). Our SCP answers only while the retrieval runs, only associations that call
our AE title from the archive's AE title, and stores only instances of the series asked for.

With DICOM TLS (a TLS node) our SCP speaks TLS too: it shows our certificate (``cert_file``,
``key_file``) and requires the archive's, verified with ``ca_file`` (Orthanc: ``"UseDicomTls":
true`` in our modality entry).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Dict, Optional, Sequence

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from ...core.errors import InputError, NetworkError
from ...core.progress import ProgressCallback
from .common import STORAGE_SOP_CLASSES, WRITTEN_TRANSFER_SYNTAXES, FindRow, GetReport, series_folder_name
from .dimse import TlsRefused, _ae, _associate, write_received
from .nodes import DimseNode

log = logging.getLogger(__name__)
#: Final C-MOVE statuses and what they mean for the user.
MOVE_STATUS = {
    0xA801: "the archive does not know the move destination {aet!r}: add it, with our host and port {port}, "
            "to the archive's modalities",
    0xA701: "the archive is out of resources (number of matches)",
    0xA702: "the archive is out of resources (sub-operations)",
    0xA900: "the archive says the identifier does not match the SOP class",
    0xC000: "the archive cannot process the request",
}


def get(node: DimseNode, study_uid: str, series: Sequence[FindRow], out_dir: Path, report: GetReport, *,
        move_port: Optional[int] = None, move_aet: Optional[str] = None, move_host: str = "",
        retries: int = 3, retry_delay: float = 1.0, progress: Optional[ProgressCallback] = None) -> GetReport:
    """C-MOVE each series of ``series`` to our Storage SCP on ``move_host:move_port`` (AE title
    ``move_aet``), writing ``out_dir/<Modality>_<SeriesUID>/<SOPInstanceUID>.dcm``."""
    if not move_port or not 0 < int(move_port) < 65536:
        raise InputError("C-MOVE needs the port our Storage SCP listens on (--move-port), as configured on "
                         f"{node} for our AE title")
    aet = move_aet or node.calling_aet
    folders: Dict[str, Path] = {}
    for s in series:
        folder = out_dir / series_folder_name(s.modality, s.series_instance_uid)
        folder.mkdir(parents=True, exist_ok=True)
        folders[s.series_instance_uid] = folder
        report.series_dirs[s.series_instance_uid] = str(folder)
    total = sum(int(s.count) for s in series if str(s.count).isdigit()) or len(series)
    lock = threading.Lock()

    def on_store(event):
        try:
            ds = event.dataset
            folder = folders.get(str(ds.SeriesInstanceUID)) if str(ds.StudyInstanceUID) == study_uid else None
        except (AttributeError, KeyError, ValueError):
            folder = None
        if folder is None:
            log.warning("%s sent an instance of a series not asked for: refused", node)
            return 0xC000
        final = write_received(event, folder)
        if final is None:
            return 0xA700
        with lock:
            report.files.append(str(final))
            if progress is not None:
                progress(min(len(report.files), total), total, f"C-MOVE from {node}")
        return 0x0000

    scp = AE(ae_title=aet)
    scp.require_called_aet = True
    scp.require_calling_aet = [node.aet]
    scp.maximum_pdu_size = 0
    scp.network_timeout = scp.dimse_timeout = scp.acse_timeout = node.timeout
    for sop_class in STORAGE_SOP_CLASSES:
        scp.add_supported_context(sop_class, list(WRITTEN_TRANSFER_SYNTAXES))
    try:
        server = scp.start_server((move_host, int(move_port)), block=False, ssl_context=_server_context(node),
                                  evt_handlers=[(evt.EVT_C_STORE, on_store)])
    except OSError as exc:
        raise NetworkError(f"cannot listen on {move_host or '*'}:{move_port} for C-MOVE: {exc.strerror or exc}") \
            from None
    try:
        for s in series:
            _move_series(node, study_uid, s, aet, int(move_port), report, retries, retry_delay)
    finally:
        server.shutdown()
    return report


def _server_context(node: DimseNode):
    """Our SCP's TLS context for a TLS node (our certificate; the archive's required), else None."""
    if not node.tls:
        return None
    import ssl

    if not node.cert_file:
        raise InputError(f"{node}: C-MOVE over DICOM TLS needs our certificate (--tls-cert, --tls-key): the archive "
                         "connects to our Storage SCP")
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=node.ca_file)
        context.load_cert_chain(node.cert_file, node.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"node {node}: TLS files: {exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _move_series(node: DimseNode, study_uid: str, s: FindRow, aet: str, port: int, report: GetReport,
                 retries: int, retry_delay: float) -> None:
    import time

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = s.series_instance_uid
    for attempt in range(retries + 1):
        ae = _ae(node)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        try:
            assoc = _associate(ae, node)
        except NetworkError as exc:
            report.failed[s.series_instance_uid] = exc.problem
            if attempt < retries and not isinstance(exc, TlsRefused):
                time.sleep(retry_delay * 2 ** attempt)
                continue
            return
        final = None
        try:
            for status, _identifier in assoc.send_c_move(query, aet, StudyRootQueryRetrieveInformationModelMove):
                if not status or "Status" not in status:
                    final = None
                    break
                final = status
        finally:
            if assoc.is_established:
                assoc.release()
        if final is None:
            report.failed[s.series_instance_uid] = "association lost during C-MOVE"
            if attempt < retries:
                time.sleep(retry_delay * 2 ** attempt)
                continue
            return
        code = int(final.Status)
        if code == 0x0000:
            report.failed.pop(s.series_instance_uid, None)
        else:
            failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
            completed = int(final.get("NumberOfCompletedSuboperations", 0) or 0)
            why = MOVE_STATUS.get(code, "C-MOVE failed").format(aet=aet, port=port)
            comment = str(final.get("ErrorComment", "") or "")
            if code != 0xA801 and code >= 0xA000 and not completed:
                # Orthanc 1.10 answers an unknown destination with 0xC000 and nothing else
                why += (f" (does it know the move destination {aet!r}, with our host and port {port}? "
                        "an archive that does not is the usual cause)")
            report.failed[s.series_instance_uid] = (f"C-MOVE status 0x{code:04X}: {why}"
                                                    + (f"; {comment}" if comment else "")
                                                    + (f" ({failed} instances not delivered)" if failed else ""))
        return
