"""The cheap timestamps put on every frame agree with `datetime`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from csms.services import clock


def test_utc_now_iso_is_now_with_microseconds_and_offset():
    before = datetime.now(UTC)
    text = clock.utc_now_iso()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", text)
    assert before - timedelta(microseconds=1) <= datetime.fromisoformat(text) <= after


def test_utc_now_iso_ms_is_what_chargers_are_sent():
    text = clock.utc_now_iso_ms()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    assert abs(datetime.fromisoformat(text) - datetime.now(UTC)) < timedelta(seconds=1)


def test_timestamps_follow_the_second(monkeypatch):
    moments = iter([1_800_000_000_250_000_000, 1_800_000_000_750_000_000, 1_800_000_001_500_000_000])
    monkeypatch.setattr(clock.time, "time_ns", lambda: next(moments))
    assert clock.utc_now_iso() == "2027-01-15T08:00:00.250000+00:00"
    assert clock.utc_now_iso() == "2027-01-15T08:00:00.750000+00:00"
    assert clock.utc_now_iso_ms() == "2027-01-15T08:00:01.500Z"
