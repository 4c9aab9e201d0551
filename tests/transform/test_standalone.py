"""The same Spark jobs on a Spark standalone cluster: a master and one worker started from
pyspark's own sbin/ scripts, and a Spark Connect server pointed at the master. Moving from one
machine to a cluster is a setting (``ADP_SPARK_MASTER``), not new code."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from adplatform.lakehouse.tables import GOLD_CTR_TRAINING, GOLD_HOURLY_PERFORMANCE, SILVER_EVENTS
from adplatform.localstack import SPARK_HOME, SparkConnectServer, free_port
from adplatform.settings import Settings, load_settings
from adplatform.transform.spark import connect_session
from tests.transform.handmade import write_handmade_bronze
from tests.transform.run import read_table, run_transform

TABLES = (SILVER_EVENTS, GOLD_HOURLY_PERFORMANCE, GOLD_CTR_TRAINING)
# pyspark has no start-master.sh / start-worker.sh; this is what they run.
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


def _master_state(web_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/json/", timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, int]]:
    """A standalone master and worker (2 cores), and a Spark Connect server on the master."""
    home = tmp_path_factory.mktemp("standalone")
    env = os.environ | {
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOG_DIR": str(home / "logs"),
        "SPARK_PID_DIR": str(home / "run"),
        "SPARK_WORKER_DIR": str(home / "work"),
    }
    daemon = str(SPARK_HOME / "sbin" / "spark-daemon.sh")
    master_port, web_port = free_port(), free_port()
    master = f"spark://127.0.0.1:{master_port}"
    started = []
    try:
        for cls, args in (
            (MASTER, ["--port", str(master_port), "--webui-port", str(web_port)]),
            (WORKER, ["--cores", "2", "--memory", "2g", "--webui-port", "0", master]),
        ):
            subprocess.run(
                [daemon, "start", cls, "1", "--host", "127.0.0.1", *args],
                env=env,
                check=True,
                capture_output=True,
            )
            started.append(cls)
        port = free_port()
        settings = load_settings(  # the URL too: the session's ADP_* variables may name another
            data_root=home / "data",
            spark_master=master,
            spark_connect_port=port,
            spark_connect_url=f"sc://127.0.0.1:{port}",
            spark_driver_memory="1g",
            spark_shuffle_partitions=2,
        )
        server = SparkConnectServer(settings)
        try:
            server.start()
            yield settings, web_port
        finally:
            server.stop()
    finally:
        for cls in reversed(started):
            subprocess.run([daemon, "stop", cls, "1"], env=env, check=False)


def _transform(spark: object, data_root: Path) -> dict[str, pd.DataFrame]:
    settings = load_settings(data_root=data_root)
    write_handmade_bronze(settings)
    run_transform(spark, settings, "run")
    return {t.name: read_table(settings, t) for t in TABLES}


def test_the_transform_on_a_standalone_cluster_equals_the_local_one(cluster, spark, tmp_path):
    settings, web_port = cluster
    remote = connect_session(settings)
    try:
        assert remote.conf.get("spark.master") == settings.spark_master
        on_cluster = _transform(remote, tmp_path / "cluster")
    finally:
        remote.stop()
    local = _transform(spark, tmp_path / "local")

    for table in TABLES:
        assert len(on_cluster[table.name]) > 0
        pd.testing.assert_frame_equal(on_cluster[table.name], local[table.name])
    # The jobs ran on the cluster: the server is the master's application, on its worker.
    state = _master_state(web_port)
    assert [w["state"] for w in state["workers"]] == ["ALIVE"]
    (app,) = state["activeapps"]
    assert app["name"] == "Spark Connect server" and app["cores"] == 2
