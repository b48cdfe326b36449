"""`streamchat keys create | list | revoke`: API keys for STREAMCHAT_AUTH=keys.

Exit codes scripts can rely on: 0 done, 1 no such key (or already revoked), 2 bad usage
(argparse's), 3 the database failed. `create` prints the key alone on stdout (once: only its
hash is kept) and what it is for on stderr, so `KEY=$(streamchat keys create --uid 7)` works.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from ..access.keys import display_prefix, key_hash, new_key
from ..config import Settings
from ..providers.catalog import CatalogError, load_catalog
from ..store import StoreUnavailable, create_engine, migrate
from ..store.keys import KeyLimits, KeyRecord, KeyStore

NOT_FOUND = 1
USAGE = 2
DATABASE_FAILED = 3
MAX_UID = 2**63 - 1


def positive(value: str) -> int:
    """An argparse type: an integer from 1 to 2**63 - 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 1 <= number <= MAX_UID:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_UID}: {value}")
    return number


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `keys` command and its subcommands."""
    keys = commands.add_parser("keys", help="API keys (STREAMCHAT_AUTH=keys)")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="make a key; it is printed once")
    create.add_argument("--uid", type=positive, required=True, help="the user the key is for")
    create.add_argument("--name", help="what the key is for (shown in `keys list`)")
    create.add_argument(
        "--service",
        action="store_true",
        help="a backend's key: acts for the uid each request names",
    )
    create.add_argument("--requests-per-minute", type=positive, help="this key's own limit")
    create.add_argument("--tokens-per-minute", type=positive, help="this key's own limit")
    create.add_argument("--streams", type=positive, help="open streams at once, this key's own")
    create.add_argument(
        "--models",
        type=model_names,
        help="the only models the key may use, comma-separated (names of the models file)",
    )
    sub.add_parser("list", help="every key: id, prefix, uid, kind, name, models, last used")
    revoke = sub.add_parser("revoke", help="stop a key from working (within seconds)")
    revoke.add_argument("id", type=positive, help="the key's id, from `keys list`")


def model_names(value: str) -> tuple[str, ...]:
    """An argparse type: model names, comma-separated, at least one."""
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise argparse.ArgumentTypeError("name at least one model")
    return names


def _unknown_models(settings: Settings, names: tuple[str, ...]) -> str | None:
    """Why `names` cannot be a key's models (one the server does not serve), or None."""
    try:
        known = load_catalog(settings).names()
    except CatalogError as exc:
        return str(exc)
    unknown = [name for name in names if name not in known]
    if unknown:
        return f"no model named {', '.join(unknown)} (the server serves {', '.join(known)})"
    return None


async def run(args: argparse.Namespace) -> int:
    """Run a `keys` subcommand; the exit code."""
    settings = Settings()
    if args.keys_command == "create" and args.models is not None:
        problem = _unknown_models(settings, args.models)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return USAGE
    engine = create_engine(
        settings.database_url,
        schema=settings.database_schema,
        timeout=settings.database_timeout_seconds,
    )
    try:
        await migrate(engine)
        store = KeyStore(engine)
        if args.keys_command == "create":
            return await _create(store, args)
        if args.keys_command == "list":
            return _print_list(await store.list())
        return await _revoke(store, args.id)
    except StoreUnavailable as exc:
        print(f"error: the database failed: {exc.detail}", file=sys.stderr)
        return DATABASE_FAILED
    finally:
        await engine.dispose()


async def _create(store: KeyStore, args: argparse.Namespace) -> int:
    key = new_key()
    limits = KeyLimits(args.requests_per_minute, args.tokens_per_minute, args.streams)
    record = await store.create(
        key_hash=key_hash(key),
        prefix=display_prefix(key),
        uid=args.uid,
        kind="service" if args.service else "user",
        name=args.name,
        limits=limits,
        models=args.models,
    )
    print(key)
    print(
        f"key {record.id} ({record.kind}, uid {record.uid}) created: this is the only time "
        "it is shown; keep it secret",
        file=sys.stderr,
    )
    return 0


def _print_list(records: list[KeyRecord]) -> int:
    header = ("ID", "PREFIX", "UID", "KIND", "NAME", "MODELS", "CREATED", "LAST USED", "REVOKED")
    rows = [header] + [
        (
            str(r.id),
            r.prefix + "…",
            str(r.uid),
            r.kind,
            r.name or "-",
            "all" if r.models is None else ",".join(r.models),
            _when(r.created_at),
            _when(r.last_used_at),
            _when(r.revoked_at),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


async def _revoke(store: KeyStore, key_id: int) -> int:
    if not await store.revoke(key_id):
        print(f"error: no key {key_id}, or it is already revoked", file=sys.stderr)
        return NOT_FOUND
    print(f"key {key_id} revoked", file=sys.stderr)
    return 0


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")
