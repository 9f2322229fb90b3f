"""Qualitative evaluations: coded concepts with scored, coded values (e.g. the LIDC-IDRI nodule
characteristics), as TID 1500 SR carries them, and a CSV reader for them.

Code table files
----------------
A code table is a JSON file; ``codes/lidc_characteristics.json`` (name ``"lidc"``) is bundled
and is the example to copy. Format (version 1)::

    {
      "format": "DicomAnnotEmbed code table",         (optional; if present, exactly this)
      "format_version": 1,                            (required)
      "name": "lidc",                                 (optional; default: the file name)
      "title": "...", "source": "...",                (optional text)
      "notes": ["...", ...],                          (optional list of text)
      "coding_schemes": {"99LIDCQIICR": "what it is"},  (optional: private schemes used)
      "concepts": [                                   (required, at least one)
        {
          "name": "Likelihood of malignancy",         (required, unique)
          "aliases": ["Malignancy"],                  (optional: more names to look it up by)
          "definition": "...", "note": "...", "source_text": "...",   (optional text)
          "code": {"value": "900", "scheme": "99LIDCQIICR", "meaning": "Malignancy"},
          "values": {                                 (required: score -> coded value)
            "4": {"value": "904", "scheme": "99LIDCQIICR",
                  "meaning": "4 out of 5 (Moderately Suspicious for Cancer)",
                  "label": "4 - Moderately Suspicious for Cancer",   (optional: source wording)
                  "note": "...", "source_text": "...",               (optional text)
                  "alternatives": [{"value": ..., "scheme": ..., "meaning": ...}]}  (optional)
          }
        }
      ]
    }

Scores are integers written as JSON object keys ("1", "2", ...). Code values and coding scheme
designators are 1-16 characters, code meanings 1-64 (DICOM SH and LO), without backslashes,
control characters or surrounding spaces. Unknown keys are errors (they are usually typos), as
are duplicate keys, two concepts with the same code, two scores of one concept with the same
code, and a name, alias or concept meaning that would find two different concepts. A concept
is looked up by its name, an alias or its code meaning (ignoring case, spaces and punctuation:
"internalStructure" finds "Internal structure"), by its code value, or by a :class:`Code`
(or its text form ``(value, scheme, "meaning")``).

Evaluation CSV files
--------------------
:func:`read_evaluations_csv` reads one evaluation per row::

    segment,concept,value
    Nodule 1,Malignancy,4
    Nodule 1,calcification,6
    Nodule 1,Texture,solid pulmonary nodule
    Nodule 2,"(C45992, NCIt, ""Subtlety score"")",5
    Nodule 2,Comment,"irregular, next to the fissure"
    Nodule 2,"(RID5741, RadLex, ""calcification pattern"")","(RID5827, RadLex, ""central calcification"")"

* A header row names the columns ``segment``, ``concept`` and ``value`` (any case, any order;
  other columns are ignored). Comma, semicolon or tab separated; UTF-8 (a BOM is fine).
  Empty rows and rows whose first cell starts with ``#`` are skipped.
* ``segment``: a segment id or name (checked against the segmentation when one is given).
* ``concept``: a concept of the code table (name, alias, meaning, code value or code). Its
  ``value`` is then a score of that concept (or the score's code meaning or label), and the
  row gives a coded evaluation. A segment may have only one value per table concept.
* Any other concept gives an evaluation the table does not know: the concept as written
  (plain text, or a code ``(value, scheme, "meaning")``), and the value as free text (a TEXT
  evaluation) or, when written as a code, a coded one. A plain-text concept close to a table
  concept's name is logged as a warning (a typo would otherwise silently become text).
"""
from __future__ import annotations

import csv
import difflib
import functools
import io
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..core.errors import InputError
from ..core.inputs import read_json_file, read_text_file
from ..core.model import Code, Segmentation

log = logging.getLogger(__name__)

FORMAT_NAME = "DicomAnnotEmbed code table"
FORMAT_VERSION = 1
#: Code tables shipped with the package: name -> file in ``codes/``.
BUNDLED_TABLES: dict[str, str] = {"lidc": "lidc_characteristics.json"}

_TOP_KEYS = {"format", "format_version", "name", "title", "source", "notes", "coding_schemes", "concepts"}
_CONCEPT_KEYS = {"name", "aliases", "definition", "note", "source_text", "code", "values"}
_CODE_KEYS = {"value", "scheme", "meaning"}
_VALUE_KEYS = _CODE_KEYS | {"label", "note", "source_text", "alternatives"}
_SH_MAX, _LO_MAX = 16, 64
_CODE_TEXT = re.compile(r'^\(\s*([^,()"]+?)\s*,\s*([^,()"]+?)\s*,\s*(?:"(.*)"|([^"]*?))\s*\)$', re.DOTALL)
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")

Score = Union[int, str]


def _norm(text: str) -> str:
    """Lookup key: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]+", "", str(text).casefold())


def parse_code(text: str) -> Code | None:
    """A code written as ``(value, scheme, "meaning")`` (the form ``str(Code)`` gives); None when
    ``text`` is not in that form."""
    match = _CODE_TEXT.match(text.strip())
    if not match:
        return None
    value, scheme, quoted, bare = match.groups()
    return Code(value.strip(), scheme.strip(), (quoted if quoted is not None else bare or "").strip())


@dataclass(frozen=True)
class ConceptEntry:
    """One concept of a code table and its scored values."""

    name: str
    code: Code
    values: dict[int, Code]
    labels: dict[int, str] = field(default_factory=dict)
    alternatives: dict[int, tuple[Code, ...]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    definition: str = ""
    table: str = ""

    def valid_scores(self) -> str:
        """Human list of the scores: '1 = 1 out of 5 (...), 2 = ...'."""
        return ", ".join(f"{score} = {code.meaning}" for score, code in self.values.items())

    def lookup(self, score: Score) -> tuple[int, Code]:
        """(score, coded value) for a score given as a number, or as the code meaning or label
        of one of the values; InputError listing the valid scores otherwise."""
        found = self._score(score)
        if found is None or found not in self.values:
            raise InputError(f"{score!r} is not a score of {self.name!r} in code table {self.table!r}; "
                             f"valid scores: {self.valid_scores()}")
        return found, self.values[found]

    def _score(self, score: Score) -> int | None:
        if isinstance(score, bool):
            return None
        if isinstance(score, int) or (hasattr(score, "__index__") and not isinstance(score, str)):
            return int(score)
        if isinstance(score, float):
            return int(score) if score.is_integer() else None
        if isinstance(score, str):
            text = score.strip()
            if _INTEGER.match(text):
                return int(float(text))
            key = _norm(text)
            for number, code in self.values.items():
                if key and key in (_norm(code.meaning), _norm(self.labels.get(number, ""))):
                    return number
        return None


class CodeTable:
    """Coded concepts and their scored values, loaded from a code table (format: module docstring).

    Args:
        data: the parsed JSON document.
        path: the file it came from (named in errors), if any.
    """

    def __init__(self, data: Any, path: os.PathLike | str | None = None):
        self.path = None if path is None else str(path)
        if not isinstance(data, dict):
            self._fail(f"a code table is a JSON object, got {type(data).__name__}")
        self._keys(data, _TOP_KEYS, "the table")
        if "format" in data and data["format"] != FORMAT_NAME:
            self._fail(f"'format' is {data['format']!r}, expected {FORMAT_NAME!r}")
        if data.get("format_version") != FORMAT_VERSION:
            self._fail(f"'format_version' must be {FORMAT_VERSION}, got {data.get('format_version')!r}")
        default_name = Path(self.path).stem if self.path else "code table"
        self.name: str = self._text(data, "name", "the table", default=default_name)
        self.title: str = self._text(data, "title", "the table")
        self.source: str = self._text(data, "source", "the table")
        notes = data.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            self._fail("'notes' must be a list of text")
        self.notes: tuple[str, ...] = tuple(notes)
        schemes = data.get("coding_schemes", {})
        if not isinstance(schemes, dict) or not all(isinstance(v, str) for v in schemes.values()):
            self._fail("'coding_schemes' must map scheme designators to text")
        self.coding_schemes: dict[str, str] = dict(schemes)
        concepts = data.get("concepts")
        if not isinstance(concepts, list) or not concepts:
            self._fail("'concepts' must be a non-empty list")
        self.concepts: tuple[ConceptEntry, ...] = tuple(self._concept(c, n) for n, c in enumerate(concepts))
        self._index()

    # --- loading --------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: os.PathLike | str) -> CodeTable:
        """Load and validate a code table file."""
        path = Path(path)
        try:
            data = read_json_file(path, "a code table (JSON)", object_pairs_hook=_unique_keys)
        except _DuplicateKey as error:
            raise InputError(f"key {error.args[0]!r} appears twice in one object", path) from None
        return cls(data, path)

    def _fail(self, problem: str):
        raise InputError(problem, self.path)

    def _keys(self, obj: dict, allowed: set, where: str) -> None:
        unknown = sorted(set(obj) - allowed)
        if unknown:
            self._fail(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                       f"{', '.join(sorted(allowed))}")

    def _text(self, obj: dict, key: str, where: str, default: str = "") -> str:
        value = obj.get(key, default)
        if not isinstance(value, str):
            self._fail(f"{where}: {key!r} must be text, got {value!r}")
        return value

    def _code(self, obj: Any, where: str, allowed: set = _CODE_KEYS) -> Code:
        if not isinstance(obj, dict):
            self._fail(f"{where}: a code is an object with value, scheme and meaning, got {obj!r}")
        self._keys(obj, allowed, where)
        parts = []
        for key, limit in (("value", _SH_MAX), ("scheme", _SH_MAX), ("meaning", _LO_MAX)):
            text = obj.get(key)
            if not isinstance(text, str) or not text.strip():
                self._fail(f"{where}: {key!r} is missing or empty")
            problem = _dicom_text_problem(text, limit)
            if problem:
                self._fail(f"{where}: {key} {text!r} {problem}")
            parts.append(text)
        return Code(*parts)

    def _concept(self, obj: Any, number: int) -> ConceptEntry:
        where = f"concepts[{number}]"
        if not isinstance(obj, dict):
            self._fail(f"{where}: a concept is an object, got {obj!r}")
        name = self._text(obj, "name", where).strip()
        if not name:
            self._fail(f"{where}: 'name' is missing or empty")
        where = f"concepts[{number}] ({name!r})"
        self._keys(obj, _CONCEPT_KEYS, where)
        for key in ("definition", "note", "source_text"):
            self._text(obj, key, where)
        aliases = obj.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            self._fail(f"{where}: 'aliases' must be a list of non-empty text")
        code = self._code(obj.get("code"), f"{where} code")
        values = obj.get("values")
        if not isinstance(values, dict) or not values:
            self._fail(f"{where}: 'values' must be a non-empty object mapping scores to codes")
        scored: dict[int, Code] = {}
        labels: dict[int, str] = {}
        alternatives: dict[int, tuple[Code, ...]] = {}
        for key, entry in values.items():
            if not re.fullmatch(r"[+-]?\d+", key.strip()):
                self._fail(f"{where}: score {key!r} is not an integer")
            score = int(key)
            if score in scored:
                self._fail(f"{where}: score {score} is listed twice")
            value_where = f"{where} values[{key!r}]"
            scored[score] = self._code(entry, value_where, _VALUE_KEYS)
            for text_key in ("label", "note", "source_text"):
                self._text(entry, text_key, value_where)
            if entry.get("label"):
                labels[score] = entry["label"]
            extra = entry.get("alternatives", [])
            if not isinstance(extra, list):
                self._fail(f"{value_where}: 'alternatives' must be a list of codes")
            if extra:
                alternatives[score] = tuple(self._code(c, f"{value_where} alternatives[{n}]")
                                            for n, c in enumerate(extra))
        seen: dict[tuple[str, str], int] = {}
        for score, value in scored.items():
            key = (value.value, value.scheme)
            if key in seen:
                self._fail(f"{where}: scores {seen[key]} and {score} have the same code {value}")
            seen[key] = score
        return ConceptEntry(name=name, code=code, values=scored, labels=labels, alternatives=alternatives,
                            aliases=tuple(a.strip() for a in aliases), definition=obj.get("definition", ""),
                            table=self.name)

    def _index(self) -> None:
        self._by_name: dict[str, ConceptEntry] = {}
        self._by_code: dict[tuple[str, str], ConceptEntry] = {}
        self._by_value: dict[str, list[ConceptEntry]] = {}
        for entry in self.concepts:
            code_key = (entry.code.value, entry.code.scheme)
            if code_key in self._by_code:
                self._fail(f"concepts {self._by_code[code_key].name!r} and {entry.name!r} have the same code "
                           f"{entry.code}")
            self._by_code[code_key] = entry
            self._by_value.setdefault(_norm(entry.code.value), []).append(entry)
            for text in (entry.name, entry.code.meaning) + entry.aliases:
                key = _norm(text)
                if not key:
                    self._fail(f"concept {entry.name!r}: name or alias {text!r} has no letter or digit")
                other = self._by_name.get(key)
                if other is not None and other is not entry:
                    self._fail(f"{text!r} would name both concept {other.name!r} and {entry.name!r}")
                self._by_name[key] = entry

    # --- lookup ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[ConceptEntry]:
        return iter(self.concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    def __repr__(self) -> str:
        return f"CodeTable({self.name!r}, {len(self.concepts)} concepts)"

    def concept_names(self) -> list[str]:
        return [entry.name for entry in self.concepts]

    def find(self, key: str | Code | ConceptEntry) -> ConceptEntry | None:
        """The concept named, aliased, meant or coded by ``key``; None when the table has none."""
        if isinstance(key, ConceptEntry):
            return key if key in self.concepts else None
        if isinstance(key, Code):
            return self._by_code.get((key.value, key.scheme))
        if not isinstance(key, str):
            raise InputError(f"a concept is given by name or code, got {key!r}")
        code = parse_code(key) if key.strip().startswith("(") else None
        if code is not None:
            return self._by_code.get((code.value, code.scheme))
        normalised = _norm(key)
        if not normalised:
            return None
        entry = self._by_name.get(normalised)
        if entry is not None:
            return entry
        by_value = self._by_value.get(normalised, [])
        if len(by_value) > 1:
            raise InputError(f"code value {key!r} is the code of several concepts of table {self.name!r} "
                             f"({', '.join(str(e.code) for e in by_value)}); give the whole code")
        return by_value[0] if by_value else None

    def concept(self, key: str | Code | ConceptEntry) -> ConceptEntry:
        """Like :meth:`find`, but an unknown concept is an InputError listing the valid ones."""
        entry = self.find(key)
        if entry is None:
            raise InputError(f"unknown concept {str(key)!r} in code table {self.name!r}; valid concepts: "
                             + ", ".join(f"{e.name} {e.code}" for e in self.concepts))
        return entry

    def evaluation(self, concept: str | Code | ConceptEntry, score: Score) -> tuple[Code, Code]:
        """(concept code, value code) for a score of a concept."""
        entry = self.concept(concept)
        return entry.code, entry.lookup(score)[1]

    def similar_concepts(self, text: str) -> list[str]:
        """Names of table concepts close to ``text`` (for 'did you mean' messages)."""
        candidates = {_norm(t): e.name for e in self.concepts for t in (e.name, e.code.meaning) + e.aliases}
        close = difflib.get_close_matches(_norm(text), list(candidates), n=3, cutoff=0.75)
        return list(dict.fromkeys(candidates[c] for c in close))


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _dicom_text_problem(text: str, limit: int) -> str | None:
    if len(text) > limit:
        return f"is {len(text)} characters long, more than the {limit} DICOM allows"
    if text != text.strip():
        return "has leading or trailing spaces"
    if "\\" in text or any(ord(ch) < 32 for ch in text):
        return "contains a backslash or a control character"
    return None


@functools.cache
def _bundled(name: str) -> CodeTable:
    from importlib import resources

    resource = resources.files(__package__).joinpath("codes", BUNDLED_TABLES[name])
    with resources.as_file(resource) as path:
        return CodeTable.from_file(path)


def load_code_table(name_or_path: str | os.PathLike) -> CodeTable:
    """A bundled code table by name (``"lidc"``: the LIDC-IDRI nodule characteristics) or a code
    table file by path."""
    if isinstance(name_or_path, CodeTable):
        return name_or_path
    text = os.fspath(name_or_path)
    if text.strip().lower() in BUNDLED_TABLES:
        return _bundled(text.strip().lower())
    path = Path(text)
    if not path.exists():
        raise InputError(f"no code table {text!r}: neither a bundled table ({', '.join(BUNDLED_TABLES)}) "
                         "nor an existing file")
    return CodeTable.from_file(path)


def evaluation(table: CodeTable | str | os.PathLike, concept_name_or_code: str | Code,
               score: Score) -> tuple[Code, Code]:
    """(concept Code, value Code) of a scored evaluation, e.g.
    ``evaluation("lidc", "malignancy", 4)`` -> ((900, 99LIDCQIICR, "Malignancy"),
    (904, 99LIDCQIICR, "4 out of 5 (Moderately Suspicious for Cancer)")).

    Raises InputError for an unknown concept or score, listing the valid ones."""
    return load_code_table(table).evaluation(concept_name_or_code, score)


# --- CSV ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvaluationRecord:
    """One row of an evaluation CSV.

    Attributes:
        segment: the segment id when a segmentation was given, else the cell as written.
        concept: the coded concept (a table concept, or a code written in the CSV); None when
            the CSV names a concept the table does not know in plain text only.
        concept_name: the table concept's name, else the code meaning or the cell as written.
        value: the coded value (a CODE evaluation), or None.
        text: the free-text value (a TEXT evaluation), or None.
        score: the table score, for table concepts.
        line: line of the row in the CSV file.
    """

    segment: str
    concept: Code | None
    concept_name: str
    value: Code | None
    text: str | None
    score: int | None
    line: int

    @property
    def is_coded(self) -> bool:
        return self.value is not None


_COLUMNS = ("segment", "concept", "value")


def read_evaluations_csv(path: os.PathLike | str, table: CodeTable | str | os.PathLike,
                         segmentation: Segmentation | None = None) -> list[EvaluationRecord]:
    """Read an evaluation CSV (format: module docstring) against a code table.

    Args:
        path: the CSV file.
        table: a :class:`CodeTable`, or a bundled table's name or a table file (see
            :func:`load_code_table`).
        segmentation: when given, every segment cell must name one of its segments (by id or
            name) and records carry the segment id.

    Raises:
        InputError: naming the file and line: no header, a missing cell, an unknown score,
            an unknown segment, a second value for the same table concept of a segment.
    """
    path = Path(path)
    table = load_code_table(table)
    text = read_text_file(path, "an evaluation CSV")
    rows, columns = _csv_rows(text, path)
    records: list[EvaluationRecord] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, cells in rows:
        segment_text, concept_text, value_text = (
            cells[columns[c]].strip() if columns[c] < len(cells) else "" for c in _COLUMNS)
        if not segment_text:
            raise InputError(f"line {line}: the segment cell is empty", path)
        if not concept_text:
            raise InputError(f"line {line}: the concept cell is empty", path)
        if not value_text:
            raise InputError(f"line {line}: no value for {concept_text!r} of segment {segment_text!r}", path)
        segment_key = _segment_id(segmentation, segment_text, line, path)
        try:
            entry = table.find(concept_text)
            concept_code = None if entry else _code_cell(concept_text, "concept")
            value_code = None if entry else _code_cell(value_text, "value")
            score, value = entry.lookup(value_text) if entry else (None, value_code)
        except InputError as error:
            raise InputError(f"line {line}: {error.problem}", path) from None
        if entry is not None:
            key = (segment_key, entry.code.value, entry.code.scheme)
            if key in seen:
                raise InputError(f"line {line}: segment {segment_text!r} already has a {entry.name!r} value "
                                 f"on line {seen[key]}", path)
            seen[key] = line
            records.append(EvaluationRecord(segment_key, entry.code, entry.name, value, None, score, line))
            continue
        if concept_code is None:
            similar = table.similar_concepts(concept_text)
            if similar:
                log.warning("%s line %d: concept %r is not in code table %r (did you mean %s?); it is read as a "
                            "free-text evaluation", path, line, concept_text, table.name, " or ".join(similar))
        records.append(EvaluationRecord(
            segment_key, concept_code, concept_code.meaning if concept_code else concept_text,
            value, None if value is not None else value_text, None, line))
    return records


def _csv_rows(text: str, path: Path) -> tuple[list[tuple[int, list[str]]], dict[str, int]]:
    """(line number, cells) of the data rows and the column of each required header."""
    header_line = next((line for line in text.splitlines() if line.strip()), None)
    if header_line is None:
        raise InputError("the CSV is empty; it needs a header row: segment, concept, value", path)
    for delimiter in (",", ";", "\t"):
        names = [_norm(c) for c in next(csv.reader([header_line], delimiter=delimiter))]
        if all(c in names for c in _COLUMNS):
            break
    else:
        raise InputError(f"the first row must name the columns segment, concept, value; got {header_line.strip()!r}",
                         path)
    columns = {c: names.index(c) for c in _COLUMNS}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    header_seen = False
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if not header_seen:
                header_seen = True
                continue
            if cells[0].lstrip().startswith("#"):
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as error:
        raise InputError(f"line {reader.line_num}: not valid CSV ({error})", path) from None
    return rows, columns


def _code_cell(text: str, what: str) -> Code | None:
    """A code written in a CSV cell, None for plain text; a cell that looks like a code but is
    not one is an error (rather than silently text)."""
    if not (text.startswith("(") and text.endswith(")") and "," in text):
        return None
    code = parse_code(text)
    if code is None or not code.meaning:
        raise InputError(f"the {what} {text!r} looks like a code but is not (value, scheme, \"meaning\")")
    return code


def _segment_id(segmentation: Segmentation | None, text: str, line: int, path: Path) -> str:
    if segmentation is None:
        return text
    try:
        return segmentation.segment(text).id
    except KeyError:
        names = ", ".join(repr(s.name) for s in segmentation.segments[:12])
        more = f" (+{len(segmentation.segments) - 12} more)" if len(segmentation.segments) > 12 else ""
        raise InputError(f"line {line}: no segment with id or name {text!r}; segments: {names}{more}",
                         path) from None


__all__ = ["BUNDLED_TABLES", "CodeTable", "ConceptEntry", "EvaluationRecord", "evaluation", "load_code_table",
           "parse_code", "read_evaluations_csv"]
