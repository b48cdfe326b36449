"""`streamchat serve`, `streamchat chat "…"` and `streamchat db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import sys
from typing import TYPE_CHECKING

import aiohttp
import orjson

from .config import Settings
from .listeners import LISTENERS, ListenError, bind_listeners
from .logs import configure_logging
from .model_files import LocalModelError
from .providers.local import prepare
from .sse import SSEDecoder

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("streamchat")

# Connections waiting to be accepted, per listening socket. uvicorn's default, 2048, overflowed
# when 5000 clients arrived within two seconds (every overflow a reset connection); the kernel
# caps the value at net.core.somaxconn (4096 by default since Linux 5.4).
_LISTEN_BACKLOG = 65535
# The exit code of a server whose start-up failed (uvicorn's).
_STARTUP_FAILURE = 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamchat` command."""
    parser = argparse.ArgumentParser(prog="streamchat", description="Streaming AI chat server.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (STREAMCHAT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (STREAMCHAT_PORT, default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (default 1); set STREAMCHAT_REDIS_URL so "
        "that they share streams too",
    )

    chat = commands.add_parser("chat", help="send a message and print the answer as it streams")
    chat.add_argument("message")
    chat.add_argument("--uid", type=int, default=1)
    chat.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    chat.add_argument("--conversation", help="continue this conversation id")
    chat.add_argument("--model")
    chat.add_argument("--lang", default="en", help="language of error messages (en, zh)")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser(
        "upgrade", help="migrate STREAMCHAT_DATABASE_URL to the latest revision (serve does too)"
    )

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.host, args.port, args.workers)
    if args.command == "db":
        return asyncio.run(_db_upgrade())
    return asyncio.run(_chat(args))


def _serve(host: str | None, port: int | None, workers: int) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # The command line overrides the environment; workers build their settings from it.
    if host is not None:
        os.environ["STREAMCHAT_HOST"] = host
    if port is not None:
        os.environ["STREAMCHAT_PORT"] = str(port)
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.provider == "local" and not _prepare_local_model(settings):
        return 2
    if workers > 1 and not settings.redis_url:
        print(
            f"warning: {workers} workers without STREAMCHAT_REDIS_URL: each worker keeps its "
            "own streams, so resuming or cancelling a stream works only on the worker that "
            "started it (others answer 404); set STREAMCHAT_REDIS_URL to share streams",
            file=sys.stderr,
        )
    _raise_open_file_limit()
    try:
        sockets = bind_listeners(settings.host, settings.port, LISTENERS, _LISTEN_BACKLOG)
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    config = uvicorn.Config(
        "streamchat.cli:worker_app",
        factory=True,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        backlog=_LISTEN_BACKLOG,  # the event loop listens on the sockets again with it
    )
    log.info(
        "listening on http://%s:%d (%d worker%s)",
        settings.host,
        sockets[0].getsockname()[1],
        workers,
        "s" if workers > 1 else "",
    )
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            Multiprocess(config, sockets=sockets).run()
            return 0
        server.run(sockets=sockets)
    except KeyboardInterrupt:  # as uvicorn.run: a second Ctrl+C during shutdown
        pass
    finally:
        for sock in sockets:
            sock.close()
    return 0 if server.started else _STARTUP_FAILURE


async def _db_upgrade() -> int:
    from .store import StoreUnavailable, create_engine, migrate

    settings = Settings()
    configure_logging(settings.log_level)
    engine = create_engine(
        settings.database_url,
        schema=settings.database_schema,
        timeout=settings.database_timeout_seconds,
    )
    try:
        revision = await migrate(engine)
    except StoreUnavailable as exc:
        print(f"error: cannot migrate the database: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"database at revision {revision}")
    return 0


def _prepare_local_model(settings: Settings) -> bool:
    """Assemble and check the model before serving: a broken one is one line, not a traceback."""
    try:
        prepare(settings)
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _raise_open_file_limit() -> None:
    """Allow as many open files as the hard limit does: every stream holds two sockets, and
    the usual soft limit of 1024 would stop the server near 500 streams (Go's runtime does
    the same at start-up)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):  # some systems cap below the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_app() -> FastAPI:
    """The app of one server process, with logging set up there too.

    With `--workers N` uvicorn starts fresh processes that import this factory: logging
    configured in the parent does not reach them.
    """
    from .app import create_app
    from .gc_tuning import tune_for_serving

    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_for_serving()
    return app


async def _chat(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"uid": args.uid, "message": args.message}
    if args.conversation:
        body["conversation_id"] = args.conversation
    if args.model:
        body["model"] = args.model
    url = args.url.rstrip("/") + "/api/chat"
    headers = {"Content-Type": "application/json", "Accept-Language": args.lang}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=orjson.dumps(body), headers=headers) as response,
        ):
            if response.status != 200:
                return _print_refusal(response.status, await response.read())
            return await _print_stream(response)
    except aiohttp.ClientConnectorError as exc:
        print(
            f"error: cannot connect to {args.url} ({exc.os_error.strerror}); "
            "is the server running (streamchat serve)?",
            file=sys.stderr,
        )
    except aiohttp.ClientError as exc:
        print(f"error: the connection to {args.url} failed: {exc}", file=sys.stderr)
    return 2


def _print_refusal(status: int, body: bytes) -> int:
    try:
        message = orjson.loads(body)["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500]
    print(f"error: HTTP {status}: {message}", file=sys.stderr)
    return 1


async def _print_stream(response: aiohttp.ClientResponse) -> int:
    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        for message in decoder.feed(chunk):
            event = orjson.loads(message.data)
            if event["type"] == "delta":
                sys.stdout.write(event["delta"])
                sys.stdout.flush()
            elif event["type"] == "error":
                print(f"\nerror: {event['message']} ({event['code']})", file=sys.stderr)
                return 1
            elif event["type"] == "end":
                print()
                return 0
    print("\nerror: the stream ended before its end event", file=sys.stderr)
    return 1
