"""The `serve` command's process: listening sockets, uvicorn, workers, the collector."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..config import Settings
from ..logs import configure_logging
from .listeners import LISTENERS, ListenError, bind_listeners

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from .connections import ConnectionBounds

log = logging.getLogger("streamchat")

# Connections waiting to be accepted, per listening socket. uvicorn's default, 2048, overflowed
# when 5000 clients arrived within two seconds (every overflow a reset connection); the kernel
# caps the value at net.core.somaxconn (4096 by default since Linux 5.4).
_LISTEN_BACKLOG = 65535
# The exit code of a server whose start-up failed (uvicorn's).
_STARTUP_FAILURE = 3


def serve(host: str | None, port: int | None, workers: int) -> int:
    """Run the HTTP server (`workers` processes sharing the port); the exit code."""
    import uvicorn

    from .connections import ServeConfig
    from .headlimit import BoundedHttpToolsProtocol
    from .workers import Workers

    # The command line overrides the environment; workers build their settings from it.
    if host is not None:
        os.environ["STREAMCHAT_HOST"] = host
    if port is not None:
        os.environ["STREAMCHAT_PORT"] = str(port)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    bounds = _checked(settings)
    if bounds is None:
        return 2
    if not _prepare_models(settings):
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
    config = ServeConfig(
        "streamchat.server.serve:worker_app",
        factory=True,
        workers=workers,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,  # httptools, with a bound on the request head
        h11_max_incomplete_event_size=settings.max_header_bytes,  # that bound (headlimit.py)
        bounds=bounds,  # head timeout, connections per address (connections.py)
        timeout_keep_alive=settings.keepalive_timeout_seconds,
        # uvicorn believes loopback's X-Forwarded-For by default: anyone on the machine
        # could then write any client address into the logs. Only the listed proxies.
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
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
            with _shared_metrics(settings.metrics) as shared:
                Workers(config, sockets=sockets, metrics_dir=shared).run()
            return 0
        server.run(sockets=sockets)
    except KeyboardInterrupt:  # as uvicorn.run: a second Ctrl+C during shutdown
        pass
    finally:
        for sock in sockets:
            sock.close()
    return 0 if server.started else _STARTUP_FAILURE


def _checked(settings: Settings) -> ConnectionBounds | None:
    """The connection bounds of `settings`; None, the reason printed, for settings that
    must not be served (`*` origins without keys, a proxy address that is none)."""
    from .connections import ConnectionBounds

    refusal = settings.refusal()
    if refusal is None:
        try:
            return ConnectionBounds.build(
                settings.head_timeout_seconds,
                settings.body_timeout_seconds,
                settings.max_connections_per_address,
                settings.trusted_proxy_list,
            )
        except ValueError as exc:
            refusal = f"STREAMCHAT_TRUSTED_PROXIES: {exc}"
    print(f"error: {refusal}", file=sys.stderr)
    return None


@contextlib.contextmanager
def _shared_metrics(enabled: bool) -> Iterator[str | None]:
    """A fresh directory where the workers' prometheus_client keeps its values, so that any
    worker's /metrics adds up all of them; removed at exit.

    Set in the environment, the one setting not passed down as `Settings`: prometheus_client
    reads it itself, at import, in each worker process.
    """
    if not enabled:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="streamchat-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _prepare_models(settings: Settings) -> bool:
    """Check the models before serving: the models file's, or the one local model."""
    if settings.models_file is not None:
        return _check_models(settings)
    return settings.provider != "local" or _prepare_local_model(settings)


def _prepare_local_model(settings: Settings) -> bool:
    """Assemble and check the model before serving: a broken one is one line, not a traceback."""
    from ..providers.local import prepare
    from ..providers.model_files import LocalModelError

    try:
        prepare(settings)
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _check_models(settings: Settings) -> bool:
    """Check the models file, its keys' variables, and its local models (each assembled and
    checked, their memory logged and summed against what is available): a problem is one
    line naming the model, not a traceback."""
    from ..providers import local_entries
    from ..providers.catalog import CatalogError, check_keys, load_catalog
    from ..providers.local import prepare
    from ..providers.memory import check_fit, need
    from ..providers.model_files import LocalModelError

    try:
        catalog = load_catalog(settings)
        check_keys(catalog)
        needs = []
        for name, local in local_entries(settings, catalog):
            try:
                needs.append(need(name, prepare(local), local))
            except LocalModelError as exc:
                raise LocalModelError(f"model {name!r}: {exc}") from None
            log.info("local model %s", needs[-1].describe())
        check_fit(needs, settings)
    except (CatalogError, LocalModelError) as exc:
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


def worker_app() -> ASGIApp:
    """The app of one server process, with logging set up there too.

    With `--workers N` uvicorn starts fresh processes that import this factory: logging
    configured in the parent does not reach them.
    """
    from ..routes.streaming import ServerSend
    from .app import create_app
    from .gc_tuning import tune_for_serving

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_for_serving()
    return ServerSend(app)
