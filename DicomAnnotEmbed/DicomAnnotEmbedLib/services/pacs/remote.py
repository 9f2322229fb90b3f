"""A series on a node where a folder is expected (``--series``): retrieved into a temporary folder.

Two forms, besides a local folder:

- ``NODE/STUDY_UID[/SERIES_UID]``: NODE is ``AET@HOST:PORT`` (DIMSE) or a name in the node config
  file (DIMSE or DICOMweb), e.g. ``ORTHANC@pacs.example.org:104/1.2.3/1.2.3.4``;
- a DICOMweb URL ``http(s)://HOST/BASE/studies/STUDY_UID[/series/SERIES_UID]``
  (the base URL is what comes before ``/studies/``).

Without a series UID the study must hold exactly one image series (series of SEG, SR, RTSTRUCT,
presentation states and other non-image modalities are not counted); where a list of inputs is
expected (:func:`fetched_inputs`), a study reference retrieves the whole study. A text that is an
existing local path and also reads as a reference is refused (write ``./PATH`` for the folder);
a text beginning with ``.``, ``/`` or ``~`` is always a local path. Tables written from retrieved
files name them on the archive (:func:`reference_name`), not by their temporary paths.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from ...core.errors import InputError
from ...core.outputs import owned_temporary_folder
from ...core.progress import ProgressCallback
from .nodes import _DIMSE, Node, load_config, parse_node

log = logging.getLogger(__name__)
_UID = r"[0-9]{1,64}(?:\.[0-9]{1,64})*"
_URL = re.compile(rf"^(?P<base>https?://.+?)/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID}))?/?$")
_PATH = re.compile(rf"^(?P<node>[^/]+)/(?P<study>{_UID})(?:/(?P<series>{_UID}))?/?$")
#: Modalities that are not the images annotations are drawn on (a study reference without a series
#: UID picks the one series of another modality).
NOT_IMAGES = {"SEG", "SR", "RTSTRUCT", "PR", "KO", "REG", "RTPLAN", "RTDOSE", "RTRECORD", "DOC", "PLAN", "FID"}
#: Temporary folders of retrieved series: ``<system temp>/dae-remote-<pid>-<random>``.
TEMPORARY_PREFIX = "dae-remote"
FORMS = ("NODE/STUDY_UID[/SERIES_UID] (NODE: AET@HOST:PORT or a configured name) or a DICOMweb URL "
         "BASE/studies/STUDY_UID[/series/SERIES_UID]")


@dataclass(frozen=True)
class SeriesRef:
    """A study, or one series of it, on a node."""
    node: Node
    study_uid: str
    series_uid: Optional[str]
    text: str

    def __str__(self) -> str:
        return self.text


def parse_series_ref(text: str, *, option: str = "--series", config=None) -> Optional[SeriesRef]:
    """The reference ``text`` names, or None when it is a local path (or reads as none).

    Raises:
        InputError: a URL that is not ``.../studies/UID[/series/UID]``, or a text that is both an
        existing local path and a reference (the message names ``option``).
    """
    text = str(text).strip()
    if not text or text[0] in "./~":
        return None
    ref = None
    if text.startswith(("http://", "https://")):
        match = _URL.match(text)
        if not match:
            raise InputError(f"{option} {text!r}: a DICOMweb series is BASE/studies/STUDY_UID[/series/SERIES_UID]")
        ref = SeriesRef(parse_node(match["base"], config=config), match["study"], match["series"], text)
    else:
        match = _PATH.match(text)
        if match and (_DIMSE.match(match["node"]) or match["node"] in load_config(config)):
            ref = SeriesRef(parse_node(match["node"], config=config), match["study"], match["series"], text)
    if ref is not None and Path(text).exists():
        raise InputError(f"{option} {text!r} is ambiguous: both a local path and {'a series' if ref.series_uid else 'a study'} "
                         f"on node {ref.node}; write ./{text} for the local path")
    return ref


def image_series_uid(ref: SeriesRef) -> str:
    """The series ``ref`` names, or the one image series of its study.

    Raises:
        InputError: the study holds no image series, or several (they are listed).
    """
    if ref.series_uid:
        return ref.series_uid
    from . import find

    series = [row for row in find(ref.node, level="series", study_uid=ref.study_uid)
              if row.modality.upper() not in NOT_IMAGES]
    if len(series) == 1:
        return series[0].series_instance_uid
    if not series:
        raise InputError(f"{ref}: study {ref.study_uid} on {ref.node} holds no image series")
    listed = "; ".join(f"{row.series_instance_uid} ({row.modality}, {row.count or '?'} instances"
                       f"{', ' + row.series_description if row.series_description else ''})" for row in series)
    raise InputError(f"{ref}: study {ref.study_uid} holds {len(series)} image series; name one as "
                     f"{ref.text.rstrip('/')}{'/series/' if ref.text.startswith('http') else '/'}SERIES_UID: {listed}")


@dataclass
class Retrieved:
    """A reference retrieved into a local folder (see :func:`reference_name`)."""
    ref: SeriesRef
    folder: str
    series_dirs: Dict[str, str]  # Series Instance UID -> its folder


def retrieve(ref: SeriesRef, out_dir: Path, *, whole_study: bool = False, retries: int = 3,
             progress: Optional[ProgressCallback] = None, retrieved: Optional[List[Retrieved]] = None) -> str:
    """Retrieve the series (or with ``whole_study`` and no series UID, the study) into ``out_dir``;
    the folder holding it (also added to ``retrieved``)."""
    from . import get

    series_uid = None if whole_study and not ref.series_uid else image_series_uid(ref)
    report = get(ref.node, ref.study_uid, out_dir, series_uid=series_uid, retries=retries, progress=progress)
    log.info("%s: %s", ref, report.summary())
    folder = report.series_dirs[series_uid] if series_uid else str(out_dir)
    if retrieved is not None:
        retrieved.append(Retrieved(ref, folder, dict(report.series_dirs)))
    return folder


def reference_name(path, retrieved: Sequence[Retrieved]) -> str:
    """What names ``path`` on the archive when it lies in a retrieved folder (for tables that
    outlive the temporary folder): a series folder ``NODE/STUDY/SERIES``, a file in it
    ``NODE/STUDY/SERIES/SOP_INSTANCE_UID``; for a DICOMweb URL reference
    ``BASE/studies/STUDY/series/SERIES[/instances/SOP_INSTANCE_UID]``. Other paths: as given."""
    text = os.path.abspath(str(path))
    for item in retrieved:
        web = item.ref.text.startswith(("http://", "https://"))
        node = item.ref.text.split("/studies/")[0] if web else item.ref.text.split("/")[0]
        if text == os.path.abspath(item.folder) and item.folder not in item.series_dirs.values():
            return item.ref.text  # a whole study
        for series_uid, folder in item.series_dirs.items():
            folder = os.path.abspath(folder)
            if text != folder and not text.startswith(folder + os.sep):
                continue
            name = (f"{node}/studies/{item.ref.study_uid}/series/{series_uid}" if web
                    else f"{node}/{item.ref.study_uid}/{series_uid}")
            if text != folder:  # retrieved files are named <SOPInstanceUID>.dcm
                name += ("/instances/" if web else "/") + Path(text).name.removesuffix(".dcm")
            return name
    return str(path)


@contextlib.contextmanager
def fetched_series(text: str, *, option: str = "--series", config=None, retries: int = 3,
                   progress: Optional[ProgressCallback] = None) -> Iterator[str]:
    """A local folder holding the series ``text`` names: ``text`` itself when it is a local path,
    else the series retrieved (C-GET or WADO-RS) into a temporary folder, removed on exit."""
    with fetched_inputs([text], option=option, config=config, retries=retries, progress=progress,
                        whole_study=False) as (folder,):
        yield folder


@contextlib.contextmanager
def fetched_inputs(texts: Sequence[str], *, option: str = "INPUT", config=None, retries: int = 3,
                   progress: Optional[ProgressCallback] = None, whole_study: bool = True,
                   retrieved: Optional[List[Retrieved]] = None) -> Iterator[List[str]]:
    """``texts`` with every reference to a node replaced by a temporary folder holding what it
    names (a study reference: the whole study, unless not ``whole_study``); removed on exit. The
    folder is ``dae-remote-<pid>-<random>`` in the system's temporary folder: one a killed run
    left behind is removed by the next retrieval. ``retrieved`` gets what was retrieved where
    (for :func:`reference_name`)."""
    refs = [parse_series_ref(text, option=option, config=config) for text in texts]
    if not any(refs):
        yield [str(text) for text in texts]
        return
    temporary = owned_temporary_folder(TEMPORARY_PREFIX)
    try:
        local = []
        for index, (text, ref) in enumerate(zip(texts, refs)):
            if ref is None:
                local.append(str(text))
                continue
            local.append(retrieve(ref, temporary / str(index), whole_study=whole_study, retries=retries,
                                  progress=progress, retrieved=retrieved))
        yield local
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
