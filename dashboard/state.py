"""Per-session server-side state (uploads), behind a small get/put interface.

The browser keeps only a random session id (a ``dcc.Store`` with ``storage_type="session"``,
so it lives as long as the tab); everything heavy stays here. The store is bounded: entries
expire after a time-to-live and the least recently used sessions are dropped first. A later
issue swaps :class:`MemoryStore` for a shared one (diskcache/Redis) for several workers:
only :class:`SessionStore`'s methods are used by the pages.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any


def new_token() -> str:
    """A random, unguessable id (128 bits), for sessions and uploads."""
    return secrets.token_urlsafe(16)


class MemoryStore:
    """A thread-safe, bounded, expiring key-value store of Python objects.

    Parameters
    ----------
    max_items : int
        Most entries kept; the least recently used go first.
    ttl_s : float
        Seconds an entry lives after its last use.
    """

    def __init__(self, max_items: int, ttl_s: float) -> None:
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` (refreshing its expiry), else ``default``."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            item = self._items.get(key)
            if item is None:
                return default
            self._items[key] = (now, item[1])
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, dropping the oldest entries beyond the bound."""
        now = time.monotonic()
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            self._expire(now)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return len(self._items)

    def _expire(self, now: float) -> None:
        while self._items:
            key, (last, _) = next(iter(self._items.items()))
            if now - last <= self.ttl_s:
                break
            self._items.popitem(last=False)


class SessionStore:
    """What one browser session owns: its uploads (recordings and pending files).

    Keys are namespaced by session id, so a session can never read another's entries: an
    upload id is only resolved together with the session that made it.
    """

    def __init__(self, max_sessions: int = 64, ttl_s: float = 7200.0) -> None:
        self._store = MemoryStore(max_sessions, ttl_s)
        self._lock = threading.Lock()

    def _session(self, session_id: str, create: bool) -> dict[str, Any] | None:
        if not session_id or not isinstance(session_id, str):
            return None
        data = self._store.get(session_id)
        if data is None and create:
            data = {}
            self._store.put(session_id, data)
        return data

    def get(self, session_id: str, key: str, default: Any = None) -> Any:
        """The session's value under ``key``, else ``default``."""
        data = self._session(session_id, create=False)
        if data is None:
            return default
        return data.get(key, default)

    def put(self, session_id: str, key: str, value: Any, *, max_keys: int = 8) -> None:
        """Store ``value`` for the session; a session keeps at most ``max_keys`` entries."""
        with self._lock:
            data = self._session(session_id, create=True)
            if data is None:
                raise ValueError("a session id is needed to keep data on the server")
            data.pop(key, None)
            data[key] = value
            while len(data) > max_keys:
                data.pop(next(iter(data)))

    def delete(self, session_id: str, key: str) -> None:
        """Forget one entry of a session."""
        data = self._session(session_id, create=False)
        if data is not None:
            data.pop(key, None)
