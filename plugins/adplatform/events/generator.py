"""Synthetic ad traffic: auctions simulated hour by hour, emitted in the order a topic sees them.

Deterministic: the same config yields the same messages, byte for byte; each simulated hour
draws from its own generator seeded by the config and the hour, so different configs (other
days, sizes or seeds) never share event ids. Realism knobs: a diurnal
curve, Pareto-weighted publishers, skewed user activity (frequency), a geo and device mix,
first/second-price auctions in several currencies, late events (emitted long after they
happened), duplicates (the same message sent twice) and malformed events of every reason code.
Clicks and conversions come from the catalog's hidden truth model; each impression carries its
true click probability (``sim_click_probability``) so later stages can compute the oracle.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adplatform.events.catalog import AD_SIZES_BY_DEVICE, COUNTRIES, DEVICES, Catalog
from adplatform.events.currency import USD_PER_UNIT
from adplatform.events.schema import EventType, Reason

HOUR_MS = 3_600_000
_encode = msgspec.json.encode
# Relative traffic per hour of day (UTC): quiet at night, peaks in the evening.
DIURNAL = tuple(1.0 + 0.8 * math.sin((h - 8) / 24 * 2 * math.pi) for h in range(24))
RENDER_RATE = 0.93  # wins that become a rendered impression


def yesterday_utc() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1)


@dataclass(frozen=True)
class TrafficConfig:
    seed: int = 7
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)  # hour-aligned, UTC
    hours: int = 24
    requests: int = 100_000  # bid requests over the whole window
    users: int = 50_000
    late_rate: float = 0.01  # emitted 10-90 minutes after they happened
    duplicate_rate: float = 0.005  # sent twice
    malformed_rate: float = 0.002  # replaced by a corrupt message
    schema_v2_share: float = 0.1  # share of auctions sent with schema version 2

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError(f"start must be a UTC datetime, got {self.start!r}")
        if self.start.minute or self.start.second or self.start.microsecond:
            raise ValueError(f"start must be on the hour, got {self.start.isoformat()}")
        if self.hours < 1 or self.requests < 0 or self.users < 1:
            raise ValueError("hours and users must be >= 1 and requests >= 0")
        for name in ("late_rate", "duplicate_rate", "malformed_rate", "schema_v2_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """When the window ends: no event happens at or after it."""
        return self.start_ms + self.hours * HOUR_MS

    def requests_per_hour(self) -> list[int]:
        """Bid requests in each simulated hour, following the diurnal curve, summing exactly."""
        weights = [DIURNAL[(self.start.hour + h) % 24] for h in range(self.hours)]
        total = sum(weights)
        cumulative = list(itertools.accumulate(weights))
        bounds = [0] + [round(self.requests * c / total) for c in cumulative]
        return [b - a for a, b in itertools.pairwise(bounds)]


@dataclass(slots=True)
class Message:
    """One message as the topic receives it."""

    key: bytes
    payload: bytes
    event_type: str
    event_id: str | None  # None for messages corrupt beyond recognition
    expected_reason: Reason | None  # None: the validator must accept it
    duplicate: bool  # a re-send of an earlier message
    emit_ms: int  # when it is sent, in simulated time


class _Users:
    """A fixed population: each user has one device, OS, country and region."""

    def __init__(self, seed: int, count: int) -> None:
        rng = random.Random(f"users-{seed}")
        devices, device_weights = zip(*((d, w) for d, (w, _) in DEVICES.items()), strict=True)
        countries, country_weights = zip(*((c, w) for c, (w, _) in COUNTRIES.items()), strict=True)
        self.ids = [f"{rng.getrandbits(64):016x}" for _ in range(count)]
        self.devices = rng.choices(devices, device_weights, k=count)
        self.os = [rng.choice(DEVICES[d][1]) for d in self.devices]
        self.countries = rng.choices(countries, country_weights, k=count)
        self.regions = [rng.choice(COUNTRIES[c][1]) for c in self.countries]


class TrafficSimulator:
    def __init__(self, config: TrafficConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self.users = _Users(config.seed, config.users)
        self._impressions_seen = [0] * config.users
        self._publisher_cumweights = list(
            itertools.accumulate(p.weight for p in catalog.publishers)
        )
        self._sequence = itertools.count()

    def messages(self) -> Iterator[Message]:
        """Every message of the window, in emit order."""
        pending: list[tuple[int, int, Message]] = []
        start_ms = self.config.start_ms
        for hour, count in enumerate(self.config.requests_per_hour()):
            for message in self._simulate_hour(start_ms + hour * HOUR_MS, count):
                heapq.heappush(pending, (message.emit_ms, next(self._sequence), message))
            hour_end = start_ms + (hour + 1) * HOUR_MS
            while pending and pending[0][0] < hour_end:
                yield heapq.heappop(pending)[2]
        while pending:
            yield heapq.heappop(pending)[2]

    # -- one hour ---------------------------------------------------------------------------

    def _simulate_hour(self, hour_start_ms: int, requests: int) -> Iterator[Message]:
        config = self.config
        # Seeded by the whole config, not the seed alone: two configs sharing one random stream
        # would draw the same event ids for different events wherever their draws line up.
        rng = random.Random(f"traffic-{config!r}-{hour_start_ms // HOUR_MS}")
        hour_of_day = (hour_start_ms // HOUR_MS) % 24
        offsets = sorted(rng.randrange(HOUR_MS) for _ in range(requests))
        for offset in offsets:
            version = 2 if rng.random() < config.schema_v2_share else 1
            for event in self._auction(rng, hour_start_ms + offset, hour_of_day, version):
                if event["event_time_ms"] >= config.end_ms:
                    # The rest of this auction (a late impression, a conversion hours after the
                    # click) happens after the window: in a window that ends about now, it has
                    # not happened yet, and the validator would rightly refuse it as future.
                    break
                yield from self._emit(rng, event)

    def _auction(
        self, rng: random.Random, t: int, hour_of_day: int, version: int
    ) -> Iterator[dict[str, Any]]:
        catalog, users = self.catalog, self.users
        publisher = catalog.publishers[
            bisect.bisect(self._publisher_cumweights, rng.random() * self._publisher_cumweights[-1])
        ]
        user = min(int(len(users.ids) * rng.random() ** 2.5), len(users.ids) - 1)
        device = users.devices[user]
        ad_size = rng.choice(AD_SIZES_BY_DEVICE[device])
        site = rng.choice(publisher.sites)
        request_id = f"{rng.getrandbits(96):024x}"
        context = {
            "schema_version": version,
            "request_id": request_id,
            "publisher_id": publisher.publisher_id,
            "site_id": site,
            "placement_id": f"{site}-{ad_size}",
            "ad_size": ad_size,
            "device_type": device,
            "os": users.os[user],
            "country": users.countries[user],
            "region": users.regions[user],
            "user_id_hash": users.ids[user],
        }
        floor_usd = round(publisher.floor_cpm_usd * rng.lognormvariate(0, 0.2), 4)
        yield self._event(
            rng, EventType.BID_REQUEST, t, context, floor_price_cpm=floor_usd, currency="USD"
        )

        bidders = catalog.bidders_by_size[ad_size]
        wanted = rng.choices((0, 1, 2, 3), (0.15, 0.35, 0.3, 0.2))[0]
        offers = []
        for line_item, creative in rng.sample(bidders, min(wanted, len(bidders))):
            currency = catalog.advertiser_of(line_item.campaign_id).currency
            price = round(line_item.base_bid_cpm * rng.lognormvariate(0, 0.3), 4)
            offers.append((price * USD_PER_UNIT[currency], price, currency, line_item, creative))
            deal = {"deal_id": f"deal-{line_item.line_item_id}"} if version >= 2 else {}
            yield self._event(
                rng,
                EventType.BID,
                t + rng.randint(20, 120),
                self._served(context, line_item, creative) | deal,
                bid_price_cpm=price,
                currency=currency,
            )
        offers.sort(key=lambda offer: offer[0], reverse=True)
        if not offers or offers[0][0] < floor_usd:
            return
        best_usd, _best_price, currency, line_item, creative = offers[0]
        second_usd = offers[1][0] if len(offers) > 1 else floor_usd
        clearing_usd = min(best_usd, max(second_usd, floor_usd) + 0.01)
        clearing = round(clearing_usd / USD_PER_UNIT[currency], 4)
        served = self._served(context, line_item, creative) | {
            "impression_id": f"{rng.getrandbits(96):024x}"
        }
        t_win = t + rng.randint(120, 200)
        yield self._event(
            rng, EventType.WIN, t_win, served, clearing_price_cpm=clearing, currency=currency
        )
        if rng.random() >= RENDER_RATE:
            return
        t_impression = t_win + rng.randint(100, 3000)
        probability = catalog.truth.click_probability(
            creative.creative_id,
            publisher.publisher_id,
            device,
            ad_size,
            context["country"],
            hour_of_day,
            self._impressions_seen[user],
        )
        self._impressions_seen[user] += 1
        yield self._event(
            rng,
            EventType.IMPRESSION,
            t_impression,
            served,
            clearing_price_cpm=clearing,
            currency=currency,
            sim_click_probability=round(probability, 6),
        )
        if rng.random() >= probability:
            return
        clicked = served | {"click_id": f"{rng.getrandbits(96):024x}"}
        t_click = t_impression + 1000 + int(rng.expovariate(1 / 20_000))
        yield self._event(rng, EventType.CLICK, t_click, clicked)
        campaign = catalog.campaign(line_item.campaign_id)
        if rng.random() < campaign.conversion_rate:
            value = round(rng.lognormvariate(3.5, 0.8) / USD_PER_UNIT[currency], 2)
            yield self._event(
                rng,
                EventType.CONVERSION,
                t_click + int(rng.expovariate(1 / 1_800_000)),
                clicked,
                conversion_value=value,
                currency=currency,
            )

    def _served(self, context: dict[str, Any], line_item: Any, creative: Any) -> dict[str, Any]:
        return context | {
            "advertiser_id": self.catalog.campaign(line_item.campaign_id).advertiser_id,
            "campaign_id": line_item.campaign_id,
            "line_item_id": line_item.line_item_id,
            "creative_id": creative.creative_id,
        }

    def _event(
        self,
        rng: random.Random,
        event_type: EventType,
        t: int,
        fields: dict[str, Any],
        **extra: Any,
    ) -> dict[str, Any]:
        event = fields | extra
        event["event_id"] = f"{rng.getrandbits(128):032x}"
        event["event_type"] = event_type.value
        event["event_time_ms"] = t
        return event

    # -- emission ---------------------------------------------------------------------------

    def _emit(self, rng: random.Random, event: dict[str, Any]) -> Iterator[Message]:
        config = self.config
        emit_ms = event["event_time_ms"]
        if rng.random() < config.late_rate:
            emit_ms += rng.randint(10, 90) * 60_000
        key = event["request_id"].encode()
        if rng.random() < config.malformed_rate:
            payload, reason = corrupt(rng, event)
            yield Message(key, payload, event["event_type"], None, reason, False, emit_ms)
            return
        payload = _encode(event)
        yield Message(key, payload, event["event_type"], event["event_id"], None, False, emit_ms)
        if rng.random() < config.duplicate_rate:
            yield Message(
                key,
                payload,
                event["event_type"],
                event["event_id"],
                None,
                True,
                emit_ms + rng.randint(0, 300_000),
            )


# -- corruption: one way to break an event per reason code ------------------------------------


def _corruptions() -> dict[Reason, Any]:
    def with_fields(**changes: Any) -> Any:
        return lambda event: _encode(event | changes)

    def without(name: str) -> Any:
        return lambda event: _encode({k: v for k, v in event.items() if k != name})

    def first_price_negative(event: dict[str, Any]) -> bytes:
        price = next(k for k in event if k.endswith("_cpm") or k == "conversion_value")
        return _encode(event | {price: -abs(event[price]) - 1.0})

    return {
        Reason.OVERSIZED: with_fields(padding="x" * 20_000),
        Reason.BAD_UTF8: lambda event: _encode(event).replace(b'"os":"', b'"os":"\xff\xfe'),
        Reason.UNPARSEABLE: lambda event: _encode(event)[:-7],
        # Deep nesting in the first field, before the decoder knows the event type (2 KB).
        Reason.TOO_DEEP: lambda event: (
            b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"," + _encode(event)[1:]
        ),
        Reason.DUPLICATE_KEY: lambda event: (
            _encode(event)[:-1] + b',"event_id":"' + event["event_id"].encode() + b'-2"}'
        ),
        Reason.NOT_AN_OBJECT: lambda event: _encode(list(event.values())),
        Reason.UNKNOWN_SCHEMA_VERSION: with_fields(schema_version=99),
        Reason.UNKNOWN_EVENT_TYPE: with_fields(event_type="impresion"),
        Reason.MISSING_FIELD: without("request_id"),
        Reason.UNKNOWN_FIELD: with_fields(debug_flag=True),
        Reason.WRONG_TYPE: lambda event: _encode(
            event | {"event_time_ms": str(event["event_time_ms"])}
        ),
        Reason.INVALID_VALUE: with_fields(device_type="toaster"),
        Reason.NEGATIVE_PRICE: first_price_negative,
        Reason.TIMESTAMP_TOO_OLD: lambda event: _encode(
            event | {"event_time_ms": event["event_time_ms"] - 400 * 86_400_000}
        ),
        Reason.TIMESTAMP_IN_FUTURE: lambda event: _encode(
            event | {"event_time_ms": event["event_time_ms"] + 400 * 86_400_000}
        ),
    }


CORRUPTIONS = _corruptions()
_PRICED_TYPES = {"bid_request", "bid", "win", "impression", "conversion"}


def corrupt(rng: random.Random, event: dict[str, Any]) -> tuple[bytes, Reason]:
    """A broken rendition of ``event`` and the reason the validator must give for it."""
    reasons = [
        r
        for r in CORRUPTIONS
        if r is not Reason.NEGATIVE_PRICE or event["event_type"] in _PRICED_TYPES
    ]
    reason = rng.choice(reasons)
    return CORRUPTIONS[reason](event), reason
