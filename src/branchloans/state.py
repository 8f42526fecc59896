"""What the running application holds: one typed object, built when the app starts."""

import threading
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from branchloans.config import Settings
from branchloans.db import Database, Queries
from branchloans.observability.metrics import Metrics
from branchloans.replica import ReadReplica, ReplicaReads


# eq=False: compared and hashed by identity, so a domain can key its own per-app parts on it.
@dataclass(frozen=True, eq=False)
class AppState:
    """The settings, the database (and its read replica, if any) and the metrics of one
    application, and its drain flag."""

    settings: Settings
    database: Database
    metrics: Metrics
    # Set on SIGTERM: readiness answers 503 while requests in flight finish.
    draining: threading.Event
    schema_head: str | None
    known_revisions: frozenset[str]
    replica: ReadReplica | None = None


def app_state(app: FastAPI) -> AppState:
    """The state of a started app."""
    state: AppState = app.state.branchloans
    return state


# The dependencies are coroutines, so FastAPI calls them in the event loop rather than in a
# worker thread.
async def get_state(request: Request) -> AppState:
    """The state of the app serving the request."""
    return app_state(request.app)


StateDep = Annotated[AppState, Depends(get_state)]


async def get_database(request: Request) -> Database:
    """The application's database handle (a test may put its own transaction in its place)."""
    return app_state(request.app).database


DatabaseDep = Annotated[Database, Depends(get_database)]


# Headers whose answer depends on the loan's current version: such a read sees the primary.
_CONDITIONAL_HEADERS = frozenset({"if-match", "if-none-match"})


async def get_read_database(request: Request, primary: DatabaseDep) -> Queries:
    """Where a read that tolerates staleness runs: the replica while it keeps up, else the
    primary. The one place that chooses (docs/api.md, consistency).

    A read sent with If-Match or If-None-Match compares versions, so it reads the primary.
    """
    replica = app_state(request.app).replica
    if (
        replica is None
        or not replica.in_use
        or not _CONDITIONAL_HEADERS.isdisjoint(request.headers.keys())
    ):
        return primary
    return ReplicaReads(replica, primary)


ReadDatabaseDep = Annotated[Queries, Depends(get_read_database)]
