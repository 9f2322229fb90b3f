"""The package's layout is its architecture: these tests read the import graph (ast, nothing is run)
and fail when a module imports a layer above its own, when an encoding imports another encoding,
when imports form a circle, or when a module grows past 800 lines.

Layers, bottom to top (README "Architecture"):
    core < dicom < presets < encodings < files < api < services < cli, slicer
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from conftest import REPO

PACKAGE = "DicomAnnotEmbedLib"
LIB = REPO / "DicomAnnotEmbed" / PACKAGE
MAX_LINES = 800

#: What each layer may import of ours, besides itself and the package root (which holds only __version__).
ALLOWED: Dict[str, Set[str]] = {
    "core": set(),
    "dicom": {"core"},
    "presets": {"core", "dicom"},
    "encodings": {"core", "dicom", "presets"},
    "files": {"core", "dicom", "presets", "encodings"},
    "api": {"core", "dicom", "presets", "encodings", "files"},
    "services": {"core", "dicom", "presets", "encodings", "files", "api"},
    "cli": {"core", "dicom", "presets", "encodings", "files", "api", "services"},
    "slicer": {"core", "dicom", "presets", "encodings", "files", "api", "services"},
    # The deprecated DicomAnnotEmbedLib.module_logic re-exports slicer.logic for one release.
    "module_logic": {"slicer"},
}
#: api/__init__.py may name services' entry points (api.run_batch, api.pacs_send, ...), but only
#: inside a function (a lazy module __getattr__), so importing ``api`` never loads a service.
LAZY_UPWARD = {(f"{PACKAGE}.api", "services")}


def module_name(path: Path, root: Path = LIB, package: str = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def layer_of(module: str) -> Optional[str]:
    """'core' for DicomAnnotEmbedLib.core.series; None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def encoding_of(module: str) -> Optional[str]:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "encodings" else None


def imports_of(path: Path, module: str, modules: Dict[str, Path], package: str = PACKAGE
               ) -> List[Tuple[str, int, bool]]:
    """(imported module, line, at module level) for each import of ours in ``path``.

    ``from X import name`` counts as importing ``X.name`` when that is a module of ours, else ``X``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    own_package = module if is_package else module.rsplit(".", 1)[0]
    found = []

    def visit(node, top_level: bool):
        for child in ast.iter_child_nodes(node):
            nested = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == package:
                        found.append((alias.name, child.lineno, top_level))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = own_package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != package:
                    continue
                for alias in child.names:
                    candidate = f"{target}.{alias.name}"
                    found.append((candidate if candidate in modules else target, child.lineno, top_level))
            visit(child, nested)

    visit(tree, True)
    return found


def all_modules(root: Path = LIB) -> Dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


ALL_MODULES = all_modules()


def layering_problems(modules: Dict[str, Path], base: Path = REPO) -> List[str]:
    problems = []
    for module, path in modules.items():
        layer = layer_of(module)
        if layer is None:  # the package root
            continue
        for target, line, top_level in imports_of(path, module, modules):
            target_layer = layer_of(target)
            where = f"{path.relative_to(base)}:{line}"
            if target_layer is None or target_layer == layer:
                if layer == "encodings" and encoding_of(target) and encoding_of(target) != encoding_of(module):
                    problems.append(f"{where}: encoding {encoding_of(module)} imports encoding {encoding_of(target)} "
                                    f"({target})")
                continue
            if target_layer in ALLOWED.get(layer, set()):
                continue
            if (module, target_layer) in LAZY_UPWARD and not top_level:
                continue
            problems.append(f"{where}: {layer} imports {target_layer} ({target})")
    return problems


def import_cycles(modules: Dict[str, Path]) -> List[List[str]]:
    """Circles among module-level imports (Tarjan's strongly connected components)."""
    graph = {m: sorted({t for t, _, top in imports_of(p, m, modules) if top and t in modules and t != m})
             for m, p in modules.items()}
    # A module's package __init__ runs first when the module is imported; an __init__ that re-exports
    # its own submodules is the usual package shape, not a circle.
    for m in graph:
        graph[m] = [t for t in graph[m] if not m.startswith(t + ".")]
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return cycles


def test_each_layer_imports_only_layers_below_it():
    assert layering_problems(ALL_MODULES) == []


def test_no_import_circle():
    assert import_cycles(ALL_MODULES) == []


def test_no_module_over_800_lines():
    # The library's modules and the Slicer module's own files (DicomAnnotEmbed.py, its DICOM plugin).
    files = list(ALL_MODULES.values()) + sorted((REPO / "DicomAnnotEmbed").glob("*.py"))
    long = {str(p.relative_to(REPO)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_only_api_cli_services_and_slicer_import_api():
    users = {layer_of(m) for m, p in ALL_MODULES.items()
             for t, _, _ in imports_of(p, m, ALL_MODULES) if layer_of(t) == "api" and layer_of(m) != "api"}
    assert users <= {"cli", "services", "slicer"}


def test_no_qt_anywhere_and_slicer_only_in_the_slicer_layer():
    """The library runs without Slicer's application: Qt and CTK belong to DicomAnnotEmbed.py (the
    module), MRML (``import slicer``, as the slicer-core wheel provides it) to the slicer layer only."""
    for module, path in ALL_MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and not n.level}
        assert not names & {"qt", "ctk", "PythonQt", "slicer.util"}, module
        if layer_of(module) != "slicer":
            assert "slicer" not in names, module


# The checks above must catch a bad import, or they prove nothing: build a small package with
# each kind of fault and see each one reported.
def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checks_catch_deliberate_bad_imports(tmp_path):
    root = tmp_path / PACKAGE
    for pkg in ("", "core", "dicom", "encodings", "encodings/seg", "encodings/sr", "files", "api"):
        _write(root, f"{pkg}/__init__.py" if pkg else "__init__.py", "")
    _write(root, "core/model.py", "from ..files import segio\n")                 # core imports files: upward
    _write(root, "encodings/seg/encode.py", "from ..sr import decode\n")         # encoding imports encoding
    _write(root, "encodings/sr/decode.py", "from ...core import model\n")        # allowed
    _write(root, "files/segio.py", "from ..api import conversions\n")            # files imports api
    _write(root, "api/conversions.py", "from ..files import segio\n")            # ... and api files: a circle
    _write(root, "dicom/values.py", "def f():\n    from ..encodings.seg import encode\n")  # lazy, still upward
    modules = all_modules(root)
    problems = "\n".join(layering_problems(modules, base=root))
    assert "core/model.py:1: core imports files" in problems
    assert "encodings/seg/encode.py:1: encoding seg imports encoding sr" in problems
    assert "files/segio.py:1: files imports api" in problems
    assert "dicom/values.py:2: dicom imports encodings" in problems
    assert "sr/decode.py" not in problems
    assert [f"{PACKAGE}.api.conversions", f"{PACKAGE}.files.segio"] in import_cycles(modules)
