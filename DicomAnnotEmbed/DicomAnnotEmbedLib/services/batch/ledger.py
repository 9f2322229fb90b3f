"""The batch ledger (``OUT/ledger.jsonl``) and the inputs' fingerprints that decide what a rerun skips.

One JSON object per line and per finished case (done or failed): case, status, inputs
(fingerprint), outputs (each output, e.g. ``seg.dcm`` or ``overlay/``, -> SHA-256; see
``steps.output_digests``; ``OUT/<id>/case.json`` lists every file's SHA-256), duration_s, cpu_s (the worker process's CPU time), peak_memory_mb, error, worker,
started, warnings. Each line is appended by one ``write`` on a file opened ``O_APPEND`` and
fsynced, by the one process that runs the batch; a line cut short by a crash is ignored on reading.
The last line of a case wins.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable

from ...core.errors import OutputError

LEDGER = "ledger.jsonl"


class Ledger:
    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LEDGER

    def read(self) -> Dict[str, dict]:
        """The last record of every case (lines that are not whole JSON objects are skipped)."""
        records: Dict[str, dict] = {}
        if not self.path.exists():
            return records
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "case" in record and "status" in record:
                    records[record["case"]] = record
        return records

    def append(self, record: dict) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size:  # a line cut short by a crash must not swallow this one
                    with open(self.path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            data = b"\n" + data
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"cannot append to the ledger: {exc.strerror or exc}", self.path) from None


def _walk(path: str, entries: list) -> None:
    try:
        st = os.stat(path)
    except OSError:
        entries.append((path, "missing"))
        return
    if not os.path.isdir(path):
        entries.append((path, st.st_size, st.st_mtime_ns))
        return
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(entry.path)
                    else:
                        try:
                            s = entry.stat()
                            entries.append((entry.path, s.st_size, s.st_mtime_ns))
                        except OSError:
                            entries.append((entry.path, "missing"))
        except OSError:
            entries.append((folder, "unreadable"))


def fingerprint(paths: Iterable[str], settings: dict) -> str:
    """SHA-256 over every input file's path, size and modification time (folders walked) and the
    case's outputs and options: a rerun skips a finished case only when this is unchanged."""
    entries: list = []
    for path in paths:
        _walk(path, entries)
    entries.sort(key=lambda e: e[0])
    blob = json.dumps([entries, settings], sort_keys=True, default=str).encode()
    return "size-mtime:" + hashlib.sha256(blob).hexdigest()
