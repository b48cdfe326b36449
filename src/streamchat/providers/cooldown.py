"""When a model of the models file is skipped: after N refusals in a row, for a while.

A circuit breaker in three states. Closed: every request may try the entry. Open (N refusals
in a row, `STREAMCHAT_MODEL_COOLDOWN_FAILURES`): it is skipped for
`STREAMCHAT_MODEL_COOLDOWN_SECONDS`. Then half-open: one request probes it, and the others
still skip it until the probe's verdict — accepted closes it, refused opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Cooldown:
    """One entry's run of refusals and whether it is cooling down."""

    __slots__ = ("_clock", "_limit", "_probing", "_seconds", "_until", "failures")

    def __init__(
        self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = failures
        self._seconds = seconds
        self._clock = clock
        self._until = 0.0
        self._probing = False
        self.failures = 0  # refusals in a row

    def admits(self) -> bool:
        """Whether this request may try the entry (and, once cooled, be its one probe)."""
        if self.failures < self._limit:
            return True
        if self._probing or self._clock() < self._until:
            return False
        self._probing = True
        return True

    def cooling(self) -> bool:
        """Whether requests skip the entry now."""
        if self.failures < self._limit:
            return False
        return self._probing or self._clock() < self._until

    def retry_after(self) -> int:
        """Whole seconds until the entry is probed again (at least 1)."""
        return max(1, int(self._until - self._clock() + 0.999))

    def refused(self) -> None:
        """The entry refused before its first token: one more in the run."""
        self._probing = False
        self.failures += 1
        if self.failures >= self._limit:
            self._until = self._clock() + self._seconds

    def accepted(self) -> None:
        """The entry answered: the run is over."""
        self._probing = False
        self.failures = 0

    def abandoned(self) -> None:
        """The attempt ended without a verdict (its client left): the next request probes."""
        self._probing = False
