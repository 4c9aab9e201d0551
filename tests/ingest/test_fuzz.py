"""Hostile input through the real ingest path: validation, the canonical re-encoding, Arrow's
JSON reader and the Parquet files of one partition batch. Whatever the bytes, nothing raises,
every message is either in Bronze or quarantined with a reason, and the counts reconcile."""

from __future__ import annotations

import json
import string
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, example, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st

from adplatform.events.schema import Reason
from adplatform.events.validator import Limits, Rejection, Validator
from adplatform.ingest.batch import PartitionBatch, stage
from tests.unit.test_validator import NOW, VALID, event

VALIDATOR = Validator(Limits(max_event_bytes=8192, max_age_ms=86_400_000, max_future_ms=60_000))
ENCODER = msgspec.json.Encoder()

# Inputs that once stopped (or could stop) a partition, kept as a regression corpus.
REGRESSIONS = [
    b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}",  # RecursionError in the decoder (2 KB)
    b'{"x":' + b'{"y":' * 900 + b"1" + b"}" * 900 + b"}",
    event()[:-1] + b', "event_id": "evt-second"}',  # duplicate key, last one would win
    event(event_time_ms=2**63),
    event(event_time_ms=-(2**63) - 1),
    event(event_time_ms=2**64),
    event(clearing_price_cpm=1e308),
    event(clearing_price_cpm=-0.0),
    event(clearing_price_cpm=5e-324),
    event()[:-1] + b', "clearing_price_cpm": NaN}',
    event().replace(b'"ios"', b'"\\ud800"'),  # a lone surrogate
    event().replace(b'"ios"', b'"\\u0000"'),
    event(os="\U0001f600" * 32),
    b"\xef\xbb\xbf" + event(),  # a byte-order mark
    b"null",
    b"",
]

EVENTS = [json.loads(event(kind)) for kind in VALID]  # one valid event of each type

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with a field changed, removed, added or duplicated, or its bytes cut,
    flipped or spliced."""
    body = dict(draw(st.sampled_from(EVENTS)))
    name = draw(st.sampled_from(sorted(body)))
    action = draw(st.sampled_from(["set", "drop", "add", "duplicate", "bytes", "nest"]))
    if action == "set":
        body[name] = draw(_json_scalars)
    elif action == "drop":
        del body[name]
    elif action == "add":
        body[draw(st.text(string.ascii_letters + "_", min_size=1, max_size=12))] = draw(
            _json_scalars
        )
    payload = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    if action == "duplicate":
        payload = payload[:-1] + b", " + json.dumps({name: body[name]}).encode()[1:]
    elif action == "nest":
        depth = draw(st.integers(1, 3000))
        payload = payload[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    elif action == "bytes":
        position = draw(st.integers(0, len(payload)))
        cut = draw(st.integers(0, 8))
        payload = payload[:position] + draw(st.binary(max_size=8)) + payload[position + cut :]
    return payload


payloads = st.one_of(
    st.binary(max_size=300),
    mutated_events(),
    st.recursive(
        _json_scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    ).map(lambda value: json.dumps(value).encode()),
)


def _messages(batch_payloads: list[bytes | None]) -> list[Message]:
    return [
        Message(topic="events", partition=0, offset=offset, value=payload)
        for offset, payload in enumerate(batch_payloads)
    ]


def _ingest(batch_payloads: list[bytes | None], directory: Path) -> None:
    """One partition batch through validation and staging; check it reconciles."""
    batch = PartitionBatch("events", 0, 0, NOW)
    batch.add(VALIDATOR, ENCODER, _messages(batch_payloads))
    assert batch.consumed == len(batch_payloads) == batch.accepted + len(batch.rejected)
    for rejected in batch.rejected:
        assert Reason(rejected.reason) and rejected.detail
        assert rejected.payload == (batch_payloads[rejected.offset] or b"")
    entry = stage(batch, directory, "fuzz", NOW)
    rows = {"bronze": 0, "quarantine": 0}
    for index, ref in enumerate(entry.files):
        table = pq.read_table(directory / f"{index}.parquet")
        assert table.num_rows == ref.rows
        rows["quarantine" if ref.path.startswith("quarantine") else "bronze"] += ref.rows
    assert rows == {"bronze": batch.accepted, "quarantine": len(batch.rejected)}


@pytest.mark.parametrize("payload", REGRESSIONS, ids=range(len(REGRESSIONS)))
def test_each_regression_is_answered_without_raising(payload, tmp_path):
    result = VALIDATOR.validate(payload, NOW)
    if isinstance(result, Rejection):
        assert result.reason is not Reason.VALIDATOR_ERROR, result.detail  # a known answer
    _ingest([payload, event(), payload], tmp_path)


def test_a_deeply_nested_message_and_a_duplicate_key_are_refused_with_their_reasons():
    assert VALIDATOR.validate(REGRESSIONS[0], NOW).reason is Reason.TOO_DEEP
    assert VALIDATOR.validate(REGRESSIONS[2], NOW).reason is Reason.DUPLICATE_KEY


@fuzzing(
    max_examples=100,
    deadline=None,
    database=None,  # no .hypothesis folder in the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch_payloads=st.lists(st.one_of(payloads, st.none()), min_size=1, max_size=20))
@example(batch_payloads=[REGRESSIONS[0], None, event()])
def test_no_batch_of_messages_can_stop_ingest(batch_payloads, tmp_path_factory):
    _ingest(batch_payloads, tmp_path_factory.mktemp("staging"))


@fuzzing(max_examples=500, deadline=None, database=None)
@given(payloads)
def test_the_validator_answers_every_payload_and_never_accepts_a_duplicate_key(payload):
    result = VALIDATOR.validate(payload, NOW)
    assert not (isinstance(result, Rejection) and result.reason is Reason.VALIDATOR_ERROR), (
        result.detail
    )
    if not isinstance(result, Rejection):
        pairs = json.loads(payload, object_pairs_hook=lambda items: [k for k, _ in items])
        assert len(pairs) == len(set(pairs)), "accepted an event with a duplicate key"
