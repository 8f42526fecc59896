"""Authentication before anything reads a body (`AuthenticatedRoute`), the key's limits, and
the dependencies that demand scopes."""

from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from functools import cache
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from branchloans.auth.metrics import key_limit_metrics
from branchloans.auth.models import Scope
from branchloans.auth.quotas import KeyQuotas, TooManyRequestsError
from branchloans.auth.service import ANONYMOUS, KeyCache, Principal, authenticate_key
from branchloans.observability import tracing
from branchloans.problems import ProblemError
from branchloans.routing import DecimalJSONRoute
from branchloans.state import AppState, app_state, get_database

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
    settings = state.settings
    return KeyCache(settings.api_key_cache_seconds, settings.api_key_unknown_cache_seconds)


@cache  # one set of counters per application
def key_quotas(state: AppState) -> KeyQuotas:
    """The application's rate and concurrency limits per key."""
    return KeyQuotas(state.settings)


async def _caller(request: Request, state: AppState) -> Principal:
    """The caller, from `Authorization: Bearer <key>`; anonymous only while auth is off."""
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not key:
        if not state.settings.requires_auth:
            return ANONYMOUS
        raise UnauthenticatedError("Send an API key: Authorization: Bearer <key>.", _REALM)
    # Before FastAPI resolves any dependency, so the database is asked for as one would be,
    # through the app's dependency overrides (a test's transaction takes its place there).
    database_of = request.app.dependency_overrides.get(get_database, get_database)
    principal = await authenticate_key(await database_of(request), key_cache(state), key)
    if principal is None:
        raise UnauthenticatedError(
            "The API key is unknown or revoked.", f'{_REALM}, error="invalid_token"'
        )
    return principal


# The caller of the request being handled, set by `AuthenticatedRoute` before FastAPI resolves
# any dependency (they run in the request's context), read by `requires`.
_CALLER: ContextVar[Principal] = ContextVar("branchloans_caller")


async def _within_limits(
    state: AppState,
    key_name: str,
    handler: Callable[[Request], Coroutine[Any, Any, Response]],
    request: Request,
) -> Response:
    """The handler's response, run as one of the key's requests (429 beyond its limits)."""
    tracing.set_attribute(tracing.API_KEY_NAME, key_name)  # its name, never the key
    quotas = key_quotas(state)
    try:
        await quotas.admit(key_name)
    except TooManyRequestsError as refusal:
        key_limit_metrics(state.metrics).refusals.labels(refusal.limit).inc()
        raise
    try:
        return await handler(request)
    finally:
        quotas.release(key_name)


class AuthenticatedRoute(DecimalJSONRoute):
    """An API route that knows its caller, and holds the key to its limits, before anything
    reads the body: FastAPI reads and parses a body before it runs any dependency, so a
    keyless request with a large or malformed body would cost that work and get a 400."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the route's handler in authentication and the key's limits."""
        handler = super().get_route_handler()

        async def authenticated_handler(request: Request) -> Response:
            state = app_state(request.app)
            principal = await _caller(request, state)
            token = _CALLER.set(principal)
            try:
                if principal.name is None:  # anonymous, with auth off: no key to limit
                    return await handler(request)
                return await _within_limits(state, principal.name, handler, request)
            finally:
                _CALLER.reset(token)

        return authenticated_handler


@cache
def requires(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the request through only when its caller, whom
    `AuthenticatedRoute` found, has `scope`; it returns the caller.

    The same function for the same scope, so FastAPI runs it once however often it is named.
    """

    async def authorize(
        # Named so that OpenAPI documents the scheme; the route checked the key itself.
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = _CALLER.get()
        if scope not in principal.scopes:
            raise InsufficientScopeError(scope)
        return principal

    return authorize
