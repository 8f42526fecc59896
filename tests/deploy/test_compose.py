"""compose.yaml against the Compose specification, the env files, the app and deploy/."""

import ipaddress
import json
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from sqlalchemy import make_url

from branchloans.certs import CertificatePaths
from branchloans.config import Settings
from tests.deploy.conftest import environment_values
from tests.deploy.support import (
    ENV_DIR,
    ENVIRONMENTS,
    GRAFANA_DIR,
    NGINX_TEMPLATE,
    PRODUCTION_SECRETS,
    PROMETHEUS_DIR,
    REPO,
    MissingVariableError,
    interpolate,
    read_env_file,
    template_variables,
)
from tests.support import make_settings

SERVICES = {
    "certs",
    "db",
    "backup",
    "pgbackrest-exporter",
    "migrate",
    "api",
    "nginx",
    "prometheus",
    "postgres-exporter",
    "alertmanager",
    "grafana",
    "jaeger",
}

# The old stack's environment table, as this one must follow it.
TABLE = {
    "dev": {
        "APP_ENV": "development",
        "LOG_LEVEL": "DEBUG",
        "http": "8000",
        "cpus": "0.5",
        "memory": "512M",
        "persistent": False,
    },
    "staging": {
        "APP_ENV": "staging",
        "LOG_LEVEL": "INFO",
        "http": "8080",
        "cpus": "1.0",
        "memory": "1G",
        "persistent": False,
    },
    "prod": {
        "APP_ENV": "production",
        "LOG_LEVEL": "WARNING",
        "http": "80",
        "cpus": "2.0",
        "memory": "2G",
        "persistent": True,
    },
}


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _published(service: dict[str, Any]) -> dict[str, str]:
    """Container port -> host port of a service's `ports`."""
    mapping = {}
    for entry in service.get("ports", []):
        *host, container = str(entry).split(":")
        mapping[container] = host[-1]
    return mapping


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def _api_port(rendered: dict[str, Any]) -> str:
    command = _command(rendered["services"]["api"])
    return command[command.index("--port") + 1]


def _networks(service: dict[str, Any]) -> set[str]:
    networks = service.get("networks", [])
    return set(networks)


def _bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def _volume_target(service: dict[str, Any], source: str) -> str:
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[0] == source:
            return parts[1]
    raise AssertionError(f"{source} is not mounted")


def test_compose_file_matches_the_compose_specification(compose_document: dict[str, Any]) -> None:
    assert _schema_errors(compose_document) == []


def test_each_environment_renders_to_a_valid_compose_file(rendered: dict[str, Any]) -> None:
    assert _schema_errors(rendered) == []


def test_the_stack_has_every_service(compose_document: dict[str, Any]) -> None:
    assert set(compose_document["services"]) == SERVICES


def test_every_variable_compose_uses_is_defined_in_the_env_file(
    compose_document: dict[str, Any], environment: str
) -> None:
    used: set[str] = set()
    interpolate(compose_document, environment_values(environment), used)

    defined = set(read_env_file(ENV_DIR / f"{environment}.env"))
    from_the_shell = set(PRODUCTION_SECRETS) if environment == "prod" else set()
    assert used - from_the_shell <= defined
    assert used >= set(PRODUCTION_SECRETS)


def test_every_env_file_defines_the_same_variables() -> None:
    keys = {name: set(read_env_file(ENV_DIR / f"{name}.env")) for name in ENVIRONMENTS}

    assert keys["dev"] == keys["staging"]
    assert keys["dev"] - keys["prod"] == set(PRODUCTION_SECRETS)


def test_the_production_env_file_holds_no_secret() -> None:
    production = read_env_file(ENV_DIR / "prod.env")

    assert not [key for key in production if "PASSWORD" in key or "SECRET" in key]


@pytest.mark.parametrize("secret", PRODUCTION_SECRETS)
def test_production_does_not_start_without_its_passwords(
    compose_document: dict[str, Any], secret: str
) -> None:
    values = environment_values("prod")
    del values[secret]

    with pytest.raises(MissingVariableError, match=secret):
        interpolate(compose_document, values, set())


@pytest.mark.parametrize("secret", PRODUCTION_SECRETS)
def test_production_does_not_start_with_an_empty_password(
    compose_document: dict[str, Any], secret: str
) -> None:
    values = environment_values("prod") | {secret: ""}

    with pytest.raises(MissingVariableError, match=secret):
        interpolate(compose_document, values, set())


def test_the_api_and_migrations_get_their_settings(
    rendered: dict[str, Any], environment: str
) -> None:
    expected = TABLE[environment]
    services = rendered["services"]
    for name in ("api", "migrate"):
        settings = services[name]["environment"]
        # The settings the app itself validates (production's password checks included).
        parsed = make_settings(
            settings["DATABASE_URL"],
            app_env=settings["APP_ENV"],
            log_level=settings["LOG_LEVEL"],
            migration_database_url=settings.get("MIGRATION_DATABASE_URL"),
            cursor_signing_keys=settings["CURSOR_SIGNING_KEYS"],
        )
        assert parsed.app_env == expected["APP_ENV"]
        assert parsed.log_level == expected["LOG_LEVEL"]
        assert parsed.database_url.hosts()[0]["host"] == "db"


def test_the_api_connects_as_its_own_role_and_migrate_as_the_owner(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    database = services["db"]["environment"]
    owner = make_url(services["migrate"]["environment"]["MIGRATION_DATABASE_URL"])
    api = make_url(services["api"]["environment"]["DATABASE_URL"])

    assert (owner.username, owner.password) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
    )
    assert owner.database == api.database == database["POSTGRES_DB"]
    assert api.username != owner.username
    assert services["migrate"]["environment"]["DATABASE_URL"] == str(
        services["api"]["environment"]["DATABASE_URL"]
    )
    assert "MIGRATION_DATABASE_URL" not in services["api"]["environment"]


def test_ports_and_limits_follow_the_environment_table(
    rendered: dict[str, Any], environment: str
) -> None:
    expected = TABLE[environment]
    services = rendered["services"]

    assert _published(services["nginx"])["80"] == expected["http"]
    for name in ("api", "db"):
        limits = services[name]["deploy"]["resources"]["limits"]
        assert limits == {"cpus": expected["cpus"], "memory": expected["memory"]}


def test_only_production_keeps_its_database(rendered: dict[str, Any], environment: str) -> None:
    data_volume = rendered["services"]["db"]["volumes"][0].split(":")[0]
    options = rendered["volumes"][data_volume] or {}

    in_memory = options.get("driver_opts", {}).get("type") == "tmpfs"
    assert in_memory is not TABLE[environment]["persistent"]


def test_the_environments_can_run_side_by_side() -> None:
    rendered = {
        name: interpolate(yaml.safe_load((REPO / "compose.yaml").read_text()), values, set())
        for name, values in ((name, environment_values(name)) for name in ENVIRONMENTS)
    }
    names = {document["name"] for document in rendered.values()}
    host_ports = [
        port
        for document in rendered.values()
        for service in document["services"].values()
        for port in _published(service).values()
    ]
    subnets = [
        ipaddress.ip_network(document["networks"]["edge"]["ipam"]["config"][0]["subnet"])
        for document in rendered.values()
    ]

    assert len(names) == len(ENVIRONMENTS)
    assert len(host_ports) == len(set(host_ports))
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])


def test_development_seeds_demo_loans_and_reloads_code(
    rendered: dict[str, Any], environment: str
) -> None:
    services = rendered["services"]
    development = environment == "dev"

    assert ("--reload" in _command(services["api"])) is development
    assert (services["migrate"]["environment"]["SEED_DEMO_LOANS"] == "true") is development
    assert (services["api"]["build"]["target"] == "development") is development
    watched = {rule["path"]: rule.get("target") for rule in services["api"]["develop"]["watch"]}
    assert watched["./src"] == "/app/src"


def test_migrate_runs_the_migrations_then_seeds_only_when_asked(
    compose_document: dict[str, Any],
) -> None:
    script = " ".join(_command(compose_document["services"]["migrate"]))

    assert script.startswith("branchloans migrate && ")
    assert '[ "$$SEED_DEMO_LOANS" = true ]; then branchloans seed;' in script


def test_services_start_in_dependency_order(compose_document: dict[str, Any]) -> None:
    services = compose_document["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"db": "service_healthy"}
    assert conditions("api") == {
        "db": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert conditions("nginx") == {
        "certs": "service_completed_successfully",
        "api": "service_healthy",
    }
    assert conditions("grafana") == {"prometheus": "service_healthy"}


def test_the_database_healthcheck_is_pg_isready(compose_document: dict[str, Any]) -> None:
    db = compose_document["services"]["db"]
    containerfile = (REPO / db["build"]["context"] / db["build"]["dockerfile"]).read_text()

    assert re.search(r"^FROM postgres:16-bookworm$", containerfile, re.MULTILINE)
    assert db["healthcheck"]["test"][0] == "CMD-SHELL"
    assert db["healthcheck"]["test"][1].startswith("pg_isready ")


async def test_the_health_endpoints_compose_probes_answer_in_the_app(
    compose_document: dict[str, Any], client: httpx.AsyncClient
) -> None:
    probes = " ".join(compose_document["services"]["api"]["healthcheck"]["test"])
    containerfile = (REPO / "Containerfile").read_text()
    paths = set(re.findall(r"http://127\.0\.0\.1:8000(/[a-z/]+)", probes + containerfile))

    assert paths == {"/liveness"}
    for path in paths:
        assert (await client.get(path)).status_code == 200


def test_every_mounted_path_exists(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    paths = [source for service in services.values() for source in _bind_sources(service)]
    paths += [rule["path"] for rule in services["api"]["develop"]["watch"]]
    paths += [services["api"]["build"]["context"]]

    assert paths
    assert [path for path in paths if not (REPO / path).exists()] == []
    assert (REPO / services["api"]["build"]["dockerfile"]).is_file()


def test_nginx_upstream_is_the_api_service_and_port(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    host, port = services["nginx"]["environment"]["NGINX_UPSTREAM"].split(":")

    assert host == "api"
    assert port == _api_port(rendered)
    assert "edge" in _networks(services["api"]) & set(services["nginx"]["networks"])


def test_nginx_gets_every_variable_its_template_declares(rendered: dict[str, Any]) -> None:
    nginx = rendered["services"]["nginx"]
    template_dir = _volume_target(nginx, "./deploy/nginx/templates")

    assert template_dir == "/etc/nginx/templates"
    assert NGINX_TEMPLATE.name.endswith(".template")
    assert template_variables(NGINX_TEMPLATE.read_text()) <= set(nginx["environment"])
    assert all(name.startswith("NGINX_") for name in nginx["environment"])


def test_nginx_serves_the_certificate_the_certs_service_makes(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    command = _command(services["certs"])
    server_dir = command[command.index("--dir") + 1]
    ca_dir = command[command.index("--ca-dir") + 1]
    made = CertificatePaths(Path(server_dir), Path(ca_dir))
    mounted = _volume_target(services["nginx"], "certs")
    nginx_env = services["nginx"]["environment"]

    assert command[0] == "certs"
    assert _volume_target(services["certs"], "certs") == server_dir
    assert nginx_env["NGINX_CERT"] == f"{mounted}/{made.server_cert.name}"
    assert nginx_env["NGINX_CERT_KEY"] == f"{mounted}/{made.server_key.name}"
    assert "branchloans.com" in nginx_env["NGINX_SERVER_NAMES"].split()


def test_only_the_certs_service_holds_the_ca_key(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    command = _command(services["certs"])

    assert _volume_target(services["certs"], "ca") == command[command.index("--ca-dir") + 1]
    holders = [
        name
        for name, service in services.items()
        for volume in service.get("volumes", [])
        if volume.split(":")[0] == "ca"
    ]
    assert holders == ["certs"]


def test_nginx_publishes_http_and_https(rendered: dict[str, Any], environment: str) -> None:
    nginx = rendered["services"]["nginx"]
    env = nginx["environment"]
    published = _published(nginx)

    assert set(published) == {env["NGINX_HTTP_PORT"], env["NGINX_HTTPS_PORT"]}
    assert published[env["NGINX_HTTPS_PORT"]] == env["NGINX_PUBLIC_HTTPS_PORT"]


def test_the_api_trusts_forwarded_headers_from_nginx_only(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    nginx_address = services["nginx"]["networks"]["edge"]["ipv4_address"]
    subnet = rendered["networks"]["edge"]["ipam"]["config"][0]["subnet"]

    assert services["api"]["environment"]["TRUSTED_PROXIES"] == nginx_address
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)


def test_only_nginx_grafana_and_prometheus_publish_ports(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    publishing = {name for name, service in services.items() if service.get("ports")}

    assert publishing == {"nginx", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        assert all(str(port).startswith("127.0.0.1:") for port in services[name]["ports"])


def test_the_database_is_on_an_internal_network_nginx_cannot_reach(
    compose_document: dict[str, Any],
) -> None:
    services = compose_document["services"]

    assert compose_document["networks"]["backend"]["internal"] is True
    assert _networks(services["db"]) == {"backend", "storage"}
    assert "storage" not in set(services["nginx"]["networks"]) | set(services["api"]["networks"])
    assert "backend" not in set(services["nginx"]["networks"])


def test_prometheus_scrapes_the_api_service_and_port(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    prometheus = services["prometheus"]
    config_dir = _volume_target(prometheus, "./deploy/prometheus")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "branchloans-api"]
    (target_file,) = job["file_sd_configs"][0]["files"]
    (group,) = yaml.safe_load((PROMETHEUS_DIR / target_file).read_text())

    assert f"--config.file={config_dir}/prometheus.yml" in prometheus["command"]
    assert job["job_name"] == "branchloans-api"
    assert job["metrics_path"] == "/metrics"
    assert group["targets"] == [f"api:{services['api']['environment']['METRICS_PORT']}"]
    assert group["targets"] != [f"api:{_api_port(rendered)}"]
    assert _networks(prometheus) & _networks(services["api"])


def test_grafana_reads_the_prometheus_service(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    grafana = services["grafana"]
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "branchloans.yml").read_text()
    )

    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090" in _published(services["prometheus"])
    assert _networks(grafana) & _networks(services["prometheus"])
    assert _volume_target(grafana, "./deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_dir = _volume_target(grafana, "./deploy/grafana/dashboards")
    assert providers["providers"][0]["options"]["path"] == dashboards_dir
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(
        dashboards_dir
    )


def test_grafana_admin_password_comes_from_the_environment(
    compose_document: dict[str, Any],
) -> None:
    password = compose_document["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]

    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_the_api_containers_drop_privileges(compose_document: dict[str, Any]) -> None:
    services = compose_document["services"]
    for name in ("certs", "migrate", "api"):
        assert services[name]["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in services[name]["security_opt"]
    assert services["certs"]["network_mode"] == "none"


def test_every_public_image_is_pinned_to_a_version(compose_document: dict[str, Any]) -> None:
    images = [
        service["image"]
        for service in compose_document["services"].values()
        if not service["image"].startswith("${")
    ]

    assert len(images) == 7
    for image in images:
        _, _, tag = image.partition(":")
        assert re.match(r"v?\d+(\.\d+)*(-[a-z]+)?$", tag), image


def test_docker_waits_for_the_apis_graceful_shutdown(compose_document: dict[str, Any]) -> None:
    defaults = Settings.model_fields
    needed = defaults["shutdown_drain_seconds"].default + defaults["shutdown_grace_seconds"].default
    grace = compose_document["services"]["api"]["stop_grace_period"]

    assert grace.endswith("s")
    assert float(grace.removesuffix("s")) > needed


@pytest.mark.parametrize("service", ["api", "migrate", "certs"])
def test_the_api_image_runs_non_root_on_a_read_only_root_filesystem(
    rendered: dict[str, Any], environment: str, service: str
) -> None:
    container = rendered["services"][service]

    # Development keeps its files writable for `up --watch`, which copies sources in.
    assert container["read_only"] == ("false" if environment == "dev" else "true")
    assert container["tmpfs"] == ["/tmp"]
    assert container["cap_drop"] == ["ALL"]
    assert "user" not in container  # the image's own non-root USER applies
    assert "USER 10001:10001" in (REPO / "Containerfile").read_text()


def _file_sd_targets(config: dict[str, Any]) -> list[str]:
    (target_file,) = config["file_sd_configs"][0]["files"]
    (group,) = yaml.safe_load((PROMETHEUS_DIR / target_file).read_text())
    targets: list[str] = group["targets"]
    return targets


def test_prometheus_scrapes_postgres_exporter_which_reads_the_database(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    exporter = services["postgres-exporter"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "postgres"]
    queries_dir = _volume_target(exporter, "./deploy/postgres-exporter")

    assert _file_sd_targets(job) == ["postgres-exporter:9187"]
    assert _networks(exporter) & _networks(services["prometheus"])
    assert _networks(exporter) & _networks(services["db"])
    assert exporter["environment"]["DATA_SOURCE_URI"].startswith("db:5432/")
    assert f"--extend.query-path={queries_dir}/queries.yaml" in exporter["command"]


def test_the_database_loads_pg_stat_statements_and_creates_the_extension(
    rendered: dict[str, Any],
) -> None:
    db = rendered["services"]["db"]
    initdb = REPO / "deploy" / "postgres" / "initdb"

    assert "shared_preload_libraries=pg_stat_statements" in _command(db)
    assert _volume_target(db, "./deploy/postgres/initdb") == "/docker-entrypoint-initdb.d"
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in "".join(
        path.read_text() for path in initdb.glob("*.sql")
    )


def test_prometheus_sends_alerts_to_alertmanager(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (alertmanagers,) = config["alerting"]["alertmanagers"]

    assert _file_sd_targets(alertmanagers) == ["alertmanager:9093"]
    assert _networks(services["alertmanager"]) & _networks(services["prometheus"])


def test_alertmanager_reads_its_receivers_secrets_from_the_environment(
    compose_document: dict[str, Any],
) -> None:
    alertmanager = compose_document["services"]["alertmanager"]
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    files = {
        receiver_config[key]
        for receiver in config["receivers"]
        for configs in receiver.values()
        if isinstance(configs, list)
        for receiver_config in configs
        for key in ("routing_key_file", "api_url_file")
        if key in receiver_config
    }

    assert compose_document["secrets"] == {
        "slack_webhook_url": {"environment": "SLACK_WEBHOOK_URL"},
        "pagerduty_routing_key": {"environment": "PAGERDUTY_ROUTING_KEY"},
    }
    assert files == {f"/run/secrets/{name}" for name in alertmanager["secrets"]}
    assert _volume_target(alertmanager, "./deploy/alertmanager") == "/etc/alertmanager"
