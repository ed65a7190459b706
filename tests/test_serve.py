"""``ecg serve``: gunicorn with several workers sharing the session store, stopped cleanly.

The server is ``ecg serve``'s default configuration (two workers), run as a real process.
The Live tests play MIT-BIH records through the simulator on real pseudo-terminals: a
stream runs in the worker that received Start, and polls, Stop and the saved record work
from whichever worker answers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import wfdb
from dash_client import DashClient, Served, children_of, record_id_in, text_of

from dashboard.live import LiveHub
from dashboard.serve import MODEL_FILES, gunicorn_options, packaged_models_dir, parse_args
from dashboard.state import open_session_store
from ecgcore.io import read

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "mitdb"
FS = 360
RECONNECT_S = 3.0
"""How long the served recorder waits for a vanished board (ECG_LIVE_RECONNECT_S)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    served = Served(folder, [], {
        "ECG_MITDB_DIR": str(MITDB), "ECG_SERVE_WORKERS": "", "ECG_SERVE_THREADS": "",
        # A board the test plays itself on a pty (the port listing does not show links).
        "ECG_LIVE_PORTS": str(folder / "ttyBOARD"),
        "ECG_LIVE_RECONNECT_S": str(RECONNECT_S),
    })
    served.folder = folder
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(server):
    return DashClient.over_http(server.base)


def test_defaults_are_two_workers_of_eight_threads_on_loopback(monkeypatch):
    monkeypatch.delenv("ECG_SERVE_WORKERS", raising=False)
    monkeypatch.delenv("ECG_SERVE_THREADS", raising=False)
    options = gunicorn_options(parse_args([]))
    assert options["bind"] == "127.0.0.1:8050"
    assert (options["workers"], options["threads"], options["worker_class"]) == (2, 8, "gthread")
    assert options["preload_app"] is False  # nothing (JAX) is built before the fork


def test_the_environment_overrides_the_default_workers_and_threads(monkeypatch):
    monkeypatch.setenv("ECG_SERVE_WORKERS", "3")
    monkeypatch.setenv("ECG_SERVE_THREADS", "4")
    args = parse_args([])
    assert (args.workers, args.threads) == (3, 4)
    assert parse_args(["--workers", "1"]).workers == 1  # the option wins
    monkeypatch.setenv("ECG_SERVE_WORKERS", "many")
    with pytest.raises(SystemExit, match="ECG_SERVE_WORKERS"):
        parse_args([])


def test_each_worker_gets_its_share_of_the_cores_for_numeric_work():
    from dashboard.serve import worker_environment

    assert worker_environment(1, 2, {}) == {}
    two = worker_environment(2, 2, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert two["OPENBLAS_NUM_THREADS"] == two["OMP_NUM_THREADS"] == "1"
    assert two["XLA_FLAGS"].startswith("--xla_dump_to=/tmp/x ")
    assert "xla_cpu_multi_thread_eigen=false" in two["XLA_FLAGS"]
    four = worker_environment(2, 8, {"OMP_NUM_THREADS": "3"})
    assert four == {"OPENBLAS_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}  # set ones kept


def test_the_model_files_checked_are_those_the_app_loads():
    from ecgcore import inference

    assert packaged_models_dir() == Path(inference.MODELS_DIR).resolve()
    assert MODEL_FILES == inference.MODEL_FILES


def test_pages_are_served_by_several_workers(server):
    workers = children_of(server.process.pid)
    assert len(workers) == 2, workers
    for path in ("/records", "/upload", "/record/100", "/_dash-layout", "/_dash-dependencies"):
        with urllib.request.urlopen(server.base + path, timeout=60) as response:
            assert response.status == 200, path


def test_sessions_cannot_see_each_others_uploads_across_workers(server):
    client = DashClient.over_http(server.base)
    alice, bob = "alice-" + "a" * 20, "bob-" + "b" * 20
    files = {f"100.{ext}": (MITDB / f"100.{ext}").read_bytes() for ext in ("hea", "dat", "atr")}
    status, answer = client.upload(alice, files)
    assert status == 200
    record_id = record_id_in(answer)
    assert record_id and record_id.startswith("upload-"), text_of(answer)
    # The upload is in the store every worker opens (this test is a third process).
    stored = open_session_store(folder=server.sessions).get(alice, record_id)
    assert stored is not None and stored.n_samples == 650_000
    # Many requests at once, on fresh connections: both workers answer some of them.
    def open_as(session):
        return client.open_record(session, record_id)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(open_as, [alice, bob, alice, bob, alice, bob]))
    for k, (status, answer) in enumerate(results):
        assert status == 200, (answer, server.log())
        alerts = text_of(answer["response"]["rec-alerts"]["children"])
        if k % 2:  # bob
            assert "not available in this browser session" in alerts
            assert answer["response"]["rec-ready"]["data"] is None
        else:
            assert answer["response"]["rec-ready"]["data"]["id"] == record_id


# --------------------------------------------------------------------------- Live


def live_click(client, session: str, button: str, source: str = "simulator",
               record: str = "119") -> str:
    """Press Start or Stop on the Live page as that session's tab; the text it shows."""
    status, answer = client.call(
        "live-control.children",
        {f"{button}.n_clicks": 1, "live-source.value": source, "live-record.value": record,
         "live-start-s.value": 0, "live-faults.value": [], "live-baud.value": 115200,
         "live-plain-fs.value": None, "session-id.data": session},
        [f"{button}.n_clicks"],
    )
    assert status == 200, answer
    return text_of(answer["response"].get("live-control", {}).get("children", ""))


def live_poll(client, session: str) -> dict:
    """One poll of the Live page (a fresh connection: any worker may answer it)."""
    status, answer = client.call(
        "live-graph.figure", {"live-interval.n_intervals": 1, "session-id.data": session},
        ["live-interval.n_intervals"],
    )
    assert status == 200, answer
    return answer["response"]


def n_beats(response: dict) -> int:
    return int(response["live-nbeats"]["children"].split()[0])


def badge(response: dict) -> str:
    return response["live-state"]["children"]


def saved_alerts(response: dict) -> str:
    return text_of(response["live-saved"]["children"])


def poll_until(client, session: str, done, timeout_s: float, what: str) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        response = live_poll(client, session)
        if done(response):
            return response
        assert time.monotonic() < deadline, f"{what}: {response}"
        time.sleep(0.3)


def stream_state(server, session: str) -> dict:
    """The stream as the shared store holds it, read by this (third) process."""
    hub = LiveHub(server.folder / "unused", open_session_store(folder=server.sessions),
                  stale_s=3600.0)
    return hub.read(session)


def owner_pid(server, session: str) -> int:
    return int(stream_state(server, session)["owner"].rsplit(":", 1)[1])


def check_saved_file(path: Path, record: str, n_published: int, *, exact: bool) -> int:
    """The saved CSV reads back as the record's first samples, whole lines only."""
    assert path.read_bytes().endswith(b"\n")
    recording = read(str(path))
    assert recording.format == "recorder-csv" and recording.fs == FS
    n = recording.n_samples
    assert n > 2 * FS
    # A killed writer loses at most its unflushed half second; its last published count
    # may be a little behind or ahead of the file.
    assert n == n_published if exact else abs(n - n_published) <= FS
    expected = np.clip(np.round(512 + 200 * wfdb.rdrecord(
        str(MITDB / record), sampto=n, channels=[0]).p_signal[:, 0]), 0, 1023)
    assert np.array_equal(recording.signal[:, 0], expected)
    return n


def test_a_live_stream_is_served_by_every_worker_and_only_to_its_session(server, client):
    alice, bob = "live-alice-" + "a" * 16, "live-bob-" + "b" * 16
    assert live_click(client, alice, "live-start") == ""
    owner = owner_pid(server, alice)
    workers = children_of(server.process.pid)
    assert owner in workers and len(workers) == 2
    counts = []
    response = poll_until(client, alice, lambda r: counts.append(n_beats(r)) or counts[-1] >= 4,
                          60, "no beats")
    assert badge(response) == "● recording"
    assert response["live-leads"]["children"] == "leads on"
    # The owner frozen: polls can only reach the other worker, which answers from the store.
    frozen = n_beats(response)
    os.kill(owner, signal.SIGSTOP)
    try:
        for _ in range(4):
            response = live_poll(client, alice)
            assert badge(response) == "● recording" and n_beats(response) >= frozen
            time.sleep(0.3)
    finally:
        os.kill(owner, signal.SIGCONT)
    # The stream goes on growing, whoever answers.
    response = poll_until(client, alice, lambda r: counts.append(n_beats(r)) or
                          counts[-1] >= frozen + 4, 60, "the stream stopped growing")
    assert counts == sorted(counts), counts
    # Another session sees no stream and cannot stop this one.
    other = live_poll(client, bob)
    assert other["live-interval"]["disabled"] is True and "live-nbeats" not in other
    assert stream_state(server, bob) is None
    assert live_click(client, bob, "live-stop") == "Nothing is running."
    # Stop, sent to whichever worker: the owner stops, saves and registers the file.
    assert live_click(client, alice, "live-stop") == ""
    response = poll_until(client, alice, lambda r: "live-open" in str(r["live-saved"]), 60,
                          "no saved record")
    assert badge(response) == "stopped" and response["live-interval"]["disabled"] is True
    record_id = record_id_in(response["live-saved"])
    state = stream_state(server, alice)
    assert state["finished"] and state["record_id"] == record_id
    print(f"\nlive over 2 workers: {state['stats']['n_beats']} beats, "
          f"{state['stats']['signal_s']:.1f} s; polls saw {counts}")
    check_saved_file(Path(state["path"]), "119", state["stats"]["n_samples"], exact=True)
    # The saved record is alice's, whichever worker opens it.
    status, answer = client.open_record(alice, record_id)
    assert status == 200 and answer["response"]["rec-ready"]["data"]["id"] == record_id
    status, answer = client.open_record(bob, record_id)
    assert "not available in this browser session" in text_of(
        answer["response"]["rec-alerts"]["children"])


def test_a_device_vanishing_mid_recording_is_reported_and_the_file_stays_valid(server, client):
    from acquisition.simulator import simulate

    session = "live-carol-" + "c" * 16
    link = server.folder / "ttyBOARD"
    unplug, ready = threading.Event(), threading.Event()
    board = threading.Thread(
        target=simulate, args=(MITDB / "100", link),
        kwargs={"speed": 1.0, "stop_event": unplug, "reader_timeout_s": 60.0,
                "on_ready": lambda _name: ready.set()},
        name="test-board", daemon=True)
    board.start()
    try:
        assert ready.wait(60)
        assert live_click(client, session, "live-start", source=str(link)) == ""
        poll_until(client, session, lambda r: n_beats(r) >= 3, 60, "no beats")
    finally:
        unplug.set()  # the board is unplugged: its pty closes, its link goes
    board.join(30)
    seen = []
    response = poll_until(client, session,
                          lambda r: seen.append(badge(r)) or r["live-interval"]["disabled"],
                          RECONNECT_S + 60, "the stream did not end")
    print(f"\nunplugged: badges {sorted(set(seen))}; {saved_alerts(response)}")
    assert "device lost: reconnecting…" in seen  # the outage is shown while it lasts
    assert badge(response) == "stopped"
    alerts = saved_alerts(response)
    assert "disappeared" in alerts and "did not come back" in alerts
    assert "Recording saved" in alerts
    messages = text_of(response["live-messages"]["children"])
    assert "disappeared" in messages and "port lost" in messages
    state = stream_state(server, session)
    check_saved_file(Path(state["path"]), "100", state["stats"]["n_samples"], exact=True)
    status, answer = client.open_record(session, state["record_id"])
    assert status == 200 and answer["response"]["rec-ready"]["data"]["id"] == state["record_id"]


def test_a_stream_whose_worker_dies_is_shown_ended_with_its_file(server, client):
    session = "live-dave-" + "d" * 16
    assert live_click(client, session, "live-start", record="100") == ""
    # Five beats (about four seconds) so that the file, less the killed writer's unflushed
    # half second, still holds more than the two seconds check_saved_file asks for.
    poll_until(client, session, lambda r: n_beats(r) >= 5, 60, "no beats")
    owner = owner_pid(server, session)
    os.kill(owner, signal.SIGKILL)
    # No hang: once the owner's heartbeat is stale, a poll (by the surviving worker, or
    # the one gunicorn starts in its place) ends the stream and registers the file.
    response = poll_until(client, session, lambda r: r["live-interval"]["disabled"], 120,
                          "the dead stream was never ended")
    alerts = saved_alerts(response)
    print(f"\nowner killed: {alerts}")
    assert badge(response) == "failed" and "stopped answering" in alerts
    assert "Recording saved" in alerts
    state = stream_state(server, session)
    check_saved_file(Path(state["path"]), "100", state["stats"]["n_samples"], exact=False)
    status, answer = client.open_record(session, state["record_id"])
    assert status == 200 and answer["response"]["rec-ready"]["data"]["id"] == state["record_id"]
    # gunicorn replaced the worker.
    deadline = time.monotonic() + 120
    while len(children_of(server.process.pid)) != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert owner not in children_of(server.process.pid)


def test_the_server_stops_cleanly_on_sigterm(server, client):
    # A stream running at shutdown is stopped by its worker, saved and its end published.
    session = "live-erin-" + "e" * 16
    assert live_click(client, session, "live-start") == ""
    poll_until(client, session, lambda r: n_beats(r) >= 2, 60, "no beats")
    process = server.process
    workers = children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in (Path(f"/proc/{pid}/stat").read_text().split()[2])]
    log = server.log()
    assert "Traceback" not in log, log
    state = stream_state(server, session)
    assert state["finished"] and state["state"] == "stopped" and state["record_id"]
    assert "stopped: the server is shutting down" in state["stats"]["messages"]
    check_saved_file(Path(state["path"]), "119", state["stats"]["n_samples"], exact=True)
