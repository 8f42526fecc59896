"""Security headers on every response, set by the app itself as well as by nginx."""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_EVERYWHERE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# JSON needs no script, style or frame; the documentation pages (/docs, /redoc) load theirs.
_API_ONLY = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}
_DOCUMENTATION = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    """Add the headers a browser needs to treat responses safely; never overrides a route's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` to add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = dict(_EVERYWHERE)
        if not scope["path"].startswith(_DOCUMENTATION):
            extra.update(_API_ONLY)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
