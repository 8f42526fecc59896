"""Limits on what a request may send, answered as problem+json before it is read: a body
over the size limit (413), a header over its length (431)."""

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchloans.problems import problem_body
from branchloans.responses import ProblemResponse


def _too_large_detail(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."


class BodyTooLargeError(HTTPException):
    """The body grew past the limit while it was being read.

    An HTTPException, because FastAPI turns any other error raised while it reads a body into 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_detail(limit))


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: at once when Content-Length says so, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a receive channel that counts body bytes."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            detail = _too_large_detail(self.max_bytes)
            body = problem_body(scope["path"], 413, title="Content Too Large", detail=detail)
            response = ProblemResponse(body, status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


MAX_HEADER_BYTES = 8192
"""Bytes any one request header (name and value) may have: what nginx's default buffers take."""
# A header name quoted in the problem is cut to this many characters.
_QUOTED_NAME = 64


class HeaderLimitMiddleware:
    """Refuse a request with any header over `MAX_HEADER_BYTES` with 431 problem+json naming
    it, before anything is parsed or looked up (an API key, an ETag, a request id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on unless one of its headers is too long."""
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if len(name) + len(value) > MAX_HEADER_BYTES:
                    response = _too_long(scope["path"], name.decode("latin-1")[:_QUOTED_NAME])
                    return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _too_long(path: str, name: str) -> ProblemResponse:
    body = problem_body(
        path,
        431,
        detail=f"The {name} header is longer than the {MAX_HEADER_BYTES} bytes accepted.",
        errors=[
            {
                "field": name,
                "location": "header",
                "message": f"{name} must be at most {MAX_HEADER_BYTES} bytes long",
                "type": "too_long",
            }
        ],
    )
    return ProblemResponse(body, status_code=431)
