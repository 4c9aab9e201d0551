"""The serving tier: atomic publishing (even when the publisher is killed), hot reload, and a
scorer that refuses mismatched or corrupt artifacts while it keeps serving the last good one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ml.errors import CorruptArtifact, CtrModelError, NoServableModel, SpecMismatch
from ml.scorer import MANIFEST_FILE, MODEL_FILE, SPEC_FILE, CtrScorer, read_pointer, version_key
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
