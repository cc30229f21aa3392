"""A small LRU cache of clients for :func:`~vman_magic.complete` and :func:`~vman_magic.acomplete`.

The module-level calls keep one client (one connection pool) per server,
key, timeout and retry count, so a loop of ``complete()`` calls reuses its
connection. Keeping them *forever* made memory grow with every distinct
setting (1,000 timeouts: +819 MB), so at most :data:`MAX_CLIENTS` are kept;
the least recently used one is closed when another is needed, but only once
no call is still using it (a call in another thread must not lose its
connection under it).

Standard library only; the caller closes what :meth:`ClientCache.take` and
:meth:`ClientCache.give_back` hand back, outside the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["MAX_CLIENTS", "ClientCache"]

#: How many clients ``complete()`` keeps (per event loop for ``acomplete()``).
MAX_CLIENTS = 8

C = TypeVar("C")


class ClientCache(Generic[C]):
    """LRU of clients by key, with a count of calls using each; thread-safe."""

    def __init__(self, size: int = MAX_CLIENTS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, C] = OrderedDict()
        self._busy: dict[int, int] = {}
        self._evicted: dict[int, C] = {}

    def __len__(self) -> int:
        return len(self._items)

    def take(self, key: Hashable, make: Callable[[], C]) -> tuple[C, list[C]]:
        """The client for ``key`` (made if needed), marked busy; and the evicted idle clients to close."""
        with self._lock:
            client = self._items.get(key)
            if client is None:
                client = self._items[key] = make()
            self._items.move_to_end(key)
            self._busy[id(client)] = self._busy.get(id(client), 0) + 1
            to_close: list[C] = []
            while len(self._items) > self.size:
                _, old = self._items.popitem(last=False)
                if self._busy.get(id(old), 0):
                    self._evicted[id(old)] = old  # closed by give_back when its last call ends
                else:
                    to_close.append(old)
            return client, to_close

    def give_back(self, client: C) -> C | None:
        """Mark one call on ``client`` finished; return it when it was evicted and is now idle (close it)."""
        with self._lock:
            left = self._busy.get(id(client), 1) - 1
            if left > 0:
                self._busy[id(client)] = left
                return None
            self._busy.pop(id(client), None)
            return self._evicted.pop(id(client), None)

    def drain(self) -> list[C]:
        """Forget every client and return them all (at exit, to close them)."""
        with self._lock:
            clients = [*self._items.values(), *self._evicted.values()]
            self._items.clear()
            self._evicted.clear()
            self._busy.clear()
            return clients
