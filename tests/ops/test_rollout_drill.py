"""The rollout drill, run for real at a small size: nginx with the deploy template in front of
two `branchloans serve` processes, each replaced in turn while traffic flows."""

from collections.abc import Iterator

import pytest

from ops.rollout_drill import DrillReport, RolloutDrill
from tests.deploy.kube import containers, one, pod_spec, render
from tests.support import SERVER_URL

# Small enough to keep the suite quick; `make rollout-drill` runs a minute at 200 requests/s.
SECONDS = 6
RATE = 40
CLIENTS = 4


@pytest.fixture(scope="module")
def drill() -> Iterator[tuple[RolloutDrill, DrillReport]]:
    """One drill for the module."""
    with RolloutDrill(
        seconds=SECONDS, rate=RATE, clients=CLIENTS, max_requests=20_000, server_url=SERVER_URL
    ) as rollout:
        report = rollout.run()
        print(report.line(), report.details(), sep="\n")  # noqa: T201 - the drill's figures
        yield rollout, report


def test_no_request_fails_while_both_instances_are_replaced(
    drill: tuple[RolloutDrill, DrillReport],
) -> None:
    rollout, report = drill

    assert rollout.tally.failures == []
    assert report.replaced == 2
    assert report.requests > 0
    assert report.line().startswith(f"{report.requests} requests, 0 failed,")


def test_every_acknowledged_create_is_stored_once(drill: tuple[RolloutDrill, DrillReport]) -> None:
    rollout, report = drill

    assert report.problems == ()
    assert report.creates == len(rollout.tally.acknowledged) > 0
    assert report.line().endswith("every acknowledged create present once")


def test_nginx_passed_requests_on_while_an_instance_was_down(
    drill: tuple[RolloutDrill, DrillReport],
) -> None:
    _, report = drill

    # The drill is no drill if nothing failed over: each stop sent requests elsewhere.
    assert report.passed_on > 0


def test_each_instance_exited_within_the_pods_termination_budget(
    drill: tuple[RolloutDrill, DrillReport],
) -> None:
    _, report = drill
    deployment = one(render("base"), "Deployment", "branch-loans-api")
    (api,) = containers(deployment)
    pre_stop = api["lifecycle"]["preStop"]["sleep"]["seconds"]

    # What is left of terminationGracePeriodSeconds after the preStop sleep, before SIGKILL.
    assert report.longest_stop < pod_spec(deployment)["terminationGracePeriodSeconds"] - pre_stop
