"""How a site's grid connection is shared among the cars charging there, and how the change from one
sharing to the next is sent without ever exceeding it (SPEC "Smart charging").

Pure functions over plain data: no database, no charger. Amounts are integers in the site's unit
step (tenths of an ampere for a current limit, watts for a power limit), so every share is floored
to a step and the sum of shares can never round above the limit.

A demand is a running transaction. A *fixed* demand is one the CSMS cannot steer (its charger
rejects charging profiles, or is out of reach and keeps whatever it was last allowed): it is counted
at what it may draw before anyone else is served. The others share what is left, by strategy:

- `equal`: the same share each, water-filled (a car that can take less than its share, because of its
  charger's maximum or because it draws far less than it is allowed, leaves the rest to the others);
- `priority`: the highest priority first, each up to what it can take; equals share equally.

Below `minimum` a car cannot charge usefully: rather than starve everyone, as many cars as can get at
least the minimum are served (by priority, then first come) and the others wait at 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from itertools import groupby

EQUAL = "equal"
PRIORITY = "priority"
STRATEGIES = (EQUAL, PRIORITY)


@dataclass(frozen=True)
class Demand:
    key: Hashable  # (charge point id, connector id)
    maximum: int  # the most its charger lets it draw
    priority: int = 0  # higher first (strategy `priority`)
    order: int = 0  # first come, first served among equals (e.g. the transaction id)
    fixed: int | None = None  # counted at this, not steered (rejects profiles, or out of reach)
    wants: int | None = None  # a cap on what it can use (reclaim: it draws far less than allowed)

    @property
    def ceiling(self) -> int:
        """The most it is worth giving this car."""
        return self.maximum if self.wants is None else max(0, min(self.maximum, self.wants))


def allocate(
    limit: int, demands: list[Demand], minimum: int = 0, strategy: str = EQUAL
) -> dict[Hashable, int]:
    """Each demand's share: fixed ones at their fixed value, the others by `strategy`; the sum of the
    steered shares never exceeds `limit` less the fixed ones (nor 0)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    shares = {d.key: d.fixed for d in demands if d.fixed is not None}
    left = max(0, limit - sum(shares.values()))
    steered = sorted((d for d in demands if d.fixed is None), key=lambda d: (-d.priority, d.order))
    served = _who_is_served(left, steered, minimum, strategy)
    for demand in steered:
        shares[demand.key] = 0
    if strategy == EQUAL:
        shares |= _water_fill(left, served, minimum)
    else:
        # Each priority in turn takes what it can, leaving the minimum for every car served after it.
        groups = [list(group) for _, group in groupby(served, key=lambda d: d.priority)]
        later = len(served)
        for members in groups:
            later -= len(members)
            given = _water_fill(left - minimum * later, members, minimum)
            shares |= given
            left -= sum(given.values())
    return shares


def _who_is_served(left: int, ranked: list[Demand], minimum: int, strategy: str) -> list[Demand]:
    """The longest head of `ranked` whose members can each get at least `minimum` (a car with a
    ceiling below the minimum cannot charge usefully at all and waits)."""
    able = [d for d in ranked if d.ceiling > 0 and d.ceiling >= minimum]
    if minimum <= 0:
        return able
    count = min(len(able), left // minimum)
    return able[:count]


def _water_fill(left: int, demands: list[Demand], minimum: int) -> dict[Hashable, int]:
    """Equal shares of `left`, floored to a step; a demand that can take less than its share takes
    what it can, and the rest is shared again among the others. A car whose ceiling is below the
    minimum gets nothing (it was not served)."""
    shares: dict[Hashable, int] = {}
    pending = sorted(demands, key=lambda d: d.ceiling)
    while pending:
        share = left // len(pending)
        smallest = pending[0]
        if smallest.ceiling <= share:
            shares[smallest.key] = smallest.ceiling
            left -= smallest.ceiling
            pending.pop(0)
            continue
        for demand in pending:
            shares[demand.key] = share
        left -= share * len(pending)
        break
    return {key: value if value >= minimum else 0 for key, value in shares.items()}


def lowering(current: Mapping[Hashable, int], wanted: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """The first round: every demand whose share goes down. Until a charger confirms, it is still
    counted at its current value, so this round can only make the sum smaller."""
    return {key: value for key, value in wanted.items() if value < current.get(key, 0)}


def raising(
    limit: int, counted: Mapping[Hashable, int], wanted: Mapping[Hashable, int], order: list[Hashable]
) -> dict[Hashable, int]:
    """The second round, after the first was answered: raise towards `wanted` by what the headroom
    over `counted` (each demand as it is counted now: lowered if confirmed, its old value if not)
    allows, in `order`. A raise is counted from the moment it is sent, so the sum of `counted` with
    every raise applied stays within `limit`."""
    headroom = limit - sum(counted.values())
    raises = {}
    for key in order:
        now, goal = counted.get(key, 0), wanted.get(key, 0)
        if goal <= now or headroom <= 0:
            continue
        step = min(goal - now, headroom)
        raises[key] = now + step
        headroom -= step
    return raises


def reclaim(wants: int | None, measured: int | None, allowed: int, margin: int, headroom: int) -> int | None:
    """What a car is capped at after a new measurement of its draw (None: not capped).

    A car drawing `margin` or more below what it is allowed (a full battery, a car that charges
    slowly) is capped at its draw plus `headroom`, and the rest goes to the others. The cap holds
    while it keeps drawing below it; once it draws within half the headroom of what it is allowed,
    it may want more, and the cap is lifted (it gets its full share back at the next reallocation).
    The gap between the two thresholds keeps a steady car from flapping between capped and not.
    """
    if measured is None:
        return wants
    if wants is None:
        return measured + headroom if measured <= allowed - margin else None
    if measured >= allowed - headroom // 2:
        return None
    return wants
