"""The analysis disk cache: exact round trip, keys that follow content, no pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgcore import cache
from ecgcore.analysis import Analysis
from ecgcore.recording import Recording

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_CACHE_DIR", str(tmp_path / "cache"))


def _recording(seconds: float = 12.0) -> Recording:
    import wfdb

    record = wfdb.rdrecord(str(DATA / "mitdb" / "100"), sampto=int(seconds * 360))
    return Recording(record.p_signal, 360.0, list(record.sig_name), list(record.units), "100")


def _analysis(n: int = 7, with_models: bool = True) -> Analysis:
    rng = np.random.default_rng(0)
    points = {"p_onset": np.array([np.nan] + list(range(1, n))), "t_peak": rng.random(n) * 100}
    probs = rng.random((n, 5)).astype(np.float32)
    return Analysis(
        source="x", fs=360.0, n_samples=1000, leads=["MLII", "V5"], lead_used="MLII",
        rpeaks=np.arange(n, dtype=np.int64) * 100, points=points,
        binary_p_abnormal=rng.random(n).astype(np.float32) if with_models else None,
        aami_probs=probs / probs.sum(1, keepdims=True) if with_models else None,
        rhythm=[{"label": "(N", "start": np.int64(0), "end": 1000}],
        timing_s={"detect": 0.1}, warnings=["w"],
    )


@pytest.mark.parametrize("with_models", [True, False])
def test_round_trip_is_exact(tmp_path, with_models):
    original = _analysis(with_models=with_models)
    cache.save_analysis("k1", original, tmp_path)
    loaded = cache.load_analysis("k1", tmp_path)
    assert loaded.to_dict() == original.to_dict()
    np.testing.assert_array_equal(loaded.points["p_onset"], original.points["p_onset"])
    assert loaded.rpeaks.dtype == np.int64


def test_files_are_json_and_npz_without_pickle(tmp_path):
    cache.save_analysis("k2", _analysis(), tmp_path)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npz"]
    json.loads((tmp_path / "k2.json").read_text())
    with np.load(tmp_path / "k2.npz", allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)


def test_missing_or_corrupt_entries_read_as_absent(tmp_path):
    assert cache.load_analysis("nope", tmp_path) is None
    cache.save_analysis("k3", _analysis(), tmp_path)
    (tmp_path / "k3.npz").write_bytes(b"not an npz")
    assert cache.load_analysis("k3", tmp_path) is None


def test_key_follows_content_lead_and_models():
    recording = _recording()
    key = cache.analysis_key(recording)
    assert key == cache.analysis_key(_recording())
    assert key != cache.analysis_key(recording, 1)
    assert key != cache.analysis_key(recording, classify=False)
    changed = _recording()
    changed.signal[100, 0] += 0.001
    assert key != cache.analysis_key(changed)
    faster = _recording()
    faster.fs = 361.0
    assert key != cache.analysis_key(faster)


def test_software_version_names_package_version():
    from ecgcore import __version__

    assert cache.software_version().startswith(__version__ + "+")


def test_cached_analyze_computes_once_then_reads():
    recording = _recording()
    first, hit1 = cache.cached_analyze(recording, classify=False)
    second, hit2 = cache.cached_analyze(recording, classify=False)
    assert (hit1, hit2) == (False, True)
    assert second.to_dict()["beats"] == first.to_dict()["beats"]
    assert first.n_beats > 5


def test_concurrent_requests_compute_once():
    from concurrent.futures import ThreadPoolExecutor

    recording = _recording()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cache.cached_analyze(recording, classify=False),
                                range(4)))
    assert sum(not hit for _, hit in results) == 1
    assert len({json.dumps(a.to_dict()["beats"]) for a, _ in results}) == 1


def test_a_running_analysis_says_its_stage_to_other_processes_then_clears():
    from ecgcore.analysis import ANALYSIS_STAGES

    recording = _recording()
    key = cache.analysis_key(recording, classify=False)
    seen = []

    def progress(stage):
        # What another worker process reads from the cache folder at this moment.
        marker = cache.analysis_progress(key)
        seen.append((stage, marker["stage"], marker["stage_index"], marker["stages"]))
        assert not cache.analysis_cached(key)

    assert cache.analysis_progress(key) is None
    analysis, hit = cache.cached_analyze(recording, classify=False, progress=progress)
    assert not hit
    assert seen == [(s, s, i, len(ANALYSIS_STAGES)) for i, s in enumerate(ANALYSIS_STAGES)]
    assert list(analysis.timing_s) == list(ANALYSIS_STAGES)
    assert cache.analysis_progress(key) is None
    assert cache.analysis_cached(key)


def test_a_progress_marker_left_by_a_dead_process_is_not_a_running_analysis():
    import os
    import socket
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    folder = cache.cache_dir() / "analyses"
    folder.mkdir(parents=True)
    marker = {"stage": "detect", "stage_index": 1, "stages": 5, "started": 0.0,
              "updated": 0.0, "host": socket.gethostname()}
    (folder / f"dead{cache.PROGRESS_SUFFIX}").write_text(
        json.dumps({**marker, "pid": int(child.stdout)}))
    (folder / f"alive{cache.PROGRESS_SUFFIX}").write_text(
        json.dumps({**marker, "pid": os.getpid()}))
    (folder / f"corrupt{cache.PROGRESS_SUFFIX}").write_text("{not json")
    assert cache.analysis_progress("dead") is None
    assert cache.analysis_progress("alive")["stage"] == "detect"
    assert cache.analysis_progress("corrupt") is None


def test_json_tables(tmp_path):
    cache.save_json("t", "key-a", [{"x": 1}], tmp_path)
    assert cache.load_json("t", "key-a", tmp_path) == [{"x": 1}]
    assert cache.load_json("t", "key-b", tmp_path) is None


def test_an_explanation_round_trips_exactly_and_is_keyed_by_beat_and_model(mitdb):
    from ecgcore.explain import DEFAULT_MAX_EVALS, explain_beat
    from ecgcore.inference import load_classifiers
    from training.dataset import load_record_beats

    rec = load_record_beats(mitdb, "100")
    from ecgcore.beats import BeatInputs

    inputs = BeatInputs(rec["waveforms"][:40], rec["rr"][:40], rec["position"][:40])
    explained = explain_beat(load_classifiers(), inputs, 10, "aami")
    key = cache.explanation_key("a" * 32, 10, "aami", DEFAULT_MAX_EVALS)
    assert cache.load_explanation(key) is None
    cache.save_explanation(key, explained)
    loaded = cache.load_explanation(key)
    assert set(loaded) == set(explained)
    for name, value in explained.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded[name], value)
            assert loaded[name].dtype == value.dtype
        else:
            assert loaded[name] == value
    others = {cache.explanation_key("a" * 32, 11, "aami", DEFAULT_MAX_EVALS),
              cache.explanation_key("a" * 32, 10, "binary", DEFAULT_MAX_EVALS),
              cache.explanation_key("b" * 32, 10, "aami", DEFAULT_MAX_EVALS)}
    assert key not in others and len(others) == 3
    assert all(cache.load_explanation(k) is None for k in others)
    # A damaged entry is a miss, never an error.
    folder = Path(cache.cache_dir()) / "explanations"
    (folder / f"{key}.npz").write_bytes(b"not a zip")
    assert cache.load_explanation(key) is None
