"""The dashboard's server-side parts without a browser: session store, figures, records."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from dashboard.components import figures
from dashboard.state import MemoryStore, SessionStore, new_token

REPO = Path(__file__).resolve().parents[2]
MITDB = Path(os.environ.get("ECG_MITDB_DIR", REPO.parent / "shared" / "data" / "mitdb"))


def test_memory_store_is_bounded_least_recently_used_first():
    store = MemoryStore(max_items=2, ttl_s=60)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # "a" is now the most recently used
    store.put("c", 3)
    assert store.get("b") is None and store.get("a") == 1 and store.get("c") == 3
    assert len(store) == 2


def test_memory_store_entries_expire():
    store = MemoryStore(max_items=10, ttl_s=0.05)
    store.put("a", 1)
    time.sleep(0.1)
    assert store.get("a") is None and len(store) == 0


def test_sessions_never_see_each_others_entries():
    sessions = SessionStore(max_sessions=4, ttl_s=60)
    alice, bob = new_token(), new_token()
    assert alice != bob and len(alice) >= 20
    sessions.put(alice, "upload-x", "alice's recording")
    assert sessions.get(alice, "upload-x") == "alice's recording"
    assert sessions.get(bob, "upload-x") is None
    assert sessions.get("", "upload-x") is None and sessions.get(None, "upload-x") is None
    with pytest.raises(ValueError):
        sessions.put("", "k", 1)


def test_a_session_keeps_a_bounded_number_of_entries():
    sessions = SessionStore()
    sid = new_token()
    for k in range(12):
        sessions.put(sid, f"upload-{k}", k, max_keys=8)
    assert sessions.get(sid, "upload-0") is None and sessions.get(sid, "upload-11") == 11


def test_time_ticks_read_h_mm_ss():
    ticks = figures.time_ticks(3590.0, 3650.0)
    assert "1:00:00" in ticks["ticktext"]
    assert all(a < b for a, b in zip(ticks["tickvals"], ticks["tickvals"][1:], strict=False))
    assert figures.format_hms(3725.25) == "1:02:05.2"
    assert figures.format_hms(3725.25, 0) == "1:02:05"


def test_relayout_values_parse_as_seconds():
    assert figures.parse_axis_value(12.5) == 12.5
    assert figures.parse_axis_value("12.5") == 12.5
    assert figures.parse_axis_value("1970-01-01") is None
    assert figures.parse_axis_value(True) is None


def test_downsampling_keeps_extremes_and_bounds_points():
    rng = np.random.default_rng(1)
    y = rng.normal(size=650_000).astype(np.float32)
    y[123_456] = 50.0
    index, values = figures.downsample(y, 0, y.size, 3000)
    assert index.size <= 3000 and 123_456 in index
    assert np.all(np.diff(index) > 0) and np.array_equal(values, y[index])
    index, _ = figures.downsample(y, 1000, 1500, 3000)
    assert np.array_equal(index, np.arange(1000, 1500))


def test_figure_of_record_208_is_small_at_every_zoom():
    from dashboard.records import prepare
    from ecgcore.io import read

    prepared = prepare("208", read(str(MITDB / "208")))
    assert prepared.beats["sample"].size > 2500
    assert prepared.summary["reference"]["V"] == 992
    layers = list(figures.DEFAULT_LAYERS)
    import json

    for view in ((0.0, 1805.5), (700.0, 736.0), (736.0, 743.0)):
        figure = figures.waveform_figure(prepared, view, [0, 1], layers + ["raw"])
        size = len(json.dumps(figure))
        assert size < 150_000, (view, size)
    detail = figures.waveform_figure(prepared, (736.0, 743.0), [0], layers)
    names = {trace["name"] for trace in detail["data"]}
    assert {"P waves", "QRS waves", "T waves", "reference"} <= names


def test_an_explanation_is_computed_once_for_every_server_process(tmp_path, monkeypatch):
    """A second process (a fresh prepared record) reads the explanation from the disk cache."""
    from dashboard.records import explanation, prepare
    from ecgcore.recording import Recording

    monkeypatch.setenv("ECG_CACHE_DIR", str(tmp_path / "cache"))
    import wfdb

    head = wfdb.rdrecord(str(MITDB / "119"), sampto=360 * 60)
    recording = Recording(head.p_signal, 360.0, list(head.sig_name), list(head.units), "119")
    first = prepare("119", recording)
    index = int(np.flatnonzero(first.beats["aami"] == "V")[0])
    computed = explanation(first, index, "aami")
    assert list((tmp_path / "cache" / "explanations").glob("*.npz"))
    other_process = prepare("119", recording)  # nothing in its memory
    assert f"explain:aami:{index}" not in other_process.extras
    reused = explanation(other_process, index, "aami")
    # The time it took is the first computation's: it was read, not recomputed.
    assert reused["seconds"] == computed["seconds"]
    np.testing.assert_array_equal(reused["waveform"], computed["waveform"])
    np.testing.assert_array_equal(reused["rr"], computed["rr"])
    assert reused["classes"] == computed["classes"]
