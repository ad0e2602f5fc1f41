"""Tests for dicomnode.routing.rules and .conditions: the YAML form, each error's path and why."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dicomnode.routing import conditions, rules

STYLE_GUIDE_RULES = """
- name: brain-mr-to-tumour-seg
  when: {all: [{attr: Modality, equals: MR},
               {attr: SeriesDescription, matches: "(?i)t1.*(gd|post)"},
               {not: {attr: ImageType, contains: DERIVED}}]}
  quiet_seconds: 30
  run: brain_tumour_seg
  send_to: [pacs-main]
"""

MR = {"attr": "Modality", "equals": "MR"}


def _rule(**fields: Any) -> dict[str, Any]:
    return {"name": "r", "when": MR, "run": "montage", **fields}


def test_style_guide_example_parses() -> None:
    [rule] = rules.load_rules(STYLE_GUIDE_RULES)
    assert rule.name == "brain-mr-to-tumour-seg"
    assert (rule.priority, rule.enabled, rule.quiet_seconds) == (0, True, 30)
    assert rule.rerun_on_new_instances is True
    assert rule.send_to_calling_ae is False
    assert rule.run == [rules.PipelineCall(pipeline="brain_tumour_seg")]
    assert rule.send_to == ["pacs-main"]
    assert isinstance(rule.when, conditions.AllOf)
    modality, description, not_derived = rule.when.all
    assert isinstance(modality, conditions.Leaf)
    assert modality.operator == ("equals", "MR")
    assert isinstance(description, conditions.Leaf)
    assert description.operator == ("matches", "(?i)t1.*(gd|post)")
    assert isinstance(not_derived, conditions.Not)
    assert isinstance(not_derived.not_, conditions.Leaf)
    assert not_derived.not_.subject == "ImageType"
    assert not_derived.not_.operator == ("contains", "DERIVED")


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("seg", [("seg", {})]),
        (["seg", "montage"], [("seg", {}), ("montage", {})]),
        ([{"pipeline": "seg", "params": {"threshold": 0.5, "labels": [1, 2]}}],
         [("seg", {"threshold": 0.5, "labels": [1, 2]})]),
        (["montage", {"pipeline": "seg"}], [("montage", {}), ("seg", {})]),
    ],
    ids=["string", "list-of-strings", "with-params", "mixed"],
)
def test_run_forms(run: object, expected: list[tuple[str, dict[str, Any]]]) -> None:
    rule = rules.parse_rule(_rule(run=run))
    assert [(call.pipeline, call.params) for call in rule.run] == expected


# every operator and subject that must be accepted, with what the leaf then holds
VALID_LEAVES: list[tuple[str, dict[str, Any], tuple[str, object]]] = [
    ("equals-number", {"attr": "SliceThickness", "equals": 1.5}, ("equals", 1.5)),
    ("equals-list", {"attr": "ImageType", "equals": ["ORIGINAL", "PRIMARY"]},
     ("equals", ["ORIGINAL", "PRIMARY"])),
    ("in", {"attr": "Modality", "in": ["CT", "MR"]}, ("in", ["CT", "MR"])),
    ("matches", {"attr": "ProtocolName", "matches": "^(AX|SAG).*T2.*FLAIR"},
     ("matches", "^(AX|SAG).*T2.*FLAIR")),
    ("range-number", {"attr": "SliceThickness", "range": {"min": 0.5, "max": 3}},
     ("range", conditions.Range(min=0.5, max=3))),
    ("range-ambiguous-numeric-vr", {"attr": "SmallestImagePixelValue", "range": {"min": 0}},
     ("range", conditions.Range(min=0))),
    ("range-date-int", {"attr": "StudyDate", "range": {"min": 20240101}},
     ("range", conditions.Range(min="20240101"))),
    ("range-datetime", {"attr": "AcquisitionDateTime", "range": {"max": "20241231"}},
     ("range", conditions.Range(max="20241231"))),
    ("exists-false", {"attr": "ContrastBolusAgent", "exists": False}, ("exists", False)),
    ("contains", {"attr": "ImageType", "contains": "DERIVED"}, ("contains", "DERIVED")),
    ("fact-range", {"fact": "instance_count", "range": {"min": 32}},
     ("range", conditions.Range(min=32))),
    ("fact-equals", {"fact": "calling_ae_title", "equals": "MR01"}, ("equals", "MR01")),
    ("fact-matches", {"fact": "peer_host", "matches": r"^10\."}, ("matches", r"^10\.")),
]


@pytest.mark.parametrize(
    ("when", "operator"), [case[1:] for case in VALID_LEAVES], ids=[c[0] for c in VALID_LEAVES]
)
def test_valid_leaves(when: dict[str, Any], operator: tuple[str, object]) -> None:
    leaf = rules.parse_rule(_rule(when=when)).when
    assert isinstance(leaf, conditions.Leaf)
    assert leaf.operator == operator


# (id, rule fields, path, reason or the start of it); paths are relative to the rule
INVALID_RULES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown-keyword", {"when": {"attr": "Modalty", "equals": "MR"}}, "when.attr",
     "unknown DICOM keyword 'Modalty' (did you mean 'Modality'?)"),
    ("unknown-keyword-no-hint", {"when": {"attr": "Zzzzzz", "equals": 1}}, "when.attr",
     "unknown DICOM keyword 'Zzzzzz'"),
    ("sequence-keyword",
     {"when": {"attr": "ReferencedImageSequence", "exists": True}}, "when.attr",
     "ReferencedImageSequence has VR SQ; rules test the top-level text"),
    ("bulk-keyword", {"when": {"attr": "PixelData", "exists": True}}, "when.attr",
     "PixelData has VR OB or OW; rules test"),
    ("two-operators", {"when": {"all": [MR, {"attr": "Modality", "equals": "MR", "in": ["CT"]}]}},
     "when.all[1]",
     "a leaf takes exactly one operator (equals, in, matches, range, exists, contains); "
     "found equals, in"),
    ("no-operator", {"when": {"attr": "Modality"}}, "when",
     "a leaf takes exactly one operator (equals, in, matches, range, exists, contains); "
     "found none"),
    ("attr-and-fact", {"when": {"attr": "Modality", "fact": "peer_host", "equals": "x"}},
     "when", "a leaf names exactly one subject: 'attr: <DICOM keyword>' or "
     "'fact: instance_count | calling_ae_title | peer_host'"),
    ("no-subject", {"when": {"equals": "MR"}}, "when", "a leaf names exactly one subject"),
    ("unknown-fact", {"when": {"fact": "peer_hst", "equals": "x"}}, "when.fact",
     "Input should be 'instance_count', 'calling_ae_title' or 'peer_host', got 'peer_hst'"),
    ("unknown-operator", {"when": {"attr": "Modality", "is": "MR"}}, "when.is", "unknown key"),
    ("bad-regex", {"when": {"all": [MR, {"attr": "SeriesDescription", "matches": "(t1"}]}},
     "when.all[1].matches",
     "not a valid regular expression: missing ), unterminated subpattern at position 0"),
    ("regex-too-long", {"when": {"attr": "SeriesDescription", "matches": "a" * 513}},
     "when.matches", "pattern is 513 characters long; the limit is 512"),
    ("regex-nested-quantifier", {"when": {"attr": "SeriesDescription", "matches": "(a+)+$"}},
     "when.matches",
     "pattern too costly to search: a quantifier or alternation inside an open-ended repeat, "
     "such as (a+)+ or (a|ab)*"),
    ("regex-not-a-string", {"when": {"attr": "SeriesDescription", "matches": 12}},
     "when.matches", "Input should be a valid string, got 12"),
    ("empty-all", {"when": {"all": []}}, "when.all", "must not be empty"),
    ("empty-any", {"when": {"not": {"any": []}}}, "when.not.any", "must not be empty"),
    ("empty-in", {"when": {"attr": "Modality", "in": []}}, "when.in",
     "must list at least one value"),
    ("in-not-a-list", {"when": {"attr": "Modality", "in": "MR"}}, "when.in",
     "must be a list of strings or numbers, got 'MR'"),
    ("mixed-node", {"when": {"all": [MR], "any": [MR]}}, "when",
     "a condition is exactly one of all, any, not, or a leaf (attr or fact plus one operator); "
     "found all, any"),
    ("not-a-condition", {"when": {"any": [MR, "Modality == MR"]}}, "when.any[1]",
     "a condition is a mapping: all: [...], any: [...], not: <condition>, or a leaf such as "
     "attr: Modality, equals: MR, got 'Modality == MR'"),
    ("bool-operand", {"when": {"attr": "Modality", "equals": True}}, "when.equals",
     "must be a string or a number, got True"),
    ("range-reversed", {"when": {"attr": "SliceThickness", "range": {"min": 3, "max": 1}}},
     "when.range", "min 3 is greater than max 1"),
    ("range-dates-reversed",
     {"when": {"attr": "StudyDate", "range": {"min": "20240201", "max": 20240101}}},
     "when.range", "min 20240201 is after max 20240101"),
    ("range-empty", {"when": {"attr": "SliceThickness", "range": {}}}, "when.range",
     "a range needs min, max or both"),
    ("range-on-text", {"when": {"attr": "Modality", "range": {"min": 1}}}, "when.range",
     "range works on numbers and dates; Modality has VR CS"),
    ("range-on-text-fact", {"when": {"fact": "peer_host", "range": {"min": 1}}}, "when.range",
     "range works on numbers and dates; peer_host has VR AE"),
    ("range-text-bound", {"when": {"attr": "SliceThickness", "range": {"min": "thin"}}},
     "when.range", "range bounds for SliceThickness are numbers, got 'thin'"),
    ("range-bad-date", {"when": {"attr": "StudyDate", "range": {"min": "20241301"}}},
     "when.range", "range bounds for StudyDate are dates written YYYYMMDD, got '20241301'"),
    ("range-unknown-bound", {"when": {"attr": "StudyDate", "range": {"from": "20240101"}}},
     "when.range.from", "unknown key"),
    ("missing-when", {"when": None}, "when", "a condition is a mapping"),
    ("bad-name", {"name": "Brain MR"}, "name",
     "a rule name is a slug of lowercase letters and digits joined by single hyphens or "
     "underscores (e.g. brain-mr-to-tumour-seg), got 'Brain MR'"),
    ("empty-run", {"run": []}, "run", "must not be empty"),
    ("bad-pipeline", {"run": ["Seg Net"]}, "run[0].pipeline",
     "a pipeline name is lowercase letters, digits and underscores, got 'Seg Net'"),
    ("duplicate-pipeline", {"run": ["seg", {"pipeline": "seg", "params": {"a": 1}}]}, "run",
     "pipeline 'seg' is listed twice"),
    ("duplicate-destination", {"send_to": ["pacs", "pacs"]}, "send_to",
     "destination 'pacs' is listed twice"),
    ("bad-destination", {"send_to": ["pacs main"]}, "send_to",
     "a destination name is letters, digits, '.', '_' and '-', got 'pacs main'"),
    ("quiet-too-short", {"quiet_seconds": 0}, "quiet_seconds",
     "Input should be greater than or equal to 1, got 0"),
    ("quiet-too-long", {"quiet_seconds": 3601}, "quiet_seconds",
     "Input should be less than or equal to 3600, got 3601"),
    ("priority-bool", {"priority": True}, "priority", "Input should be a valid integer, got True"),
    ("enabled-string", {"enabled": "no"}, "enabled", "Input should be a valid boolean, got 'no'"),
    ("unknown-field", {"quiet_second": 30}, "quiet_second", "unknown key"),
]


@pytest.mark.parametrize(
    ("fields", "path", "reason"),
    [case[1:] for case in INVALID_RULES],
    ids=[case[0] for case in INVALID_RULES],
)
def test_invalid_rule_path_and_reason(fields: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(rules.RuleInvalid) as caught:
        rules.parse_rule(_rule(**fields))
    [error] = caught.value.errors
    assert error.path == path
    assert error.reason.startswith(reason), error.reason


def test_missing_fields_are_each_reported() -> None:
    with pytest.raises(rules.RuleInvalid) as caught:
        rules.parse_rule({"name": "r"})
    assert caught.value.errors == (
        rules.RuleError("when", "required"),
        rules.RuleError("run", "required"),
    )


def test_load_rules_lists_every_error_with_its_file_path() -> None:
    text = """
- name: brain
  when: {all: [{attr: Modality, equals: MR}, {attr: SeriesDescription, matches: "(t1"}]}
  run: seg
- name: brain
  when: {all: []}
  run: seg
- name: ok
  when: {attr: Modalty, equals: CT}
  run: seg
"""
    with pytest.raises(rules.RuleInvalid) as caught:
        rules.load_rules(text)
    assert [(error.path, error.reason.split(":")[0]) for error in caught.value.errors] == [
        ("rules[0].when.all[1].matches", "not a valid regular expression"),
        ("rules[1].when.all", "must not be empty"),
        ("rules[1].name", "duplicate rule name 'brain' (first used by rules[0])"),
        ("rules[2].when.attr", "unknown DICOM keyword 'Modalty' (did you mean 'Modality'?)"),
    ]
    message = str(caught.value)
    assert message.splitlines()[0] == "The routing rule is invalid."
    assert "  rules[1].name: duplicate rule name 'brain'" in message


def test_duplicate_names_are_reported_even_when_both_rules_are_valid() -> None:
    rule = {"name": "same", "when": MR, "run": "seg"}
    with pytest.raises(rules.RuleInvalid) as caught:
        rules.load_rules(yaml.safe_dump([rule, rule, rule]))
    assert [error.path for error in caught.value.errors] == ["rules[1].name", "rules[2].name"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- name: [a\n", "not valid YAML: expected ',' or ']', but got '<stream end>' (line 2"),
        ("- name: a\n  name: b\n", "not valid YAML: duplicate key 'name' (line 2, column 3)"),
        ("- {attr: Modality, equals: MR, equals: CT}\n", "not valid YAML: duplicate key 'equals'"),
        ("name: a\n", "a rules file is a list of rules, got dict"),
    ],
    ids=["syntax", "duplicate-key", "duplicate-operator", "not-a-list"],
)
def test_load_rules_refuses_bad_files(text: str, reason: str) -> None:
    with pytest.raises(rules.RuleInvalid) as caught:
        rules.load_rules(text)
    [error] = caught.value.errors
    assert error.path == "rules"
    assert error.reason.startswith(reason), error.reason


def test_load_rules_does_not_construct_python_objects() -> None:
    with pytest.raises(rules.RuleInvalid, match="could not determine a constructor"):
        rules.load_rules("- !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize("text", ["", "# no rules yet\n", "[]"])
def test_empty_file_has_no_rules(text: str) -> None:
    assert rules.load_rules(text) == []


def test_dump_rules_round_trips() -> None:
    loaded = rules.load_rules(STYLE_GUIDE_RULES)
    loaded.append(
        rules.parse_rule(
            {
                "name": "old-ct",
                "priority": 3,
                "enabled": False,
                "when": {"all": [{"attr": "StudyDate", "range": {"max": 20231231}},
                                 {"fact": "instance_count", "range": {"min": 32}},
                                 {"attr": "Modality", "in": ["CT"]}]},
                "run": [{"pipeline": "denoise", "params": {"strength": 0.3}}, "montage"],
                "send_to_calling_ae": True,
                "rerun_on_new_instances": False,
            }
        )
    )
    text = rules.dump_rules(loaded)
    assert rules.load_rules(text) == loaded
    first = yaml.safe_load(text)[0]
    assert first["run"] == "brain_tumour_seg"
    assert "enabled" not in first


def test_rules_are_frozen() -> None:
    rule = rules.parse_rule(_rule())
    with pytest.raises(ValueError, match="frozen"):
        rule.name = "other"  # type: ignore[misc]


def test_rule_invalid_default_message_is_its_docstring() -> None:
    assert str(rules.RuleInvalid()) == "The routing rule is invalid."
