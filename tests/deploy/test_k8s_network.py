"""NetworkPolicies, evaluated on sample pods: only the ingress controller and Prometheus reach
the API, the API and the migration Job reach only DNS and Postgres, and Postgres accepts only
them, its own instances, its operator and Prometheus (its exporter only)."""

from typing import Any

import pytest

from tests.deploy.kube import OVERLAYS, Endpoint, connection_allowed, find, one, render


def _pod(manifests: tuple[dict[str, Any], ...], kind: str) -> Endpoint:
    """A pod of the rendered Deployment or Job, with its labels and named ports."""
    workload = one(manifests, kind)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return Endpoint(workload["metadata"]["namespace"], labels, ports)


def _pods(overlay: str) -> dict[str, Endpoint]:
    manifests = render(f"overlays/{overlay}")
    namespace = one(manifests, "Namespace")["metadata"]["name"]
    return {
        "api": _pod(manifests, "Deployment"),
        "migrate": _pod(manifests, "Job"),
        "postgres": Endpoint(namespace, {"cnpg.io/cluster": "branch-loans-db"}),
        "neighbour": Endpoint(namespace, {"app.kubernetes.io/name": "other"}, {"http": 8000}),
        "ingress controller": Endpoint(
            "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}
        ),
        "prometheus": Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"}),
        "dns": Endpoint("kube-system", {"k8s-app": "kube-dns"}),
        "operator": Endpoint("cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}),
        "stranger": Endpoint("default", {"app.kubernetes.io/name": "ingress-nginx"}),
        "internet": Endpoint(None),
    }


def _policies(overlay: str) -> list[dict[str, Any]]:
    return find(render(f"overlays/{overlay}"), "NetworkPolicy")


ALLOWED = [
    ("ingress controller", "api", 8000, "TCP"),
    ("prometheus", "api", 9102, "TCP"),
    ("api", "postgres", 5432, "TCP"),
    ("migrate", "postgres", 5432, "TCP"),
    ("api", "dns", 53, "UDP"),
    ("api", "dns", 53, "TCP"),
    ("migrate", "dns", 53, "UDP"),
    ("postgres", "postgres", 5432, "TCP"),
    ("operator", "postgres", 8000, "TCP"),
    ("operator", "postgres", 5432, "TCP"),
    ("prometheus", "postgres", 9187, "TCP"),
]

DENIED = [
    ("neighbour", "api", 8000, "TCP"),
    ("neighbour", "api", 9102, "TCP"),
    ("ingress controller", "api", 9102, "TCP"),
    ("prometheus", "api", 8000, "TCP"),
    ("stranger", "api", 8000, "TCP"),
    ("internet", "api", 8000, "TCP"),
    ("ingress controller", "migrate", 8000, "TCP"),
    ("api", "internet", 443, "TCP"),
    ("api", "neighbour", 8000, "TCP"),
    ("api", "prometheus", 9090, "TCP"),
    ("api", "postgres", 8000, "TCP"),
    ("api", "dns", 5432, "TCP"),
    ("migrate", "internet", 443, "TCP"),
    ("neighbour", "postgres", 5432, "TCP"),
    ("stranger", "postgres", 5432, "TCP"),
    ("api", "postgres", 9187, "TCP"),
    ("prometheus", "postgres", 5432, "TCP"),
]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("source", "destination", "port", "protocol"), ALLOWED)
def test_connection_is_allowed(
    overlay: str, source: str, destination: str, port: int, protocol: str
) -> None:
    pods = _pods(overlay)

    assert connection_allowed(_policies(overlay), pods[source], pods[destination], port, protocol)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("source", "destination", "port", "protocol"), DENIED)
def test_connection_is_denied(
    overlay: str, source: str, destination: str, port: int, protocol: str
) -> None:
    pods = _pods(overlay)

    assert not connection_allowed(
        _policies(overlay), pods[source], pods[destination], port, protocol
    )


def test_without_policies_everything_is_allowed() -> None:
    pods = _pods("prod")

    assert connection_allowed([], pods["stranger"], pods["api"], 8000)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_may_reach_the_port_the_service_monitor_scrapes(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    (endpoint,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    service = one(manifests, "Service", "branch-loans-api")
    (port,) = (p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    pods = _pods(overlay)

    assert connection_allowed(
        _policies(overlay),
        pods["prometheus"],
        pods["api"],
        pods["api"].ports[port["targetPort"]],
    )
