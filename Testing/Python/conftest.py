"""Shared fixtures: the sample case, the interop files in ../shared, external tools."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_INTEROP = REPO.parent / "shared" / "interop"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Slicer TerminologyEntry strings used by the MRML tests (one with a type modifier, one with a region).
LIVER = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
         "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
KIDNEY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
          "SCT^64033007^Kidney~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^")
TUMOR = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure~"
         "SCT^108369006^Neoplasm~^^~Anatomic codes - DICOM master list~SCT^10200004^Liver~^^")


def interop(*parts: str) -> Path:
    """Path of a file in ../shared/interop; the test is skipped when it is absent."""
    path = SHARED_INTEROP.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"interop file absent: {path}")
    return path


def require_tool(name: str) -> str:
    """Path of an external checker; skipped on a developer machine without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run installs it")
        pytest.skip(f"{name} not installed")
    return path


def tree_hashes(folder: Path) -> dict:
    """SHA-256 of every file below a folder, to prove inputs are never changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def rotation(axis, degrees) -> np.ndarray:
    """3x3 rotation about ``axis`` by ``degrees`` (Rodrigues), for oblique test geometries."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * k @ k


@pytest.fixture(scope="session")
def sample_case(tmp_path_factory):
    """The bundled sample, written once per test session (read-only by convention)."""
    from DicomAnnotEmbedLib.files.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("sample") / "case")


def run_on_terminal(*args) -> tuple:
    """Run the command line on a pseudo-terminal of 24x100 characters, as a user's shell would
    (the progress bar shows only on a terminal); returns (exit code, what it printed on stderr)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=terminal, close_fds=True)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        output += chunk
    return process.wait(), output.decode(errors="replace")


# Control points of an MRML markups node in world coordinates (RAS): the library's own reader,
# which the module's self-test uses too.
from DicomAnnotEmbedLib.slicer.self_test_case import world_points  # noqa: E402,F401


def stop_process(process: "subprocess.Popen", timeout: float = 30) -> None:
    """Stop a server or worker this test run started: SIGTERM by PID, SIGKILL after ``timeout`` s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
