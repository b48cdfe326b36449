"""Dependencies the routes declare as annotated types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..chat import ChatService
from ..config import Settings


def settings_of(request: Request) -> Settings:
    """The settings `create_app` was built with."""
    settings: Settings = request.app.state.settings
    return settings


def chat_of(request: Request) -> ChatService:
    """The chat service of this app."""
    chat: ChatService = request.app.state.chat
    return chat


# Async, so that FastAPI calls them in the loop (a plain function would go to a thread).
async def get_settings(request: Request) -> Settings:
    """The settings `create_app` was built with."""
    return settings_of(request)


async def get_chat(request: Request) -> ChatService:
    """The chat service of this app."""
    return chat_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ChatDep = Annotated[ChatService, Depends(get_chat)]
