"""The Responses API's store on SQLite and PostgreSQL: chains followed back through
`previous_response_id` (branches apart), owners, input items, deletion."""

from __future__ import annotations

import uuid

from streamchat.store import ItemRow, NewResponse, ResponseStore, Store


async def new(
    responses: ResponseStore, text: str, *, uid: int = 7, previous: str | None = None
) -> str:
    rid = f"resp_{uuid.uuid4().hex}"
    conversation_id = None
    if previous is not None:
        found = await responses.chain(previous, uid)
        assert found is not None
        conversation_id = found[0]
    answer = await responses.begin(
        NewResponse(
            response_id=rid,
            uid=uid,
            title=text,
            previous_response_id=previous,
            conversation_id=conversation_id,
            inputs=[ItemRow("user", text, f'[{{"id":"{text}"}}]')],
            model="m",
            stream_id=rid[5:],
            request="{}",
        )
    )
    assert answer is not None
    await responses.finish(rid, answer, f'[{{"re":"{text}"}}]', "{}")
    return rid


async def test_a_chain_is_its_own_turns_not_its_branches(store: Store) -> None:
    responses = ResponseStore(store)
    one = await new(responses, "one")
    two = await new(responses, "two", previous=one)
    await new(responses, "branch", previous=one)
    three = await new(responses, "three", previous=two)
    found = await responses.chain(three, 7)
    assert found is not None
    conversation_id, rows = found
    # The answers are still `streaming` (only the group writer finishes them): inputs only.
    assert [row.content for row in rows] == ["one", "two", "three"]
    assert (await responses.chain(one, 7)) == (conversation_id, [rows[0]])
    assert await responses.chain(three, 8) is None, "another uid's chain is not found"
    assert await responses.chain("resp_" + "0" * 32, 7) is None


async def test_owner_input_items_and_delete(store: Store) -> None:
    responses = ResponseStore(store)
    rid = await new(responses, "hello")
    stored = await responses.get(rid, 7)
    assert stored is not None
    assert stored.status == "streaming"
    assert stored.body == "{}"
    assert await responses.get(rid, 8) is None
    assert await responses.get(rid, None) is not None  # auth off, no uid named: anyone's
    assert await responses.input_items(rid, 7) == ['[{"id":"hello"}]']
    assert await responses.input_items(rid, 8) is None
    assert not await responses.delete(rid, 8)
    assert await responses.delete(rid, 7)
    assert await responses.get(rid, 7) is None
    assert await store.list_conversations(7, before=None, limit=10) == []
