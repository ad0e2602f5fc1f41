"""Match routing rules against a series: pure functions that also say why, in plain words.

What each operator means (``X`` is the leaf's subject, its values trimmed of DICOM padding:
leading and trailing spaces and NULs):

``equals``
    A string compares exactly (case included) with ``X``'s text; a number compares numerically
    (``SliceThickness`` ``'1.0'`` equals ``1``). A list compares a multi-valued ``X`` value by
    value, in order; a single operand never equals a multi-valued ``X``.
``in``
    ``X`` is single-valued and equals one of the listed operands.
``matches``
    The regular expression is found anywhere (``re.search``; anchor with ``^`` and ``$``) in
    ``X``'s text, a multi-valued one joined with ``\\`` as DICOM writes it
    (``ORIGINAL\\PRIMARY\\AXIAL``). Only the first
    :data:`~dicomnode.routing.patterns.MAX_VALUE_LENGTH` characters are searched, and costly
    patterns are refused when the rule is built (see :mod:`dicomnode.routing.patterns`).
``range``
    ``X`` is single-valued and within the inclusive bounds: numerically for numeric VRs and
    ``instance_count``; as ``YYYYMMDD`` for DA, and for DT on its first 8 characters.
``exists``
    ``true`` when ``X`` is present with a non-blank value; ``false`` when it is absent or empty.
``contains``
    One of ``X``'s values equals the operand, as for ``equals``; a single-valued ``X`` is a
    one-value list. It is not a substring test (use ``matches``).

Every operator but ``exists`` is false for an absent or empty ``X``. ``match`` evaluates every
leaf (no short cut) and gives one sentence per leaf in tree order, so a dry-run shows an admin
each fact the decision rested on. The sentences quote attribute values: a rule that tests
PatientName puts the name in its reasons, so reasons are shown to admins and never logged.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

from dicomnode.routing import patterns
from dicomnode.routing.conditions import UNTESTABLE_VRS, AllOf, AnyOf, Condition, Leaf, Not, Range
from dicomnode.routing.rules import Rule

__all__ = ["Match", "SeriesAttributes", "attrs_from_dataset", "match", "select_rules"]

_PADDING = " \t\r\n\x00"
_SHOWN_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SeriesAttributes:
    """What a rule can test about one series: its DICOM attributes and a few facts.

    Parameters
    ----------
    attributes
        DICOM keyword -> value, from one representative instance of the series. Values may be
        strings, numbers, lists or tuples (multi-valued), pydicom ``MultiValue``,
        ``PersonName``, ``DSfloat``, ``IS`` or DA/DT/TM values. Copied into a read-only mapping.
    instance_count
        Number of instances received for the series; ``None`` if unknown.
    calling_ae_title
        AE title of the peer that sent the series; ``None`` if it came another way (STOW-RS).
    peer_host
        Address of the peer that sent the series; ``None`` if unknown.

    Raises
    ------
    ValueError
        If ``instance_count`` is negative.
    """

    attributes: Mapping[str, Any] = field(default_factory=dict)
    instance_count: int | None = None
    calling_ae_title: str | None = None
    peer_host: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        if self.instance_count is not None and self.instance_count < 0:
            raise ValueError(f"instance_count must be >= 0, got {self.instance_count}")


@dataclass(frozen=True, slots=True)
class Match:
    """Whether a rule's condition holds for a series, with one plain sentence per leaf."""

    ok: bool
    reasons: tuple[str, ...]


def match(rule: Rule, attrs: SeriesAttributes) -> Match:
    """Evaluate a rule's ``when`` tree against a series.

    Parameters
    ----------
    rule
        The rule; ``enabled`` is not looked at, so a dry-run can try a disabled rule.
    attrs
        The series' attributes and facts.

    Returns
    -------
    Match
        ``ok`` is the value of the tree; ``reasons`` holds one sentence per leaf, in tree order,
        e.g. ``"Modality is 'CT', not 'MR'"``.
    """
    reasons: list[str] = []
    ok = _evaluate(rule.when, attrs, reasons)
    return Match(ok=ok, reasons=tuple(reasons))


def select_rules(rules: Iterable[Rule], attrs: SeriesAttributes) -> list[Rule]:
    """The enabled rules that match a series, highest priority first.

    Parameters
    ----------
    rules
        Candidate rules.
    attrs
        The series' attributes and facts.

    Returns
    -------
    list[Rule]
        Enabled matching rules sorted by descending ``priority``, then by ``name`` (unique within
        a rule set), so the order never depends on where the rules came from.
    """
    chosen = [rule for rule in rules if rule.enabled and match(rule, attrs).ok]
    return sorted(chosen, key=lambda rule: (-rule.priority, rule.name))


def attrs_from_dataset(
    ds: Dataset,
    *,
    instance_count: int | None,
    calling_ae_title: str | None,
    peer_host: str | None,
) -> SeriesAttributes:
    """Build the attributes of a series from one of its instances.

    Takes the dataset's top-level public elements; skips private elements, group lengths,
    sequences and bulk data (pixel data, overlays, LUT data: the VRs in
    :data:`~dicomnode.routing.conditions.UNTESTABLE_VRS`), which rules cannot test. Bulk values are
    never read, so a dataset read with ``defer_size`` stays deferred.

    Parameters
    ----------
    ds
        One instance of the series (any, for series-level attributes).
    instance_count
        Number of instances received for the series.
    calling_ae_title
        AE title of the sending peer, or ``None``.
    peer_host
        Address of the sending peer, or ``None``.

    Returns
    -------
    SeriesAttributes
        Multi-valued values as tuples and person names as strings; other values as pydicom
        gives them.
    """
    attributes: dict[str, Any] = {}
    for tag in ds.keys():
        if tag.is_private or tag.element == 0:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue  # not in the public dictionary: no keyword a rule could name
        if set(vr.split(" or ")) & UNTESTABLE_VRS:
            continue
        element = ds[tag]
        if element.keyword:
            attributes[element.keyword] = _plain(element.value)
    return SeriesAttributes(
        attributes=attributes,
        instance_count=instance_count,
        calling_ae_title=calling_ae_title,
        peer_host=peer_host,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(_plain(item) for item in value)
    if isinstance(value, PersonName):
        return str(value)
    return value


def _evaluate(condition: Condition, attrs: SeriesAttributes, reasons: list[str]) -> bool:
    # lists, not generators, inside all()/any(): every leaf is evaluated and gives its reason
    if isinstance(condition, Leaf):
        ok, reason = _leaf(condition, attrs)
        reasons.append(reason)
        return ok
    if isinstance(condition, AllOf):
        return all([_evaluate(child, attrs, reasons) for child in condition.all])
    if isinstance(condition, AnyOf):
        return any([_evaluate(child, attrs, reasons) for child in condition.any])
    if isinstance(condition, Not):
        return not _evaluate(condition.not_, attrs, reasons)
    raise TypeError(f"not a condition: {condition!r}")


def _leaf(leaf: Leaf, attrs: SeriesAttributes) -> tuple[bool, str]:
    name = leaf.subject
    operator, operand = leaf.operator
    if leaf.attr is not None:
        present = leaf.attr in attrs.attributes
        raw = attrs.attributes.get(leaf.attr)
    else:
        raw = getattr(attrs, name)
        present = raw is not None
    values = _values(raw)
    state = "absent" if not present else "empty" if not any(map(_text, values)) else "present"
    if operator == "exists":
        return (state == "present") == operand, f"{name} is {state}"
    if state != "present":
        return False, f"{name} is {state}"
    shown = _show_all(values)
    if operator == "equals":
        expected = operand if isinstance(operand, list) else [operand]
        ok = len(values) == len(expected) and all(map(_same, values, expected))
        wanted = _show_list(operand) if isinstance(operand, list) else _show(operand)
        return ok, f"{name} is {shown}" if ok else f"{name} is {shown}, not {wanted}"
    if operator == "in":
        ok = len(values) == 1 and any(_same(values[0], option) for option in operand)
        verdict = "one of" if ok else "not one of"
        return ok, f"{name} is {shown}, {verdict} {_show_list(operand)}"
    if operator == "matches":
        text = "\\".join(_text(value) for value in values)
        ok = patterns.search(operand, text)
        verdict = "which matches" if ok else "which does not match"
        cut = len(text) > patterns.MAX_VALUE_LENGTH
        searched = f" (first {patterns.MAX_VALUE_LENGTH} characters searched)" if cut else ""
        return ok, f"{name} is {_show(text)}, {verdict} '{operand}'{searched}"
    if operator == "range":
        return _in_range(name, values, operand)
    if operator == "contains":
        ok = any(_same(value, operand) for value in values)
        verdict = "which contains" if ok else "which does not contain"
        return ok, f"{name} is {shown}, {verdict} {_show(operand)}"
    raise AssertionError(f"unknown operator {operator!r}")


def _in_range(name: str, values: tuple[Any, ...], bounds: Range) -> tuple[bool, str]:
    shown = _show_all(values)
    if len(values) != 1:
        return False, f"{name} is {shown}: {len(values)} values, and range tests one"
    low, high = bounds.min, bounds.max
    if low is not None and high is not None:
        span = f"between {_show(low)} and {_show(high)}"
    elif low is not None:
        span = f"at least {_show(low)}"
    else:
        span = f"at most {_show(high)}"
    value: Any
    if isinstance(low if low is not None else high, str):  # date bounds, YYYYMMDD
        value = _text(values[0])[:8]
        if len(value) != 8 or not value.isdigit():
            return False, f"{name} is {shown}, not a date (YYYYMMDD)"
    else:
        value = _number(values[0])
        if value is None:
            return False, f"{name} is {shown}, not a number"
    ok = (low is None or low <= value) and (high is None or value <= high)
    return ok, f"{name} is {shown}, {span}" if ok else f"{name} is {shown}, not {span}"


def _values(raw: Any) -> tuple[Any, ...]:
    if raw is None:
        return ()
    if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        return tuple(raw)
    return (raw,)


def _text(value: Any) -> str:
    """A value as DICOM writes it, without padding."""
    original = getattr(value, "original_string", None)  # pydicom DA, DT, TM
    if isinstance(original, str):
        text = original
    elif isinstance(value, datetime.datetime):
        text = value.strftime("%Y%m%d%H%M%S.%f" if value.microsecond else "%Y%m%d%H%M%S")
    elif isinstance(value, datetime.date):
        text = value.strftime("%Y%m%d")
    elif isinstance(value, datetime.time):
        text = value.strftime("%H%M%S.%f" if value.microsecond else "%H%M%S")
    elif isinstance(value, bytes):
        text = value.decode("latin-1")
    else:
        text = str(value)  # str, PersonName, numbers (DSfloat and IS keep their DICOM text)
    return text.strip(_PADDING)


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(_text(value))
    except ValueError:
        return None


def _same(value: Any, expected: str | int | float) -> bool:
    if isinstance(expected, str):
        return _text(value) == expected.strip(_PADDING)
    number = _number(value)
    return number is not None and number == expected


def _show(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = _text(value)
    if len(text) > _SHOWN_LENGTH:
        text = text[: _SHOWN_LENGTH - 3] + "..."
    return f"'{text}'"


def _show_list(values: Iterable[Any]) -> str:
    return "[" + ", ".join(_show(value) for value in values) + "]"


def _show_all(values: Sequence[Any]) -> str:
    return _show(values[0]) if len(values) == 1 else _show_list(values)
