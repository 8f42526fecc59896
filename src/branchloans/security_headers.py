"""Security headers on every response, set by the app itself as well as by nginx."""

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


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


_RAW_EVERYWHERE = _raw(_EVERYWHERE)
_RAW_API = _raw({**_EVERYWHERE, **_API_ONLY})


class SecurityHeadersMiddleware:
    """Add the headers a browser needs to treat responses safely; never overrides a route's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` to add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _RAW_EVERYWHERE if scope["path"].startswith(_DOCUMENTATION) else _RAW_API

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in extra if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
