from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest

from adplatform.events.catalog import build_catalog
from adplatform.events.generator import CORRUPTIONS, TrafficConfig, TrafficSimulator
from adplatform.events.validator import Rejection, Validator

START = datetime(2026, 11, 20, tzinfo=UTC)
NOW_MS = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)


def simulate(**overrides):
    config = TrafficConfig(**({"seed": 3, "start": START, "requests": 6000} | overrides))
    return list(TrafficSimulator(config, build_catalog(config.seed)).messages())


@pytest.fixture(scope="module")
def messages():
    return simulate(malformed_rate=0.03, duplicate_rate=0.02, late_rate=0.05)


def test_same_config_same_bytes_any_other_config_other_ids():
    first, again = simulate(requests=500), simulate(requests=500)
    assert [m.payload for m in first] == [m.payload for m in again]
    ids = {m.event_id for m in first if m.event_id}
    # Other seeds, and the same seed and day at another size, share no event id with it.
    for other in (simulate(requests=500, seed=4), simulate(requests=501)):
        assert ids.isdisjoint({m.event_id for m in other if m.event_id})


def test_requests_follow_the_diurnal_curve_and_sum_exactly():
    per_hour = TrafficConfig(start=START, requests=100_000).requests_per_hour()
    assert sum(per_hour) == 100_000
    assert max(per_hour) > 3 * min(per_hour)  # busy evenings, quiet nights


def test_nothing_happens_after_the_window():
    # An auction near the end continues past it (impressions seconds later, conversions hours
    # later); for a window that ends about now those events lie in the future.
    config = TrafficConfig(seed=3, start=START, hours=1, requests=4000)
    happened = [
        msgspec.json.decode(m.payload)["event_time_ms"]
        for m in simulate(hours=1, requests=4000)
        if m.expected_reason is None
    ]
    assert max(happened) < config.end_ms
    assert max(happened) > config.end_ms - 60_000  # the window is used to its end


def test_messages_come_in_emit_order(messages):
    emitted = [m.emit_ms for m in messages]
    assert emitted == sorted(emitted)


def test_the_funnel_narrows(messages):
    counts = Counter(m.event_type for m in messages if m.expected_reason is None)
    assert counts["bid_request"] > counts["win"] > counts["impression"] > counts["click"]
    assert counts["click"] > counts["conversion"] > 0


def test_every_message_gets_the_verdict_the_generator_expects(messages):
    validator = Validator()
    verdicts = Counter()
    for message in messages:
        result = validator.validate(message.payload, NOW_MS)
        got = result.reason if isinstance(result, Rejection) else None
        assert got == message.expected_reason, (message.payload[:120], result)
        verdicts[got] += 1
    assert set(verdicts) - {None} == set(CORRUPTIONS)  # every corruption kind occurs


def test_rates_of_duplicates_late_and_malformed_events(messages):
    total = len(messages)
    malformed = sum(m.expected_reason is not None for m in messages)
    duplicates = [m for m in messages if m.duplicate]
    late = sum(
        m.emit_ms - msgspec.json.decode(m.payload)["event_time_ms"] >= 10 * 60_000
        for m in messages
        if m.expected_reason is None and not m.duplicate
    )
    assert 0.02 < malformed / total < 0.04
    assert 0.01 < len(duplicates) / total < 0.03
    assert 0.035 < late / total < 0.065
    originals = {m.event_id: m.payload for m in messages if not m.duplicate}
    assert all(originals[d.event_id] == d.payload for d in duplicates)


def test_clicks_follow_the_true_probability(messages):
    decoded = [
        msgspec.json.decode(m.payload)
        for m in messages
        if m.expected_reason is None and not m.duplicate
    ]
    impressions = {
        e["impression_id"]: e["sim_click_probability"]
        for e in decoded
        if e["event_type"] == "impression"
    }
    clicked = {e["impression_id"] for e in decoded if e["event_type"] == "click"}
    expected = sum(impressions.values())
    observed = len(clicked & impressions.keys())
    assert abs(observed - expected) < 4 * expected**0.5  # within 4 sigma of the truth
    assert all(0 < p < 1 for p in impressions.values())


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="on the hour"):
        TrafficConfig(start=START.replace(minute=5))
    with pytest.raises(ValueError, match="UTC"):
        TrafficConfig(start=datetime(2026, 11, 20))
    with pytest.raises(ValueError, match="late_rate"):
        TrafficConfig(start=START, late_rate=1.5)
