"""The per-charger pacer (`csms.ocpp.pacing`) on a clock the test moves."""

from __future__ import annotations

import pytest

from csms import config
from csms.ocpp import pacing
from csms.ocpp.pacing import Pacer


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: now[0])
    return now


def test_a_burst_goes_at_once_then_one_message_per_interval(clock):
    paced = []
    pacer = Pacer(rate=10, burst=3, on_paced=paced.append)
    assert [pacer.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [round(pacer.delay(), 6) for _ in range(3)] == [0.1, 0.2, 0.3]  # sent at once: queued
    assert [round(pause, 6) for pause in paced] == [0.1, 0.2, 0.3]
    clock[0] += 0.3  # the last of them was taken at its time
    assert round(pacer.delay(), 6) == 0.1  # the next waits its interval
    clock[0] += 0.1
    assert round(pacer.delay(), 6) == 0.1


def test_a_charger_within_its_rate_never_waits(clock):
    pacer = Pacer(rate=10, burst=1)
    for _ in range(100):
        assert pacer.delay() == 0.0
        clock[0] += 0.1


def test_the_burst_comes_back_while_the_charger_is_quiet(clock):
    pacer = Pacer(rate=10, burst=5)
    for _ in range(5):
        pacer.delay()
    assert pacer.delay() > 0
    clock[0] += 60
    assert [pacer.delay() for _ in range(5)] == [0.0] * 5
    assert pacer.delay() > 0


def test_a_rate_of_zero_means_no_pacer():
    settings = config.load(environ={})
    assert (settings["CHARGER_RATE"], settings["CHARGER_BURST"]) == (100.0, 200)
    assert isinstance(pacing.pacer_for(settings), Pacer)
    assert pacing.pacer_for({**settings, "CHARGER_RATE": 0.0}) is None
