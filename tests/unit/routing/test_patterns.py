"""Tests for dicomnode.routing.patterns: costly patterns refused, accepted ones bounded in time."""

from __future__ import annotations

import time

import pytest

from dicomnode.routing import patterns


@pytest.mark.parametrize(
    "pattern",
    [
        "(?i)t1.*(gd|post)",
        "^(AX|SAG).*T2.*FLAIR$",
        r"^\d{8}$",
        r"(?i)\bscout\b|localizer",
        "[ab]*c",
        r"^(?:\d{1,3}\.){3}\d{1,3}$",  # a bounded repeat of choices: 3**3 * 3 ways
        r"(\d{4})*",  # an open-ended repeat of a fixed-length body
        "a{0,16}a{0,16}a{0,16}x",
    ],
)
def test_accepts_everyday_patterns(pattern: str) -> None:
    assert patterns.check_pattern(pattern).pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+$", "a quantifier or alternation inside an open-ended repeat"),
        (r"(\d{2,4})*", "a quantifier or alternation inside an open-ended repeat"),
        ("(a|ab)*c", "a quantifier or alternation inside an open-ended repeat"),
        ("(a?){17}", "a group with choices repeated more than 16 times"),
        (r"(\d{1,3}\.){16}", f"in more than {patterns.MAX_SPLITS} ways"),
        ("(a?){14}x", f"in more than {patterns.MAX_SPLITS} ways"),
        ("a?" * 16 + "x", f"in more than {patterns.MAX_SPLITS} ways"),
        (r"(a)\1", "backreferences such as \\1 are not allowed"),
        ("(a)?(?(1)b|c)", "backreferences such as \\1 are not allowed"),
        (".*.*.*x", "at most two open-ended quantifiers"),
        (r"\w+\W*\w+x", "at most two open-ended quantifiers"),
        ("(AX|SAG).*.*.*x", "at most two open-ended quantifiers"),
        ("(?=.*a)(?=.*b).*c", "at most two open-ended quantifiers"),
    ],
)
def test_refuses_costly_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match="pattern too costly to search") as caught:
        patterns.check_pattern(pattern)
    assert reason in str(caught.value)


def test_refuses_long_and_invalid_patterns() -> None:
    with pytest.raises(ValueError, match="the limit is 512"):
        patterns.check_pattern("a" * (patterns.MAX_PATTERN_LENGTH + 1))
    with pytest.raises(ValueError, match="not a valid regular expression"):
        patterns.check_pattern("[a")


# the worst shapes check_pattern accepts, each at the edge of its limit, against values built
# to make them backtrack: searches that never match
@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("a?" * 15 + "x", "a" * 10_000),
        ("(a?){13}x", "a" * 10_000),
        (".*(a?){6}x", "a" * 10_000),
        (".*.*a?x", "a" * 10_000),
        (r"\d+\d+\d?x", "1" * 10_000),
        ("[a-z]{0,50}[a-z]{0,50}[a-z]{0,10}x", "a" * 10_000),
    ],
)
def test_worst_accepted_patterns_stay_fast(pattern: str, value: str) -> None:
    patterns.check_pattern(pattern)
    started = time.perf_counter()
    assert not patterns.search(pattern, value)
    assert time.perf_counter() - started < 0.5  # about 0.06 s at worst on one core


def test_search_looks_only_at_the_start_of_long_values() -> None:
    head = "x" * patterns.MAX_VALUE_LENGTH
    assert patterns.search("x$", head + "tail")
    assert not patterns.search("tail", head + "tail")
