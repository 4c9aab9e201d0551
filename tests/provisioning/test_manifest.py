"""The platform manifest and every values file: order, cycles, presence, policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adplatform.provisioning.manifest import ManifestError, load_manifest


def load(root: Path):
    return load_manifest(root / "infra" / "platform.yaml", root)


def edit(root: Path, change) -> None:
    path = root / "infra" / "platform.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_the_repository_manifest_and_every_values_file_pass():
    manifest = load_manifest()
    assert len(manifest.components) >= 20
    assert set(manifest.environments) == {"local", "staging", "production"}


def test_every_component_comes_after_everything_it_depends_on():
    manifest = load_manifest()
    wave_of = {name: i for i, wave in enumerate(manifest.waves()) for name in wave}
    assert set(wave_of) == set(manifest.components)
    for name, component in manifest.components.items():
        for dependency in component.depends_on:
            assert wave_of[dependency] < wave_of[name], f"{name} before {dependency}"
    # The Prometheus Operator's CRDs come first: every later wave ships monitors.
    assert manifest.waves()[0] == ["prometheus-operator-crds"]
    assert manifest.waves()[1] == ["cilium"]


def test_selecting_a_component_brings_its_dependencies_for_the_cloud():
    manifest = load_manifest()
    selected = {name for wave in manifest.waves(["mlflow"], ["hcloud"]) for name in wave}
    assert {
        "mlflow",
        "postgresql",
        "postgres-operator",
        "minio",
        "platform-secrets",
        "external-secrets",
        "vault",
        "hcloud-csi",  # Vault's volumes: on AWS aws-ebs-csi-driver, locally local-path
        "cluster-issuers",
        "cert-manager",
        "cilium",
        "prometheus-operator-crds",
    } == selected
    locally = {name for wave in manifest.waves(["vault"], ["existing"]) for name in wave}
    assert "local-path-provisioner" in locally and "hcloud-csi" not in locally


def test_a_dependency_cycle_is_refused_with_its_path(scratch_repo):
    edit(scratch_repo, lambda d: d["components"]["cert-manager"].update(depends_on=["minio"]))
    with pytest.raises(ManifestError) as error:
        load(scratch_repo)
    assert "infra/platform.yaml: components." in str(error.value) or "platform.yaml" in str(
        error.value
    )
    assert "dependency cycle" in str(error.value)
    assert "cert-manager -> " in str(error.value) or "-> cert-manager" in str(error.value)


def test_an_unknown_dependency_names_the_key(scratch_repo):
    edit(scratch_repo, lambda d: d["components"]["mlflow"].update(depends_on=["minoi"]))
    with pytest.raises(
        ManifestError, match=r"components\.mlflow\.depends_on: unknown component 'minoi'"
    ):
        load(scratch_repo)


def test_a_missing_values_file_names_the_file(scratch_repo):
    (scratch_repo / "helm_values" / "loki" / "staging.yaml").unlink()
    with pytest.raises(ManifestError, match=r"helm_values/loki/staging\.yaml: file not found"):
        load(scratch_repo)


def test_a_values_file_that_is_not_yaml_is_refused(scratch_repo):
    (scratch_repo / "helm_values" / "vault" / "local.yaml").write_text("server: [unclosed\n")
    with pytest.raises(ManifestError, match=r"helm_values/vault/local\.yaml: not well-formed YAML"):
        load(scratch_repo)


def test_a_bad_pinned_version_names_the_key(scratch_repo):
    edit(scratch_repo, lambda d: d["components"]["redpanda"].update(version="latest"))
    with pytest.raises(ManifestError, match=r"components\.redpanda\.version"):
        load(scratch_repo)


@pytest.mark.parametrize(
    ("component", "overlay", "message"),
    [
        (
            "minio",
            {"rootPassword": "hunter2hunter2"},
            r"minio/production\.yaml: rootPassword: plaintext secret",
        ),
        ("grafana", None, None),
        (
            "redpanda",
            {"tls": {"enabled": False}},
            r"redpanda/production\.yaml: tls: TLS must stay on",
        ),
        (
            "mlflow",
            {"resources": {"requests": {"memory": None}, "limits": None}},
            r"mlflow/values\.yaml \+ .*mlflow/production\.yaml: resources: missing requests\.memory, limits\.memory",
        ),
        (
            "mlflow",
            {"securityContext": {"runAsUser": 0}},
            r"mlflow/production\.yaml: securityContext: runs as root",
        ),
        (
            "vault",
            {"server": {"dataStorage": {"token": "s.abcdefabcdef"}}},
            r"server\.dataStorage\.token: plaintext secret",
        ),
    ],
)
def test_the_values_policy_names_file_and_key(scratch_repo, component, overlay, message):
    if overlay is None:  # a component the manifest does not know
        with pytest.raises(ManifestError):
            load(scratch_repo).component(component)
        return
    path = scratch_repo / "helm_values" / component / "production.yaml"
    values = yaml.safe_load(path.read_text()) or {}
    values.update(overlay)
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ManifestError, match=message):
        load(scratch_repo)


def test_running_as_root_needs_an_exception_in_the_manifest(scratch_repo):
    path = scratch_repo / "helm_values" / "cilium" / "local.yaml"
    path.write_text(path.read_text() + "securityContext:\n  runAsUser: 0\n")
    load(scratch_repo)  # the manifest records why the Cilium agent runs as root
    edit(scratch_repo, lambda d: d["components"]["cilium"].pop("policy_exceptions"))
    with pytest.raises(ManifestError, match=r"cilium/local\.yaml: securityContext: runs as root"):
        load(scratch_repo)


def test_secret_references_pass_the_policy():
    from adplatform.provisioning.policy import check_values_file

    references = {
        "existingSecret": "minio-root-credentials",
        "auth": {"secretRef": "redpanda-superuser", "passwordSecret": "pg-app"},
        "password": {"secret": "gitlab-postgresql", "key": "password"},
        "token": "vault:secret/data/platform#token",
    }
    assert check_values_file(references, "x.yaml") == []
    assert check_values_file({"apiKey": "AKIA0123456789"}, "x.yaml") == [
        "x.yaml: apiKey: plaintext secret; reference a Secret instead (existingSecret / secretKeyRef / vault: path)"
    ]
