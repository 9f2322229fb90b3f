"""Seeded mutations of one input file: byte-level (any file) and format-aware (DICOM, JSON, CSV, NRRD).

``mutate(data, fmt, rng) -> (bytes, description)``: the same (data, fmt, rng state) gives the same result.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import re

EXTREME_NUMBERS = ["1e308", "-1e308", "nan", "inf", "2147483647", "-2147483648", "0", "-1", "1e-308", "65535", "4294967295"]
TOKENS = ["SCOORD", "SCOORD3D", "NUM", "CODE", "TEXT", "CONTAINER", "IMAGE", "POINT", "POLYLINE", "POLYGON",
          "ELLIPSE", "MULTIPOINT", "CIRCLE", "ELLIPSOID", "BINARY", "FRACTIONAL", "LABELMAP", "R", "G",
          "CONTAINS", "HAS PROPERTIES", "INFERRED FROM", "", "X", "ORIGINAL", "MONOCHROME2", "RGB", "PALETTE COLOR"]
#: Keywords of elements the readers rely on: chosen ten times as often as others.
INTERESTING = {
    "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PixelData", "RescaleSlope", "RescaleIntercept",
    "SegmentNumber", "ReferencedSegmentNumber", "SegmentationType", "SegmentationFractionalType",
    "MaximumFractionalValue", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "SegmentSequence", "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
    "SegmentIdentificationSequence", "DerivationImageSequence", "SourceImageSequence", "DimensionIndexValues",
    "GraphicData", "GraphicType", "ValueType", "NumericValue", "FloatingPointValue", "MeasuredValueSequence",
    "ContentSequence", "ConceptNameCodeSequence", "ConceptCodeSequence", "ReferencedSOPSequence",
    "ReferencedSOPInstanceUID", "ReferencedSOPClassUID", "ReferencedFrameNumber", "ReferencedSeriesSequence",
    "ReferencedInstanceSequence", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "MeasurementUnitsCodeSequence", "TrackingUID", "TrackingIdentifier", "RelationshipType", "CodeValue",
    "CodingSchemeDesignator", "CodeMeaning", "RecommendedDisplayCIELabValue", "PixelPaddingValue",
    "ReferencedSegmentationFrame", "SegmentLabel", "Modality", "ImageType", "TextValue", "UID",
    "FrameContentSequence", "InStackPositionNumber", "DimensionIndexSequence", "FiducialUID",
}
OVERLAY_ELEMENTS = {0x0010, 0x0011, 0x0015, 0x0022, 0x0040, 0x0045, 0x0050, 0x0051, 0x0100, 0x0102,
                    0x1301, 0x1500, 0x3000}
VRS = rb"AE|AS|AT|CS|DA|DS|DT|FL|FD|IS|LO|LT|OB|OD|OF|OL|OV|OW|PN|SH|SL|SQ|SS|ST|SV|TM|UC|UI|UL|UN|UR|US|UT|UV"


# ------------------------------------------------------------------ byte level
def byte_mutation(data: bytes, rng: random.Random):
    data = bytearray(data)
    n = len(data)
    if n == 0:
        return bytes(rng.randbytes(rng.randint(1, 64))), "random bytes for an empty file"
    op = rng.choice(["flip", "flip", "truncate", "truncate", "delete", "duplicate", "insert", "vr"])
    if op == "flip":
        count = rng.choice([1, 1, 2, 4, 16])
        for _ in range(count):
            i = rng.randrange(n)
            data[i] = rng.choice([0, 0xFF, data[i] ^ (1 << rng.randrange(8)), rng.randrange(256)])
        return bytes(data), f"flip {count} bytes"
    if op == "truncate":
        cut = rng.choice([rng.randrange(n), n - rng.randint(1, min(n, 16)), rng.randrange(min(n, 2048))])
        return bytes(data[:cut]), f"truncate at {cut} of {n}"
    if op == "delete":
        i = rng.randrange(n)
        size = rng.choice([1, 2, 4, 8, 64, 512])
        return bytes(data[:i] + data[i + size:]), f"delete {size} at {i}"
    if op == "duplicate":
        i = rng.randrange(n)
        size = rng.choice([4, 8, 64, 512])
        return bytes(data[:i + size] + data[i:i + size] + data[i + size:]), f"duplicate {size} at {i}"
    if op == "insert":
        i = rng.randrange(n)
        return bytes(data[:i] + rng.randbytes(rng.choice([1, 4, 8])) + data[i:]), f"insert at {i}"
    # VR corruption of an explicit-VR element header: pydicom decodes it lazily.
    hits = [m.start(1) for m in re.finditer(rb"[\x00-\xff]{4}(" + VRS + rb")", bytes(data[132:]))]
    if not hits:
        return byte_mutation(bytes(data), rng)
    i = 132 + rng.choice(hits)
    data[i:i + 2] = rng.choice([b"ZZ", b"\x00\x00", b"QQ", rng.choice(VRS.split(b"|"))])
    return bytes(data), f"VR at {i}"


# ------------------------------------------------------------------ DICOM
@contextlib.contextmanager
def _lenient_writing():
    from pydicom import config

    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.writing_validation_mode = old


def _elements(ds, out=None, parent=None):
    """(dataset, element) pairs of every element, recursively, with the file meta."""
    out = [] if out is None else out
    for element in ds:
        out.append((ds, element))
        if element.VR == "SQ":
            for item in element.value:
                _elements(item, out, element)
    return out


def _weight(element) -> int:
    tag = element.tag
    if element.keyword in INTERESTING:
        return 10
    if tag.group & 0xFF00 == 0x6000 and tag.element in OVERLAY_ELEMENTS:
        return 10
    if tag.group == 0x0071:
        return 10
    return 1


def _new_value(element, rng: random.Random):
    """A wrong value for an element of any VR; None means delete it."""
    vr = element.VR
    value = element.value
    if vr == "SQ":
        items = list(value)
        op = rng.choice(["empty", "drop", "dup", "delete"])
        if op == "empty" or not items:
            return [], "empty sequence"
        if op == "drop":
            del items[rng.randrange(len(items))]
            return items, "drop an item"
        if op == "dup":
            return items + [items[rng.randrange(len(items))]], "duplicate an item"
        return None, "delete"
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or isinstance(value, (bytes, bytearray)):
        raw = bytes(value or b"")
        if element.tag.group == 0x0071 and raw.lstrip()[:1] in (b"{", b"["):
            try:
                mutated, how = json_mutation(raw, rng)
                return mutated, "private JSON: " + how
            except ValueError:
                pass
        op = rng.choice(["short", "half", "empty", "delete", "long"])
        if op == "short":
            return raw[:max(0, len(raw) - rng.choice([1, 2, 3, 4, 7]))], "a few bytes short"
        if op == "half":
            return raw[:len(raw) // 2], "half"
        if op == "empty":
            return b"", "empty"
        if op == "long":
            return raw + b"\x00" * rng.choice([1, 2, 16]), "a few bytes long"
        return None, "delete"
    op = rng.choice(["empty", "extra", "fewer", "extreme", "text", "token", "delete"])
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else (
        [] if value in (None, "") else [value])
    if op == "empty":
        return "", "empty"
    if op == "delete":
        return None, "delete"
    if vr in ("FL", "FD", "US", "SS", "UL", "SL", "UV", "SV", "AT"):
        # Binary numbers: wrong counts and extremes (written as bytes: the VR fixes the size).
        import struct
        fmt = {"FL": "f", "FD": "d", "US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q", "AT": "I"}[vr]
        numbers = [v if isinstance(v, (int, float)) else 0 for v in values] or [0]
        if op == "extra":
            numbers = numbers + numbers[:1]
        elif op == "fewer":
            numbers = numbers[:-1]
        else:
            big = {"f": 3e38, "d": 1e308, "H": 65535, "h": -32768, "I": 4294967295, "i": 2147483647,
                   "Q": 2 ** 63, "q": -(2 ** 63)}[fmt]
            numbers[rng.randrange(len(numbers))] = rng.choice([big, 0] + ([float("nan")] if fmt in "fd" else []))
        try:
            return struct.pack("<" + fmt * len(numbers), *numbers), f"{op} {numbers[:4]}"
        except struct.error:
            return b"\x00", "one byte"
    text = [str(v) for v in values]
    if op == "extra":
        text = text + (text[:1] or ["1"]) + ([rng.choice(EXTREME_NUMBERS)] if rng.random() < 0.5 else [])
    elif op == "fewer":
        text = text[:-1]
    elif op == "extreme":
        text = text or ["1"]
        text[rng.randrange(len(text))] = rng.choice(EXTREME_NUMBERS)
    elif op == "text":
        text = [rng.choice(["abc", "1.2.3", "\\", "x" * 70, "-", "1,5"])]
    else:
        text = [rng.choice(TOKENS)]
    return "\\".join(text), f"{op} {text[:4]}"


def dicom_mutation(data: bytes, rng: random.Random):
    import pydicom
    from pydicom.dataelem import DataElement

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        pairs = [(ds.file_meta, e) for e in ds.file_meta] if getattr(ds, "file_meta", None) else []
        pairs += _elements(ds)
    except Exception:
        return byte_mutation(data, rng)
    if not pairs:
        return byte_mutation(data, rng)
    count = rng.choice([1, 1, 1, 2, 3])
    done = []
    for round_ in range(count):
        if round_:  # the elements as the last change left them (a walk converts every element: not after the last)
            pairs = [(ds.file_meta, e) for e in ds.file_meta] if getattr(ds, "file_meta", None) else []
            pairs += _elements(ds)
            if not pairs:
                break
        weights = [_weight(e) for _, e in pairs]
        parent, element = rng.choices(pairs, weights)[0]
        try:
            value, how = _new_value(element, rng)
        except Exception as exc:  # a value pydicom cannot even show: delete it
            value, how = None, f"delete ({exc.__class__.__name__})"
        if value is None:
            with contextlib.suppress(KeyError):
                del parent[element.tag]
        elif element.VR in ("FL", "FD", "US", "SS", "UL", "SL", "UV", "SV", "AT") and isinstance(value, bytes):
            parent[element.tag] = DataElement(element.tag, element.VR, value)
            parent[element.tag].value = _raw_number(element.VR, value, parent[element.tag])
        else:
            parent[element.tag] = DataElement(element.tag, element.VR, value)
        done.append(f"{element.keyword or element.tag}: {how}")
    out = io.BytesIO()
    try:
        with _lenient_writing():
            ds.save_as(out, enforce_file_format=False)
    except Exception as exc:
        return byte_mutation(data, rng)[0], f"unwritable mutation ({exc.__class__.__name__}); bytes instead"
    return out.getvalue(), "; ".join(done)


def _raw_number(vr, raw: bytes, element):
    """Binary number values as pydicom holds them (a list), from the packed bytes."""
    import struct
    fmt = {"FL": "f", "FD": "d", "US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q", "AT": "I"}[vr]
    size = struct.calcsize(fmt)
    numbers = list(struct.unpack("<" + fmt * (len(raw) // size), raw[:len(raw) // size * size]))
    if vr == "AT":
        return numbers[0] if len(numbers) == 1 else (numbers or None)
    return numbers[0] if len(numbers) == 1 else (numbers or None)


# ------------------------------------------------------------------ JSON
JSON_VALUES = [None, "x", "", [], {}, 1e308, -1, 0, 2147483647, True, [1, 2], [0, 0, 0, 0, 0, 0, 0, 0, 0],
               [1e308] * 9, "nan", [[1, 2, 3]], {"a": 1}]


def _json_paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_paths(v, path + (i,))


def json_mutation(data: bytes, rng: random.Random):
    doc = json.loads(data.decode("utf-8-sig"))
    paths = [p for p in _json_paths(doc) if p]
    if not paths:
        raise ValueError("nothing to mutate")
    weights = [5 if any(str(k) in ("orientation", "controlPoints", "position", "labelValue", "coordinateSystem",
                                   "type", "segmentAttributes", "recommendedDisplayRGBValue", "markups",
                                   "size", "center", "layer") for k in p) else 1 for p in paths]
    count = rng.choice([1, 1, 2])
    done = []
    for _ in range(count):
        path = rng.choices(paths, weights)[0]
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = rng.choice(["value", "value", "number", "delete"])
        try:
            if op == "delete":
                del parent[key]
            elif op == "number" and isinstance(parent[key], (int, float, list)):
                if isinstance(parent[key], list):
                    parent[key] = [rng.choice([1e308, 0, -1, float("nan")]) if isinstance(v, (int, float)) else v
                                   for v in parent[key]]
                else:
                    parent[key] = rng.choice([1e308, -1e308, 0, -1, 2147483647, float("nan")])
            else:
                parent[key] = rng.choice(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass
        done.append(f"{'/'.join(map(str, path))}: {op}")
        paths = [p for p in _json_paths(doc) if p] or [("x",)]
        weights = [1] * len(paths)
    return json.dumps(doc).encode(), "; ".join(done)


# ------------------------------------------------------------------ CSV
CELL_VALUES = ["", "nan", "1e308", "-1", "0", "abc", "2147483647", "1;2;3", "1 2", "x" * 300, ";", "-0", "inf"]


def csv_mutation(data: bytes, rng: random.Random):
    text = data.decode("utf-8-sig")
    lines = text.splitlines(keepends=True)
    comments = [l for l in lines if l.startswith("#")]
    rows = list(csv.reader([l for l in lines if not l.startswith("#")]))
    if not rows:
        raise ValueError("empty")
    op = rng.choice(["drop column", "cell", "cell", "cell", "dup row", "drop header", "swap columns", "drop row"])
    width = len(rows[0])
    if op == "drop column" and width:
        c = rng.randrange(width)
        rows = [r[:c] + r[c + 1:] for r in rows]
    elif op == "cell" and len(rows) > 1:
        r = rng.randrange(1, len(rows))
        if rows[r]:
            rows[r][rng.randrange(len(rows[r]))] = rng.choice(CELL_VALUES)
    elif op == "dup row" and len(rows) > 1:
        rows.insert(rng.randrange(1, len(rows) + 1), list(rows[rng.randrange(1, len(rows))]))
    elif op == "drop header":
        rows = rows[1:]
    elif op == "swap columns" and width > 1:
        a, b = rng.sample(range(width), 2)
        for r in rows:
            if len(r) > max(a, b):
                r[a], r[b] = r[b], r[a]
    elif op == "drop row" and len(rows) > 1:
        del rows[rng.randrange(1, len(rows))]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return ("".join(comments) + out.getvalue()).encode(), op


# ------------------------------------------------------------------ NRRD
NRRD_VALUES = {
    "sizes": ["2147483647 128 128", "0 128 128", "1 2", "32 128 128 2", "-1 128 128", "1 1 1"],
    "space directions": ["(0,0,0) (0,0,0) (0,0,0)", "none (1,0,0) (0,1,0)", "(1e308,0,0) (0,1,0) (0,0,1)", "(1,0) (0,1)"],
    "space origin": ["(1e308,0,0)", "(nan,0,0)", "(1,2)", "x"],
    "type": ["double", "int64", "abc", "uint8", "float"],
    "encoding": ["raw", "bzip2", "xyz", "gzip", "ascii"],
    "dimension": ["7", "2", "0", "4"],
    "kinds": ["domain domain", "list domain domain domain", "x"],
    "space": ["x", "right-anterior-superior", "left-posterior-superior"],
    "endian": ["big", "x"],
}
SEGMENT_FIELDS = {"LabelValue": ["2147483647", "-1", "abc", "0", "65536", "1e308"],
                  "Layer": ["99", "-1", "x", "2147483647"],
                  "Extent": ["0 2147483647 0 127 0 31", "5 1 0 0 0 0", "x", "0 1"],
                  "Color": ["x", "1 1", "2 2 2", "nan nan nan"],
                  "ID": ["", "Segment_1"], "Name": [""],
                  "Tags": ["TerminologyEntry:x~y|", "|||", ""]}


def nrrd_mutation(data: bytes, rng: random.Random):
    end = data.find(b"\n\n")
    if end < 0:
        raise ValueError("no header")
    header = data[:end].decode("latin-1").split("\n")
    body = data[end + 2:]
    op = rng.choice(["field", "field", "segment", "segment", "drop line", "body"])
    if op == "body":
        return data[:end + 2] + body[:rng.randrange(len(body) + 1)], "truncated voxels"
    if op == "drop line" and len(header) > 1:
        i = rng.randrange(1, len(header))
        return ("\n".join(header[:i] + header[i + 1:])).encode("latin-1") + b"\n\n" + body, f"drop {header[i][:30]}"
    if op == "segment":
        lines = [i for i, l in enumerate(header) if re.match(r"Segment\d+_(\w+):=", l)]
        if lines:
            i = rng.choice(lines)
            name, field = re.match(r"(Segment\d+_(\w+)):=", header[i]).groups()
            header[i] = f"{name}:={rng.choice(SEGMENT_FIELDS.get(field, ['', 'x', '2147483647']))}"
            return "\n".join(header).encode("latin-1") + b"\n\n" + body, header[i][:60]
    fields = [i for i, l in enumerate(header) if ":" in l and l.split(":", 1)[0] in NRRD_VALUES]
    if not fields:
        return byte_mutation(data, rng)
    i = rng.choice(fields)
    key = header[i].split(":", 1)[0]
    header[i] = f"{key}: {rng.choice(NRRD_VALUES[key])}"
    return "\n".join(header).encode("latin-1") + b"\n\n" + body, header[i][:60]


# ------------------------------------------------------------------ command lines, lines, JSON lines
#: Values put in place of an argument: odd numbers and texts, missing and wrong-kind paths.
ARG_VALUES = ["", "-", "--", "x", "0", "-1", "1e308", "nan", "inf", "2147483647", "-2147483648", "1.5", "a" * 300,
              "1,2,,x", "0,99999", "-3", "é€漢", " ", "{out}/missing.dcm", "{out}", "{out}/new/deeper/x.dcm", "{out}/..",
              "{out}/x.seg.nrrd", "{out}/x.mrk.json", "{out}/x.nii.gz", "{out}/x.dcm", "AET@host:0",
              "A@127.0.0.1:99999", "http://", "https://x/studies/", "ORTHANC@127.0.0.1:4242/1.2.3",
              "pacs/1.2.3/4.5.6", "file://{out}", "~/x", "./rel", "1.2.3", "4GiB", "100", "auto", "none", "3.5GB"]
PLACEHOLDERS = ["{series}", "{overlay}", "{segnrrd}", "{mrk}", "{seg}", "{seg_labelmap}", "{sr}", "{srdir}", "{rt}",
                "{pr}", "{table}", "{evaluations}", "{meta}", "{volume}", "{manifest}", "{nodes}", "{nodetext}"]
_OPTIONS_BY_COMMAND = {}


def command_options(words) -> list:
    """(option, takes a value, choices) of the CLI command that ``words`` start with."""
    import argparse

    key = tuple(w for w in words[:2] if not w.startswith("-"))
    if key not in _OPTIONS_BY_COMMAND:
        from DicomAnnotEmbedLib.cli import build_parser

        parser = build_parser()
        for word in key:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not subs or word not in subs[0].choices:
                break
            parser = subs[0].choices[word]
        _OPTIONS_BY_COMMAND[key] = [(a.option_strings[-1], a.nargs != 0, list(a.choices or []))
                                    for a in parser._actions if a.option_strings and a.dest != "help"]
    return _OPTIONS_BY_COMMAND[key]


def argv_mutation(data: bytes, rng: random.Random):
    """A command line (JSON list of words) with options dropped, repeated, swapped, added (any
    option of the command), values replaced (odd texts, missing or wrong-kind files), ``=`` forms
    and abbreviations."""
    words = json.loads(data)
    count = rng.choice([1, 1, 1, 2, 3])
    done = []
    for _ in range(count):
        op = rng.choice(["drop", "value", "value", "value", "add", "add", "dup", "swap", "equals", "abbrev",
                         "placeholder", "command"])
        n = len(words)
        if op == "drop" and n:
            i = rng.randrange(n)
            done.append(f"drop {words.pop(i)}")
        elif op == "value" and n:
            values = [i for i, w in enumerate(words) if not w.startswith("-")] or list(range(n))
            i = rng.choice(values)
            words[i] = rng.choice(ARG_VALUES + PLACEHOLDERS)
            done.append(f"word {i} = {words[i][:40]}")
        elif op == "add":
            options = command_options(words)
            if options:
                option, takes, choices = rng.choice(options)
                new = [option] + ([rng.choice((choices or []) + ARG_VALUES + PLACEHOLDERS)] if takes else [])
                i = rng.randrange(n + 1)
                words[i:i] = new
                done.append(f"add {' '.join(new)[:60]}")
        elif op == "dup" and n:
            i = rng.randrange(n)
            words[i:i] = words[i:i + rng.choice([1, 2])]
            done.append(f"repeat {words[i]}")
        elif op == "swap" and n > 1:
            a, b = rng.sample(range(n), 2)
            words[a], words[b] = words[b], words[a]
            done.append(f"swap {a} {b}")
        elif op == "equals":
            pairs = [i for i in range(n - 1) if words[i].startswith("--") and not words[i + 1].startswith("-")]
            if pairs:
                i = rng.choice(pairs)
                words[i:i + 2] = [f"{words[i]}={words[i + 1]}"]
                done.append(f"= at {i}")
        elif op == "abbrev":
            options = [i for i, w in enumerate(words) if w.startswith("--") and len(w) > 4]
            if options:
                i = rng.choice(options)
                words[i] = words[i][:rng.randint(3, len(words[i]) - 1)]
                done.append(f"abbreviate {words[i]}")
        elif op == "placeholder":
            slots = [i for i, w in enumerate(words) if w.startswith("{")]
            if slots:
                i = rng.choice(slots)
                words[i] = rng.choice(PLACEHOLDERS)
                done.append(f"file {i} = {words[i]}")
        elif op == "command" and n:
            words[0] = rng.choice(["overlay", "seg", "sr", "rtstruct", "gsps", "convert", "csv", "export-ml",
                                   "batch", "pacs", "sample", "dicomize", "--help", "--version", "x"])
            done.append(f"command {words[0]}")
    return json.dumps(words).encode(), "; ".join(done) or "unchanged"


def lines_mutation(data: bytes, rng: random.Random):
    """Text lines (node strings): a line dropped, repeated, cut, or a part of it changed."""
    lines = data.decode("utf-8").splitlines() or [""]
    i = rng.randrange(len(lines))
    op = rng.choice(["cut", "char", "char", "part", "drop", "dup"])
    line = lines[i]
    if op == "cut":
        lines[i] = line[:rng.randrange(len(line) + 1)]
    elif op == "char" and line:
        j = rng.randrange(len(line))
        lines[i] = line[:j] + rng.choice(["@", ":", "/", "", "[", "]", " ", "0", "99999", "é", "%", "?", "#"]) + line[j + 1:]
    elif op == "part":
        parts = re.split(r"([@:/])", line)
        j = rng.randrange(len(parts))
        parts[j] = rng.choice(ARG_VALUES + ["", "x" * 17, "65536", "0", "studies", "series", "[::1]"])
        lines[i] = "".join(parts)
    elif op == "drop" and len(lines) > 1:
        del lines[i]
    else:
        lines.insert(i, line)
    return ("\n".join(lines) + "\n").encode(), f"line {i}: {op}"


def jsonl_mutation(data: bytes, rng: random.Random):
    """JSON lines: one line's object mutated (json_mutation), or a line cut, repeated or dropped."""
    lines = data.decode("utf-8").splitlines()
    i = rng.randrange(len(lines))
    op = rng.choice(["json", "json", "json", "cut", "dup", "drop"])
    if op == "json":
        mutated, how = json_mutation(lines[i].encode(), rng)
        lines[i] = mutated.decode()
        op = how
    elif op == "cut":
        lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
    elif op == "dup":
        lines.insert(i, lines[i])
    else:
        del lines[i]
    return ("\n".join(lines) + "\n").encode(), f"line {i + 1}: {op}"


# ------------------------------------------------------------------ entry
def mutate(data: bytes, fmt: str, rng: random.Random):
    """One mutation of ``data`` (format ``fmt``: dicom, json, csv, nrrd, argv, lines, jsonl or bytes);
    a third of them byte-level whatever the format (a tenth for command lines)."""
    if fmt == "argv" and rng.random() < 0.9:
        return argv_mutation(data, rng)
    if fmt not in ("bytes", "argv") and rng.random() < 0.67:
        try:
            if fmt == "lines":
                return lines_mutation(data, rng)
            if fmt == "jsonl":
                return jsonl_mutation(data, rng)
            if fmt == "dicom":
                return dicom_mutation(data, rng)
            if fmt == "json":
                return json_mutation(data, rng)
            if fmt == "csv":
                return csv_mutation(data, rng)
            if fmt == "nrrd":
                return nrrd_mutation(data, rng)
        except Exception:  # noqa: BLE001 - a mutation pydicom cannot express: bytes instead
            pass
    return byte_mutation(data, rng)
