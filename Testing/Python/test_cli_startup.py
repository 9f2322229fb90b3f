"""Command start-up: parsing the command line imports no heavy module, and pydicom's optional
downloader packages are left out of a command's process without becoming unimportable."""
import subprocess
import sys


def _imported(code: str) -> set:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}


def test_parsing_imports_nothing_heavy():
    code = ("from DicomAnnotEmbedLib.cli import build_parser\n"
            "build_parser().parse_args(['seg', 'export', '--series', 's', '--segmentation', 'x', '--out', 'o'])")
    modules = _imported(code)
    for heavy in ("pydicom", "highdicom", "SimpleITK", "vtk", "scipy", "DicomAnnotEmbedLib.encodings.rtstruct.decode",
                  "DicomAnnotEmbedLib.api.conversions"):
        assert heavy not in modules, heavy


def test_api_reexports_lazily():
    modules = _imported("from DicomAnnotEmbedLib import api\napi.export_seg\n")
    assert "DicomAnnotEmbedLib.encodings.rtstruct" not in modules
    assert "DicomAnnotEmbedLib.api.gsps" not in modules
    code = ("from DicomAnnotEmbedLib import api\nimport DicomAnnotEmbedLib.api.convert\n"
            "from DicomAnnotEmbedLib.api import import_rtstruct, export_gsps, run_batch\n"
            "assert callable(api.convert) and callable(api.export_seg) and callable(api.import_rtstruct)\n"
            "assert set(api.__all__) <= set(dir(api))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pydicom_without_its_optional_downloader_packages():
    code = ("import sys\nfrom DicomAnnotEmbedLib import cli\ncli._import_pydicom()\n"
            "assert 'requests' not in sys.modules and 'tqdm' not in sys.modules\n"
            "import pydicom, requests, tqdm\nfrom tqdm import tqdm as bar\n"
            "import pydicom.data.download as d\nassert not d.HAVE_REQUESTS\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seg_export_of_a_ct_series_does_not_load_highdicom(sample_case, tmp_path):
    """The fast SEG writer builds the header itself for single-frame CT (encodings/seg/template.py):
    highdicom's import and its table of the standard's modules (~0.5 s of CPU) are not paid."""
    code = ("import sys\nfrom DicomAnnotEmbedLib.cli import main\n"
            f"assert main(['-q', 'seg', 'export', '--series', {str(sample_case.series_dir)!r}, '--segmentation', "
            f"{str(sample_case.segmentation_path)!r}, '--out', {str(tmp_path / 's.dcm')!r}]) == 0\n"
            "assert 'highdicom' not in sys.modules, 'highdicom was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "s.dcm").stat().st_size > 0
