"""``ecg serve``: gunicorn with several workers sharing the session store, stopped cleanly."""

from __future__ import annotations

import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dash_client import DashClient, Served, children_of, record_id_in, text_of

from dashboard.serve import MODEL_FILES, gunicorn_options, packaged_models_dir, parse_args
from dashboard.state import open_session_store

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "mitdb"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("serve"), ["--workers", "2", "--threads", "2"],
                    {"ECG_MITDB_DIR": str(MITDB)})
    yield served
    served.stop()


def test_defaults_are_one_worker_of_eight_threads_on_loopback():
    options = gunicorn_options(parse_args([]))
    assert options["bind"] == "127.0.0.1:8050"
    assert (options["workers"], options["threads"], options["worker_class"]) == (1, 8, "gthread")
    assert options["preload_app"] is False  # nothing (JAX) is built before the fork


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


def test_the_server_stops_cleanly_on_sigterm(server):
    process = server.process
    workers = children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in (Path(f"/proc/{pid}/stat").read_text().split()[2])]
    log = server.log()
    assert "Traceback" not in log, log
