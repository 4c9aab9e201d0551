"""The feature specification: how a request (the Gold row's columns) becomes model features.

Training writes it next to the model; the scorer reads it and encodes requests with it, so
training and serving compute the same features from the same tables. Three kinds of feature:

- ``categorical``: the value's index in a vocabulary frozen at training time (unknown: missing);
- ``numeric``: the value as a number;
- ``smoothed_ctr``: the entity's historical click-through rate, ``(clicks + prior * strength) /
  (impressions + strength)``, from the counts frozen at the end of the training data.

A specification carries a ``format`` number; a scorer refuses a format (or a feature kind) it
does not know instead of guessing. ``Encoder`` turns requests into the model's matrix with one
dictionary per request field, built once: a batch is encoded column by column (dictionary
lookups in C, NumPy gathers), a single request straight into a reusable row buffer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml.errors import RequestError, SpecMismatch

FORMAT = 1
KINDS = ("categorical", "numeric", "smoothed_ctr")

_Number = TypeVar("_Number", float, np.ndarray)


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

    @cached_property  # read on every batch call
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


class _StringField:
    """One string request field: its dictionary (value → row of ``values``) and the features
    it feeds. Row ``unknown`` of ``values`` holds each feature's default."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.positions: list[int] = []
        self._features: list[Feature] = []

    def add(self, position: int, feature: Feature) -> None:
        self.positions.append(position)
        self._features.append(feature)

    def freeze(self) -> None:
        keys = sorted(
            {
                v
                for f in self._features
                for v in (f.vocabulary if f.kind == "categorical" else f.counts)
            }
        )
        self.codes = {key: code for code, key in enumerate(keys)}
        self.unknown = len(keys)
        self.values = np.empty((len(keys) + 1, len(self._features)))
        for k, f in enumerate(self._features):
            if f.kind == "categorical":
                index = {value: float(i) for i, value in enumerate(f.vocabulary)}
                self.values[:, k] = [index.get(key, math.nan) for key in keys] + [math.nan]
            else:
                ctr = [f.smoothed(*f.counts[key]) if key in f.counts else f.prior for key in keys]
                self.values[:, k] = [*ctr, f.prior]
        # The single-request path: value → the features' numbers, as Python floats.
        self.entries = {key: tuple(self.values[code].tolist()) for key, code in self.codes.items()}
        self.default = tuple(self.values[self.unknown].tolist())
        self.slots = tuple(self.positions)
        # The batch path: per feature, its column position and its number for each code.
        self.columns = tuple(
            (position, np.ascontiguousarray(self.values[:, k]))
            for k, position in enumerate(self.positions)
        )
        # index_in casts a value set of another string type on every call: one of each type.
        self._value_sets = {
            string_type: pa.array(keys, type=string_type)
            for string_type in (pa.string(), pa.large_string())
        }
        self._sorted_keys = np.array(keys, dtype=str)  # code = position: keys are sorted

    def codes_of(self, column: Any, rows: int) -> tuple[np.ndarray, int]:
        """Each row's code (``unknown`` for a missing or unknown value), and how many are.
        Columnar input is looked up in bulk (Arrow's hash lookup, a dictionary column's
        dictionary once, a binary search over NumPy strings); a list of Python values, one
        dictionary lookup per value."""
        if _is_arrow(column):
            array = _arrow(column)
            if pa.types.is_dictionary(array.type):
                return self._dictionary_codes(array)
            return self._arrow_codes(array, rows)
        if isinstance(column, np.ndarray) and column.dtype.kind != "O":
            return self._numpy_codes(column)
        values = column if isinstance(column, list | tuple) else np.asarray(column, dtype=object)
        try:  # dict lookups in C (map)
            codes = np.fromiter(
                map(self.codes.get, values, repeat(self.unknown)), dtype=np.intp, count=rows
            )
        except TypeError:
            raise RequestError(f"{self.name} must be strings, got an unhashable value") from None
        unknown = np.flatnonzero(codes == self.unknown)
        for row in unknown:  # rare: check that they are strings
            _check_string(self.name, values[row])
        return codes, len(unknown)

    def _arrow_codes(self, array: pa.Array | pa.ChunkedArray, rows: int) -> tuple[np.ndarray, int]:
        if pa.types.is_null(array.type):
            return np.full(rows, self.unknown), rows
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise RequestError(f"{self.name} must be strings, got an Arrow {array.type} column")
        found = pc.index_in(array, value_set=self._value_sets[array.type])
        unknown = found.null_count
        codes = (found.fill_null(self.unknown) if unknown else found).to_numpy()
        return codes.astype(np.intp), unknown  # NumPy gathers with int32 indices convert each time

    def _dictionary_codes(self, array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
        """A dictionary column (Arrow, or a pandas categorical): each chunk's dictionary is
        looked up once, its rows are a NumPy gather of their dictionary indices."""
        parts = []
        for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
            dictionary = chunk.dictionary
            dictionary_codes = self._arrow_codes(dictionary, len(dictionary))[0]
            indices = chunk.indices
            if indices.null_count:  # a null row: missing (each Arrow call costs microseconds)
                dictionary_codes = np.append(dictionary_codes, self.unknown)
                indices = indices.fill_null(len(dictionary))
            parts.append(dictionary_codes[indices.to_numpy()])
        codes = parts[0] if len(parts) == 1 else np.concatenate([np.empty(0, np.intp), *parts])
        return codes, int(np.count_nonzero(codes == self.unknown))

    def _numpy_codes(self, column: np.ndarray) -> tuple[np.ndarray, int]:
        if column.dtype.kind not in "UT":  # fixed-width or variable-width (StringDType) text
            raise RequestError(f"{self.name} must be strings, got {column.dtype} values")
        position = np.searchsorted(self._sorted_keys, column)
        known = self._sorted_keys[np.minimum(position, self.unknown - 1)] == column
        codes = np.where(known, position, self.unknown)
        return codes, len(known) - int(np.count_nonzero(known))


def _check_string(name: str, value: Any) -> None:
    if not (value is None or isinstance(value, str) or _is_nan(value)):
        raise RequestError(f"{name} must be a string, got {type(value).__name__} {value!r}")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


_SCALARS = (str, bytes, int, float, np.generic, type(None))  # a tuple: faster than a union


def is_scalar(value: Any) -> bool:
    return isinstance(value, _SCALARS)


def _is_arrow(column: Any) -> bool:
    """An Arrow array, or a pandas column backed by one (pandas' default for strings) or
    that Arrow reads without a copy of its values (a categorical: a dictionary column)."""
    return (
        isinstance(column, pa.Array | pa.ChunkedArray)
        or hasattr(getattr(column, "array", column), "__arrow_array__")
        or str(getattr(column, "dtype", "")) == "category"
    )


def _arrow(column: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return column
    if str(getattr(column, "dtype", "")) == "category":
        return pa.array(column)
    return pa.array(getattr(column, "array", column))


def _numbers(name: str, column: Any, rows: int) -> np.ndarray:
    """A numeric column as float64, missing values as NaN; strings or other types refused."""
    _check_length(name, column, rows)
    if _is_arrow(column):
        array = _arrow(column)
        if not (
            pa.types.is_integer(array.type)
            or pa.types.is_floating(array.type)
            or pa.types.is_null(array.type)
        ):
            raise RequestError(f"{name} must be numbers, got an Arrow {array.type} column")
        if pa.types.is_null(array.type):
            return np.full(len(array), math.nan)
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)
    values = np.asarray(column)
    if values.dtype.kind == "O":  # None among the numbers (rare): missing
        values = np.asarray([math.nan if v is None else v for v in values])
    if values.dtype.kind not in "iuf":
        raise RequestError(f"{name} must be numbers, got {values.dtype} values")
    return values.astype(np.float64, copy=False)


class Encoder:
    """Requests to the float64 matrix the model was trained on, with dictionaries built once.

    A missing value (absent field, None, NaN) or a value the spec does not know is encoded as
    the feature's default and reported in the counts ``encode`` returns: categorical and
    numeric features missing (LightGBM's missing branch), a smoothed CTR the prior. A value of
    the wrong type (a number for a string field, a string for a numeric one) is refused with a
    ``RequestError`` naming the field.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.width = len(spec.features)
        strings: dict[str, _StringField] = {}
        numbers: dict[str, list[int]] = {}
        for position, feature in enumerate(spec.features):
            if feature.kind == "numeric":
                numbers.setdefault(feature.source, []).append(position)
            else:
                strings.setdefault(feature.source, _StringField(feature.source)).add(
                    position, feature
                )
        both = sorted(set(strings) & set(numbers))
        if both:
            raise SpecMismatch(f"request fields {both} feed both numeric and string features")
        for string_field in strings.values():
            string_field.freeze()
        self._strings = tuple(strings.values())
        self._numbers = tuple((name, tuple(positions)) for name, positions in numbers.items())
        # For one request: per feature, the request value's number; the field's first
        # feature counts a default.
        self._per_feature: tuple[tuple[str, dict[Any, float], float, int, bool], ...] = tuple(
            (f.name, {key: values[k] for key, values in f.entries.items()}, f.default[k], p, k == 0)
            for f in self._strings
            for k, p in enumerate(f.slots)
        )
        self._numeric = tuple((name, p) for name, slots in self._numbers for p in slots)

    def encode(self, columns: Mapping[str, Any], rows: int) -> tuple[np.ndarray, dict[str, int]]:
        """A ``(rows, features)`` matrix from columns (sequences, NumPy or Arrow arrays, pandas
        Series), a single value standing for every row; and how many values of each field
        were answered with the default."""
        matrix = np.empty((rows, self.width))
        defaulted: dict[str, int] = {}
        for string in self._strings:
            column = columns.get(string.name)
            if is_scalar(column):
                entry, was_default = _lookup(string.name, string.entries, string.default, column)
                for position, number in zip(string.slots, entry, strict=True):
                    matrix[:, position] = number
                if was_default:
                    defaulted[string.name] = rows
                continue
            _check_length(string.name, column, rows)
            codes, unknown = string.codes_of(column, rows)
            for position, numbers in string.columns:
                matrix[:, position] = numbers[codes]
            if unknown:
                defaulted[string.name] = unknown
        for name, slots in self._numbers:
            column = columns.get(name)
            if is_scalar(column):
                number = _number(name, column)
                values: float | np.ndarray = number
                missing = rows if number != number else 0
            else:
                values = _numbers(name, column, rows)
                missing = int(np.count_nonzero(np.isnan(values)))
            for position in slots:
                matrix[:, position] = values
            if missing:
                defaulted[name] = missing
        return matrix, defaulted

    def encode_one(self, request: Mapping[str, Any], row: Any) -> list[str] | None:
        """Write one request's features into ``row`` (any buffer indexable by position);
        the fields answered with their default, or None. Plain dictionary lookups and stores,
        one per feature: this is the per-request path."""
        defaulted = None
        get = request.get
        try:
            for name, numbers, default, position, counts in self._per_feature:
                number = numbers.get(get(name))
                if number is None:
                    number, was_default = _lookup(name, numbers, default, get(name))
                    if was_default and counts:
                        defaulted = [*(defaulted or ()), name]
                row[position] = number
        except TypeError:  # an unhashable value: say which field
            for name, *_ in self._per_feature:
                _check_string(name, get(name))
            raise
        for name, position in self._numeric:
            value = get(name)
            if type(value) is not float and type(value) is not int:
                value = _number(name, value)
            if value != value:
                defaulted = [*(defaulted or ()), name]
            row[position] = value
        return defaulted


def _lookup(name: str, entries: Mapping[str, Any], default: Any, value: Any) -> tuple[Any, bool]:
    """The slow path of a string field: a ``str`` subclass, or a missing, unknown or
    wrongly typed value."""
    if isinstance(value, str) and value in entries:
        return entries[value], False
    _check_string(name, value)
    return default, True


def _number(name: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise RequestError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_length(name: str, column: Any, rows: int) -> None:
    if len(column) != rows:
        raise RequestError(f"{name} has {len(column)} values but the batch has {rows} rows")
