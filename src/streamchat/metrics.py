"""The one observer the service reports to: Prometheus metrics (DESIGN.md §9).

The chat service, the generation, the store's group writer and the local provider report
what happened (a stream began, a batch of tokens came, a stream ended, a round was written)
to a `Metrics` object; nothing else in the code knows Prometheus. Names follow vLLM's, under
our prefix.

Cost on the hot path: the tokens of one upstream read cost one `perf_counter()` and one list
append together (`StreamMeter.token`; those after the first of a read came with it, a gap of
zero, and are only counted). The histograms are fed a batch at a time (`_BATCH` tokens, and at the
end of the stream), by counting the batch into buckets here and adding the counts to the
Prometheus child in one step per bucket: `Histogram.observe` takes a lock per call (and, under
`--workers`, writes an mmap'ed file), which per token cost more than the rest of our token
path.

Under `streamchat serve --workers N`, `serve` sets `PROMETHEUS_MULTIPROC_DIR` before the
workers start: prometheus_client then keeps every value in files there (it chooses at import),
and `render` adds up all the workers' files.
"""

from __future__ import annotations

import contextvars
import os
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "streamchat:"
_BATCH = 64  # tokens timed before their gaps go to the histogram

_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0,
)  # fmt: skip
_E2E_BUCKETS = (
    0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0,
)  # fmt: skip
_STORE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(slots=True)
class RequestLine:
    """What the access line reports beyond the HTTP exchange: filled in by the stream's meter
    (below), which runs in a task that inherits this request's context."""

    started: float = field(default_factory=time.perf_counter)  # when the request arrived
    ttft: float | None = None  # seconds to the first token
    tokens: int | None = None
    model: str | None = None  # the model that answered (the router's entry)
    tried: int | None = None  # how many models were tried for it


request_line_var: contextvars.ContextVar[RequestLine | None] = contextvars.ContextVar(
    "request_line", default=None
)


def current_request() -> RequestLine | None:
    """The access line of the request being handled (None outside a request)."""
    return request_line_var.get()


def multiprocess_dir() -> str | None:
    """The directory prometheus_client shares values through, if `serve` set one.

    prometheus_client reads this variable itself, at import, to choose how it stores values;
    this reads the same switch so that `render` collects what the values were written to.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Prometheus metrics of one process; `enabled=False` observes nothing (the benchmark's
    "off")."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._shared = multiprocess_dir()
        # Our own registry, not the global one: tests build several apps in one process.
        self._registry = CollectorRegistry(auto_describe=True)
        registry = None if self._shared else self._registry
        labels = ("api", "model")
        self.ttft = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Time from the request to the first token of the answer.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            PREFIX + "inter_token_latency_seconds",
            "Time between two consecutive tokens of an answer.",
            labels,
            buckets=_ITL_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            PREFIX + "e2e_request_latency_seconds",
            "Time from the request to the end of its answer.",
            labels,
            buckets=_E2E_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            PREFIX + "num_requests_running",
            "Answers being generated.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            PREFIX + "num_requests_waiting",
            "Requests queued for the local model.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.prompt_tokens = Counter(
            PREFIX + "prompt_tokens",
            "Prompt tokens, as the provider counted them.",
            registry=registry,
        )
        self.generation_tokens = Counter(
            PREFIX + "generation_tokens", "Tokens generated.", registry=registry
        )
        self.success = Counter(
            PREFIX + "request_success",
            "Answers that ended normally, by finish reason.",
            ("finished_reason",),
            registry=registry,
        )
        self.errors = Counter(
            PREFIX + "request_errors",
            "Requests refused or answers that ended with an error, by error code.",
            ("code",),
            registry=registry,
        )
        self.limited = Counter(
            PREFIX + "rate_limited", "Requests refused by a rate limit.", registry=registry
        )
        self.store_write = Histogram(
            PREFIX + "store_write_seconds",
            "Duration of one store transaction (a round).",
            buckets=_STORE_BUCKETS,
            registry=registry,
        )

    def meter(self, api: str, model: str) -> StreamMeter | None:
        """A meter for one request that may become a stream, timed from now (None when off)."""
        if not self.enabled:
            return None
        return StreamMeter(self, api, model)

    def refused(self, code: str) -> None:
        """A request was refused (before its stream began) with the failure `code`."""
        if self.enabled:
            self.errors.labels(code).inc()

    def rate_limited(self) -> None:
        """A request was refused by a rate limit."""
        if self.enabled:
            self.limited.inc()

    def store_round(self, seconds: float) -> None:
        """The store wrote one round (a transaction) in `seconds`."""
        if self.enabled:
            self.store_write.observe(seconds)

    def set_waiting(self, count: int) -> None:
        """`count` requests wait in the local model's queue."""
        if self.enabled:
            self.waiting.set(count)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text of every metric (of every worker under `--workers`)."""
        if self._shared:
            registry = CollectorRegistry()
            # prometheus_client's MultiProcessCollector has no annotations.
            MultiProcessCollector(registry, path=self._shared)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self._registry), CONTENT_TYPE_LATEST


def _histograms(metrics: Metrics, api: str, model: str) -> tuple[Histogram, Histogram, Histogram]:
    """The three latency histograms of one API and model."""
    return (
        metrics.ttft.labels(api, model),
        metrics.itl.labels(api, model),
        metrics.e2e.labels(api, model),
    )


@dataclass(slots=True)
class Ending:
    """How a stream ended, for its meter: a finish reason, or an error code."""

    finish_reason: str
    error_code: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class StreamMeter:
    """One stream's measurements: its start, its tokens' times, its end."""

    __slots__ = (
        "_api",
        "_ended",
        "_first",
        "_histograms",
        "_last",
        "_line",
        "_metrics",
        "_started",
        "_times",
        "_together",
        "token",
        "tokens",
    )

    def __init__(self, metrics: Metrics, api: str, model: str) -> None:
        self._metrics = metrics
        self._line: RequestLine | None = current_request()
        # From the request's arrival (its body read, the turn saved …), when it is known.
        self._started = time.perf_counter() if self._line is None else self._line.started
        self._api = api
        self._histograms = _histograms(metrics, api, model)
        self._times: list[float] = []
        self._together = 0  # tokens that came in the same read as the one before: gap 0
        self._first: float | None = None
        self._last = 0.0
        self._ended = False
        self.tokens = 0
        # Called per read with its tokens' count; rebound after the first, so that the
        # later ones test nothing.
        self.token: Callable[[int], None] = self._first_token

    def answered_by(self, model: str) -> None:
        """The stream's model is `model` (a fallback answered, not the one asked for)."""
        self._histograms = _histograms(self._metrics, self._api, model)

    def begin(self) -> None:
        """The stream began: the generation is running."""
        self._metrics.running.inc()

    def _first_token(self, count: int = 1) -> None:
        now = time.perf_counter()
        self._first = self._last = now
        self.tokens = 1
        self._histograms[0].observe(now - self._started)
        self._metrics.generation_tokens.inc()
        if self._line is not None:
            self._line.ttft = now - self._started
        self._together += count - 1
        self.token = self._next_token

    def _next_token(self, count: int = 1) -> None:
        times = self._times
        times.append(time.perf_counter())
        self._together += count - 1
        if len(times) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        times = self._times
        together, self._together = self._together, 0
        if not times and not together:
            return
        histogram = self._histograms[1]
        bounds = histogram._upper_bounds
        counts = [0] * len(bounds)
        counts[0] = together
        last = self._last
        for at in times:
            counts[bisect_left(bounds, at - last)] += 1
            last = at
        for index, count in enumerate(counts):
            if count:
                histogram._buckets[index].inc(count)
        histogram._sum.inc(last - self._last)
        self.tokens += len(times) + together
        self._metrics.generation_tokens.inc(len(times) + together)
        self._last = last
        times.clear()

    def ended(self, ending: Ending) -> None:
        """The stream ended (once): the last tokens, the counters, the running gauge."""
        if self._ended:
            return
        self._ended = True
        self._flush()
        metrics = self._metrics
        self._histograms[2].observe(time.perf_counter() - self._started)
        metrics.running.dec()
        if ending.error_code is not None:
            metrics.errors.labels(ending.error_code).inc()
        else:
            metrics.success.labels(ending.finish_reason).inc()
        if ending.prompt_tokens:
            metrics.prompt_tokens.inc(ending.prompt_tokens)
        # A provider may send several tokens in one piece: its own count is the better one.
        if ending.completion_tokens is not None and ending.completion_tokens > self.tokens:
            metrics.generation_tokens.inc(ending.completion_tokens - self.tokens)
            self.tokens = ending.completion_tokens
        if self._line is not None:
            self._line.tokens = self.tokens
