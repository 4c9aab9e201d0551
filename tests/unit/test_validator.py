"""The validator against hand-written events: one valid event per type, and a corpus with
every reason code (independent of the generator's own corruptions)."""

import json

import msgspec
import pytest

from adplatform.events.schema import EventType, Reason
from adplatform.events.validator import Limits, Rejection, Validator

NOW = 1_790_000_000_000

CONTEXT = {
    "schema_version": 1,
    "event_time_ms": NOW - 60_000,
    "request_id": "req-1",
    "publisher_id": "pub-001",
    "site_id": "site-001-1",
    "placement_id": "site-001-1-300x250",
    "ad_size": "300x250",
    "device_type": "mobile",
    "os": "ios",
    "country": "US",
    "region": "CA",
    "user_id_hash": "00ff00ff00ff00ff",
}
SERVED = {
    "advertiser_id": "adv-001",
    "campaign_id": "cmp-0001",
    "line_item_id": "li-00001",
    "creative_id": "cr-00001",
}
VALID = {
    EventType.BID_REQUEST: CONTEXT | {"floor_price_cpm": 0.5, "currency": "USD"},
    EventType.BID: CONTEXT | SERVED | {"bid_price_cpm": 2, "currency": "EUR"},
    EventType.WIN: CONTEXT
    | SERVED
    | {"impression_id": "imp-1", "clearing_price_cpm": 1.2, "currency": "EUR"},
    EventType.IMPRESSION: CONTEXT
    | SERVED
    | {
        "impression_id": "imp-1",
        "clearing_price_cpm": 1.2,
        "currency": "EUR",
        "sim_click_probability": 0.02,
    },
    EventType.CLICK: CONTEXT | SERVED | {"impression_id": "imp-1", "click_id": "clk-1"},
    EventType.CONVERSION: CONTEXT
    | SERVED
    | {"impression_id": "imp-1", "click_id": "clk-1", "conversion_value": 30.0, "currency": "GBP"},
}


def event(kind=EventType.IMPRESSION, **changes):
    body = VALID[kind] | {"event_id": f"evt-{kind}", "event_type": str(kind)}
    body |= changes
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.fixture(scope="module")
def validator():
    return Validator(Limits(max_event_bytes=4096, max_age_ms=86_400_000, max_future_ms=60_000))


@pytest.mark.parametrize("event_type", list(EventType))
def test_valid_events_of_every_type_are_accepted(validator, event_type):
    result = validator.validate(event(event_type), NOW)
    assert not isinstance(result, Rejection), result
    assert result.event_type == event_type
    assert msgspec.structs.asdict(result)["event_id"] == f"evt-{event_type}"


def test_integer_prices_become_floats(validator):
    result = validator.validate(event(EventType.BID), NOW)
    assert result.bid_price_cpm == 2.0 and isinstance(result.bid_price_cpm, float)


def test_schema_v2_adds_deal_id_which_v1_must_not_carry(validator):
    assert not isinstance(
        validator.validate(event(schema_version=2, deal_id="d-1"), NOW), Rejection
    )
    rejected = validator.validate(event(schema_version=1, deal_id="d-1"), NOW)
    assert rejected.reason is Reason.UNKNOWN_FIELD and "deal_id" in rejected.detail


CORPUS = [
    (Reason.OVERSIZED, event(os="x" * 5000)),
    (Reason.BAD_UTF8, event().replace(b'"ios"', b'"i\xc3\x28s"')),
    (Reason.UNPARSEABLE, b'{"schema_version": 1, "event_type": '),
    (Reason.UNPARSEABLE, b"not json at all"),
    (Reason.UNPARSEABLE, b""),
    (Reason.TOO_DEEP, b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}"),
    (Reason.TOO_DEEP, b'{"event_type": ' + b"[" * 2000 + b"]" * 2000 + b"}"),
    (Reason.DUPLICATE_KEY, event()[:-1] + b', "event_id": "evt-other"}'),
    (Reason.DUPLICATE_KEY, event()[:-1] + b', "event\\u005fid": "evt-other"}'),  # escaped name
    (Reason.DUPLICATE_KEY, event(os='say "hi"')[:-1] + b', "os": "android"}'),  # slow path
    (Reason.NOT_AN_OBJECT, b"[1, 2, 3]"),
    (Reason.NOT_AN_OBJECT, b'"impression"'),
    (Reason.UNKNOWN_SCHEMA_VERSION, event(schema_version=7)),
    (Reason.UNKNOWN_EVENT_TYPE, event(event_type="impresion")),
    (Reason.MISSING_FIELD, event(event_type=...)),
    (Reason.MISSING_FIELD, event(request_id=...)),
    (Reason.MISSING_FIELD, event(campaign_id=None)),
    (Reason.MISSING_FIELD, event(schema_version=...)),
    (Reason.UNKNOWN_FIELD, event(debug=True)),
    (Reason.UNKNOWN_FIELD, event(EventType.BID_REQUEST, campaign_id="cmp-1")),
    (Reason.WRONG_TYPE, event(event_time_ms="1790000000000")),
    (Reason.WRONG_TYPE, event(event_time_ms=1.79e12)),
    (Reason.WRONG_TYPE, event(schema_version="1")),
    (Reason.WRONG_TYPE, event(clearing_price_cpm="1.2")),
    (Reason.WRONG_TYPE, event(os=17)),
    (Reason.INVALID_VALUE, event(device_type="toaster")),
    (Reason.INVALID_VALUE, event(country="usa")),
    (Reason.INVALID_VALUE, event(ad_size="big")),
    (Reason.INVALID_VALUE, event(currency="XYZ")),
    (Reason.INVALID_VALUE, event(request_id="")),
    (Reason.INVALID_VALUE, event(sim_click_probability=1.5)),
    (Reason.INVALID_VALUE, event(clearing_price_cpm=1e12)),
    (Reason.NEGATIVE_PRICE, event(clearing_price_cpm=-0.01)),
    (Reason.NEGATIVE_PRICE, event(EventType.CONVERSION, conversion_value=-5)),
    (Reason.TIMESTAMP_TOO_OLD, event(event_time_ms=NOW - 2 * 86_400_000)),
    (Reason.TIMESTAMP_IN_FUTURE, event(event_time_ms=NOW + 120_000)),
]


@pytest.mark.parametrize(
    ("reason", "payload"), CORPUS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(CORPUS)]
)
def test_each_bad_event_gets_its_reason(validator, reason, payload):
    result = validator.validate(payload, NOW)
    assert isinstance(result, Rejection), f"accepted: {payload[:80]!r}"
    assert result.reason is reason, result.detail
    assert result.detail


def test_the_corpus_covers_every_reason_code():
    # validator_error has a test of its own: no valid input should provoke it.
    assert {reason for reason, _ in CORPUS} == set(Reason) - {Reason.VALIDATOR_ERROR}


@pytest.mark.parametrize(
    "payload",
    [
        event(os='quote " inside'),  # escaped quotes: the tokenising path
        event(EventType.BID, deal_id=None, schema_version=2),  # an explicit null
        event(os="a:b", region='"x":"y"'),  # a key-like value
    ],
)
def test_unusual_but_unambiguous_events_are_accepted(validator, payload):
    assert not isinstance(validator.validate(payload, NOW), Rejection)


def test_anything_the_validator_raises_quarantines_only_that_message(validator, monkeypatch):
    from adplatform.events import validator as module

    def broken(payload, event):
        if b"evt-boom" in payload:
            raise KeyError("a bug in a check")
        return None

    monkeypatch.setattr(module, "_duplicate_key", broken)
    payloads = [event(), event(event_id="evt-boom"), event(EventType.CLICK)]
    accepted, rejected = validator.validate_batch(payloads, NOW)
    assert len(accepted) == 2
    [(index, rejection)] = rejected
    assert index == 1 and rejection.reason is Reason.VALIDATOR_ERROR
    assert "KeyError" in rejection.detail and "a bug in a check" in rejection.detail


def test_validate_batch_keeps_order_and_indexes(validator):
    payloads = [event(), b"garbage", event(EventType.CLICK), event(country="usa")]
    accepted, rejected = validator.validate_batch(payloads, NOW)
    assert [e.event_type for e in accepted] == ["impression", "click"]
    assert [(i, r.reason) for i, r in rejected] == [
        (1, Reason.UNPARSEABLE),
        (3, Reason.INVALID_VALUE),
    ]
