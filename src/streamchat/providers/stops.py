"""Stop strings for providers that generate text themselves: cut the answer where one begins.

Text that might be the beginning of a stop string is held back until the next piece shows
whether it is, so a client never sees part of a stop string.

The scan runs on the engine's thread, once per token, so it is linear: each stop string has
a Knuth-Morris-Pratt automaton, and every character of the answer moves each automaton once
(amortized). Searching the held-back text again at every token, and trying every length of
overlap, cost the square of a stop string's length per token. Stop strings are bounded too
(`MAX_STOPS`, `MAX_STOP_CHARS`; a request over them is refused where it is validated).
"""

from __future__ import annotations

MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 256  # per stop string


class StopScanner:
    """Cuts the answer at the first stop string, holding back text that may begin one.

    When several stop strings end at the same character the one that began first wins; a
    stop string is found as soon as its last character comes, however the answer is cut
    into pieces.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [_Automaton(s) for s in stops if s]
        self._firsts = {s[0] for s in stops if s}
        self._pending = ""  # the held-back text: what may begin a stop string

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to send now, and whether a stop string was reached."""
        if not self._stops:
            return text, False
        skip = 0
        if not self._pending:  # every automaton at its start: skip to where one can move
            found = [i for i in (text.find(first) for first in self._firsts) if i >= 0]
            if not found:
                return text, False  # the usual piece: nothing in it can begin a stop string
            skip = min(found)
        window, base = self._pending + text, len(self._pending)
        for offset, char in enumerate(text[skip:], base + skip + 1):
            begins = [offset - len(a.stop) for a in self._stops if a.step(char)]
            if begins:
                self._reset()
                return window[: min(begins)], True
        held = max(a.state for a in self._stops)
        cut = len(window) - held
        ready, self._pending = window[:cut], window[cut:]
        return ready, False

    def flush(self, text: str) -> str:
        """What is left at the end of the answer."""
        rest = self._pending + text
        self._reset()
        return rest

    def _reset(self) -> None:
        self._pending = ""
        for automaton in self._stops:
            automaton.state = 0


class _Automaton:
    """Matches one stop string as characters come: `state` is the length of the longest end
    of the text so far that begins it."""

    __slots__ = ("_fail", "state", "stop")

    def __init__(self, stop: str) -> None:
        self.stop = stop
        self.state = 0
        # _fail[i]: the longest proper prefix of stop[: i + 1] that also ends it.
        self._fail = [0] * len(stop)
        k = 0
        for i in range(1, len(stop)):
            while k and stop[i] != stop[k]:
                k = self._fail[k - 1]
            if stop[i] == stop[k]:
                k += 1
            self._fail[i] = k

    def step(self, char: str) -> bool:
        """Take the next character; whether the stop string has just been completed."""
        stop, state = self.stop, self.state
        if state == len(stop):  # completed before: go on from its longest proper border
            state = self._fail[state - 1]
        while state and stop[state] != char:
            state = self._fail[state - 1]
        if stop[state] == char:
            state += 1
        self.state = state
        return state == len(stop)
