"""Release 0.1's flat module names keep working for one release after the layout change, as the
very same module objects, with a DeprecationWarning that names the new home."""
import importlib
import subprocess
import sys

import pytest

from DicomAnnotEmbedLib import MOVED_MODULES


@pytest.mark.parametrize("old, new", sorted(MOVED_MODULES.items()))
def test_old_module_names_are_the_new_modules(old, new):
    # A fresh interpreter, so that the warning is raised by the first import.
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    import DicomAnnotEmbedLib.{old}\nexcept DeprecationWarning as w:\n    print(w)\n")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"DicomAnnotEmbedLib.{old} moved to DicomAnnotEmbedLib.{new}" in printed
    with pytest.warns(DeprecationWarning) if f"DicomAnnotEmbedLib.{old}" not in sys.modules else _nothing():
        moved = importlib.import_module(f"DicomAnnotEmbedLib.{old}")
    assert moved is importlib.import_module(f"DicomAnnotEmbedLib.{new}")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_readme_style_imports_still_work():
    from DicomAnnotEmbedLib.module_logic import export_nodes  # warned once per process, tested above
    from DicomAnnotEmbedLib.slicer.logic import export_nodes as new
    assert export_nodes is new
