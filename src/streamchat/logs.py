"""Logging with a trace id per request, and the middleware that assigns it.

Every log line carries `{trace_id}` as GoFrame's do; the id is also the `Trace-Id` response
header. Tasks started while handling a request (the generation) inherit it, because asyncio
copies context variables into new tasks.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
# What a client sends may hold a line break (`%0A` in a path): written as it is, it would
# forge a log line. Control characters, the Unicode line breaks, quotes and backslashes.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029"\\]')
_VALID_TRACE_ID = re.compile(r"[0-9A-Za-z._-]{1,64}")

log = logging.getLogger("streamchat.access")


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = trace_id_var.get()
        return True


def configure_logging(level: str = "info") -> None:
    """Log to stderr as `time [LEVEL] {trace_id} logger: message`."""
    handler = logging.StreamHandler()
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s [%(levelname)s] {%(trace_id)s} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic (1.20) announces each of its autogenerate plugins at INFO when it is imported:
    # seven lines at every start that say nothing about this server.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # TraceMiddleware writes the access log (with the duration); uvicorn's would be a second
    # line per request, and a tenth of the time of a short stream.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False


class TraceMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware, which breaks streaming): trace id and access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = _incoming_trace_id(scope) or uuid.uuid4().hex
        token = trace_id_var.set(trace_id)
        header = (b"trace-id", trace_id.encode())
        started = time.perf_counter()
        status = 0

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            log.info(
                '%s "%s %s" %d %.1fms',
                _client(scope),
                escape(scope["method"]),
                escape(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
            trace_id_var.reset(token)


def escape(text: str) -> str:
    """`text` as one log line: unsafe characters as `\\xNN` / `\\uNNNN` escapes."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _incoming_trace_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"trace-id":
            candidate: str = value.decode("latin-1")
            return candidate if _VALID_TRACE_ID.fullmatch(candidate) else None
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
