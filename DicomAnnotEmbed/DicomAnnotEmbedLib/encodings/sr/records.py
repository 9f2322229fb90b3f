"""Measurement records: one measurement or evaluation of a TID 1500 report, and their CSV form."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ...core.model import Code
from ...core.outputs import atomic_path
from .codes import PathLike

@dataclass
class MeasurementRecord:
    """One measurement or evaluation of a TID 1500 report (a row of ``measurements.csv``).

    Attributes:
        tracking_id, tracking_uid: the group's Tracking Identifier and Tracking UID.
        template: "1411" (volumetric), "1410" (planar), "1501" (no region) or "" when unsaid.
        finding, finding_site: the group's Finding and Finding Site codes, if any.
        finding_category: the group's Finding Category code (e.g. Anatomical Structure), if any.
        concept: the concept name (e.g. Volume, Malignancy).
        value, unit: a numeric measurement (NUM) and its UCUM unit.
        coded_value: the value of a coded evaluation (CODE), or a NUM's qualifier when it has
            no value.
        text: the value of a text evaluation (TEXT).
        derivation, method: Derivation and Measurement Method modifiers of a NUM.
        algorithm: algorithm name and version ("name version"), if given.
        seg_sop_instance_uid, segment_number: the referenced segment, if any.
        segment: the referenced segment's label when the SEG was read, else "".
        markup: name of the markup the group was made into, else "".
    """

    tracking_id: str
    tracking_uid: str
    concept: Code
    template: str = ""
    finding: Optional[Code] = None
    finding_site: Optional[Code] = None
    finding_category: Optional[Code] = None
    value: Optional[float] = None
    unit: Optional[Code] = None
    coded_value: Optional[Code] = None
    text: Optional[str] = None
    derivation: Optional[Code] = None
    method: Optional[Code] = None
    algorithm: str = ""
    seg_sop_instance_uid: str = ""
    segment_number: Optional[int] = None
    segment: str = ""
    markup: str = ""

    @property
    def kind(self) -> str:
        """"numeric", "coded" or "text"."""
        if self.text is not None:
            return "text"
        return "numeric" if self.unit is not None else "coded"

    def key(self) -> Tuple:
        """What identifies a record within a report (for comparisons)."""
        return (self.tracking_uid, self.concept.value, self.concept.scheme,
                self.derivation.value if self.derivation else "", self.markup)


CSV_COLUMNS = ("tracking_id", "tracking_uid", "template", "segment", "segment_number", "seg_sop_instance_uid",
               "markup", "finding_category", "finding", "finding_site", "concept", "derivation", "kind", "value", "unit",
               "coded_value", "text", "method", "algorithm")


def write_measurements_csv(path: PathLike, records: Sequence[MeasurementRecord]) -> None:
    """Write records as CSV (columns :data:`CSV_COLUMNS`; codes as ``(value, scheme, "meaning")``,
    numbers with full float precision). Written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        row = {"kind": record.kind, "value": "" if record.value is None else repr(float(record.value)),
               "segment_number": "" if record.segment_number is None else str(record.segment_number)}
        for name in CSV_COLUMNS:
            if name in row:
                continue
            value = getattr(record, name)
            row[name] = "" if value is None else str(value)
        writer.writerow([row[name] for name in CSV_COLUMNS])
    text = buffer.getvalue()
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def read_measurements_csv(path: PathLike) -> List[MeasurementRecord]:
    """Read a CSV written by :func:`write_measurements_csv` back into records."""
    from ...dicom.evaluations import parse_code

    def code(text: str) -> Optional[Code]:
        return parse_code(text) if text else None

    records = []
    with open(path, encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            records.append(MeasurementRecord(
                tracking_id=row["tracking_id"], tracking_uid=row["tracking_uid"], concept=code(row["concept"]),
                template=row["template"], finding=code(row["finding"]), finding_site=code(row["finding_site"]),
                finding_category=code(row.get("finding_category") or ""),
                value=float(row["value"]) if row["value"] else None, unit=code(row["unit"]),
                coded_value=code(row["coded_value"]), text=row["text"] if row["kind"] == "text" else None,
                derivation=code(row["derivation"]), method=code(row["method"]), algorithm=row["algorithm"],
                seg_sop_instance_uid=row["seg_sop_instance_uid"],
                segment_number=int(row["segment_number"]) if row["segment_number"] else None,
                segment=row["segment"], markup=row["markup"]))
    return records
