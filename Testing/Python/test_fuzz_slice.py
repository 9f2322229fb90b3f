"""A fixed-seed slice of the mutation fuzzer (Testing/fuzz/fuzz.py): every reader on mutated
copies of our own outputs (and the interop files when ../shared is present) must return, or
raise one DicomAnnotEmbedError that names the file; no crash, no hang, no out-of-memory.

The long run is by hand: ``python3 Testing/fuzz/fuzz.py --cases 100000 --jobs 2``.
"""
from __future__ import annotations

import os
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "Testing" / "fuzz"))

import fuzz  # noqa: E402

#: Cases of the slice (about 2.5 minutes on 2 busy cores) and its seed.
SLICE_CASES = int(os.environ.get("DAE_FUZZ_CASES", "850"))
SLICE_SEED = 20261204


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-corpus")
    return folder, fuzz.build_corpus(folder)


def test_fuzz_slice_has_no_crash_hang_or_oom(corpus):
    folder, data = corpus
    cases = fuzz.make_cases(data, SLICE_CASES, SLICE_SEED)
    report = fuzz.run_fuzz(data, folder / "corpus.json", cases, jobs=2, timeout=30, memory_mb=3072)
    text = fuzz.format_report(report)
    print(text)
    totals = report["totals"]
    assert totals["cases"] == len(cases)
    assert set(report["readers"]) == set(fuzz.READERS), "every reader gets cases"
    assert totals["crash"] == 0 and totals["hang"] == 0 and totals["oom"] == 0, text
    # Every project error names the file it is about (exc.path or the message).
    assert totals["unnamed"] == 0, text
    # The mutations reach past the first check: many cases still read, many are refused.
    assert totals["ok"] > len(cases) // 10 and totals["error"] > len(cases) // 10, text


def test_a_killed_worker_leaves_no_scratch_folder(corpus):
    """The parent makes each worker's scratch folder and removes it when the worker ends, killed
    included (a worker that crashed or stopped answering left its folder in the temp dir)."""
    folder, _ = corpus
    worker = fuzz.Worker(folder / "corpus.json", 5, 1024)
    scratch = worker.scratch
    assert os.path.isdir(scratch)
    worker.process.kill()
    worker.stop()
    assert not os.path.exists(scratch)
