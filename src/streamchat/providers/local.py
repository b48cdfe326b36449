"""The embedded model: a GGUF run by llama.cpp in this process, several answers at once.

The engine (engine.py) owns the model on a thread of its own and decodes up to
`STREAMCHAT_LOCAL_SLOTS` answers together. `open()` turns the conversation into tokens (and
refuses one whose last message alone does not fit the context), then accepts the request at
once by queueing it (so the client gets its `start` event and pings while it waits), or
refuses it at once with `UpstreamUnavailable` when all slots are busy and
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
from pathlib import Path

from ..config import Settings
from ..metrics import Metrics
from .base import (
    ChatMessage,
    GenerateRequest,
    ProviderError,
    ProviderEvent,
    Unsupported,
    UpstreamUnavailable,
)
from .decoding import decoding, refuse_unsupported
from .engine import Engine
from .llamacpp import NativeModel, check_loadable
from .model_files import model_path
from .prompts import PromptBuilder, template_renderer
from .sampling import Sampling
from .slots import Job, shared_prefix

log = logging.getLogger(__name__)

_Queue = asyncio.Queue[ProviderEvent | ProviderError | None]

# ChatML, Qwen's format, for a GGUF that carries no template of its own.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def prepare(settings: Settings) -> Path:
    """Find, assemble and check the model file before serving; raises `LocalModelError`."""
    path = model_path(settings, log.info)
    check_loadable(path)
    return path


class ModelStream:
    """One accepted generation: its events arrive from the engine's thread through a queue."""

    def __init__(self, provider: LocalProvider, job: Job, queue: _Queue) -> None:
        self._provider = provider
        self._job = job
        self._queue = queue

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]:
        return self._events()

    async def _events(self) -> AsyncIterator[list[ProviderEvent]]:
        first = True
        while (item := await self._queue.get()) is not None:
            if first:  # it left the queue for a slot: one fewer waiting
                first = False
                self._provider.report_queue()
            if isinstance(item, ProviderError):
                raise item
            yield [item]

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
        self._engine: Engine | None = None
        self._model: NativeModel | None = None
        self._prompts: PromptBuilder | None = None
        self._public: list[int] = []  # what every prompt begins with (PromptBuilder.public)
        self._context = 0  # tokens per slot
        self._jobs: set[Job] = set()  # accepted and neither finished nor closed
        self._queued = 0  # jobs that got a slot, and their total wait for it
        self._queued_seconds = 0.0

    def models(self) -> list[str]:
        """The one model this process has loaded."""
        return [self._model_name]

    async def start(self) -> None:
        """Find (or assemble) the model file and load it in the engine's thread."""
        settings = self._settings
        path = await asyncio.to_thread(model_path, settings, log.info)
        size = path.stat().st_size / 1024 / 1024
        log.info("loading %s (%.0f MB, %d threads)", path, size, self._threads)
        started = time.monotonic()
        engine = Engine(
            path,
            context_tokens=settings.local_context_tokens,
            slots=settings.local_slots,
            threads=self._threads,
            prompt_chunk=settings.local_prompt_chunk,
        )
        model = await asyncio.wrap_future(engine.loaded)
        self._engine, self._model, self._context = engine, model, model.seq_context
        self._prompts = _prompt_builder(model)
        self._public = await asyncio.to_thread(self._prompts.public, settings.local_system_prompt)
        log.info(
            "model %s loaded in %.1f s: %d slots of %d tokens, KV cache %.0f MB",
            self._model_name,
            time.monotonic() - started,
            model.slots,
            model.seq_context,
            model.kv_bytes / 1024 / 1024,
        )

    async def close(self) -> None:
        """Stop every generation, free the model and end the engine's thread."""
        engine, self._engine, self._model = self._engine, None, None
        if engine is not None:
            await asyncio.to_thread(engine.close)

    async def ready(self) -> bool:
        """Ready once the model is loaded."""
        return self._engine is not None

    def load(self) -> tuple[int, int]:
        """(running, waiting): answers being generated in a slot, and requests queued."""
        running = sum(1 for job in self._jobs if job.admitted_at)
        return running, len(self._jobs) - running

    def queue_time(self) -> tuple[int, float]:
        """How many requests got a slot so far, and the seconds they waited for it in all."""
        return self._queued, self._queued_seconds

    async def open(self, request: GenerateRequest) -> ModelStream:
        """Queue the request for the model, or refuse it at once if the queue is full."""
        if self._engine is None or self._prompts is None or self._model is None:
            raise UpstreamUnavailable("the local model is not loaded")
        model = self._model
        refuse_unsupported(request, self._model_name)
        wanted = decoding(request)
        self._check_room()
        cap = self._settings.local_max_tokens  # the operator's, whatever the API
        max_tokens = min(request.max_tokens or cap, cap)
        # Room for the answer: what it asks for, but never more than a quarter of the context.
        room = self._context - min(max_tokens, self._context // 4)
        prompt = await asyncio.to_thread(
            self._prompts.fit, self._messages(request), room, request.tools
        )
        if prompt.dropped:
            log.info("the oldest %d messages do not fit the context: left out", prompt.dropped)
        if wanted.grammar is not None and not await asyncio.to_thread(
            model.grammar_ok, wanted.grammar
        ):
            param = "tools" if wanted.bare else "response_format"
            raise Unsupported(param, "llama.cpp refused the grammar made from its schema")
        if self._engine is None:
            raise UpstreamUnavailable("the local model is not loaded")
        self._check_room()
        loop = asyncio.get_running_loop()
        queue: _Queue = asyncio.Queue()
        context = contextvars.copy_context()  # the request's trace id, for the log line

        def emit(item: ProviderEvent | ProviderError | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)
            if item is None:
                loop.call_soon_threadsafe(self._done, job, context=context)

        job = Job(
            prompt=prompt.tokens,
            head=prompt.head,
            max_tokens=max_tokens,
            sampling=Sampling(
                temperature=_first(request.temperature, self._settings.local_temperature),
                top_p=_first(request.top_p, self._settings.local_top_p),
                seed=request.seed,
                grammar=wanted.grammar,
            ),
            stop=list(request.stop),
            emit=emit,
            owner=request.owner,
            public=shared_prefix(prompt.tokens, self._public),
            decoding=wanted,
        )
        self._engine.submit(job)  # may raise while the model closes: then the job is not ours
        self._jobs.add(job)
        self.report_queue()
        return ModelStream(self, job, queue)

    def _check_room(self) -> None:
        slots, queue = self._settings.local_slots, self._settings.local_max_queue
        waiting = len(self._jobs) - slots
        if waiting >= queue:
            raise UpstreamUnavailable(
                f"the local model is busy: {slots} answers are being generated and {waiting} "
                f"requests are waiting (STREAMCHAT_LOCAL_SLOTS={slots}, "
                f"STREAMCHAT_LOCAL_MAX_QUEUE={queue})"
            )

    def release(self, job: Job) -> None:
        """The stream was closed: stop its generation and free its slot or queue place."""
        if job in self._jobs:
            self._jobs.discard(job)
            if self._engine is not None:
                self._engine.cancel(job)
            self.report_queue()

    def report_queue(self) -> None:
        """Tell the metrics how many requests wait for a slot (`num_requests_waiting`)."""
        self._metrics.set_waiting(self.load()[1])

    def _done(self, job: Job) -> None:
        self._jobs.discard(job)
        self.report_queue()
        if job.admitted_at:
            self._queued += 1
            self._queued_seconds += job.admitted_at - job.queued_at
        log.info(
            "generation: %s; %.2f s after it was accepted",
            job.stats,
            time.monotonic() - job.queued_at,
        )

    def _messages(self, request: GenerateRequest) -> list[ChatMessage]:
        """The operator's system prompt first, always; a client's own system messages follow
        it and never replace it."""
        system = self._settings.local_system_prompt
        first = [ChatMessage("system", system)] if system else []
        return [*first, *request.messages]


def _prompt_builder(model: NativeModel) -> PromptBuilder:
    formats = model.lib.llama_chat_format
    render = template_renderer(
        model.template() or CHATML,
        bos=model.token_text(model.bos()),
        eos=model.token_text(model.eos()),
        formats=formats,
    )
    return PromptBuilder(render, lambda text, special: model.tokenize(text, special=special))


def _first(value: float | None, default: float) -> float:
    return default if value is None else value
