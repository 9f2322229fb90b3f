"""Code tables (the bundled LIDC-IDRI characteristics) and evaluation CSV files."""
from __future__ import annotations

import copy
import json
import logging
import re

import numpy as np
import pytest
from conftest import REPO
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.dicom.evaluations import (
    CodeTable,
    evaluation,
    load_code_table,
    parse_code,
    read_evaluations_csv,
)
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Code, Segment, Segmentation

SEED = REPO.parent / "shared" / "seeds" / "001_d0decfc232216b34.txt"
LIDC_JSON = REPO / "DicomAnnotEmbed" / "DicomAnnotEmbedLib" / "dicom" / "codes" / "lidc_characteristics.json"


@pytest.fixture(scope="module")
def lidc():
    return load_code_table("lidc")


def write_table(tmp_path, data, name="table.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def minimal_table():
    return {"format_version": 1, "name": "mine", "concepts": [
        {"name": "Opacity", "code": {"value": "1001", "scheme": "99MINE", "meaning": "Opacity"},
         "values": {"1": {"value": "1101", "scheme": "99MINE", "meaning": "Faint"},
                    "2": {"value": "1102", "scheme": "99MINE", "meaning": "Dense"}}}]}


# --- the bundled LIDC table ---------------------------------------------------------------

def test_malignancy_4_is_the_seed_code(lidc):
    concept, value = evaluation(lidc, "malignancy", 4)
    assert concept == Code("900", "99LIDCQIICR", "Malignancy")
    assert value == Code("904", "99LIDCQIICR", "4 out of 5 (Moderately Suspicious for Cancer)")
    assert evaluation("lidc", "Likelihood of malignancy", "4") == (concept, value)


def test_every_concept_and_score_loads(lidc):
    expected_scores = {"Subtlety": 5, "Internal structure": 4, "Calcification": 6, "Sphericity": 5, "Margin": 5,
                       "Lobulation": 5, "Spiculation": 5, "Texture": 5, "Likelihood of malignancy": 5}
    assert {e.name: len(e.values) for e in lidc} == expected_scores
    for entry in lidc:
        assert list(entry.values) == list(range(1, len(entry.values) + 1))
        for score, code in entry.values.items():
            for key in (entry.name, entry.code, str(entry.code), entry.code.value, entry.code.meaning):
                assert evaluation(lidc, key, score) == (entry.code, code)
            assert lidc.evaluation(entry.name, code.meaning) == (entry.code, code)
            assert len(code.meaning) <= 64 and len(code.value) <= 16


def test_table_codes(lidc):
    """Spot checks against the seed's Tables 1 and 2 and Figures 3, 5 and 6."""
    assert lidc.evaluation("subtlety", 5)[1] == Code("105", "99LIDCQIICR", "5 out of 5 (Obvious)")
    assert lidc.evaluation("internalStructure", 1) == (Code("200", "99LIDCQIICR", "Internal structure"),
                                                       Code("C12471", "NCIt", "Soft tissue"))
    assert lidc.evaluation("internal structure", 3)[1] == Code("C12472", "NCIt", "Adipose tissue")
    assert lidc.evaluation("calcification", 6) == (Code("C3672", "NCIt", "Calcification"),
                                                   Code("RID28473", "RadLex", "Absent"))
    assert lidc.evaluation("calcification", 1)[1] == Code("RID35453", "RadLex", "Popcorn calcification sign")
    assert lidc.evaluation("sphericity", 2)[1] == Code("002", "99LIDCQIICR", "2 out of 5")
    assert lidc.evaluation("sphericity", 5)[1] == Code("RID5799", "RadLex", "round")
    assert lidc.evaluation("margin", 5)[1] == Code("RID5707", "RadLex", "Circumscribed margin")
    assert lidc.concept("margin").alternatives[5] == (Code("112137", "DCM", "Sharply defined"),)
    assert lidc.evaluation("lobulation", 1) == (Code("600", "99LIDCQIICR", "Lobulation"),
                                                Code("601", "99LIDCQIICR", "1 out of 5 (No lobulation)"))
    assert lidc.evaluation("spiculation", 5) == (Code("700", "99LIDCQIICR", "Spiculation"),
                                                 Code("705", "99LIDCQIICR", "5 out of 5 (Marked spiculation)"))
    assert lidc.evaluation("texture", 1) == (Code("C41144", "NCIt", "Texture"),
                                             Code("RID50153", "RadLex", "non-solid pulmonary nodule"))
    assert lidc.evaluation("malignancy", 3)[1] == Code("903", "99LIDCQIICR", "3 out of 5 (Indeterminate Likelihood)")
    assert lidc.concept("C45992").code == Code("C45992", "NCIt", "Subtlety score")


def test_table_rows_are_the_seed_rows(lidc):
    """Every value row (scheme, code, meaning, verbatim label) is a row of the seed's Table 2, but
    for the three RadLex meanings whose cell also holds a synonym (kept in source_text); the
    concepts are Table 1's rows but for the two taken from the encoded examples."""
    if not SEED.exists():
        pytest.skip(f"seed absent: {SEED}")
    text = re.sub(r'<a href="#">([^<]*)</a>', r"\1", SEED.read_text(encoding="utf-8"))
    document = json.loads(LIDC_JSON.read_text(encoding="utf-8"))
    for concept in document["concepts"]:
        c = concept["code"]
        if "source_text" in concept:  # Subtlety (case of the meaning) and Malignancy (code)
            assert f'({c["value"]},{c["scheme"]},"{c["meaning"]}")' in text
        else:
            assert f'{c["scheme"]}\t{c["value"]}\t{c["meaning"]}\t{concept["name"]}\t' in text
        for value in concept["values"].values():
            row = f'{value["scheme"]}\t{value["value"]}\t{value["meaning"]}\t{value["label"]}'
            if "source_text" in value:
                assert f'{value["scheme"]}\t{value["value"]}' in text.replace(" 112137", "")
                assert value["source_text"].split(": ", 1)[-1].startswith(value["meaning"]) or \
                    value["meaning"] in value["source_text"]
            else:
                assert row in text, row


def test_unknown_concept_and_score_list_the_valid_ones(lidc):
    with pytest.raises(InputError, match=r"unknown concept 'Roundness'.*Sphericity.*Likelihood of malignancy"):
        evaluation(lidc, "Roundness", 3)
    with pytest.raises(InputError, match=r"6 is not a score of 'Likelihood of malignancy'.*"
                                         r"5 = 5 out of 5 \(Highly Suspicious for Cancer\)"):
        evaluation(lidc, "malignancy", 6)
    for bad in ("4.5", 4.5, "four", True, "", None):
        with pytest.raises(InputError, match="valid scores: 1 = "):
            evaluation(lidc, "malignancy", bad)
    assert evaluation(lidc, "malignancy", np.int64(2))[1].value == "902"
    assert evaluation(lidc, "malignancy", " 2.0 ")[1].value == "902"
    assert evaluation(lidc, "margin", "5 - Sharp margin")[1].value == "RID5707"


def test_load_code_table_by_name_and_path(tmp_path, lidc):
    assert load_code_table("LIDC") is lidc
    assert load_code_table(LIDC_JSON).concept_names() == lidc.concept_names()
    mine = load_code_table(write_table(tmp_path, minimal_table()))
    assert mine.name == "mine"
    assert evaluation(mine, "opacity", 2) == (Code("1001", "99MINE", "Opacity"), Code("1102", "99MINE", "Dense"))
    with pytest.raises(InputError, match="neither a bundled table"):
        load_code_table(tmp_path / "absent.json")


def test_parse_code_reads_str_of_code():
    code = Code("C45992", "NCIt", "Subtlety score")
    assert parse_code(str(code)) == code
    assert parse_code("(RID5799, RadLex, round)") == Code("RID5799", "RadLex", "round")
    assert parse_code("Subtlety") is None


# --- bad code table files ---------------------------------------------------------------

def _mutated(change):
    data = minimal_table()
    change(data)
    return data


def _values(data):
    return data["concepts"][0]["values"]


BAD_TABLES = [
    ("not json", "{ \"format_version\": 1, ", "invalid JSON: .*line 1"),
    ("a list", "[]", "a code table is a JSON object"),
    ("no version", _mutated(lambda d: d.pop("format_version")), "'format_version' must be 1"),
    ("wrong format", _mutated(lambda d: d.update(format="other")), "'format' is 'other'"),
    ("unknown key", _mutated(lambda d: d["concepts"][0].update(vlaues={})), r"concepts\[0\] \('Opacity'\): unknown key.*'vlaues'"),
    ("no concepts", _mutated(lambda d: d.update(concepts=[])), "'concepts' must be a non-empty list"),
    ("no values", _mutated(lambda d: d["concepts"][0].update(values={})), "'values' must be a non-empty object"),
    ("bad score", _mutated(lambda d: _values(d).update(high=_values(d)["2"])), "score 'high' is not an integer"),
    ("empty code value", _mutated(lambda d: _values(d)["1"].update(value="")), r"values\['1'\]: 'value' is missing"),
    ("no scheme", _mutated(lambda d: d["concepts"][0]["code"].pop("scheme")), r"code: 'scheme' is missing"),
    ("long meaning", _mutated(lambda d: _values(d)["2"].update(meaning="x" * 65)), "65 characters long, more than the 64"),
    ("long value", _mutated(lambda d: _values(d)["2"].update(value="1" * 17)), "17 characters long, more than the 16"),
    ("backslash", _mutated(lambda d: _values(d)["2"].update(meaning="a\\b")), "backslash"),
    ("spaces", _mutated(lambda d: _values(d)["2"].update(meaning=" Dense")), "leading or trailing spaces"),
    ("same code twice", _mutated(lambda d: _values(d)["2"].update(value="1101")), "scores 1 and 2 have the same code"),
    ("same concept code", _mutated(lambda d: d["concepts"].append(
        dict(copy.deepcopy(d["concepts"][0]), name="Other"))), "'Opacity' and 'Other' have the same code"),
    ("name clash", _mutated(lambda d: d["concepts"].append(dict(
        copy.deepcopy(d["concepts"][0]), name="Density", aliases=["opacity"],
        code={"value": "1002", "scheme": "99MINE", "meaning": "Density"}))),
     "'opacity' would name both concept 'Opacity' and 'Density'"),
    ("bad alternatives", _mutated(lambda d: _values(d)["2"].update(alternatives={})), "'alternatives' must be a list"),
]


@pytest.mark.parametrize("label, data, problem", BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_bad_table_files_are_input_errors_naming_file_and_problem(tmp_path, label, data, problem):
    path = write_table(tmp_path, data)
    with pytest.raises(InputError, match=problem) as error:
        CodeTable.from_file(path)
    assert error.value.path == str(path) and str(error.value).startswith(str(path))


def test_duplicate_json_keys_are_errors(tmp_path):
    text = json.dumps(minimal_table()).replace('"2": {', '"1": {')
    with pytest.raises(InputError, match="key '1' appears twice"):
        CodeTable.from_file(write_table(tmp_path, text))


def test_missing_and_non_utf8_table_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        CodeTable.from_file(tmp_path / "nothing.json")
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(minimal_table()).replace("Dense", "Dense\u00e9").encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        CodeTable.from_file(path)


# --- evaluation CSV files ---------------------------------------------------------------

def write_csv(tmp_path, text, name="evaluations.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


CSV = '''segment,concept,value,comment
Nodule 1,Malignancy,4,first reader
Nodule 1,calcification,6,
# a comment row
Nodule 1,Texture,solid pulmonary nodule,

Nodule 2,"(C45992, NCIt, ""Subtlety score"")",5,
Nodule 2,Comment,"irregular, next to the fissure",
Nodule 2,"(RID5741, RadLex, ""calcification pattern"")","(RID5827, RadLex, ""central calcification"")",
'''


def test_read_evaluations_csv(tmp_path, lidc):
    records = read_evaluations_csv(write_csv(tmp_path, CSV), "lidc")
    assert [(r.segment, r.line) for r in records] == [("Nodule 1", 2), ("Nodule 1", 3), ("Nodule 1", 5),
                                                      ("Nodule 2", 7), ("Nodule 2", 8), ("Nodule 2", 9)]
    malignancy, calcification, texture, subtlety, comment, coded = records
    assert (malignancy.concept, malignancy.value, malignancy.score) == (
        *lidc.evaluation("malignancy", 4), 4)
    assert calcification.value == Code("RID28473", "RadLex", "Absent") and calcification.is_coded
    assert texture.score == 5 and texture.value.value == "RID50151"
    assert subtlety.concept_name == "Subtlety" and subtlety.value.value == "105"
    assert comment.concept is None and comment.concept_name == "Comment"
    assert comment.text == "irregular, next to the fissure" and not comment.is_coded
    assert coded.concept == Code("RID5741", "RadLex", "calcification pattern")
    assert coded.value == Code("RID5827", "RadLex", "central calcification") and coded.score is None


def test_csv_segments_are_resolved_against_a_segmentation(tmp_path):
    g = VolumeGeometry.from_origin_spacing_directions((2, 2, 2), (0, 0, 0), (1, 1, 1), np.eye(3))
    seg = Segmentation(g, np.zeros((1, 2, 2, 2), np.uint8),
                       [Segment("seg_1", "Nodule 1"), Segment("seg_2", "Nodule 2", label_value=2)])
    path = write_csv(tmp_path, "Segment,Concept,Value\nNodule 1,malignancy,2\nseg_2,malignancy,3\n")
    assert [r.segment for r in read_evaluations_csv(path, "lidc", seg)] == ["seg_1", "seg_2"]
    path = write_csv(tmp_path, "segment,concept,value\nNodule 9,malignancy,2\n", "unknown.csv")
    with pytest.raises(InputError, match=r"line 2: no segment with id or name 'Nodule 9'; segments: 'Nodule 1'"):
        read_evaluations_csv(path, "lidc", seg)


def test_csv_semicolons_and_byte_order_mark(tmp_path):
    path = write_csv(tmp_path, "value;segment;concept\n3;N1;Spiculation\n", encoding="utf-8-sig")
    [record] = read_evaluations_csv(path, "lidc")
    assert record.segment == "N1" and record.value.meaning == "3 out of 5"


@pytest.mark.parametrize("text, problem", [
    ("segment,concept,value\nN1,malignancy,7\n", r"line 2: '7' is not a score of 'Likelihood of malignancy'.*1 = 1 out"),
    ("segment,concept,value\nN1,malignancy,\n", r"line 2: no value for 'malignancy' of segment 'N1'"),
    ("segment,concept,value\n,malignancy,2\n", "line 2: the segment cell is empty"),
    ("segment,concept\nN1,malignancy\n", "the first row must name the columns segment, concept, value"),
    ("", "the CSV is empty"),
    ("segment,concept,value\nN1,malignancy,2\nN1,Malignancy,3\n",
     r"line 3: segment 'N1' already has a 'Likelihood of malignancy' value on line 2"),
    ("segment,concept,value\nN1,\"(C1, NCIt)\",2\n", r"line 2: the concept '\(C1, NCIt\)' looks like a code"),
])
def test_bad_csv_rows_are_input_errors_with_file_and_line(tmp_path, text, problem):
    path = write_csv(tmp_path, text)
    with pytest.raises(InputError, match=problem) as error:
        read_evaluations_csv(path, "lidc")
    assert error.value.path == str(path)


def test_csv_near_miss_concept_is_warned_about(tmp_path, caplog):
    path = write_csv(tmp_path, "segment,concept,value\nN1,Malignancyy,4\n")
    with caplog.at_level(logging.WARNING):
        [record] = read_evaluations_csv(path, "lidc")
    assert record.text == "4" and record.concept is None
    assert "did you mean Likelihood of malignancy" in caplog.text
