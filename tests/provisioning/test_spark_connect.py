"""The production Spark Connect server (infra/charts/spark-connect, the `spark-connect`
component), rendered from the real charts: its --confs are the transform's spark_conf for the
settings Airflow's pods run with, Airflow's connection names the Service the operator makes, the
server runs the clients' Spark, and what it needs from the spark-operator release is there. Then
installed on the local cluster after a real spark-operator release: the API server accepts the
SparkConnect resource as rendered, field for field (the CRD would prune a field it does not
know)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyspark
import pytest

from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import check_health, deploy
from adplatform.settings import Settings, load_settings
from adplatform.transform.spark import spark_conf
from tests.provisioning.conftest import ChartMirror, rendered_release, served_apis

ENVIRONMENTS = ["local", "staging", "production"]
# The server's --confs beyond spark_conf: what only a server in the cluster needs (S3A's jar).
CLUSTER_ONLY = {"spark.jars.packages", "spark.jars.ivy"}
SPARK_CONNECT_PORT = 15002  # the operator's Service and probes: fixed in spark-operator 2.3.0


# The CRDs of earlier waves, as the cluster serves them: the operator's, the monitors'.
CRDS = served_apis(
    {
        group: ("SparkConnect", "PodMonitor", "ServiceMonitor")
        for group in ("sparkoperator.k8s.io/v1alpha1", "monitoring.coreos.com/v1")
    }
)


def rendered(name: str, environment: str, cache: Path) -> list[dict[str, Any]]:
    return rendered_release(name, environment, cache, CRDS)


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def airflow_env(environment: str, cache: Path) -> dict[str, str]:
    """The environment Airflow's scheduler runs the lakehouse code with, as rendered."""
    # A Deployment, or a StatefulSet under the LocalExecutor (its task logs on a volume).
    [scheduler] = [
        o
        for o in rendered("airflow", environment, cache)
        if o["kind"] in ("Deployment", "StatefulSet")
        and o["metadata"]["name"] == "airflow-scheduler"
    ]
    [container] = [
        c for c in scheduler["spec"]["template"]["spec"]["containers"] if c["name"] == "scheduler"
    ]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the lakehouse code reads from that environment (and nothing else)."""
    for name in [n for n in os.environ if n.startswith("ADP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("ADP_"):
            monkeypatch.setenv(name, value)
    return load_settings()


def server_conf(connect: dict[str, Any]) -> dict[str, str]:
    """The --confs the operator starts the server with, from the SparkConnect resource
    (spark-operator 2.3.0: sparkConf as given, server.memory as spark.driver.memory)."""
    spec = connect["spec"]
    return {**spec.get("sparkConf", {}), "spark.driver.memory": spec["server"]["memory"]}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_servers_confs_are_spark_conf_of_the_settings_airflow_runs_with(
    environment, chart_cache, monkeypatch
):
    env = airflow_env(environment, chart_cache)
    settings = settings_of(env, monkeypatch)
    connect = one(rendered("spark-connect", environment, chart_cache), "SparkConnect")

    conf = server_conf(connect)
    expected = spark_conf(settings)
    assert {key: conf.get(key) for key in expected} == expected
    assert set(conf) - set(expected) <= CLUSTER_ONLY, "a --conf the local server does not have"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_airflow_points_at_the_service_the_operator_makes_and_may_reach_it(
    environment, chart_cache, monkeypatch
):
    manifest = load_manifest(with_values=False)
    component = manifest.component("spark-connect")
    env = airflow_env(environment, chart_cache)
    settings = settings_of(env, monkeypatch)
    objects = rendered("spark-connect", environment, chart_cache)
    connect = one(objects, "SparkConnect")

    # spark-operator 2.3.0 names the server's Service <SparkConnect name>-server.
    service = f"{connect['metadata']['name']}-server.{component.namespace}.svc"
    assert settings.spark_connect_url == f"sc://{service}:{SPARK_CONNECT_PORT}"
    connection = "AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"
    assert json.loads(env[connection]) == json.loads(settings.airflow_connections()[connection])

    policy = one(objects, "NetworkPolicy")
    [clients, _peers] = policy["spec"]["ingress"]
    assert clients["ports"] == [{"protocol": "TCP", "port": SPARK_CONNECT_PORT}]
    assert clients["from"] == [
        {
            "namespaceSelector": {
                "matchLabels": {
                    "kubernetes.io/metadata.name": manifest.component("airflow").namespace
                }
            }
        }
    ]


def test_the_server_runs_the_spark_and_hadoop_of_its_clients(chart_cache):
    hadoop = {
        jar.stem.removeprefix("hadoop-client-api-")
        for jar in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")
    }
    for environment in ENVIRONMENTS:
        spec = one(rendered("spark-connect", environment, chart_cache), "SparkConnect")["spec"]
        assert spec["sparkVersion"] == pyspark.__version__
        assert spec["image"].rsplit(":", 1)[1] == pyspark.__version__
        group, artifact, version = spec["sparkConf"]["spark.jars.packages"].split(":")
        assert (group, artifact) == ("org.apache.hadoop", "hadoop-aws")
        assert {version} == hadoop


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_spark_operator_release_makes_what_the_server_needs(environment, chart_cache):
    """The operator watches the server's namespace, and its service account there may start
    and remove executors."""
    namespace = load_manifest(with_values=False).component("spark-connect").namespace
    connect = one(rendered("spark-connect", environment, chart_cache), "SparkConnect")
    account = connect["spec"]["server"]["template"]["spec"]["serviceAccountName"]
    operator = rendered("spark-operator", environment, chart_cache)

    controller = one(operator, "Deployment", "spark-operator-controller")
    [args] = [c["args"] for c in controller["spec"]["template"]["spec"]["containers"]]
    assert f"--namespaces={namespace}" in args
    assert one(operator, "ServiceAccount", account)["metadata"]["namespace"] == namespace
    [binding] = [
        o
        for o in operator
        if o["kind"] == "RoleBinding"
        and o["metadata"].get("namespace") == namespace
        and {"kind": "ServiceAccount", "name": account, "namespace": namespace} in o["subjects"]
    ]
    role = one(operator, "Role", binding["roleRef"]["name"])
    granted = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for resource in ("pods", "services", "configmaps"):
        assert {(resource, "create"), (resource, "delete")} <= granted


def test_the_namespace_exists_before_the_operator_puts_its_service_account_there(chart_cache):
    """spark-operator's release makes objects in the jobs namespace, which it does not create:
    platform-secrets does, with the server's S3 keys, in an earlier wave."""
    manifest = load_manifest(with_values=False)
    component = manifest.component("spark-connect")
    secrets = rendered("platform-secrets", "production", chart_cache)
    assert component.namespace in {
        o["metadata"]["name"] for o in secrets if o["kind"] == "Namespace"
    }
    connect = one(rendered("spark-connect", "production", chart_cache), "SparkConnect")
    [container] = connect["spec"]["server"]["template"]["spec"]["containers"]
    [keys] = container["envFrom"]
    external = one(secrets, "ExternalSecret", keys["secretRef"]["name"])
    assert external["metadata"]["namespace"] == component.namespace
    waves = {name: i for i, wave in enumerate(manifest.waves(None, {"hcloud"})) for name in wave}
    assert waves["platform-secrets"] < waves["spark-operator"] < waves["spark-connect"]


@pytest.mark.integration
@pytest.mark.slow
def test_the_cluster_accepts_the_sparkconnect_resource_as_rendered(
    local_cluster: LocalCluster,
    stack_settings,
    chart_mirror: ChartMirror,
    chart_cache,
    configured,
    cluster_releases_undone,
):
    """A real spark-operator release (its CRDs), then spark-connect's, both installed the way
    provisioning installs them; the API server keeps every field of the resource."""
    manifest = load_manifest(with_values=False)
    component = manifest.component("spark-connect")
    # What platform-secrets' wave makes before the operator's: the namespace and the S3 keys.
    local_cluster.kubectl("create", "namespace", component.namespace)
    local_cluster.kubectl(
        "-n", component.namespace, "create", "secret", "generic", "spark-connect-s3",
        "--from-literal=AWS_ACCESS_KEY_ID=not-used", "--from-literal=AWS_SECRET_ACCESS_KEY=not-used",
    )  # fmt: skip
    for name in ("spark-operator", "spark-connect"):
        step = deploy(stack_settings, manifest, "local", name, dry_run=False)
        assert step.action == "install", step.error

    live = json.loads(
        local_cluster.kubectl(
            "-n", component.namespace, "get", "sparkconnect", "spark-connect", "-o", "json"
        ).stdout
    )
    want = one(rendered("spark-connect", "local", chart_cache), "SparkConnect")
    assert live["spec"] == want["spec"]
    # Nothing reconciles it here (kwok simulates the operator's pod): no server pod, no
    # status; the gate checks what the release holds, which the API server accepted.
    assert "status" not in live or not live["status"].get("state")
    health = check_health(stack_settings, "local", component)
    assert (health.healthy, health.details) == (True, [])
