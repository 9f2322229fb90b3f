"""Fuzz targets beyond the file readers: the command line, batch manifests, PACS node strings and
node config files, and ``convert``.

* ``cli``: a mutated command line (argv) run in process through ``cli.main`` (with ``--debug``, so
  that an unexpected exception reaches the fuzzer with its traceback). A clean result is a return
  code 0, 3, 4 or 5, or argparse's SystemExit 0 (help) or 2 (usage); an error (3-5) must print
  exactly one ``error:`` line that names a file, node or option, and never a traceback.
* ``batch_manifest``: a mutated manifest through ``read_manifest`` and ``plan`` (what ``batch``
  does before it schedules anything), then the first case run in process (``steps.run_case``).
* ``pacs_nodes`` / ``pacs_node_text``: node config files and node strings / remote series
  references parsed (``parse_node``, ``load_config``, ``remote.parse_series_ref``).
* ``convert_*``: ``api.convert`` of a mutated input to a target chosen from the input's bytes.

No network and no Dask cluster: :func:`install_boundaries` makes the PACS operations, the remote
series retrieval and the batch's cluster start raise :class:`Reached` once everything before them
(parsing, checks) passed, and refuses socket connections in the worker as a safety net.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import zlib
from pathlib import Path

#: name -> command line; {placeholders} are corpus files (see substitute) and {out}, the case's
#: output folder. Cheap commands mostly: a case runs the whole command when the mutation leaves it valid.
COMMAND_LINES = {
    "overlay_export": ["overlay", "export", "--series", "{series}", "--segmentation", "{segnrrd}", "--markups",
                       "{mrk}", "--out", "{out}/overlay"],
    "overlay_export_preview": ["overlay", "export", "--series", "{series}", "--markups", "{mrk}", "--out",
                               "{out}/overlay", "--preview", "{out}/png", "--preview-slices", "1,2"],
    "overlay_import": ["overlay", "import", "--series", "{overlay}", "--out", "{out}/o.seg.nrrd", "--markups-out",
                       "{out}/o.mrk.json"],
    "seg_export": ["seg", "export", "--series", "{series}", "--segmentation", "{segnrrd}", "--out", "{out}/seg.dcm",
                   "--type", "labelmap"],
    "seg_import": ["seg", "import", "{seg}", "--series", "{series}", "--out", "{out}/s.seg.nrrd"],
    "sr_import": ["sr", "import", "{sr}", "--seg-dir", "{srdir}", "--out", "{out}/sr"],
    "sr_export": ["sr", "export", "--series", "{series}", "--seg", "{seg}", "--markups", "{mrk}", "--out",
                  "{out}/sr.dcm"],
    "rtstruct_export": ["rtstruct", "export", "--series", "{series}", "--segmentation", "{segnrrd}", "--markups",
                        "{mrk}", "--out", "{out}/rt.dcm"],
    "rtstruct_import": ["rtstruct", "import", "{rt}", "--series", "{series}", "--out", "{out}/rt.seg.nrrd",
                        "--markups-out", "{out}/rt.mrk.json"],
    "gsps_export": ["gsps", "export", "--series", "{series}", "--markups", "{mrk}", "--out", "{out}/pr.dcm"],
    "gsps_import": ["gsps", "import", "{pr}", "--series", "{series}", "--markups-out", "{out}/pr.mrk.json"],
    "convert_seg": ["convert", "{seg}", "--to", "seg-nrrd", "--out", "{out}/c.seg.nrrd"],
    "convert_rtstruct": ["convert", "{segnrrd}", "{mrk}", "--to", "rtstruct", "--series", "{series}", "--out",
                         "{out}/c.dcm"],
    "convert_nifti": ["convert", "{rt}", "--to", "nifti", "--series", "{series}", "--out", "{out}/c.nii.gz"],
    "dicomize": ["dicomize", "{volume}", "--out", "{out}/dcm", "--modality", "CT"],
    "sample": ["sample", "{out}/sample"],
    "csv_import": ["csv", "import", "{table}", "--series", "{series}", "--out", "{out}/csv", "--formats", "seg"],
    "export_ml": ["export-ml", "{seg}", "{series}", "--out", "{out}/ml"],
    "batch": ["batch", "{manifest}", "--out", "{out}/batch", "--workers", "1", "--memory-limit", "1GiB"],
    "pacs_echo": ["pacs", "echo", "ORTHANC@127.0.0.1:4242", "--timeout", "1"],
    "pacs_find": ["pacs", "find", "pacs", "--nodes", "{nodes}", "--level", "study", "--modality", "CT"],
    "pacs_get": ["pacs", "get", "cloud", "--nodes", "{nodes}", "--study", "1.2.3", "--out", "{out}/get", "--via",
                 "move", "--move-port", "11113"],
    "pacs_send": ["pacs", "send", "http://127.0.0.1:8042/dicom-web", "{seg}", "--retries", "0"],
    "remote_series": ["seg", "export", "--series", "ORTHANC@127.0.0.1:4242/1.2.3/1.2.4", "--segmentation",
                      "{segnrrd}", "--out", "{out}/seg.dcm"],
    "send_option": ["seg", "export", "--series", "{series}", "--segmentation", "{segnrrd}", "--out", "{out}/seg.dcm",
                    "--send", "pacs", "--send-nodes", "{nodes}"],
}

NODE_CONFIG = {"nodes": {
    "pacs": {"dimse": "ORTHANC@127.0.0.1:4242", "calling_aet": "DAE", "timeout": 30},
    "secure": {"dimse": "ORTHANC@pacs.example.org:2762", "tls": True, "ca_file": "/etc/pacs/ca.pem",
               "cert_file": "/etc/pacs/me.pem", "key_file": "/etc/pacs/me.key"},
    "cloud": {"url": "https://dicom.example.org/dicom-web", "auth": "bearer", "token_env": "CLOUD_TOKEN"},
    "web": {"url": "http://127.0.0.1:8042/dicom-web", "auth": "basic", "user_env": "U", "password_env": "P",
            "timeout": 5}}}
NODE_TEXT = """ORTHANC@127.0.0.1:4242
A@[::1]:104
pacs
cloud
https://dicom.example.org/dicom-web
127.0.0.1:8042/dicom-web
ORTHANC@127.0.0.1:4242/1.2.3/1.2.4
pacs/1.2.840.1/1.2.840.2
https://dicom.example.org/dicom-web/studies/1.2.3/series/4.5.6
http://127.0.0.1:8042/dicom-web/studies/1.2.3
"""


class Reached(Exception):
    """A command got to the network or to scheduling: everything before (parsing, checks) passed."""


def command_seeds(folder: Path, data: dict) -> list:
    """Write the seeds of these targets into the corpus folder; returns their entries."""
    import csv

    folder = Path(folder)
    seeds = []
    argv_dir = folder / "argv"
    argv_dir.mkdir(exist_ok=True)
    for name, words in COMMAND_LINES.items():
        (argv_dir / f"{name}.json").write_text(json.dumps(words))
        seeds.append(dict(kind="argv", path=str(argv_dir / f"{name}.json")))
    files = _files(data)
    rows = [("c1", files["series"], f"{files['segnrrd']};{files['mrk']}", "seg", ""),
            ("c2", files["series"], files["seg"], "rtstruct;ml", '{"seg": {}}'),
            ("c3", files["series"], f"markups={files['mrk']}", "overlay", '{"overlay": {"fill_markups": true}}')]
    with open(folder / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([("id", "series", "annotations", "outputs", "options")] + rows)
    with open(folder / "manifest.jsonl", "w") as f:
        for case, series, annotations, outputs, options in rows:
            f.write(json.dumps({"id": case, "series": series, "annotations": annotations.split(";"),
                                "outputs": outputs.split(";"), "options": json.loads(options or "{}")}) + "\n")
    seeds += [dict(kind="manifest_csv", path=str(folder / "manifest.csv")),
              dict(kind="manifest_jsonl", path=str(folder / "manifest.jsonl"))]
    (folder / "nodes.json").write_text(json.dumps(NODE_CONFIG, indent=1))
    (folder / "nodes.txt").write_text(NODE_TEXT)
    seeds += [dict(kind="nodes", path=str(folder / "nodes.json")), dict(kind="nodetext", path=str(folder / "nodes.txt"))]
    volume = folder / "volume.nii.gz"
    if not volume.exists():
        import SimpleITK as sitk
        from DicomAnnotEmbedLib.core.series import load_series

        series = load_series(data["sample_series"])
        image = series.geometry.to_sitk_image(series.read_volume()[:8, :64, :64].copy())
        sitk.WriteImage(image, str(volume))
    seeds.append(dict(kind="volume", path=str(volume)))
    return seeds


def _files(corpus: dict) -> dict:
    """{placeholder name: path} of the corpus files the command lines use."""
    folder = Path(corpus["sample_series"]).parents[1]
    return dict(series=corpus["sample_series"], overlay=str(folder / "overlay"),
                segnrrd=str(Path(corpus["sample_series"]).parent / "segmentation.seg.nrrd"),
                mrk=str(Path(corpus["sample_series"]).parent / "markups.mrk.json"), seg=corpus["sample_seg"],
                seg_labelmap=str(folder / "seg_labelmap_layer1.dcm"), sr=str(folder / "sr" / "sr.dcm"),
                srdir=corpus["sr_folder"], rt=str(folder / "rt.dcm"), pr=str(folder / "pr.dcm"),
                table=str(Path(__file__).resolve().parents[2] / "Resources" / "Examples" / "annotations_example.csv"),
                evaluations=str(folder / "csv" / "evaluations.csv"), meta=str(folder / "meta.json"),
                volume=str(folder / "volume.nii.gz"), manifest=str(folder / "manifest.csv"),
                nodes=str(folder / "nodes.json"), nodetext=str(folder / "nodes.txt"))


# ------------------------------------------------------------------ boundaries
def install_boundaries() -> None:
    """In a worker: PACS operations, remote series and the batch cluster raise Reached; sockets
    refuse to connect (no case may reach a network, not even by mistake)."""
    from DicomAnnotEmbedLib.services import pacs
    from DicomAnnotEmbedLib.services.batch import runner
    from DicomAnnotEmbedLib.services.pacs import remote

    def reached(what):
        def stop(*args, **kwargs):
            raise Reached(what)
        return stop

    for name in ("echo", "find", "get", "send"):
        setattr(pacs, name, reached(f"pacs.{name}"))
    remote.fetched_inputs = reached("remote series retrieval")
    remote.fetched_series = reached("remote series retrieval")
    runner._cluster = reached("the batch's Dask cluster")

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError(111, "the fuzzer allows no network")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse


# ------------------------------------------------------------------ targets
def substitute(words: list, corpus: dict, out: Path) -> list:
    """The words with {placeholders} replaced: {out} by ``out``, a corpus file by a hard-linked copy
    of it (folders: of their files) beside ``out``, so that a mutated command line that writes over
    its input (``--out {seg} --force``) replaces the copy, never the corpus."""
    files = _files(corpus)
    copies = {"out": str(out)}

    def copy(match):
        name = match.group(1)
        if name not in copies and name in files:
            source, target = Path(files[name]), out.parent / "files" / name / Path(files[name]).name
            for f in (sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]):
                dest = target / f.relative_to(source) if source.is_dir() else target
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dest)
            copies[name] = str(target)
        return copies.get(name, match.group(0))

    return [re.sub(r"\{(\w+)\}", copy, w) for w in words]


def _argv(path: Path) -> list:
    raw = path.read_bytes()
    try:
        words = json.loads(raw)
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            return words
    except ValueError:
        pass
    return raw.decode("utf-8", "replace").replace("\0", "").split()  # a byte-mutated list: its words


def run_cli(path: Path, out: Path, ctx) -> None:
    from DicomAnnotEmbedLib.cli import main
    from readers import Outcome

    argv = substitute(_argv(path), ctx.corpus, out)
    stderr = io.StringIO()
    code = None
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--debug", "-q"] + argv)
    except SystemExit as exc:  # argparse: --help, --version (0); a usage error (2)
        code = exc.code
        if code not in (0, 2):
            raise Outcome("crash", f"SystemExit {code!r}: {stderr.getvalue()[-300:]}", f"SystemExit {code!r}")
        if code == 2:
            raise Outcome("error", stderr.getvalue()[-400:])
        return
    except Reached:
        return
    text = stderr.getvalue()
    if "Traceback" in text:
        raise Outcome("crash", text[-400:], "traceback printed")
    if code == 0:
        return
    if code not in (3, 4, 5):
        raise Outcome("crash", f"exit {code!r}: {text[-300:]}", f"exit {code!r}")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if len(errors) != 1:
        raise Outcome("unnamed", f"{len(errors)} error lines: {text[-300:]}")
    message = errors[0]
    values = [w.split("=", 1)[1] if w.startswith("--") and "=" in w else w for w in argv]  # --opt=VALUE
    words = [w if w.strip() else repr(w) for w in values if not w.startswith("--")]  # a blank path: quoted
    words += [str(Path(w)) for w in values]  # as messages show paths ("./a" is "a", "" is ".")
    named = (any(message.startswith(f"error: {w}:") or (len(w) > 2 and w in message) or repr(w) in message
                 for w in words)  # a node is named quoted: node '-3
             or re.search(r"--[a-z]", message) or str(out) in message
             or re.search(r"\bnode '[^']*'", message))  # a node named as it was given, even blank: node ''
    raise Outcome("error" if named else "unnamed", message)


def run_manifest(path: Path, out: Path, ctx) -> None:
    """What ``batch`` does before scheduling (read the manifest, plan against the ledger), then the
    first case to run, in process (``steps.run_case``: it records a case's errors)."""
    from DicomAnnotEmbedLib.services.batch.ledger import Ledger
    from DicomAnnotEmbedLib.services.batch.manifest import read_manifest
    from DicomAnnotEmbedLib.services.batch.runner import plan
    from DicomAnnotEmbedLib.services.batch.steps import INPUT_KINDS, OUTPUTS, run_case
    from readers import Outcome

    cases = read_manifest(path, tuple(OUTPUTS), tuple(INPUT_KINDS))
    to_run, _ = plan(cases, out, Ledger(out), False)
    if to_run:
        case, fp = to_run[0]
        record = run_case(case.to_dict(), str(out), fp)
        error = record.get("error") or ""
        if error.startswith("internal error"):
            raise Outcome("crash", error[:400], "run_case: " + error.split(":")[1].strip()[:60])


def run_nodes(path: Path, out: Path, ctx) -> None:
    """A node config file: every node it names, and a remote series on each."""
    from DicomAnnotEmbedLib.services.pacs.nodes import load_config, parse_node
    from DicomAnnotEmbedLib.services.pacs.remote import parse_series_ref

    nodes = load_config(path)
    for name in list(nodes)[:8]:
        parse_node(name, config=path)
        parse_series_ref(f"{name}/1.2.3/4.5.6", config=path)
        parse_node(name, config=path, tls_ca=str(path), timeout=5)


def run_node_text(path: Path, out: Path, ctx) -> None:
    """Node strings and remote series references, one a line (the corpus's node config); an error
    must name the text or the config file."""
    from DicomAnnotEmbedLib.core.errors import DicomAnnotEmbedError
    from DicomAnnotEmbedLib.services.pacs import parse_node
    from DicomAnnotEmbedLib.services.pacs.remote import parse_series_ref
    from readers import Outcome

    config = _files(ctx.corpus)["nodes"]
    first = None
    for line in path.read_text(errors="replace").splitlines()[:16]:
        for call in (parse_node, parse_series_ref):
            try:
                call(line, config=config)
            except DicomAnnotEmbedError as exc:
                message = str(exc)
                shown = repr(line.strip())[1:-1]  # messages show the node as repr() does
                if not (exc.path or line.strip() in message or shown in message or config in message
                        or re.search(r"node (['\"]).+\1", message)):
                    raise Outcome("unnamed", message[:400]) from None
                first = first or message
    if first:
        raise Outcome("error", first[:400])


def _convert_target(path: Path) -> str:
    data = path.read_bytes() if path.is_file() else str(sorted(path.rglob("*"))).encode()
    return ("seg-nrrd", "nifti", "seg", "rtstruct", "gsps", "overlay", "sr")[zlib.crc32(data) % 7]


def run_convert(path: Path, out: Path, ctx) -> None:
    """``api.convert`` of the mutated input (on the sample series) to a target its bytes choose."""
    from DicomAnnotEmbedLib import api

    target = _convert_target(path)
    suffix = {"seg-nrrd": ".seg.nrrd", "nifti": ".nii.gz", "overlay": ""}.get(target, ".dcm")
    api.convert([path], target, out / f"converted{suffix}", series=ctx.series)
