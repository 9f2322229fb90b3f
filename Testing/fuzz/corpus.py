"""The fuzz corpus: our own outputs for the bundled sample, plus the interop files when present.

Built once into a folder (``build_corpus``); ``corpus.json`` there lists every seed with its kind:

    series        the sample CT series (folder)
    overlay       the overlay-embedded copy of the sample (folder)
    seg           DICOM SEG files (ours: BINARY, LABELMAP; interop: any)
    sr            TID 1500 SR files
    image         single DICOM images from the interop files (a one-file series)
    rtstruct      RT Structure Sets
    gsps          Grayscale Softcopy Presentation States
    segnrrd       .seg.nrrd
    mrk           .mrk.json
    meta          dcmqi segmentation metadata JSON
    table         annotation table CSV (csv import)
    evaluations   evaluation CSV (sr export --evaluations)
    argv          a command line (JSON list; {placeholders} name corpus files and the case's out folder)
    manifest_csv, manifest_jsonl   a batch manifest of cases on the corpus files
    nodes         a PACS node config file (JSON)
    nodetext      PACS node strings and remote series references, one a line
    volume        a small NIfTI volume (dicomize)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TABLE = REPO / "Resources" / "Examples" / "annotations_example.csv"
SHARED_INTEROP = REPO.parent / "shared" / "interop"
MAX_INTEROP_BYTES = 3 * 1024 * 1024
MAX_INTEROP_FILES = 60
#: 2: with the command-line, batch manifest and PACS node seeds.
CORPUS_VERSION = 2
COMMAND_KINDS = ("argv", "manifest_csv", "manifest_jsonl", "nodes", "nodetext", "volume")


def build_corpus(folder: Path, interop: bool = True) -> dict:
    """Write the corpus into ``folder`` (reused when ``corpus.json`` is already there)."""
    folder = Path(folder)
    index = folder / "corpus.json"
    if index.exists():
        data = json.loads(index.read_text())
        if data.get("version", 1) < CORPUS_VERSION:  # an older corpus: add what it lacks
            data = _with_command_seeds(folder, data)
            index.write_text(json.dumps(data, indent=1))
        return data
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.dicom.dcmqi_metadata import write_dcmqi_metadata
    from DicomAnnotEmbedLib.files.sample import write_sample
    from DicomAnnotEmbedLib.files.segio import load_segmentation

    folder.mkdir(parents=True, exist_ok=True)
    case = write_sample(folder / "sample", force=True)
    seeds = [dict(kind="series", path=str(case.series_dir)),
             dict(kind="segnrrd", path=str(case.segmentation_path)),
             dict(kind="mrk", path=str(case.markups_path))]
    api.export_overlay(case.series_dir, case.segmentation_path, [case.markups_path], folder / "overlay", force=True)
    seeds.append(dict(kind="overlay", path=str(folder / "overlay")))
    # Without markups too, so that the private JSON is smaller and segment planes dominate.
    for seg_type in ("binary", "labelmap"):
        out = folder / f"seg_{seg_type}.dcm"
        result = api.export_seg(case.series_dir, case.segmentation_path, out, seg_type=seg_type,
                                split_layers=seg_type == "labelmap")
        seeds += [dict(kind="seg", path=str(p)) for p in result.paths]
    sr_dir = folder / "sr"
    sr_dir.mkdir(exist_ok=True)
    shutil.copy(folder / "seg_binary.dcm", sr_dir / "seg.dcm")
    api.export_sr(case.series_dir, sr_dir / "seg.dcm", sr_dir / "sr.dcm", markups=[case.markups_path])
    seeds.append(dict(kind="sr", path=str(sr_dir / "sr.dcm")))
    csv_dir = folder / "csv"
    api.import_csv(EXAMPLE_TABLE, case.series_dir, csv_dir, force=True)
    seeds += [dict(kind="table", path=str(EXAMPLE_TABLE)),
              dict(kind="evaluations", path=str(csv_dir / "evaluations.csv")),
              dict(kind="sr", path=str(csv_dir / "sr.dcm")),
              dict(kind="seg", path=str(csv_dir / "seg.dcm")),
              dict(kind="mrk", path=str(csv_dir / "markups.mrk.json")),
              dict(kind="segnrrd", path=str(csv_dir / "segmentation.seg.nrrd"))]
    api.export_rtstruct(case.series_dir, case.segmentation_path, folder / "rt.dcm", markups=[case.markups_path])
    api.export_gsps(case.series_dir, [case.markups_path], folder / "pr.dcm", segmentation=case.segmentation_path,
                    outlines=True, force=True)
    seeds += [dict(kind="rtstruct", path=str(folder / "rt.dcm")), dict(kind="gsps", path=str(folder / "pr.dcm"))]
    write_dcmqi_metadata(load_segmentation(case.segmentation_path), folder / "meta.json")
    seeds.append(dict(kind="meta", path=str(folder / "meta.json")))
    if interop and SHARED_INTEROP.is_dir():
        seeds += _interop_seeds(SHARED_INTEROP)
    data = dict(sample_series=str(case.series_dir), sample_seg=str(folder / "seg_binary.dcm"),
                sr_folder=str(sr_dir), seeds=seeds)
    data = _with_command_seeds(folder, data)
    index.write_text(json.dumps(data, indent=1))
    return data


def _with_command_seeds(folder: Path, data: dict) -> dict:
    """Add the seeds of the command-line, batch and PACS targets (commands.py) to a corpus."""
    from commands import command_seeds

    data = dict(data, version=CORPUS_VERSION)
    data["seeds"] = [s for s in data["seeds"] if s["kind"] not in COMMAND_KINDS] + command_seeds(folder, data)
    return data


def _interop_seeds(root: Path) -> list:
    """DICOM SEG, SR and image files, JSON metadata and .seg.nrrd/.mrk.json of the interop set."""
    import pydicom

    seeds = []
    kinds = {"1.2.840.10008.5.1.4.1.1.66.4": "seg", "1.2.840.10008.5.1.4.1.1.66.7": "seg",
             "1.2.840.10008.5.1.4.1.1.481.3": "rtstruct", "1.2.840.10008.5.1.4.1.1.11.1": "gsps"}
    counts = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.stat().st_size > MAX_INTEROP_BYTES:
            continue
        name = path.name.lower()
        kind = None
        if name.endswith(".seg.nrrd"):
            kind = "segnrrd"
        elif name.endswith(".mrk.json"):
            kind = "mrk"
        elif name.endswith(".json") and "seg" in name:
            kind = "meta"
        else:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
            except Exception:
                continue
            uid = str(ds.get("SOPClassUID", ""))
            kind = kinds.get(uid) or ("sr" if uid.startswith("1.2.840.10008.5.1.4.1.1.88.") else
                                      "image" if "Modality" in ds and ds.Modality not in ("RTSTRUCT", "PR", "KO") else None)
        if kind is None or counts.get(kind, 0) >= MAX_INTEROP_FILES // 4:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        seeds.append(dict(kind=kind, path=str(path), interop=True))
    return seeds
