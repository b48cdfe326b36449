"""Serving the native API: a chat request becomes the next turn of a stored conversation."""

from __future__ import annotations

from collections.abc import Collection

from ...access.limits import FREE, Charge
from ...errors import Lang
from ...hub import Subscription
from ...schemas import ChatRequest
from ...service.chat import ChatService
from ...service.history import Turn
from .format import NativeFormat


async def start_chat(
    chat: ChatService,
    request: ChatRequest,
    uid: int,
    lang: Lang = "zh",
    charge: Charge = FREE,
    allowed: Collection[str] | None = None,
) -> Subscription:
    """Begin answering a native chat request for `uid`; return the subscription its response
    follows. `lang` is the language of the stream's `error` event, should the answer fail;
    `charge` is settled when it ends (or now, if it never begins); `allowed` is the models
    the key may use (None: every one)."""
    try:
        model = chat.resolve_model(request.model, allowed)
    except BaseException:
        await charge.settle(0)
        raise

    def native_format(turn: Turn) -> NativeFormat:
        return NativeFormat(
            uid=uid,
            conversation_id=turn.ids.conversation_id,
            message_id=turn.ids.answer_id,
            model=model,
            lang=lang,
        )

    return await chat.start_turn(
        uid=uid,
        conversation_id=request.conversation_id,
        message=request.message,
        model=model,
        make_format=native_format,
        charge=charge,
        api="native",
    )
