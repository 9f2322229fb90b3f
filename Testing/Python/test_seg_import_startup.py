"""``seg import`` loads only what it uses: not the SEG export side, the markups writer, SimpleITK,
highdicom, scipy or numpy.ma (Testing/benchmarks/bench_startup.py notes); and what it leaves out
stays importable (``encodings.seg.export_seg`` is imported when first used)."""
import subprocess
import sys

from conftest import interop


def test_seg_import_leaves_out_what_it_does_not_use(tmp_path):
    out = tmp_path / "labels.seg.nrrd"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "DicomAnnotEmbedLib.cli", "-q", "seg", "import",
                           str(interop("dcmqi", "sparse-labelmap-ppv5.dcm")), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert out.is_file() and "DicomAnnotEmbedLib.encodings.seg.decode" in modules
    for unused in ("DicomAnnotEmbedLib.encodings.seg.encode", "DicomAnnotEmbedLib.files.markups_io", "SimpleITK",
                   "highdicom", "scipy", "numpy.ma"):
        assert unused not in modules, unused


def test_export_seg_is_still_there():
    code = ("import DicomAnnotEmbedLib.encodings.seg as seg\n"
            "from DicomAnnotEmbedLib.encodings.seg import export_seg\n"
            "from DicomAnnotEmbedLib.encodings.seg.encode import export_seg as direct\n"
            "assert export_seg is direct is seg.export_seg and set(seg.__all__) <= set(dir(seg))\n"
            "assert not hasattr(seg, 'no_such_name')\n")
    subprocess.run([sys.executable, "-c", code], check=True)
