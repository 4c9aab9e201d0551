"""What `helm upgrade --wait` waits for must be able to happen: releases rendered from the pinned
upstream charts with our values, for every environment. A LoadBalancer Service of a release's
own never gets an address (Traefik, K3s' ingress, holds the nodes' ports 80 and 443), and a pod
mounting a claim that nothing makes never starts."""

from __future__ import annotations

from typing import Any

import pytest

from adplatform.provisioning.manifest import load_manifest
from tests.provisioning.conftest import rendered_release, served_apis

ENVIRONMENTS = ["local", "staging", "production"]
CRDS = served_apis({"monitoring.coreos.com/v1": ("ServiceMonitor", "PodMonitor")})


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    ]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("component", ["jaeger", "jupyterhub"])
def test_the_release_can_become_ready(component, environment, chart_cache):
    objects = rendered_release(component, environment, chart_cache, CRDS)
    services = {
        o["metadata"]["name"]: o["spec"].get("type") for o in objects if o["kind"] == "Service"
    }
    assert "LoadBalancer" not in services.values(), services
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    mounted = {
        volume["persistentVolumeClaim"]["claimName"]
        for spec in pod_specs(objects)
        for volume in spec.get("volumes") or []
        if "persistentVolumeClaim" in volume
    }
    assert mounted <= claims


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_jupyterhub_is_reached_through_the_ingress_with_tls(environment, chart_cache):
    """Like every other UI: the proxy's Service behind Traefik, with cert-manager's certificate
    for jupyter.<the environment's domain>."""
    domain = load_manifest(with_values=False).environment(environment).domain
    objects = rendered_release("jupyterhub", environment, chart_cache, CRDS)
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    host = f"jupyter.{domain}"
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": "jupyterhub-tls"}]
    issuer = "platform-ca" if environment == "local" else "letsencrypt"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == issuer
    [path] = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"]["name"] == "proxy-public"
