"""A request body limit that answers 413 as problem+json before the body is buffered."""

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
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = ProblemResponse(
                problem_body(
                    scope["path"],
                    413,
                    title="Content Too Large",
                    detail=_too_large_detail(self.max_bytes),
                ),
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return

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
