"""The condition tree of a routing rule: all / any / not over leaves that test one attribute.

A condition is ``{all: [...]}``, ``{any: [...]}``, ``{not: {...}}`` or a leaf naming one
subject (``attr: <DICOM keyword>`` or ``fact: instance_count | calling_ae_title | peer_host``)
and exactly one operator: ``equals``, ``in``, ``matches``, ``range``, ``exists`` or ``contains``.
A leaf is checked when it is built: the keyword is in pydicom's dictionary and names a value a
rule can test (no sequences, no bulk data), exactly one operator is given, a regex compiles and is
cheap to search (:mod:`dicomnode.routing.patterns`), and range bounds suit the subject's VR.
What the operators mean at match time is documented in :mod:`dicomnode.routing.match`.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydicom.datadict import dictionary_VR, keyword_dict

from dicomnode.routing import patterns

__all__ = [
    "OPERATORS",
    "UNTESTABLE_VRS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Fact",
    "Leaf",
    "Not",
    "Range",
    "StrictModel",
    "refusal",
]

OPERATORS = ("equals", "in", "matches", "range", "exists", "contains")
"""The leaf operators, as written in YAML."""

_NUMERIC_VRS = frozenset({"DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_DATE_VRS = frozenset({"DA", "DT"})
UNTESTABLE_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "NONE"})
"""VRs a rule cannot test: sequences, and bulk data (pixels, overlays, LUTs, unknown)."""
_DATE = re.compile(r"\d{8}")


def refusal(reason: str) -> PydanticCustomError:
    """The error a rule validator raises: type ``rule_invalid``, message ``reason`` verbatim."""
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
        raise refusal(f"must be a string or a number, got {value!r}{hint}")
    return value


def _scalars(value: object) -> object:
    if not isinstance(value, list):
        raise refusal(f"must be a list of strings or numbers, got {value!r}")
    if not value:
        raise refusal("must list at least one value")
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


class StrictModel(BaseModel):
    """Base of the rule models: frozen, unknown keys refused, fields set by name or alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Range(StrictModel):
    """Inclusive bounds for ``range``: numbers, or DICOM dates written ``YYYYMMDD``.

    Whether the bounds are numbers or dates follows from the subject's VR (numbers for DS, IS,
    US, FL and the like; dates for DA and DT), never from how the bounds look. Date bounds are
    stored as ``'YYYYMMDD'`` strings.
    """

    min: _Scalar | None = None
    max: _Scalar | None = None


class Leaf(StrictModel):
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
    def _known_keyword(cls, attr: str | None) -> str | None:
        if attr is None:
            return None
        if attr not in keyword_dict:
            close = difflib.get_close_matches(attr, keyword_dict, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise refusal(f"unknown DICOM keyword {attr!r}{hint}")
        vrs = _vrs(attr)
        if vrs & UNTESTABLE_VRS:
            raise refusal(
                f"{attr} has VR {' or '.join(sorted(vrs))}; rules test the top-level text, "
                "number and date values of a series, not sequences or bulk data"
            )
        return attr

    @field_validator("matches")
    @classmethod
    def _bounded_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                patterns.check_pattern(pattern)
            except ValueError as exc:
                raise refusal(str(exc)) from None
        return pattern

    @field_validator("range")
    @classmethod
    def _typed_bounds(cls, bounds: Range | None, info: ValidationInfo) -> Range | None:
        attr, fact = info.data.get("attr"), info.data.get("fact")
        if bounds is None or (attr is None and fact is None):
            return bounds  # no valid subject: reported by its own validator or _one_operator
        if bounds.min is None and bounds.max is None:
            raise refusal("a range needs min, max or both")
        subject = attr if attr is not None else str(fact)
        vrs = _vrs(attr) if attr is not None else {"IS" if fact is Fact.INSTANCE_COUNT else "AE"}
        if vrs <= _NUMERIC_VRS:
            numbers = (_number_bound(subject, bounds.min), _number_bound(subject, bounds.max))
            if numbers[0] is not None and numbers[1] is not None and numbers[0] > numbers[1]:
                raise refusal(f"min {numbers[0]} is greater than max {numbers[1]}")
            return Range(min=numbers[0], max=numbers[1])
        if vrs <= _DATE_VRS:
            dates = (_date_bound(subject, bounds.min), _date_bound(subject, bounds.max))
            if dates[0] is not None and dates[1] is not None and dates[0] > dates[1]:
                raise refusal(f"min {dates[0]} is after max {dates[1]}")
            return Range(min=dates[0], max=dates[1])
        raise refusal(
            f"range works on numbers and dates; {subject} has VR {' or '.join(sorted(vrs))}"
        )

    @model_validator(mode="after")
    def _one_operator(self) -> Leaf:
        if (self.attr is None) == (self.fact is None):
            raise refusal(
                "a leaf names exactly one subject: 'attr: <DICOM keyword>' or "
                f"'fact: {' | '.join(Fact)}'"
            )
        given = [name for name in OPERATORS if self._operand(name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise refusal(
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


def _vrs(keyword: str) -> set[str]:
    # the dictionary writes ambiguous VRs as "US or SS"
    return set(dictionary_VR(keyword_dict[keyword]).split(" or "))


def _number_bound(subject: str, bound: str | int | float | None) -> int | float | None:
    if bound is None or isinstance(bound, int | float):
        return bound
    raise refusal(f"range bounds for {subject} are numbers, got {bound!r}")


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
    raise refusal(f"range bounds for {subject} are dates written YYYYMMDD, got {bound!r}")


_NODE_KEYS = frozenset({"all", "any", "not", "attr", "fact", *OPERATORS})


class _Node(StrictModel):
    """A condition node: refuses a mapping that mixes its key with another node's keys."""

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            kinds = sorted(set(data) & _NODE_KEYS)
            if len(kinds) > 1:
                raise refusal(
                    "a condition is exactly one of all, any, not, or a leaf "
                    f"(attr or fact plus one operator); found {', '.join(kinds)}"
                )
        return data


class AllOf(_Node):
    """True when every condition in ``all`` is true."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(_Node):
    """True when at least one condition in ``any`` is true."""

    any: list[Condition] = Field(min_length=1)


class Not(_Node):
    """True when the condition in ``not`` is false."""

    not_: Condition = Field(alias="not")


def _condition_kind(value: object) -> str | None:
    # the tags are in angle brackets so that _path can drop them from error locations
    if isinstance(value, Mapping):
        return next((f"<{key}>" for key in ("all", "any", "not") if key in value), "<leaf>")
    kinds: dict[type, str] = {AllOf: "<all>", AnyOf: "<any>", Not: "<not>", Leaf: "<leaf>"}
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
