"""What a command's process does besides its work, kept small (issue 14, ``seg import`` against
dcmqi; Testing/benchmarks/bench_startup.py notes, 2026-12-05):

* only the command group named on the command line is registered (``--help`` and unknown
  commands still see every group);
* OpenBLAS is asked for one thread before numpy loads, unless the user chose a number;
* ``seg import`` of a native or JPEG-LS SEG imports pydicom without its pixel codec packages
  (PIL, pylibjpeg and its codecs), which stay importable; a SEG in another syntax keeps them,
  and its frames are still decoded through pydicom's plugins;
* the process's objects are frozen (gc.freeze) when ``main`` ran the process's own command line,
  not when a caller passed ``argv``.
"""
import argparse
import subprocess
import sys

import pydicom
import pytest

from DicomAnnotEmbedLib.cli import COMMAND_GROUPS, GROUPS, build_parser
from DicomAnnotEmbedLib.cli.seg import OWN_DECODED_SYNTAXES
from DicomAnnotEmbedLib.core.header_blocks import file_transfer_syntax
from DicomAnnotEmbedLib.encodings.seg.read_pixels import JPEGLSLossless

PIXEL_CODECS = ("PIL", "pylibjpeg", "openjpeg", "rle")


def _commands(parser: argparse.ArgumentParser) -> dict:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _run(code: str, *argv: str, env=None) -> str:
    """Run ``code`` in a fresh interpreter (argv after it); the last line it printed (a help text
    may come before)."""
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _export(sample_case, out, *options) -> None:
    """A LABELMAP SEG of the sample's first layer (its segments overlap) written to ``out``."""
    from DicomAnnotEmbedLib.core.model import Segmentation
    from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd

    labels = out.with_name(out.stem + "-layer0.seg.nrrd")
    if not labels.exists():
        whole = load_segmentation(sample_case.segmentation_path)
        write_seg_nrrd(labels, Segmentation(whole.geometry, whole.layers[:1],
                                            [s for s in whole.segments if s.layer == 0]))
    code = "import sys\nfrom DicomAnnotEmbedLib.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    _run(code, "-q", "seg", "export", "--series", str(sample_case.series_dir), "--segmentation", str(labels),
         "--type", "labelmap", "--out", str(out), *options)


#: Runs ``seg import`` as the console script does (main() reads sys.argv) and prints, after it,
#: which pixel codec packages were imported, whether they can be, and the frozen object count.
IMPORT_AND_REPORT = """
import atexit, gc, importlib, json, sys
from DicomAnnotEmbedLib.cli import main

def report():
    loaded = {name: name in sys.modules for name in %r}
    importable = {}
    for name in loaded:
        try:
            importlib.import_module(name)
            importable[name] = True
        except ImportError:
            importable[name] = False
    print(json.dumps({"loaded": loaded, "importable": importable, "frozen": gc.get_freeze_count()}))

atexit.register(report)
sys.exit(main())
""" % (PIXEL_CODECS,)


def _import_report(seg, out) -> dict:
    import json

    return json.loads(_run(IMPORT_AND_REPORT, "-q", "seg", "import", str(seg), "--out", str(out), "--force"))


def test_command_groups_name_every_registered_command():
    assert set(COMMAND_GROUPS.values()) == set(GROUPS)
    assert list(_commands(build_parser())) == list(COMMAND_GROUPS)


def test_a_named_command_registers_only_its_group():
    words = ["-q", "seg", "import", "a.dcm", "--series", "s", "--out", "o.seg.nrrd"]
    parser = build_parser(words)
    assert list(_commands(parser)) == ["seg"]
    assert vars(parser.parse_args(words)).keys() == vars(build_parser().parse_args(words)).keys()
    assert parser.parse_args(words).seg_file == ["a.dcm"]
    assert list(_commands(build_parser(["sample", "--out", "x"]))) == ["dicomize", "sample"]  # volumes
    assert list(_commands(build_parser(["export-ml", "x"]))) == ["export-ml"]
    for words in ([], ["--help"], ["-q"], ["no-such-command"]):  # help and errors list every command
        assert list(_commands(build_parser(words))) == list(COMMAND_GROUPS)


def test_seg_import_process_leaves_out_other_groups():
    code = ("import sys\nfrom DicomAnnotEmbedLib.cli import main\n"
            "try:\n    main(['seg', 'import', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('DicomAnnotEmbedLib.cli.')))\n")
    assert _run(code) == "['DicomAnnotEmbedLib.cli._common', 'DicomAnnotEmbedLib.cli.seg']"


@pytest.mark.parametrize("preset, numpy_first, expected", [
    (None, False, "1"), ("3", False, "3"), (None, True, None)])
def test_openblas_asked_for_one_thread(preset, numpy_first, expected):
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = (("import numpy\n" if numpy_first else "")
            + "import os, sys\nfrom DicomAnnotEmbedLib.cli import main\n"
              f"assert ('numpy' in sys.modules) is {numpy_first}  # importing the command line loads no numpy\n"
              "try:\n    main(['seg', 'import', '--help'])\nexcept SystemExit:\n    pass\n"
              "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    assert _run(code, env=env) == str(expected)


def test_file_transfer_syntax(tmp_path, sample_case):
    seg = tmp_path / "labelmap.dcm"
    _export(sample_case, seg)
    paths = [seg] + sorted(p for p in sample_case.series_dir.iterdir() if p.is_file())[:2]
    for path in paths:
        assert file_transfer_syntax(path) == pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    data = seg.read_bytes()
    for name, content in (("empty", b""), ("text", b"not DICOM at all" * 20), ("no-preamble", data[128:]),
                          ("cut-in-meta", data[:140]), ("no-meta", data[:132] + b"\x08\x00\x16\x00UI\x04\x001.2\x00")):
        path = tmp_path / name
        path.write_bytes(content)
        assert file_transfer_syntax(path) is None, name
    assert file_transfer_syntax(tmp_path / "absent.dcm") is None
    assert file_transfer_syntax(tmp_path) is None  # a folder


def test_own_decoded_syntaxes_are_native_or_jpeg_ls_lossless():
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                             ImplicitVRLittleEndian)

    assert OWN_DECODED_SYNTAXES == {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                                    ExplicitVRBigEndian, JPEGLSLossless}
    compressed = {uid for uid in OWN_DECODED_SYNTAXES if pydicom.uid.UID(uid).is_compressed}
    assert compressed == {JPEGLSLossless}


def test_seg_import_reads_colours_without_the_dcmqi_metadata_module(tmp_path, sample_case):
    """The CIELab colours come from dicom.colors; the dcmqi JSON module (6 ms to compile and run)
    is not loaded by an import that writes no JSON."""
    seg = tmp_path / "labelmap.dcm"
    _export(sample_case, seg)
    code = ("import sys\nfrom DicomAnnotEmbedLib.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('DicomAnnotEmbedLib.dicom.colors', 'DicomAnnotEmbedLib.dicom.dcmqi_metadata')"
            " if m in sys.modules))\n")
    loaded = _run(code, "-q", "seg", "import", str(seg), "--out", str(tmp_path / "labels.seg.nrrd"), "--force")
    assert loaded == "['DicomAnnotEmbedLib.dicom.colors']"


def test_seg_import_of_jpeg_ls_leaves_pixel_codecs_out(tmp_path, sample_case):
    seg = tmp_path / "labelmap.dcm"
    _export(sample_case, seg)  # JPEG-LS, the default
    report = _import_report(seg, tmp_path / "labels.seg.nrrd")
    assert not any(report["loaded"].values()), report
    assert all(report["importable"][name] for name in ("PIL", "pylibjpeg")), report  # still there
    assert report["frozen"] > 0
    assert (tmp_path / "labels.seg.nrrd").stat().st_size > 0


@pytest.mark.parametrize("compression", ["jpeg2000", "rle"])
def test_seg_import_of_other_syntaxes_keeps_pydicom_plugins(tmp_path, sample_case, compression):
    from DicomAnnotEmbedLib.files.segio import load_segmentation

    seg = tmp_path / f"{compression}.dcm"
    _export(sample_case, seg, "--compress", compression)
    reference = tmp_path / "reference.dcm"
    _export(sample_case, reference, "--compress", "none")
    report = _import_report(seg, tmp_path / "labels.seg.nrrd")
    assert report["loaded"]["PIL"] and report["loaded"]["pylibjpeg"], report  # pydicom's plugins looked
    _import_report(reference, tmp_path / "reference.seg.nrrd")
    got, expected = (load_segmentation(tmp_path / name) for name in ("labels.seg.nrrd", "reference.seg.nrrd"))
    assert (got.layers == expected.layers).all() and got.layers.any()


def test_main_with_argv_does_not_freeze(tmp_path):
    code = ("import gc\nfrom DicomAnnotEmbedLib.cli import main\n"
            "try:\n    main(['seg', 'import', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(gc.get_freeze_count())\n")
    assert _run(code) == "0"
