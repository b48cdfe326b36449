"""The generation engine: one thread, one model, several answers decoded together.

Continuous batching, as llama.cpp's server does it with slots. Every step is one
`llama_decode` of one batch holding the next token of every answer being generated and a
chunk of prompt tokens of the requests admitted since: at most `prompt_chunk` of them while
others generate (so a long prompt delays their next token by one chunk's time, never by the
whole prompt), up to a full batch when nobody waits for a token. Each answer has its own
sampler and UTF-8 buffer. A request waits in the queue until a slot is free; it then takes
the free slot whose cached tokens share the longest prefix with its prompt, and only the rest
of the prompt is decoded. When another slot, running or idle, holds more of that prefix (the
system prompt, for a slot that never served it), its cache is copied instead of decoded again.

Only this thread touches the context. Other threads `submit` jobs and `cancel` them: a
cancelled job is dropped at the next step, and a decode carrying its tokens is aborted at once
(the others' share of that step is then decoded again).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from .base import (
    Finish,
    ProviderError,
    TextDelta,
    TokenUsage,
    UpstreamBadResponse,
    UpstreamUnavailable,
)
from .llamacpp import BATCH_TOKENS, NativeModel, decode_failed
from .slots import Job, Run, Slot, best_slot, best_source

log = logging.getLogger(__name__)

_ABORTED = 2  # llama_decode's code when the abort callback stopped it

Entry = tuple[int, int, int, bool]  # token, position, sequence, wants logits

# The fewest tokens worth copying from another slot's cache rather than decoding: a copy
# moves a whole sequence's cache (see `NativeModel.copy`), the time of a few tokens' decode.
COPY_MIN = 8


class Engine:
    """Owns a `NativeModel` on a thread of its own and serves jobs in its slots."""

    def __init__(
        self, path: Path, *, context_tokens: int, slots: int, threads: int, prompt_chunk: int
    ) -> None:
        self._path = path
        self._context_tokens, self._slots_n, self._threads = context_tokens, slots, threads
        self._chunk = max(1, min(prompt_chunk, BATCH_TOKENS - slots))
        self._lock = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._closing = False
        self._slots: list[Slot] = []
        self._order: list[Slot] = []  # slots still prompting, in the order they were admitted
        self.loaded: Future[NativeModel] = Future()
        self._thread = threading.Thread(target=self._main, name="llama-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job` (any thread); the engine serves it when a slot is free."""
        with self._lock:
            if self._closing:
                raise UpstreamUnavailable("the local model is shutting down")
            self._waiting.append(job)
            self._lock.notify()

    def cancel(self, job: Job) -> None:
        """Stop `job` now, from any thread: between steps, or in the middle of a decode."""
        job.cancel()
        if self.loaded.done() and not self.loaded.exception():
            self.loaded.result().abort.fire(job)
        with self._lock:
            self._lock.notify()

    def close(self) -> None:
        """Stop every job, free the model and end the thread (waits for it)."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join()

    def _main(self) -> None:
        try:
            model = NativeModel(
                self._path,
                context_tokens=self._context_tokens,
                slots=self._slots_n,
                threads=self._threads,
            )
        except BaseException as exc:
            self.loaded.set_exception(exc)
            return
        self._slots = [Slot(seq) for seq in range(model.slots)]
        self.loaded.set_result(model)
        try:
            while self._wait_for_work():
                try:
                    self._step(model)
                except Exception as exc:  # a bug: fail the jobs it concerns, not the thread
                    log.exception("the engine failed a step")
                    self._fail_all(model, UpstreamBadResponse(f"the local model failed: {exc}"))
        finally:
            self._stop_all()
            model.close()

    def _wait_for_work(self) -> bool:
        """Block while there is nothing to do; False once the engine is closing."""
        with self._lock:
            while not self._closing and not self._waiting and not self._running():
                self._lock.wait()
            return not self._closing

    def _running(self) -> list[Slot]:
        return [slot for slot in self._slots if slot.run is not None]

    def _step(self, model: NativeModel) -> None:
        self._drop_cancelled(model)
        self._admit(model)
        entries, carried = self._batch()
        if not entries:
            return
        jobs = frozenset(slot.run.job for slot in carried if slot.run is not None)
        model.abort.arm(jobs, aborted=any(job.cancelled.is_set() for job in jobs))
        code = model.decode(entries)
        model.abort.arm(frozenset())
        if code == 0:
            self._advance(model, entries, carried)
            return
        for slot in carried:  # undo what the aborted or failed decode left in the cache
            model.forget(slot.seq, len(slot.cache))
        if code != _ABORTED:
            failure = decode_failed(code)
            log.warning("%s with %d entries", failure.detail, len(entries))
            for slot in carried:
                if slot.run is not None and not slot.run.job.cancelled.is_set():
                    self._end(slot, failure=failure)

    def _drop_cancelled(self, model: NativeModel) -> None:
        with self._lock:
            gone = [job for job in self._waiting if job.cancelled.is_set()]
            for job in gone:
                self._waiting.remove(job)
        for job in gone:
            job.stats = "cancelled while queued"
            job.emit(None)
        for slot in self._running():
            if slot.run is not None and slot.run.job.cancelled.is_set():
                job = slot.run.job
                late = (time.monotonic() - job.cancelled_at) * 1000
                job.stats = f"cancelled, stopped {late:.0f} ms after close"
                self._release(slot)
                job.emit(None)

    def _admit(self, model: NativeModel) -> None:
        """Give free slots to waiting jobs, each to the slot that has most of its prompt."""
        while True:
            free = [slot for slot in self._slots if slot.run is None]
            with self._lock:
                if not free or not self._waiting:
                    return
                job = self._waiting.popleft()
            try:
                sampler = model.sampler(job.sampling)
            except ProviderError as failure:  # its grammar was refused: only it fails
                job.stats = f"failed: {failure.detail}"
                job.emit(failure)
                job.emit(None)
                continue
            slot, common = best_slot(free, job)
            keep, source = self._fit_cache(model, slot, job, common)
            slot.owner = job.owner
            job.admitted_at = time.monotonic()
            slot.run = Run(
                job=job,
                sampler=sampler,
                budget=min(job.max_tokens, model.seq_context - len(job.prompt)),
                pending=job.prompt[keep:],
                reused=keep,
                copied=keep if source is not None else 0,
                source=source.seq if source is not None else -1,
            )
            self._order.append(slot)

    def _fit_cache(
        self, model: NativeModel, slot: Slot, job: Job, common: int
    ) -> tuple[int, Slot | None]:
        """Make `slot`'s cache hold the longest start of `job`'s prompt it can have: its own
        `common` tokens, or more copied from another slot. How many, and the slot copied from.
        """
        last = len(job.prompt) - 1  # the last token is decoded for its logits
        keep = min(common, last)
        source, lent = best_source(self._slots, slot, job)
        lent = min(lent, last)
        if source is None or lent - keep < COPY_MIN:
            model.forget(slot.seq, keep)
            del slot.cache[keep:]
            return keep, None
        model.copy(source.seq, slot.seq, lent)
        slot.cache[:] = source.cache[:lent]
        return lent, source

    def _batch(self) -> tuple[list[Entry], list[Slot]]:
        """This step's entries: every generating answer's next token, then prompt chunks."""
        entries: list[Entry] = []
        carried: list[Slot] = []
        for slot in self._running():
            run = slot.run
            if run is not None and run.next_token >= 0:
                run.logits_at = len(entries)
                entries.append((run.next_token, len(slot.cache), slot.seq, True))
                carried.append(slot)
        room = BATCH_TOKENS - len(entries)
        if entries:
            room = min(room, self._chunk)
        for slot in self._order:
            run = slot.run
            if run is None or room <= 0:
                continue
            take = run.pending[:room]
            done = len(take) == len(run.pending)
            base = len(slot.cache)
            for i, token in enumerate(take):
                last = done and i == len(take) - 1
                entries.append((token, base + i, slot.seq, last))
            run.logits_at = len(entries) - 1 if done else -1
            room -= len(take)
            carried.append(slot)
        return entries, carried

    def _advance(self, model: NativeModel, entries: list[Entry], carried: list[Slot]) -> None:
        """The decode went through: record what the cache now holds, sample, send text."""
        counts = collections.Counter(seq for _, _, seq, _ in entries)
        for slot in carried:
            run = slot.run
            assert run is not None
            if run.next_token >= 0:
                slot.cache.append(run.next_token)
            else:
                taken = counts[slot.seq]
                slot.cache += run.pending[:taken]
                del run.pending[:taken]
                if run.pending:
                    continue
                self._order.remove(slot)
            self._sample(model, slot, run)

    def _sample(self, model: NativeModel, slot: Slot, run: Run) -> None:
        token = run.sampler.sample(run.logits_at)
        now = time.monotonic()
        if model.is_end(token):
            run.reason = "stop"
            self._end(slot)
            return
        run.tokens += 1
        run.budget -= 1
        run.last_at = now
        run.first_at = run.first_at or now
        text, stopped = run.text(model.piece(token))
        if run.calls is None:
            if text:
                run.job.emit(TextDelta(text))
        elif text:
            for event in run.calls.feed(text):
                run.job.emit(event)
            stopped = stopped or run.calls.done  # the calls are made: nothing more is wanted
        if stopped:
            run.reason = "stop"
            self._end(slot, flush=False)
        elif run.budget <= 0:
            self._end(slot)
        else:
            run.next_token = token

    def _end(self, slot: Slot, *, flush: bool = True, failure: ProviderError | None = None) -> None:
        run = slot.run
        assert run is not None
        job = run.job
        if failure is not None:
            job.stats = f"failed: {failure.detail}"
            job.emit(failure)
        else:
            held, reason = run.ending(flush)
            for event in held:
                job.emit(event)
            job.emit(TokenUsage(prompt_tokens=len(job.prompt), completion_tokens=run.tokens))
            job.emit(Finish(reason))
            job.stats = run.summary()
        self._release(slot)
        job.emit(None)

    def _release(self, slot: Slot) -> None:
        """Free the slot for the next job; its cache stays for a prompt that continues it."""
        if slot.run is not None:
            slot.run.sampler.free()
        if slot in self._order:
            self._order.remove(slot)
        slot.run = None
        slot.used_at = time.monotonic()

    def _fail_all(self, model: NativeModel, failure: ProviderError) -> None:
        """End every running job with `failure` and start the caches afresh."""
        for slot in self._running():
            run = slot.run
            assert run is not None
            run.job.stats = f"failed: {failure.detail}"
            run.job.emit(failure)
            self._release(slot)
            run.job.emit(None)
        for slot in self._slots:
            model.forget(slot.seq, 0)
            slot.cache.clear()

    def _stop_all(self) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for job in waiting:
            job.stats = "cancelled while queued"
            job.emit(None)
        for slot in self._running():
            assert slot.run is not None
            job = slot.run.job
            job.stats = "stopped: the model was closed"
            self._release(slot)
            job.emit(None)
