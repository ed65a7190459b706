"""The shared session store: serialisation without pickle, isolation, expiry, bounds, processes."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from system_tools import require_system_tool

from dashboard.state import (
    DiskSessions,
    RedisSessions,
    SessionStore,
    decode_value,
    encode_value,
    new_token,
    open_session_store,
)
from ecgcore.io import read

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "mitdb"


def disk(tmp_path, **kwargs) -> SessionStore:
    return SessionStore(backend=DiskSessions(tmp_path / "s.sqlite3", **kwargs))


def test_a_recording_round_trips_exactly_with_its_annotations():
    recording = read(str(MITDB / "100"))
    back = decode_value(encode_value(recording))
    np.testing.assert_array_equal(back.signal, recording.signal)
    assert back.signal.dtype == recording.signal.dtype
    assert (back.fs, back.leads, back.units, back.format) == (
        recording.fs, recording.leads, recording.units, recording.format)
    np.testing.assert_array_equal(back.annotations.sample, recording.annotations.sample)
    assert back.annotations.symbol == recording.annotations.symbol
    assert back.annotations.aux_note == recording.annotations.aux_note
    assert back.meta["comments"] == recording.meta["comments"]


def test_files_and_plain_values_round_trip():
    files = {"100.hea": b"100 2 360 650000\n", "100.dat": bytes(range(256)) * 3}
    assert decode_value(encode_value(files)) == files
    for value in (1, "text", [1, 2], {"a": [1.5, None]}):
        assert decode_value(encode_value(value)) == value


def test_a_pickled_array_is_never_loaded():
    # A value whose npz holds an object array (which only pickle can load) is refused.
    buffer = io.BytesIO()
    np.savez(buffer, signal=np.array([{"x": 1}], dtype=object),
             meta_json=np.frombuffer(b"{}", dtype=np.uint8))
    with pytest.raises(ValueError, match="pickle"):
        decode_value(b"R" + buffer.getvalue())


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_sessions_are_isolated_and_values_are_copies(tmp_path, kind):
    store = SessionStore() if kind == "memory" else disk(tmp_path)
    alice, bob = new_token(), new_token()
    recording = read(str(MITDB / "100"))
    store.put(alice, "upload-x", recording)
    got = store.get(alice, "upload-x")
    assert got.n_samples == recording.n_samples
    assert store.get(bob, "upload-x") is None
    assert store.get("", "upload-x") is None and store.get(None, "upload-x") is None
    got.meta["title"] = "changed"
    assert "title" not in store.get(alice, "upload-x").meta
    store.delete(alice, "upload-x")
    assert store.get(alice, "upload-x") is None
    with pytest.raises(ValueError):
        store.put("", "k", 1)


def test_disk_sessions_expire_after_their_last_use(tmp_path):
    store = disk(tmp_path, ttl_s=0.5)
    sid = new_token()
    store.put(sid, "k", 1)
    for _ in range(3):  # each use pushes the expiry back
        time.sleep(0.3)
        assert store.get(sid, "k") == 1
    time.sleep(0.7)
    assert store.get(sid, "k") is None
    store.put(new_token(), "k", 2)  # a write purges what expired
    assert store.backend.stats()["sessions"] == 1


def test_disk_store_bounds_sessions_keys_and_bytes(tmp_path):
    store = disk(tmp_path, max_sessions=3, max_bytes=50_000)
    ids = [new_token() for _ in range(5)]
    for sid in ids:
        store.put(sid, "k", "x")
    assert [store.get(sid, "k") for sid in ids] == [None, None, "x", "x", "x"]
    sid = ids[-1]
    for k in range(12):
        store.put(sid, f"upload-{k}", k, max_keys=8)
    assert store.get(sid, "upload-3") is None and store.get(sid, "upload-11") == 11
    assert store.backend.stats()["entries"] <= 3 + 8
    # Bytes: big entries push out the least recently used sessions, never the newest.
    big = {"f.txt": b"0" * 30_000}
    first, second = new_token(), new_token()
    store.put(first, "pending", big)
    store.put(second, "pending", big)
    assert store.get(first, "pending") is None and store.get(second, "pending") == big
    assert store.backend.stats()["bytes"] <= 50_000


def test_a_closed_disk_connection_is_reopened_on_next_use(tmp_path):
    store = disk(tmp_path)
    sid = new_token()
    store.put(sid, "k", 1)
    store.backend.close()  # what `ecg serve`'s master does before forking its workers
    store.backend.close()
    assert store.get(sid, "k") == 1


CHILD = """
import sys
from dashboard.state import open_session_store
store = open_session_store(folder=sys.argv[1])
value = store.get(sys.argv[2], "upload-1")
print(value.n_samples if value is not None else "missing")
store.put(sys.argv[2], "from-child", "hello")
"""


def test_another_process_sees_the_same_sessions(tmp_path, monkeypatch):
    monkeypatch.delenv("ECG_REDIS_URL", raising=False)
    store = open_session_store(folder=tmp_path)
    sid = new_token()
    store.put(sid, "upload-1", read(str(MITDB / "100")))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), sid],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "650000"
    assert store.get(sid, "from-child") == "hello"
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), new_token()],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "missing"


REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private redis-server (Debian's) on a free loopback port, without persistence."""
    require_system_tool(
        REDIS_SERVER is not None, "redis-server is not installed (apt-get install redis-server)"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=30)


def redis_store(url, **kwargs) -> SessionStore:
    import redis

    client = redis.Redis.from_url(url)
    return SessionStore(backend=RedisSessions(client, prefix=f"t{new_token()}:", **kwargs))


def test_redis_sessions_are_isolated_and_bounded(redis_url):
    store = redis_store(redis_url, max_sessions=3)
    alice, bob = new_token(), new_token()
    store.put(alice, "upload-x", read(str(MITDB / "100")))
    assert store.get(alice, "upload-x").n_samples == 650_000
    assert store.get(bob, "upload-x") is None
    for k in range(12):
        store.put(alice, f"upload-{k}", k, max_keys=8)
    assert store.get(alice, "upload-3") is None and store.get(alice, "upload-11") == 11
    assert store.get(alice, "upload-x") is None
    others = [new_token() for _ in range(4)]
    for sid in others:
        store.put(sid, "k", "x")
    assert store.get(alice, "upload-11") is None  # the least recently used session went
    assert [store.get(sid, "k") for sid in others] == [None, "x", "x", "x"]
    assert store.backend.stats()["sessions"] == 3


def test_redis_sessions_expire_after_their_last_use(redis_url):
    store = redis_store(redis_url, ttl_s=0.6)
    sid = new_token()
    store.put(sid, "k", 1)
    for _ in range(3):
        time.sleep(0.35)
        assert store.get(sid, "k") == 1
    time.sleep(0.9)
    assert store.get(sid, "k") is None


def test_a_redis_url_selects_redis_for_every_process(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_REDIS_URL", redis_url)
    store = open_session_store(folder=tmp_path)
    assert isinstance(store.backend, RedisSessions)
    sid = new_token()
    store.put(sid, "upload-1", read(str(MITDB / "100")))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), sid],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "650000"
    assert store.get(sid, "from-child") == "hello"
    assert not (tmp_path / "sessions.sqlite3").exists()


def test_an_unreachable_redis_is_one_clear_error(tmp_path, monkeypatch):
    from ecgcore.errors import EcgError

    monkeypatch.setenv("ECG_REDIS_URL", "redis://user:secret@127.0.0.1:1/0")
    with pytest.raises(EcgError, match="cannot be reached") as error:
        open_session_store(folder=tmp_path)
    assert "secret" not in str(error.value)


def test_a_live_stream_is_shared_through_redis(redis_url, tmp_path):
    # Two hubs on two clients of one Redis database play two server processes: the stream
    # runs in one, the other reads it and stops it, as gunicorn's workers do.
    import redis

    from dashboard.live import LiveHub

    prefix = f"t{new_token()}:"

    def hub(name: str) -> LiveHub:
        store = SessionStore(backend=RedisSessions(redis.Redis.from_url(redis_url),
                                                   prefix=prefix))
        return LiveHub(tmp_path / name, store,
                       register=lambda sid, path, started, source: f"upload-{path.name}")

    owner, other = hub("owner"), hub("other")
    owner.start("session-r", lambda live: live.start_simulator(MITDB / "100", speed=1.0))
    try:
        deadline = time.monotonic() + 60
        while (other.read("session-r")["stats"]["n_samples"] < 2 * 360
               and time.monotonic() < deadline):
            time.sleep(0.3)
        state = other.read("session-r")
        assert state["state"] == "recording" and state["stats"]["n_samples"] >= 2 * 360
        assert other.read("session-s") is None
        assert other.running_here() == 0 and owner.running_here() == 1
        assert other.request_stop("session-r")  # read by the owner on its next beat
        while not other.read("session-r")["finished"] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        owner.shutdown()
    state = other.read("session-r")
    assert state["finished"] and state["state"] == "stopped"
    assert "stopped from the page" in state["stats"]["messages"]
    assert state["record_id"] == f"upload-{Path(state['path']).name}"
    assert read(state["path"]).n_samples == state["stats"]["n_samples"]
