"""Batch manifests: one row per case, as CSV or JSON lines.

Columns (CSV header / JSON keys):

``id``
    the case's name; its outputs go to ``OUT/<id>/`` (letters, digits, ``.``, ``_``, ``-``).
``series``
    folder holding the reference series (searched recursively), or a series on a node
    (``NODE/STUDY_UID[/SERIES_UID]`` or a DICOMweb ``.../studies/S/series/R`` URL, see
    ``services.pacs.remote``): each case retrieves it into a temporary folder while it runs. A
    rerun knows it by its reference (a change on the archive is not seen).
``annotations``
    what to convert: paths separated by ``;`` in CSV, a list in JSON lines. The kind of each is
    found from its name or, for DICOM files, its Modality (see ``steps.INPUT_KINDS``): a
    segmentation (``.seg.nrrd``, NRRD/NIfTI/MHA label map), markups (``.mrk.json``), an annotation
    table (``.csv``), a DICOM SEG, TID 1500 SR, RT Structure Set or presentation state (GSPS) to
    import. ``kind=path`` forces a kind.
``outputs``
    what to write, separated by ``;`` or ``,`` (CSV) or a list (JSON): ``overlay``, ``seg``,
    ``sr``, ``rtstruct``, ``gsps``, ``ml`` (see ``steps.OUTPUTS``).
``options``
    optional JSON object: ``series_uid`` and, per output or input kind, the keyword arguments of
    its API call, e.g. ``{"seg": {"seg_type": "binary"}, "overlay": {"fill_markups": true}}``.

Relative paths are relative to the manifest's folder. Paths are not checked here: a missing
file fails its own case, not the batch.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from ...core.errors import InputError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
COLUMNS = ("id", "series", "annotations", "outputs", "options")


@dataclass
class CaseSpec:
    """One case of a manifest: plain data (it travels to a worker)."""

    id: str
    series: str
    annotations: List[Tuple[str, str]] = field(default_factory=list)   # (kind or "", absolute path)
    outputs: List[str] = field(default_factory=list)
    options: Dict[str, object] = field(default_factory=dict)
    line: int = 0

    def input_paths(self) -> List[str]:
        return [self.series] + [path for _, path in self.annotations]

    def to_dict(self) -> dict:
        return {"id": self.id, "series": self.series, "annotations": [list(a) for a in self.annotations],
                "outputs": list(self.outputs), "options": self.options, "line": self.line}


def read_manifest(path, known_outputs, known_kinds) -> List[CaseSpec]:
    """Cases of a ``.csv`` or ``.jsonl`` manifest.

    Raises:
        InputError: unreadable manifest, unknown column, output or kind, duplicate or bad id,
            options that are not a JSON object (the message names the manifest and line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest: {getattr(exc, 'strerror', None) or exc}", path) from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = _json_rows(text, path)
    else:
        rows = _csv_rows(text, path)
    cases: List[CaseSpec] = []
    seen: Dict[str, int] = {}
    for line, row in rows:
        case = _case(row, line, path, known_outputs, known_kinds)
        if case.id in seen:
            raise InputError(f"line {line}: case id {case.id!r} already used on line {seen[case.id]}", path)
        seen[case.id] = line
        cases.append(case)
    if not cases:
        raise InputError("the manifest lists no cases", path)
    return cases


def _csv_rows(text: str, path: Path):
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown or "id" not in header:
        raise InputError(f"line 1: expected the columns {', '.join(COLUMNS)} (id, series, annotations and "
                         f"outputs required), got {', '.join(reader.fieldnames or []) or 'nothing'}", path)
    reader.fieldnames = header
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        if row.get(None):
            raise InputError(f"line {reader.line_num}: more cells than columns (quote the options JSON)", path)
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def _json_rows(text: str, path: Path):
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"line {line}: not JSON ({exc.msg})", path) from None
        if not isinstance(row, dict):
            raise InputError(f"line {line}: expected a JSON object per line", path)
        unknown = [k for k in row if k not in COLUMNS]
        if unknown:
            raise InputError(f"line {line}: unknown keys {', '.join(unknown)} (expected {', '.join(COLUMNS)})", path)
        yield line, row


def _split(value, separators: str = ";,") -> List[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in re.split(f"[{separators}]", value) if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    raise TypeError(type(value).__name__)


def _case(row: dict, line: int, path: Path, known_outputs, known_kinds) -> CaseSpec:
    where = f"line {line}"
    case_id = str(row.get("id") or "").strip()
    if not _ID.match(case_id):
        raise InputError(f"{where}: case id {case_id!r} must be 1-128 letters, digits, '.', '_' or '-' "
                         "(it names the case's output folder)", path)
    series = str(row.get("series") or "").strip()
    if not series:
        raise InputError(f"{where}: case {case_id}: no series folder", path)
    base = path.parent

    def absolute(p: str) -> str:
        if "\0" in p:
            raise InputError(f"{where}: case {case_id}: a path holds a NUL character", path)
        return str((base / Path(p).expanduser()).resolve()) if not Path(p).expanduser().is_absolute() \
            else str(Path(p).expanduser())

    annotations = []
    raw_annotations = row.get("annotations")
    try:
        if isinstance(raw_annotations, dict):  # JSON: {"segmentation": "a.seg.nrrd", "markups": [...]}
            items = [(k, p) for k, v in raw_annotations.items() for p in _split(v, ";")]
        else:
            items = []
            for item in _split(raw_annotations, ";"):
                kind, sep, rest = item.partition("=")
                items.append((kind.strip(), rest.strip()) if sep and kind.strip() in known_kinds else ("", item))
    except TypeError:
        raise InputError(f"{where}: case {case_id}: annotations must be paths", path) from None
    for kind, p in items:
        if kind and kind not in known_kinds:
            raise InputError(f"{where}: case {case_id}: unknown annotation kind {kind!r} "
                             f"(known: {', '.join(known_kinds)})", path)
        annotations.append((kind, absolute(p)))
    try:
        outputs = [o.lower() for o in _split(row.get("outputs"))]
    except TypeError:
        raise InputError(f"{where}: case {case_id}: outputs must be names", path) from None
    unknown = [o for o in outputs if o not in known_outputs]
    if unknown or not outputs:
        raise InputError(f"{where}: case {case_id}: outputs {', '.join(unknown) or 'missing'}: expected some of "
                         f"{', '.join(known_outputs)}", path)
    options = row.get("options") or {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: case {case_id}: options are not JSON ({exc.msg})", path) from None
    if not isinstance(options, dict):
        raise InputError(f"{where}: case {case_id}: options must be a JSON object", path)
    allowed = {"series_uid", *known_outputs, *known_kinds}
    bad = [k for k in options if k not in allowed]
    bad += [k for k, v in options.items() if k != "series_uid" and k not in bad and not isinstance(v, dict)]
    if bad:
        raise InputError(f"{where}: case {case_id}: options {', '.join(bad)}: expected series_uid or, per output "
                         f"or input kind ({', '.join(sorted(allowed - {'series_uid'}))}), an object of arguments",
                         path)
    series = series if _on_a_node(series, base, f"{where}: case {case_id}: series", path) else absolute(series)
    return CaseSpec(case_id, series, annotations, outputs, options, line)


def _on_a_node(text: str, base: Path, what: str, path: Path) -> bool:
    """Whether the series column names a series on a node (relative folders: beside the manifest)."""
    if "/" not in text or text.startswith(("/", ".", "~")):
        return False
    from ..pacs.remote import parse_series_ref

    try:
        ref = parse_series_ref(text, option=what)
    except InputError as exc:
        raise InputError(exc.problem, path) from None
    if ref is not None and (base / text).exists():
        raise InputError(f"{what} {text!r} is ambiguous: both a folder beside the manifest and a series on node "
                         f"{ref.node}; write ./{text} for the folder", path)
    return ref is not None
