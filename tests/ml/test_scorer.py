"""The scorer's request paths: one request, a batch in every accepted form, candidate ranking;
missing or unknown values answered with the documented default and counted; wrongly typed
values refused with the field named."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ml.errors import RequestError
from ml.scorer import CtrScorer, ServingModel
from ml.serving import publish
from ml.store import LocalServingStore

AD_FIELDS = ("advertiser_id", "campaign_id", "line_item_id", "creative_id", "ad_size")


def _strings(frame):
    return [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]


def _dictionary_table(frame):
    table = pa.Table.from_pandas(frame, preserve_index=False)
    strings = set(_strings(frame))
    return pa.table(
        {c: pc.dictionary_encode(table[c]) if c in strings else table[c] for c in frame.columns}
    )


# Columnar batches encoded without a Python object per row.
COLUMNAR_FORMS = {
    "Arrow table": lambda frame: pa.Table.from_pandas(frame, preserve_index=False),
    "Arrow dictionary columns": _dictionary_table,
    "pandas categoricals": lambda frame: frame.astype(dict.fromkeys(_strings(frame), "category")),
    "NumPy string columns": lambda frame: {  # a missing string: "nan", an unknown value
        c: frame[c].to_numpy().astype(str if c in _strings(frame) else float) for c in frame.columns
    },
}


@pytest.fixture(scope="module")
def published(tmp_path_factory, trained):
    store = LocalServingStore(tmp_path_factory.mktemp("serving") / "ctr_model")
    publish(store, "1", trained.files)
    return store


@pytest.fixture
def scorer(published):
    scorer = CtrScorer(published, reload_interval=3600)
    assert scorer.status()["engine"] == "compiled"
    return scorer


@pytest.fixture
def rows(trained, scorer):
    return trained.holdout.head(300)[scorer.model.spec.request_fields]


def test_every_batch_form_scores_like_single_requests(scorer, rows):
    singles = np.array([scorer.score(r) for r in rows.to_dict("records")])
    forms = {
        "list of requests": rows.to_dict("records"),
        "columns of lists": {c: rows[c].tolist() for c in rows.columns},
        "DataFrame": rows,
        "Arrow columns": {c: pa.array(rows[c].tolist()) for c in rows.columns},
        "NumPy columns": {c: rows[c].to_numpy() for c in rows.columns},
    } | {form: make(rows) for form, make in COLUMNAR_FORMS.items()}
    for form, batch in forms.items():
        assert np.allclose(scorer.score_batch(batch), singles, rtol=0, atol=1e-12), form
    assert scorer.status()["defaulted"] == {}
    # What the compiled code gets: the encoder's own matrix, C-contiguous float64 (no copy).
    matrix, _ = scorer.model.encoder.encode({c: rows[c] for c in rows.columns}, len(rows))
    assert matrix.dtype == np.float64 and matrix.flags.c_contiguous
    assert len(scorer.score_batch({c: [] for c in rows.columns})) == 0


def test_candidate_ranking_scores_each_ad_in_the_request_context(scorer, rows):
    request = rows.iloc[0].to_dict()
    context = {k: v for k, v in request.items() if k not in AD_FIELDS}
    candidates = {k: rows[k].tolist() for k in AD_FIELDS}
    ranked = scorer.score_candidates(context, candidates)
    one_by_one = [scorer.score(context | ad) for ad in rows[list(AD_FIELDS)].to_dict("records")]
    assert np.allclose(ranked, one_by_one, rtol=0, atol=1e-12)
    assert len(set(ranked.round(12))) > 1  # the ads really differ
    catalogue = _dictionary_table(rows[list(AD_FIELDS)])  # an ad server's candidate index
    from_catalogue = scorer.score_candidates(context, catalogue.slice(100, 50))
    assert np.allclose(from_catalogue, ranked[100:150], rtol=0, atol=1e-12)


def test_missing_and_unknown_values_get_the_documented_default_and_are_counted(
    scorer, rows, trained
):
    spec = scorer.model.spec
    request = rows.iloc[0].to_dict()
    degraded = request | {"creative_id": "cr-never-seen", "hour_of_day": None}
    del degraded["country"]
    # The documented defaults: a categorical and a numeric feature missing, a CTR the prior.
    defaults = {}
    for f in spec.features:
        if f.source in ("creative_id", "hour_of_day", "country"):
            defaults[f.name] = f.prior if f.kind == "smoothed_ctr" else math.nan
    encoded, _ = scorer.model.encoder.encode({k: [v] for k, v in request.items()}, 1)
    for position, f in enumerate(spec.features):
        if f.name in defaults:
            encoded[0, position] = defaults[f.name]
    text_model = ServingModel.from_files(trained.files, {})
    expected = text_model.booster.predict(encoded)[0]

    assert scorer.score(degraded) == pytest.approx(expected, abs=1e-9)
    batch = {k: [v, v] for k, v in degraded.items()}
    assert np.allclose(scorer.score_batch(batch), expected, rtol=0, atol=1e-9)
    assert scorer.status()["defaulted"] == {"creative_id": 3, "hour_of_day": 3, "country": 3}
    # pandas' missing marker, and a whole field absent from a columnar batch
    assert scorer.score(request | {"country": float("nan")}) == scorer.score(
        request | {"country": None}
    )
    assert scorer.status()["defaulted"]["country"] == 5


@pytest.mark.parametrize("form", COLUMNAR_FORMS)
def test_a_columnar_batch_answers_unknown_and_missing_values_with_the_default_and_counts_them(
    scorer, rows, form
):
    degraded = rows.head(3).astype({"hour_of_day": float})
    degraded.loc[degraded.index[[0, 2]], "creative_id"] = "cr-never-seen"
    degraded.loc[degraded.index[1], "hour_of_day"] = math.nan
    degraded.loc[degraded.index[2], "country"] = None
    by_row = [scorer.model.score_one(r)[0] for r in degraded.to_dict("records")]

    scored = scorer.score_batch(COLUMNAR_FORMS[form](degraded))

    assert np.allclose(scored, by_row, rtol=0, atol=1e-9)
    assert scorer.status()["defaulted"] == {"creative_id": 2, "hour_of_day": 1, "country": 1}


@pytest.mark.parametrize("form", ["columns of lists", *COLUMNAR_FORMS])
def test_a_one_row_batch_scores_and_counts_like_the_request(scorer, rows, form):
    # One row takes the single-request path when its columns allow: same answer, same counts.
    degraded = rows.head(1).astype({"hour_of_day": float})
    degraded.loc[degraded.index[0], ["creative_id", "hour_of_day"]] = ["cr-never-seen", math.nan]
    make = COLUMNAR_FORMS.get(form, lambda frame: {c: frame[c].tolist() for c in frame.columns})
    expected = scorer.model.score_one(degraded.iloc[0].to_dict())[0]

    assert scorer.score_batch(make(degraded)) == pytest.approx([expected], abs=1e-12)
    assert scorer.status()["defaulted"] == {"creative_id": 1, "hour_of_day": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hour_of_day": "13"}, "hour_of_day must be a number, got str '13'"),
        ({"hour_of_day": True}, "hour_of_day must be a number, got bool"),
        ({"creative_id": 17}, "creative_id must be a string, got int 17"),
        ({"creative_id": ["cr-00017"]}, "creative_id must be a string, got list"),
    ],
)
def test_a_wrongly_typed_request_is_refused_naming_the_field(scorer, rows, change, message):
    request = rows.iloc[0].to_dict() | change
    with pytest.raises(RequestError, match=message):
        scorer.score(request)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"hour_of_day": ["13", "14"]}, "hour_of_day must be numbers"),
        ({"hour_of_day": pa.array(["13", "14"])}, "hour_of_day must be numbers, got an Arrow"),
        ({"creative_id": pa.array([1, 2])}, "creative_id must be strings, got an Arrow int64"),
        ({"creative_id": ["cr-00017", 2]}, "creative_id must be a string, got int 2"),
        ({"creative_id": ["cr-00017"]}, "creative_id has 1 values but the batch has 2 rows"),
        ({"creative_id": np.array([17, 18])}, "creative_id must be strings, got int64 values"),
        ({"hour_of_day": np.array(["13", "14"])}, "hour_of_day must be numbers, got <U2"),
        (
            {"creative_id": pa.array([17, 18]).dictionary_encode()},
            "creative_id must be strings, got an Arrow int64 column",
        ),
        (
            {"creative_id": pd.Series([17, 18], dtype="category")},
            "creative_id must be strings, got an Arrow int64 column",
        ),
    ],
)
def test_a_wrongly_typed_batch_is_refused_naming_the_field(scorer, rows, column, message):
    batch = {c: rows[c].head(2).tolist() for c in rows.columns} | column
    with pytest.raises(RequestError, match=message):
        scorer.score_batch(batch)


def test_malformed_batches_and_requests_are_refused(scorer):
    with pytest.raises(RequestError, match="a request is a mapping of fields, not list"):
        scorer.score(["cr-00017"])  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="request 1 of the batch is a str"):
        scorer.score_batch([{}, "creative_id"])
    with pytest.raises(RequestError, match="the batch has no column of any request field"):
        scorer.score_batch({"creative_id": "cr-00017"})
    with pytest.raises(RequestError, match="the context is a mapping of fields, not str"):
        scorer.score_candidates("pub-003", {"creative_id": ["cr-00017"]})  # type: ignore[arg-type]
