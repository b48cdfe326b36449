"""The engine's shapes: a job handed to it, a slot of the context, and a job running in one.

A slot is one sequence of the llama.cpp context: its part of the KV cache and the tokens that
part holds. The tokens stay after the answer ends, so the next request whose prompt begins
the same way (the next turn of that conversation) is processed from where they diverge. A
slot that lacks a start another slot holds (running or not) copies it from there.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .base import ProviderError, ProviderEvent, TextDelta
from .decoding import Decoding
from .sampling import Sampler, Sampling
from .stops import StopScanner
from .toolcalls import ToolCallParser

Emit = Callable[[ProviderEvent | ProviderError | None], None]


@dataclass(slots=True, eq=False)
class Job:
    """One generation handed to the engine; `emit` (thread-safe) carries events back.

    `emit(None)` is always the last call: the generation is over, and `stats` says how it went.
    A slot's cached tokens serve only their `owner`'s later prompts, except the first `public`
    ones (the template's opening and the operator's system prompt, the same for everyone):
    how soon an answer begins must not tell one owner what another sent.
    """

    prompt: list[int]
    head: int  # where the conversation's own part of the prompt begins (see prompts.Prompt)
    max_tokens: int
    sampling: Sampling
    stop: list[str]
    emit: Emit
    owner: int | None = None
    public: int = 0
    decoding: Decoding | None = None  # tool calls to read out of the text, if any
    queued_at: float = field(default_factory=time.monotonic)
    admitted_at: float = 0.0  # when it got a slot; 0 while it waits
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancelled_at: float = 0.0
    stats: str = ""

    def cancel(self) -> None:
        """Mark the job closed (from any thread); the engine drops it at its next step."""
        self.cancelled_at = time.monotonic()
        self.cancelled.set()


@dataclass(slots=True, eq=False)
class Run:
    """A job being served by a slot: what is left of its prompt, its sampler, its text so far."""

    job: Job
    sampler: Sampler
    budget: int  # tokens it may still generate
    pending: list[int]  # prompt tokens not decoded yet
    reused: int  # prompt tokens found in the slot's cache, copied ones included
    copied: int = 0  # of those, copied from another slot's cache when it was admitted
    source: int = -1  # that slot's sequence
    next_token: int = -1  # sampled, to be decoded at the next step; -1 while prompting
    logits_at: int = -1  # its entry in the batch being decoded that has logits, or -1
    tokens: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    reason: str = "length"
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    stops: StopScanner = field(init=False)
    calls: ToolCallParser | None = field(init=False)

    def __post_init__(self) -> None:
        self.stops = StopScanner(self.job.stop)
        wanted = self.job.decoding
        self.calls = None
        if wanted is not None and wanted.tools:
            self.calls = ToolCallParser(wanted.tools, bare=wanted.bare, parallel=wanted.parallel)

    def text(self, piece: bytes) -> tuple[str, bool]:
        """The text to send for a token's bytes (a split character waits), and whether to stop."""
        return self.stops.feed(self.decoder.decode(piece))

    def rest(self) -> str:
        """What is held back at the end: an incomplete character, the start of a stop string."""
        return self.stops.flush(self.decoder.decode(b"", final=True))

    def ending(self, flush: bool) -> tuple[list[ProviderEvent], str]:
        """The events for what is held back at the end (none when a stop string or the calls
        ended it: `flush` False), and the finish reason."""
        rest = self.rest() if flush else ""
        if self.calls is None:
            return ([TextDelta(rest)] if rest else []), self.reason
        return self.calls.feed(rest) + self.calls.flush(), self.calls.finish_reason(self.reason)

    def summary(self) -> str:
        """The log's account of this generation."""
        job = self.job
        first = self.first_at - job.admitted_at if self.tokens else 0.0
        spent = self.last_at - self.first_at
        rate = (self.tokens - 1) / spent if spent > 0 else 0.0
        copied = f"{self.copied} copied from slot {self.source}, " if self.copied else ""
        waited = job.admitted_at - job.queued_at
        return (
            f"{len(job.prompt)} prompt tokens ({self.reused} cached), {copied}"
            f"{self.tokens} tokens, {self.reason}, waited {waited:.2f} s for a slot, "
            f"first after {first:.2f} s, {rate:.1f} tokens/s"
        )


@dataclass(slots=True, eq=False)
class Slot:
    """One sequence of the context and the tokens its cache holds (positions 0 … n-1)."""

    seq: int
    cache: list[int] = field(default_factory=list)
    run: Run | None = None
    used_at: float = 0.0
    owner: int | None = None  # whose tokens the cache holds


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` have in common."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def best_slot(free: list[Slot], job: Job) -> tuple[Slot, int]:
    """The free slot to serve `job` in, and how many of its cached tokens the prompt reuses.

    The slot holding this conversation (its cache shares at least half of what follows the
    system prompt) with the longest shared prefix; failing that, the one unused the longest.
    A cache that merely begins with the same system prompt is another conversation's: taking
    it would throw away that history to save a few tokens, so it is taken last. Another
    owner's cache lends only its public tokens (see `Job`).
    """
    scored = [(_reusable(slot, job), slot) for slot in free]
    own = len(job.prompt) - job.head
    matches = [(n, slot) for n, slot in scored if n > job.head and (n - job.head) * 2 >= own]
    if matches:
        common, slot = max(matches, key=lambda item: (item[0], item[1].used_at))
        return slot, common
    common, slot = min(scored, key=lambda item: item[1].used_at)
    return slot, common


def best_source(slots: list[Slot], target: Slot, job: Job) -> tuple[Slot | None, int]:
    """The slot other than `target`, running or idle, holding the most of `job`'s prompt that
    `job` may reuse (another owner's: its public tokens only), and how many; (None, 0) if none.
    """
    best: Slot | None = None
    most = 0
    for slot in slots:
        if slot is not target and (n := _reusable(slot, job)) > most:
            best, most = slot, n
    return best, most


def _reusable(slot: Slot, job: Job) -> int:
    """How many of the slot's cached tokens `job` may reuse."""
    common = shared_prefix(slot.cache, job.prompt)
    return common if slot.owner == job.owner else min(common, job.public)
