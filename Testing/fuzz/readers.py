"""Every reader of the package, as fuzz targets: name -> (seed kinds, mutation format, call); the
command line, batch manifests, PACS nodes and convert are in commands.py.

A call gets the mutated input (file, or a series folder with one file mutated), a scratch folder for
outputs, and the context (corpus paths, the sample series loaded once per worker).
"""
from __future__ import annotations

from pathlib import Path

from commands import run_cli, run_convert, run_manifest, run_node_text, run_nodes


class Outcome(Exception):
    """Raised by a target that decides its case's status itself (the command line: exit codes and
    stderr): status ok, error, unnamed or crash, with a message and a crash signature."""

    def __init__(self, status: str, message: str = "", signature: str = ""):
        super().__init__(message)
        self.status, self.message, self.signature = status, message, signature


class Context:
    def __init__(self, corpus: dict):
        self.corpus = corpus
        self._series = None

    @property
    def series(self):
        """The unmutated sample series, loaded once per worker."""
        if self._series is None:
            from DicomAnnotEmbedLib.core.series import load_series
            self._series = load_series(self.corpus["sample_series"])
        return self._series


def overlay_import(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.import_overlay(path, segmentation_out=out / "o.seg.nrrd", markups_out=out / "o.mrk.json")


def series_volume(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib.core.series import load_series
    series = load_series(path)
    series.read_volume()
    for _ in series.modality_planes():  # sr export's reading, file by file
        pass


def seg_import(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.import_seg(path, segmentation_out=out / "s.seg.nrrd")


def seg_import_on_series(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.import_seg(path, ctx.series)


def sr_import(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.import_sr(path, seg_folders=[ctx.corpus["sr_folder"]], out_dir=out / "sr")


def ml_export(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.export_ml(path, out / "ml")


def markups_read(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib.files.markups_io import read_markups
    read_markups(path)


def overlay_export_markups(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.export_overlay(ctx.series, None, [path], out / "overlay")


def sr_export_markups(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.export_sr(ctx.series, ctx.corpus["sample_seg"], out / "sr.dcm", markups=[path])


def segnrrd_read(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib.files.segio import load_segmentation
    load_segmentation(path)


def seg_export(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.export_seg(ctx.series, path, out / "seg.dcm")


def overlay_export_seg(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.export_overlay(ctx.series, path, [], out / "overlay")


def metadata_read(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib.dicom.dcmqi_metadata import read_dcmqi_metadata
    read_dcmqi_metadata(path)


def table_read(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib.files.csv_table import read_annotation_table
    read_annotation_table(path, ctx.series)


def evaluations_read(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib.dicom.evaluations import read_evaluations_csv
    read_evaluations_csv(path, "lidc")


def rtstruct_import(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.import_rtstruct(path, ctx.series, segmentation_out=out / "rt.seg.nrrd", markups_out=out / "rt.mrk.json")


def gsps_import(path: Path, out: Path, ctx: Context):
    from DicomAnnotEmbedLib import api
    api.import_gsps(path, ctx.series, markups_out=out / "pr.mrk.json")


#: name -> (seed kinds, mutation format, call, weight). Weights favour the cheap readers so that a
#: slice of a few thousand cases stays within minutes; every reader gets cases.
READERS = {
    "overlay_import": (("overlay",), "dicom", overlay_import, 2),  # 0.15-0.3 s a case
    "series_volume": (("series", "image"), "dicom", series_volume, 3),
    "seg_import": (("seg",), "dicom", seg_import, 4),
    "seg_import_on_series": (("seg",), "dicom", seg_import_on_series, 2),
    "sr_import": (("sr",), "dicom", sr_import, 2),  # 0.3 s a case
    "ml_export": (("seg", "sr"), "dicom", ml_export, 1),
    "markups_read": (("mrk",), "json", markups_read, 3),
    "overlay_export_markups": (("mrk",), "json", overlay_export_markups, 1),
    "sr_export_markups": (("mrk",), "json", sr_export_markups, 0.4),  # 3 s a case (measurements)
    "segnrrd_read": (("segnrrd",), "nrrd", segnrrd_read, 3),
    "seg_export": (("segnrrd",), "nrrd", seg_export, 1),
    "overlay_export_seg": (("segnrrd",), "nrrd", overlay_export_seg, 1),
    "metadata_read": (("meta",), "json", metadata_read, 2),
    "table_read": (("table",), "csv", table_read, 2),
    "evaluations_read": (("evaluations",), "csv", evaluations_read, 2),
    "rtstruct_import": (("rtstruct",), "dicom", rtstruct_import, 3),
    "gsps_import": (("gsps",), "dicom", gsps_import, 0.5),  # 1.5-2 s a case
    # commands.py: the command line (in process), batch manifests, PACS nodes, convert.
    "cli": (("argv",), "argv", run_cli, 3),
    "batch_manifest_csv": (("manifest_csv",), "csv", run_manifest, 1),
    "batch_manifest_jsonl": (("manifest_jsonl",), "jsonl", run_manifest, 1),
    "pacs_nodes": (("nodes",), "json", run_nodes, 1.5),
    "pacs_node_text": (("nodetext",), "lines", run_node_text, 1.5),
    "convert_dicom": (("seg", "sr", "rtstruct", "gsps"), "dicom", run_convert, 1),
    "convert_files": (("segnrrd",), "nrrd", run_convert, 0.5),
    "convert_markups": (("mrk",), "json", run_convert, 0.5),
    "convert_table": (("table",), "csv", run_convert, 0.3),  # 0.5 s a case
}
