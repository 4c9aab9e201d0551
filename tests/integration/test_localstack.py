"""The local stack's own behaviour: idempotent start, clean stop, clear errors."""

import base64
import os
import socket

import pytest

from adplatform.localstack import (
    JupyterHubServer,
    KafkaBroker,
    LocalStack,
    MlflowServer,
    StackError,
    new_kafka_cluster_id,
)
from adplatform.settings import load_settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_up_twice_is_harmless_and_status_reports_health(kafka, local_stack):
    assert local_stack.up(["kafka"]) == {"kafka": "already running"}
    status = {name: state for name, state, *_ in local_stack.status()}
    assert status["kafka"] == "healthy"


def test_mlflow_starts_and_stops_leaving_no_process(tmp_path):
    settings = load_settings(data_root=tmp_path, mlflow_port=free_port())
    server = MlflowServer(settings)
    assert server.start() == "started"
    pid = server.pid()
    assert pid and server.healthy()
    assert server.stop() == "stopped"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not server.healthy()
    assert server.stop() == "not running"


def test_jupyterhub_starts_and_stops_leaving_no_process(tmp_path):
    """The hub and its proxy, which runs in a session of its own: both gone after stop."""
    hub = JupyterHubServer(load_settings(data_root=tmp_path, jupyterhub_port=free_port(span=3)))
    assert hub.start() == "started"
    pid = hub.pid()
    proxy = int((hub.home / "proxy.pid").read_text())
    os.kill(proxy, 0)
    assert (hub.user_home() / "notebooks" / "ctr_explore.ipynb").exists()
    assert hub.stop() == "stopped"
    for process in (pid, proxy):
        with pytest.raises(ProcessLookupError):
            os.kill(process, 0)
    assert not hub.healthy()


def test_a_port_in_use_is_named_with_the_fix(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = load_settings(data_root=tmp_path, mlflow_port=port)
        with pytest.raises(StackError, match=f"port {port} is in use.*ADP_MLFLOW_PORT"):
            MlflowServer(settings).start()


def test_missing_java_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    settings = load_settings(
        data_root=tmp_path, kafka_port=free_port(), kafka_controller_port=free_port()
    )
    with pytest.raises(StackError, match="java not found: install OpenJDK 17"):
        KafkaBroker(settings).start()


def test_unknown_service_is_refused(tmp_path):
    with pytest.raises(StackError, match="unknown service redis"):
        LocalStack(load_settings(data_root=tmp_path)).up(["redis"])


def test_kafka_cluster_ids_never_look_like_an_option():
    # One urlsafe-base64 uuid in 64 starts with '-', and kafka-storage then read it as a flag.
    ids = [new_kafka_cluster_id() for _ in range(2000)]
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert {len(base64.urlsafe_b64decode(cluster_id + "==")) for cluster_id in ids} == {16}
