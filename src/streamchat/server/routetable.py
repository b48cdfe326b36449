"""The route table logged at start-up, in GoFrame's layout."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Mount

Row = tuple[str, str, str, str, str]


def rows(routes: Iterable[BaseRoute], address: str, middleware: str) -> list[Row]:
    """(address, method, route, handler, middleware) for every route, sorted by route."""
    table: list[Row] = []
    # FastAPI keeps included routers as such; iter_route_contexts flattens them.
    for route in iter_route_contexts(list(routes)):
        original, path, endpoint = route.original_route, route.path or "", route.endpoint
        if isinstance(original, Mount):
            table.append((address, "ALL", path + "/*", type(original.app).__name__, ""))
        elif endpoint is not None:
            methods = ",".join(sorted((route.methods or {"ALL"}) - {"HEAD"}))
            handler = f"{endpoint.__module__}.{endpoint.__qualname__}"
            table.append((address, methods, path, handler, middleware))
    return sorted(table, key=lambda row: (row[2], row[1]))


def render(table: list[Row]) -> str:
    """The table as text, one separator line between rows."""
    header: Row = ("ADDRESS", "METHOD", "ROUTE", "HANDLER", "MIDDLEWARE")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(5)]
    separator = "|".join("-" * (w + 2) for w in widths)

    def line(row: Row) -> str:
        return "|".join(f" {cell:<{w}} " for cell, w in zip(row, widths, strict=True)).rstrip()

    out = [line(header), separator]
    for row in table:
        out += [line(row), separator]
    return "\n".join(out)
