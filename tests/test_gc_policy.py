"""The collector policy of the web process and the simulator: survivors of a full collection are
frozen and skipped, and the periodic full collection still finds garbage among them."""

from __future__ import annotations

import gc
import weakref

import pytest

from csms import gc_policy


class Node:
    pass


def a_cycle() -> Node:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(gc_policy.time, "monotonic", lambda: now[0])
    yield now
    gc_policy.freeze_survivors(0)


def test_survivors_are_skipped_until_the_periodic_full_collection(clock):
    gc_policy.freeze_survivors(60)
    kept = a_cycle()
    probe = weakref.ref(kept)
    gc.collect()
    assert gc.get_freeze_count() > 0
    del kept  # garbage now, but frozen: ordinary collections do not see it
    gc.collect()
    assert probe() is not None
    clock[0] += 61
    gc.collect()
    assert probe() is None


def test_turned_off_nothing_stays_frozen(clock):
    gc_policy.freeze_survivors(60)
    gc.collect()
    gc_policy.freeze_survivors(0)
    assert gc.get_freeze_count() == 0
    garbage = weakref.ref(a_cycle())
    gc.collect()
    assert garbage() is None
    assert not [c for c in gc.callbacks if getattr(c, "__qualname__", "").startswith("freeze_survivors")]
