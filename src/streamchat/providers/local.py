"""The embedded model: a GGUF run by llama.cpp in this process, one request at a time.

One worker thread owns the model and runs the generations in the order they were accepted.
`open()` accepts a request at once by queueing it (so the client gets its `start` event and
pings while it waits), or refuses it at once with `UpstreamUnavailable` when
`STREAMCHAT_LOCAL_MAX_QUEUE` requests already wait. Tokens come back to the event loop one by
one; closing a stream stops its generation within milliseconds, queued or running.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import Settings
from ..metrics import Metrics
from .base import (
    GenerateRequest,
    ProviderError,
    ProviderEvent,
    UpstreamUnavailable,
)
from .llamacpp import Job, LlamaModel, check_loadable
from .model_files import model_path

log = logging.getLogger(__name__)

_Queue = asyncio.Queue[ProviderEvent | ProviderError | None]


def prepare(settings: Settings) -> Path:
    """Find, assemble and check the model file before serving; raises `LocalModelError`."""
    path = model_path(settings, log.info)
    check_loadable(path)
    return path


class ModelStream:
    """One accepted generation: its events arrive from the worker thread through a queue."""

    def __init__(self, provider: LocalProvider, job: Job, queue: _Queue) -> None:
        self._provider = provider
        self._job = job
        self._queue = queue

    def __aiter__(self) -> AsyncIterator[ProviderEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ProviderEvent]:
        while (item := await self._queue.get()) is not None:
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def aclose(self) -> None:
        """Stop the generation now, whether it is running or still waiting its turn."""
        self._provider.release(self._job)


class LocalProvider:
    """Answers with the embedded model; `STREAMCHAT_LOCAL_*` settings tune it."""

    name = "local"

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics(enabled=False)
        self._model_name = settings.model_name
        self._threads = settings.local_threads or os.cpu_count() or 1
        self._executor: ThreadPoolExecutor | None = None
        self._model: LlamaModel | None = None
        self._jobs: set[Job] = set()  # accepted and neither finished nor closed

    def models(self) -> list[str]:
        """The one model this process has loaded."""
        return [self._model_name]

    async def start(self) -> None:
        """Find (or assemble) the model file and load it in the worker thread."""
        path = await asyncio.to_thread(model_path, self._settings, log.info)
        size = path.stat().st_size / 1024 / 1024
        log.info("loading %s (%.0f MB, %d threads)", path, size, self._threads)
        started = time.monotonic()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="llama")
        self._model = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._load, path
        )
        log.info("model %s loaded in %.1f s", self._model_name, time.monotonic() - started)

    def _load(self, path: Path) -> LlamaModel:
        return LlamaModel(
            path,
            context_tokens=self._settings.local_context_tokens,
            threads=self._threads,
            system_prompt=self._settings.local_system_prompt,
        )

    async def close(self) -> None:
        """Stop every generation, free the model and end the worker thread."""
        model, executor = self._model, self._executor
        self._model = None
        if model is not None:
            for job in list(self._jobs):
                model.interrupt(job)
        if executor is not None:
            if model is not None:
                await asyncio.wrap_future(executor.submit(model.close))
            executor.shutdown(wait=False)

    async def ready(self) -> bool:
        """Ready once the model is loaded."""
        return self._model is not None

    async def open(self, request: GenerateRequest) -> ModelStream:
        """Queue the request for the model, or refuse it at once if the queue is full."""
        if self._model is None or self._executor is None:
            raise UpstreamUnavailable("the local model is not loaded")
        waiting = len(self._jobs) - 1
        if waiting >= self._settings.local_max_queue:
            raise UpstreamUnavailable(
                f"the local model is busy: {waiting} requests are waiting "
                f"(STREAMCHAT_LOCAL_MAX_QUEUE={self._settings.local_max_queue})"
            )
        loop = asyncio.get_running_loop()
        queue: _Queue = asyncio.Queue()

        def emit(item: ProviderEvent | ProviderError | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = Job(
            messages=self._messages(request),
            max_tokens=request.max_tokens or self._settings.local_max_tokens,
            temperature=_first(request.temperature, self._settings.local_temperature),
            top_p=_first(request.top_p, self._settings.local_top_p),
            seed=request.seed,
            stop=list(request.stop),
            emit=emit,
        )
        self._jobs.add(job)
        self._report_queue()
        accepted = time.monotonic()
        future = self._executor.submit(self._model.run, job)
        context = contextvars.copy_context()  # the request's trace id, for the log line
        future.add_done_callback(
            lambda _: loop.call_soon_threadsafe(self._done, job, accepted, context=context)
        )
        return ModelStream(self, job, queue)

    def release(self, job: Job) -> None:
        """The stream was closed: stop its generation and free its place in the queue."""
        if job in self._jobs:
            self._jobs.discard(job)
            self._report_queue()
            if self._model is not None:
                self._model.interrupt(job)

    def _done(self, job: Job, accepted: float) -> None:
        self._jobs.discard(job)
        self._report_queue()
        log.info(
            "generation: %s; %.2f s after it was accepted", job.stats, time.monotonic() - accepted
        )

    def _report_queue(self) -> None:
        """The requests waiting for the model: every accepted job but the one it runs."""
        self._metrics.set_waiting(max(len(self._jobs) - 1, 0))

    @staticmethod
    def _messages(request: GenerateRequest) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in request.messages]


def _first(value: float | None, default: float) -> float:
    return default if value is None else value
