"""The Responses API on the embedded model: a streamed response and one continued from it."""

from __future__ import annotations

from openai import AsyncOpenAI

from .servers import ServerProcess
from .test_responses_api import checked


async def test_the_embedded_model_answers_and_continues(short_answers: ServerProcess) -> None:
    async with AsyncOpenAI(
        base_url=short_answers.url + "/v1", api_key="x", max_retries=0, timeout=120
    ) as client:
        stream = await client.responses.create(input="Say hello.", stream=True)
        events = checked([event async for event in stream])
        assert [e.sequence_number for e in events] == list(range(len(events)))
        first = events[-1].response
        # 24 tokens at most (local_max_tokens): a longer answer is cut, and says so.
        assert first.status in ("completed", "incomplete")
        assert first.output_text.strip()
        second = await client.responses.create(
            input="Again.", previous_response_id=first.id, max_output_tokens=4
        )
        assert second.previous_response_id == first.id
        assert second.output_text.strip()
