"""`streamchat serve`, `streamchat chat "…"` and `streamchat db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ..config import Settings
from ..logs import configure_logging
from . import keys as keys_cli


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
    chat.add_argument("--uid", type=int, help="the user (default 1 without a key)")
    chat.add_argument(
        "--key-stdin",
        action="store_true",
        help="read the API key from the first line of standard input (else STREAMCHAT_API_KEY)",
    )
    # Refused with a reason: a key on the command line is in every user's process list.
    chat.add_argument("--key", help=argparse.SUPPRESS)
    chat.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    chat.add_argument("--conversation", help="continue this conversation id")
    chat.add_argument("--model")
    chat.add_argument("--lang", default="en", help="language of error messages (en, zh)")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser(
        "upgrade", help="migrate STREAMCHAT_DATABASE_URL to the latest revision (serve does too)"
    )

    keys_cli.add_parser(commands)

    args = parser.parse_args(argv)
    if args.command == "serve":
        from ..server.serve import serve as run_server

        return run_server(args.host, args.port, args.workers)
    if args.command == "db":
        return asyncio.run(_db_upgrade())
    if args.command == "keys":
        return asyncio.run(keys_cli.run(args))
    if args.key is not None:
        parser.error(
            "--key would show the key in the process list: set STREAMCHAT_API_KEY, or pipe "
            "it with --key-stdin"
        )
    args.key = _read_key(args.key_stdin)
    # The client's HTTP library is imported only here: a server process never loads it.
    from .chat import chat as run_chat

    return asyncio.run(run_chat(args))


def _read_key(from_stdin: bool) -> str | None:
    """The chat's API key: the first line of standard input, or STREAMCHAT_API_KEY."""
    if from_stdin:
        return sys.stdin.readline().strip() or None
    return os.environ.get("STREAMCHAT_API_KEY") or None


async def _db_upgrade() -> int:
    from ..store import StoreUnavailable, create_engine, migrate

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
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
