"""Tests for dicomnode.routing.match: every operator, nesting, facts, reasons, rule selection."""

from __future__ import annotations

import datetime
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, IS, DSfloat, PersonName

from dicomnode.routing import match, patterns, rules

MR_T1_POST = {
    "Modality": "MR",
    "SeriesDescription": "AX T1 POST GD ",
    "ImageType": MultiValue(str, ["ORIGINAL", "PRIMARY", "M", "ND"]),
    "SliceThickness": DSfloat("1.250"),
    "SeriesNumber": IS("7"),
    "StudyDate": "20240115",
    "AcquisitionDateTime": "20240115093000.000000",
    "PatientName": PersonName("Doe^Jane"),
    "ContrastBolusAgent": "",
    "Manufacturer": None,
    "BodyPartExamined": "BRAIN",
}
FACTS = {"instance_count": 180, "calling_ae_title": "MR01", "peer_host": "10.0.0.7"}


def _rule(when: dict[str, Any], **fields: Any) -> rules.Rule:
    return rules.parse_rule({"name": "r", "when": when, "run": "montage", **fields})


def _attrs(**overrides: Any) -> match.SeriesAttributes:
    facts = {key: overrides.pop(key) for key in list(overrides) if key in FACTS}
    return match.SeriesAttributes(
        attributes={**MR_T1_POST, **overrides}, **{**FACTS, **facts}
    )


# (id, when, attribute overrides, ok, reasons): MONAI's TEST_CASES style
TEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool, tuple[str, ...]]] = [
    # equals
    ("equals", {"attr": "Modality", "equals": "MR"}, {}, True, ("Modality is 'MR'",)),
    ("equals-not", {"attr": "Modality", "equals": "MR"}, {"Modality": "CT"}, False,
     ("Modality is 'CT', not 'MR'",)),
    ("equals-trims-padding", {"attr": "SeriesDescription", "equals": "AX T1 POST GD"}, {},
     True, ("SeriesDescription is 'AX T1 POST GD'",)),
    ("equals-case-sensitive", {"attr": "Modality", "equals": "mr"}, {}, False,
     ("Modality is 'MR', not 'mr'",)),
    ("equals-number-vs-DS", {"attr": "SliceThickness", "equals": 1.25}, {}, True,
     ("SliceThickness is 1.250",)),
    ("equals-number-vs-text", {"attr": "SliceThickness", "equals": 1}, {"SliceThickness": "1.0 "},
     True, ("SliceThickness is '1.0'",)),
    ("equals-number-vs-IS", {"attr": "SeriesNumber", "equals": 8}, {}, False,
     ("SeriesNumber is 7, not 8",)),
    ("equals-text-vs-IS", {"attr": "SeriesNumber", "equals": "7"}, {}, True,
     ("SeriesNumber is 7",)),
    ("equals-person-name", {"attr": "PatientName", "equals": "Doe^Jane"}, {}, True,
     ("PatientName is 'Doe^Jane'",)),
    ("equals-list", {"attr": "ImageType", "equals": ["ORIGINAL", "PRIMARY", "M", "ND"]}, {},
     True, ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND']",)),
    ("equals-list-order", {"attr": "ImageType", "equals": ["PRIMARY", "ORIGINAL", "M", "ND"]},
     {}, False,
     ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], not ['PRIMARY', 'ORIGINAL', 'M', 'ND']",)),
    ("equals-scalar-vs-multi", {"attr": "ImageType", "equals": "ORIGINAL"}, {}, False,
     ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], not 'ORIGINAL'",)),
    ("equals-absent", {"attr": "ProtocolName", "equals": "x"}, {}, False,
     ("ProtocolName is absent",)),
    ("equals-empty", {"attr": "ContrastBolusAgent", "equals": "x"}, {}, False,
     ("ContrastBolusAgent is empty",)),
    ("equals-none-is-empty", {"attr": "Manufacturer", "equals": "x"}, {}, False,
     ("Manufacturer is empty",)),
    # in
    ("in", {"attr": "Modality", "in": ["CT", "MR"]}, {}, True,
     ("Modality is 'MR', one of ['CT', 'MR']",)),
    ("in-not", {"attr": "Modality", "in": ["CT", "PT"]}, {}, False,
     ("Modality is 'MR', not one of ['CT', 'PT']",)),
    ("in-numbers", {"attr": "SeriesNumber", "in": [5, 6, 7]}, {}, True,
     ("SeriesNumber is 7, one of [5, 6, 7]",)),
    ("in-multi", {"attr": "ImageType", "in": ["ORIGINAL"]}, {}, False,
     ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], not one of ['ORIGINAL']",)),
    ("in-absent", {"attr": "ProtocolName", "in": ["x"]}, {}, False, ("ProtocolName is absent",)),
    # matches
    ("matches", {"attr": "SeriesDescription", "matches": "(?i)t1.*(gd|post)"}, {}, True,
     ("SeriesDescription is 'AX T1 POST GD', which matches '(?i)t1.*(gd|post)'",)),
    ("matches-not", {"attr": "SeriesDescription", "matches": "(?i)t2"}, {}, False,
     ("SeriesDescription is 'AX T1 POST GD', which does not match '(?i)t2'",)),
    ("matches-anchored", {"attr": "SeriesDescription", "matches": "^T1"}, {}, False,
     ("SeriesDescription is 'AX T1 POST GD', which does not match '^T1'",)),
    ("matches-multi-joined", {"attr": "ImageType", "matches": r"^ORIGINAL\\PRIMARY"}, {}, True,
     (r"ImageType is 'ORIGINAL\PRIMARY\M\ND', which matches '^ORIGINAL\\PRIMARY'",)),
    ("matches-capped", {"attr": "ImageComments", "matches": "TAIL"},
     {"ImageComments": "x" * 300 + "TAIL"}, False,
     ("ImageComments is '" + "x" * 61 + "...', which does not match 'TAIL' "
      f"(first {patterns.MAX_VALUE_LENGTH} characters searched)",)),
    ("matches-empty", {"attr": "ContrastBolusAgent", "matches": ".*"}, {}, False,
     ("ContrastBolusAgent is empty",)),
    # range
    ("range-number", {"attr": "SliceThickness", "range": {"min": 0.5, "max": 3}}, {}, True,
     ("SliceThickness is 1.250, between 0.5 and 3",)),
    ("range-number-above", {"attr": "SliceThickness", "range": {"min": 0.5, "max": 1}}, {},
     False, ("SliceThickness is 1.250, not between 0.5 and 1",)),
    ("range-number-inclusive", {"attr": "SliceThickness", "range": {"max": 1.25}}, {}, True,
     ("SliceThickness is 1.250, at most 1.25",)),
    ("range-number-min-only", {"attr": "SeriesNumber", "range": {"min": 10}}, {}, False,
     ("SeriesNumber is 7, not at least 10",)),
    ("range-number-text", {"attr": "SliceThickness", "range": {"min": 2}},
     {"SliceThickness": " 2.5"}, True, ("SliceThickness is '2.5', at least 2",)),
    ("range-not-a-number", {"attr": "SliceThickness", "range": {"min": 2}},
     {"SliceThickness": "thin"}, False, ("SliceThickness is 'thin', not a number",)),
    ("range-multi", {"attr": "SliceThickness", "range": {"min": 2}},
     {"SliceThickness": ["1", "2"]}, False,
     ("SliceThickness is ['1', '2']: 2 values, and range tests one",)),
    ("range-date", {"attr": "StudyDate", "range": {"min": 20240101, "max": "20240131"}}, {},
     True, ("StudyDate is '20240115', between '20240101' and '20240131'",)),
    ("range-date-before", {"attr": "StudyDate", "range": {"min": "20240201"}}, {}, False,
     ("StudyDate is '20240115', not at least '20240201'",)),
    ("range-date-pydicom-DA", {"attr": "StudyDate", "range": {"max": "20240115"}},
     {"StudyDate": DA("20240115")}, True, ("StudyDate is '20240115', at most '20240115'",)),
    ("range-date-python-date", {"attr": "StudyDate", "range": {"max": "20240114"}},
     {"StudyDate": datetime.date(2024, 1, 15)}, False,
     ("StudyDate is '20240115', not at most '20240114'",)),
    ("range-datetime-first-8", {"attr": "AcquisitionDateTime", "range": {"min": "20240115"}},
     {}, True, ("AcquisitionDateTime is '20240115093000.000000', at least '20240115'",)),
    ("range-not-a-date", {"attr": "StudyDate", "range": {"min": "20240101"}},
     {"StudyDate": "2024-01"}, False, ("StudyDate is '2024-01', not a date (YYYYMMDD)",)),
    # exists
    ("exists", {"attr": "BodyPartExamined", "exists": True}, {}, True,
     ("BodyPartExamined is present",)),
    ("exists-absent", {"attr": "ProtocolName", "exists": True}, {}, False,
     ("ProtocolName is absent",)),
    ("exists-empty", {"attr": "ContrastBolusAgent", "exists": True}, {}, False,
     ("ContrastBolusAgent is empty",)),
    ("exists-false-absent", {"attr": "ProtocolName", "exists": False}, {}, True,
     ("ProtocolName is absent",)),
    ("exists-false-empty", {"attr": "ContrastBolusAgent", "exists": False}, {}, True,
     ("ContrastBolusAgent is empty",)),
    ("exists-false-present", {"attr": "BodyPartExamined", "exists": False}, {}, False,
     ("BodyPartExamined is present",)),
    # contains
    ("contains", {"attr": "ImageType", "contains": "PRIMARY"}, {}, True,
     ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], which contains 'PRIMARY'",)),
    ("contains-not", {"attr": "ImageType", "contains": "DERIVED"}, {}, False,
     ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], which does not contain 'DERIVED'",)),
    ("contains-single-value", {"attr": "ImageType", "contains": "DERIVED"},
     {"ImageType": "DERIVED"}, True, ("ImageType is 'DERIVED', which contains 'DERIVED'",)),
    ("contains-is-not-substring", {"attr": "BodyPartExamined", "contains": "BRA"}, {}, False,
     ("BodyPartExamined is 'BRAIN', which does not contain 'BRA'",)),
    ("contains-number", {"attr": "ImagePositionPatient", "contains": 0},
     {"ImagePositionPatient": [DSfloat("-125.0"), DSfloat("0.0"), DSfloat("10")]}, True,
     ("ImagePositionPatient is [-125.0, 0.0, 10], which contains 0",)),
    ("contains-absent", {"attr": "ImageType", "contains": "X"}, {"ImageType": []}, False,
     ("ImageType is empty",)),
    # facts
    ("fact-range", {"fact": "instance_count", "range": {"min": 32}}, {}, True,
     ("instance_count is 180, at least 32",)),
    ("fact-range-too-few", {"fact": "instance_count", "range": {"min": 32}},
     {"instance_count": 12}, False, ("instance_count is 12, not at least 32",)),
    ("fact-equals", {"fact": "calling_ae_title", "equals": "MR01"}, {}, True,
     ("calling_ae_title is 'MR01'",)),
    ("fact-in", {"fact": "calling_ae_title", "in": ["CT01", "CT02"]}, {}, False,
     ("calling_ae_title is 'MR01', not one of ['CT01', 'CT02']",)),
    ("fact-matches", {"fact": "peer_host", "matches": r"^10\."}, {}, True,
     (r"peer_host is '10.0.0.7', which matches '^10\.'",)),
    ("fact-absent", {"fact": "calling_ae_title", "equals": "MR01"},
     {"calling_ae_title": None}, False, ("calling_ae_title is absent",)),
    ("fact-exists-false", {"fact": "peer_host", "exists": False}, {"peer_host": None}, True,
     ("peer_host is absent",)),
    # nesting: every leaf evaluated, reasons in tree order
    ("all", {"all": [{"attr": "Modality", "equals": "MR"},
                     {"attr": "BodyPartExamined", "equals": "BRAIN"}]}, {}, True,
     ("Modality is 'MR'", "BodyPartExamined is 'BRAIN'")),
    ("all-one-false", {"all": [{"attr": "Modality", "equals": "CT"},
                               {"attr": "BodyPartExamined", "equals": "BRAIN"}]}, {}, False,
     ("Modality is 'MR', not 'CT'", "BodyPartExamined is 'BRAIN'")),
    ("any", {"any": [{"attr": "Modality", "equals": "CT"},
                     {"attr": "Modality", "equals": "MR"}]}, {}, True,
     ("Modality is 'MR', not 'CT'", "Modality is 'MR'")),
    ("any-none", {"any": [{"attr": "Modality", "equals": "CT"},
                          {"attr": "ProtocolName", "exists": True}]}, {}, False,
     ("Modality is 'MR', not 'CT'", "ProtocolName is absent")),
    ("not", {"not": {"attr": "ImageType", "contains": "DERIVED"}}, {}, True,
     ("ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], which does not contain 'DERIVED'",)),
    ("not-false", {"not": {"attr": "Modality", "equals": "MR"}}, {}, False,
     ("Modality is 'MR'",)),
    ("not-not", {"not": {"not": {"attr": "Modality", "equals": "MR"}}}, {}, True,
     ("Modality is 'MR'",)),
    ("nested", {"all": [{"any": [{"attr": "Modality", "equals": "CT"},
                                 {"fact": "instance_count", "range": {"min": 100}}]},
                        {"not": {"any": [{"attr": "ImageType", "contains": "DERIVED"},
                                         {"attr": "SeriesDescription", "matches": "(?i)scout"}]}}]},
     {}, True,
     ("Modality is 'MR', not 'CT'",
      "instance_count is 180, at least 100",
      "ImageType is ['ORIGINAL', 'PRIMARY', 'M', 'ND'], which does not contain 'DERIVED'",
      "SeriesDescription is 'AX T1 POST GD', which does not match '(?i)scout'")),
]


@pytest.mark.parametrize(
    ("when", "overrides", "ok", "reasons"),
    [case[1:] for case in TEST_CASES],
    ids=[case[0] for case in TEST_CASES],
)
def test_match(
    when: dict[str, Any], overrides: dict[str, Any], ok: bool, reasons: tuple[str, ...]
) -> None:
    result = match.match(_rule(when), _attrs(**overrides))
    assert result == match.Match(ok=ok, reasons=reasons)


STYLE_GUIDE_RULES = """
- name: brain-mr-to-tumour-seg
  when: {all: [{attr: Modality, equals: MR},
               {attr: SeriesDescription, matches: "(?i)t1.*(gd|post)"},
               {not: {attr: ImageType, contains: DERIVED}}]}
  quiet_seconds: 30
  run: brain_tumour_seg
  send_to: [pacs-main]
"""


def test_style_guide_rule_explains_a_derived_series() -> None:
    [rule] = rules.load_rules(STYLE_GUIDE_RULES)
    assert match.match(rule, _attrs()).ok
    derived = match.match(rule, _attrs(ImageType=["DERIVED", "SECONDARY"]))
    assert derived == match.Match(
        ok=False,
        reasons=(
            "Modality is 'MR'",
            "SeriesDescription is 'AX T1 POST GD', which matches '(?i)t1.*(gd|post)'",
            "ImageType is ['DERIVED', 'SECONDARY'], which contains 'DERIVED'",
        ),
    )


def test_match_ignores_enabled_so_a_dry_run_can_try_a_disabled_rule() -> None:
    rule = _rule({"attr": "Modality", "equals": "MR"}, enabled=False)
    assert match.match(rule, _attrs()).ok


def test_select_rules_enabled_matching_by_priority_then_name() -> None:
    mr = {"attr": "Modality", "equals": "MR"}
    candidates = [
        rules.parse_rule({"name": "low", "priority": -1, "when": mr, "run": "a"}),
        rules.parse_rule({"name": "b-high", "priority": 5, "when": mr, "run": "a"}),
        rules.parse_rule({"name": "a-high", "priority": 5, "when": mr, "run": "a"}),
        rules.parse_rule({"name": "off", "priority": 9, "enabled": False, "when": mr, "run": "a"}),
        rules.parse_rule(
            {"name": "ct", "priority": 9, "when": {"attr": "Modality", "equals": "CT"}, "run": "a"}
        ),
    ]
    chosen = match.select_rules(candidates, _attrs())
    assert [rule.name for rule in chosen] == ["a-high", "b-high", "low"]
    assert match.select_rules(candidates, _attrs(Modality="US")) == []


def test_series_attributes_are_read_only_and_counts_not_negative() -> None:
    source = {"Modality": "MR"}
    attrs = match.SeriesAttributes(attributes=source)
    source["Modality"] = "CT"
    assert attrs.attributes["Modality"] == "MR"
    with pytest.raises(TypeError):
        attrs.attributes["Modality"] = "CT"  # type: ignore[index]
    with pytest.raises(ValueError, match="instance_count"):
        match.SeriesAttributes(instance_count=-1)


def test_attrs_from_dataset_keeps_testable_top_level_values() -> None:
    ds = pydicom.dcmread(pydicom.examples.get_path("ct"))
    ds.add_new(0x00091001, "LO", "private")
    pixel_data = ds.get_item(0x7FE00010)
    assert isinstance(pixel_data, RawDataElement)

    attrs = match.attrs_from_dataset(
        ds, instance_count=3, calling_ae_title="CT01", peer_host="127.0.0.1"
    )

    values = attrs.attributes
    assert values["Modality"] == "CT"
    assert values["ImageType"] == ("ORIGINAL", "PRIMARY", "AXIAL")
    assert values["PatientName"] == str(ds.PatientName)
    assert isinstance(values["PatientName"], str)
    assert "PixelData" not in values
    assert not any(isinstance(value, bytes) for value in values.values())
    assert all(keyword for keyword in values)  # no private or unnamed elements
    assert isinstance(ds.get_item(0x7FE00010), RawDataElement)  # bulk data never read
    assert (attrs.instance_count, attrs.calling_ae_title, attrs.peer_host) == (
        3,
        "CT01",
        "127.0.0.1",
    )
    rule = _rule({"all": [{"attr": "Modality", "equals": "CT"},
                          {"attr": "ImageType", "contains": "AXIAL"},
                          {"fact": "calling_ae_title", "equals": "CT01"}]})
    assert match.match(rule, attrs).ok


def test_attrs_from_dataset_skips_sequences() -> None:
    ds = Dataset()
    ds.Modality = "SR"
    ds.ContentSequence = [Dataset()]
    attrs = match.attrs_from_dataset(ds, instance_count=1, calling_ae_title=None, peer_host=None)
    assert dict(attrs.attributes) == {"Modality": "SR"}
