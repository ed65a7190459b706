"""A long recording's first analysis in the background, as the record view polls for it.

``ecg serve`` runs several worker processes: the poll may reach a worker that is not the
one analysing. These tests play the other worker: it must read the stage from the disk
cache's progress marker, see an analysis that another process finished, and take the
work over when nobody is doing it.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

RECORD = "short100"


@pytest.fixture()
def app(tmp_path, monkeypatch, mitdb):
    """A dashboard app over one 2-minute record, long from 1 minute, with its own cache."""
    import wfdb

    from dashboard.app import create_app
    from dashboard.config import Config

    monkeypatch.setenv("ECG_CACHE_DIR", str(tmp_path / "cache"))
    source = wfdb.rdrecord(str(mitdb / "100"), sampto=120 * 360)
    wfdb.wrsamp(RECORD, fs=360, units=source.units, sig_name=source.sig_name,
                p_signal=source.p_signal, fmt=["212", "212"], adc_gain=[200.0, 200.0],
                baseline=[1024, 1024], write_dir=str(tmp_path))
    return create_app(Config(records_dir=tmp_path, background_after_s=60.0,
                             preload_models=False, debug=False))


def _wait_ready(pending, timeout_s: float = 120.0) -> dict:
    from dashboard.records import preparation_status

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = preparation_status(pending, None)
        if status["ready"] or status["error"]:
            return status
        time.sleep(0.2)
    raise AssertionError("the background preparation never finished")


def test_a_long_record_is_prepared_in_the_background_and_a_short_one_at_once(app):
    from dashboard import context
    from dashboard.records import prepared_key, start_long_preparation
    from ecgcore.recording import Recording

    with app.server.app_context():
        pending = start_long_preparation(RECORD, None)
        assert isinstance(pending, dict)
        assert pending["duration_s"] == pytest.approx(120.0)
        assert _wait_ready(pending) == {"ready": True, "error": None, "stage": None,
                                        "stage_index": None, "stages": None}
        prepared = context.records().peek(pending["key"])
        assert prepared is not None and prepared.analysis.n_beats > 100
        # Now in memory: nothing to wait for.
        assert start_long_preparation(RECORD, None) is None
        context.config().background_after_s = 600.0
    with app.server.app_context():
        context.records()._memory.delete(prepared_key(RECORD, None))
        # Short for this setting: prepared with the page. Long and on disk: read at once.
        assert start_long_preparation(RECORD, None) is None
        context.config().background_after_s = 60.0
        assert isinstance(start_long_preparation(RECORD, None), Recording)


def test_another_worker_reports_the_stage_from_the_marker_and_does_not_start_twice(app):
    from dashboard import context
    from dashboard.records import preparation_status, prepared_key
    from ecgcore.cache import PROGRESS_SUFFIX, analysis_key, cache_dir
    from ecgcore.io import read

    with app.server.app_context():
        recording = read(str(context.config().records_dir / RECORD))
        pending = {"key": prepared_key(RECORD, None), "analysis_key": analysis_key(recording),
                   "record_id": RECORD, "lead": None, "duration_s": 120.0,
                   "leads": recording.leads, "fs": 360.0, "started": time.time()}
        # What the worker analysing it (this process stands for it) keeps on disk.
        folder = cache_dir() / "analyses"
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f"{pending['analysis_key']}{PROGRESS_SUFFIX}"
        marker.write_text(json.dumps({
            "stage": "delineate", "stage_index": 2, "stages": 5, "started": time.time(),
            "updated": time.time(), "pid": os.getpid(), "host": socket.gethostname()}))
        status = preparation_status(pending, None)
        assert (status["ready"], status["stage"], status["stage_index"]) == (False, "delineate", 2)
        assert not context.records().running(pending["key"])
        # That worker died: this one takes the work over, and finishes it.
        marker.unlink()
        assert preparation_status(pending, None)["ready"] is False
        assert context.records().running(pending["key"]) or context.records().peek(
            pending["key"]) is not None
        assert _wait_ready(pending)["ready"]


def test_a_failed_background_preparation_is_reported_not_waited_for(app):
    from dashboard import context
    from dashboard.records import preparation_status, start_long_preparation

    def broken():
        raise RuntimeError("the disk went away")

    with app.server.app_context():
        pending = start_long_preparation(RECORD, None)
        _wait_ready(pending)
        records = context.records()
        records._memory.delete(pending["key"])
        key = "other-key"
        assert records.start(key, RECORD, broken)
        deadline = time.monotonic() + 30
        while records.running(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        status = preparation_status({**pending, "key": key, "analysis_key": "no-such"}, None)
        assert status["error"] == "RuntimeError: the disk went away"
        assert status["ready"] is False
