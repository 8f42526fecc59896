"""The Deployment rolls out as the rollout drill (ops/rollout_drill.py, tests/ops) proved safe:
the pods drain with the settings the drill's instances had, within the termination budget,
a new pod takes traffic only once /readiness says so, and the Ingress resends what the
project's nginx template resends."""

import re
from typing import Any

import pytest

from ops.nginx_config import NGINX_TEMPLATE
from ops.rollout_drill import DRAIN_SETTINGS, pod_drain_settings
from tests.deploy.kube import OVERLAYS, config_map_data, containers, one, pod_spec, render

# After the drain, the API refuses new handshakes this long before it closes its socket
# (branchloans.shutdown._SETTLE_SECONDS), rounded up.
SETTLE_SECONDS = 1


def _deployment(overlay: str) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    manifests = render(f"overlays/{overlay}")
    return manifests, one(manifests, "Deployment", "branch-loans-api")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_drain_with_the_settings_the_drill_ran(overlay: str) -> None:
    manifests, deployment = _deployment(overlay)
    config = config_map_data(manifests, deployment)

    assert {name: config[name] for name in DRAIN_SETTINGS} == pod_drain_settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pre_stop_sleep_drain_and_grace_fit_the_termination_grace_period(
    overlay: str,
) -> None:
    manifests, deployment = _deployment(overlay)
    config = config_map_data(manifests, deployment)
    (api,) = containers(deployment)
    pre_stop = api["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(config["SHUTDOWN_DRAIN_SECONDS"])
    grace = float(config["SHUTDOWN_GRACE_SECONDS"])

    assert drain > 0, "without a drain, idle keep-alive connections close under the proxy"
    needed = pre_stop + drain + SETTLE_SECONDS + grace
    assert needed <= pod_spec(deployment)["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_rollout_keeps_every_ready_pod_until_its_replacement_is_ready(overlay: str) -> None:
    _, deployment = _deployment(overlay)
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    (api,) = containers(deployment)
    readiness = api["readinessProbe"]

    # The drill lost no request with one of two instances down; Kubernetes does better and
    # keeps them all, stopping an old pod only once a new one passes /readiness.
    assert rolling["maxUnavailable"] == 0
    assert rolling["maxSurge"] >= 1
    assert readiness["httpGet"]["path"] == "/readiness"
    assert readiness["httpGet"]["port"] == "http"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_resends_what_the_nginx_template_resends(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    annotations = one(manifests, "Ingress")["metadata"]["annotations"]
    template = NGINX_TEMPLATE.read_text()
    rules = re.findall(r"proxy_next_upstream ([^;]+);", template)
    # The template's rule for every request but keyed POSTs.
    (everything,) = [rule for rule in rules if "non_idempotent" not in rule]

    resent = annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"]
    assert resent.split() == everything.split()
    assert "non_idempotent" not in resent
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-next-upstream-tries"]) >= 2
