"""The guard in front of every route: body size (declared or chunked), media type, encoding, and a
last-resort 500. A plain ASGI middleware, so the body is checked before FastAPI parses it and an
unexpected error still answers in the problem shape without closing the keep-alive connection."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_bytes
from app.errors import PROBLEM_MEDIA_TYPE, Problem, problem

log = logging.getLogger(__name__)

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class RequestGuard:
    """Reads the body of POST/PUT/PATCH up to ``max_bytes`` (413 beyond it, also when sent chunked),
    requires a JSON media type (415 naming the one received) and UTF-8 (400), then replays the body to
    the app. The body would be read into memory by the JSON parser anyway, so buffering costs nothing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if scope["method"].encode() in _BODY_METHODS:
                early = await self._check_body(scope, receive)
                if isinstance(early, Problem):
                    await _send_problem(tracking_send, early)
                    return
                receive = _replay(early, receive)
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_problem(
                    send, problem(500, "internal error; the request changed nothing. It was logged.")
                )

    async def _check_body(self, scope: Scope, receive: Receive) -> bytes | Problem:
        headers = dict(scope.get("headers") or [])
        too_big = problem(
            413, f"request body exceeds {self.max_bytes} bytes; split the items into several batches"
        )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return too_big
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return too_big
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not body:
            return body
        content_type = headers.get(b"content-type", b"")
        if not _is_json(content_type):
            named = content_type.decode("latin-1") or "none"
            return problem(415, f"content-type {named!r} is not supported; send application/json")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return problem(400, f"the request body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON")
        return body


def _replay(body: bytes, upstream: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body, only the server knows when the client goes away.
        return await upstream()

    return receive


async def _send_problem(send: Send, body: Problem) -> None:
    payload = problem_bytes(body)
    await send(
        {
            "type": "http.response.start",
            "status": body.status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
