"""`serve --workers N`: uvicorn's supervisor, which also forgets the metrics of dead workers."""

from __future__ import annotations

import socket
from typing import Any

from prometheus_client.multiprocess import mark_process_dead
from uvicorn.supervisors import Multiprocess


class Workers(Multiprocess):
    """uvicorn's `Multiprocess`; when it replaces a worker that died, that worker's live gauges
    (streams running, requests waiting) are removed from the shared metrics directory, or
    they would count forever. Its counters and histograms stay: totals never go down."""

    def __init__(self, config: Any, sockets: list[socket.socket], metrics_dir: str | None) -> None:
        super().__init__(config, sockets=sockets)
        self._metrics_dir = metrics_dir

    def keep_subprocess_alive(self) -> None:
        """Restart dead workers (uvicorn), then forget their gauges."""
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        if self._metrics_dir is None:
            return
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]
