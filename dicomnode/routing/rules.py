"""Routing rules as data: the pydantic rule tree, its validation, and the YAML loader.

A rule says *when* (a condition tree over the series' DICOM attributes and a few facts), what
to *run* (pipelines with parameters) and where to *send_to*. Its YAML form::

    - name: brain-mr-to-tumour-seg
      when: {all: [{attr: Modality, equals: MR},
                   {attr: SeriesDescription, matches: "(?i)t1.*(gd|post)"},
                   {not: {attr: ImageType, contains: DERIVED}}]}
      quiet_seconds: 30
      run: brain_tumour_seg
      send_to: [pacs-main]

A condition is ``{all: [...]}``, ``{any: [...]}``, ``{not: {...}}`` or a leaf naming one
subject (``attr: <DICOM keyword>`` or ``fact: instance_count | calling_ae_title | peer_host``)
and exactly one operator: ``equals``, ``in``, ``matches``, ``range``, ``exists`` or ``contains``.
Everything is checked at construction (unknown keywords, two operators, bad or costly regexes,
empty lists, reversed ranges, duplicate names), so an invalid rule never exists; nothing is
evaluated as code. What the operators mean at match time is documented in
:mod:`dicomnode.routing.match`.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydicom.datadict import dictionary_VR, keyword_dict

from dicomnode.routing import patterns

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "Fact",
    "Leaf",
    "Not",
    "OPERATORS",
    "PipelineCall",
    "Range",
    "Rule",
    "RuleError",
    "RuleInvalid",
    "dump_rules",
    "load_rules",
    "parse_rule",
]

OPERATORS = ("equals", "in", "matches", "range", "exists", "contains")
"""The leaf operators, as written in YAML."""

_NUMERIC_VRS = frozenset({"DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_DATE_VRS = frozenset({"DA", "DT"})
# values a rule cannot test: sequences, and bulk data (pixels, overlays, LUTs, unknown)
_UNTESTABLE_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "NONE"})
_RULE_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DATE = re.compile(r"\d{8}")
_MAX_NAME_LENGTH = 64


@dataclass(frozen=True, slots=True)
class RuleError:
    """One reason a rule was refused: where (``rules[0].when.all[1].matches``) and why."""

    path: str
    reason: str


class RuleInvalid(Exception):
    """The routing rule is invalid."""

    def __init__(self, errors: Sequence[RuleError] = ()) -> None:
        self.errors: tuple[RuleError, ...] = tuple(errors)
        lines = [type(self).__doc__ or ""]
        lines += [f"  {error.path}: {error.reason}" for error in self.errors]
        super().__init__("\n".join(lines))


def _refuse(reason: str) -> PydanticCustomError:
    # the reason goes through the context so braces in it are never read as placeholders
    return PydanticCustomError("rule_invalid", "{reason}", {"reason": reason})


class Fact(enum.StrEnum):
    """What a rule may test about the series besides its DICOM attributes."""

    INSTANCE_COUNT = "instance_count"
    CALLING_AE_TITLE = "calling_ae_title"
    PEER_HOST = "peer_host"


def _scalar(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        hint = " (write a date as 'YYYYMMDD')" if isinstance(value, datetime.date) else ""
        raise _refuse(f"must be a string or a number, got {value!r}{hint}")
    return value


def _scalars(value: object) -> object:
    if not isinstance(value, list):
        raise _refuse(f"must be a list of strings or numbers, got {value!r}")
    if not value:
        raise _refuse("must list at least one value")
    for item in value:
        _scalar(item)
    return value


def _scalar_or_scalars(value: object) -> object:
    return _scalars(value) if isinstance(value, list) else _scalar(value)


_Scalar: TypeAlias = Annotated[str | int | float, BeforeValidator(_scalar)]
_Scalars: TypeAlias = Annotated[list[str | int | float], BeforeValidator(_scalars)]
_ScalarOrScalars: TypeAlias = Annotated[
    str | int | float | list[str | int | float], BeforeValidator(_scalar_or_scalars)
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Range(_Model):
    """Inclusive bounds for ``range``: numbers, or DICOM dates written ``YYYYMMDD``.

    Whether the bounds are numbers or dates follows from the subject's VR (numbers for DS, IS,
    US, FL and the like; dates for DA and DT), never from how the bounds look. Date bounds are
    stored as ``'YYYYMMDD'`` strings.
    """

    min: _Scalar | None = None
    max: _Scalar | None = None


class Leaf(_Model):
    """A test of one subject (DICOM attribute or fact) with exactly one operator."""

    attr: str | None = None
    fact: Fact | None = None
    equals: _ScalarOrScalars | None = None
    in_: _Scalars | None = Field(default=None, alias="in")
    matches: str | None = None
    range: Range | None = None
    exists: StrictBool | None = None
    contains: _Scalar | None = None

    @field_validator("attr")
    @classmethod
    def _known_keyword(cls, attr: str) -> str:
        if attr not in keyword_dict:
            close = difflib.get_close_matches(attr, keyword_dict, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _refuse(f"unknown DICOM keyword {attr!r}{hint}")
        vrs = set(dictionary_VR(keyword_dict[attr]).split(" or "))
        if vrs & _UNTESTABLE_VRS:
            raise _refuse(
                f"{attr} has VR {' or '.join(sorted(vrs))}; rules test the top-level text, "
                "number and date values of a series, not sequences or bulk data"
            )
        return attr

    @field_validator("matches")
    @classmethod
    def _bounded_pattern(cls, pattern: str) -> str:
        try:
            patterns.check_pattern(pattern)
        except ValueError as exc:
            raise _refuse(str(exc)) from None
        return pattern

    @field_validator("range")
    @classmethod
    def _typed_bounds(cls, bounds: Range, info: ValidationInfo) -> Range:
        attr, fact = info.data.get("attr"), info.data.get("fact")
        if attr is not None:
            subject, vrs = attr, set(dictionary_VR(keyword_dict[attr]).split(" or "))
        elif fact is not None:
            subject, vrs = str(fact), {"IS"} if fact is Fact.INSTANCE_COUNT else {"AE"}
        else:
            return bounds  # no valid subject: reported by its own validator or _one_operator
        if bounds.min is None and bounds.max is None:
            raise _refuse("a range needs min, max or both")
        if vrs <= _NUMERIC_VRS:
            low, high = (_number_bound(subject, b) for b in (bounds.min, bounds.max))
        elif vrs <= _DATE_VRS:
            low, high = (_date_bound(subject, b) for b in (bounds.min, bounds.max))
        else:
            raise _refuse(
                f"range works on numbers and dates; {subject} has VR {' or '.join(sorted(vrs))}"
            )
        if low is not None and high is not None and low > high:  # type: ignore[operator]
            raise _refuse(f"min {low!r} is greater than max {high!r}")
        return Range(min=low, max=high)

    @model_validator(mode="after")
    def _one_operator(self) -> Leaf:
        if (self.attr is None) == (self.fact is None):
            raise _refuse(
                "a leaf names exactly one subject: 'attr: <DICOM keyword>' or "
                f"'fact: {' | '.join(Fact)}'"
            )
        given = [name for name in OPERATORS if self._operand(name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise _refuse(
                f"a leaf takes exactly one operator ({', '.join(OPERATORS)}); found {found}"
            )
        return self

    def _operand(self, operator: str) -> object:
        return self.in_ if operator == "in" else getattr(self, operator)

    @property
    def subject(self) -> str:
        """The DICOM keyword or fact name the leaf tests."""
        return self.attr if self.attr is not None else str(self.fact)

    @property
    def operator(self) -> tuple[str, Any]:
        """The leaf's one operator, as written in YAML, and its operand."""
        for name in OPERATORS:
            operand = self._operand(name)
            if operand is not None:
                return name, operand
        raise AssertionError("unreachable: validated leaves have one operator")


def _number_bound(subject: str, bound: str | int | float | None) -> int | float | None:
    if bound is None or isinstance(bound, int | float):
        return bound
    raise _refuse(f"range bounds for {subject} are numbers, got {bound!r}")


def _date_bound(subject: str, bound: str | int | float | None) -> str | None:
    if bound is None:
        return None
    text = str(bound) if isinstance(bound, int) else bound
    if isinstance(text, str) and _DATE.fullmatch(text):
        try:
            datetime.datetime.strptime(text, "%Y%m%d")
        except ValueError:
            pass
        else:
            return text
    raise _refuse(f"range bounds for {subject} are dates written YYYYMMDD, got {bound!r}")


class AllOf(_Model):
    """True when every condition in ``all`` is true."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(_Model):
    """True when at least one condition in ``any`` is true."""

    any: list[Condition] = Field(min_length=1)


class Not(_Model):
    """True when the condition in ``not`` is false."""

    not_: Condition = Field(alias="not")


def _condition_kind(value: object) -> str | None:
    # the tags are in angle brackets so that _path can drop them from error locations
    if isinstance(value, Mapping):
        return next((f"<{key}>" for key in ("all", "any", "not") if key in value), "<leaf>")
    kinds = {AllOf: "<all>", AnyOf: "<any>", Not: "<not>", Leaf: "<leaf>"}
    return kinds.get(type(value))


Condition: TypeAlias = Annotated[
    Annotated[AllOf, Tag("<all>")]
    | Annotated[AnyOf, Tag("<any>")]
    | Annotated[Not, Tag("<not>")]
    | Annotated[Leaf, Tag("<leaf>")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message=(
            "a condition is a mapping: all: [...], any: [...], not: <condition>, "
            "or a leaf such as attr: Modality, equals: MR"
        ),
    ),
]

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


class PipelineCall(_Model):
    """One pipeline a rule runs, with the parameters it passes."""

    pipeline: str
    params: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("pipeline")
    @classmethod
    def _pipeline_name(cls, name: str) -> str:
        if len(name) > _MAX_NAME_LENGTH or not _PIPELINE_NAME.fullmatch(name):
            raise _refuse(
                f"a pipeline name is lowercase letters, digits and underscores, got {name!r}"
            )
        return name


def _pipeline_calls(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [{"pipeline": item} if isinstance(item, str) else item for item in value]
    return value


class Rule(_Model):
    """A routing rule: when a series matches, run these pipelines and send the results there."""

    name: str
    priority: StrictInt = Field(default=0, ge=-10_000, le=10_000)
    enabled: StrictBool = True
    when: Condition
    run: Annotated[list[PipelineCall], BeforeValidator(_pipeline_calls)] = Field(min_length=1)
    send_to: list[str] = Field(default_factory=list)
    send_to_calling_ae: StrictBool = False
    quiet_seconds: StrictInt | None = Field(default=None, ge=1, le=3600)
    rerun_on_new_instances: StrictBool = True

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if len(name) > _MAX_NAME_LENGTH or not _RULE_NAME.fullmatch(name):
            raise _refuse(
                "a rule name is a slug of lowercase letters and digits joined by single "
                f"hyphens or underscores (e.g. brain-mr-to-tumour-seg), got {name!r}"
            )
        return name

    @field_validator("run")
    @classmethod
    def _distinct_pipelines(cls, calls: list[PipelineCall]) -> list[PipelineCall]:
        # one run per series x rule version x pipeline: a pipeline listed twice is ambiguous
        _refuse_duplicates("pipeline", [call.pipeline for call in calls])
        return calls

    @field_validator("send_to")
    @classmethod
    def _destination_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if len(name) > _MAX_NAME_LENGTH or not _DESTINATION_NAME.fullmatch(name):
                raise _refuse(
                    "a destination name is letters, digits, '.', '_' and '-', "
                    f"got {name!r}"
                )
        _refuse_duplicates("destination", names)
        return names


def _refuse_duplicates(kind: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _refuse(f"{kind} {name!r} is listed twice")
        seen.add(name)


_RULE = TypeAdapter(Rule)


def parse_rule(data: object, *, path: str = "") -> Rule:
    """Build one rule from plain data (a parsed YAML or JSON mapping).

    Parameters
    ----------
    data
        The rule as a mapping, in the YAML form shown in the module docstring.
    path
        Prefix for error paths, e.g. ``"rules[3]"``; empty for a rule on its own.

    Returns
    -------
    Rule
        The validated rule.

    Raises
    ------
    RuleInvalid
        Listing the path and reason of each error.
    """
    try:
        return _RULE.validate_python(data)
    except ValidationError as exc:
        raise RuleInvalid([_rule_error(path, error) for error in exc.errors()]) from None


def load_rules(yaml_text: str) -> list[Rule]:
    """Parse and validate a rules file: a YAML list of rules with unique names.

    Parameters
    ----------
    yaml_text
        The file's text. An empty document means no rules.

    Returns
    -------
    list[Rule]
        The rules, in file order.

    Raises
    ------
    RuleInvalid
        Listing the path (``rules[0].when.all[1].matches``) and reason of every error in the
        file, or the line and column of a YAML syntax error or duplicate key.
    """
    try:
        data = yaml.load(yaml_text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RuleInvalid([RuleError("rules", _yaml_reason(exc))]) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise RuleInvalid(
            [RuleError("rules", f"a rules file is a list of rules, got {type(data).__name__}")]
        )
    rules: list[Rule] = []
    errors: list[RuleError] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(data):
        path = f"rules[{index}]"
        try:
            rules.append(parse_rule(item, path=path))
        except RuleInvalid as exc:
            errors.extend(exc.errors)
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str):
            if name in first_index:
                errors.append(
                    RuleError(
                        f"{path}.name",
                        f"duplicate rule name {name!r} (first used by rules[{first_index[name]}])",
                    )
                )
            first_index.setdefault(name, index)
    if errors:
        raise RuleInvalid(errors)
    return rules


def dump_rules(rules: Iterable[Rule]) -> str:
    """Write rules as YAML that :func:`load_rules` reads back to equal rules.

    Parameters
    ----------
    rules
        The rules to write, in order.

    Returns
    -------
    str
        A YAML list; defaults are left out, and ``run`` is a plain name where no parameters are
        set.
    """
    documents = []
    for rule in rules:
        document = rule.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        if not any(call.params for call in rule.run):
            names = [call.pipeline for call in rule.run]
            document["run"] = names[0] if len(names) == 1 else names
        documents.append(document)
    return yaml.safe_dump(documents, sort_keys=False, allow_unicode=True)


def _rule_error(prefix: str, error: Mapping[str, Any]) -> RuleError:
    parts = [prefix] if prefix else []
    for item in error["loc"]:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not str(item).startswith("<"):
            parts.append(f".{item}" if parts else str(item))
    path = "".join(parts) or "rule"
    kind, reason, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required"
    elif kind != "rule_invalid" and isinstance(value, str | int | float):
        reason = f"{reason}, got {value!r}"
    return RuleError(path, reason)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML: {exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return f"not valid YAML: {exc}"


class _Loader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which PyYAML would silently overwrite."""


def _unique_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
