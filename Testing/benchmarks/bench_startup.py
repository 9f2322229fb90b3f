#!/usr/bin/env python
"""Benchmark: ``seg export`` / ``seg import`` (LABELMAP, case C) end to end in fresh processes,
against dcmqi's ``itkimage2segimage`` / ``segimage2itkimage`` on the same inputs (issue 14,
"Speed where users wait now", target 1).

Run by hand, after ``bench_seg.py --cases C`` has generated its data (default workdir
/tmp/dae-seg-bench)::

    python Testing/benchmarks/bench_startup.py                 # 3 rounds
    python Testing/benchmarks/bench_startup.py --repeats 5 --only ours_import,dcmqi_import
    # also an older version of the library, in the same rounds (git archive REV DicomAnnotEmbed | tar -x -C DIR):
    python Testing/benchmarks/bench_startup.py --workdir /tmp/dae-seg-bench --before DIR/DicomAnnotEmbed

Each command is a whole process (interpreter start, imports, reading, work, writing), as a user
waits for it; rounds are interleaved (every variant once per round). Reported: median CPU seconds
(user + sys of the child, from wait4: the machine is shared, so wall time mostly measures the
other users), median wall seconds, largest peak RSS (ru_maxrss of the child) and the load average.

* ours_export: ``dicomannotembed seg export --type labelmap`` of the int16 ``labels.nrrd`` that
  dcmqi reads, with the same dcmqi metadata JSON (JPEG-LS, our default); dcmqi_export:
  ``itkimage2segimage --segmentationType labelmap`` (uncompressed, dcmqi does not compress).
* ours_import: ``seg import`` of our file into ``.seg.nrrd`` with the series (grid of the series),
  ours_import_noseries: on the SEG's own grid (as dcmqi); dcmqi_import: ``segimage2itkimage
  --mergeSegments`` of its own file into a gzip ``.nrrd``.
* ours_import_binary: ``seg import`` of bench_seg.py's BINARY SEG of the SR data
  (``bench_sr/seg.dcm``, 4,926 frames) onto the series; dcmqi_import_binary: ``segimage2itkimage
  --mergeSegments`` of the same file.
* ours_overlay_import: ``overlay import`` of bench_overlay.py's 200-file overlay series (its
  ``--workdir``, here ``--overlay-workdir``) to ``.seg.nrrd``; pydicom_overlay_read: pydicom reading
  the same files with their pixel data (``PYDICOM_READ``), the peer of its time and peak memory.

Notes: see bench_seg.py, "Command start-up (issue 14)". ``export-ml`` (issue 14, target 5) was
measured the same way by hand, 2026-12-04, load average 16.8 to 20.5, 3 interleaved rounds: the
command on our case C SEG + its 200-file series, against a SimpleITK script reading the series
(ImageSeriesReader) and writing image.nii.gz and label.nii.gz (the dcmqi_C labels.nrrd):
before (d0cdecf) 9.07 s CPU = 3.4 x the peer's 2.63 s, after 4.15 s = 1.58 x (target 1.5 x:
missed); peak RSS 575 -> 469 MB against 426 MB (1.10 x). What changed: the .seg.nrrd it writes
(gzip level, extents: bench_seg.py notes) and the int16 test of the CT (np.mod + min + max 0.82 s
-> cast and compare back 0.28 s). Left: every header is read twice (pydicom in ml_export._discover
to classify the files, then our scanner in load_series, ~0.2 s), read_volume 0.5 s, and the extra
outputs the peer does not write (labels.nrrd, segmentation.seg.nrrd, JSON sidecars, measurements).

Later the same day the variants ``ours_export_ml`` and ``sitk_ml`` (``SITK_ML``) were added here
(``--only ours_export,ours_export_ml,sitk_ml --lib before=DIR --lib mine=DIR --repeats 5``, load
average 5.0 to 7.0): f105c92 3.85 s CPU = 1.64 x the peer's 2.35 s; with the image read as int16
(``ReferenceSeries.read_int16_volume``: the float32 volume and its test cost 0.23 to 0.97 s in a
fresh process, this 0.15 to 0.19 s) and the series built from the headers that sorted the inputs
(``series_from_headers``: warm, 0.085 s of re-reading became 0.025 s), 3.29 s = 1.40 x (target 1.5 x:
met); peak RSS 470 -> 403 MiB against 326 MiB (1.24 x). The rest of the gap: image.nii.gz is the
same 1.6 s of zlib for both; ours also writes labels.nrrd, segmentation.seg.nrrd (0.5 s) and the
sidecars, and decodes the SEG (0.3 s).

``seg import`` LABELMAP, 2026-12-05 (issue 14, target 1: at most 1.0 x dcmqi). Profile of
ours_import_noseries in a fresh process by CPU time (time.process_time at each step, ``-X
importtime`` minima of 5 runs, cProfile for the hot functions), before: 0.72 to 0.80 s in the
process (0.87 s for the child as wait4 sees it). Start-up: interpreter and site 0.04 s, numpy 0.08 s,
pydicom 0.10 s (its pixel decoder plugins with pylibjpeg and PIL, urllib.request for its test-data
downloader), our modules and the parser 0.07 s. Work: dcmread and the header 0.07 s, JPEG-LS
decoding of the 200 frames 0.05 s, ``present_labels`` of the 52 MB label layer to find values
without a segment description 0.064 s, the layer's np.zeros faulted in on huge pages 0.01 to 0.1 s,
and writing the .seg.nrrd 0.22 s: segment extents 0.11 s (changes along all three axes), zlib
level 2 0.08 s, pynrrd's copy of the volume (tobytes) 0.02 s. Changes, each tested:

* values without a description are known from the frames' maxima as they are decoded when the
  described values are 1..top (case C), else counted as before (0.064 s -> 0.004 s;
  Testing/Python/encodings/test_seg_import_labelmap_values.py against pydicom's pixel array);
* the layer is ``core.arrays.zeros`` (4 KiB pages), as the overlay decoder's;
* ``core.arrays.label_extents`` reads the changes along rows only: every run of a value along a
  row starts at the row's start or after a change and ends at its end or before one, so those
  ends hold every row (j, k) the value is on and its lowest and highest i (0.11 s -> 0.05 s; 4
  slices a slab instead of 16: as fast, and 3 MB less at the peak of overlay import; tested
  against scipy's find_objects);
* ``write_seg_nrrd`` takes slicerio's header (pynrrd writing into a sink that stops at the blank
  line that ends it) and compresses the voxels itself with zlib-ng at the same level 2 straight
  from the layer: 0.08 + 0.02 s -> 0.03 s, no 52 MB copy. The compressed bytes differ from zlib's
  (case C 1.32 MB instead of 1.30 MB), the content does not: the header is slicerio's but for its
  time stamp line, the voxels inflate to the same bytes (Testing/Python/files/
  test_segio_fast_paths.py). The cost falls on readers that inflate with Python's own zlib
  (pynrrd, slicerio with voxels): case C's stream takes them 0.125 s instead of 0.078 s; our
  reader (zlib-ng) inflates either in 0.04 s;
* imports the command does not use: the SEG export side (``encodings.seg.export_seg`` is lazy,
  8 ms), the markups writer when no markups are written (4 ms), numpy.ma, which np.unique of the
  frame positions imported (7 to 11 ms; sort and compare instead, the same values);
* a second profile (cProfile of the frame and grid step in a fresh process, which took 0.025 s cold
  and 0.008 s warm): the plane orientation and pixel measures were looked up in the shared
  functional groups and in the first per-frame item at once, and pydicom parses the whole
  per-frame sequence (200 items) to give its first item, which _frame_infos had just read from the
  raw bytes. The per-frame item is now looked at only when the shared groups lack them: 0.025 ->
  0.004 s (a test moves both into the per-frame items: the same grid). label_extents gathers a
  slab's run ends into one array before the minima and maxima (0.05 -> 0.04 s);
* this VM sets PYTHONDONTWRITEBYTECODE=1, so our package (an editable install, no .pyc) is compiled
  from source in every process, 0.05 s of CPU per command, while numpy, pydicom and the rest of
  site-packages come with their bytecode. ``--bytecode DIR`` runs the children with a bytecode
  cache (PYTHONPYCACHEPREFIX, one uncounted round first), as an installed package runs.

After (in process, with bytecode): 0.45 s, of which start-up and imports 0.26 s (interpreter and
site 0.04 s, numpy 0.08 s, pydicom 0.10 s, ours with slicerio, pynrrd and CharLS 0.04 s) and work
0.20 s (dcmread and the segments 0.045 s, the frames 0.054 s with the layer's page faults, the
.seg.nrrd 0.093 s: extents 0.04 s, zlib-ng 0.03 s); dcmqi's whole run is 0.45 s. 1.0 x would need
the SEG read without pydicom, whose import alone is a fifth of dcmqi's run. With ``--series`` the
200 CT headers add 0.07 s (core.series, not changed here).

Runs, 2026-12-05, ``--only ours_import,ours_import_noseries,dcmqi_import,ours_overlay_import,
pydicom_overlay_read --lib before=DIR --repeats 5`` (DIR: ``git archive 69b4d0b``), CPU s / wall s /
peak RSS MiB, load average 3.8 to 4.5: ours_import 0.88 / 1.70 / 165 -> 0.66 / 1.29 / 111 against
dcmqi's 0.45 / 0.87 / 177 (1.47 x, was 1.96 x); ours_import_noseries 0.80 / 1.61 / 161 -> 0.57 /
1.01 / 106 (1.27 x, was 1.78 x); overlay import 0.66 / 1.36 / 129 -> 0.56 / 1.10 / 77 against the
pydicom read's 0.42 / 0.84 / 53 (peak 1.45 x, was 2.4 x: the 52 MB copy pynrrd made to compress is
gone; what stays above the peer is the label layer's painted pages, 14 MB, and the headers and
planes held until they are painted, 10 MB). The same with ``--bytecode``, load 4.7 to 5.5: 0.80 ->
0.59 s (1.31 x), 0.71 -> 0.52 s (1.16 x) against dcmqi's 0.45 s; overlay import 0.63 -> 0.52 s
against 0.43 s, peak 77 MiB against 53 (1.45 x). An earlier run (load 5.7 to 6.0, before the
second profile's changes): 0.86 -> 0.66 s, 0.78 -> 0.58 s, dcmqi 0.46 s.

SEG decoding, 2026-12-05, second session (issue 14): variants ``ours_import_binary`` /
``dcmqi_import_binary`` (``seg import`` of bench_seg.py's BINARY SEG of the SR data, 4,926 frames
of 1 bit, 164 MB, onto the series; the SR export and export-ml decode it the same way). Profile of
``import_seg`` of that SEG in a fresh process (time.process_time per step, bytecode; cProfile only
to find the hot calls), 0.54 s before: pydicom reading the whole file 0.14 s (0.1 s of it copying
the pixel data), the per-frame items parsed into dicts 0.07 s (+ values 0.02 s), row extents
0.07 s, unpacking the rows of every frame 0.10 s, the overlap test 0.07 s (a gather of the masked
voxels per plane). Changes: the native pixel data is mapped from the file (mmap) instead of read;
``raw.item_values`` copies only the four per-frame values and skips the rest by length (0.07 ->
0.034 s); row extents of all frames in one pass, each row's 8-byte words OR-ed column by column,
32 frames at a time (0.046 -> 0.022 s); frames unpacked, compared (np.logical_and) and painted
(np.copyto) only inside the box of their set pixels (columns from those rows' bytes). In process:
0.54 -> 0.25 s, the same layers (md5 equal; highdicom's get_volume in
Testing/Python/encodings/test_seg_decode_fast_paths.py). LABELMAP: ``_refuse_tiled`` converted the
200 referenced SOP Class UIDs one by one (5 ms -> 0.5 ms, raw bytes); nothing else of its work is
left in the SEG decoder (read 0.02 s, segments 0.02 s, CharLS 0.05 s, painting the layer 0.03 s).

Runs, ``--only ours_import,ours_import_noseries,dcmqi_import,ours_import_binary,dcmqi_import_binary
--lib before=DIR --bytecode DIR --repeats 7`` (DIR: ``git archive 8006383``), load 2.6 to 3.4, CPU
s / peak RSS MiB: ours_import 0.61 -> 0.58 / 110 against dcmqi's 0.46 / 177 (1.26 x; target 1.0 x
missed); ours_import_noseries 0.50 -> 0.50 / 105 (1.09 x, missed); ours_import_binary 0.99 -> 0.73
/ 274 -> 256 (the mapped file's pages count in RSS once touched) against dcmqi's 5.68 / 499. Two
later runs on the final code (7 and 5 rounds, load 1.0 to 1.3, the VM slower: ``import numpy``
alone then took 0.3 s of CPU in 0.23 s, and our children CPU 0.1 s more than wall): 0.75 -> 0.71 and
0.85 -> 0.80 s against dcmqi's 0.61 and 0.55 s; own grid 0.67 -> 0.64 and 0.71 -> 0.63 s; BINARY
1.44 -> 0.88 and 1.28 -> 0.93 s against 6.11 and 7.07 s. What
stands between LABELMAP import and dcmqi is outside the decoder: pydicom's import (0.10 s; 0.035 s
of it PIL and pylibjpeg, which pydicom's pixel plugins import at start-up: kept out as
``cli._import_pydicom`` keeps requests and tqdm out, if pydicom still finds them when it decodes),
loading the 200 CT headers (0.07 s with ``--series``), numpy (0.07 s),
the extents (0.04 s), pynrrd with typing_extensions for slicerio's header (0.01 s).

``.nrrd`` label maps (``files/segio.py``, ``seg export --segmentation labels.nrrd``): a plain 3D
integer NRRD with attached raw or gzip data in LPS or RAS space is read with pynrrd's header and
our reader instead of SimpleITK (import 0.06 s; in process 0.30 s -> 0.07 s for case C's 104 MB
int16 labels.nrrd; tested against SimpleITK for every integer type, raw and gzip, oblique
directions, RAS and big-endian files). ours_export, e84317e -> this change, 3 rounds, load 5.1:
0.96 -> 0.87 s CPU, peak RSS 403 -> 208 MiB.

``seg import`` LABELMAP start-up, 2026-12-05, third session (issue 14, target 1: at most 1.0 x
dcmqi). The decoder had little left, so this looked at the process around it: time.process_time
at each step of a fresh process (bytecode cached), ``-X importtime`` (minima of 3 runs), cProfile
for the hot calls, and whole-process A/B runs (CPU of the child from wait4). What was found:

* OpenBLAS, loaded with numpy, starts its threads, which spin before they sleep: ``import
  numpy`` alone took 0.167 s of CPU, 0.114 s with OPENBLAS_NUM_THREADS=1, and every step after
  numpy's import was charged again by the spinning threads (the parser 0.040 -> 0.018 s, pydicom's
  import 0.13 -> 0.105 s; process_time counts every thread). Whole command, 7 rounds, load 1.0:
  onto the series 0.667 -> 0.572 s, own grid 0.607 -> 0.535 s. The command line now asks for one
  thread before numpy loads, unless the user set a number (``cli._single_threaded_blas``); the
  commands keep their products small enough for one thread (bench_sr.py notes).
* Python's shutdown walked every object left (pydicom's dictionaries, the headers, numpy) in its
  final collections: 0.05 s of CPU after ``main`` returned. ``main`` run on the process's own
  command line (the console script, ``python -m``) now freezes the objects (gc.freeze) when the
  command is done; atexit handlers and module clean-up still run. Onto the series, 9 rounds,
  load 2.5: 0.538 -> 0.478 s (os._exit instead: 0.473 s); what follows ``main`` is now 0.009 s.
* pydicom's pixel decoder plugins import their codec packages when pydicom is imported, to know
  which plugins are available: PIL with ImageCms (8.3 ms in ``-X importtime``), pylibjpeg, which
  scans every installed package's entry points (5.5 ms, and 4.7 ms in pydicom's pylibjpeg
  handler), openjpeg, rle. ``seg import`` of a SEG whose frames the decoder reads itself (native,
  or JPEG-LS Lossless through CharLS: its transfer syntax is read from the file's first bytes
  before pydicom is imported, ``core.header_blocks.file_transfer_syntax``) imports pydicom without
  them (``cli._import_pydicom(pixel_codecs=False)``): numpy + pydicom 0.334 -> 0.294 s of CPU in
  a bare process. They stay importable; a SEG in any other syntax keeps them and is decoded
  through pydicom's plugins as before (Testing/Python/test_cli_start_up_work.py: JPEG 2000 and
  RLE SEGs give the same layers as the native one). urllib.request (13 ms, pydicom's test-data
  downloader) cannot be left out: pydicom imports it unconditionally.
* The parser imported and registered every command group (0.014 s, and with it the RT Structure
  Set encoding and the model, i.e. numpy, before the command was known): ``build_parser(argv)``
  registers only the group of the command named (``--help`` and unknown commands: all).
* read_seg_file's check_sequences parsed the 200 items of the Source Image Sequence and of the
  Referenced Series Sequence's Referenced Instance Sequence (4.5 ms each), which the decoder reads
  only for their Referenced SOP Class UIDs (the slide-microscopy refusal): it now leaves them
  unopened (their VR is still checked) and reads the UIDs from the raw bytes, or opens them with
  core.inputs.sequence_items where the bytes do not parse (read_seg_file 0.023 -> 0.014 s; the
  same UIDs as pydicom's parse on ours, dcmqi's and highdicom's SEGs, the same refusals:
  Testing/Python/encodings/test_seg_reference_sequences_raw.py).
* Looked at and left: pausing the collector during the import (0.003 s, not measurable);
  zlib-ng level 1 for the voxels (0.033 instead of 0.040 s, but 2.16 MB instead of 1.32 MB);
  a header parser of our own for the CT headers (pydicom reads three datasets a file, meta,
  command set and body: 0.265 ms a header; a bare loop building the same raw elements saved
  0.01 s of 0.053 for the 200 bodies, not worth a second parser of every series header).

Import profile of the command (``-X importtime``, own grid, minima of 3 runs, load ~2.5): all
imports 244 -> 172 ms (the sum of self times; numpy 84 -> 45 ms without the spinning threads),
405 -> 387 modules; PIL, pylibjpeg, its codecs and the other command groups are no longer
imported. In process after (onto the series, process_time, ms): interpreter and site 39, our
command line 7, parser 2, numpy and pydicom 118, our modules 14; the SEG header 14, the 200 CT
headers 78 (pydicom 59, core.series building the grid 16), segments 23, frames and grid 4, the
layer 58 (CharLS 20, the 52 MB layer's page faults 30), the .seg.nrrd 90 (extents 42 in
core.arrays.label_extents, of which ufunc.at ~10; zlib-ng at level 2, 30); 0.46 s at the end of
``main`` (was 0.58 to 0.63), 0.009 s after it (was ~0.06).

Runs, ``--only ours_import,ours_import_noseries,dcmqi_import --lib before=DIR --bytecode DIR
--repeats 7`` (DIR: ``git archive b3d6d64``), CPU s / wall s / peak RSS MiB, the same rounds:

| run (load) | ours_import before -> after | ours_import_noseries before -> after | dcmqi_import | after / dcmqi |
|---|---|---|---|---|
| 1, before the reference-sequence change (4.1-4.5) | 0.62 / 0.66 -> 0.46 / 0.49 / 105 | 0.55 / 0.56 -> 0.39 / 0.40 / 100 | 0.48 / 0.51 / 177 | 0.96 x / 0.81 x |
| 2, the same (3.3-3.4) | 0.59 / 0.63 -> 0.46 / 0.48 / 106 | 0.51 / 0.55 -> 0.38 / 0.40 / 100 | 0.46 / 0.52 / 177 | 1.00 x / 0.83 x |
| 3, final code (1.9-2.1) | 0.62 / 0.67 -> 0.46 / 0.47 / 105 | 0.55 / 0.58 -> 0.37 / 0.46 / 100 | 0.48 / 0.53 / 177 | 0.96 x / 0.77 x |
| 4, final code (2.1-2.6) | 0.63 / 0.77 -> 0.46 / 0.65 / 105 | 0.54 / 0.73 -> 0.39 / 0.51 / 100 | 0.47 / 0.67 / 177 | 0.98 x / 0.83 x |

With three decimals (11 rounds, load 2.6-2.8): onto the series 0.467 s, own grid 0.377 s,
dcmqi 0.471 s (0.99 x and 0.80 x). Target 1.0 x: met on the SEG's own grid (as dcmqi, which
reads no series) with a fifth to spare; onto the series only just (0.96 to 1.00 x): that
variant also reads the 200 CT headers (0.078 s), which dcmqi does not, so what is left is
pydicom's header parse. ``ours_import_binary`` (BINARY SEG of the SR data, 3 rounds, load 3.4 to
3.8): 0.77 -> 0.63 s against dcmqi's 5.73 s.

Fourth session, 2026-12-05 (after the BINARY SEG read's batched paths, f339f6b; load 0.5 to 0.8),
11 rounds each, CPU s: with ``--bytecode`` ours_import 0.44, ours_import_noseries 0.36, dcmqi 0.45
(0.98 x, 0.80 x); without, 0.48, 0.41, 0.45 (1.07 x, 0.91 x). An A/B of ours_import alone against
abebac7 (11 rounds, bytecode): 0.456 against 0.461 s, so the decoder's changes did not move the
LABELMAP path. Without bytecode our 29 modules cost 65 ms of compiling and executing (``-X
importtime`` self times; dicom.dcmqi_metadata 6 ms of it for one colour conversion, api.convert 5 ms);
what the series variant pays beyond dcmqi is still the 200 CT headers (pydicom's element
generator, 0.055-0.078 s).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


#: The peer of ``export-ml``: SimpleITK reads the series and writes the image and the label map as
#: .nii.gz (argv: series folder, label map, output folder).
SITK_ML = """
import sys, SimpleITK as sitk
series, labels, out = sys.argv[1:4]
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(series))
sitk.WriteImage(reader.Execute(), out + "/image.nii.gz", True)
sitk.WriteImage(sitk.ReadImage(labels), out + "/label.nii.gz", True)
"""


#: The peer of ``overlay import``: pydicom reading every file of the overlay series, pixel data
#: included (argv: the folder), as bench_overlay.py's read_overlay_files variant.
PYDICOM_READ = """
import sys, pathlib, pydicom
size = sum(len(pydicom.dcmread(path).PixelData) for path in sorted(pathlib.Path(sys.argv[1]).iterdir()))
"""


def commands(workdir: Path, out: Path, overlay_workdir: Path = Path("/tmp/dae-bench")) -> dict:
    series, dcmqi = workdir / "series", workdir / "dcmqi_C"
    cli = [sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", "seg"]
    overlays = overlay_workdir / "overlay_input"
    return {
        "ours_export": cli + ["export", "--series", str(series), "--segmentation", str(dcmqi / "labels.nrrd"),
                              "--metadata", str(dcmqi / "meta.json"), "--type", "labelmap",
                              "--out", str(out / "ours.dcm"), "--force"],
        "dcmqi_export": ["itkimage2segimage", "--inputImageList", str(dcmqi / "labels.nrrd"),
                         "--inputDICOMDirectory", str(series), "--outputDICOM", str(out / "dcmqi.dcm"),
                         "--inputMetadata", str(dcmqi / "meta.json"), "--segmentationType", "labelmap"],
        "ours_import": cli + ["import", str(out / "ours.dcm"), "--series", str(series),
                              "--out", str(out / "ours.seg.nrrd"), "--force"],
        "ours_import_noseries": cli + ["import", str(out / "ours.dcm"), "--out", str(out / "own.seg.nrrd"), "--force"],
        "dcmqi_import": ["segimage2itkimage", "--inputDICOM", str(out / "dcmqi.dcm"),
                         "--outputDirectory", str(out / "dcmqi_import"), "--mergeSegments"],
        # the BINARY SEG of bench_seg.py's SR data (case C, 4,926 frames of 1 bit, 164 MB), as the
        # SR export and export-ml decode it, and dcmqi on the same file
        "ours_import_binary": cli + ["import", str(workdir / "bench_sr" / "seg.dcm"), "--series", str(series),
                                     "--out", str(out / "binary.seg.nrrd"), "--force"],
        "dcmqi_import_binary": ["segimage2itkimage", "--inputDICOM", str(workdir / "bench_sr" / "seg.dcm"),
                                "--outputDirectory", str(out / "dcmqi_import_binary"), "--mergeSegments"],
        # export-ml of our LABELMAP SEG (ours_export's) and its series, against SimpleITK (SITK_ML)
        "ours_export_ml": cli[:-1] + ["export-ml", str(out / "ours.dcm"), str(series), "--out", str(out / "ml"),
                                      "--force"],
        "sitk_ml": [sys.executable, "-c", SITK_ML, str(series), str(dcmqi / "labels.nrrd"), str(out / "sitk_ml")],
        # overlay import of bench_overlay.py's 200-file overlay series to .seg.nrrd, against pydicom
        # reading those files (--overlay-workdir: bench_overlay.py's --workdir)
        "ours_overlay_import": cli[:-1] + ["overlay", "import", "--series", str(overlays),
                                           "--out", str(out / "overlay.seg.nrrd"), "--force"],
        "pydicom_overlay_read": [sys.executable, "-c", PYDICOM_READ, str(overlays)],
    }


def interleaved(table: dict, names: list, environments: dict, repeats: int):
    """Run every command of ``names`` once per round, ``repeats`` rounds: {name: [(CPU s of the
    child (user + sys, from wait4), wall s, peak RSS MiB)]} and the 1-minute load averages seen
    (before the first round and after each). None when a command failed (its stderr is printed)."""
    runs = {name: [] for name in names}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            child = subprocess.Popen(table[name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=environments.get(name))
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            if status:
                print(f"{name} failed: {child.stderr.read().decode()[-2000:]}", file=sys.stderr)
                return None, loads
            child.stderr.close()
            runs[name].append((usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024))
        loads.append(os.getloadavg()[0])
    return runs, loads


def print_runs(runs: dict, loads: list, repeats: int) -> None:
    """The table of :func:`interleaved`'s results (Markdown) and the load."""
    print(f"| variant | CPU s (median of {repeats}) | wall s | peak RSS MiB |\n|---|---|---|---|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(v[0] for v in values):.2f} | "
              f"{statistics.median(v[1] for v in values):.2f} | {max(v[2] for v in values):.0f} |")
    print(f"\nload average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f}, {os.cpu_count()} CPUs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dae-seg-bench"),
                        help="bench_seg.py's data (default /tmp/dae-seg-bench)")
    parser.add_argument("--overlay-workdir", type=Path, default=Path("/tmp/dae-bench"),
                        help="bench_overlay.py --workdir's data, for the overlay variants (default /tmp/dae-bench)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dae-bench-startup"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="comma-separated variants (exports before imports: they write the inputs)")
    parser.add_argument("--before", type=Path, help="folder holding another DicomAnnotEmbedLib: its ours_* "
                        "variants run too (as <name>_before, through PYTHONPATH)")
    parser.add_argument("--lib", action="append", default=[], metavar="LABEL=DIR",
                        help="as --before, for any number of libraries: the ours_* variants as <name>_LABEL")
    parser.add_argument("--bytecode", type=Path, metavar="DIR",
                        help="children keep compiled bytecode in DIR (PYTHONPYCACHEPREFIX) even where "
                             "PYTHONDONTWRITEBYTECODE is set, after one round that is not counted: as an "
                             "installed package runs (site-packages come with theirs)")
    args = parser.parse_args()
    for folder in ("dcmqi_import", "dcmqi_import_binary"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    table = commands(args.workdir, args.out, args.overlay_workdir)
    names = args.only.split(",") if args.only else list(table)
    environments = {name: None for name in table}
    libraries = ([f"before={args.before}"] if args.before else []) + args.lib
    for name in [n for n in names if n.startswith("ours_")]:
        for label, folder in (library.split("=", 1) for library in libraries):
            table[f"{name}_{label}"] = table[name]
            environments[f"{name}_{label}"] = dict(os.environ, PYTHONPATH=folder)
            names.insert(names.index(name), f"{name}_{label}")
    (args.out / "sitk_ml").mkdir(parents=True, exist_ok=True)
    if args.bytecode:
        for name in names:
            environment = dict(environments.get(name) or os.environ, PYTHONPYCACHEPREFIX=str(args.bytecode))
            environment.pop("PYTHONDONTWRITEBYTECODE", None)
            environments[name] = environment
        if interleaved(table, names, environments, 1)[0] is None:  # compiles and keeps the bytecode
            return 1
    runs, loads = interleaved(table, names, environments, args.repeats)
    if runs is None:
        return 1
    print_runs(runs, loads, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
