"""README's examples run in order on a fresh folder, as a newcomer would paste them.

A shell block is an example when the line before it (blank lines aside) is ``<!-- readme-example -->``;
the block is a fenced one (```` ``` ````) or an indented one (4 spaces). The blocks run in README
order, each with ``bash -e``, in one temporary folder (``Resources/`` of the repository is linked
there), with ``/tmp/dae`` replaced by a folder of the test's own and ``dicomannotembed`` by this
Python's ``-m DicomAnnotEmbedLib.cli``; ``pip install ... &&`` prefixes are dropped (the package is
installed already). Every block must exit 0.

``DAE_README=path/to/draft.md`` runs the examples of another Markdown file (a README section draft).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import REPO

MARKER = "<!-- readme-example -->"


def example_blocks(text: str) -> List[str]:
    """The shell blocks marked with :data:`MARKER`, in order."""
    lines = text.splitlines()
    blocks: List[str] = []
    n = 0
    while n < len(lines):
        if lines[n].strip() != MARKER:
            n += 1
            continue
        n += 1
        while n < len(lines) and not lines[n].strip():
            n += 1
        body: List[str] = []
        if n < len(lines) and lines[n].lstrip().startswith("```"):
            n += 1
            while n < len(lines) and not lines[n].lstrip().startswith("```"):
                body.append(lines[n])
                n += 1
            n += 1
        else:
            while n < len(lines) and (lines[n].startswith("    ") or not lines[n].strip()):
                if not lines[n].strip() and (n + 1 >= len(lines) or not lines[n + 1].startswith("    ")):
                    break
                body.append(lines[n][4:] if lines[n].startswith("    ") else "")
                n += 1
        if not any(line.strip() for line in body):
            raise AssertionError(f"a {MARKER} marker is followed by no code block")
        blocks.append("\n".join(body).strip() + "\n")
    return blocks


def runnable(block: str, dae: Path) -> str:
    """The block with /tmp/dae replaced, our CLI called through this Python, pip installs dropped."""
    block = block.replace("/tmp/dae", str(dae))
    block = re.sub(r"python3? -m pip install [^&\n]*&&\s*", "", block)
    block = re.sub(r"(^|[\s;&|(])dicomannotembed(?=\s)", lambda m: f"{m.group(1)}{sys.executable} -m DicomAnnotEmbedLib.cli",
                   block, flags=re.M)
    return block


def test_extractor_reads_fenced_and_indented_blocks(tmp_path):
    text = ("intro\n\n" + MARKER + "\n\n    dicomannotembed sample /tmp/dae\n    echo two\n\nprose\n\n"
            + MARKER + "\n```bash\ndicomannotembed --version\n```\n\n    not marked\n")
    blocks = example_blocks(text)
    assert blocks == ["dicomannotembed sample /tmp/dae\necho two\n", "dicomannotembed --version\n"]
    command = runnable("python3 -m pip install -e . && dicomannotembed sample /tmp/dae", tmp_path / "dae")
    assert command == f"{sys.executable} -m DicomAnnotEmbedLib.cli sample {tmp_path / 'dae'}"


def test_readme_examples_run_in_order(tmp_path):
    source = Path(os.environ.get("DAE_README") or REPO / "README.md")
    blocks = example_blocks(source.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{source} has no {MARKER} blocks")
    work = tmp_path / "work"
    work.mkdir()
    (work / "Resources").symlink_to(REPO / "Resources")
    dae = tmp_path / "dae"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for number, block in enumerate(blocks, 1):
        done = subprocess.run(["bash", "-e", "-c", runnable(block, dae)], cwd=work, capture_output=True, text=True,
                              env=env, timeout=900)
        assert done.returncode == 0, (f"example {number} of {source.name} failed (exit {done.returncode}):\n{block}\n"
                                      f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-3000:]}")
