"""dcmqi segmentation metadata JSON: read, validate, write for itkimage2segimage, apply to the
model, and the sRGB <-> DICOM CIELab conversion; checked against dcmqi's own tools and files."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import interop, require_tool
from DicomAnnotEmbedLib.dicom.colors import (
    _lab16_from_rgb01_builtin,
    _rgb01_from_lab16_builtin,
    dicom_lab_to_rgb,
    rgb_to_dicom_lab,
)
from DicomAnnotEmbedLib.dicom.dcmqi_metadata import (
    SEGMENT_ATTRIBUTE_KEYS,
    SegmentEntry,
    SegMetadata,
    apply_metadata,
    read_dcmqi_metadata,
    write_dcmqi_metadata,
)
from DicomAnnotEmbedLib.core.errors import InputError, OutputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import (
    DEFAULT_TERMINOLOGY,
    Code,
    Segment,
    Segmentation,
    Terminology,
)

LIVER = Terminology(category=Code("123037004", "SCT", "Anatomical Structure"), type=Code("10200004", "SCT", "Liver"))
RIGHT_LUNG = Terminology(category=Code("123037004", "SCT", "Anatomical Structure"),
                         type=Code("39607008", "SCT", "Lung"), type_modifier=Code("24028007", "SCT", "Right"))
KIDNEY_MASS = Terminology(category=Code("49755003", "SCT", "Morphologically Altered Structure"),
                          type=Code("4147007", "SCT", "Mass"), anatomic_region=Code("64033007", "SCT", "Kidney"),
                          anatomic_region_modifier=Code("7771000", "SCT", "Left"))


def _code(value, scheme, meaning):
    return {"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning}


def valid_document() -> dict:
    """A small document following dcmqi's seg-schema: two label files, three segments."""
    return {
        "ContentCreatorName": "Reader^One", "ClinicalTrialSeriesID": "Session7", "ClinicalTrialTimePointID": "2",
        "ClinicalTrialCoordinatingCenterName": "Somewhere", "SeriesDescription": "Organs", "SeriesNumber": "301",
        "InstanceNumber": "1", "BodyPartExamined": "ABDOMEN",
        "segmentAttributes": [
            [{"labelID": 1, "SegmentLabel": "Liver", "SegmentDescription": "whole liver",
              "SegmentedPropertyCategoryCodeSequence": _code("123037004", "SCT", "Anatomical Structure"),
              "SegmentedPropertyTypeCodeSequence": _code("10200004", "SCT", "Liver"),
              "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "GrowCut",
              "recommendedDisplayRGBValue": [221, 130, 101],
              "TrackingIdentifier": "liver-1", "TrackingUniqueIdentifier": "2.25.1234567890"},
             {"labelID": 4, "SegmentLabel": "Right lung",
              "SegmentedPropertyCategoryCodeSequence": _code("123037004", "SCT", "Anatomical Structure"),
              "SegmentedPropertyTypeCodeSequence": _code("39607008", "SCT", "Lung"),
              "SegmentedPropertyTypeModifierCodeSequence": _code("24028007", "SCT", "Right"),
              "SegmentAlgorithmType": "MANUAL", "recommendedDisplayRGBValue": [197, 165, 145]}],
            [{"labelID": 1, "SegmentLabel": "Mass",
              "SegmentedPropertyCategoryCodeSequence": _code("49755003", "SCT", "Morphologically Altered Structure"),
              "SegmentedPropertyTypeCodeSequence": _code("4147007", "SCT", "Mass"),
              "AnatomicRegionSequence": _code("64033007", "SCT", "Kidney"),
              "AnatomicRegionModifierSequence": _code("7771000", "SCT", "Left"),
              "SegmentAlgorithmType": "AUTOMATIC", "SegmentAlgorithmName": "nnU-Net",
              "recommendedDisplayRGBValue": [0, 151, 206]}],
        ],
    }


def _write_json(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


# --- reading ----------------------------------------------------------------------

def test_reads_every_field_of_a_schema_document(tmp_path):
    path = _write_json(tmp_path / "meta.json", valid_document())
    meta = read_dcmqi_metadata(path)
    assert meta.source == str(path)
    assert meta.series_fields() == {
        "ContentCreatorName": "Reader^One", "ClinicalTrialSeriesID": "Session7", "ClinicalTrialTimePointID": "2",
        "ClinicalTrialCoordinatingCenterName": "Somewhere", "SeriesDescription": "Organs", "SeriesNumber": "301",
        "InstanceNumber": "1", "BodyPartExamined": "ABDOMEN"}
    assert meta.ContentLabel is None and meta.layer_count == 2
    assert [(e.layer, e.labelID) for e in meta.segments] == [(0, 1), (0, 4), (1, 1)]
    liver, lung, mass = meta.segments
    assert liver.terminology == LIVER
    assert (liver.SegmentLabel, liver.SegmentDescription) == ("Liver", "whole liver")
    assert liver.attributes() == {"TrackingIdentifier": "liver-1", "TrackingUniqueIdentifier": "2.25.1234567890",
                                  "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "GrowCut"}
    assert liver.recommendedDisplayRGBValue == (221, 130, 101)
    assert liver.color == pytest.approx((221 / 255, 130 / 255, 101 / 255))
    assert lung.terminology == RIGHT_LUNG and lung.SegmentDescription is None
    assert lung.attributes() == {"SegmentAlgorithmType": "MANUAL"}
    assert mass.terminology == KIDNEY_MASS
    assert meta.entry(1, layer=1) is mass and meta.entry(1, layer=0) is liver and meta.entry(9) is None
    # the same from an already parsed dict, without a file name
    assert read_dcmqi_metadata(valid_document()).segments == meta.segments


def test_reads_what_segimage2itkimage_writes_for_dcmqi_liver(tmp_path):
    tool = require_tool("segimage2itkimage")
    seg = interop("dcmqi", "liver.dcm")
    subprocess.run([tool, "--inputDICOM", str(seg), "--outputDirectory", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    meta = read_dcmqi_metadata(tmp_path / "meta.json")
    assert meta.SeriesDescription == "Liver Segmentation"
    assert meta.ClinicalTrialCoordinatingCenterName == "UIowa"
    assert (meta.SeriesNumber, meta.InstanceNumber, meta.BodyPartExamined) == ("1", "1", "")
    (liver,) = meta.segments
    assert (liver.layer, liver.labelID, liver.SegmentLabel) == (0, 1, "Liver")
    assert liver.terminology.category == Code("T-D0050", "SRT", "Tissue")
    assert liver.terminology.type == Code("T-62000", "SRT", "Liver")
    assert (liver.SegmentAlgorithmType, liver.SegmentAlgorithmName) == ("SEMIAUTOMATIC", "SlicerEditor")
    assert liver.SegmentDescription == ""  # dcmqi writes an empty description


def test_labelmap_background_entry_and_overlap_layers(tmp_path):
    """segimage2itkimage writes labelID 0 (Background) for a label-map SEG, and one list per
    file when segments overlap."""
    tool = require_tool("segimage2itkimage")
    labelmap_dir, overlap_dir = tmp_path / "labelmap", tmp_path / "overlap"
    for source, out in ((interop("dcmqi", "sparse-labelmap-ppv5.dcm"), labelmap_dir),
                        (interop("highdicom", "seg_image_ct_binary_overlap.dcm"), overlap_dir)):
        out.mkdir()
        subprocess.run([tool, "--inputDICOM", str(source), "--outputDirectory", str(out)],
                       check=True, capture_output=True, timeout=300)
    labelmap = read_dcmqi_metadata(labelmap_dir / "meta.json")
    background, liver = labelmap.segments
    assert background.is_background and background.terminology.type == Code("125040", "DCM", "Background")
    assert liver.labelID == 1 and liver.SegmentLabel == "Liver"

    overlap = read_dcmqi_metadata(overlap_dir / "meta.json")
    assert [(e.layer, e.labelID, e.SegmentLabel) for e in overlap.segments] == [
        (0, 1, "first segment"), (1, 2, "second segment")]
    # the background entry describes no segment: applying it leaves the label-1 segment alone otherwise
    geometry = VolumeGeometry.from_origin_spacing_directions((2, 4, 4), (0, 0, 0), (1, 1, 1), np.eye(3))
    seg = Segmentation.from_label_map(geometry, np.pad(np.ones((2, 2, 2), np.uint8), ((0, 0), (1, 1), (1, 1))))
    apply_metadata(seg, labelmap)
    assert seg.segments[0].name == "Liver"


def test_lidc2dicom_style_document(tmp_path):
    """lidc2dicom writes no SegmentLabel, an anatomic region, ContentLabel/ContentDescription."""
    data = {"ContentCreatorName": "Reader1", "ClinicalTrialSeriesID": "Session1", "ClinicalTrialTimePointID": "1",
            "SeriesDescription": "Lung nodule segmentation", "SeriesNumber": "300", "InstanceNumber": "1",
            "BodyPartExamined": "LUNG", "ContentLabel": "SEGMENTATION",
            "ContentDescription": "Lung nodule segmentation", "ClinicalTrialCoordinatingCenterName": "TCIA",
            "segmentAttributes": [[{
                "labelID": 1, "SegmentAlgorithmType": "MANUAL",
                "AnatomicRegionSequence": _code("T-28000", "SRT", "Lung"),
                "SegmentedPropertyCategoryCodeSequence": _code("M-01000", "SRT", "Morphological Abnormal Structure"),
                "SegmentedPropertyTypeCodeSequence": _code("M-03010", "SRT", "Nodule"),
                "recommendedDisplayRGBValue": [255, 255, 255],
                "TrackingIdentifier": "Nodule 1", "TrackingUniqueIdentifier": "1.2.840.113654.2.55.1"}]]}
    meta = read_dcmqi_metadata(_write_json(tmp_path / "lidc.json", data))
    assert (meta.ContentLabel, meta.ContentDescription) == ("SEGMENTATION", "Lung nodule segmentation")
    (nodule,) = meta.segments
    assert nodule.SegmentLabel is None
    assert nodule.terminology.anatomic_region == Code("T-28000", "SRT", "Lung")
    assert nodule.color == (1.0, 1.0, 1.0)
    # without a SegmentLabel the segment keeps its own name but takes codes, colour and tracking
    geometry = VolumeGeometry.from_origin_spacing_directions((1, 2, 2), (0, 0, 0), (1, 1, 1), np.eye(3))
    seg = Segmentation.from_label_map(geometry, np.ones((1, 2, 2), np.uint8), names={1: "nodule R2"})
    apply_metadata(seg, meta)
    assert seg.segments[0].name == "nodule R2"
    assert seg.segments[0].terminology.type.meaning == "Nodule"
    assert seg.segments[0].attributes["TrackingIdentifier"] == "Nodule 1"


def _broken(edit):
    data = valid_document()
    edit(data)
    return data


def _first(data):
    return data["segmentAttributes"][0][0]


BROKEN = {
    "not JSON": ("{\"segmentAttributes\": [[{\"labelID\": 1,}]]", "invalid JSON"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "no segmentAttributes": (_broken(lambda d: d.pop("segmentAttributes")), "'segmentAttributes' is missing"),
    "empty segmentAttributes": (_broken(lambda d: d.update(segmentAttributes=[])), "non-empty list of lists"),
    "flat segmentAttributes": (_broken(lambda d: d.update(segmentAttributes=d["segmentAttributes"][0])),
                               "segmentAttributes[0] must be a non-empty list"),
    "empty inner list": (_broken(lambda d: d["segmentAttributes"].append([])), "segmentAttributes[2] must be"),
    "no labelID": (_broken(lambda d: _first(d).pop("labelID")), "segmentAttributes[0][0]: segment has no labelID"),
    "labelID as text": (_broken(lambda d: _first(d).update(labelID="1")), "labelID must be an integer"),
    "negative labelID": (_broken(lambda d: _first(d).update(labelID=-3)), "labelID must be an integer"),
    "duplicate labelID": (_broken(lambda d: d["segmentAttributes"][0][1].update(labelID=1)),
                          "segmentAttributes[0][1]: duplicate labelID 1"),
    "code without CodeValue": (
        _broken(lambda d: _first(d)["SegmentedPropertyTypeCodeSequence"].pop("CodeValue")),
        "(labelID 1): SegmentedPropertyTypeCodeSequence has no CodeValue"),
    "code without scheme": (
        _broken(lambda d: d["segmentAttributes"][1][0]["AnatomicRegionSequence"].update(CodingSchemeDesignator="")),
        "segmentAttributes[1][0] (labelID 1): AnatomicRegionSequence has no CodingSchemeDesignator"),
    "code as list": (_broken(lambda d: _first(d).update(SegmentedPropertyCategoryCodeSequence=[
        _code("123037004", "SCT", "Anatomical Structure")])), "must be an object with CodeValue"),
    "no category": (_broken(lambda d: _first(d).pop("SegmentedPropertyCategoryCodeSequence")),
                    "SegmentedPropertyCategoryCodeSequence is missing"),
    "RGB above 255": (_broken(lambda d: _first(d).update(recommendedDisplayRGBValue=[256, 0, 0])),
                      "recommendedDisplayRGBValue must be 3 integers 0-255, got [256, 0, 0]"),
    "RGB negative": (_broken(lambda d: _first(d).update(recommendedDisplayRGBValue=[10, -1, 0])),
                     "recommendedDisplayRGBValue must be 3 integers 0-255"),
    "RGB two values": (_broken(lambda d: _first(d).update(recommendedDisplayRGBValue=[10, 10])),
                       "recommendedDisplayRGBValue must be 3 integers"),
    "RGB in 0-1": (_broken(lambda d: _first(d).update(recommendedDisplayRGBValue=[0.5, 0.2, 0.1])),
                   "recommendedDisplayRGBValue must be 3 integers"),
    "bad algorithm type": (_broken(lambda d: _first(d).update(SegmentAlgorithmType="Manual")),
                           "SegmentAlgorithmType must be one of AUTOMATIC, SEMIAUTOMATIC, MANUAL"),
    "no algorithm type": (_broken(lambda d: _first(d).pop("SegmentAlgorithmType")), "SegmentAlgorithmType is missing"),
    "label too long": (_broken(lambda d: _first(d).update(SegmentLabel="L" * 65)), "DICOM LO allows 64"),
    "bad tracking UID": (_broken(lambda d: _first(d).update(TrackingUniqueIdentifier="TBD")), "is not a DICOM UID"),
    "lower-case body part": (_broken(lambda d: d.update(BodyPartExamined="abdomen")), "DICOM CS"),
    "series number text": (_broken(lambda d: d.update(SeriesNumber="three")), "must be an integer number"),
    "mapping mismatch": (_broken(lambda d: d.update(segmentAttributesFileMapping=["a.nrrd"])),
                         "names 1 files but 'segmentAttributes' has 2 lists"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_invalid_documents_name_the_file_and_the_problem(case, tmp_path):
    data, expected = BROKEN[case]
    path = _write_json(tmp_path / "broken.json", data)
    with pytest.raises(InputError) as error:
        read_dcmqi_metadata(path)
    assert error.value.path == str(path)
    assert expected in str(error.value)
    assert str(error.value).startswith(str(path))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_dcmqi_metadata(tmp_path / "absent.json")
    with pytest.raises(InputError, match="is not a file"):
        read_dcmqi_metadata(tmp_path)
    binary = tmp_path / "seg.dcm"
    binary.write_bytes(b"\x00\xff" * 200)
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_dcmqi_metadata(binary)


def test_lenient_cases_are_warned_not_refused(tmp_path, caplog):
    data = valid_document()
    data["Comment"] = "made by hand"
    _first(data)["SegmentAlgorithmName"] = ""  # SEMIAUTOMATIC without a name
    data["segmentAttributes"][0][1]["TrackingIdentifier"] = "lung"  # without a UID
    data["segmentAttributes"][1][0]["labelID"] = 4  # same labelID as a segment of another file: allowed
    data["SeriesNumber"] = 301  # an integer instead of an IS string
    path = _write_json(tmp_path / "meta.json", data)
    with caplog.at_level(logging.WARNING):
        meta = read_dcmqi_metadata(path)
    assert meta.SeriesNumber == "301"
    assert [(e.layer, e.labelID) for e in meta.segments] == [(0, 1), (0, 4), (1, 4)]
    assert "keys unknown to dcmqi's seg-schema are ignored: Comment" in caplog.text
    assert "SEMIAUTOMATIC needs a SegmentAlgorithmName" in caplog.text
    assert "must be given together" in caplog.text
    assert str(path) in caplog.text


# --- writing for itkimage2segimage --------------------------------------------------

def _ct_reference():
    folder = interop("dcmqi", "ct-3slice")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return folder, reader.Execute()


def _three_segments(geometry):
    """Liver and lung side by side in layer 0, an overlapping mass in layer 1."""
    shape = geometry.shape
    liver, lung, mass = (np.zeros(shape, bool) for _ in range(3))
    liver[:, 200:260, 150:250] = True
    lung[1:, 300:340, 300:360] = True
    mass[:2, 240:280, 200:230] = True  # overlaps the liver
    segments = [
        Segment("liver", "Liver", color=(221 / 255, 130 / 255, 101 / 255), terminology=LIVER,
                description="whole liver",
                attributes={"SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "GrowCut",
                            "TrackingIdentifier": "liver-1", "TrackingUniqueIdentifier": "2.25.1234567890"}),
        Segment("lung", "Right lung", color=(0.2, 0.6, 0.9), terminology=RIGHT_LUNG),
        Segment("mass", "Mass", color=(1.0, 1.0, 0.0), terminology=KIDNEY_MASS,
                attributes={"SegmentAlgorithmType": "AUTOMATIC", "SegmentAlgorithmName": "nnU-Net",
                            "unrelated": "kept out of the JSON"}),
    ]
    return Segmentation.from_masks(geometry, [liver, lung, mass], segments)


def test_written_json_is_accepted_by_itkimage2segimage(tmp_path):
    tool = require_tool("itkimage2segimage")
    back_tool = require_tool("segimage2itkimage")
    folder, reference = _ct_reference()
    seg = _three_segments(VolumeGeometry.from_sitk(reference))
    assert seg.layers.shape[0] == 2
    label_files = []
    for n, layer in enumerate(seg.layers):
        image = sitk.GetImageFromArray(layer.astype(np.int16))
        image.CopyInformation(reference)
        label_files.append(tmp_path / f"layer{n}.nrrd")
        sitk.WriteImage(image, str(label_files[-1]))
    meta_path = tmp_path / "meta.json"
    written = write_dcmqi_metadata(seg, meta_path, SeriesDescription="Organs from DicomAnnotEmbed",
                                   SeriesNumber=301, ContentCreatorName="Reader^One", BodyPartExamined="ABDOMEN",
                                   ClinicalTrialCoordinatingCenterName="Site A")
    assert [(e.layer, e.labelID) for e in written.segments] == [(0, 1), (0, 2), (1, 1)]
    on_disk = json.loads(meta_path.read_text())
    assert on_disk["SeriesNumber"] == "301" and len(on_disk["segmentAttributes"]) == 2
    assert "unrelated" not in meta_path.read_text()

    out = tmp_path / "seg.dcm"
    result = subprocess.run([tool, "--inputImageList", ",".join(map(str, label_files)),
                             "--inputDICOMDirectory", str(folder), "--inputMetadata", str(meta_path),
                             "--outputDICOM", str(out)], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    checker = shutil.which("dciodvfy")
    if checker:  # the SEG dcmqi made from our JSON is a valid Segmentation IOD
        check = subprocess.run([checker, str(out)], capture_output=True, text=True, timeout=120, check=False)
        assert not [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]

    ds = pydicom.dcmread(out)
    assert ds.SeriesDescription == "Organs from DicomAnnotEmbed" and str(ds.SeriesNumber) == "301"
    assert str(ds.ContentCreatorName) == "Reader^One" and ds.BodyPartExamined == "ABDOMEN"
    by_label = {item.SegmentLabel: item for item in ds.SegmentSequence}
    assert set(by_label) == {"Liver", "Right lung", "Mass"}
    for segment in seg.segments:
        item = by_label[segment.name]
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == segment.terminology.category.value
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == segment.terminology.type.value
        lab = [int(v) for v in item.RecommendedDisplayCIELabValue]  # dcmqi converts the 8-bit RGB
        assert np.abs(np.subtract(lab, rgb_to_dicom_lab(np.divide(segment.color_rgb8, 255)))).max() <= 1
    liver, lung, mass = (by_label[name] for name in ("Liver", "Right lung", "Mass"))
    assert (liver.TrackingID, liver.TrackingUID) == ("liver-1", "2.25.1234567890")
    assert (liver.SegmentAlgorithmType, liver.SegmentAlgorithmName) == ("SEMIAUTOMATIC", "GrowCut")
    assert liver.SegmentDescription == "whole liver"
    assert lung.SegmentAlgorithmType == "MANUAL" and "TrackingID" not in lung
    modifier = lung.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert modifier.CodeValue == "24028007"
    assert mass.AnatomicRegionSequence[0].CodeMeaning == "Kidney"
    assert mass.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeValue == "7771000"

    # back with dcmqi: the metadata it writes reads back to the same names, codes, colours, ids
    back = tmp_path / "back"
    back.mkdir()
    subprocess.run([back_tool, "--inputDICOM", str(out), "--outputDirectory", str(back)],
                   check=True, capture_output=True, timeout=300)
    returned = {e.SegmentLabel: e for e in read_dcmqi_metadata(back / "meta.json").segments}
    for segment in seg.segments:
        entry = returned[segment.name]
        assert entry.terminology == segment.terminology
        assert np.abs(np.subtract(entry.recommendedDisplayRGBValue, segment.color_rgb8)).max() <= 1
        expected = {k: v for k, v in segment.attributes.items() if k in SEGMENT_ATTRIBUTE_KEYS}
        assert entry.attributes() == expected | {"SegmentAlgorithmType": expected.get("SegmentAlgorithmType",
                                                                                      "MANUAL")}


def test_write_fills_defaults_and_round_trips(tmp_path, caplog):
    geometry = VolumeGeometry.from_origin_spacing_directions((2, 3, 3), (0, 0, 0), (1, 1, 1), np.eye(3))
    seg = Segmentation(geometry, np.zeros((3, 2, 3, 3), np.uint8), [
        Segment("a", "Plain", color=(0.5, 0.25, 0.0), layer=0, label_value=3),
        Segment("b", "Far", terminology=LIVER, layer=2, label_value=7)])  # layer 1 holds nothing
    path = tmp_path / "sub" / "meta.json"
    with caplog.at_level(logging.WARNING):
        written = write_dcmqi_metadata(seg.segments, path, file_mapping=["plain.nrrd", "far.nrrd"])
    assert "segment 'Plain' has no terminology" in caplog.text
    data = json.loads(path.read_text())
    assert data["segmentAttributesFileMapping"] == ["plain.nrrd", "far.nrrd"]
    assert [[e["labelID"] for e in group] for group in data["segmentAttributes"]] == [[3], [7]]
    plain = data["segmentAttributes"][0][0]
    assert plain["SegmentAlgorithmType"] == "MANUAL" and "SegmentDescription" not in plain
    assert plain["recommendedDisplayRGBValue"] == [128, 64, 0]
    meta = read_dcmqi_metadata(path)
    assert meta.segments == written.segments
    assert meta.segments[0].terminology == DEFAULT_TERMINOLOGY
    assert [(e.layer, e.SegmentLabel) for e in meta.segments] == [(0, "Plain"), (1, "Far")]


@pytest.mark.parametrize("attributes, name, label, expected", [
    ({"SegmentAlgorithmType": "SEMIAUTOMATIC"}, "S", 1, "SEMIAUTOMATIC needs a SegmentAlgorithmName"),
    ({"SegmentAlgorithmType": "automatic", "SegmentAlgorithmName": "x"}, "S", 1, "must be one of"),
    ({"TrackingIdentifier": "t1"}, "S", 1, "must be given together"),
    ({"TrackingIdentifier": "t1", "TrackingUniqueIdentifier": "1.02.3"}, "S", 1, "is not a DICOM UID"),
    ({}, "N" * 65, 1, "segment 'N+' \\(labelID 1\\): SegmentLabel is 65 characters long; DICOM LO allows 64"),
    ({}, "S", 40000, "above 32767"),
])
def test_write_refuses_what_dcmqi_or_dicom_would_reject(tmp_path, attributes, name, label, expected):
    segment = Segment("s", name, terminology=LIVER, label_value=label, attributes=attributes)
    path = tmp_path / "meta.json"
    with pytest.raises(InputError, match=expected) as error:
        write_dcmqi_metadata([segment], path)
    assert error.value.path == str(path)
    assert not path.exists()


def test_write_argument_errors(tmp_path):
    segment = Segment("s", "S", terminology=LIVER)
    with pytest.raises(TypeError, match="SeriesDescripton"):
        write_dcmqi_metadata([segment], tmp_path / "m.json", SeriesDescripton="typo")
    with pytest.raises(InputError, match="DICOM CS"):
        write_dcmqi_metadata([segment], tmp_path / "m.json", BodyPartExamined="chest")
    with pytest.raises(InputError, match="segments 'S' and 'T' both have label value 1 in layer 0"):
        write_dcmqi_metadata([segment, Segment("t", "T", terminology=LIVER)], tmp_path / "m.json")
    with pytest.raises(InputError, match="no segments"):
        write_dcmqi_metadata([], tmp_path / "m.json")
    with pytest.raises(OutputError, match="is a folder"):
        write_dcmqi_metadata([segment], tmp_path)


# --- applying to the model ------------------------------------------------------------

def test_apply_metadata_by_layer_and_label(tmp_path, caplog):
    geometry = VolumeGeometry.from_origin_spacing_directions((2, 4, 4), (0, 0, 0), (1, 1, 1), np.eye(3))
    a, b, c, d = (np.zeros(geometry.shape, bool) for _ in range(4))
    a[0, :2, :2] = b[1, 2:, 2:] = c[0, :3, :3] = d[1, 3, 0] = True  # c overlaps a: layer 1
    seg = Segmentation.from_masks(geometry, [a, b, c, d], [
        Segment("a", "first", description="mine"), Segment("b", "second"), Segment("c", "third"),
        Segment("d", "undescribed", color=(0.1, 0.2, 0.3), attributes={"TrackingIdentifier": "own"})])
    assert [(s.layer, s.label_value) for s in seg.segments] == [(0, 1), (0, 2), (1, 1), (0, 3)]
    data = valid_document()
    data["segmentAttributes"][0][1]["labelID"] = 2
    data["segmentAttributes"][1].append({
        "labelID": 9, "SegmentAlgorithmType": "MANUAL",
        "SegmentedPropertyCategoryCodeSequence": _code("85756007", "SCT", "Tissue"),
        "SegmentedPropertyTypeCodeSequence": _code("85756007", "SCT", "Tissue")})
    path = _write_json(tmp_path / "meta.json", data)
    with caplog.at_level(logging.WARNING):
        apply_metadata(seg, path)
    first, second, third, rest = seg.segments
    assert (first.name, first.terminology, first.description) == ("Liver", LIVER, "whole liver")
    assert first.color_rgb8 == (221, 130, 101)
    assert first.attributes == {"TrackingIdentifier": "liver-1", "TrackingUniqueIdentifier": "2.25.1234567890",
                                "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "GrowCut"}
    assert (second.name, second.terminology, second.color_rgb8) == ("Right lung", RIGHT_LUNG, (197, 165, 145))
    assert (third.name, third.terminology) == ("Mass", KIDNEY_MASS)  # layer 1, label 1
    assert third.attributes["SegmentAlgorithmName"] == "nnU-Net"
    assert (rest.name, rest.color, rest.terminology, rest.attributes) == (
        "undescribed", (0.1, 0.2, 0.3), None, {"TrackingIdentifier": "own"})
    assert "describes no segment with label value 3 (layer 0); 'undescribed' keep" in caplog.text
    assert "no segment has labelID 9 (layer 1)" in caplog.text


def test_apply_entry_without_layer():
    geometry = VolumeGeometry.from_origin_spacing_directions((1, 2, 2), (0, 0, 0), (1, 1, 1), np.eye(3))
    seg = Segmentation(geometry, np.array([[[[1, 0], [0, 0]]], [[[0, 1], [0, 2]]]], np.uint8),
                       [Segment("x", "x", layer=0, label_value=1), Segment("y", "y", layer=1, label_value=1),
                        Segment("z", "z", layer=1, label_value=2)])
    apply_metadata(seg, SegMetadata([SegmentEntry(2, LIVER, layer=None, SegmentLabel="Liver")]))
    assert seg.segment("z").name == "Liver" and seg.segment("z").terminology == LIVER
    with pytest.raises(InputError, match="labelID 1 matches segments 'x', 'y' in several layers"):
        apply_metadata(seg, SegMetadata([SegmentEntry(1, LIVER, layer=None)]))


# --- colours ----------------------------------------------------------------------

COLOURS = [(0, 0, 0), (1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0.5), (221 / 255, 130 / 255, 101 / 255),
           (0.2, 0.6, 0.9), (0.01, 0.02, 0.03), (1, 1, 0), (0.3, 0.0, 0.7)]


@pytest.mark.parametrize("rgb", COLOURS)
def test_colour_round_trip(rgb):
    lab = rgb_to_dicom_lab(rgb)
    assert len(lab) == 3 and all(isinstance(v, int) and 0 <= v <= 65535 for v in lab)
    assert dicom_lab_to_rgb(lab) == pytest.approx(rgb, abs=1 / 255)
    # the formulas used without highdicom give the same encoding
    assert np.abs(np.subtract(_lab16_from_rgb01_builtin(rgb), lab)).max() <= 1
    assert _rgb01_from_lab16_builtin(lab) == pytest.approx(rgb, abs=0.5 / 255)


def test_known_colour_values():
    # white: L* 100 and a*, b* 0 (0x8080) up to the rounding of the 4-digit sRGB matrix
    white = rgb_to_dicom_lab((1, 1, 1))
    assert white[0] == 65535 and abs(white[1] - 0x8080) <= 8 and abs(white[2] - 0x8080) <= 8
    assert rgb_to_dicom_lab((0, 0, 0)) == (0, 0x8080, 0x8080)
    grey = rgb_to_dicom_lab((0.5, 0.5, 0.5))  # L* of sRGB 0.5 is 53.39
    assert grey[0] == pytest.approx(53.39 * 65535 / 100, abs=15)
    pytest.importorskip("highdicom")
    from highdicom.color import CIELabColor

    assert rgb_to_dicom_lab((1.0, 165 / 255, 0.0)) == CIELabColor.from_string("orange").value


def test_colour_against_dcmqi_liver(tmp_path):
    """liver.dcm's RecommendedDisplayCIELabValue was computed by dcmqi from an RGB value that
    segimage2itkimage gives back in meta.json."""
    tool = require_tool("segimage2itkimage")
    seg = interop("dcmqi", "liver.dcm")
    subprocess.run([tool, "--inputDICOM", str(seg), "--outputDirectory", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    rgb8 = read_dcmqi_metadata(tmp_path / "meta.json").segments[0].recommendedDisplayRGBValue
    lab = tuple(int(v) for v in pydicom.dcmread(seg).SegmentSequence[0].RecommendedDisplayCIELabValue)
    assert lab == (41661, 41167, 40792) and rgb8 == (221, 130, 101)
    assert np.abs(np.multiply(dicom_lab_to_rgb(lab), 255) - rgb8).max() <= 1
    assert np.abs(np.multiply(_rgb01_from_lab16_builtin(lab), 255) - rgb8).max() <= 1
    assert np.abs(np.subtract(rgb_to_dicom_lab(np.divide(rgb8, 255)), lab)).max() <= 1


def test_colour_input_errors():
    with pytest.raises(InputError, match="3 numbers in"):
        rgb_to_dicom_lab((255, 0, 0))
    with pytest.raises(InputError, match="3 numbers in"):
        rgb_to_dicom_lab((0.5, 0.5))
    with pytest.raises(InputError, match="3 integers 0-65535"):
        dicom_lab_to_rgb((70000, 0, 0))
    with pytest.raises(InputError, match="3 integers 0-65535"):
        dicom_lab_to_rgb((1.5, 0, 0))
    with pytest.raises(InputError, match="3 integers 0-65535"):
        dicom_lab_to_rgb(("1", "2", "3"))
    # a valid CIELab outside the sRGB gamut is clipped into [0, 1]
    assert all(0.0 <= c <= 1.0 for c in dicom_lab_to_rgb((65535, 0, 65535)))
    assert all(0.0 <= c <= 1.0 for c in _rgb01_from_lab16_builtin((65535, 0, 65535)))

