"""Whole collections: a resumable batch of one-case conversions on Dask distributed.

:func:`run_batch` reads a manifest (CSV or JSON lines, one case per row: :mod:`.manifest`), runs
each case as one task on a local cluster of processes or on a given scheduler
(:mod:`.runner`), each through the one-case API (:mod:`.steps`), and keeps a ledger
(:mod:`.ledger`) so that a rerun does only what is not finished.
"""
from .ledger import LEDGER, Ledger
from .manifest import CaseSpec, read_manifest
from .runner import BatchResult, run_batch
from .steps import INPUT_KINDS, OUTPUTS, run_case

__all__ = ["BatchResult", "CaseSpec", "INPUT_KINDS", "LEDGER", "Ledger", "OUTPUTS", "read_manifest",
           "run_batch", "run_case"]
