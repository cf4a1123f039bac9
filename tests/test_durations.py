from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadkit.durations import format_duration, parse_duration
from leadkit.errors import DataError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        ("0h5m", timedelta(minutes=5)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_accepted_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "30", "s", "-5m", "+5m", "1.5h", "1w", "5 m", "1h 30m", "30m1h", "1h1h", "2hours", "PT2H", "1e3s"],
)
def test_rejected_forms_name_the_input_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(DataError) as info:
        parse_duration(text)
    assert repr(text) in info.value.message
    assert "30s, 15m, 2h, 7d" in info.value.message


@pytest.mark.parametrize("text", ["0s", "0m", "0d0h0m0s"])
def test_zero_is_rejected(text: str) -> None:
    with pytest.raises(DataError, match="is zero"):
        parse_duration(text)


def test_too_long_is_rejected() -> None:
    with pytest.raises(DataError, match="too long"):
        parse_duration("99999999999d")


def test_non_text_is_rejected() -> None:
    with pytest.raises(DataError, match="not text"):
        parse_duration(30)  # type: ignore[arg-type]


def test_data_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2, minutes=5), "2h5m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(days=7), "7d"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=1, milliseconds=499), "1s"),
        (timedelta(seconds=1, milliseconds=500), "2s"),
        (timedelta(minutes=59, seconds=59, milliseconds=600), "1h"),
    ],
)
def test_format_is_compact(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(DataError, match="negative"):
        format_duration(timedelta(seconds=-1))


@settings(max_examples=200, deadline=None)
@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=100_000)))
def test_parse_of_format_round_trips_to_the_second(value: timedelta) -> None:
    back = parse_duration(format_duration(value))
    assert abs(back - value) <= timedelta(milliseconds=500)
    assert back.microseconds == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20) | st.from_regex(r"\A(\d{1,4}[dhms]){0,4}\Z"))
def test_parse_of_any_text_returns_a_positive_duration_or_raises_data_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except DataError:
        return
    assert value > timedelta(0)
