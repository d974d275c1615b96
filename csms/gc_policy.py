"""Garbage collection for processes holding thousands of long-lived connections.

CPython's collector stops the process while it walks the objects of the generations it collects.
With 10,000 chargers connected, the objects of each charger's message cycle live for seconds, so
they survive young collections and pile up in the older generations: collections of tens of
thousands of objects every few seconds, and full ones over millions, each a pause in which no
charger is answered (bench/README.md, connections scenario). Here
whatever survives a collection is frozen (`gc.freeze`), so every collection walks only what was
allocated since the previous one. Objects that die by reference counting are freed as usual,
frozen or not; only reference cycles among frozen objects wait, until every `full_every` seconds
one full collection unfreezes and walks everything: one long pause per period instead of many.
"""

from __future__ import annotations

import gc
import time

_installed: list = []


def freeze_survivors(full_every: float) -> None:
    """Install the policy in this process (once; a later call changes the period). 0 turns it off."""
    for callback in _installed:
        gc.callbacks.remove(callback)
    _installed.clear()
    gc.unfreeze()
    if full_every <= 0:
        return
    unfrozen_at = time.monotonic()

    def on_collection(phase: str, info: dict) -> None:
        nonlocal unfrozen_at
        if phase == "stop":
            gc.freeze()
        elif info["generation"] == 2 and time.monotonic() - unfrozen_at >= full_every:
            gc.unfreeze()  # this collection is the periodic one over everything
            unfrozen_at = time.monotonic()

    gc.callbacks.append(on_collection)
    _installed.append(on_collection)
