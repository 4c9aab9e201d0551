"""The one event validator: raw bytes in, a typed event or a reason code out.

The ingest worker, the generator's tests and the quarantine all use it, so "valid" means the
same thing everywhere. The schema tables in ``schema.py`` are compiled into msgspec Structs (one
per event type, tagged by ``event_type``), so decoding and type checking run in C in a single
pass: about 2 µs an event, the cost of parsing the JSON alone. Only a rejected event pays for
turning msgspec's error into one of the stable reason codes.

No single message can raise out of ``validate``: nesting past the decoder's recursion limit is
``too_deep``, and anything else the validator raises for one message is ``validator_error`` with
the exception, so a bug quarantines the message instead of stopping its partition. Duplicate keys
are refused (``duplicate_key``): JSON parsers disagree on which value wins, and msgspec keeps the
last, so an accepted event could mean something else to another reader of the same bytes.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from adplatform.events.schema import (
    ALL_FIELDS,
    MAX_STRING_LENGTH,
    SCHEMAS,
    EventType,
    Field,
    Kind,
    Reason,
)

MAX_PRICE = 1e9  # per mille or per conversion, in any currency: above it is a producer bug

_STRING_PATTERNS = {"country": r"^[A-Z]{2}$", "ad_size": r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$"}


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="event_type"):
    """Base of the per-type event structs; fields come from ``schema.SCHEMAS``."""


def _annotation(field: Field) -> Any:
    if field.name == "schema_version":
        return Literal[tuple(SCHEMAS)]
    if field.kind is Kind.STRING:
        pattern = _STRING_PATTERNS.get(field.name)
        return Annotated[
            str, msgspec.Meta(min_length=1, max_length=MAX_STRING_LENGTH, pattern=pattern)
        ]
    if field.kind is Kind.INT:
        return int
    if field.kind is Kind.PRICE:
        return Annotated[float, msgspec.Meta(ge=0, le=MAX_PRICE)]
    if field.kind is Kind.PROBABILITY:
        return Annotated[float, msgspec.Meta(ge=0, le=1)]
    return Literal[tuple(sorted(field.choices))]  # Kind.ENUM


def _required_everywhere(name: str, event_type: EventType) -> bool:
    return all(
        any(f.name == name and event_type in f.required_in for f in fields)
        for fields in SCHEMAS.values()
    )


def _compile() -> tuple[dict[EventType, type[Event]], dict[tuple[int, type], frozenset[str]]]:
    """One Struct per event type holding the fields of every version, and per (version, struct)
    the fields that version must not carry."""
    structs: dict[EventType, type[Event]] = {}
    not_in_version: dict[tuple[int, type], frozenset[str]] = {}
    every_version = {f.name: f for fields in SCHEMAS.values() for f in fields}
    for event_type in EventType:
        members = [
            f
            for f in every_version.values()
            if event_type in f.allowed_in and f.name != "event_type"
        ]
        required = [
            (f.name, _annotation(f)) for f in members if _required_everywhere(f.name, event_type)
        ]
        optional = [
            (f.name, _annotation(f) | None, None)
            for f in members
            if not _required_everywhere(f.name, event_type)
        ]
        struct: type[Event] = msgspec.defstruct(  # type: ignore[assignment]
            f"{event_type.value.title().replace('_', '')}Event",
            [*required, *optional],
            bases=(Event,),
            tag=event_type.value,
            namespace={"event_type": event_type.value},
        )
        structs[event_type] = struct
        for version, fields in SCHEMAS.items():
            allowed = {f.name for f in fields if event_type in f.allowed_in}
            not_in_version[(version, struct)] = frozenset(
                f.name for f in members if f.name not in allowed
            )
    return structs, not_in_version


EVENT_STRUCTS, _NOT_IN_VERSION = _compile()
_QUOTED_KINDS = (Kind.STRING, Kind.ENUM)
# Per struct: picks the values of its string-typed fields (quoted on the wire) from astuple().
_QUOTED_VALUES = {
    struct: operator.itemgetter(
        *(
            index
            for index, name in enumerate(struct.__struct_fields__)
            if next(f for f in ALL_FIELDS if f.name == name).kind in _QUOTED_KINDS
        )
    )
    for struct in EVENT_STRUCTS.values()
}
_EVENT_UNION: Any = functools.reduce(operator.or_, EVENT_STRUCTS.values())
_PRICE_FIELDS = frozenset(
    f.name for fields in SCHEMAS.values() for f in fields if f.kind is Kind.PRICE
)
_AT = re.compile(r" - at `\$\.(\w+)")
# A JSON string token and, if it is a key, the colon after it. Outside strings JSON has no
# quotes, so scanning string tokens left to right stays aligned with the document.
_STRING_TOKEN = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"\s*(:?)')


def _duplicate_key(payload: bytes, event: Event) -> str | None:
    """A key that occurs twice in ``payload`` (a flat object that decoded to ``event``).

    Fast path: every key and every string value of an event without duplicates or nulls
    accounts for exactly two of the payload's quotes, which the decoded event tells. Only a
    payload with more quotes (duplicates, explicit nulls, escaped quotes) is tokenised."""
    values = msgspec.structs.astuple(event)
    quoted = _QUOTED_VALUES[type(event)](values)
    keys = len(values) - values.count(None) + 1  # + the event_type tag
    strings = len(quoted) - quoted.count(None) + 1  # + the tag's value
    if payload.count(b'"') == 2 * (keys + strings):
        return None
    seen: set[bytes] = set()
    for token, colon in _STRING_TOKEN.findall(payload):
        if not colon:
            continue
        key = msgspec.json.decode(b'"' + token + b'"').encode() if b"\\" in token else token
        if key in seen:
            return key.decode()
        seen.add(key)
    return None


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 8192
    max_age_ms: int = 14 * 86_400_000
    max_future_ms: int = 3_600_000

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(
            max_event_bytes=settings.max_event_bytes,
            max_age_ms=settings.max_event_age_days * 86_400_000,
            max_future_ms=settings.max_event_future_seconds * 1000,
        )


def _explain(error: msgspec.MsgspecError, payload: bytes) -> Rejection:
    """Turn msgspec's first error into a stable reason code."""
    message = str(error)
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejection(Reason.BAD_UTF8, f"invalid UTF-8 at byte {bad.start}")
        return Rejection(Reason.UNPARSEABLE, message)
    at = _AT.search(message)
    field = at.group(1) if at else None
    if message.startswith("Expected `object`"):
        reason = Reason.NOT_AN_OBJECT
    elif message.startswith("Object missing required field") or "got `null`" in message:
        reason = Reason.MISSING_FIELD
    elif message.startswith("Object contains unknown field"):
        reason = Reason.UNKNOWN_FIELD
    elif field == "event_type":
        reason = Reason.UNKNOWN_EVENT_TYPE
    elif field == "schema_version" and message.startswith("Invalid enum value"):
        reason = Reason.UNKNOWN_SCHEMA_VERSION
    elif message.startswith("Expected `") and ", got `" in message:
        reason = Reason.WRONG_TYPE
    elif field in _PRICE_FIELDS and ">= 0" in message:
        reason = Reason.NEGATIVE_PRICE
    else:  # out of range, bad enum value, wrong length or pattern
        reason = Reason.INVALID_VALUE
    return Rejection(reason, message)


class Validator:
    """Validates raw event payloads against the versioned schemas and time limits."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._decoder = msgspec.json.Decoder(_EVENT_UNION)

    def validate(self, payload: bytes, now_ms: int) -> Event | Rejection:
        """The typed event, or why it must be quarantined. Never raises for a message."""
        try:
            return self._validate(payload, now_ms)
        except RecursionError:
            return Rejection(Reason.TOO_DEEP, "nested deeper than the decoder's recursion limit")
        except MemoryError:  # the worker's problem, not this message's
            raise
        except Exception as error:
            return Rejection(Reason.VALIDATOR_ERROR, f"{type(error).__name__}: {error}"[:1000])

    def _validate(self, payload: bytes, now_ms: int) -> Event | Rejection:
        if len(payload) > self.limits.max_event_bytes:
            return Rejection(
                Reason.OVERSIZED, f"{len(payload)} bytes > {self.limits.max_event_bytes}"
            )
        try:
            event = self._decoder.decode(payload)
        except msgspec.MsgspecError as error:
            return _explain(error, payload)
        except UnicodeDecodeError as error:  # msgspec's word for bad UTF-8 inside a string
            return Rejection(Reason.BAD_UTF8, f"invalid UTF-8 at byte {error.start}")
        duplicate = _duplicate_key(payload, event)
        if duplicate is not None:
            return Rejection(Reason.DUPLICATE_KEY, f"key {duplicate!r} occurs more than once")
        extra = _NOT_IN_VERSION[(event.schema_version, type(event))]
        if extra:
            present = sorted(name for name in extra if getattr(event, name) is not None)
            if present:
                return Rejection(
                    Reason.UNKNOWN_FIELD,
                    f"not in schema v{event.schema_version}: {', '.join(present)}",
                )
        event_time = event.event_time_ms
        if event_time < now_ms - self.limits.max_age_ms:
            return Rejection(
                Reason.TIMESTAMP_TOO_OLD,
                f"event_time_ms={event_time} is more than {self.limits.max_age_ms} ms old",
            )
        if event_time > now_ms + self.limits.max_future_ms:
            return Rejection(
                Reason.TIMESTAMP_IN_FUTURE,
                f"event_time_ms={event_time} is more than {self.limits.max_future_ms} ms ahead",
            )
        return event

    def validate_batch(
        self, payloads: Iterable[bytes], now_ms: int
    ) -> tuple[list[Event], list[tuple[int, Rejection]]]:
        """Accepted events in input order, and (input index, rejection) for the rest."""
        accepted: list[Event] = []
        rejected: list[tuple[int, Rejection]] = []
        validate = self.validate
        for index, payload in enumerate(payloads):
            result = validate(payload, now_ms)
            if type(result) is Rejection:
                rejected.append((index, result))
            else:
                accepted.append(result)  # type: ignore[arg-type]
        return accepted, rejected
