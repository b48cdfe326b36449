"""The key cache against a real store: requests that come together for one key make one
lookup, and one that gives up does not end the others' lookup."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from streamchat.access.identity import KeyCache
from streamchat.access.keys import key_hash
from streamchat.store import Store
from streamchat.store.keys import KeyLimits, KeyStore


def count_key_lookups(store: Store) -> list[int]:
    counter = [0]

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            counter[0] += 1

    event.listen(store.engine.sync_engine, "before_cursor_execute", on_execute)
    return counter


async def new_key(keys: KeyStore, secret: str) -> str:
    digest = key_hash(secret)
    await keys.create(
        key_hash=digest, prefix=secret[:8], uid=7, kind="service", name=None, limits=KeyLimits()
    )
    return digest


async def test_requests_that_come_together_for_one_key_make_one_lookup(store: Store) -> None:
    keys = KeyStore(store.engine)
    digest = await new_key(keys, "sc-together-0123456789")
    lookups = count_key_lookups(store)
    cache = KeyCache(keys, ttl_seconds=60)
    records = await asyncio.gather(*(cache.find(digest) for _ in range(200)))
    assert {record.uid for record in records if record is not None} == {7}
    assert None not in records
    assert lookups[0] == 1
    # An unknown key's misses are shared the same way.
    unknown = key_hash("sc-unknown-0123456789")
    assert await asyncio.gather(*(cache.find(unknown) for _ in range(50))) == [None] * 50
    assert lookups[0] == 2


async def test_a_waiter_that_gives_up_does_not_end_the_others_lookup(store: Store) -> None:
    keys = KeyStore(store.engine)
    digest = await new_key(keys, "sc-patient-0123456789")
    cache = KeyCache(keys, ttl_seconds=60)
    impatient = asyncio.ensure_future(cache.find(digest))
    patient = asyncio.ensure_future(cache.find(digest))
    await asyncio.sleep(0)
    impatient.cancel()
    record = await patient
    assert record is not None
    assert record.uid == 7
