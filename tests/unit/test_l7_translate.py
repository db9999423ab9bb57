"""Table tests for the pure helpers of ctl.translate.l7 (the golden cases cover the rest)."""

from __future__ import annotations

import pytest

from ctl.translate.l7 import _covering, effective_hostnames, parse_duration


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        (None, [], ("*",)),
        ("foo.example.com", [], ("foo.example.com",)),
        (None, ["a.com", "*.b.com", "a.com"], ("a.com", "*.b.com")),
        ("foo.example.com", ["foo.example.com", "bar.example.com"], ("foo.example.com",)),
        ("*.example.com", ["foo.example.com", "a.b.example.com", "example.com"], ("foo.example.com", "a.b.example.com")),
        ("foo.example.com", ["*.example.com"], ("foo.example.com",)),
        ("*.example.com", ["*.foo.example.com"], ("*.foo.example.com",)),
        ("*.foo.example.com", ["*.example.com"], ("*.foo.example.com",)),
        ("*.example.com", ["*.example.com"], ("*.example.com",)),
        ("very.specific.com", ["non.matching.com"], ()),
    ],
)
def test_effective_hostnames(listener: str | None, route: list[str], expected: tuple[str, ...]) -> None:
    assert effective_hostnames(listener, route) == expected


@pytest.mark.parametrize(
    ("hostname", "covering"),
    [
        ("a.b.c", ("a.b.c", "*.b.c", "*.c", "*")),
        ("*.b.c", ("*.b.c", "*.c", "*")),
        ("localhost", ("localhost", "*")),
        ("*", ("*",)),
    ],
)
def test_hostnames_covering(hostname: str, covering: tuple[str, ...]) -> None:
    assert _covering(hostname) == covering


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("500ms", 0.5), ("1s", 1.0), ("1m30s", 90.0), ("1h", 3600.0), ("1h2m3s4ms", 3723.004)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1d", "1.5s", "-1s", "123456s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
