"""The serving tier: atomic publishing (even when the publisher is killed), the compiled model
and its loud fallback to the text model, hot reload under concurrent scoring, and a scorer that
refuses mismatched or corrupt artifacts while it keeps serving the last good one."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from ml.compiled import TOLERANCE
from ml.errors import CorruptArtifact, CtrModelError, NoServableModel, SpecMismatch
from ml.scorer import (
    CHECK_ROWS_FILE,
    COMPILED_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SPEC_FILE,
    CtrScorer,
    ServingModel,
    read_pointer,
    sha256,
    version_key,
)
from ml.serving import manifest_for, publish, rollback
from ml.store import POINTER, LocalServingStore


@pytest.fixture
def store(tmp_path):
    return LocalServingStore(tmp_path / "serving" / "ctr_model")


def _requests(trained, n=50):
    return trained.holdout.head(n).to_dict("records")


def test_publish_serves_the_new_version_and_hot_reloads(store, trained, weak_bundle):
    with pytest.raises(NoServableModel, match="nothing has been published"):
        CtrScorer(store)
    publish(store, "1", trained.files)
    scorer = CtrScorer(store, reload_interval=0)
    first = scorer.score_batch(_requests(trained))
    assert scorer.version == "1"
    publish(store, "2", weak_bundle)
    assert scorer.score(_requests(trained)[0]) != first[0]  # reloaded on the next call
    assert scorer.version == "2"
    assert read_pointer(store)["history"] == ["1", "2"]
    publish(store, "2", weak_bundle)  # a re-run changes nothing
    assert read_pointer(store)["history"] == ["1", "2"]
    with pytest.raises(CtrModelError, match="already holds a different version 2"):
        publish(store, "2", trained.files)


# The publisher dies (SIGKILL: no cleanup, no finally) at the moment it renames one file into
# place: the model file (half a version written) or the pointer (a whole version, unpublished).
_PUBLISH_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from ml.serving import publish
    from ml.store import LocalServingStore

    root, die_at, files = Path(sys.argv[1]), sys.argv[2], {}
    for name in ("model.txt", "feature_spec.json"):
        files[name] = (Path(sys.argv[3]) / name).read_bytes()
    real_replace = os.replace
    def replace(source, destination):
        if Path(destination).name == die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(source, destination)
    os.replace = replace
    publish(LocalServingStore(root), "2", files)
""")


@pytest.mark.parametrize("die_at", [MODEL_FILE, POINTER])
def test_a_publisher_killed_mid_push_leaves_the_old_version_served(
    store, trained, weak_bundle, tmp_path, die_at
):
    publish(store, "1", trained.files)
    scorer = CtrScorer(store, reload_interval=0)
    expected = scorer.score_batch(_requests(trained))
    source = tmp_path / "bundle"
    source.mkdir()
    for name, data in weak_bundle.items():
        (source / name).write_bytes(data)
    killed = subprocess.run(
        [sys.executable, "-c", _PUBLISH_AND_DIE, str(store.root), die_at, str(source)],
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    assert read_pointer(store)["version"] == "1"
    assert (scorer.score_batch(_requests(trained)) == expected).all()
    assert scorer.version == "1" and CtrScorer(store).version == "1"
    # Retrying the push completes it.
    publish(store, "2", weak_bundle)
    assert CtrScorer(store).version == "2"


def _write_version(store, version, files, manifest=None):
    """Publish without publish()'s checks, as a buggy or older trainer might."""
    for name, data in files.items():
        store.write(version_key(version, name), data)
    manifest = manifest or manifest_for(version, files)
    store.write(version_key(version, MANIFEST_FILE), json.dumps(manifest).encode())
    history = [*read_pointer(store).get("history", []), version]
    store.write(POINTER, json.dumps({"version": version, "history": history}).encode())


def test_the_scorer_refuses_a_mismatched_or_corrupt_version_and_keeps_the_last_good(store, trained):
    publish(store, "1", trained.files)
    scorer = CtrScorer(store, reload_interval=0)
    good = scorer.score_batch(_requests(trained))
    spec = json.loads(trained.files[SPEC_FILE])

    newer_format = trained.files | {SPEC_FILE: json.dumps(spec | {"format": 2}).encode()}
    fewer_features = trained.files | {
        SPEC_FILE: json.dumps(spec | {"features": spec["features"][:-1]}).encode()
    }
    corrupt = dict(trained.files)
    cases = [
        ("2", newer_format, None, "format 2 is not the format 1"),
        ("3", fewer_features, None, "the model expects features"),
        ("4", corrupt, manifest_for("4", {**corrupt, MODEL_FILE: b"tree\n"}), "checksum"),
    ]
    for version, files, manifest, message in cases:
        _write_version(store, version, files, manifest)
        assert scorer.refresh() is False
        assert message in (scorer.last_error or "")
        assert scorer.version == "1"
        assert (scorer.score_batch(_requests(trained)) == good).all()
    # A scorer starting now falls back to the newest version it can serve.
    assert CtrScorer(store).version == "1"
    # publish() itself refuses what the scorer would refuse.
    with pytest.raises(SpecMismatch):
        publish(store, "5", fewer_features)
    assert not store.exists(version_key("5", MODEL_FILE))


def test_rollback_goes_back_one_version_and_refuses_a_broken_target(store, trained, weak_bundle):
    publish(store, "1", trained.files)
    publish(store, "2", weak_bundle)
    scorer = CtrScorer(store, reload_interval=0)
    assert scorer.version == "2"
    result = rollback(store)
    assert (result.previous, result.current) == ("2", "1")
    assert scorer.score(_requests(trained)[0]) and scorer.version == "1"
    with pytest.raises(CtrModelError, match="only one served"):
        rollback(store)
    assert rollback(store, to="1").current == "1"  # idempotent with --to
    publish(store, "3", weak_bundle)
    store.write(version_key("1", MODEL_FILE), b"garbage")
    with pytest.raises(CorruptArtifact):
        rollback(store)
    assert read_pointer(store)["version"] == "3"


def test_a_push_compiles_the_model_and_the_scorer_serves_the_compiled_one(store, trained):
    manifest = publish(store, "1", trained.files)
    assert {COMPILED_FILE, CHECK_ROWS_FILE} <= set(manifest["files"])
    assert manifest["compiled"]["target"]["compiler"].startswith("lleaves ")
    scorer = CtrScorer(store, reload_interval=0)
    assert scorer.status() | {"defaulted": {}} == {
        "version": "1",
        "engine": "compiled",
        "compiled_fallback_reason": None,
        "compiled_fallbacks": 0,
        "defaulted": {},
        "last_error": None,
    }
    text_model = ServingModel.from_files(trained.files, {})
    assert text_model.engine == "lightgbm"
    rows = trained.holdout.head(2000)
    compiled = scorer.score_batch(rows)
    assert np.abs(compiled - text_model.predict(rows)).max() <= TOLERANCE


def _set_manifest(store, version, change):
    manifest = json.loads(store.read(version_key(version, MANIFEST_FILE)))
    change(manifest)
    store.write(version_key(version, MANIFEST_FILE), json.dumps(manifest).encode())


def _delete(store, version, name):
    (store.root / version_key(version, name)).unlink()


def _corrupt(store, version, name):
    data = bytearray(store.read(version_key(version, name)))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    store.write(version_key(version, name), bytes(data))


def _other_machine(store, version, name):
    def change(manifest):
        manifest["compiled"]["target"]["cpu"] = "some-other-cpu"

    _set_manifest(store, version, change)


def _another_models_code(store, version, name, other_files):
    """A loadable object file and matching checksum, but compiled from another model: only the
    comparison with the text model on the check rows can catch it."""
    other = LocalServingStore(store.root.parent / "other")
    publish(other, "9", other_files)
    data = other.read(version_key("9", name))
    store.write(version_key(version, name), data)

    def change(manifest):
        manifest["files"][name]["sha256"] = sha256(data)

    _set_manifest(store, version, change)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_delete, "model.o is missing"),
        (_corrupt, "model.o does not match its manifest checksum"),
        (_other_machine, "built for another machine: cpu 'some-other-cpu'"),
        (_another_models_code, "check rows up to"),
    ],
    ids=["missing", "corrupt", "other-machine", "other-model"],
)
def test_the_scorer_falls_back_to_the_text_model_loudly(
    store, trained, weak_bundle, caplog, damage, reason
):
    publish(store, "1", trained.files)
    if damage is _another_models_code:
        damage(store, "1", COMPILED_FILE, weak_bundle)
    else:
        damage(store, "1", COMPILED_FILE)
    with caplog.at_level(logging.WARNING, logger="ml.scorer"):
        scorer = CtrScorer(store, reload_interval=0)
    status = scorer.status()
    assert (status["version"], status["engine"], status["compiled_fallbacks"]) == (
        "1",
        "lightgbm",
        1,
    )
    assert reason in status["compiled_fallback_reason"]
    assert any(
        r.levelno == logging.WARNING
        and "serving the LightGBM text model" in r.getMessage()
        and reason in r.getMessage()
        for r in caplog.records
    )
    rows = trained.holdout.head(500)
    text_model = ServingModel.from_files(trained.files, {})
    assert np.array_equal(scorer.score_batch(rows), text_model.predict(rows))
    assert scorer.score(_requests(trained)[0]) == text_model.predict(rows.head(1))[0]


def test_hot_reload_is_atomic_while_threads_score(store, trained, weak_bundle):
    """Scoring threads never see a half-loaded model: every answer, single, batch or candidate
    ranking, is wholly one published version's, while versions are pushed and rolled back."""
    rows = trained.holdout.head(200)
    requests = _requests(trained, 200)
    ad_fields = ("creative_id", "campaign_id")
    context = {k: v for k, v in requests[0].items() if k not in ad_fields}
    candidates = {k: rows[k].tolist() for k in ad_fields}
    publish(store, "1", trained.files)
    publish(store, "2", weak_bundle)
    rollback(store)  # both versions compiled and published; version 1 served
    expected = {}  # version -> its answers: batch, candidate ranking
    for version in ("1", "2"):
        model = ServingModel.load(store, version)
        ranked = model.score_columns({**context, **candidates}, len(rows))[0]
        expected[version] = (model.predict(rows), ranked)
    assert not np.allclose(expected["1"][0], expected["2"][0])
    scorer = CtrScorer(store, reload_interval=0)
    seen: dict[int, set[str]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def score_continuously(worker):
        try:
            while not stop.is_set():
                batch = scorer.score_batch(rows)
                ranked = scorer.score_candidates(context, candidates)
                single = scorer.score(requests[worker])
                version = next(
                    (v for v, (b, _) in expected.items() if np.array_equal(batch, b)), None
                )
                assert version is not None, "a batch was scored by no single published version"
                assert any(np.array_equal(ranked, r) for _, r in expected.values())
                assert any(abs(single - b[worker]) <= 1e-12 for b, _ in expected.values())
                seen.setdefault(worker, set()).add(version)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            stop.set()

    def wait_until_every_worker_saw(version):
        for _ in range(60_000):  # a hang guard, not a timing check: scoring takes milliseconds
            if stop.wait(0.01) or all(version in seen.get(w, ()) for w in range(3)):
                return
        raise AssertionError(f"the scoring threads never saw version {version}")

    workers = [threading.Thread(target=score_continuously, args=(w,)) for w in range(3)]
    for worker in workers:
        worker.start()
    try:
        for push_or_roll_back, version in [
            (lambda: None, "1"),
            (lambda: publish(store, "2", weak_bundle), "2"),
            (lambda: rollback(store), "1"),
            (lambda: publish(store, "2", weak_bundle), "2"),
            (lambda: rollback(store), "1"),
        ]:
            seen.clear()
            push_or_roll_back()
            wait_until_every_worker_saw(version)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not errors, errors
    assert scorer.version == "1" and scorer.status()["engine"] == "compiled"
