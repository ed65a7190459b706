"""A disk cache of analyses and small tables, keyed by content and software version.

An analysis of a 30-minute record takes seconds (delineation dominates); the second visit
to a record must be instant, across restarts. Entries are plain files (``.npz`` for the
per-beat arrays, ``.json`` for the rest) -- never pickle, so a cache folder can be shared
or inspected without trusting it to run code.

The key of an analysis is a hash of the samples, the rate, the lead, whether the models
ran, and :func:`software_version` (the package version plus a digest of ecgcore's code
and model files): any change to the code or the weights invalidates every entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore import __version__
from ecgcore.analysis import Analysis
from ecgcore.recording import Recording

CACHE_ENV = "ECG_CACHE_DIR"
"""Environment variable naming the cache folder (default: ``.cache/`` at the repo root)."""

_PACKAGE_DIR = Path(__file__).resolve().parent
_version_lock = threading.Lock()
_version: str | None = None


def cache_dir() -> Path:
    """The cache folder: ``$ECG_CACHE_DIR``, else ``.cache/ecg`` next to the package."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env) if env else _PACKAGE_DIR.parent / ".cache" / "ecg"
    return root


def code_digest(extra_files: list[Path] | tuple[Path, ...] = ()) -> str:
    """A digest of every ecgcore source file, then of ``extra_files`` (names and bytes).

    Parameters
    ----------
    extra_files : sequence of Path
        Files whose content the result also depends on (model weights), in this order.

    Returns
    -------
    str
        16 hex digits.
    """
    digest = hashlib.sha256()
    for path in [*sorted(_PACKAGE_DIR.glob("*.py")), *extra_files]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def software_version() -> str:
    """The package version plus a digest of every ecgcore source and model file.

    Computed once per process: hashing the files takes a few milliseconds.
    """
    global _version
    with _version_lock:
        if _version is None:
            models = sorted(p for p in (_PACKAGE_DIR / "models").glob("*") if p.is_file())
            _version = f"{__version__}+{code_digest(models)}"
        return _version


def recording_digest(recording: Recording) -> str:
    """A hash of what an analysis depends on in a recording: samples, rate and leads."""
    digest = hashlib.sha256()
    signal = np.ascontiguousarray(recording.signal, dtype=np.float64)
    digest.update(str(signal.shape).encode())
    digest.update(signal.tobytes())
    digest.update(repr(float(recording.fs)).encode())
    digest.update("\x1f".join(recording.leads).encode())
    return digest.hexdigest()


def analysis_key(
    recording: Recording, lead: str | int | None = None, *, classify: bool = True
) -> str:
    """The cache key of ``analyze(recording, lead, classify=classify)``."""
    lead_index = recording.lead_index(lead)
    text = "|".join(
        [recording_digest(recording), str(lead_index), str(bool(classify)), software_version()]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


PROGRESS_SUFFIX = ".progress.json"
"""The marker :func:`cached_analyze` keeps beside an entry while computing it."""
PROGRESS_FOREIGN_TTL_S = 3600.0
"""A marker written on another machine (a shared cache folder) counts for this long."""


def _write_atomic(path: Path, data: bytes) -> None:
    # Write then rename, so a reader never sees half a file and two writers never mix.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_entry(folder: Path, key: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """One entry: ``<key>.npz`` (arrays, no pickle) and ``<key>.json`` (the rest)."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    # The arrays first: a .json without its .npz is never read as an entry.
    _write_atomic(folder / f"{key}.npz", buffer.getvalue())
    _write_atomic(folder / f"{key}.json", json.dumps(meta).encode())


def _read_entry(folder: Path, key: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of an entry written by :func:`_write_entry`, or None."""
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        with np.load(folder / f"{key}.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError):
        return None
    return (meta, arrays) if isinstance(meta, dict) else None


def _analyses_folder(folder: Path | None) -> Path:
    return Path(folder) if folder is not None else cache_dir() / "analyses"


def save_analysis(key: str, analysis: Analysis, folder: Path | None = None) -> None:
    """Store an analysis under ``key`` (an ``.npz`` of arrays and a ``.json`` of the rest)."""
    folder = _analyses_folder(folder)
    arrays: dict[str, np.ndarray] = {"rpeaks": np.asarray(analysis.rpeaks, dtype=np.int64)}
    for name, values in analysis.points.items():
        arrays[f"point__{name}"] = np.asarray(values, dtype=np.float64)
    if analysis.binary_p_abnormal is not None:
        arrays["binary_p_abnormal"] = np.asarray(analysis.binary_p_abnormal, dtype=np.float32)
    if analysis.aami_probs is not None:
        arrays["aami_probs"] = np.asarray(analysis.aami_probs, dtype=np.float32)
    if analysis.normal_qrs_correlation is not None:
        arrays["normal_qrs_correlation"] = np.asarray(analysis.normal_qrs_correlation,
                                                      dtype=np.float64)
    meta = {
        "source": analysis.source,
        "fs": analysis.fs,
        "n_samples": analysis.n_samples,
        "leads": list(analysis.leads),
        "lead_used": analysis.lead_used,
        "rhythm": _jsonable(analysis.rhythm),
        "rhythm_summary": _jsonable(analysis.rhythm_summary),
        "hrv": _jsonable(analysis.hrv),
        "timing_s": {k: float(v) for k, v in analysis.timing_s.items()},
        "warnings": list(analysis.warnings),
        "software_version": software_version(),
    }
    _write_entry(folder, key, arrays, meta)


def load_analysis(key: str, folder: Path | None = None) -> Analysis | None:
    """The analysis stored under ``key``, or None when absent or unreadable."""
    folder = _analyses_folder(folder)
    entry = _read_entry(folder, key)
    if entry is None:
        return None
    meta, arrays = entry
    points = {
        name.removeprefix("point__"): values
        for name, values in arrays.items()
        if name.startswith("point__")
    }
    return Analysis(
        source=meta["source"],
        fs=float(meta["fs"]),
        n_samples=int(meta["n_samples"]),
        leads=list(meta["leads"]),
        lead_used=meta["lead_used"],
        rpeaks=arrays["rpeaks"].astype(np.int64),
        points=points,
        binary_p_abnormal=arrays.get("binary_p_abnormal"),
        aami_probs=arrays.get("aami_probs"),
        normal_qrs_correlation=arrays.get("normal_qrs_correlation"),
        rhythm=list(meta.get("rhythm", [])),
        rhythm_summary=dict(meta.get("rhythm_summary", {})),
        hrv=dict(meta.get("hrv", {})),
        timing_s=dict(meta.get("timing_s", {})),
        warnings=list(meta.get("warnings", [])),
    )


_compute_locks: dict[str, threading.Lock] = {}
_compute_locks_guard = threading.Lock()


def analysis_cached(key: str, folder: Path | None = None) -> bool:
    """Whether an analysis is stored under ``key`` (without reading it)."""
    folder = _analyses_folder(folder)
    return (folder / f"{key}.json").is_file() and (folder / f"{key}.npz").is_file()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def analysis_progress(key: str, folder: Path | None = None) -> dict[str, Any] | None:
    """Where a :func:`cached_analyze` of ``key`` stands, in any process sharing the cache.

    A web server runs several worker processes: the one asked whether a long analysis is
    done may not be the one running it. :func:`cached_analyze` keeps a marker file
    beside the entry while it computes.

    Returns
    -------
    dict or None
        ``stage`` (one of :data:`ecgcore.analysis.ANALYSIS_STAGES`), ``stage_index``
        (from 0), ``stages`` (their number), ``started`` and ``updated`` (Unix times),
        ``pid``; None when no analysis of ``key`` is running (no marker, or its process
        on this machine is gone).
    """
    path = _analyses_folder(folder) / f"{key}{PROGRESS_SUFFIX}"
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    if marker.get("host") == socket.gethostname():
        alive = _process_alive(int(marker.get("pid", -1)))
    else:
        alive = time.time() - float(marker.get("updated", 0.0)) < PROGRESS_FOREIGN_TTL_S
    return marker if alive else None


def cached_analyze(
    recording: Recording,
    lead: str | int | None = None,
    *,
    classify: bool = True,
    folder: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Analysis, bool]:
    """``analyze()`` through the disk cache.

    Two threads asking for the same analysis at once compute it once: the second waits
    for the first and then reads its entry. While it computes, :func:`analysis_progress`
    tells any process sharing the cache which stage it is at; ``progress`` is
    :func:`ecgcore.analysis.analyze`'s callback.

    Returns
    -------
    analysis : Analysis
    hit : bool
        True when it came from the cache.
    """
    from ecgcore.analysis import analyze

    key = analysis_key(recording, lead, classify=classify)
    found = load_analysis(key, folder)
    if found is not None:
        return found, True
    with _compute_locks_guard:
        lock = _compute_locks.setdefault(key, threading.Lock())
    with lock:
        found = load_analysis(key, folder)
        if found is not None:
            return found, True
        marker = _analyses_folder(folder) / f"{key}{PROGRESS_SUFFIX}"
        started = time.time()

        def report(stage: str) -> None:
            from ecgcore.analysis import ANALYSIS_STAGES

            state = {"stage": stage, "stage_index": list(ANALYSIS_STAGES).index(stage),
                     "stages": len(ANALYSIS_STAGES), "started": started,
                     "updated": time.time(), "pid": os.getpid(),
                     "host": socket.gethostname()}
            # A read-only cache still analyses; it only cannot say where it is.
            with contextlib.suppress(OSError):
                _write_atomic(marker, json.dumps(state).encode())
            if progress is not None:
                progress(stage)

        try:
            analysis = analyze(recording, lead, classify=classify, progress=report)
            save_analysis(key, analysis, folder)
        finally:
            marker.unlink(missing_ok=True)
    with _compute_locks_guard:
        _compute_locks.pop(key, None)
    return analysis, False


def explanation_key(analysis_key: str, index: int, model: str, max_evals: int) -> str:
    """The cache key of one beat's explanation under one analysis (see :func:`analysis_key`)."""
    text = f"{analysis_key}|{int(index)}|{model}|{int(max_evals)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def save_explanation(key: str, explanation: dict[str, Any], folder: Path | None = None) -> None:
    """Store an explanation (:func:`ecgcore.explain.explain_beat`'s dict) under ``key``.

    Explanations cost about a tenth of a second per beat on a quiet machine and much more
    under load; on disk, every server process and every later visit reuses them.
    """
    folder = Path(folder) if folder is not None else cache_dir() / "explanations"
    arrays = {k: v for k, v in explanation.items() if isinstance(v, np.ndarray)}
    meta = {k: _jsonable(v) for k, v in explanation.items() if k not in arrays}
    _write_entry(folder, key, arrays, {**meta, "software_version": software_version()})


def load_explanation(key: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The explanation stored under ``key``, or None when absent or unreadable."""
    folder = Path(folder) if folder is not None else cache_dir() / "explanations"
    entry = _read_entry(folder, key)
    if entry is None:
        return None
    meta, arrays = entry
    meta.pop("software_version", None)
    return {**meta, **arrays}


def load_json(name: str, key: str, folder: Path | None = None) -> Any | None:
    """A JSON document stored by :func:`save_json` under the same ``key``, else None."""
    folder = Path(folder) if folder is not None else cache_dir() / "tables"
    try:
        document = json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("key") != key:
        return None
    return document.get("value")


def save_json(name: str, key: str, value: Any, folder: Path | None = None) -> None:
    """Store a JSON-able ``value`` as ``name``, valid while the caller's ``key`` is unchanged."""
    folder = Path(folder) if folder is not None else cache_dir() / "tables"
    _write_atomic(folder / f"{name}.json", json.dumps({"key": key, "value": value}).encode())


def _jsonable(value: Any) -> Any:
    # Rhythm episodes may carry numpy integers; JSON wants plain ones.
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
