"""The Kubernetes manifests render with kustomize, validate offline against the Kubernetes
schemas (custom resources against schemas of our own), and say what the overlays promise."""

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import SCHEMAS
from tests.deploy.kube import (
    K8S_DIR,
    OVERLAYS,
    ROOT,
    SEED_ENVIRONMENTS,
    config_map_data,
    containers,
    find,
    one,
    pod_spec,
    quantity,
    render,
    replica_range,
    selects,
    workloads,
)

TARGETS = ("base", *(f"overlays/{name}" for name in OVERLAYS))
# The oldest Kubernetes these manifests support (the preStop `sleep` action is on by default
# from 1.30) and the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
IMAGE_REPOSITORY = "ghcr.io/branchloans/branch-loans-api"
# What CI publishes: ghcr.io/<owner>/<IMAGE_NAME> (.github/workflows/ci-cd.yml).
PUBLISHED_IMAGE_NAME = "branch-loans-api"
POSTGRES_RESERVED_CONNECTIONS = 3  # superuser_reserved_connections' default


def _overlay(name: str) -> tuple[dict[str, Any], ...]:
    return render(f"overlays/{name}")


def _api_container(manifests: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (container,) = containers(one(manifests, "Deployment", "branch-loans-api"))
    return container


# --- rendering and schemas ---------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_built_in_kinds_validate_strictly_against_the_kubernetes_schemas(
    target: str, version: str
) -> None:
    built_in = [m for m in render(target) if (m["apiVersion"], m["kind"]) not in SCHEMAS]

    assert built_in
    for manifest in built_in:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_custom_resources_validate_against_their_schemas(target: str) -> None:
    custom = [m for m in render(target) if (m["apiVersion"], m["kind"]) in SCHEMAS]

    assert custom
    for manifest in custom:
        jsonschema.validate(manifest, SCHEMAS[(manifest["apiVersion"], manifest["kind"])])


def test_strict_validation_rejects_a_field_kubernetes_does_not_know() -> None:
    deployment = copy.deepcopy(one(_overlay("prod"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_custom_resource_schema_rejects_a_misspelt_field() -> None:
    cluster = copy.deepcopy(one(_overlay("prod"), "Cluster"))
    cluster["spec"]["instance"] = cluster["spec"].pop("instances")

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, SCHEMAS[("postgresql.cnpg.io/v1", "Cluster")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_puts_everything_in_its_own_namespace(overlay: str) -> None:
    manifests = _overlay(overlay)
    namespace = one(manifests, "Namespace")["metadata"]["name"]

    assert namespace == f"branchloans-{overlay}"
    assert {m["metadata"]["namespace"] for m in manifests if m["kind"] != "Namespace"} == {
        namespace
    }


def _kustomizations() -> list[Path]:
    return sorted(K8S_DIR.rglob("kustomization.yaml"))


def _referenced_paths(kustomization: Path) -> list[str]:
    document = yaml.safe_load(kustomization.read_text())
    paths = [*document.get("resources", []), *document.get("components", [])]
    paths += [patch["path"] for patch in document.get("patches", []) if "path" in patch]
    for generator in document.get("configMapGenerator", []):
        paths += [entry.split("=")[-1] for entry in generator.get("files", [])]
        paths += generator.get("envs", [])
    return paths


@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.parent.name))
def test_kustomization_references_files_that_exist(kustomization: Path) -> None:
    paths = _referenced_paths(kustomization)

    assert paths
    for path in paths:
        assert (kustomization.parent / path).exists(), f"{kustomization}: {path} is missing"


def test_every_manifest_file_is_listed_in_its_kustomization() -> None:
    for kustomization in _kustomizations():
        listed = {(kustomization.parent / p).resolve() for p in _referenced_paths(kustomization)}
        for manifest in kustomization.parent.glob("*.yaml"):
            if manifest.name != "kustomization.yaml":
                assert manifest.resolve() in listed, f"{manifest} is never rendered"


def test_overlays_mirror_the_three_environments() -> None:
    overlays = {path.name for path in (K8S_DIR / "overlays").iterdir() if path.is_dir()}

    assert overlays == set(OVERLAYS) == set(SEED_ENVIRONMENTS)


# --- the image -------------------------------------------------------------------------------


def _workflow_image_names() -> set[str]:
    """Every IMAGE_NAME the CI workflows set, wherever in a workflow it is set."""
    names: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "IMAGE_NAME" and isinstance(value, str):
                    names.add(value)
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    workflows = ROOT / ".github" / "workflows"
    for path in sorted([*workflows.glob("*.yml"), *workflows.glob("*.yaml")]):
        collect(yaml.safe_load(path.read_text()))
    return names


def test_ci_publishes_one_image_name() -> None:
    assert _workflow_image_names() == {PUBLISHED_IMAGE_NAME}


@pytest.mark.parametrize("target", TARGETS)
def test_image_is_the_one_ci_publishes(target: str) -> None:
    published = {name.rsplit("/", 1)[-1] for name in _workflow_image_names()}

    for workload in workloads(render(target)):
        for container in containers(workload):
            repository = container["image"].split("@")[0].rsplit(":", 1)[0]
            assert repository.startswith("ghcr.io/")
            assert {repository.rsplit("/", 1)[-1]} == published


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_sets_the_image_through_kustomize_images(overlay: str) -> None:
    document = yaml.safe_load((K8S_DIR / "overlays" / overlay / "kustomization.yaml").read_text())

    assert [image["name"] for image in document["images"]] == [IMAGE_REPOSITORY]


def test_kubernetes_docs_name_the_published_image() -> None:
    guide = (ROOT / "docs" / "kubernetes.md").read_text()

    assert f"ghcr.io/<owner>/{PUBLISHED_IMAGE_NAME}" in guide


# --- pod security and resources --------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_namespace_enforces_the_restricted_pod_security_standard(target: str) -> None:
    labels = one(render(target), "Namespace")["metadata"]["labels"]

    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_as_non_root_without_privileges_or_token(target: str) -> None:
    for workload in workloads(render(target)):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["fsGroup"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("target", TARGETS)
def test_tmp_is_a_writable_empty_dir_on_the_read_only_root(target: str) -> None:
    for workload in workloads(render(target)):
        volumes = {volume["name"]: volume for volume in pod_spec(workload)["volumes"]}
        for container in containers(workload):
            (mount,) = (m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[mount["name"]]
            assert not mount.get("readOnly", False)


@pytest.mark.parametrize("target", TARGETS)
def test_containers_request_no_more_than_their_limits(target: str) -> None:
    for workload in workloads(render(target)):
        for container in containers(workload):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                assert 0 < request <= quantity(resources["limits"][resource])


# --- availability and scaling ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollout_adds_a_pod_before_removing_one(overlay: str) -> None:
    strategy = one(_overlay(overlay), "Deployment")["spec"]["strategy"]

    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_leaves_time_to_drain_after_the_pre_stop_sleep(overlay: str) -> None:
    deployment = one(_overlay(overlay), "Deployment")
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    pre_stop = _api_container(_overlay(overlay))["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert grace == 30
    assert 0 < pre_stop <= 10
    assert grace - pre_stop >= 20


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_spread_across_nodes(overlay: str) -> None:
    deployment = one(_overlay(overlay), "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    constraints = {c["topologyKey"]: c for c in pod_spec(deployment)["topologySpreadConstraints"]}

    by_node = constraints["kubernetes.io/hostname"]
    assert by_node["maxSkew"] == 1
    assert selects(by_node["labelSelector"], labels)
    expected = "DoNotSchedule" if overlay == "prod" else "ScheduleAnyway"
    assert by_node["whenUnsatisfiable"] == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budget_covers_the_api_pods_one_at_a_time(overlay: str) -> None:
    manifests = _overlay(overlay)
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]

    assert selects(budget["selector"], pod_labels)
    assert budget["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", ["staging", "prod"])
def test_autoscaler_scales_the_deployment_on_cpu(overlay: str) -> None:
    manifests = _overlay(overlay)
    autoscaler = one(manifests, "HorizontalPodAutoscaler")["spec"]
    deployment = one(manifests, "Deployment")

    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 2 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    # A fixed count would fight the autoscaler on every apply.
    assert "replicas" not in deployment["spec"]


def test_dev_runs_one_replica_without_autoscaler() -> None:
    manifests = _overlay("dev")

    assert find(manifests, "HorizontalPodAutoscaler") == []
    assert one(manifests, "Deployment")["spec"]["replicas"] == 1


def test_prod_runs_more_replicas_than_staging_and_staging_more_than_dev() -> None:
    dev, staging, prod = (replica_range(_overlay(name)) for name in OVERLAYS)

    assert dev < staging < prod
    assert prod[1] > staging[1]


# --- per-environment settings ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_sets_the_environment_and_log_level_of_the_seed_table(overlay: str) -> None:
    manifests = _overlay(overlay)
    config = config_map_data(manifests, one(manifests, "Deployment"))

    assert config["APP_ENV"] == SEED_ENVIRONMENTS[overlay].app_env
    assert config["LOG_LEVEL"] == SEED_ENVIRONMENTS[overlay].log_level


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_minimum_replicas_have_the_seed_tables_resource_budget(overlay: str) -> None:
    manifests = _overlay(overlay)
    limits = _api_container(manifests)["resources"]["limits"]
    fewest, _ = replica_range(manifests)

    assert fewest * quantity(limits["cpu"]) == pytest.approx(SEED_ENVIRONMENTS[overlay].cpu)
    assert fewest * quantity(limits["memory"]) == SEED_ENVIRONMENTS[overlay].memory


def test_prod_pods_are_guaranteed_their_resources() -> None:
    resources = _api_container(_overlay("prod"))["resources"]

    assert resources["requests"] == resources["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_serves_the_environment_hostname_over_tls(overlay: str) -> None:
    ingress = one(_overlay(overlay), "Ingress")
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]

    assert hosts == [SEED_ENVIRONMENTS[overlay].hostname]
    assert [host for tls in ingress["spec"]["tls"] for host in tls["hosts"]] == hosts
    assert all(tls["secretName"] for tls in ingress["spec"]["tls"])
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]


# --- Postgres --------------------------------------------------------------------------------


# Staging and production run a primary and streaming replicas (the ro Pooler's, the API's reads).
@pytest.mark.parametrize(("overlay", "instances"), [("dev", 1), ("staging", 3), ("prod", 3)])
def test_postgres_cluster_runs_its_instances(overlay: str, instances: int) -> None:
    cluster = one(_overlay(overlay), "Cluster", "branch-loans-db")

    assert cluster["spec"]["instances"] == instances


def test_prod_postgres_instances_never_share_a_node() -> None:
    affinity = one(_overlay("prod"), "Cluster")["spec"]["affinity"]

    assert affinity["enablePodAntiAffinity"] is True
    assert affinity["topologyKey"] == "kubernetes.io/hostname"
    assert affinity["podAntiAffinityType"] == "required"


def _api_connections(manifests: tuple[dict[str, Any], ...]) -> int:
    """pods (HPA maximum + surge) x workers (one) x (pool + overflow): what the API may open."""
    deployment = one(manifests, "Deployment")
    config = config_map_data(manifests, deployment)
    _, most = replica_range(manifests)
    pods = most + deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    return pods * (int(config["DB_POOL_SIZE"]) + int(config["DB_MAX_OVERFLOW"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_connections_fit_in_what_each_pooler_accepts(overlay: str) -> None:
    manifests = _overlay(overlay)

    for name in ("branch-loans-db-pooler-rw", "branch-loans-db-pooler-ro"):
        pooler = one(manifests, "Pooler", name)["spec"]
        accepted = pooler["instances"] * int(pooler["pgbouncer"]["parameters"]["max_client_conn"])
        assert _api_connections(manifests) <= accepted


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pooler_connections_fit_in_postgres_max_connections(overlay: str) -> None:
    # The API's pools meet PgBouncer; only the poolers' server connections (per instance, per
    # database and user) meet Postgres: the rw pooler's on the primary, the ro one's on each
    # replica, which has the primary's max_connections.
    manifests = _overlay(overlay)
    migration = 2  # the Job, straight to the primary: one maintenance connection, one Alembic
    parameters = one(manifests, "Cluster")["spec"]["postgresql"]["parameters"]
    room = int(parameters["max_connections"]) - POSTGRES_RESERVED_CONNECTIONS

    for name in ("branch-loans-db-pooler-rw", "branch-loans-db-pooler-ro"):
        pooler = one(manifests, "Pooler", name)["spec"]
        server = pooler["instances"] * int(pooler["pgbouncer"]["parameters"]["default_pool_size"])
        assert pooler["pgbouncer"]["poolMode"] == "transaction"
        assert server + migration <= room
    assert config_map_data(manifests, one(manifests, "Deployment"))["DB_TRANSACTION_POOLER"] == (
        "true"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_poolers_lead_to_the_primary_and_to_the_replicas(overlay: str) -> None:
    manifests = _overlay(overlay)

    kinds = {
        name: one(manifests, "Pooler", name)["spec"]["type"]
        for name in ("branch-loans-db-pooler-rw", "branch-loans-db-pooler-ro")
    }
    assert kinds == {"branch-loans-db-pooler-rw": "rw", "branch-loans-db-pooler-ro": "ro"}
    for pooler in find(manifests, "Pooler"):
        assert pooler["spec"]["cluster"]["name"] == "branch-loans-db"


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_value_is_committed(target: str) -> None:
    manifests = render(target)

    assert find(manifests, "Secret") == []
    for workload in workloads(manifests):
        for container in containers(workload):
            for variable in container.get("env", []):
                assert "value" not in variable or not re.search(r"://|password", variable["value"])
