"""Bounded growth in the client: a few pooled clients at most, and one connection for many streamed calls."""

from __future__ import annotations

import asyncio

import pytest

import vman_magic
from vman_magic import Client
from vman_magic.client import client as _client
from vman_magic.client.pool import MAX_CLIENTS, ClientCache
from vman_magic.testing import serve

pytestmark = pytest.mark.timeout(60)


def test_streamed_calls_reuse_one_connection() -> None:
    """Five streamed calls on one client open one TCP connection at the server, not five."""
    with serve() as server, Client(base_url=server.base_url, model="vman-demo") as client:
        for i in range(5):
            assert client.complete(f"Call {i}", max_tokens=5, seed=i).text is not None
        assert server.stats.completions == 5 and server.stats.connections == 1


def test_async_streamed_calls_reuse_one_connection() -> None:
    """The same for AsyncClient."""

    async def main(base_url: str) -> None:
        async with vman_magic.AsyncClient(base_url=base_url, model="vman-demo") as client:
            for i in range(5):
                await client.complete(f"Call {i}", max_tokens=5, seed=i)

    with serve() as server:
        asyncio.run(main(server.base_url))
        assert server.stats.completions == 5 and server.stats.connections == 1


def test_module_level_complete_keeps_a_bounded_number_of_clients() -> None:
    """complete() with many distinct timeouts keeps at most MAX_CLIENTS clients, and closes the others."""
    with serve() as server:
        for i in range(3 * MAX_CLIENTS):
            vman_magic.complete("Hi", base_url=server.base_url, model="vman-demo", max_tokens=2, timeout=10 + i)
        assert len(_client._clients) <= MAX_CLIENTS
        kept = list(_client._clients._items.values())
        assert all(not c._http.is_closed for c in kept)


def test_an_evicted_client_in_use_is_closed_only_after_its_call() -> None:
    """A client pushed out of the cache while a call uses it is closed when that call gives it back."""
    closed: list[str] = []
    cache: ClientCache[str] = ClientCache(size=1)
    first, evicted = cache.take("a", lambda: "client-a")
    assert evicted == []
    second, evicted = cache.take("b", lambda: "client-b")
    assert evicted == [] and len(cache) == 1  # "a" is busy: not handed back for closing yet
    idle = cache.give_back(first)
    closed.append(idle or "")
    assert closed == ["client-a"] and cache.give_back(second) is None
