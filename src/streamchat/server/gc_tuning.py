"""The garbage collector's settings for a server process that holds thousands of streams.

With CPython's defaults a young collection runs every 700 container objects allocated (net of
those freed), and every tenth one examines the middle generation too. A server streaming to
thousands of clients allocates fast and keeps much of it alive for the length of a stream, so
the collector kept examining the same live stream state: at C=5000 it took a third of the
server's CPU, and a full collection paused the event loop for about 300 ms (measured with
gc.callbacks; docs/performance.md). Most objects here are freed by reference counting; the
collector is only needed for the rare reference cycle, which a less frequent young
collection still catches.
"""

from __future__ import annotations

import gc

# Net allocations between young collections; each then takes tens of milliseconds at C=5000
# instead of a fraction of one hundreds of times a second.
YOUNG_THRESHOLD = 100_000
# Young collections per middle one, middle per full one (CPython: 10 and 10).
OLDER_THRESHOLDS = (20, 20)


def tune_for_serving() -> None:
    """Collect less often, and never examine what exists once the app is built.

    `gc.freeze()` moves every object alive now (modules, classes, the app and its routes)
    to a generation the collector skips; call it once start-up has built them.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
