"""What the routes take from the app: plain functions of the request, and the same as
annotated dependencies for FastAPI (one definition each; DirectRoutes' endpoints call the
functions, FastAPI's call them through `Depends`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel

from ..access.limits import Limiter
from ..access.ticket import Ticket, ticket_of
from ..config import Settings
from ..providers.router import Router
from ..schemas import MAX_INT
from ..service.chat import ChatService
from ..service.history import History

T = TypeVar("T")


def settings_of(request: Request) -> Settings:
    """The settings `create_app` was built with."""
    settings: Settings = request.app.state.settings
    return settings


def chat_of(request: Request) -> ChatService:
    """The chat service of this app."""
    chat: ChatService = request.app.state.chat
    return chat


def models_of(request: Request) -> Router:
    """The models this app serves (the provider the chat service was given)."""
    models: Router = request.app.state.models
    return models


def history_of(request: Request) -> History:
    """The conversation history of this app."""
    history: History = request.app.state.history
    return history


def limiter_of(request: Request) -> Limiter:
    """What counts and limits chat requests (per key, or per uid with auth off)."""
    limiter: Limiter = request.app.state.limiter
    return limiter


def ticket_from(request: Request) -> Ticket:
    """What the admission seam learned of this request (who asks, …)."""
    return ticket_of(request.scope)


def _in_loop(of: Callable[[Request], T]) -> Callable[[Request], Awaitable[T]]:
    """`of` as an async dependency, so that FastAPI calls it in the loop, not in a thread."""

    async def dependency(request: Request) -> T:
        return of(request)

    return dependency


SettingsDep = Annotated[Settings, Depends(_in_loop(settings_of))]
ChatDep = Annotated[ChatService, Depends(_in_loop(chat_of))]
HistoryDep = Annotated[History, Depends(_in_loop(history_of))]
ModelsDep = Annotated[Router, Depends(_in_loop(models_of))]
TicketDep = Annotated[Ticket, Depends(_in_loop(ticket_from))]
LimiterDep = Annotated[Limiter, Depends(_in_loop(limiter_of))]
OptionalUid = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_INT,
        description="User id (用户ID): with a user key, its own (may be left out); with a "
        "service key or without keys, the user the request is for",
    ),
]


class UidQuery(BaseModel):
    """The query of a POST route that DirectRoutes serves (server/direct.py): its `uid`."""

    uid: OptionalUid = None
