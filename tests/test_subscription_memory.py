"""A long-lived subscription does not grow memory per event (graphql-core 3.3's per-event memo)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

from bff.auth import Viewer
from realtime import channels
from resolvers.context import Context
from resolvers.rows import MessageRow, UserRow

SUBSCRIPTION = 'subscription { messageAdded(roomId: "1") { id body author { id handle } } }'


async def test_memory_stays_flat_over_thousands_of_events(app: Any, database_url: str) -> None:
    services = app.state.services
    member = int(await services.db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = 1"))
    author_row = await services.db.fetch_one("SELECT * FROM users WHERE id = :u", {"u": member})
    assert author_row is not None
    author = UserRow.from_db(author_row)
    context = Context(db=services.db, broker=services.broker, settings=services.settings, tokens=services.tokens,
                      viewer=Viewer(member, expires_at=4e9))  # fmt: skip
    stream = await services.schema.subscribe(SUBSCRIPTION, context_value=context)
    message = MessageRow(1, 1, member, "x", author.created_at, "c")

    consumed = 0

    async def consume(count: int) -> None:
        nonlocal consumed
        for _ in range(count):
            result = await anext(stream)
            assert result.errors is None, result.errors
            consumed += 1

    async def round_trip(start: int, count: int) -> None:
        consumer = asyncio.create_task(consume(count))
        async with asyncio.timeout(60):
            while not services.broker.hub.channels():  # live once it holds the channel
                await asyncio.sleep(0.01)
            target = consumed
            for i in range(start, start + count):
                event = {"message": {**message.to_event(), "id": i}, "author": author.to_event()}
                await services.broker.publish(channels.chat_room(1), channels.encode(event))
                target += 1
                if target % 100 == 0:  # stay within the subscriber's bounded queue
                    while consumed < target:
                        await asyncio.sleep(0.001)
            await consumer

    await round_trip(1, 200)  # warm up caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await round_trip(10_000, 3_000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # Before the fix this grew ~1 KB per event (3 MB here); allow noise well below that.
    assert grown < 600_000, grown
    await stream.aclose()
