"""`podman stop` on the api container: the request in flight is answered, then it exits 0
within compose.yaml's stop_grace_period."""

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.container.conftest import RunningApi, Stack, create_api_key, start_api
from tests.container.engine import podman, remove_container
from tests.support import SERVER_URL, RowLock

LOAN = {"borrower_id": "usr_container_stop", "amount": 300, "currency": "KES"}


@pytest.fixture
def stopping_api(stack: Stack, api: RunningApi) -> Iterator[RunningApi]:
    """A second api container of the same service, for this test to stop."""
    name = f"branchloans-test-{stack.run_id}-api-stop"
    try:
        yield start_api(stack, name, stack.services()["api"])
    finally:
        remove_container(name)


def test_stop_answers_the_request_in_flight_then_exits_0_within_the_grace_period(
    stack: Stack, stopping_api: RunningApi
) -> None:
    grace = int(podman("inspect", "--format", "{{.Config.StopTimeout}}", stopping_api.name))
    key = create_api_key(stack, "container-stop-test")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=stopping_api.url, headers=headers, timeout=grace) as http:
        created = http.post("/api/loans", json=LOAN)
        assert created.status_code == 201, created.text
        loan_id = created.json()["id"]
        lock = RowLock(SERVER_URL.rsplit("/", 1)[0] + f"/{stack.database}", loan_id)
        in_flight: dict[str, httpx.Response] = {}
        approving = threading.Thread(
            target=lambda: in_flight.setdefault(
                "approve", http.post(f"/api/loans/{loan_id}/approve")
            )
        )
        approving.start()
        time.sleep(0.5)  # the approval now waits on the row lock, inside the container

        started = time.monotonic()
        stopping = threading.Thread(target=podman, args=("stop", stopping_api.name))
        stopping.start()
        time.sleep(3)  # SIGTERM delivered, readiness drained, the listener closed
        still_waiting = approving.is_alive()
        lock.release()
        approving.join(timeout=grace)
        stopping.join(timeout=grace + 5)
        elapsed = time.monotonic() - started
    print(f"\npodman stop took {elapsed:.1f} s (grace period {grace} s)")  # noqa: T201
    state = podman(
        "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", stopping_api.name
    )

    assert still_waiting, "the approval should have been in flight when the stop began"
    assert in_flight["approve"].status_code == 200
    assert in_flight["approve"].json()["status"] == "approved"
    assert state.split() == ["exited", "0"]
    assert elapsed < grace
