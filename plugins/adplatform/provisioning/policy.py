"""Policy for Helm values: what every values file of the platform must (not) contain.

- No plaintext secret: a key that names a secret (password, token, secretKey, ...) holds a
  reference (``existingSecret``, ``...SecretName``, ``secretKeyRef``, ``vault:`` path, or the
  name of a Secret object under a ``...Secret`` key), never a value; no private key or
  certificate body anywhere.
- TLS stays on: no ``tls.enabled: false``, ``tls: false``, ``insecure: true`` or
  ``insecureSkipVerify: true``.
- In the merged values of each environment: every ``resources`` block sets CPU and memory
  requests and a memory limit; every security context runs as non-root without privilege
  escalation (unless the manifest records why a component must run as root, or that an
  operator builds its pods and the chart has no key for their security context).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adplatform.provisioning.manifest import Component

_SECRET_KEY = re.compile(
    r"(password|passwd|passphrase|secret|token|apikey|api_key|accesskey|secretkey|privatekey|"
    r"private_key|credentials?)$",
    re.IGNORECASE,
)
# Keys that name where a secret lives rather than holding it.
_REFERENCE_KEY = re.compile(
    r"^(existing.*|key|keys|.*(name|names|ref|file|path|paths|length|enabled|policy))$",
    re.IGNORECASE,
)
# vault: paths, ${VAR} / {{ template }} substitutions, Grafana's $__env{VAR} / $__file{path}.
_REFERENCE_VALUE = re.compile(r"^(vault:|\$\{|\{\{|\$__(env|file)\{)")
_SECRET_MATERIAL = re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----")
_SECURITY_CONTEXT = re.compile(r"securitycontexts?$", re.IGNORECASE)
# A key ending in "secret" whose value is a Kubernetes object name names a Secret: a reference.
_NAMES_A_SECRET = re.compile(r"secret$", re.IGNORECASE)
# Beside a key naming a Secret (``secretName: airflow-oauth``), a value names one of its entries.
_BESIDE_A_SECRET = re.compile(r"secret(name)?$", re.IGNORECASE)
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (dotted path, key, value) in a values tree, lists indexed as [i]."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key), value
            yield from _walk(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            child = f"{path}[{index}]"
            yield child, "", value
            yield from _walk(value, child)


def _names_secret_entries(path: str, parent: Any) -> bool:
    """Inside an ``existingSecret`` block, or beside a key naming a Secret, a value names one of
    that Secret's entries (MinIO's ``tls.privateKey: tls.key``, Airflow's ``secretKey:
    client-id`` beside ``secretName``), not a secret."""
    if ".existingSecret." in f".{path}":
        return True
    return isinstance(parent, dict) and any(
        _BESIDE_A_SECRET.search(str(k)) and isinstance(v, str) and _OBJECT_NAME.match(v)
        for k, v in parent.items()
    )


def _parents(node: Any) -> dict[str, Any]:
    """Each dotted path of a values tree mapped to the mapping that holds it."""
    return {
        f"{path}.{key}" if path else str(key): mapping
        for path, _, mapping in [("", "", node), *_walk(node)]
        if isinstance(mapping, dict)
        for key in mapping
    }


def check_values_file(values: dict[str, Any], where: str) -> list[str]:
    """Problems in one values file: plaintext secrets and TLS switched off."""
    problems = []
    parents = _parents(values)
    for path, key, value in _walk(values):
        if isinstance(value, str) and _SECRET_MATERIAL.search(value):
            problems.append(f"{where}: {path}: key or certificate material in a values file")
        elif (
            isinstance(value, str)
            and value
            and _SECRET_KEY.search(key)
            and not _REFERENCE_KEY.search(key)
            and not _REFERENCE_VALUE.match(value)
            and not (_NAMES_A_SECRET.search(key) and _OBJECT_NAME.match(value))
            and not _names_secret_entries(path, parents.get(path))
        ):
            problems.append(
                f"{where}: {path}: plaintext secret; reference a Secret instead "
                "(existingSecret / secretKeyRef / vault: path)"
            )
        if key.lower() == "tls" and (
            value is False or (isinstance(value, dict) and value.get("enabled") is False)
        ):
            problems.append(f"{where}: {path}: TLS must stay on")
        if key.lower() in {"insecure", "insecureskipverify"} and value is True:
            problems.append(f"{where}: {path}: TLS verification must stay on")
    return problems


def check_release(values: dict[str, Any], where: str, component: Component) -> list[str]:
    """Problems in the merged values of one release: resources and security contexts."""
    problems: list[str] = []
    if "no_workloads" in component.policy_exceptions:
        return problems
    # A volume claim's resources (requests.storage) are sizes, not compute budgets.
    resources = [
        (p, v)
        for p, k, v in _walk(values)
        if k == "resources" and isinstance(v, dict) and "storage" not in (v.get("requests") or {})
    ]
    if not resources:
        problems.append(f"{where}: no resources block: set requests and limits")
    for path, block in resources:
        if missing := _missing_resources(block):
            problems.append(f"{where}: {path}: missing {', '.join(missing)}")
    # A context may nest per-scope contexts (Vault's securityContext.pod / .container).
    contexts = [
        (p, v)
        for path, k, context in _walk(values)
        if _SECURITY_CONTEXT.search(k)
        for p, v in [(path, context), *((p, v) for p, _, v in _walk(context, path))]
        if isinstance(v, dict)
    ]
    if {"root", "operator_managed_pods"} & set(component.policy_exceptions):
        return problems
    if not any(v.get("runAsNonRoot") is True for _, v in contexts):
        problems.append(f"{where}: no security context with runAsNonRoot: true")
    for path, context in contexts:
        if context.get("runAsUser") == 0 or context.get("runAsNonRoot") is False:
            problems.append(f"{where}: {path}: runs as root")
        if context.get("privileged") is True or context.get("allowPrivilegeEscalation") is True:
            problems.append(f"{where}: {path}: privileged or allows privilege escalation")
    return problems


def _missing_resources(block: dict[str, Any]) -> list[str]:
    """Kubernetes' shape (requests/limits), per container or not, Linkerd's (cpu.request,
    memory.limit) or the Altinity Keeper chart's (cpuRequestsMs, memoryRequestsMiB,
    memoryLimitsMiB)."""
    if block and all(
        isinstance(inner, dict) and inner and set(inner) <= {"requests", "limits"}
        for inner in block.values()
    ):  # per container (hcloud-csi's controller.resources.<container>)
        return [f"{name}.{m}" for name, inner in block.items() for m in _missing_resources(inner)]
    if any(key.endswith(("Ms", "MiB")) for key in block):
        keeper = ("cpuRequestsMs", "memoryRequestsMiB", "memoryLimitsMiB")
        return [key for key in keeper if key not in block]
    if "cpu" in block or "memory" in block:
        wanted = [("cpu", "request"), ("memory", "request"), ("memory", "limit")]
        return [f"{r}.{k}" for r, k in wanted if k not in (block.get(r) or {})]
    requests, limits = block.get("requests") or {}, block.get("limits") or {}
    missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
    return missing + (["limits.memory"] if "memory" not in limits else [])
