"""Per-session server-side state (uploads), shared by every worker process of the server.

The browser keeps only a random session id (a ``dcc.Store`` with ``storage_type="session"``,
so it lives as long as the tab); everything heavy stays here. Pages use only
:class:`SessionStore`'s ``get``/``put``/``delete``; where the entries live is a backend:

- :class:`DiskSessions` (the default of the served app): one SQLite file under the cache
  folder, so the gunicorn workers all see the same sessions. Entries expire a time after
  their session's last use, and the number of sessions and the bytes kept are bounded
  (least recently used sessions dropped first).
- :class:`RedisSessions` when ``$ECG_REDIS_URL`` is set: the same bounds, in Redis (for
  workers on several machines).
- :class:`MemorySessions`: the same in one process's memory (tests, a single process).

Values are serialised by this module, never pickled: JSON for plain values, a small framed
format for uploaded files, and ``.npz`` (loaded with ``allow_pickle=False``) plus JSON
metadata for recordings. So a value read back is always a fresh copy, whichever backend.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sqlite3
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.recording import Annotations, Recording

SESSIONS_DIR_ENV = "ECG_SESSIONS_DIR"
"""Environment variable naming the folder of the shared session store (default: the
analysis cache folder's ``sessions/``)."""

REDIS_ENV = "ECG_REDIS_URL"
"""Environment variable selecting a Redis store (``redis://host:port/db``) instead of disk."""

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Default bound on the bytes the disk store keeps (all sessions together)."""


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


# --------------------------------------------------------------------------- serialisation

_JSON, _FILES, _RECORDING = b"J", b"F", b"R"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, allow_nan=True).encode("utf-8")


def encode_value(value: Any) -> bytes:
    """Serialise a session value to bytes (no pickle).

    Parameters
    ----------
    value : Recording, dict of str to bytes, or a JSON-able value
        What the pages keep: a recording, the files of a pending upload, or plain data.

    Returns
    -------
    bytes
        A one-byte tag and the payload; :func:`decode_value` reverses it.
    """
    if isinstance(value, Recording):
        return _RECORDING + _encode_recording(value)
    if (isinstance(value, dict) and value
            and all(isinstance(k, str) and isinstance(v, bytes | bytearray | memoryview)
                    for k, v in value.items())):
        names = list(value)
        blobs = [bytes(value[n]) for n in names]
        header = _json_bytes({"names": names, "sizes": [len(b) for b in blobs]})
        return _FILES + struct.pack("<I", len(header)) + header + b"".join(blobs)
    return _JSON + _json_bytes(value)


def decode_value(data: bytes) -> Any:
    """The value :func:`encode_value` serialised (a fresh copy)."""
    tag, body = data[:1], memoryview(data)[1:]
    if tag == _JSON:
        return json.loads(bytes(body))
    if tag == _FILES:
        (n,) = struct.unpack("<I", body[:4])
        header = json.loads(bytes(body[4:4 + n]))
        files, pos = {}, 4 + n
        for name, size in zip(header["names"], header["sizes"], strict=True):
            files[name] = bytes(body[pos:pos + size])
            pos += size
        return files
    if tag == _RECORDING:
        return _decode_recording(bytes(body))
    raise ValueError(f"unknown session value tag {tag!r}")


def _encode_recording(recording: Recording) -> bytes:
    meta = {
        "fs": float(recording.fs), "leads": list(recording.leads),
        "units": list(recording.units), "source": str(recording.source),
        "fs_origin": recording.fs_origin, "format": recording.format,
        "meta": recording.meta,
    }
    arrays = {"signal": np.asarray(recording.signal)}
    ann = recording.annotations
    if ann is not None:
        meta["annotations"] = {"symbol": list(ann.symbol), "aux_note": list(ann.aux_note)}
        arrays["ann_sample"] = np.asarray(ann.sample, dtype=np.int64)
    arrays["meta_json"] = np.frombuffer(_json_bytes(meta), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _decode_recording(data: bytes) -> Recording:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(npz["meta_json"].tobytes())
        signal = np.array(npz["signal"])
        ann_sample = np.array(npz["ann_sample"]) if "ann_sample" in npz.files else None
    annotations = None
    if ann_sample is not None:
        annotations = Annotations(ann_sample, list(meta["annotations"]["symbol"]),
                                  list(meta["annotations"]["aux_note"]))
    return Recording(signal, meta["fs"], list(meta["leads"]), list(meta["units"]),
                     meta["source"], annotations, meta["fs_origin"], meta["format"],
                     dict(meta["meta"]))


# --------------------------------------------------------------------------- backends


class MemorySessions:
    """Sessions kept in this process's memory (serialised, bounded, expiring)."""

    def __init__(self, max_sessions: int = 64, ttl_s: float = 7200.0) -> None:
        self._store = MemoryStore(max_sessions, ttl_s)
        self._lock = threading.Lock()

    def get(self, session_id: str, key: str) -> bytes | None:
        data = self._store.get(session_id)
        return None if data is None else data.get(key)

    def put(self, session_id: str, key: str, value: bytes, max_keys: int) -> None:
        with self._lock:
            data = self._store.get(session_id)
            if data is None:
                data = {}
                self._store.put(session_id, data)
            data.pop(key, None)
            data[key] = value
            while len(data) > max_keys:
                data.pop(next(iter(data)))

    def delete(self, session_id: str, key: str) -> None:
        with self._lock:
            data = self._store.get(session_id)
            if data is not None:
                data.pop(key, None)


class DiskSessions:
    """Sessions in one SQLite file, shared by every process and thread that opens it.

    Parameters
    ----------
    path : path
        The database file (its folder is created).
    max_sessions : int
        Most sessions kept; the least recently used are dropped first.
    ttl_s : float
        Seconds after its last use (read or write) that a session is dropped.
    max_bytes : int
        Most bytes of values kept, all sessions together (least recently used dropped).
    """

    def __init__(self, path: str | os.PathLike, max_sessions: int = 64,
                 ttl_s: float = 7200.0, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (session TEXT NOT NULL, name TEXT NOT NULL,"
                " value BLOB NOT NULL, size INTEGER NOT NULL, seq INTEGER NOT NULL,"
                " PRIMARY KEY (session, name))"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS sessions (session TEXT PRIMARY KEY,"
                " touched REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread and per process: a connection must not cross a fork
        # (gunicorn forks its workers after the app may have been built).
        key = (os.getpid(), threading.get_ident())
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "key", None) != key:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.key = db, key
        return db

    def close(self) -> None:
        """Close this thread's connection (the serving master does before forking workers)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = self._local.key = None

    def _live(self, db: sqlite3.Connection, session_id: str, now: float) -> bool:
        row = db.execute("SELECT touched FROM sessions WHERE session=?", (session_id,)).fetchone()
        return row is not None and now - row[0] <= self.ttl_s

    def get(self, session_id: str, key: str) -> bytes | None:
        db = self._connect()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self._live(db, session_id, now):
                return None
            row = db.execute("SELECT value FROM entries WHERE session=? AND name=?",
                             (session_id, key)).fetchone()
            db.execute("UPDATE sessions SET touched=? WHERE session=?", (now, session_id))
            return None if row is None else bytes(row[0])
        finally:
            db.execute("COMMIT")

    def put(self, session_id: str, key: str, value: bytes, max_keys: int) -> None:
        db = self._connect()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self._live(db, session_id, now):
                # A new (or expired) session starts empty.
                db.execute("DELETE FROM entries WHERE session=?", (session_id,))
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?)", (session_id, now))
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM entries WHERE session=?",
                             (session_id,)).fetchone()[0]
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                       (session_id, key, sqlite3.Binary(value), len(value), seq))
            db.execute(
                "DELETE FROM entries WHERE session=? AND seq NOT IN (SELECT seq FROM entries "
                "WHERE session=? ORDER BY seq DESC LIMIT ?)", (session_id, session_id, max_keys)
            )
            self._evict(db, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def delete(self, session_id: str, key: str) -> None:
        db = self._connect()
        db.execute("DELETE FROM entries WHERE session=? AND name=?", (session_id, key))

    def _evict(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM sessions WHERE touched < ?", (now - self.ttl_s,))
        rows = db.execute(
            "SELECT s.session, COALESCE(SUM(e.size), 0) FROM sessions s LEFT JOIN entries e "
            "ON e.session = s.session GROUP BY s.session ORDER BY s.touched DESC"
        ).fetchall()
        total, drop = 0, []
        for rank, (session, size) in enumerate(rows):
            total += size
            # The newest session is always kept, whatever its size.
            if rank and (rank >= self.max_sessions or total > self.max_bytes):
                drop.append(session)
        for session in drop:
            db.execute("DELETE FROM sessions WHERE session=?", (session,))
        db.execute("DELETE FROM entries WHERE session NOT IN (SELECT session FROM sessions)")

    def stats(self) -> dict[str, int]:
        """Sessions, entries and bytes currently kept (expired ones included until purged)."""
        db = self._connect()
        n_sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        n_entries, n_bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries").fetchone()
        return {"sessions": n_sessions, "entries": n_entries, "bytes": n_bytes}


class RedisSessions:
    """Sessions in Redis, shared by every process that connects to the same database.

    Each session is a hash of its entries plus a sorted set giving their order (to keep
    at most ``max_keys``); a sorted set of sessions by last use bounds their number. Every
    key of a session expires ``ttl_s`` after its last use (read or write). The bytes kept
    are bounded by these and the upload limit; Redis's ``maxmemory`` is the outer bound.

    Parameters
    ----------
    client : redis.Redis
        A connected client (bytes responses).
    max_sessions, ttl_s
        As for :class:`DiskSessions`.
    prefix : str
        Namespace of this app's keys in the database.
    """

    def __init__(self, client, max_sessions: int = 64, ttl_s: float = 7200.0,
                 prefix: str = "ecg:") -> None:
        self.client = client
        self.max_sessions = max_sessions
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = prefix

    def _keys(self, session_id: str) -> tuple[str, str]:
        return (f"{self.prefix}s:{session_id}:data", f"{self.prefix}s:{session_id}:order")

    def _touch(self, pipe, session_id: str, now: float) -> None:
        data, order = self._keys(session_id)
        pipe.pexpire(data, self.ttl_ms)
        pipe.pexpire(order, self.ttl_ms)
        pipe.zadd(f"{self.prefix}sessions", {session_id: now})

    def get(self, session_id: str, key: str) -> bytes | None:
        data, _ = self._keys(session_id)
        value = self.client.hget(data, key)
        if value is not None:
            pipe = self.client.pipeline()
            self._touch(pipe, session_id, time.time())
            pipe.execute()
        return value

    def put(self, session_id: str, key: str, value: bytes, max_keys: int) -> None:
        data, order = self._keys(session_id)
        now = time.time()
        pipe = self.client.pipeline()
        pipe.hset(data, key, value)
        pipe.zadd(order, {key: time.time_ns()})
        self._touch(pipe, session_id, now)
        pipe.zrange(order, 0, -max_keys - 1)
        old = pipe.execute()[-1]
        if old:
            pipe = self.client.pipeline()
            pipe.hdel(data, *old)
            pipe.zrem(order, *old)
            pipe.execute()
        self._evict(now)

    def delete(self, session_id: str, key: str) -> None:
        data, order = self._keys(session_id)
        pipe = self.client.pipeline()
        pipe.hdel(data, key)
        pipe.zrem(order, key)
        pipe.execute()

    def _evict(self, now: float) -> None:
        sessions = f"{self.prefix}sessions"
        # Expired sessions' keys are gone already (Redis expired them); forget their ids.
        self.client.zremrangebyscore(sessions, "-inf", now - self.ttl_ms / 1000)
        extra = self.client.zcard(sessions) - self.max_sessions
        if extra > 0:
            for member, _ in self.client.zpopmin(sessions, extra):
                session = member.decode() if isinstance(member, bytes) else member
                self.client.delete(*self._keys(session))

    def stats(self) -> dict[str, int]:
        """Sessions currently tracked."""
        return {"sessions": int(self.client.zcard(f"{self.prefix}sessions"))}


# --------------------------------------------------------------------------- the facade


class SessionStore:
    """What one browser session owns: its uploads (recordings and pending files).

    Keys are namespaced by session id, so a session can never read another's entries: an
    upload id is only resolved together with the session that made it.

    Parameters
    ----------
    max_sessions, ttl_s
        Bounds of the default in-memory backend.
    backend : MemorySessions, DiskSessions, RedisSessions or None
        Where entries live (None: a :class:`MemorySessions` of this process).
    """

    def __init__(self, max_sessions: int = 64, ttl_s: float = 7200.0,
                 backend: MemorySessions | DiskSessions | RedisSessions | None = None
                 ) -> None:
        self.backend = backend if backend is not None else MemorySessions(max_sessions, ttl_s)

    @staticmethod
    def _valid(session_id: Any) -> bool:
        return bool(session_id) and isinstance(session_id, str)

    def get(self, session_id: str, key: str, default: Any = None) -> Any:
        """The session's value under ``key`` (a fresh copy), else ``default``."""
        if not self._valid(session_id):
            return default
        data = self.backend.get(session_id, key)
        return default if data is None else decode_value(data)

    def put(self, session_id: str, key: str, value: Any, *, max_keys: int = 8) -> None:
        """Store ``value`` for the session; a session keeps at most ``max_keys`` entries."""
        if not self._valid(session_id):
            raise ValueError("a session id is needed to keep data on the server")
        self.backend.put(session_id, key, encode_value(value), max_keys)

    def delete(self, session_id: str, key: str) -> None:
        """Forget one entry of a session."""
        if self._valid(session_id):
            self.backend.delete(session_id, key)


def sessions_dir() -> Path:
    """The shared store's folder: ``$ECG_SESSIONS_DIR``, else the cache folder's ``sessions``."""
    env = os.environ.get(SESSIONS_DIR_ENV)
    if env:
        return Path(env)
    from ecgcore.cache import cache_dir

    return cache_dir() / "sessions"


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def open_session_store(max_sessions: int = 64, ttl_s: float = 7200.0,
                       folder: str | os.PathLike | None = None) -> SessionStore:
    """The session store the served app uses, shared by every worker.

    Redis when ``$ECG_REDIS_URL`` is set (checked with a ping), else a SQLite file under
    ``folder`` (default :func:`sessions_dir`).

    Raises
    ------
    EcgError
        Redis is asked for but cannot be reached (or redis-py is not installed).
    """
    url = os.environ.get(REDIS_ENV)
    if url:
        from ecgcore.errors import EcgError

        try:
            import redis
        except ImportError:
            raise EcgError(f"{REDIS_ENV} is set but the redis package is not installed "
                           "(pip install redis), or unset it to use the disk store") from None
        try:
            client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
            client.ping()
        except (redis.RedisError, ValueError) as error:
            raise EcgError(f"the Redis session store at {_redacted(url)} ({REDIS_ENV}) "
                           f"cannot be reached: {error}") from None
        return SessionStore(backend=RedisSessions(client, max_sessions, ttl_s))
    folder = Path(folder) if folder is not None else sessions_dir()
    return SessionStore(backend=DiskSessions(folder / "sessions.sqlite3", max_sessions, ttl_s))
