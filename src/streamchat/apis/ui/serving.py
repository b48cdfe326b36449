"""Serving the AI SDK's UI API: a `useChat` request becomes the next turn of the caller's
stored chat; its running answer can be followed from its start, or stopped.

The chat id is the client's, kept per user (store/ui_chats.py). The answer is generated as
every answer is (the service's hub, recorder, metrics with `api="ui"`); what differs is that
closing the POST does not stop it: the SDK's clients reconnect (`resume: true`) and stop on
purpose (`POST …/stop`), so an answer nobody follows runs on, for `DETACHED_SECONDS` at most.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from ...access.limits import FREE, Charge
from ...errors import Failure, Kind, Lang
from ...hub import StreamNotFound, Subscription
from ...providers.base import GenerateRequest
from ...service.chat import ChatService
from ...service.history import History, Turn
from ...store import StoreUnavailable
from ...store.ui_chats import Retry, UIChats
from .format import UIMessageFormat
from .protocol import UIChatRequest, UIMessage, text_part

log = logging.getLogger(__name__)

# How long an answer goes on with nobody following it (the POST closed, no resume yet): one
# the model is still writing after an hour has been forgotten by its page.
DETACHED_SECONDS = 3600.0


class UIChatServing:
    """The UI API's operations, for one app: start a turn, resume, stop, restore."""

    def __init__(
        self, chat: ChatService, history: History, chats: UIChats, *, max_message_chars: int
    ) -> None:
        self.chat = chat
        self.history = history
        self.chats = chats
        self.max_message_chars = max_message_chars

    async def start(
        self,
        request: UIChatRequest,
        uid: int,
        lang: Lang = "zh",
        charge: Charge = FREE,
        allowed: Collection[str] | None = None,
    ) -> Subscription:
        """Answer the request's last user message (or, to regenerate, the chat's last
        question again) as the next answer of chat `request.id` of `uid`; the subscription
        its response follows. `charge` is settled when the answer ends (or now, if it never
        begins)."""
        try:
            model = self.chat.resolve_model(request.model, allowed)
            replaced: str | None = None
            if request.trigger == "regenerate-message":
                begun, replaced = await self._again(request.id, uid, model)
            else:
                begun = await self._submit(request, uid, model)
        except BaseException:
            await charge.settle(0)
            raise
        fmt = UIMessageFormat(message_id=begun.ids.answer_id, model=model, lang=lang)
        try:
            subscription = await self.chat.generate(
                GenerateRequest(messages=begun.messages, model=model),
                fmt,
                recorder=self.history.recorder(begun),
                stream_id=begun.ids.stream_id,
                owner=uid,
                charge=charge,
                api="ui",
                detach_grace=DETACHED_SECONDS,
            )
        except BaseException as exc:
            await self._take_back(begun, exc, replaced is not None)
            raise
        if replaced is not None:
            try:
                await self._drop(replaced)
            except BaseException:  # the client left meanwhile: nobody will follow
                await subscription.close()
                raise
        return subscription

    async def _submit(self, request: UIChatRequest, uid: int, model: str) -> Turn:
        """Commit the question in its chat; a new chat is made by its first turn, in the
        same transaction (and taken back with it), as a native conversation is."""
        if request.message_id is not None:
            # Editing an earlier message would rewrite the stored history under the client.
            raise Failure(
                Kind.INVALID_REQUEST,
                "field_invalid",
                field="messageId",
                detail="editing an earlier message is not supported: send a new message",
            )
        text = question(request.last())
        if len(text) > self.max_message_chars:
            raise Failure(Kind.TOO_LONG, "message_too_long", limit=self.max_message_chars)
        conversation_id = await self.chats.find_for_turn(uid, request.id)
        if conversation_id is None:
            try:
                return await self.history.begin(
                    uid=uid, conversation_id=None, message=text, model=model, ui_chat_id=request.id
                )
            except StoreUnavailable:
                # The same client made it meanwhile (two tabs at once): theirs it is.
                conversation_id = await self.chats.find(uid, request.id)
                if conversation_id is None:
                    raise
        return await self.history.begin(
            uid=uid, conversation_id=conversation_id, message=text, model=model
        )

    async def _again(self, chat_id: str, uid: int, model: str) -> tuple[Turn, str]:
        """A new answer row for the chat's last question; the turn and the answer it
        replaces."""
        conversation_id = await self._conversation(chat_id, uid)
        retry = await self.chats.retry(conversation_id, model)
        if retry == "running":
            raise Failure(
                Kind.INVALID_REQUEST,
                "field_invalid",
                field="trigger",
                detail="an answer is still being generated in this chat: stop it first",
            )
        if retry == "nothing":
            raise Failure(
                Kind.INVALID_REQUEST,
                "field_invalid",
                field="trigger",
                detail="this chat has no answer to regenerate",
            )
        assert isinstance(retry, Retry)
        try:
            messages = await self.history.again(conversation_id, uid)
        except BaseException:
            await self._drop(retry.turn.answer_id)
            raise
        return Turn(retry.turn, messages), retry.replaced

    async def _take_back(self, turn: Turn, reason: BaseException, again: bool) -> None:
        """Undo a turn the model refused (DESIGN §8: a refusal writes nothing; a new chat's
        first turn takes its chat with it)."""
        if again:  # only the new answer row was written; the old answer stays
            try:
                await self.chats.drop_message(turn.ids.answer_id)
            except Failure as exc:
                log.warning("answer %s not taken back: %s", turn.ids.answer_id, exc.detail)
                self.history.recorder(turn).refused(reason)
            return
        await self.history.forget(turn, reason)

    async def _drop(self, message_id: str) -> None:
        try:
            await self.chats.drop_message(message_id)
        except Failure as exc:  # the chat keeps both answers; the stream goes on
            log.warning("replaced answer %s not deleted: %s", message_id, exc.detail)

    async def resume(self, chat_id: str, uid: int) -> Subscription | None:
        """The chat's running answer from its first chunk, or None when none is running.

        None too for a chat `uid` does not have (unknown, or another user's: the same answer):
        `useChat` with `resume: true` asks on every page load, a new chat's first included,
        and takes anything but a 204 or a stream for an error."""
        conversation_id = await self.chats.find(uid, chat_id)
        if conversation_id is None:
            return None
        stream_id = await self.chats.running_stream(conversation_id)
        if stream_id is None:
            return None
        try:
            return await self.chat.follow(stream_id, -1, uid)
        except StreamNotFound:  # ended and expired, or never reached the hub
            return None

    async def stop(self, chat_id: str, uid: int) -> bool:
        """Stop the chat's running answer, on whichever node runs it (its partial text is
        kept, as `cancelled`); False if none was running."""
        conversation_id = await self._conversation(chat_id, uid)
        stream_id = await self.chats.running_stream(conversation_id)
        if stream_id is None:
            return False
        try:
            return await self.chat.cancel(stream_id, uid)
        except StreamNotFound:
            return False

    async def restore(self, chat_id: str, uid: int) -> list[dict[str, object]]:
        """The chat's messages as `UIMessage`s, oldest first (an answer still running with
        the text saved so far, under the id its stream's `start` chunk carries)."""
        conversation_id = await self._conversation(chat_id, uid)
        stored = await self.history.messages(conversation_id, uid)
        return [
            {
                "id": message.id,
                "role": message.role,
                "parts": [text_part(message.content)] if message.content else [],
            }
            for message in stored.items
        ]

    async def _conversation(self, chat_id: str, uid: int) -> str:
        """The conversation `uid` calls `chat_id`; another user's is as unknown as none."""
        found = await self.chats.find(uid, chat_id)
        if found is None:
            raise Failure(Kind.NOT_FOUND, "conversation_not_found", conversation_id=chat_id)
        return found


def question(message: UIMessage | None) -> str:
    """The text of the last message, which must be the user's: its text parts, joined."""
    if message is None or message.role != "user":
        raise Failure(
            Kind.VALIDATION,
            "field_invalid",
            field="messages",
            detail="the last message must be the user's",
        )
    texts: list[str] = []
    for part in message.parts:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "file":
            raise Failure(
                Kind.VALIDATION,
                "field_invalid",
                field="parts",
                detail="file parts are not supported: send text",
            )
    text = "\n".join(texts)
    if not text.strip():
        raise Failure(Kind.VALIDATION, "message_required")
    return text
