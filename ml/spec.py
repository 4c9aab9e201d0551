"""The feature specification: how a request (the Gold row's columns) becomes model features.

Training writes it next to the model; the scorer reads it and encodes requests with it, so
training and serving compute the same features from the same tables. Three kinds of feature:

- ``categorical``: the value's index in a vocabulary frozen at training time (unknown: missing);
- ``numeric``: the value as a number;
- ``smoothed_ctr``: the entity's historical click-through rate, ``(clicks + prior * strength) /
  (impressions + strength)``, from the counts frozen at the end of the training data.

A specification carries a ``format`` number; a scorer refuses a format (or a feature kind) it
does not know instead of guessing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ml.errors import RequestError, SpecMismatch

FORMAT = 1
KINDS = ("categorical", "numeric", "smoothed_ctr")

_Number = TypeVar("_Number", float, np.ndarray)
Batch = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    source: str  # the request field it is computed from
    vocabulary: tuple[str, ...] = ()  # categorical
    prior: float = 0.0  # smoothed_ctr
    strength: float = 0.0  # smoothed_ctr: pseudo-impressions at the prior rate
    counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # value: (imps, clicks)

    def smoothed(self, impressions: _Number, clicks: _Number) -> _Number:
        return (clicks + self.prior * self.strength) / (impressions + self.strength)


@dataclass(frozen=True)
class FeatureSpec:
    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def request_fields(self) -> list[str]:
        """The fields a scoring request must carry."""
        return sorted({f.source for f in self.features})

    # -- serialisation --------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "features": [
                    {"name": f.name, "kind": f.kind, "source": f.source}
                    | ({"vocabulary": list(f.vocabulary)} if f.kind == "categorical" else {})
                    | (
                        {
                            "prior": f.prior,
                            "strength": f.strength,
                            "counts": {k: list(v) for k, v in sorted(f.counts.items())},
                        }
                        if f.kind == "smoothed_ctr"
                        else {}
                    )
                    for f in self.features
                ],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSpec:
        try:
            document = json.loads(text)
        except ValueError as error:
            raise SpecMismatch(f"feature spec is not valid JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            found = document.get("format") if isinstance(document, dict) else None
            raise SpecMismatch(
                f"feature spec format {found!r} is not the format {FORMAT} this scorer "
                "understands: deploy a scorer built with the trainer that wrote the model"
            )
        features = []
        for entry in document.get("features", []):
            if entry.get("kind") not in KINDS:
                raise SpecMismatch(
                    f"feature {entry.get('name')!r} has kind {entry.get('kind')!r}, which this "
                    f"scorer does not know (it knows {', '.join(KINDS)})"
                )
            features.append(
                Feature(
                    name=entry["name"],
                    kind=entry["kind"],
                    source=entry["source"],
                    vocabulary=tuple(entry.get("vocabulary", ())),
                    prior=float(entry.get("prior", 0.0)),
                    strength=float(entry.get("strength", 0.0)),
                    counts={k: (int(v[0]), int(v[1])) for k, v in entry.get("counts", {}).items()},
                )
            )
        if not features:
            raise SpecMismatch("feature spec lists no features")
        return cls(tuple(features))

    # -- encoding -------------------------------------------------------------------------

    def encoder(self) -> Encoder:
        return Encoder(self)


class Encoder:
    """Turns requests into the float matrix the model was trained on (lookup tables built once)."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._lookups: list[tuple[str, str, dict[str, float], float]] = []
        for f in spec.features:
            if f.kind == "categorical":
                table = {value: float(i) for i, value in enumerate(f.vocabulary)}
                self._lookups.append((f.kind, f.source, table, math.nan))
            elif f.kind == "smoothed_ctr":
                table = {value: f.smoothed(*counts) for value, counts in f.counts.items()}
                self._lookups.append((f.kind, f.source, table, f.prior))
            else:
                self._lookups.append((f.kind, f.source, {}, math.nan))

    def encode(self, batch: Batch) -> np.ndarray:
        """A ``(rows, features)`` float64 matrix for a list of requests or a dict of columns."""
        columns = _columns(batch, self.spec.request_fields)
        rows = len(columns[self.spec.request_fields[0]])
        matrix = np.empty((rows, len(self._lookups)), dtype=np.float64)
        for j, (kind, source, table, default) in enumerate(self._lookups):
            values = columns[source]
            if kind == "numeric":
                matrix[:, j] = np.asarray(values, dtype=np.float64)
            else:
                matrix[:, j] = [table.get(v, default) for v in values]
        return matrix


def _columns(batch: Batch, fields: list[str]) -> dict[str, Sequence[Any]]:
    if isinstance(batch, Mapping) or hasattr(batch, "columns"):  # columns, or a DataFrame
        missing = [name for name in fields if name not in batch]
        if missing:
            raise RequestError(f"the batch lacks {', '.join(missing)}: the model needs {fields}")
        return {name: batch[name] for name in fields}  # type: ignore[call-overload]
    try:
        return {name: [request[name] for request in batch] for name in fields}
    except KeyError as error:
        raise RequestError(f"a request lacks {error.args[0]!r}: the model needs {fields}") from None
