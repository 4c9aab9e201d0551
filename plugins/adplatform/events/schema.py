"""The ad event model: versioned schemas for every event an auction produces.

On the wire each event is one JSON object (UTF-8). JSON is what every Kafka-API tool shows
readably (Redpanda Console, kcat), orjson decodes it at about half a million events a second
per core, and the explicit ``schema_version`` field lets producers move to a new version while
old ones are still on the topic; the validator knows every supported version.

One auction tells the whole story: a ``bid_request`` arrives, bidders answer with ``bid``s,
the winner gets a ``win`` with the clearing price, the ad renders (``impression``), the user may
``click`` and later ``conversion``. Every event carries the request's context (publisher, site,
device, geo, user) so each layer can be read on its own; from ``bid`` on, events also carry the
campaign hierarchy, and from ``win`` on, the impression id that clicks and conversions attribute to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventType(StrEnum):
    BID_REQUEST = "bid_request"
    BID = "bid"
    WIN = "win"
    IMPRESSION = "impression"
    CLICK = "click"
    CONVERSION = "conversion"


class Reason(StrEnum):
    """Why an event was quarantined. Stable codes: dashboards and alerts key on them."""

    OVERSIZED = "oversized"
    BAD_UTF8 = "bad_utf8"
    UNPARSEABLE = "unparseable"
    TOO_DEEP = "too_deep"  # nested deeper than the decoder's recursion limit
    DUPLICATE_KEY = "duplicate_key"  # ambiguous: parsers differ on which value wins
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    NEGATIVE_PRICE = "negative_price"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    # The validator itself raised on this message (a bug to fix, then replay): the message is
    # quarantined with the exception so one message never stops a partition.
    VALIDATOR_ERROR = "validator_error"


class Kind(StrEnum):
    """Wire types of event fields."""

    STRING = "string"  # non-empty, at most MAX_STRING_LENGTH characters
    INT = "int"
    PRICE = "price"  # a number >= 0 (JSON integers are accepted)
    PROBABILITY = "probability"  # a number in [0, 1]
    ENUM = "enum"


MAX_STRING_LENGTH = 128

DEVICE_TYPES = frozenset({"desktop", "mobile", "tablet", "ctv"})
# Currencies the platform accepts; fixed rates to the reporting currency live in currency.py.
CURRENCIES = frozenset({"USD", "EUR", "GBP", "JPY", "BRL", "INR", "CAD", "AUD"})

_ALL = frozenset(EventType)
_AFTER_BID = frozenset(
    {EventType.BID, EventType.WIN, EventType.IMPRESSION, EventType.CLICK, EventType.CONVERSION}
)
_AFTER_WIN = frozenset({EventType.WIN, EventType.IMPRESSION, EventType.CLICK, EventType.CONVERSION})
_PRICED = frozenset(
    {
        EventType.BID_REQUEST,
        EventType.BID,
        EventType.WIN,
        EventType.IMPRESSION,
        EventType.CONVERSION,
    }
)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required_in: frozenset[EventType]  # must be present and non-null for these event types
    allowed_in: frozenset[EventType]  # may be present (null or valid) for these event types
    choices: frozenset[str] = frozenset()
    description: str = ""


def _field(
    name: str,
    kind: Kind,
    required_in: frozenset[EventType],
    allowed_in: frozenset[EventType] | None = None,
    choices: frozenset[str] = frozenset(),
    description: str = "",
) -> Field:
    return Field(name, kind, required_in, allowed_in or required_in, choices, description)


_V1_FIELDS: tuple[Field, ...] = (
    _field("schema_version", Kind.INT, _ALL, description="wire schema version"),
    _field("event_id", Kind.STRING, _ALL, description="unique id of this event"),
    _field("event_type", Kind.ENUM, _ALL, choices=frozenset(EventType)),
    _field("event_time_ms", Kind.INT, _ALL, description="when it happened, epoch ms UTC"),
    _field("request_id", Kind.STRING, _ALL, description="auction (bid request) id"),
    _field("publisher_id", Kind.STRING, _ALL),
    _field("site_id", Kind.STRING, _ALL, description="site or app id"),
    _field("placement_id", Kind.STRING, _ALL),
    _field("ad_size", Kind.STRING, _ALL, description="WIDTHxHEIGHT"),
    _field("device_type", Kind.ENUM, _ALL, choices=DEVICE_TYPES),
    _field("os", Kind.STRING, _ALL),
    _field("country", Kind.STRING, _ALL, description="ISO 3166-1 alpha-2"),
    _field("region", Kind.STRING, _ALL),
    _field("user_id_hash", Kind.STRING, _ALL),
    _field("advertiser_id", Kind.STRING, _AFTER_BID),
    _field("campaign_id", Kind.STRING, _AFTER_BID),
    _field("line_item_id", Kind.STRING, _AFTER_BID),
    _field("creative_id", Kind.STRING, _AFTER_BID),
    _field("impression_id", Kind.STRING, _AFTER_WIN),
    _field("click_id", Kind.STRING, frozenset({EventType.CLICK, EventType.CONVERSION})),
    _field("currency", Kind.ENUM, _PRICED, choices=CURRENCIES),
    _field("floor_price_cpm", Kind.PRICE, frozenset({EventType.BID_REQUEST})),
    _field("bid_price_cpm", Kind.PRICE, frozenset({EventType.BID})),
    _field("clearing_price_cpm", Kind.PRICE, frozenset({EventType.WIN, EventType.IMPRESSION})),
    _field("conversion_value", Kind.PRICE, frozenset({EventType.CONVERSION})),
    # Synthetic traffic only: the generator's true click probability, for oracle evaluation.
    _field(
        "sim_click_probability", Kind.PROBABILITY, frozenset(), frozenset({EventType.IMPRESSION})
    ),
)

# Version 2 adds private-marketplace deals (optional, from bid on).
_V2_FIELDS: tuple[Field, ...] = (
    *_V1_FIELDS,
    _field("deal_id", Kind.STRING, frozenset(), _AFTER_BID),
)

SCHEMAS: dict[int, tuple[Field, ...]] = {1: _V1_FIELDS, 2: _V2_FIELDS}
CURRENT_VERSION = max(SCHEMAS)

# Every field of every version: the columns of the Bronze table.
ALL_FIELDS: tuple[Field, ...] = tuple({f.name: f for v in SCHEMAS.values() for f in v}.values())
