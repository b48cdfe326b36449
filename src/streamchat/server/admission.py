"""The admission seam: every HTTP request passes here before any route answers it.

It sits inside TraceMiddleware and outside DirectRoutes and FastAPI's router, so the two
routes DirectRoutes serves, FastAPI's routes, the mounted assets and unknown paths all go
through it alike. For each request it makes a `Ticket` (access/ticket.py) and runs the
gates in order (today: identity, or the guards of auth off). A gate fills the ticket in,
or refuses the request by raising a `Failure`, which is answered here through the same
handler as a route's (server/handlers.py), so a refusal has the same status, envelope and
headers whichever way the route would have been served. Headers the gates add to the
ticket go out with the response's first bytes.

Checks that need the parsed body (the rate limits, which count per uid with auth off) run
in the two chat endpoints, which both ways of serving call; metrics are reported by the
service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..access.ticket import Ticket, api_of, route_path
from ..errors import Failure
from . import handlers


class Gate(Protocol):
    """One check of the seam: fill in the ticket, or raise a `Failure` to refuse."""

    async def admit(self, ticket: Ticket, scope: Scope) -> None:
        """Admit the request `ticket` stands for, or raise a `Failure`."""
        ...


class Admission:
    """ASGI middleware: a ticket for every request, the gates, then the app."""

    def __init__(self, app: ASGIApp, gates: Sequence[Gate] = ()) -> None:
        self.app = app
        self.gates = list(gates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # No websocket route exists; one under the APIs would escape the gates.
            if scope["type"] == "websocket" and api_of(route_path(scope)) is not None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        # The path the router matches (without any root path), so both agree on the API.
        path = route_path(scope)
        ticket = Ticket(method=scope["method"], path=path, api=api_of(path))
        scope.setdefault("state", {})["ticket"] = ticket
        try:
            for gate in self.gates:
                await gate.admit(ticket, scope)
        except Failure as failure:
            response = handlers.respond(Request(scope), failure)
            await response(scope, receive, _with_headers(send, ticket))
            return
        await self.app(scope, receive, _with_headers(send, ticket))


def _with_headers(send: Send, ticket: Ticket) -> Send:
    """`send` that adds the ticket's headers to the response's start (none: `send` itself)."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            if ticket.headers:
                message["headers"] = [*message.get("headers", ()), *ticket.headers]
            for call in ticket.on_response:
                call(message["status"])
        await send(message)

    return send_with_headers


def who_asked(scope: Scope) -> tuple[str, str]:
    """The uid and key prefix the gates found for a request, for its access line; "-" for
    what is unknown (auth off, an open route, a request refused before identity)."""
    ticket = scope.get("state", {}).get("ticket")
    principal = ticket.principal if isinstance(ticket, Ticket) else None
    if principal is None:
        return "-", "-"
    uid = "-" if principal.uid is None else str(principal.uid)
    return uid, principal.key_prefix or "-"
