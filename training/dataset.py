"""MIT-BIH -> model inputs, through ecgcore's own beat code.

Every beat goes through :func:`ecgcore.beats.beat_inputs` on the lead conditioned by
:func:`ecgcore.signal.ecg_condition`, exactly as ``ecg analyze`` does, so training and
serving see the same input (the polarity step of serving turns no MIT-BIH lead 0). The
built arrays are cached as
``.npz`` keyed by a hash of the code that makes them.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgcore import beats as beats_module
from ecgcore import signal as signal_module
from ecgcore.beats import AAMI_CLASSES
from ecgcore.errors import EcgError
from ecgcore.metrics import reference_beats
from ecgcore.recording import preferred_lead

DS1 = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201",
    "203", "205", "207", "208", "209", "215", "220", "223", "230",
)
"""Training records of the inter-patient split (de Chazal 2004)."""
DS2 = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213",
    "214", "219", "221", "222", "228", "231", "232", "233", "234",
)
"""Test records of the inter-patient split."""
PACED = ("102", "104", "107", "217")
"""Paced records, left out of AAMI beat-classification work."""

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """The MIT-BIH folder: ``$ECG_MITDB_DIR``, else ``../shared/data/mitdb`` by the repo."""
    env = os.environ.get("ECG_MITDB_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "mitdb"


def check_data_dir(data_dir: str | Path | None) -> Path:
    """Resolve and check a MIT-BIH folder, or raise :class:`EcgError` saying what to do."""
    path = Path(data_dir) if data_dir else default_data_dir()
    if not (path / "100.hea").exists():
        raise EcgError(
            f"no MIT-BIH Arrhythmia Database found in {path} (expected 100.hea, 100.dat, "
            "100.atr ...). Pass --data DIR or set ECG_MITDB_DIR; the database can be fetched "
            "with: python -c \"import wfdb; wfdb.dl_database('mitdb', 'mitdb')\""
        )
    return path


def cache_dir() -> Path:
    """Where built datasets are cached: ``$ECG_CACHE_DIR`` or ``.cache/`` in the repo."""
    env = os.environ.get("ECG_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache"


@functools.cache
def code_hash() -> str:
    """Hash of the code that turns a record into model inputs (invalidates the cache).

    Taken once per process: the source is read from disk, so a file edited while a long
    run goes on must not key the run's later cache entries (built by the code it loaded
    at the start) as the edited code's.
    """
    digest = hashlib.sha256()
    for module in (beats_module, signal_module):
        digest.update(inspect.getsource(module).encode())
    digest.update(inspect.getsource(load_record_beats).encode())
    return digest.hexdigest()[:16]


@dataclass
class BeatSet:
    """Beats of several records as arrays (one row per beat).

    Attributes
    ----------
    waveforms : (n, WINDOW_LENGTH, channels) float32
    rr : (n, n_rr) float32
    labels : (n,) int, index into :data:`AAMI_CLASSES`
    record : (n,) str, the record each beat comes from
    position : (n,) int, the aligned R position in the record (360 Hz)
    """

    waveforms: np.ndarray
    rr: np.ndarray
    labels: np.ndarray
    record: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.size)

    def take(self, index: np.ndarray) -> BeatSet:
        """Rows ``index`` only."""
        return BeatSet(
            self.waveforms[index], self.rr[index], self.labels[index],
            self.record[index], self.position[index],
        )

    def of_records(self, records: list[str] | tuple[str, ...]) -> BeatSet:
        """The beats of the given records only."""
        return self.take(np.flatnonzero(np.isin(self.record, list(records))))

    @property
    def binary(self) -> np.ndarray:
        """1 for an abnormal beat (S, V, F, Q), 0 for N."""
        return (self.labels != 0).astype(np.int64)


def read_lead(data_dir: Path, record: str) -> tuple[np.ndarray, float, list[str], list[int]]:
    """The MLII lead of a record (the first lead when there is none) and its beat marks:
    the lead ``ecg analyze`` reads by default (:func:`ecgcore.recording.preferred_lead`).

    Returns the signal, its rate, and the annotation symbols and samples.
    """
    import wfdb

    path = str(data_dir / record)
    rec = wfdb.rdrecord(path)
    channel = preferred_lead(rec.sig_name)
    ann = wfdb.rdann(path, "atr")
    return rec.p_signal[:, channel].astype(np.float64), float(rec.fs), ann.symbol, ann.sample


def load_record_beats(data_dir: Path, record: str) -> dict[str, np.ndarray]:
    """Model inputs and AAMI labels of every reference beat of one record.

    The conditioned signal is also returned (``"x"``) for the end-to-end evaluation.
    """
    x, fs, symbol, sample = read_lead(data_dir, record)
    x360 = signal_module.ecg_condition(
        signal_module.ecg_resample(x, fs, signal_module.INTERNAL_FS), signal_module.INTERNAL_FS
    )
    sample360 = signal_module.to_internal_index(np.asarray(sample), fs)
    positions, classes = reference_beats(sample360, list(symbol))
    # As recorded: serving's polarity step is for devices, and no MIT-BIH lead 0 looks
    # upside down (tests/test_inference.py), so training never needs it.
    inputs = beats_module.beat_inputs(x360, positions, signal_module.INTERNAL_FS,
                                      turn_upright=False)
    labels = np.array([AAMI_CLASSES.index(c) for c in classes], dtype=np.int8)
    return {
        "waveforms": inputs.waveforms,
        "rr": inputs.rr_features,
        "labels": labels,
        "position": inputs.rpeaks_aligned,
        "reference": positions,
        "x": x360,
    }


def build_dataset(
    data_dir: str | Path | None = None,
    records: list[str] | tuple[str, ...] = DS1 + DS2,
    *,
    use_cache: bool = True,
    progress=None,
) -> BeatSet:
    """Build (or load from the cache) the beats of ``records``.

    Parameters
    ----------
    data_dir : path or None
        MIT-BIH folder (see :func:`default_data_dir`).
    records : list of str
        Record names; paced records are refused.
    use_cache : bool
        Read and write ``.npz`` files per record in :func:`cache_dir`.
    progress : callable or None
        Called with each record name as it is done (for a progress bar).
    """
    data_dir = check_data_dir(data_dir)
    paced = sorted(set(records) & set(PACED))
    if paced:
        raise EcgError(f"paced records {', '.join(paced)} are left out of beat classification")
    key = code_hash()
    folder = cache_dir() / f"beats-{key}"
    parts = []
    for record in records:
        part = None
        file = folder / f"{record}.npz"
        if use_cache and file.exists():
            try:
                with np.load(file) as data:
                    part = {k: data[k] for k in data.files if k != "x"}
            except (OSError, ValueError):
                part = None
        if part is None:
            part = load_record_beats(data_dir, record)
            if use_cache:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f"{record}.tmp.npz"
                np.savez(tmp, **{k: v for k, v in part.items() if k != "x"})
                os.replace(tmp, file)
            part.pop("x", None)
        part["record"] = np.full(part["labels"].size, record)
        parts.append(part)
        if progress is not None:
            progress(record)
    return BeatSet(
        waveforms=np.concatenate([p["waveforms"] for p in parts]).astype(np.float32),
        rr=np.concatenate([p["rr"] for p in parts]).astype(np.float32),
        labels=np.concatenate([p["labels"] for p in parts]).astype(np.int64),
        record=np.concatenate([p["record"] for p in parts]),
        position=np.concatenate([p["position"] for p in parts]).astype(np.int64),
    )


def patient_folds(beats: BeatSet, n_folds: int = 4) -> list[list[str]]:
    """Group the records of ``beats`` into ``n_folds`` patient-wise folds.

    Records are ranked by their share of the rare classes (S, V, F) and dealt in snake
    order (0, 1, .., k-1, k-1, .., 0, ...), so each fold gets some S- and V-rich records
    and a similar number of records. F sits almost all in 208, so one fold holds nearly all
    of it whatever is done. Deterministic.
    """
    records = sorted(set(beats.record.tolist()))
    counts = {
        r: np.bincount(beats.labels[beats.record == r], minlength=len(AAMI_CLASSES))
        for r in records
    }
    totals = np.sum(list(counts.values()), axis=0)
    weight = 1.0 / np.maximum(totals, 1)
    score = {r: float(np.dot(counts[r][1:4], weight[1:4])) for r in records}
    order = sorted(records, key=lambda r: (-score[r], r))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for i, r in enumerate(order):
        lap, pos = divmod(i, n_folds)
        folds[pos if lap % 2 == 0 else n_folds - 1 - pos].append(r)
    return [sorted(f) for f in folds]
