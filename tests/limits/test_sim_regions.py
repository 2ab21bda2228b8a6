"""The multi-region budget design (docs/multi-region.md), checked on generated traffic by bench/sim_regions.py."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import sim_regions as sim

SECONDS = 600
rates = st.tuples(*(st.floats(0.0, 8.0) for _ in sim.REGIONS)).filter(lambda r: sum(r) > 0.5)
windows = st.tuples(st.sampled_from(sim.REGIONS), st.integers(0, SECONDS), st.integers(1, SECONDS)).map(
    lambda w: (w[0], w[1], w[1] + w[2])
)


@st.composite
def scenarios(draw) -> sim.Scenario:
    first, second = draw(rates), draw(rates)
    demand = sum(first + second) / 2 * SECONDS * 0.05 * 0.55
    return sim.Scenario(
        "generated",
        budget=demand * draw(st.floats(0.2, 1.5)),
        seconds=SECONDS,
        rates=(first, second),
        partitions=tuple(draw(st.lists(windows, max_size=3))),
        losses=tuple(
            (region, draw(st.integers(0, SECONDS))) for region in draw(st.sets(st.sampled_from(sim.REGIONS[1:])))
        ),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**16))
def test_no_region_spends_past_its_share_by_more_than_one_request_whatever_the_traffic_and_failures(s, seed):
    r = sim.run(s, seed)
    # The ledger never grants more than the budget, and spend passes the budget by at most one reservation per
    # region (each region's admit checks before it reserves): the bound docs/multi-region.md states.
    assert r.shares.peak_granted <= s.budget + 1e-9
    assert r.shares.overshoot(s.budget) <= sim.bound(s, r.shares) + 1e-9
    assert r.glob.overshoot(s.budget) <= r.glob.largest_reservation + 1e-9
    assert r.shares.admitted + r.shares.refused == r.shares.requests == r.glob.requests


def test_a_region_cut_off_keeps_serving_on_its_share_where_a_global_counter_refuses():
    scenario = next(s for s in sim.SCENARIOS if s.name == "ap cut off 10 min")
    r = sim.run(scenario, seed=1)
    assert r.global_needless > 0
    assert r.shares.needless < r.global_needless


def test_a_share_is_not_spent_past_its_ttl_without_the_ledger():
    cut = sim.Scenario("cut", budget=10_000.0, seconds=SECONDS, partitions=(("eu", 0, SECONDS),))
    forever = sim.run(cut, seed=3, tuning=sim.Tuning(share_ttl=SECONDS * 2)).shares
    bounded = sim.run(cut, seed=3, tuning=sim.Tuning(share_ttl=60)).shares
    # eu never reached the ledger: it holds no share at all and refuses everything either way (fail closed).
    assert forever.refused == bounded.refused > 0
    later = sim.Scenario("later", budget=10_000.0, seconds=SECONDS, partitions=(("eu", 100, SECONDS),))
    forever = sim.run(later, seed=3, tuning=sim.Tuning(share_ttl=SECONDS * 2)).shares
    bounded = sim.run(later, seed=3, tuning=sim.Tuning(share_ttl=60)).shares
    assert bounded.refused > forever.refused
