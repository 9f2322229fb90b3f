"""DICOMweb with dicomweb-client: QIDO-RS (find), WADO-RS (get), STOW-RS (send).

Credentials come from environment variables named by the node (see :mod:`.nodes`); TLS
certificates are verified by requests. Files are retrieved in the transfer syntax the archive
holds them in (``transfer-syntax=*``) and written atomically; sent in batches, each batch's
STOW-RS response read per instance (Referenced / Failed SOP Sequence).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional, Sequence, Set

import pydicom
import requests
from pydicom.dataset import Dataset

from ...core.errors import InputError, NetworkError
from ...core.outputs import atomic_path
from ...core.progress import ProgressCallback
from .common import FindRow, GetReport, Instance, SendReport, held_by, series_folder_name
from .nodes import WebNode

log = logging.getLogger(__name__)
BATCH_BYTES = 32 * 1024 * 1024
_NETWORK = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def _client(node: WebNode):
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if node.auth == "bearer":
        token = os.environ.get(node.token_env)
        if not token:
            raise InputError(f"node {node}: bearer authentication needs a token in the environment variable "
                             f"{node.token_env}")
        session.headers["Authorization"] = f"Bearer {token}"
    elif node.auth == "basic":
        user, password = os.environ.get(node.user_env), os.environ.get(node.password_env)
        if not user or password is None:
            raise InputError(f"node {node}: basic authentication needs {node.user_env} and {node.password_env} "
                             "in the environment")
        session.auth = (user, password)
    if node.ca_bundle:
        session.verify = node.ca_bundle
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the session's CA (its merge
        # prefers the environment's to session.verify): the node's own CA must win.
        merge = session.merge_environment_settings

        def merge_keeping_ca(*args, **kwargs):
            settings = merge(*args, **kwargs)
            settings["verify"] = node.ca_bundle
            return settings

        session.merge_environment_settings = merge_keeping_ca
    if node.cert_file:
        session.cert = (node.cert_file, node.key_file) if node.key_file else node.cert_file
    client = DICOMwebClient(node.url, session=session, timeout=node.timeout)
    client.set_http_retry_params(retry=False)  # our own bounded retries (``retries``), not 5 per request
    return client


def _network_error(node: WebNode, exc: Exception) -> NetworkError:
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        hint = {401: f" ({_refused_credentials(node)})", 403: " (not allowed)",
                404: " (is the base URL right?)"}.get(code, "")
        return NetworkError(f"{node}: HTTP {code} {exc.response.reason}{hint}")
    if isinstance(exc, requests.exceptions.SSLError):
        return NetworkError(f"{node}: TLS certificate not trusted ({_ssl_reason(exc)}); name the CA with --tls-ca, "
                            "ca_bundle in the node config, or REQUESTS_CA_BUNDLE")
    if isinstance(exc, requests.exceptions.Timeout):
        return NetworkError(f"{node}: timeout after {node.timeout:g} s")
    text = str(exc).lower()
    why = ("connection refused" if "refused" in text else "name or service not known" if "resolve" in text
           or "name or service" in text else exc.__class__.__name__)
    return NetworkError(f"cannot reach {node}: {why}")


def _refused_credentials(node: WebNode) -> str:
    """Why a 401, naming the environment variables (never their values)."""
    if node.auth == "bearer":
        return f"authentication failed: the bearer token in {node.token_env} was refused"
    if node.auth == "basic":
        return (f"authentication failed: the user name and password in {node.user_env} and {node.password_env} "
                "were refused")
    return (f"authentication required: no credentials were sent; put a bearer token in {node.token_env}, or a user "
            f"name and password in {node.user_env} and {node.password_env}")


def _ssl_reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("self-signed certificate in certificate chain", "self-signed certificate",
                  "unable to get local issuer certificate", "certificate has expired", "Hostname mismatch"):
        if known.lower() in text.lower():
            return known
    return text


def echo(node: WebNode) -> float:
    """A QIDO-RS query for one study: proves the service answers and the credentials work."""
    client = _client(node)
    start = time.perf_counter()
    try:
        client.search_for_studies(limit=1)
    except (requests.exceptions.RequestException,) as exc:
        raise _network_error(node, exc) from None
    return time.perf_counter() - start


def find(node: WebNode, level: str, *, patient_id: Optional[str] = None, study_uid: Optional[str] = None,
         series_uid: Optional[str] = None, modality: Optional[str] = None) -> List[FindRow]:
    """QIDO-RS search for studies, series or instances."""
    client = _client(node)
    filters = {}
    if patient_id:
        filters["PatientID"] = patient_id
    try:
        if level == "STUDY":
            if study_uid:
                filters["StudyInstanceUID"] = study_uid
            if modality:
                filters["ModalitiesInStudy"] = modality
            fields = ["PatientName", "StudyDate", "StudyDescription", "NumberOfStudyRelatedSeries",
                      "ModalitiesInStudy"]
            found = client.search_for_studies(search_filters=filters, fields=fields, get_remaining=True)
        elif level == "SERIES":
            if modality:
                filters["Modality"] = modality
            if series_uid:
                filters["SeriesInstanceUID"] = series_uid
            fields = ["PatientID", "PatientName", "StudyDate", "SeriesNumber", "SeriesDescription",
                      "NumberOfSeriesRelatedInstances"]
            found = client.search_for_series(study_uid, search_filters=filters, fields=fields, get_remaining=True)
        else:
            if modality:
                filters["Modality"] = modality
            fields = ["PatientID", "Modality", "SOPClassUID"]
            found = client.search_for_instances(study_uid, series_uid, search_filters=filters, fields=fields,
                                                get_remaining=True)
    except requests.exceptions.RequestException as exc:
        raise _network_error(node, exc) from None
    rows = [FindRow.from_dataset(level, Dataset.from_json(item)) for item in found]
    if modality and level == "STUDY":
        rows = [r for r in rows if not r.modality or modality in r.modality.split("\\")]
    if modality and level != "STUDY":
        rows = [r for r in rows if r.modality == modality or not r.modality]
    return rows


def held_instances(node: WebNode, study_uids: Set[str]) -> Optional[Set[str]]:
    """SOP Instance UIDs the archive already holds in these studies, or None when it will not say."""
    return held_by(node, study_uids, find)


def send(node: WebNode, instances: Sequence[Instance], report: SendReport, *, retries: int = 3,
         retry_delay: float = 1.0, progress: Optional[ProgressCallback] = None) -> SendReport:
    """STOW-RS ``instances`` in batches of about 32 MB; each batch retried on network errors."""
    client = _client(node)
    batches: List[List[Instance]] = [[]]
    size = 0
    for item in instances:
        item_size = os.path.getsize(item.path)
        if batches[-1] and size + item_size > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    done = 0
    for batch in batches:
        datasets = []
        sendable = []
        for item in batch:
            try:
                datasets.append(pydicom.dcmread(item.path))
                sendable.append(item)
            except (OSError, ValueError) as exc:
                report.failed[item.path] = f"cannot be read: {exc}"
        error = None
        for attempt in range(retries + 1):
            report.attempts = max(report.attempts, attempt + 1)
            try:
                response = client.store_instances(datasets)
                error = None
                break
            except requests.exceptions.HTTPError as exc:
                error = _network_error(node, exc)
                if exc.response is not None and exc.response.status_code < 500:
                    break  # the request is refused as such: another try would be refused too
            except (requests.exceptions.RequestException, OSError) as exc:
                error = _network_error(node, exc)
            if attempt < retries:
                log.warning("%s; retrying in %.1f s (%d of %d)", error, retry_delay * 2 ** attempt, attempt + 1,
                            retries)
                time.sleep(retry_delay * 2 ** attempt)
        if error is not None:
            # A batch may fail as a whole with HTTP 409 when some of it was refused: ask what is there now.
            held = held_instances(node, {i.study_instance_uid for i in sendable}) or set()
            for item in sendable:
                if item.sop_instance_uid in held:
                    report.stored.append(item.path)
                else:
                    report.failed[item.path] = f"not stored: {error.problem}"
        else:
            _read_response(node, response, sendable, report)
        done += len(batch)
        if progress is not None:
            progress(done, len(instances), f"STOW-RS to {node}")
    return report


def _read_response(node: WebNode, response: Dataset, sent: Sequence[Instance], report: SendReport) -> None:
    by_uid = {i.sop_instance_uid: i for i in sent}
    failed = {}
    for item in response.get("FailedSOPSequence", []) or []:
        reason = item.get("FailureReason", "")
        failed[str(item.get("ReferencedSOPInstanceUID", ""))] = f"0x{int(reason):04X}" if reason != "" else "?"
    referenced = {str(item.get("ReferencedSOPInstanceUID", "")) for item in
                  (response.get("ReferencedSOPSequence", []) or [])}
    for uid, item in by_uid.items():
        if uid in failed:
            report.failed[item.path] = f"rejected by {node}: STOW-RS failure reason {failed[uid]}"
        elif uid in referenced or not referenced:
            report.stored.append(item.path)
        else:
            report.failed[item.path] = f"not in {node}'s STOW-RS response"


def get(node: WebNode, study_uid: str, series: Sequence[FindRow], out_dir: Path, report: GetReport, *,
        retries: int = 3, retry_delay: float = 1.0, progress: Optional[ProgressCallback] = None) -> GetReport:
    """WADO-RS each series (as stored, ``transfer-syntax=*``) into ``out_dir/<Modality>_<SeriesUID>/``."""
    client = _client(node)
    total = sum(int(s.count) for s in series if str(s.count).isdigit()) or len(series)
    received = 0
    for s in series:
        folder = out_dir / series_folder_name(s.modality, s.series_instance_uid)
        folder.mkdir(parents=True, exist_ok=True)
        report.series_dirs[s.series_instance_uid] = str(folder)
        for attempt in range(retries + 1):
            try:
                for ds in client.iter_series(study_uid, s.series_instance_uid,
                                             media_types=(("application/dicom", "*"),)):
                    final = folder / f"{ds.SOPInstanceUID}.dcm"
                    with atomic_path(final) as tmp:
                        ds.save_as(tmp, enforce_file_format=True)
                    report.files.append(str(final))
                    received += 1
                    if progress is not None:
                        progress(min(received, total), total, f"WADO-RS from {node}")
                report.failed.pop(s.series_instance_uid, None)
                break
            except requests.exceptions.RequestException as exc:
                report.failed[s.series_instance_uid] = _network_error(node, exc).problem
                if attempt < retries and not (isinstance(exc, requests.exceptions.HTTPError)
                                              and exc.response is not None and exc.response.status_code < 500):
                    time.sleep(retry_delay * 2 ** attempt)
                    continue
                break
    return report
