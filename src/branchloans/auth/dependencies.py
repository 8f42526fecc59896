"""FastAPI dependencies that authenticate the caller and demand scopes."""

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from branchloans.auth.models import Scope
from branchloans.auth.service import ANONYMOUS, KeyCache, Principal, authenticate_key
from branchloans.db import Database
from branchloans.observability import tracing
from branchloans.problems import ProblemError
from branchloans.state import AppState, DatabaseDep, app_state

_REALM = 'Bearer realm="branchloans"'

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `branchloans api-keys create`: `Authorization: Bearer blk_...`.",
)


class UnauthenticatedError(ProblemError):
    """No usable API key came with the request."""

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(
            401,
            detail,
            slug="unauthenticated",
            title="Unauthenticated",
            headers={"WWW-Authenticate": challenge},
        )


class InsufficientScopeError(ProblemError):
    """The key is valid but may not do this."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(
            403,
            f"This API key lacks the scope {scope}.",
            slug="insufficient-scope",
            title="Insufficient scope",
            headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'},
            required_scope=scope.value,
        )


@cache  # one cache of keys per application
def key_cache(state: AppState) -> KeyCache:
    """The application's cache of API keys."""
    return KeyCache(state.settings.api_key_cache_seconds)


async def _caller(
    state: AppState, database: Database, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller, from `Authorization: Bearer <key>`; anonymous only while auth is off."""
    if credentials is None:
        if not state.settings.requires_auth:
            return ANONYMOUS
        raise UnauthenticatedError("Send an API key: Authorization: Bearer <key>.", _REALM)
    principal = await authenticate_key(database, key_cache(state), credentials.credentials)
    if principal is None:
        raise UnauthenticatedError(
            "The API key is unknown or revoked.", f'{_REALM}, error="invalid_token"'
        )
    return principal


@cache
def requires(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and lets the request through only with
    `scope`; it returns the caller.

    One dependency rather than a chain of them: FastAPI's cost per request grows with each.
    The same function for the same scope, so FastAPI runs it once however often it is named.
    """

    async def authorize(
        request: Request,
        database: DatabaseDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        # The state read directly: a dependency of its own costs every request.
        principal = await _caller(app_state(request.app), database, credentials)
        if principal.name is not None:  # the key's name, never the key
            tracing.set_attribute(tracing.API_KEY_NAME, principal.name)
        if scope not in principal.scopes:
            raise InsufficientScopeError(scope)
        return principal

    return authorize
