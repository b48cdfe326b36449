"""What becomes of an answer whose followers go: the detach grace, then it is stopped.

A stream's hooks (the hub calls them) stop its generation when it is cancelled, lost, or
left without followers for its grace; a background answer (grace `math.inf`) runs to its end.
"""

from __future__ import annotations

import asyncio
import logging
import math

from ..hub import Hooks, HubUnavailable, StreamHub
from .generation import Generation

log = logging.getLogger(__name__)


class Detach:
    """The hooks of the streams of one service: `generations` are its running answers,
    `background` the set its short tasks are kept in while they run."""

    def __init__(
        self,
        hub: StreamHub,
        generations: dict[str, Generation],
        background: set[asyncio.Task[None]],
    ) -> None:
        self._hub = hub
        self._generations = generations
        self._background = background

    def hooks(self, stream_id: str, grace: float) -> Hooks:
        """The hooks of a new stream whose answer outlives its last follower by `grace`."""
        return Hooks(
            on_idle=lambda: self._on_idle(stream_id, grace),
            on_cancel=lambda: self.stop(stream_id, "cancelled"),
            on_lost=lambda: self.stop(stream_id, "lost"),
        )

    def stop(self, stream_id: str, reason: str) -> None:
        """Stop a running answer (`cancelled`, `lost`, `interrupted`), if it still runs here."""
        generation = self._generations.get(stream_id)
        if generation is not None:
            generation.stop(reason)

    def _on_idle(self, stream_id: str, grace: float) -> None:
        """The last follower left: keep generating for the grace period, then give up.

        Followers are counted again when it expires (even with grace 0): on a shared hub a
        follower on another node, or one that came back meanwhile, keeps the answer going.
        """
        if math.isinf(grace):  # a background answer: it runs to its end
            return
        loop = asyncio.get_running_loop()
        loop.call_later(max(grace, 0), self._check_followers, stream_id, grace)

    def _check_followers(self, stream_id: str, grace: float) -> None:
        task = asyncio.create_task(self._abandon_if_unfollowed(stream_id, grace))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abandon_if_unfollowed(self, stream_id: str, grace: float) -> None:
        try:  # followers elsewhere that cannot be counted are not none: look again later
            if stream_id not in self._generations or await self._hub.followers(stream_id):
                return
        except HubUnavailable as exc:
            log.warning("stream %s: followers not counted (%s); checking again", stream_id, exc)
            return self._on_idle(stream_id, max(grace, 1.0))
        log.info("stream %s: no follower left, interrupting the generation", stream_id)
        self.stop(stream_id, "interrupted")
