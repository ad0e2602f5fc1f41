"""Routing rules as data: the rule model, the YAML loader and writer, and RuleInvalid.

A rule says *when* (a condition tree, :mod:`dicomnode.routing.conditions`), what to *run*
(pipelines with parameters) and where to *send_to*. Its YAML form::

    - name: brain-mr-to-tumour-seg
      when: {all: [{attr: Modality, equals: MR},
                   {attr: SeriesDescription, matches: "(?i)t1.*(gd|post)"},
                   {not: {attr: ImageType, contains: DERIVED}}]}
      quiet_seconds: 30
      run: brain_tumour_seg
      send_to: [pacs-main]

Everything is checked at construction, so an invalid rule never exists, and every error is
reported with its path and reason; nothing is evaluated as code.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from dicomnode.routing.conditions import Condition, StrictModel, refusal

__all__ = [
    "PipelineCall",
    "Rule",
    "RuleError",
    "RuleInvalid",
    "dump_rules",
    "load_rules",
    "parse_rule",
]

_RULE_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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


class PipelineCall(StrictModel):
    """One pipeline a rule runs, with the parameters it passes."""

    pipeline: str
    params: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("pipeline")
    @classmethod
    def _pipeline_name(cls, name: str) -> str:
        if len(name) > _MAX_NAME_LENGTH or not _PIPELINE_NAME.fullmatch(name):
            raise refusal(
                f"a pipeline name is lowercase letters, digits and underscores, got {name!r}"
            )
        return name


def _pipeline_calls(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [{"pipeline": item} if isinstance(item, str) else item for item in value]
    return value


class Rule(StrictModel):
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
    #: Route series that our own pipelines made (e.g. a derived CT into a CT rule); off by default,
    #: and never into the rule that made them.
    route_own_outputs: StrictBool = False

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if len(name) > _MAX_NAME_LENGTH or not _RULE_NAME.fullmatch(name):
            raise refusal(
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
                raise refusal(
                    "a destination name is letters, digits, '.', '_' and '-', "
                    f"got {name!r}"
                )
        _refuse_duplicates("destination", names)
        return names


def _refuse_duplicates(kind: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise refusal(f"{kind} {name!r} is listed twice")
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
    return str(yaml.safe_dump(documents, sort_keys=False, allow_unicode=True))


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
    elif kind == "too_short":
        reason = "must not be empty"
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
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
