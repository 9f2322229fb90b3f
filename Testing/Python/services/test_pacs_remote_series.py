"""``--series`` naming a series on a node instead of a folder, against a real Orthanc: over DIMSE
(``AET@HOST:PORT/STUDY/SERIES``, and a named node with a study only) and over DICOMweb (a
``.../studies/S/series/R`` URL). Every command's outputs equal those made from the local folder
(data set for data set, with the UIDs each run makes afresh and the dates and times set aside);
the retrieved series is removed afterwards; ambiguous or wrong references are refused with an
error naming the option."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import REPO
from orthanc_server import OUR_AET, free_port, orthanc
from pacs_cases import make_case

EXAMPLE = REPO / "Resources" / "Examples" / "annotations_example.csv"


def cli(*args, tmp: Path = None, env: dict = None):
    """Run the command line with TMPDIR=``tmp`` (to see that nothing is left there)."""
    environment = {**os.environ, "DICOMANNOTEMBED_CALLING_AET": OUR_AET, **(env or {})}
    if tmp is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        environment["TMPDIR"] = str(tmp)
    done = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=900, env=environment)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def series_uids(folder: Path) -> set:
    """Every UID in the reference series' files: these must come out the same; others are new."""
    found = set()
    for path in folder.rglob("*.dcm"):
        _walk(pydicom.dcmread(path), lambda value: found.add(value) or value)
    return found


def _walk(ds, on_uid, on_time=None):
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                _walk(item, on_uid, on_time)
        elif elem.VR == "UI" and elem.value:
            values = list(elem.value) if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
            new = [on_uid(str(v)) for v in values]
            elem.value = new if len(new) > 1 else new[0]
        elif elem.VR in ("DA", "TM", "DT") and on_time is not None:
            elem.value = ""


def normalized(paths, known: set) -> list:
    """The outputs' data sets with the UIDs this run made (in order of appearance) and every date
    and time replaced, sorted by their content: equal lists mean equal outputs."""
    result = []
    for path in sorted(map(Path, paths)):
        ds = pydicom.dcmread(path)
        made = {}

        def rename(value):
            if value in known or value.startswith("1.2.840.10008."):
                return value
            return made.setdefault(value, f"9.{len(made) + 1}")

        _walk(ds, rename, on_time=True)
        meta = ds.file_meta
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        result.append((str(meta.TransferSyntaxUID), ds))
    return sorted(result, key=lambda item: (str(item[1].get("Modality", "")), int(item[1].get("InstanceNumber", 0) or 0),
                                            len(item[1].get("PixelData", b"") or b"")))


def assert_same_outputs(local: Path, remote: Path, known: set) -> None:
    assert any(local.rglob("*.*"))
    assert sorted(p.relative_to(local) for p in local.rglob("*") if p.suffix != ".dcm") == \
        sorted(p.relative_to(remote) for p in remote.rglob("*") if p.suffix != ".dcm")
    local_files = sorted(p for p in local.rglob("*.dcm"))
    remote_files = sorted(p for p in remote.rglob("*.dcm"))
    assert len(local_files) == len(remote_files), (local_files, remote_files)
    for (ts_a, a), (ts_b, b) in zip(normalized(local_files, known), normalized(remote_files, known)):
        assert ts_a == ts_b
        assert a == b, [e.keyword for e in a if e.tag not in b or b[e.tag] != e][:10]
    for kind in ("*.json", "*.csv", "*.nrrd"):
        for path in local.rglob(kind):
            twin = remote / path.relative_to(local)
            assert twin.exists(), twin
            if path.suffix != ".nrrd":  # NRRD headers are checked through the data below
                assert _without_uids(path.read_text(), known) == _without_uids(twin.read_text(), known), path
    for path in local.rglob("*.seg.nrrd"):
        import SimpleITK as sitk

        twin = remote / path.relative_to(local)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(twin))))


def without_source(path: Path) -> list:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    return [{k: v for k, v in row.items() if k not in ("source", "sources")} for row in rows]


def sources(path: Path) -> list:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _without_uids(text: str, known: set) -> str:
    import re

    return re.sub(r"\b\d+(\.\d+){4,}\b", lambda m: m.group(0) if m.group(0) in known else "UID", text)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, sample_case):
    """An Orthanc holding the sample series (sent with our pacs send) and, in another study, a
    synthetic CT with two image series (for the 'several series' error)."""
    folder = tmp_path_factory.mktemp("remote-series")
    with orthanc(folder / "orthanc") as server:
        done = cli("pacs", "send", server.dimse_node, sample_case.series_dir)
        assert done.returncode == 0, done.stderr
        head = pydicom.dcmread(next(sample_case.series_dir.glob("*.dcm")), stop_before_pixels=True)
        yield server, str(head.StudyInstanceUID), str(head.SeriesInstanceUID), folder


def test_series_on_a_dimse_node(stored, sample_case, tmp_path):
    server, study, series, _ = stored
    known = series_uids(sample_case.series_dir)
    ref = f"{server.dimse_node}/{study}/{series}"
    tmp = tmp_path / "tmp"
    runs = {
        "seg": ["seg", "export", "--segmentation", sample_case.segmentation_path, "--out", "{out}/seg.dcm"],
        "rtstruct": ["rtstruct", "export", "--segmentation", sample_case.segmentation_path, "--markups",
                     sample_case.markups_path, "--out", "{out}/rt.dcm"],
        "overlay": ["overlay", "export", "--segmentation", sample_case.segmentation_path, "--markups",
                    sample_case.markups_path, "--out", "{out}/overlay"],
        "gsps": ["gsps", "export", "--markups", sample_case.markups_path, "--out", "{out}/pr.dcm"],
        "csv": ["csv", "import", EXAMPLE, "--formats", "seg,sr,rtstruct", "--out", "{out}"],
        "convert": ["convert", sample_case.segmentation_path, "--to", "sr", "--out", "{out}/sr.dcm"],
    }
    for name, args in runs.items():
        outputs = {}
        for where, series_arg in (("local", sample_case.series_dir), ("remote", ref)):
            out = tmp_path / name / where
            out.mkdir(parents=True)
            done = cli(*[str(a).replace("{out}", str(out)) for a in args], "--series", series_arg, tmp=tmp)
            assert done.returncode == 0, (name, where, done.stderr)
            outputs[where] = out
        assert_same_outputs(outputs["local"], outputs["remote"], known)
        assert not list(tmp.iterdir()), (name, list(tmp.iterdir()))  # the retrieved series is removed

    # Import commands: the SEG read back onto the series on the node.
    for where, series_arg in (("local", sample_case.series_dir), ("remote", ref)):
        out = tmp_path / "import" / where
        done = cli("seg", "import", tmp_path / "seg" / "local" / "seg.dcm", "--series", series_arg,
                   "--out", out / "segmentation.seg.nrrd", tmp=tmp)
        assert done.returncode == 0, done.stderr
    assert_same_outputs(tmp_path / "import" / "local", tmp_path / "import" / "remote", known)
    assert not list(tmp.iterdir())


def test_named_node_and_a_study_only(stored, sample_case, tmp_path):
    server, study, series, _ = stored
    known = series_uids(sample_case.series_dir)
    config = tmp_path / "nodes.json"
    config.write_text(json.dumps({"nodes": {"archive": {"dimse": server.dimse_node, "calling_aet": OUR_AET}}}))
    env = {"DICOMANNOTEMBED_NODES": str(config)}
    tmp = tmp_path / "tmp"
    for where, series_arg in (("local", sample_case.series_dir), ("remote", f"archive/{study}")):
        done = cli("seg", "export", "--series", series_arg, "--segmentation", sample_case.segmentation_path,
                   "--out", tmp_path / where / "seg.dcm", tmp=tmp, env=env)
        assert done.returncode == 0, done.stderr
    assert_same_outputs(tmp_path / "local", tmp_path / "remote", known)
    # export-ml takes a study on a node as one of its inputs: the whole study (series and SEG).
    done = cli("pacs", "send", "archive", tmp_path / "local" / "seg.dcm", env=env)
    assert done.returncode == 0, done.stderr
    try:
        # (a case is named after its file: the retrieved SEG is <SOPInstanceUID>.dcm, so is the local one here)
        named = tmp_path / "ml-in" / f"{pydicom.dcmread(tmp_path / 'local' / 'seg.dcm').SOPInstanceUID}.dcm"
        named.parent.mkdir()
        named.write_bytes((tmp_path / "local" / "seg.dcm").read_bytes())
        for where, inputs in (("local", [named, sample_case.series_dir]),
                              ("remote", [f"archive/{study}"])):
            done = cli("export-ml", *inputs, "--out", tmp_path / "ml" / where, tmp=tmp, env=env)
            assert done.returncode == 0, done.stderr
        import SimpleITK as sitk

        local = sorted((tmp_path / "ml" / "local").rglob("labels.nii.gz"))
        remote = sorted((tmp_path / "ml" / "remote").rglob("labels.nii.gz"))
        assert len(local) == len(remote) == 1
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(local[0]))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(remote[0]))))
        for table in ("measurements.csv", "cases.csv"):  # the same but for the source files' paths
            assert without_source(tmp_path / "ml" / "local" / table) == without_source(tmp_path / "ml" / "remote" / table)
        assert not list(tmp.iterdir())
        # The tables name the retrieved SEG on the archive, not by its temporary path (gone now):
        # NODE/STUDY/SERIES/SOP as given (a named node), or the DICOMweb URL of the instance.
        seg = pydicom.dcmread(tmp_path / "local" / "seg.dcm", stop_before_pixels=True)
        done = cli("export-ml", f"{server.web_node}/studies/{study}", "--out", tmp_path / "ml" / "web", tmp=tmp)
        assert done.returncode == 0, done.stderr
        for where, name in (("remote", f"archive/{study}/{seg.SeriesInstanceUID}/{seg.SOPInstanceUID}"),
                            ("web", f"{server.web_node}/studies/{study}/series/{seg.SeriesInstanceUID}"
                                    f"/instances/{seg.SOPInstanceUID}")):
            tables = [tmp_path / "ml" / where / t for t in ("measurements.csv", "cases.csv")]
            tables += list((tmp_path / "ml" / where).glob("*/labels.json"))  # the sidecar
            assert len(tables) == 3
            for path in tables:
                assert name in path.read_text() and str(tmp) not in path.read_text(), (path, name)
            assert {row["source"] for row in sources(tmp_path / "ml" / where / "cases.csv")} == {name}
        assert not list(tmp.iterdir())
    finally:  # the SEG must not stay on the module's archive for the other tests
        import urllib.request

        for orthanc_id in server.get_json("/instances"):
            if server.get_json(f"/instances/{orthanc_id}/simplified-tags").get("Modality") == "SEG":
                urllib.request.urlopen(urllib.request.Request(f"{server.rest}/instances/{orthanc_id}",
                                                              method="DELETE"), timeout=30).close()


def test_series_on_a_dicomweb_node(stored, sample_case, tmp_path):
    server, study, series, _ = stored
    known = series_uids(sample_case.series_dir)
    ref = f"{server.web_node}/studies/{study}/series/{series}"
    tmp = tmp_path / "tmp"
    for where, series_arg in (("local", sample_case.series_dir), ("remote", ref)):
        out = tmp_path / where
        done = cli("seg", "export", "--series", series_arg, "--segmentation", sample_case.segmentation_path,
                   "--out", out / "seg.dcm", tmp=tmp)
        assert done.returncode == 0, done.stderr
        done = cli("sr", "export", "--series", series_arg, "--seg", tmp_path / "local" / "seg.dcm",
                   "--markups", sample_case.markups_path, "--out", out / "sr" / "sr.dcm", tmp=tmp)
        assert done.returncode == 0, done.stderr
        done = cli("csv", "import", EXAMPLE, "--series", series_arg, "--out", out / "csv", tmp=tmp)
        assert done.returncode == 0, done.stderr
    assert_same_outputs(tmp_path / "local", tmp_path / "remote", known)
    assert not list(tmp.iterdir())


def test_wrong_and_ambiguous_references(stored, sample_case, tmp_path, monkeypatch):
    server, study, series, folder = stored
    seg = ["--segmentation", sample_case.segmentation_path, "--out", tmp_path / "o" / "seg.dcm"]
    # A folder that has the same name as a reference: refused, naming the option (exit 2).
    monkeypatch.chdir(tmp_path)
    ambiguous = Path(f"{server.dimse_node}/{study}/{series}")
    ambiguous.mkdir(parents=True)
    done = cli("seg", "export", "--series", str(ambiguous), *seg)
    assert done.returncode == 2 and "--series" in done.stderr and "ambiguous" in done.stderr
    assert f"./{ambiguous}" in done.stderr
    # ./ makes it the folder (empty here: a bad input, 3).
    assert cli("seg", "export", "--series", f"./{ambiguous}", *seg).returncode == 3
    # A DICOMweb URL that is not a series.
    done = cli("seg", "export", "--series", f"{server.web_node}/studies", *seg)
    assert done.returncode == 2 and "--series" in done.stderr and "studies/STUDY_UID" in done.stderr
    # No such series on the node: bad input (3), naming it.
    done = cli("seg", "export", "--series", f"{server.dimse_node}/{study}/1.2.3.4", *seg)
    assert done.returncode == 3 and "holds no series 1.2.3.4" in done.stderr
    # Nobody there: network (5).
    done = cli("seg", "export", "--series", f"NOBODY@127.0.0.1:{free_port()}/{study}/{series}", *seg)
    assert done.returncode == 5 and "cannot reach" in done.stderr
    assert not (tmp_path / "o" / "seg.dcm").exists()


def test_a_study_with_several_image_series_is_listed(tmp_path):
    case = make_case(tmp_path / "a", slices=4, size=16, seed=8, results=False)
    other = make_case(tmp_path / "b", slices=4, size=16, seed=9, results=False)
    # The second series joins the first one's study.
    for path in other.series_dir.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = case.study_uid
        ds.save_as(path)
    with orthanc(tmp_path / "orthanc", require_dicomweb=False) as server:
        assert cli("pacs", "send", server.dimse_node, case.series_dir, other.series_dir).returncode == 0
        done = cli("convert", tmp_path / "none.seg.nrrd", "--to", "seg", "--series",
                   f"{server.dimse_node}/{case.study_uid}", "--out", tmp_path / "o.dcm")
        assert done.returncode == 3
        assert "holds 2 image series; name one" in done.stderr
        assert case.series_uid in done.stderr and other.series_uid in done.stderr


def test_batch_manifest_series_on_a_node(stored, sample_case, tmp_path):
    """The batch manifest's series column may name a series on a node: the case retrieves it on
    its worker; its outputs equal those of the same case with the local folder."""
    server, study, series, _ = stored
    known = series_uids(sample_case.series_dir)
    manifest = tmp_path / "manifest.csv"
    annotations = f"{sample_case.segmentation_path};{sample_case.markups_path}"
    manifest.write_text("id,series,annotations,outputs,options\n"
                        f"local,{sample_case.series_dir},{annotations},seg;rtstruct,\n"
                        f"remote,{server.dimse_node}/{study}/{series},{annotations},seg;rtstruct,\n"
                        f"web,{server.web_node}/studies/{study}/series/{series},{annotations},seg;rtstruct,\n")
    done = cli("batch", manifest, "--out", tmp_path / "out", "--workers", "1", "--no-dashboard", tmp=tmp_path / "tmp")
    assert done.returncode == 0, done.stdout + done.stderr
    local = sorted((tmp_path / "out" / "local").rglob("*.dcm"))
    assert len(local) == 2
    for case in ("remote", "web"):
        remote = sorted((tmp_path / "out" / case).rglob("*.dcm"))
        assert [p.name for p in remote] == [p.name for p in local]
        for (ts_a, a), (ts_b, b) in zip(normalized(local, known), normalized(remote, known)):
            assert ts_a == ts_b and a == b
    # A rerun knows the cases by their references: nothing to do.
    done = cli("batch", manifest, "--out", tmp_path / "out", "--workers", "1", "--no-dashboard", tmp=tmp_path / "tmp")
    assert done.returncode == 0, done.stderr
    import re

    assert re.search(r"done before \(skipped\) +3\n", done.stdout), done.stdout
    assert not list((tmp_path / "tmp").rglob("dae-remote-*"))  # the retrieved series are removed


def test_a_killed_retrieval_leaves_nothing_behind_for_long(stored, sample_case, tmp_path):
    """A command killed (SIGKILL) while it holds a retrieved series leaves its temporary folder
    ``dae-remote-<pid>-...``; the next retrieval removes it (its process is gone), not the folder
    of a process that still runs."""
    import signal
    import time

    server, study, series, _ = stored
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    environment = {**os.environ, "DICOMANNOTEMBED_CALLING_AET": OUR_AET, "TMPDIR": str(tmp)}
    args = ["seg", "export", "--series", f"{server.dimse_node}/{study}/{series}", "--segmentation",
            sample_case.segmentation_path]
    process = subprocess.Popen([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, args), "--out",
                                tmp_path / "killed.dcm"], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(tmp.glob(f"dae-remote-{process.pid}-*/**/*.dcm")):  # retrieving (or done retrieving)
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    left = list(tmp.glob(f"dae-remote-{process.pid}-*"))
    assert len(left) == 1 and any(left[0].rglob("*.dcm"))
    alive = tmp / f"dae-remote-{os.getpid()}-running"  # this process runs: its folder stays
    alive.mkdir()
    done = cli(*args, "--out", tmp_path / "seg.dcm", tmp=tmp)
    assert done.returncode == 0, done.stderr
    assert sorted(tmp.iterdir()) == [alive]
    assert not (tmp_path / "killed.dcm").exists()
