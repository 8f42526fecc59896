"""Kubernetes tracing settings: OTEL_* in the base, a Collector endpoint the API may reach."""

from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from branchloans.observability import tracing
from tests.deploy.kube import (
    OVERLAYS,
    Endpoint,
    config_map_data,
    connection_allowed,
    find,
    one,
    render,
)

COLLECTOR = Endpoint("observability", {"app.kubernetes.io/name": "opentelemetry-collector"})
OTLP_HTTP_PORT = 4318


def test_the_base_configures_tracing_but_exports_nowhere() -> None:
    manifests = render("base")
    config = config_map_data(manifests, one(manifests, "Deployment"))
    assert config["OTEL_SERVICE_NAME"] == "branchloans-api"
    assert config["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in config


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_exports_to_a_collector_its_api_may_reach(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    deployment = one(manifests, "Deployment")
    config = config_map_data(manifests, deployment)
    endpoint = urlsplit(config["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname is not None
    assert endpoint.hostname.split(".")[:2] == ["otel-collector", COLLECTOR.namespace]
    assert endpoint.port == OTLP_HTTP_PORT
    assert 0 < float(config["OTEL_TRACES_SAMPLER_ARG"]) <= 1
    assert config["OTEL_RESOURCE_ATTRIBUTES"].startswith("deployment.environment=")

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    api = Endpoint(deployment["metadata"]["namespace"], labels)
    policies = find(manifests, "NetworkPolicy")
    assert connection_allowed(policies, api, COLLECTOR, OTLP_HTTP_PORT, "TCP")
    assert not connection_allowed(policies, api, COLLECTOR, 4317, "TCP")
    migrate = one(manifests, "Job")
    migrate_pod = Endpoint(
        migrate["metadata"]["namespace"], migrate["spec"]["template"]["metadata"]["labels"]
    )
    assert not connection_allowed(policies, migrate_pod, COLLECTOR, OTLP_HTTP_PORT, "TCP")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_sdk_builds_the_sampler_and_resource_the_overlay_asks_for(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render(f"overlays/{overlay}")
    config = config_map_data(manifests, one(manifests, "Deployment"))
    for name in tracing.SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in config.items():
        if name in tracing.SDK_VARIABLES:
            monkeypatch.setenv(name, value)
    provider = TracerProvider(resource=Resource.create())
    ratio = float(config["OTEL_TRACES_SAMPLER_ARG"])
    assert provider.sampler.get_description() == (
        f"ParentBased{{root:TraceIdRatioBased{{{ratio}}},remoteParentSampled:AlwaysOnSampler,"
        "remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,"
        "localParentNotSampled:AlwaysOffSampler}"
    )
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "branchloans-api"
    assert attributes["deployment.environment"] == config["OTEL_RESOURCE_ATTRIBUTES"].split("=")[1]
