"""The manifests agree with the application: probe paths answer, ports line up with what
`branchloans serve` binds, every variable set is a setting the app reads, and the Ingress
exposes only public routes."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from branchloans.app import create_app
from branchloans.cli import build_parser
from branchloans.config import Settings
from branchloans.observability import tracing
from tests.deploy.kube import (
    OVERLAYS,
    config_map_data,
    containers,
    one,
    quantity,
    render,
    selects,
    workloads,
)
from tests.support import make_settings, started_client

Manifests = tuple[dict[str, Any], ...]
INTERNAL_PATHS = ("/metrics", "/liveness", "/readiness")
# The shape of the URL the `branch-loans-db` Secret holds (see README).
SECRET_DATABASE_URL = (
    "postgresql+asyncpg://branchloans:generated-by-cloudnativepg@branch-loans-db-rw:5432/microloans"
)


def _setting_variables() -> set[str]:
    # The OpenTelemetry SDK reads the OTEL_* variables itself (tests/deploy/test_k8s_tracing.py).
    return {name.upper() for name in Settings.model_fields} | tracing.SDK_VARIABLES


def _api(manifests: Manifests) -> dict[str, Any]:
    (container,) = containers(one(manifests, "Deployment", "branch-loans-api"))
    return container


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = ("startupProbe", "livenessProbe", "readinessProbe")
    return {kind: container[kind] for kind in kinds}


def _container_port(container: dict[str, Any], port: int | str) -> int:
    for declared in container["ports"]:
        if port in (declared["name"], declared["containerPort"]):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"port {port} is not a port of container {container['name']}")


def _app_paths(app: FastAPI) -> set[str]:
    documented = set(app.openapi()["paths"])
    # Undocumented routes too: the OpenAPI document itself, /docs and /redoc.
    served = {getattr(route, "path", None) for route in app.routes}
    return documented | {path for path in served if path}


# --- probes and ports ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
async def test_probe_paths_answer_200_on_a_healthy_app(
    overlay: str, client: httpx.AsyncClient
) -> None:
    for kind, probe in _probes(_api(render(f"overlays/{overlay}"))).items():
        response = await client.get(probe["httpGet"]["path"])
        assert response.status_code == 200, f"{kind} {probe['httpGet']['path']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_port_serve_binds_with_one_worker(overlay: str) -> None:
    container = _api(render(f"overlays/{overlay}"))
    args = build_parser().parse_args(container["args"])

    assert args.command == "serve"
    assert args.host == "0.0.0.0"
    assert args.workers == 1
    assert _container_port(container, "http") == args.port
    for probe in _probes(container).values():
        assert _container_port(container, probe["httpGet"]["port"]) == args.port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_runs_migrate_with_the_apis_image_and_settings(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    (migrate,) = containers(one(manifests, "Job", "branch-loans-migrate"))
    api = _api(manifests)

    assert build_parser().parse_args(migrate["args"]).command == "migrate"
    assert migrate["image"] == api["image"]
    assert migrate["envFrom"] == api["envFrom"]
    assert migrate["env"] == api["env"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_readiness_probe_outwaits_the_apps_health_timeout(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    config = config_map_data(manifests, one(manifests, "Deployment"))
    readiness = _api(manifests)["readinessProbe"]

    assert readiness["timeoutSeconds"] > float(config["HEALTH_TIMEOUT"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_reaches_the_container_port_by_name(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    service = one(manifests, "Service", "branch-loans-api")
    deployment = one(manifests, "Deployment")
    ports = {port["name"]: port["targetPort"] for port in service["spec"]["ports"]}
    config = config_map_data(manifests, deployment)

    assert selects(
        {"matchLabels": service["spec"]["selector"]},
        deployment["spec"]["template"]["metadata"]["labels"],
    )
    assert _container_port(_api(manifests), ports["http"]) == 8000
    assert _container_port(_api(manifests), ports["metrics"]) == int(config["METRICS_PORT"])


# --- environment variables -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_the_pods_get_is_a_setting_the_app_reads(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    settings = _setting_variables()

    for workload in workloads(manifests):
        for container in containers(workload):
            assert all("configMapRef" in source for source in container["envFrom"])
            named = {variable["name"] for variable in container.get("env", [])}
            assert named | set(config_map_data(manifests, workload)) <= settings


@pytest.mark.parametrize("target", ["base", *(f"overlays/{name}" for name in OVERLAYS)])
def test_config_map_values_are_valid_settings(target: str) -> None:
    manifests = render(target)
    config = config_map_data(manifests, one(manifests, "Deployment"))
    overrides = {
        name.lower(): value for name, value in config.items() if name not in tracing.SDK_VARIABLES
    }

    settings = make_settings(SECRET_DATABASE_URL, **overrides)

    assert settings.app_env.value == config["APP_ENV"]
    assert settings.log_level == config["LOG_LEVEL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_database_url_comes_from_the_uncommitted_secret(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")

    for workload in workloads(manifests):
        for container in containers(workload):
            (variable,) = (v for v in container["env"] if v["name"] == "DATABASE_URL")
            assert variable["valueFrom"]["secretKeyRef"] == {
                "name": "branch-loans-db",
                "key": "DATABASE_URL",
            }
        assert "DATABASE_URL" not in config_map_data(manifests, workload)


# --- what leaves the cluster, what Prometheus scrapes ---------------------------------------


def _ingress_paths(manifests: Manifests) -> list[tuple[str, str]]:
    ingress = one(manifests, "Ingress")
    return [
        (path["path"], path["pathType"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]


def _routed(path: str, ingress_paths: list[tuple[str, str]]) -> bool:
    return any(
        path == prefix or (kind == "Prefix" and path.startswith(prefix.rstrip("/") + "/"))
        for prefix, kind in ingress_paths
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_paths_are_routes_of_the_app(overlay: str, app: FastAPI) -> None:
    routes = _app_paths(app)

    for path, kind in _ingress_paths(render(f"overlays/{overlay}")):
        if kind == "Exact":
            assert path in routes, path
        else:
            assert any(_routed(route, [(path, kind)]) for route in routes), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_keeps_metrics_and_probes_inside_the_cluster(overlay: str) -> None:
    ingress_paths = _ingress_paths(render(f"overlays/{overlay}"))

    assert _routed("/api/loans", ingress_paths)
    for path in INTERNAL_PATHS:
        assert not _routed(path, ingress_paths), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_lets_the_app_answer_oversized_bodies_itself(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    annotations = one(manifests, "Ingress")["metadata"]["annotations"]
    config = config_map_data(manifests, one(manifests, "Deployment"))
    proxy_limit = quantity(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].upper() + "i")

    assert proxy_limit > int(config["MAX_BODY_BYTES"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_backend_is_the_services_http_port(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    service = one(manifests, "Service", "branch-loans-api")
    service_ports = {port["name"] for port in service["spec"]["ports"]}

    for rule in one(manifests, "Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in service_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_scrapes_the_services_http_port(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    monitor = one(manifests, "ServiceMonitor")["spec"]
    service = one(manifests, "Service", "branch-loans-api")

    assert selects(monitor["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


async def test_app_serves_the_path_the_service_monitor_scrapes_on_its_port(
    settings: Settings, connection: AsyncConnection
) -> None:
    manifests = render("overlays/prod")
    (endpoint,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    port = int(config_map_data(manifests, one(manifests, "Deployment"))["METRICS_PORT"])
    app = create_app(settings.model_copy(update={"metrics_port": port}))

    async with started_client(app, connection) as http:
        scraped = await http.get(f"http://testserver:{port}{endpoint['path']}")
        on_api_port = await http.get(endpoint["path"])

    assert (scraped.status_code, on_api_port.status_code) == (200, 404)
