"""Reading a server's /metrics in the tests: Prometheus text into samples."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = list[tuple[str, dict[str, str], float]]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    """Every sample of `url`'s /metrics (asserting it answers 200 in Prometheus text)."""
    async with http.get(url + "/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(
        v for n, got, v in samples if n == name and all(got.get(k) == w for k, w in labels.items())
    )


def names(samples: Samples) -> set[str]:
    """The sample names present."""
    return {name for name, _, _ in samples}
