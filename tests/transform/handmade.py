"""A small handmade Bronze dataset whose Silver and Gold results are worked out by hand.

Monday 2026-03-02, hours 10-12 UTC. Two users on one mobile placement in the US (pub-1), one
on a desktop site in Germany (pub-2); three campaigns bidding in EUR, JPY and USD. It holds
cross-file and cross-run duplicates, a late impression (accepted), a too-late bid request
(left out), an impression clicked twice (multi-touch) with a conversion on the second click,
a click whose impression is an hour earlier, unattributable clicks and conversions, and files
from before schema v2 (no ``deal_id`` column) next to v2 events with a deal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from adplatform.settings import Settings
from tests.transform.bronze import encode, write_bronze

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
DAY = "2026-03-02"

MOBILE_US = {
    "publisher_id": "pub-1",
    "site_id": "site-1",
    "placement_id": "site-1-300x250",
    "ad_size": "300x250",
    "device_type": "mobile",
    "os": "ios",
    "country": "US",
    "region": "CA",
}
DESKTOP_DE = {
    "publisher_id": "pub-2",
    "site_id": "site-2",
    "placement_id": "site-2-728x90",
    "ad_size": "728x90",
    "device_type": "desktop",
    "os": "linux",
    "country": "DE",
    "region": "BE",
}
X = {
    "advertiser_id": "adv-x",
    "campaign_id": "cmp-x",
    "line_item_id": "li-x",
    "creative_id": "cr-x",
}
Y = {
    "advertiser_id": "adv-y",
    "campaign_id": "cmp-y",
    "line_item_id": "li-y",
    "creative_id": "cr-y",
}
Z = {
    "advertiser_id": "adv-z",
    "campaign_id": "cmp-z",
    "line_item_id": "li-z",
    "creative_id": "cr-z",
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(
    event_id: str,
    event_type: str,
    when: datetime,
    request: str,
    user: str,
    context: dict[str, str],
    **fields: Any,
) -> dict[str, Any]:
    return {
        "schema_version": 2 if "deal_id" in fields else 1,
        "event_id": event_id,
        "event_type": event_type,
        "event_time_ms": int(when.timestamp() * 1000),
        "request_id": request,
        "user_id_hash": user,
        **context,
        **fields,
    }


E: dict[str, dict[str, Any]] = {
    e["event_id"]: e
    for e in [
        # Auction r1, 10:05, user u-1: X (EUR) beats Y (JPY); the impression is clicked twice and
        # the second click converts.
        event(
            "e01", "bid_request", at(5), "r1", "u-1", MOBILE_US, floor_price_cpm=1.0, currency="USD"
        ),
        event(
            "e02", "bid", at(5.001), "r1", "u-1", MOBILE_US | X, bid_price_cpm=2.5, currency="EUR"
        ),
        event(
            "e03", "bid", at(5.001), "r1", "u-1", MOBILE_US | Y, bid_price_cpm=400.0, currency="JPY"
        ),
        event(
            "e04",
            "win",
            at(5.002),
            "r1",
            "u-1",
            MOBILE_US | X,
            impression_id="i1",
            clearing_price_cpm=2.0,
            currency="EUR",
        ),
        event(
            "e05",
            "impression",
            at(5.04),
            "r1",
            "u-1",
            MOBILE_US | X,
            impression_id="i1",
            clearing_price_cpm=2.0,
            currency="EUR",
            sim_click_probability=0.05,
        ),
        event(
            "e06", "click", at(5.2), "r1", "u-1", MOBILE_US | X, impression_id="i1", click_id="c1"
        ),
        event(
            "e07", "click", at(5.7), "r1", "u-1", MOBILE_US | X, impression_id="i1", click_id="c2"
        ),
        event(
            "e08",
            "conversion",
            at(30),
            "r1",
            "u-1",
            MOBILE_US | X,
            impression_id="i1",
            click_id="c2",
            conversion_value=50.0,
            currency="EUR",
        ),
        # Auction r2, 10:20, user u-1 again: Y wins in JPY, no click until 12:30 (too late).
        event(
            "e09",
            "bid_request",
            at(20),
            "r2",
            "u-1",
            MOBILE_US,
            floor_price_cpm=0.5,
            currency="USD",
        ),
        event(
            "e10",
            "bid",
            at(20.001),
            "r2",
            "u-1",
            MOBILE_US | Y,
            bid_price_cpm=300.0,
            currency="JPY",
        ),
        event(
            "e11",
            "win",
            at(20.002),
            "r2",
            "u-1",
            MOBILE_US | Y,
            impression_id="i2",
            clearing_price_cpm=250.0,
            currency="JPY",
        ),
        event(
            "e12",
            "impression",
            at(20.02),
            "r2",
            "u-1",
            MOBILE_US | Y,
            impression_id="i2",
            clearing_price_cpm=250.0,
            currency="JPY",
            sim_click_probability=0.01,
        ),
        event(
            "e22", "click", at(150), "r2", "u-1", MOBILE_US | Y, impression_id="i2", click_id="c5"
        ),
        # Auction r3, 10:59:30, user u-2 in Germany: Z (USD, schema v2 with a deal); the click
        # comes in the next hour and counts with its impression, in hour 10.
        event(
            "e13",
            "bid_request",
            at(59.5),
            "r3",
            "u-2",
            DESKTOP_DE,
            floor_price_cpm=1.0,
            currency="USD",
        ),
        event(
            "e14",
            "bid",
            at(59.501),
            "r3",
            "u-2",
            DESKTOP_DE | Z,
            bid_price_cpm=3.0,
            currency="USD",
            deal_id="deal-z",
        ),
        event(
            "e15",
            "win",
            at(59.502),
            "r3",
            "u-2",
            DESKTOP_DE | Z,
            impression_id="i3",
            clearing_price_cpm=1.5,
            currency="USD",
            deal_id="deal-z",
        ),
        event(
            "e16",
            "impression",
            at(59 + 50 / 60),
            "r3",
            "u-2",
            DESKTOP_DE | Z,
            impression_id="i3",
            clearing_price_cpm=1.5,
            currency="USD",
            sim_click_probability=0.2,
            deal_id="deal-z",
        ),
        event(
            "e17",
            "click",
            at(60 + 20 / 60),
            "r3",
            "u-2",
            DESKTOP_DE | Z,
            impression_id="i3",
            click_id="c3",
            deal_id="deal-z",
        ),
        # Auction r4, 10:40, user u-3: X wins; its impression arrives late (accepted).
        event(
            "e26",
            "bid_request",
            at(40),
            "r4",
            "u-3",
            MOBILE_US,
            floor_price_cpm=0.5,
            currency="USD",
        ),
        event(
            "e25", "bid", at(40.001), "r4", "u-3", MOBILE_US | X, bid_price_cpm=1.2, currency="EUR"
        ),
        event(
            "e20",
            "win",
            at(40.002),
            "r4",
            "u-3",
            MOBILE_US | X,
            impression_id="i4",
            clearing_price_cpm=1.0,
            currency="EUR",
        ),
        event(
            "e18",
            "impression",
            at(40.05),
            "r4",
            "u-3",
            MOBILE_US | X,
            impression_id="i4",
            clearing_price_cpm=1.0,
            currency="EUR",
            sim_click_probability=0.03,
        ),
        # A bid request of 10:45 that reaches the broker at 15:05: past its hour's late window
        # (11:00 + 4 h).
        event(
            "e19",
            "bid_request",
            at(45),
            "r9",
            "u-3",
            MOBILE_US,
            floor_price_cpm=0.5,
            currency="USD",
        ),
        # Hour 11: an unfilled request, a click and a conversion with nothing to attribute to,
        # and user u-1's third impression of the day.
        event(
            "e24",
            "bid_request",
            at(75),
            "r5",
            "u-1",
            MOBILE_US,
            floor_price_cpm=0.8,
            currency="USD",
        ),
        event(
            "e21",
            "click",
            at(70),
            "r7",
            "u-1",
            MOBILE_US | X,
            impression_id="i-unknown",
            click_id="c4",
        ),
        event(
            "e23",
            "conversion",
            at(90),
            "r8",
            "u-1",
            MOBILE_US | X,
            impression_id="i-other",
            click_id="c-unknown",
            conversion_value=10.0,
            currency="EUR",
        ),
        event(
            "e27",
            "bid_request",
            at(90),
            "r6",
            "u-1",
            MOBILE_US,
            floor_price_cpm=0.5,
            currency="USD",
        ),
        event(
            "e28", "bid", at(90.001), "r6", "u-1", MOBILE_US | X, bid_price_cpm=3.5, currency="EUR"
        ),
        event(
            "e29",
            "win",
            at(90.002),
            "r6",
            "u-1",
            MOBILE_US | X,
            impression_id="i6",
            clearing_price_cpm=3.0,
            currency="EUR",
        ),
        event(
            "e30",
            "impression",
            at(90.03),
            "r6",
            "u-1",
            MOBILE_US | X,
            impression_id="i6",
            clearing_price_cpm=3.0,
            currency="EUR",
            sim_click_probability=0.04,
        ),
    ]
}

# Deliveries: (batch, reached the broker and ingested at, event ids, columns the writer lacked).
# Batch "a" is from a writer that predates schema v2 and the broker-time column (no deal_id, no
# _broker_time: its ingest time stands in); e05 and e02 are delivered twice.
DELIVERIES = [
    (
        "a",
        at(30),
        ["e01", "e02", "e03", "e04", "e05", "e06", "e07", "e09", "e10", "e11", "e12"],
        ("deal_id", "_broker_time"),
    ),
    ("b", at(65), ["e08", "e13", "e14", "e15", "e16", "e26", "e25", "e20", "e05", "e02"], ()),
    ("c", at(105), ["e17", "e21", "e23", "e24", "e18", "e27", "e28", "e29", "e30"], ()),
    ("d", at(165), ["e22"], ()),
    ("e", at(305), ["e19", "e05"], ()),
]
HOURS = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]


def write_handmade_bronze(settings: Settings, *, stalled_until: datetime | None = None) -> None:
    """The deliveries above; with ``stalled_until``, ingest stalls after the first batch and
    takes every later one from the broker only then (they reached the broker in time)."""
    offset = 0
    for batch, arrived, ids, without in DELIVERIES:
        ingested_at = max(arrived, stalled_until) if stalled_until and offset else arrived
        write_bronze(
            settings,
            encode(E[i] for i in ids),
            ingested_at=ingested_at,
            broker_time=arrived,
            batch=batch,
            first_offset=offset,
            without=without,
        )
        offset += len(ids)
