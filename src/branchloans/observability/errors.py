"""Error tracking with Sentry, on only when SENTRY_DSN is set.

Without a DSN nothing of sentry_sdk is imported, so nothing can be sent. With one, every
unhandled exception of a request (the 500s) is reported with the environment, the release,
the request id and the trace id; 4xx answers are not reported; and what could carry a secret
(API keys, the Authorization header, cookies, request bodies, local variables) never leaves.
"""

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from branchloans import __version__
from branchloans.config import Settings
from branchloans.request_ids import current_request_id

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

# Headers that authenticate a caller: the SDK's EventScrubber knows most names, not all forms.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
FILTERED = "[Filtered]"


class ErrorTrackingSettings(BaseSettings):
    """Sentry's own environment variables; its settings live apart from the application's so
    that turning error tracking on touches nothing else."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    sentry_dsn: SecretStr | None = None
    sentry_release: str | None = None


def scrub(event: "Event", hint: "Hint") -> "Event":
    """Tag the request id and drop what could hold a secret (the SDK's `before_send`)."""
    request_id = current_request_id()
    if request_id is not None:
        event.setdefault("tags", {})["request_id"] = request_id
    request: dict[str, Any] | None = event.get("request")
    if request is not None:
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers") or {}
        for name in headers:
            if name.lower() in SECRET_HEADERS:
                headers[name] = FILTERED
    return event


class ErrorReportingMiddleware:
    """Reports an exception escaping the routes, then lets it go on to the outer middleware
    that answers the 500 (which swallows it, so the SDK's own middleware never sees it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as error:
            # Imported only once error tracking is on.
            import sentry_sdk
            from sentry_sdk.utils import event_from_exception

            client = sentry_sdk.get_client()
            event, hint = event_from_exception(
                error, client.options, mechanism={"type": "asgi", "handled": False}
            )
            sentry_sdk.capture_event(event, hint=hint)
            raise


def install_error_tracking(app: FastAPI, settings: Settings) -> None:
    """Start Sentry when SENTRY_DSN is set and report the app's unhandled exceptions."""
    tracking = ErrorTrackingSettings()
    if tracking.sentry_dsn is None:
        return
    # Imported here, not at the top: without a DSN the SDK is never loaded.
    import sentry_sdk
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    server_errors = set(range(500, 600))
    sentry_sdk.init(
        dsn=tracking.sentry_dsn.get_secret_value(),
        environment=settings.app_env.value,
        release=tracking.sentry_release or f"branchloans@{__version__}",
        # No user, cookies, bodies or frame variables at all; headers through the denylist.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "stack_frame_variables": False,
        },
        before_send=scrub,
        auto_enabling_integrations=False,
        integrations=[
            StarletteIntegration(failed_request_status_codes=server_errors),
            FastApiIntegration(failed_request_status_codes=server_errors),
        ],
    )
    app.add_middleware(ErrorReportingMiddleware)
