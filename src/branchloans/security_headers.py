"""Security headers on every response, set by the app itself as well as by nginx."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_EVERYWHERE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# JSON needs no script, style or frame.
_API_ONLY = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}
# The documentation pages (/docs, /redoc) load everything from the service's own origin.
# ReDoc's styled-components adds <style> rules at run time, hence inline styles; its search
# runs in a blob: worker; Swagger UI draws its icons as data: images.
_DOCUMENTATION_ONLY = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "worker-src 'self' blob:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}
_DOCUMENTATION = ("/docs", "/redoc")


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


_RAW_API = _raw({**_EVERYWHERE, **_API_ONLY})
_RAW_DOCUMENTATION = _raw({**_EVERYWHERE, **_DOCUMENTATION_ONLY})


class SecurityHeadersMiddleware:
    """Add the headers a browser needs to treat responses safely; never overrides a route's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` to add the headers to the response start."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = _RAW_DOCUMENTATION if scope["path"].startswith(_DOCUMENTATION) else _RAW_API

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in extra if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
