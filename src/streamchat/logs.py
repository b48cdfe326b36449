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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import RequestLine, request_line_var

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
_VALID_TRACE_ID = re.compile(r"[0-9A-Za-z._-]{1,64}")
# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: a client
# could otherwise write lines of its own into the log (or hide the end of ours).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

LogFormat = Literal["text", "json"]
# Who asked, as the access line shows them: (uid, key prefix), "-" where unknown.
Who = Callable[[Scope], tuple[str, str]]

log = logging.getLogger("streamchat.access")


def escape(text: str) -> str:
    """`text` with control characters written as `\\xNN` / `\\uNNNN`, for one log line."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = trace_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, trace_id, message, and a record's
    `fields` (the access line's)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "trace_id": getattr(record, "trace_id", "-"),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "info", fmt: LogFormat = "text") -> None:
    """Log to stderr as `time [LEVEL] {trace_id} logger: message`, or as JSON lines."""
    handler = logging.StreamHandler()
    handler.addFilter(TraceIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
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


def _nobody(scope: Scope) -> tuple[str, str]:
    return "-", "-"


class TraceMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware, which breaks streaming): trace id and access log.

    `who` tells the uid and key prefix of a request once it has been handled (the admission
    seam knows them; this module sits below it).
    """

    def __init__(self, app: ASGIApp, who: Who = _nobody) -> None:
        self.app = app
        self.who = who

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = _incoming_trace_id(scope) or uuid.uuid4().hex
        token = trace_id_var.set(trace_id)
        line = RequestLine()
        line_token = request_line_var.set(line)
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
            self._access(scope, status, line, time.perf_counter() - started)
            request_line_var.reset(line_token)
            trace_id_var.reset(token)

    def _access(self, scope: Scope, status: int, line: RequestLine, seconds: float) -> None:
        """The request line of DESIGN.md §9; everything the client sent is escaped."""
        uid, key_prefix = self.who(scope)
        ttft = "-" if line.ttft is None else f"{line.ttft * 1000:.1f}ms"
        tokens = "-" if line.tokens is None else str(line.tokens)
        fields = {
            "client": _client(scope),
            "method": escape(scope["method"]),
            "path": escape(scope["path"]),
            "status": status,
            "uid": uid,
            "key_prefix": escape(key_prefix),
            "ttft_ms": None if line.ttft is None else round(line.ttft * 1000, 1),
            "tokens": line.tokens,
            "model": line.model,  # the model that answered
            "tried": line.tried,  # models tried for it (more than 1: fallbacks)
            "duration_ms": round(seconds * 1000, 1),
            "user_agent": escape(_header(scope, b"user-agent")),
        }
        model = (
            "" if line.tried is None else f" model={escape(line.model or '-')} tried={line.tried}"
        )
        log.info(
            '%s "%s %s" %d uid=%s key=%s ttft=%s tokens=%s%s %.1fms "%s"',
            fields["client"], fields["method"], fields["path"], status, uid,
            fields["key_prefix"], ttft, tokens, model, seconds * 1000, fields["user_agent"],
            extra={"fields": fields},
        )  # fmt: skip


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return "-"


def _incoming_trace_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"trace-id":
            candidate: str = value.decode("latin-1")
            return candidate if _VALID_TRACE_ID.fullmatch(candidate) else None
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
