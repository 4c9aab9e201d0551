"""Which day `adplatform demo` simulates next (adplatform.demo.DemoState)."""

from datetime import timedelta

import pytest

from adplatform.demo import DemoError, DemoState
from adplatform.events.generator import yesterday_utc

YESTERDAY = yesterday_utc()


def state_with(settings, *days):
    """A saved state holding ``days``: (start, produced) pairs."""
    state = DemoState.load(settings)
    state.days = [
        {"start": start.isoformat(), "seed": 7, "requests": 1000, "produced": produced}
        for start, produced in days
    ]
    state.save()
    return DemoState.load(settings)


def test_a_fresh_lakehouse_starts_with_yesterday(settings):
    assert DemoState.load(settings).next_day(max_age_days=14) == YESTERDAY


def test_each_finished_run_adds_the_day_before_the_oldest(settings):
    state = state_with(settings, (YESTERDAY, True), (YESTERDAY - timedelta(days=1), True))
    assert state.next_day(max_age_days=14) == YESTERDAY - timedelta(days=2)


def test_a_day_whose_production_was_interrupted_is_simulated_again(settings):
    unfinished = YESTERDAY - timedelta(days=1)
    state = state_with(settings, (YESTERDAY, True), (unfinished, False))
    assert state.next_day(max_age_days=14) == unfinished


def test_a_day_beyond_the_validators_age_limit_is_refused_with_the_way_out(settings):
    # The next day would be 12 days before yesterday: older than 14 - 1 days.
    days = [(YESTERDAY - timedelta(days=n), True) for n in range(12)]
    state = state_with(settings, *days)
    assert state.next_day(max_age_days=15) == YESTERDAY - timedelta(days=12)
    with pytest.raises(DemoError, match=r"12 demo days.*make clean.*ADP_MAX_EVENT_AGE_DAYS"):
        state.next_day(max_age_days=14)


def test_the_state_lives_under_the_data_root(settings):
    state = state_with(settings, (YESTERDAY, True))
    assert state.path == settings.data_root / "demo" / "state.json"
    assert state.days[0]["start"] == YESTERDAY.isoformat()
