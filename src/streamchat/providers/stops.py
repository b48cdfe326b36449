"""Stop strings for providers that generate text themselves: cut the answer where one begins.

Text that might be the beginning of a stop string is held back until the next piece shows
whether it is, so a client never sees part of a stop string.
"""

from __future__ import annotations


class StopScanner:
    """Cuts the answer at the first stop string, holding back text that may begin one."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to send now, and whether a stop string was reached."""
        if not self._stops:
            return text, False
        self._pending += text
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            ready, self._pending = self._pending[: min(hits)], ""
            return ready, True
        cut = len(self._pending) - max(_overlap(self._pending, s) for s in self._stops)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return ready, False

    def flush(self, text: str) -> str:
        """What is left at the end of the answer."""
        rest, self._pending = self._pending + text, ""
        return rest


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that begins `stop`."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0
