"""Turning load generator results into the issue's checks, and the checks into a table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .scenarios import DIRECT, GO, NATIVE, OPENAI, RESPONSES, TOOLS, UI, Scenario, Target

TPS = "tokens_per_s"
Run = dict[str, Any]
Runs = dict[str, Run | None]  # target key -> loadgen result; None: the server lacks the route


@dataclass(frozen=True)
class Check:
    """One row: a metric for every target of a scenario, what it comes to, and its target."""

    scenario: str
    metric: str
    cells: dict[str, str]
    result: str
    target: str
    holds: bool | None  # None: reported, not judged

    def as_json(self) -> dict[str, Any]:
        """The check for the JSON result."""
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "values": self.cells,
            "result": self.result,
            "target": self.target,
            "holds": self.holds,
        }


def value(run: Run, path: str) -> float:
    """A number from a loadgen result by dotted path, e.g. `server.cpu_us_per_token`."""
    node: Any = run
    for part in path.split("."):
        node = node[part]
    return float(node)


def kilo(x: float) -> str:
    """Tokens per second, short: 281400 -> 281.4k."""
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def ms(x: float) -> str:
    """Milliseconds with a precision that suits their size."""
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


class _Rows:
    """Builds the checks of one scenario from its runs."""

    def __init__(self, scenario: Scenario, runs: Runs) -> None:
        self.scenario = scenario
        self.runs = runs
        self.rows: list[Check] = []
        direct = runs.get(DIRECT.key)
        self.direct = direct
        # streamchat's targets: the ones judged. The direct upstream and the Go passthrough
        # are the references they are measured against, in the same run.
        references = (DIRECT.key, GO.key)
        self.gateways = [
            t.key for t in scenario.targets if t.key not in references and runs.get(t.key)
        ]

    def add(
        self,
        metric: str,
        get: Callable[[Run], float],
        show: Callable[[float], str],
        *,
        derive: Callable[[float], float] | None = None,
        result: Callable[[float], str] = str,
        target: str = "—",
        ok: Callable[[float], bool] | None = None,
        gateways_only: bool = False,
    ) -> None:
        """A row: `get` reads each run, `derive` turns a gateway's figure into the judged one."""
        cells = {}
        for t in self.scenario.targets:
            run = self.runs.get(t.key)
            if run is None:
                cells[t.key] = "no route" if t.key in self.runs else "—"
            elif gateways_only and t.key == DIRECT.key:
                cells[t.key] = "—"
            else:
                cells[t.key] = show(get(run))
        derived = [
            (derive or (lambda x: x))(get(run))
            for key in self.gateways
            if (run := self.runs[key]) is not None
        ]
        holds = None if ok is None or not derived else all(ok(d) for d in derived)
        text = " / ".join(result(d) for d in derived) if derive or ok else ""
        self.rows.append(Check(self.scenario.key, metric, cells, text, target, holds))

    def ratio_to_direct(self, path: str) -> Callable[[float], float]:
        """Divide by the direct upstream's figure (NaN without one)."""
        return self.ratio_to(DIRECT.key, path)

    def ratio_to(self, key: str, path: str) -> Callable[[float], float]:
        """Divide by target `key`'s figure in this run (NaN without one)."""
        run = self.runs.get(key)
        base = value(run, path) if run else float("nan")
        return lambda x: x / base if base else float("nan")

    def per_target(
        self,
        metric: str,
        get: Callable[[Run], float],
        show: Callable[[float], str],
        derive: Callable[[float], float],
        unit: str,
        most: dict[str, float],
        gateways_only: bool = False,
    ) -> None:
        """A row judged against a limit of each streamchat target's own (`most`, by key)."""
        self.add(metric, get, show, gateways_only=gateways_only)
        row = self.rows[-1]
        judged = [
            (key, derive(get(run)))
            for key in self.gateways
            if key in most and (run := self.runs[key]) is not None
        ]
        limits = " / ".join(f"≤ {most[key]:g}{unit}" for key, _ in judged)
        self.rows[-1] = Check(
            row.scenario,
            metric,
            row.cells,
            " / ".join(f"{x:.2f}{unit}" for _, x in judged),
            limits or "—",
            all(x <= most[key] for key, x in judged) if judged else None,
        )

    def added_to_direct(self, path: str) -> Callable[[float], float]:
        """Subtract the direct upstream's figure."""
        base = value(self.direct, path) if self.direct else float("nan")
        return lambda x: x - base

    def share(
        self,
        base: Callable[[float], float],
        of: str,
        digits: int,
        least: float = 0,
        note: str = "—",
    ) -> None:
        """Tokens/s, and each gateway's divided by `base` (judged when `least` is given)."""
        self.add(
            "tokens/s",
            lambda x: value(x, TPS),
            kilo,
            derive=base,
            result=lambda x: f"{x:.{digits}f}× {of}",
            target=f"≥ {least}×" if least else note,
            ok=(lambda x: x >= least) if least else None,
        )

    def added(self, metric: str, path: str, most: float, digits: int) -> None:
        """A latency in ms, and what each gateway adds to the direct upstream's."""
        self.add(
            metric,
            lambda x: value(x, path),
            ms,
            derive=self.added_to_direct(path),
            result=lambda x: f"+{x:.{digits}f} ms",
            target=f"≤ +{most:g} ms",
            ok=lambda x: x <= most,
        )

    def at_most(
        self,
        metric: str,
        get: Callable[[Run], float],
        unit: str,
        most: float | None,
        show: Callable[[float], str] = lambda x: f"{x:.1f}",
        gateways_only: bool = False,
    ) -> None:
        """A figure each gateway must keep under `most` (None: reported only)."""
        self.add(
            metric,
            get,
            show,
            derive=lambda x: x,
            result=lambda x: f"{show(x)} {unit}",
            target=f"≤ {most:g} {unit}" if most is not None else "—",
            ok=(lambda x: x <= most) if most is not None else None,
            gateways_only=gateways_only,
        )

    def none(self, metric: str, path: str) -> None:
        """A count that must be 0 for every gateway."""
        self.add(
            metric,
            lambda x: value(x, path),
            lambda x: f"{x:.0f}",
            derive=lambda x: x,
            result=lambda x: f"{x:.0f}",
            target="0",
            ok=lambda x: x == 0,
        )


def _memory_kb(concurrency: int) -> Callable[[Run], float]:
    def per_stream(run: Run) -> float:
        grown = value(run, "server.rss_peak_kb") - value(run, "server.rss_idle_kb")
        return grown / concurrency

    return per_stream


# Issue 18: a server once started (and warmed up by one request), before any load, in MB.
IDLE_RSS_MB = 80


def _idle_mb(run: Run) -> float:
    return value(run, "server.rss_idle_kb") / 1024


def _cores(run: Run) -> str:
    return "/".join(f"{x:.0f}" for x in run["cores_busy_pct"])


def _cut_waiting(run: Run) -> float:
    # Runs recorded before the load generator counted them have no such figure.
    return float(run["streams"].get("cut_before_first_token", "nan"))


def _cpu_per_token(run: Run) -> float:
    return value(run, "server.cpu_us_per_token")


# Issue 18: CPU per token against the Go passthrough's, /v1 at par, /api/chat (which saves
# the conversation) within 1.2x.
CPU_OF_GO = {"openai": 1.0, "api": 1.2}


def _burst(r: _Rows) -> None:
    r.share(r.ratio_to_direct(TPS), "direct", 2)
    r.per_target(
        "gateway CPU µs/token",
        _cpu_per_token,
        lambda x: f"{x:.1f}",
        r.ratio_to(GO.key, "server.cpu_us_per_token"),
        "× Go",
        CPU_OF_GO,
        gateways_only=True,
    )
    # Issue 22: a tool-call stream costs no more CPU per token than a text stream; issue 27:
    # nor a stored response than /v1, nor the UI stream than /api/chat (each within the 10%
    # that separates two runs of the same route).
    _at_sibling_cost(r, TOOLS, OPENAI, "tool-call CPU/token × text's")
    _at_sibling_cost(r, RESPONSES, OPENAI, "Responses CPU/token × /v1's")
    _at_sibling_cost(r, UI, NATIVE, "UI stream CPU/token × /api/chat's")


def _at_sibling_cost(r: _Rows, target: Target, sibling: Target, metric: str) -> None:
    """A row: `target`'s CPU per token over `sibling`'s in the same run, at most 1.1×."""
    run, base = r.runs.get(target.key), r.runs.get(sibling.key)
    if run is None or base is None:
        return
    ratio = _cpu_per_token(run) / _cpu_per_token(base)
    cells = {t.key: "—" for t in r.scenario.targets}
    cells[target.key] = f"{ratio:.2f}"
    r.rows.append(Check(r.scenario.key, metric, cells, f"{ratio:.2f}×", "≤ 1.1×", ratio <= 1.1))


def _single(r: _Rows) -> None:
    r.added("TTFT p50 ms", "ttft.p50_ms", 0.5, 2)


def _no_more_cut_than_direct(r: _Rows) -> None:
    """Streams cut by the run's end before their first token: none beyond the direct's."""
    base = _cut_waiting(r.direct) if r.direct else float("nan")
    r.add(
        "streams cut before their 1st token",
        _cut_waiting,
        lambda x: f"{x:.0f}",
        derive=lambda x: x - base,
        result=lambda x: f"{x:+.0f} vs direct",
        target="≤ direct's",
        ok=lambda x: x <= 0,
    )


def _many(r: _Rows) -> None:
    r.share(r.ratio_to_direct(TPS), "direct", 3, least=0.95)
    r.added("gap p99 ms", "gap.p99_ms", 50, 1)
    r.none("streams failed before 1st token", "errors.failed_before_first_token")
    _no_more_cut_than_direct(r)


def _overload(r: _Rows) -> None:
    r.share(r.ratio_to_direct(TPS), "direct", 2)
    p99 = "ttft.p99_ms"
    r.add(
        "TTFT p99 ms",
        lambda x: value(x, p99),
        ms,
        derive=r.ratio_to_direct(p99),
        result=lambda x: f"{x:.2f}× direct",
        target="≤ 1.3×",
        ok=lambda x: x <= 1.3,
    )
    # Their wait so far is in the TTFT figures above, as a lower bound.
    r.add("streams cut before their 1st token", _cut_waiting, lambda x: f"{x:.0f}")
    r.at_most("memory KB per open stream", _memory_kb(r.scenario.concurrency), "KB", 64)


def _followed(run: Run) -> float:
    follow = run.get("follow")
    return float(follow["of_requesters"]) if follow else float("nan")


def _redis(r: _Rows) -> None:
    r.share(r.ratio_to_direct(TPS), "direct", 3, least=0.95)
    r.add(
        "followers' tokens / requesters'",
        _followed,
        lambda x: "—" if x != x else f"{x:.3f}",
        target="report",
    )
    r.at_most("gateway CPU µs/token", _cpu_per_token, "µs", None, gateways_only=True)


def _workers(r: _Rows) -> None:
    one = r.runs.get("workers1")
    base = value(one, TPS) if one else float("nan")
    r.share(lambda x: x / base, "1 worker", 2, note="report")
    r.at_most("gateway CPU µs/token", _cpu_per_token, "µs", None, gateways_only=True)


def _embedded(r: _Rows) -> None:
    if r.direct is None:
        r.rows.append(Check("embedded", "skipped", {}, "llama-cpp-python not installed", "", None))
        return
    rate = "median_tokens_per_s"
    r.add(
        "tokens/s (median)",
        lambda x: value(x, rate),
        lambda x: f"{x:.1f}",
        derive=r.ratio_to_direct(rate),
        result=lambda x: f"{x:.3f}× direct",
        target="≥ 0.95×",
        ok=lambda x: x >= 0.95,
    )
    r.add("first token ms (median)", lambda x: value(x, "median_first_token_ms"), ms)
    r.add("tokens per answer (median)", lambda x: value(x, "median_tokens"), lambda x: f"{x:.0f}")


def _seconds(x: float) -> str:
    return "—" if x != x else f"{x:.2f}"


def _others(run: Run, path: str) -> float:
    """A figure of the others' gaps when a user arrived; NaN for one user (nobody else)."""
    return value(run, path) if run["users"] > 1 else float("nan")


ARRIVING_S = 1.5  # issue 27: a user arriving while the others are mid-answer
FOLLOW_UP_S = 1.0  # issue 17: a follow-up in a long conversation, others in between


def _embedded_users(r: _Rows) -> None:
    if not r.gateways:
        r.rows.append(
            Check(r.scenario.key, "skipped", {}, "llama-cpp-python not installed", "", None)
        )
        return
    r.add(
        "aggregate tokens/s",
        lambda x: value(x, "aggregate_tokens_per_s"),
        lambda x: f"{x:.1f}",
        derive=r.ratio_to(r.gateways[0], "aggregate_tokens_per_s"),
        result=lambda x: f"{x:.2f}×",
        target="≥ 0.9× one user's",
        ok=lambda x: x >= 0.9,
    )
    r.add(
        "per-user tokens/s (median)",
        lambda x: value(x, "per_user_tokens_per_s"),
        lambda x: f"{x:.1f}",
    )
    r.at_most(
        "first token s, arriving mid-answer",
        lambda x: value(x, "arriving_first_token_s"),
        "s",
        ARRIVING_S,
        show=lambda x: f"{x:.2f}",
    )
    r.add("others' gap p99 s", lambda x: _others(x, "others_gap_p99_s"), _seconds)
    meanwhile = "others_gap_meanwhile_s"
    r.add("others' longest gap meanwhile s", lambda x: _others(x, meanwhile), _seconds)
    follow = r.runs.get("follow_up")
    if follow is not None:
        last = r.gateways[-1]
        seconds = value(follow, "follow_up_first_token_s")
        r.rows.append(
            Check(
                r.scenario.key,
                f"follow-up first token s ({follow['history_tokens']} tokens of history)",
                {last: f"{seconds:.2f}"},
                f"{seconds:.2f} s",
                f"≤ {FOLLOW_UP_S:g} s",
                seconds <= FOLLOW_UP_S,
            )
        )


_SCENARIO_ROWS: dict[str, Callable[[_Rows], None]] = {
    "burst": _burst,
    "single": _single,
    "many": _many,
    "overload": _overload,
    "redis": _redis,
    "workers": _workers,
    "embedded": _embedded,
    "embedded-users": _embedded_users,
}


def checks(scenario: Scenario, runs: Runs) -> list[Check]:
    """The rows of one scenario: its own, then errors, CPU and how busy the machine was."""
    r = _Rows(scenario, runs)
    _SCENARIO_ROWS[scenario.key](r)
    if scenario.key.startswith("embedded"):  # no load generator run: no errors, CPU or cores
        return r.rows
    r.none("errors", "errors.total")
    r.add("server CPU %", lambda x: value(x, "server.cpu_pct"), lambda x: f"{x:.0f}%")
    # Judged for one process; --workers 2 is the supervisor and its workers together, the
    # redis row two nodes.
    most = None if scenario.key in ("workers", "redis") else IDLE_RSS_MB
    r.at_most("idle RSS MB (before load)", _idle_mb, "MB", most, gateways_only=True)
    cores = {t: _cores(run) for t, run in runs.items() if run is not None}
    r.rows.append(Check(scenario.key, "cores busy % (machine)", cores, "", "", None))
    return r.rows


def render(blocks: list[tuple[Scenario, list[Check]]]) -> str:
    """The table: one block per scenario, its targets as columns."""
    out: list[str] = []
    for scenario, rows in blocks:
        header = ["metric", *(t.label for t in scenario.targets), "result", "target", "holds"]
        body = [
            [
                row.metric,
                *(row.cells.get(t.key, "—") for t in scenario.targets),
                row.result,
                row.target,
                {True: "yes", False: "NO", None: ""}[row.holds],
            ]
            for row in rows
        ]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        out.append(f"{scenario.key}: {scenario.title}")
        for line in [header, *body]:
            out.append(
                "  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
            )
        out.append("")
    judged = [row for _, rows in blocks for row in rows if row.holds is not None]
    failing = [f"{row.scenario} {row.metric}" for row in judged if not row.holds]
    out.append(f"targets holding: {len(judged) - len(failing)} of {len(judged)}")
    if failing:
        out.append("not holding: " + "; ".join(failing))
    return "\n".join(out)
