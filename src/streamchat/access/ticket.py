"""What the admission seam learned of one request, for the routes to read.

The seam (server/admission.py) makes a `Ticket` for every HTTP request before any route
runs, lets each gate (identity, limits, metrics) fill it in or refuse the request, and
keeps it in the ASGI scope's state, where `ticket_of` finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from starlette.types import Scope

from ..store.keys import KeyLimits

OPENAI_PREFIX = "/v1"
NATIVE_PREFIX = "/api"


class Api(StrEnum):
    """The API a protected route belongs to; it picks the error shape and the key check."""

    NATIVE = "native"
    OPENAI = "openai"


KeyKind = Literal["user", "service"]


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is asking: the owner of the key the request carries (its uid, the key's id and
    display prefix, user or service, its own limits, the models it may use: None, every one)."""

    uid: int
    kind: KeyKind
    key_id: int
    key_prefix: str
    limits: KeyLimits = field(default_factory=KeyLimits)
    models: tuple[str, ...] | None = None


@dataclass(slots=True)
class Ticket:
    """One request as admitted: its API (None for the open routes), who asks, and headers
    the gates add to its response (set before the first byte of a stream)."""

    method: str
    path: str
    api: Api | None
    principal: Principal | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    on_response: list[Callable[[int], None]] = field(default_factory=list)
    """Called with the response's status as it starts (a key's last use: only if it served)."""


def allowed_models(ticket: Ticket) -> tuple[str, ...] | None:
    """The models the request's key may use; None: every one (or auth is off)."""
    return None if ticket.principal is None else ticket.principal.models


def api_of(path: str) -> Api | None:
    """The API of a path: every path under `/api/` or `/v1/` is protected, whatever route
    serves it (or none does: an unknown path is refused like a known one, before its 404)."""
    if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/"):
        return Api.OPENAI
    if path.startswith(NATIVE_PREFIX + "/"):
        return Api.NATIVE
    return None


def route_path(scope: Scope) -> str:
    """The path the router matches: the request's, without the root path it is mounted at
    (as Starlette's routing strips it), so a `--root-path` cannot move an API out of view."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def ticket_of(scope: Scope) -> Ticket:
    """The ticket the admission seam made for this request."""
    ticket: Ticket = scope["state"]["ticket"]
    return ticket
