"""cProfile results as Markdown tables (shared by the bench_* scripts)."""
from __future__ import annotations

import cProfile
import pstats


def short_location(filename: str) -> str:
    """A readable location: package-relative for site-packages and our library."""
    for marker in ("site-packages/", "DicomAnnotEmbed/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def print_profile(profile: cProfile.Profile, heading: str, top: int, by: str, skip_file: str,
                  digits: int = 2) -> None:
    """Print ``heading`` and the top ``top`` functions by "cumulative" or "own" time as a Markdown
    table, leaving out the functions of ``skip_file`` (the benchmark's own wrappers)."""
    stats = pstats.Stats(profile)
    column = 3 if by == "cumulative" else 2
    rows = sorted(stats.stats.items(), key=lambda item: item[1][column], reverse=True)  # type: ignore[attr-defined]
    print(f"\n{heading}\n")
    print("| cumulative s | own s | calls | function |")
    print("|---:|---:|---:|---|")
    shown = 0
    for (filename, line, name), (_, calls, own, cumulative, _) in rows:
        if filename == skip_file:
            continue
        where = name if filename == "~" else f"{short_location(filename)}:{line}({name})"
        print(f"| {cumulative:.{digits}f} | {own:.{digits}f} | {calls} | `{where}` |")
        shown += 1
        if shown == top:
            break
