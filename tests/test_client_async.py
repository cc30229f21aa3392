"""The async client: same answers as the sync one, plus cancellation that keeps the partial result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from test_client import KEY, Recorder, chunk, sse, stream_response

from vman_magic.client.client import AsyncClient
from vman_magic.client.retry import RetryPolicy
from vman_magic.core.errors import RateLimitError, StreamError
from vman_magic.core.models import Completion, CompletionBuilder, CompletionRequest


class Hanging(httpx.AsyncByteStream):
    """A body that sends some bytes and then waits forever, like a stalled model."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


def make_client(handler: Any, sleeps: list[float] | None = None) -> AsyncClient:
    recorded = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    return AsyncClient(
        base_url="https://api.vman.example",
        api_key=KEY,
        model="m",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(async_sleep=sleep, jitter=lambda lo, hi: hi),
    )


def test_async_stream_and_on_update() -> None:
    """An async streamed call joins the text and reports every chunk."""
    seen: list[str] = []

    async def main() -> Completion:
        async with make_client(Recorder(stream_response(sse(chunk("异"), chunk("步", finish="stop"))))) as client:
            return await client.complete("hi", on_update=lambda c: seen.append(c.text))

    result = asyncio.run(main())
    assert result.text == "异步" and seen == ["异", "异步"]


def test_async_retry_uses_the_async_sleep_hook() -> None:
    """Retries wait through the policy's async_sleep, honouring Retry-After, then give up with partial."""
    sleeps: list[float] = []
    server = Recorder(httpx.Response(429, json={"error": "slow"}, headers={"retry-after-ms": "1500"}))

    async def main() -> None:
        async with make_client(server, sleeps) as client:
            await client.complete("hi")

    with pytest.raises(RateLimitError) as info:
        asyncio.run(main())
    assert sleeps == [1.5, 1.5] and info.value.partial is not None


def test_async_eof_without_done_is_a_stream_error() -> None:
    """The async path applies the same end-of-stream rule as the sync one."""

    async def main() -> None:
        async with make_client(Recorder(stream_response(sse(chunk("half"), done=False)))) as client:
            await client.complete("hi")

    with pytest.raises(StreamError) as info:
        asyncio.run(main())
    assert info.value.partial is not None and info.value.partial.text == "half"


def test_cancel_closes_the_response_and_keeps_the_partial() -> None:
    """task.cancel() mid-stream closes the response, flags the builder's result and propagates."""
    body = Hanging(sse(chunk("before cancel"), done=False))
    server = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body))
    request = CompletionRequest.build("m", "hi")
    builder = CompletionBuilder(request)

    async def main() -> None:
        got_text = asyncio.Event()
        async with make_client(server) as client:
            task = asyncio.ensure_future(client.run(request, builder, on_update=lambda c: got_text.set()))
            await got_text.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    c = builder.completion
    assert c.text == "before cancel" and c.incomplete and isinstance(c.error, asyncio.CancelledError)
    assert body.closed


def test_async_models() -> None:
    """AsyncClient.models() lists the model ids."""
    server = Recorder(httpx.Response(200, json={"data": [{"id": "vman-demo"}]}))

    async def main() -> list[str]:
        async with make_client(server) as client:
            return await client.models()

    assert asyncio.run(main()) == ["vman-demo"]
