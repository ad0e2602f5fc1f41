"""Bounded regular expressions for ``matches``: refuse costly patterns, search capped values.

A rule's pattern is admin text run against every series the node receives, so its cost must be
bounded before it is saved, not discovered when a worker hangs. Python's ``re`` backtracks, and
has no timeout, so the bound comes from three limits:

1. **Pattern length**: at most :data:`MAX_PATTERN_LENGTH` characters.
2. **Value length**: only the first :data:`MAX_VALUE_LENGTH` characters of a value are searched
   (DICOM's LO, the VR of descriptions and protocol names, holds at most 64; a longer text
   such as ImageComments is searched in its first 128 characters only).
3. **Pattern shape**, checked on the parsed pattern by :func:`check_pattern`:

   - no quantifier or alternation inside an open-ended repeat (``(a+)+``, ``(a|ab)*``): the
     classic exponential backtracking. Fixed-length bodies are fine (``(\\d{4})*``, ``[ab]*``);
   - a group with choices repeats at most 16 times (``(\\d{1,3}\\.){3}`` is fine);
   - no backreferences (``\\1``, ``(?(1)...)``);
   - the number of ways the pattern may split a value is at most :data:`MAX_SPLITS`: the
     product over quantifiers of the lengths each may take, where an open-ended one such as
     ``.*`` or ``\\d+`` counts :data:`MAX_VALUE_LENGTH`, a repeated group with choices all its
     combinations (weighted 4, for the opcodes each repetition runs), and an alternation the
     sum of its branches. In practice: at most two open-ended quantifiers per pattern
     (``^(AX|SAG).*T2.*FLAIR`` is fine), plus a few short bounded ones.

The worst patterns these limits accept (``a?`` 15 times, ``(a?){13}``, ``.*(a?){6}``) take about
0.06 s on one core of the machine this was measured on, against a value built to make them
backtrack; everyday patterns take microseconds. ``tests/unit/routing/test_patterns.py`` keeps
the worst ones under half a second.

The shape check walks ``re._parser``'s parse tree: a private module of the standard library, but
stable from Python 3.11 (when ``sre_parse`` became its deprecated alias) to date. If a future
Python changes it, :func:`check_pattern` fails loudly in the unit tests rather than passing costly
patterns.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_SPLITS",
    "MAX_VALUE_LENGTH",
    "check_pattern",
    "search",
]

MAX_PATTERN_LENGTH = 512
"""Longest pattern a rule may hold, in characters."""

MAX_VALUE_LENGTH = 128
"""Only this many leading characters of a value are searched."""

MAX_SPLITS = 2**15
"""Largest product of the lengths the pattern's quantifiers may take (see the module docstring)."""

# private to the standard library (see the module docstring), hence untyped
_sre: Any = importlib.import_module("re._constants")
_parser: Any = importlib.import_module("re._parser")

_REPEATS = frozenset({_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT})
_BACKREFERENCES = frozenset({_sre.GROUPREF, _sre.GROUPREF_EXISTS})
_MAX_GROUP_REPEAT = 16
# a repeated group runs several opcodes per repetition: measured about 4x a simple quantifier
_GROUP_WEIGHT = 4


class _Costly(ValueError):
    """The pattern could backtrack for too long."""


def check_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a rule's pattern, refusing one that is too long, invalid or costly to search.

    Parameters
    ----------
    pattern
        The regular expression as the admin wrote it (Python ``re`` syntax, searched anywhere in
        the value; anchor with ``^`` and ``$``).

    Returns
    -------
    re.Pattern[str]
        The compiled pattern.

    Raises
    ------
    ValueError
        With a plain-words reason: too long, does not compile, or one of the shapes listed in the
        module docstring.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(
            f"pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}"
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    try:
        splits = _walk(_parser.parse(pattern))
    except _Costly as exc:
        raise ValueError(f"pattern too costly to search: {exc}") from None
    if splits > MAX_SPLITS:
        raise ValueError(
            f"pattern too costly to search: its quantifiers may split a value in more than "
            f"{MAX_SPLITS} ways; at most two open-ended quantifiers (*, +, {{n,}}) and a few "
            "short bounded ones are allowed"
        )
    return compiled


def _walk(items: Any) -> int:
    """Check one parsed (sub)pattern; return how many ways its quantifiers may split a value."""
    splits = 1
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            inner = _walk(body)
            if high == _sre.MAXREPEAT:
                if inner > 1:
                    raise _Costly(
                        "a quantifier or alternation inside an open-ended repeat, "
                        "such as (a+)+ or (a|ab)*"
                    )
                splits *= max(MAX_VALUE_LENGTH - low, 1)
            elif inner == 1:
                splits *= high - low + 1
            elif high > _MAX_GROUP_REPEAT:
                raise _Costly(
                    f"a group with choices repeated more than {_MAX_GROUP_REPEAT} times"
                )
            else:
                splits *= (high - low + 1) * inner**high * _GROUP_WEIGHT
        elif op is _sre.BRANCH:
            splits *= sum(_walk(branch) for branch in av[1])
        elif op is _sre.SUBPATTERN:
            splits *= _walk(av[3])
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            splits *= _walk(av[1])
        elif op is _sre.ATOMIC_GROUP:
            splits *= _walk(av)
        elif op in _BACKREFERENCES:
            raise _Costly("backreferences such as \\1 are not allowed")
        if splits > MAX_SPLITS:
            return splits
    return splits


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def search(pattern: str, value: str) -> bool:
    """Search a checked pattern in the first :data:`MAX_VALUE_LENGTH` characters of a value.

    Parameters
    ----------
    pattern
        A pattern that passed :func:`check_pattern` (rules are validated at construction).
    value
        The text to search.

    Returns
    -------
    bool
        Whether the pattern occurs anywhere in the capped value.
    """
    return _compiled(pattern).search(value[:MAX_VALUE_LENGTH]) is not None
