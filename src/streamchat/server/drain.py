"""Graceful shutdown (DESIGN.md §9): on SIGTERM, drain the streams before uvicorn stops.

uvicorn, told to exit, closes its listening sockets at once and cancels the response tasks
still running after `timeout_graceful_shutdown`, before the lifespan's shutdown runs: by
then a stream's client has lost its connection without a final event. So SIGTERM is ours
first: the service stops taking chats (and `/readyz` says 503) while the listeners stay
open, running generations get STREAMCHAT_SHUTDOWN_GRACE_SECONDS to end, those still running
are interrupted (their `error` event written, the answer saved), and only then is uvicorn
told to exit; its own shutdown then finds the streams' responses ending.

The handler is installed from the lifespan, in the worker process, so it works alike for one
process and for each worker of `--workers N` (uvicorn's supervisor sends them SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from ..service.chat import ChatService

log = logging.getLogger("streamchat")

Handler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    """Catches SIGTERM for one server process and drains its streams before it exits."""

    def __init__(self, service: ChatService, grace_seconds: float) -> None:
        self._service = service
        self._grace = grace_seconds
        self._previous: Handler = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Take SIGTERM over (from the event loop's thread; elsewhere, nothing happens)."""
        self._previous = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._on_term)

    def _on_term(self) -> None:
        if self._task is None:
            log.info("SIGTERM: draining, %.0f s for the running streams", self._grace)
            self._task = asyncio.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        try:
            await self._service.drain(self._grace)
        finally:
            self._exit()

    def _exit(self) -> None:
        """Hand the exit over to uvicorn (or to whoever had SIGTERM before us)."""
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        previous = self._previous
        owner = getattr(previous, "__self__", None)
        if isinstance(owner, uvicorn.Server):
            # Not `handle_exit`: that records the signal to raise it again once uvicorn is
            # done, and the process would end killed by SIGTERM rather than with status 0.
            owner.should_exit = True
        elif callable(previous):
            previous(signal.SIGTERM, None)
        else:
            signal.raise_signal(signal.SIGTERM)
