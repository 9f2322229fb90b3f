"""What the benchmarks say about the machine they ran on (shared by the bench_* scripts)."""
from __future__ import annotations

from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def memory_text() -> str:
    """Total RAM from /proc/meminfo, e.g. "23.5 GiB", or "unknown"."""
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        return f"{kib / 1024 ** 2:.1f} GiB"
    except (OSError, IndexError, ValueError):
        return "unknown"
