"""The sharing of a site's limit (csms.services.load_allocation), without a database or a charger:
exact shares for the cases of SPEC "Smart charging", and properties over random sites and random
sequences of changes: the sum allowed never exceeds the limit, before, during or after a change."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from csms.services.load_allocation import EQUAL, PRIORITY, Demand, allocate, lowering, raising, reclaim

A = 10  # steps per ampere


def cars(count: int, maximum: int = 32 * A, **fields) -> list[Demand]:
    return [Demand(f"car{i}", maximum, order=i, **fields) for i in range(count)]


def test_four_cars_on_a_32_a_site_get_8_a_each():
    assert allocate(32 * A, cars(4)) == {"car0": 80, "car1": 80, "car2": 80, "car3": 80}


def test_three_cars_get_a_third_each_floored_to_a_tenth_so_the_sum_stays_within():
    shares = allocate(32 * A, cars(3))
    assert shares == {"car0": 106, "car1": 106, "car2": 106}
    assert sum(shares.values()) == 318 <= 320


def test_a_car_that_draws_little_leaves_the_rest_to_the_others():
    demands = [Demand("slow", 32 * A, order=0, wants=7 * A), Demand("fast", 32 * A, order=1)]
    assert allocate(32 * A, demands) == {"slow": 70, "fast": 250}


def test_a_charger_maximum_caps_its_share_and_the_rest_goes_to_the_others():
    demands = [Demand("small", 10 * A, order=0), *cars(2)]
    assert allocate(40 * A, demands) == {"small": 100, "car0": 150, "car1": 150}


def test_a_fixed_demand_is_counted_first_at_its_value():
    demands = [Demand("rejects", 16 * A, fixed=16 * A), *cars(2)]
    assert allocate(32 * A, demands) == {"rejects": 160, "car0": 80, "car1": 80}


def test_fixed_demands_beyond_the_limit_leave_nothing_to_the_others():
    demands = [Demand("r1", 32 * A, fixed=20 * A), Demand("r2", 32 * A, fixed=20 * A), *cars(2)]
    assert allocate(32 * A, demands) == {"r1": 200, "r2": 200, "car0": 0, "car1": 0}


def test_below_the_minimum_cars_wait_rather_than_all_starve():
    # 5 cars, 6 A minimum, 20 A: three can charge usefully (6.6 A each), the last two wait at 0.
    shares = allocate(20 * A, cars(5), minimum=6 * A)
    assert shares == {"car0": 66, "car1": 66, "car2": 66, "car3": 0, "car4": 0}


def test_a_car_that_cannot_take_the_minimum_waits():
    demands = [Demand("tiny", 32 * A, order=0, wants=3 * A), *cars(1)]
    assert allocate(32 * A, demands, minimum=6 * A) == {"tiny": 0, "car0": 320}


def test_priority_serves_the_higher_priority_first():
    demands = [
        Demand("vip", 16 * A, priority=2, order=5),
        Demand("a", 32 * A, priority=1, order=1),
        Demand("b", 32 * A, priority=1, order=2),
    ]
    assert allocate(30 * A, demands, strategy=PRIORITY) == {"vip": 160, "a": 70, "b": 70}


def test_priority_leaves_the_minimum_to_every_car_it_serves_after():
    demands = [Demand("vip", 32 * A, priority=2), Demand("a", 32 * A, priority=1, order=1)]
    assert allocate(30 * A, demands, minimum=6 * A, strategy=PRIORITY) == {"vip": 240, "a": 60}


def test_priority_decides_who_waits_below_the_minimum():
    demands = [Demand("low", 32 * A, priority=0, order=0), Demand("high", 32 * A, priority=1, order=1)]
    assert allocate(10 * A, demands, minimum=6 * A, strategy=PRIORITY) == {"low": 0, "high": 100}


def test_an_unknown_strategy_is_refused():
    try:
        allocate(10, cars(1), strategy="random")
    except ValueError as exc:
        assert "random" in str(exc)
    else:
        raise AssertionError("an unknown strategy was accepted")


def test_lower_first_then_raise_within_what_is_left():
    current = {"a": 160, "b": 160}
    wanted = {"a": 106, "b": 106, "c": 106}
    assert lowering(current, wanted) == {"a": 106, "b": 106}
    # b did not answer its lowering: it still counts at 16 A, and c gets only what is left.
    counted = {"a": 106, "b": 160, "c": 0}
    assert raising(320, counted, wanted, ["a", "b", "c"]) == {"c": 54}


def test_reclaim_caps_a_car_far_below_its_share_and_lifts_the_cap_when_it_wants_more():
    assert reclaim(None, 60, 160, margin=20, headroom=10) == 70  # draws 6 A of 16 A: capped at 7 A
    assert reclaim(70, 60, 70, margin=20, headroom=10) == 70  # steady: the cap holds
    assert reclaim(70, 66, 70, margin=20, headroom=10) is None  # at its cap: it may want more
    assert reclaim(None, 150, 160, margin=20, headroom=10) is None  # uses its share
    assert reclaim(70, None, 70, margin=20, headroom=10) == 70  # no measurement: nothing changes


# --- properties ------------------------------------------------------------------------------------

demand_st = st.builds(
    Demand,
    key=st.integers(0, 10_000),
    maximum=st.integers(0, 800),
    priority=st.integers(0, 3),
    order=st.integers(0, 100),
    wants=st.none() | st.integers(0, 800),
)


@st.composite
def sites(draw):
    demands = draw(st.lists(demand_st, max_size=12, unique_by=lambda d: d.key))
    return (
        draw(st.integers(0, 2000)),
        demands,
        draw(st.integers(0, 160)),
        draw(st.sampled_from([EQUAL, PRIORITY])),
    )


@settings(max_examples=150, deadline=None)
@given(sites())
def test_shares_never_exceed_the_limit_nor_a_car_ceiling_and_honour_the_minimum(site):
    limit, demands, minimum, strategy = site
    shares = allocate(limit, demands, minimum, strategy)
    assert set(shares) == {d.key for d in demands}
    assert sum(shares.values()) <= limit
    for demand in demands:
        assert 0 <= shares[demand.key] <= demand.ceiling
        assert shares[demand.key] == 0 or shares[demand.key] >= minimum


@settings(max_examples=120, deadline=None)
@given(sites())
def test_equal_shares_differ_by_at_most_a_step_unless_a_ceiling_holds_one_back(site):
    limit, demands, minimum, _ = site
    shares = allocate(limit, demands, minimum, EQUAL)
    free = [shares[d.key] for d in demands if shares[d.key] and shares[d.key] < d.ceiling]
    assert not free or max(free) - min(free) <= 1
    # nothing is left unused while a served car could take more
    served = [d for d in demands if shares[d.key]]
    if any(shares[d.key] < d.ceiling for d in served):
        assert limit - sum(shares.values()) < max(len(served), 1)


@settings(max_examples=80, deadline=None)
@given(
    limit=st.integers(0, 1000),
    steps=st.lists(
        st.tuples(
            st.lists(demand_st, max_size=8, unique_by=lambda d: d.key),
            st.sets(st.integers(0, 10_000)),  # who does not answer this time
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_a_sequence_of_reallocations_never_counts_more_than_the_limit_at_any_instant(limit, steps):
    """Arrivals and departures in any order, some chargers silent at each step: what is counted
    (lowered when accepted, raised when sent, silent ones at the higher of old and new) stays within
    the limit after every round, as load management sends them."""
    counted: dict = {}
    for demands, silent in steps:
        keys = {d.key for d in demands}
        counted = {key: value for key, value in counted.items() if key in keys}  # departures draw nothing
        for key in keys - set(counted):
            counted[key] = 0  # arrivals wait at their TxDefaultProfile of 0
        assert sum(counted.values()) <= limit
        pinned = [Demand(d.key, d.maximum, fixed=counted[d.key]) if d.key in silent else d for d in demands]
        wanted = allocate(limit, pinned)
        for key, value in lowering(counted, wanted).items():
            if key not in silent:
                counted[key] = value
        assert sum(counted.values()) <= limit
        counted.update(raising(limit, counted, wanted, sorted(k for k in keys if k not in silent)))
        assert sum(counted.values()) <= limit
