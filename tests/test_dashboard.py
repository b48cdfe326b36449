"""deploy/grafana/streamchat.json: a Grafana dashboard whose every metric a live server has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .fakeupstream import FakeUpstream, Script
from .scrape import names, scrape
from .servers import ServerProcess
from .sseclient import FrameReader

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "streamchat.json"
METRIC = re.compile(r"\bstreamchat:[a-z0-9_]+")


def load() -> dict[str, Any]:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    assert isinstance(dashboard, dict)
    return dashboard


def test_the_dashboard_is_grafana_dashboard_json() -> None:
    dashboard = load()
    for key, kind in [("title", str), ("uid", str), ("schemaVersion", int), ("panels", list)]:
        assert isinstance(dashboard.get(key), kind), key
    assert dashboard["schemaVersion"] >= 36
    assert isinstance(dashboard["time"]["from"], str)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert isinstance(panel["title"], str)
        assert panel["title"]
        assert panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table"}
        assert set(panel["gridPos"]) >= {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] >= 0
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), target["expr"]


def plotted() -> set[str]:
    return {
        name
        for panel in load()["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }


def test_the_dashboard_plots_what_the_issue_asks_for() -> None:
    wanted = {
        "streamchat:time_to_first_token_seconds_bucket",
        "streamchat:generation_tokens_total",
        "streamchat:num_requests_running",
        "streamchat:num_requests_waiting",
        "streamchat:request_errors_total",
        "streamchat:rate_limited_total",
        "streamchat:store_write_seconds_bucket",
    }
    assert wanted <= plotted()


async def test_every_plotted_metric_is_in_a_live_servers_metrics(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    # A chat that ends, and one the upstream refuses: the labelled series then exist.
    upstream.reset(Script(tokens=["a", "b"]))
    async with http.post(server.url + "/api/chat", json={"uid": 1, "message": "hi"}) as response:
        await FrameReader(response).all()
    upstream.reset(Script(status=500))
    async with http.post(server.url + "/api/chat", json={"uid": 1, "message": "hi"}) as response:
        assert response.status == 502
    exposed = names(await scrape(http, server.url))
    assert plotted() <= exposed, plotted() - exposed
