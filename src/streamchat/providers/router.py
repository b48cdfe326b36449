"""Several models behind one endpoint, as one provider (DESIGN §10).

The router holds one provider per entry of the models file (providers of the same local
GGUF are shared) and is itself a `Provider`: the service hands it a request whose `model` is
an entry's name and gets back an accepted stream, never learning there were several. A
refusal before the first token (connect error, timeout, 429, 5xx) moves on to the entry's
fallbacks in order; the stream that comes back names the entry that answered (`model`) and
how many were tried (`tried`). A failure after acceptance is the stream's own, as with any
provider: no switch in mid-answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..errors import Failure, Kind
from ..metrics import current_request
from .base import (
    GenerateRequest,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderStream,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .cooldown import Cooldown

log = logging.getLogger(__name__)


def falls_back(error: ProviderError) -> bool:
    """Whether a refusal is the upstream's trouble (try the next entry), not the client's.

    A connect error, a timeout, a 429 and a 5xx (or an answer broken before its status) are;
    `UpstreamRejected` (the client's own 4xx) and 401/403 (our key: the operator's) are not."""
    if isinstance(error, UpstreamUnavailable | UpstreamTimeout | UpstreamRateLimited):
        return True
    if type(error) is UpstreamBadResponse:
        return error.upstream_status is None or error.upstream_status >= 500
    return False


@dataclass(slots=True)
class Route:
    """One entry: its name, its provider, the id sent upstream, and its fallbacks' routes."""

    name: str
    provider: Provider
    sent_as: str
    cooldown: Cooldown | None = None
    chain: tuple[Route, ...] = ()  # this route, then its fallbacks, in order

    def request_for(self, request: GenerateRequest) -> GenerateRequest:
        """`request` with the id this entry's provider is sent."""
        if request.model == self.sent_as:
            return request
        return dataclasses.replace(request, model=self.sent_as)


class RoutedStream:
    """An accepted stream and the entry that accepted it: iterating it is the provider's own
    iteration (no step is added per batch)."""

    __slots__ = ("_inner", "model", "tried")

    def __init__(self, inner: ProviderStream, model: str, tried: int) -> None:
        self._inner = inner
        self.model = model  # the entry that answered: the stream's `model` on every API
        self.tried = tried

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        """Close the provider's stream."""
        await self._inner.aclose()


class Router:
    """A provider over the entries of the models file; `models()` lists them, default first."""

    name = "router"

    def __init__(self, routes: Sequence[Route], default: str) -> None:
        self._routes = {route.name: route for route in routes}
        self._names = [default] + [route.name for route in routes if route.name != default]
        self._providers = list({id(route.provider): route.provider for route in routes}.values())

    def models(self) -> list[str]:
        """Every entry's name, the default first."""
        return list(self._names)

    def route(self, name: str) -> Route:
        """The entry named `name`."""
        return self._routes[name]

    async def start(self) -> None:
        """Start every provider (local models load one after another: each takes the CPU)."""
        for provider in self._providers:
            await provider.start()

    async def close(self) -> None:
        """Close every provider, even if one fails to."""
        results = await asyncio.gather(
            *(provider.close() for provider in self._providers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("a model's provider did not close cleanly: %s", result)

    async def ready(self) -> bool:
        """Whether the default entry, or one of its fallbacks, would be tried now."""
        checks = await self.checks()
        return any(checks[route.name] for route in self._routes[self._names[0]].chain)

    async def checks(self) -> dict[str, bool]:
        """Per entry: its provider is up and it is not cooling down (for /readyz)."""
        return {
            name: await route.provider.ready()
            and (route.cooldown is None or not route.cooldown.cooling())
            for name, route in ((name, self._routes[name]) for name in self._names)
        }

    async def open(self, request: GenerateRequest) -> RoutedStream:
        """Have the named entry accept `request`, or the first of its fallbacks that does."""
        route = self._routes.get(request.model)
        if route is None:  # the service resolves names first; this is a stale or bad caller
            raise Failure(Kind.NOT_FOUND, "model_unknown", model=request.model)
        tried = 0
        refusal: ProviderError | None = None
        line = current_request()
        try:
            for candidate in route.chain:
                if candidate.cooldown is not None and not candidate.cooldown.admits():
                    continue
                tried += 1
                try:
                    stream = await _attempt(candidate, request)
                except ProviderError as exc:
                    if not falls_back(exc):
                        raise
                    refusal = exc
                    continue
                if line is not None:
                    line.model = candidate.name
                return RoutedStream(stream, candidate.name, tried)
        finally:
            if line is not None:
                line.tried = tried
        raise refusal or self._all_cooling(route)

    def _all_cooling(self, route: Route) -> ProviderError:
        waits = [r.cooldown.retry_after() for r in route.chain if r.cooldown is not None]
        error = UpstreamUnavailable(
            f"model {route.name} and its fallbacks are all cooling down after refusals"
        )
        error.retry_after = min(waits, default=1)
        return error


async def _attempt(route: Route, request: GenerateRequest) -> ProviderStream:
    """Ask one entry, and tell its cooldown how that went."""
    cooldown = route.cooldown
    try:
        stream = await route.provider.open(route.request_for(request))
    except ProviderError as exc:
        if not falls_back(exc):
            if cooldown is not None:
                cooldown.accepted()  # it answered: the refusal is the client's own doing
            raise
        if cooldown is not None:
            cooldown.refused()
        log.warning("model %s refused before answering: %s", route.name, exc.detail)
        raise
    except BaseException:
        if cooldown is not None:
            cooldown.abandoned()
        raise
    if cooldown is not None:
        cooldown.accepted()
    return stream
