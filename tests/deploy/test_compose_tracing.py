"""compose.yaml's tracing: Jaeger in development and staging, the API exporting to it."""

from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.support import ENV_DIR, GRAFANA_DIR, read_env_file

OTLP_HTTP_PORT = 4318


def _profiles(environment: str) -> set[str]:
    value = read_env_file(ENV_DIR / f"{environment}.env")["COMPOSE_PROFILES"]
    return {name.strip() for name in value.split(",") if name.strip()}


def test_jaeger_runs_in_development_and_staging_only(environment: str) -> None:
    assert ("tracing" in _profiles(environment)) is (environment != "prod")


def test_the_jaeger_image_is_pinned_and_started_only_by_its_profile(
    compose_document: dict[str, Any],
) -> None:
    jaeger = compose_document["services"]["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:1.")
    assert jaeger["profiles"] == ["tracing"]


def test_the_api_exports_to_jaeger_where_it_runs_and_nowhere_in_production(
    rendered: dict[str, Any], environment: str
) -> None:
    services = rendered["services"]
    api = services["api"]["environment"]
    endpoint = api["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if environment == "prod":
        assert endpoint == ""
        return
    address = urlsplit(endpoint)
    assert (address.hostname, address.port) == ("jaeger", OTLP_HTTP_PORT)
    assert set(services["api"]["networks"]) & set(services["jaeger"]["networks"])
    assert 0 < float(api["OTEL_TRACES_SAMPLER_ARG"]) <= 1
    assert api["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"


def test_nginx_samples_the_traces_it_starts_at_the_apis_ratio(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    percent = float(services["nginx"]["environment"]["NGINX_TRACE_SAMPLE_PERCENT"])
    ratio = float(services["api"]["environment"]["OTEL_TRACES_SAMPLER_ARG"])
    assert percent == ratio * 100


def test_grafana_reads_traces_from_the_jaeger_service(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "jaeger.yml").read_text()
    )
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "jaeger"
    assert urlsplit(datasource["url"]).hostname == "jaeger"
    assert set(services["grafana"]["networks"]) & set(services["jaeger"]["networks"])
