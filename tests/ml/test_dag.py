"""The ctr_model_training DAG end to end, in-process (dag.test()), against the real MLflow
server, reached only through the mlflow_default connection: the first run promotes and pushes;
a re-run on the same data stops at the gate."""

from __future__ import annotations

import pytest

from adplatform.connections import MLFLOW
from adplatform.localstack import free_port
from adplatform.settings import Connection, get_settings
from ml import registry
from ml.scorer import CtrScorer, read_pointer
from ml.serving import serving_store
from tests.conftest import run_dag

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _states(dag_run):
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _champion_events():
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .filter(AssetEvent.source_dag_id == "ctr_model_training")
            .count()
        )


@pytest.fixture
def monkeypatch_settings(monkeypatch):
    """monkeypatch, and settings read afresh once it is undone."""
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_dag_promotes_pushes_and_verifies_then_a_rerun_stops_at_the_gate(
    airflow_db, stack_env, mlflow_server, gold, monkeypatch_settings
):
    monkeypatch = monkeypatch_settings
    client = registry.connect(gold)
    if registry.aliased_version(client, registry.CHAMPION):  # start as a first deployment
        client.delete_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION)
    store = serving_store(gold)
    conf = {"end_date": "2026-03-05", "lookback_days": 4}

    # mlflow_default is the tasks' only source of the tracking URI. On the old connection (a
    # server that is gone) the run fails at its first MLflow task although the ADP_* settings
    # name the live server; rotated, every run below succeeds although the settings now name
    # the dead one.
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not after minutes
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", Connection("http", host=dead).to_json())
    old = run_dag("ctr_model_training", conf, retries=0)
    states = _states(old)
    assert old.state == "failed"
    assert (states["build_features"], states["train"]) == ("success", "failed"), states
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", gold.connections()[MLFLOW].to_json())
    monkeypatch.setenv("ADP_MLFLOW_TRACKING_URI", dead)
    get_settings.cache_clear()
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")

    first = run_dag("ctr_model_training", conf)
    states = _states(first)
    assert first.state == "success", states
    assert set(states.values()) == {"success"}, states
    champion = registry.aliased_version(client, registry.CHAMPION)
    assert read_pointer(store)["version"] == champion.version
    assert CtrScorer(store).version == champion.version
    assert client.get_run(champion.run_id).data.tags["gate.decision"] == "promoted"
    assert _champion_events() == 1
    assert not list((gold.data_root / "ml" / "work").iterdir())  # the teardown cleaned up

    # Same data, same deterministic training: not better than the champion, nothing pushed.
    again = run_dag("ctr_model_training", conf)
    states = _states(again)
    assert again.state == "success", states
    assert states["gate"] == "success"
    assert {states[t] for t in ("promote", "push", "verify")} == {"skipped"}
    assert states["clean_up"] == "success"
    assert registry.aliased_version(client, registry.CHAMPION).version == champion.version
    assert read_pointer(store)["version"] == champion.version
    assert _champion_events() == 1
    challenger = registry.aliased_version(client, registry.CHALLENGER)
    assert "not better than the champion" in challenger.tags["gate.reason"]
