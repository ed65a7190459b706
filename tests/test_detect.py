"""R-peak detector: accuracy on real MIT-BIH excerpts and robustness on degenerate input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgcore.detect import ecg_rpeaks
from ecgcore.metrics import (
    MATCH_TOLERANCE_S,
    flutter_intervals,
    in_intervals,
    match_beats,
    reference_beats,
)
from ecgcore.signal import INTERNAL_FS, ecg_condition, ecg_resample

MITDB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mitdb"
FS = INTERNAL_FS
MINUTES = 5


def load(
    record: str, minutes: float = MINUTES
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Channel 0 (raw, mV) of the first minutes of a record, its reference beats and the
    ventricular flutter episodes (where EC57 scores no beat)."""
    n = int(minutes * 60 * FS)
    rec = wfdb.rdrecord(str(MITDB / record), channels=[0], sampto=n)
    ann = wfdb.rdann(str(MITDB / record), "atr", sampto=n)
    ref, _ = reference_beats(ann.sample, ann.symbol)
    flutter = flutter_intervals(ann.sample, ann.symbol)
    return rec.p_signal[:, 0].astype(np.float64), ref, flutter


def scores(ref: np.ndarray, det: np.ndarray, fs: float = FS) -> tuple[float, float]:
    m = match_beats(ref, det, MATCH_TOLERANCE_S * fs)
    return 100 * m.sensitivity, 100 * m.ppv


@pytest.fixture(scope="module")
def rec100() -> tuple[np.ndarray, np.ndarray]:
    x, ref, _ = load("100")
    return x, ref


# Figures reached on the first 5 minutes (see bench/qrs_detection.py for whole records),
# minus a margin.
@pytest.mark.parametrize(
    ("record", "min_se", "min_ppv"),
    [("100", 99.5, 99.5), ("105", 98.5, 98.0), ("203", 96.0, 98.5), ("207", 98.5, 98.5),
     ("107", 99.5, 99.5), ("113", 99.5, 99.5)],
)
def test_real_records(record: str, min_se: float, min_ppv: float) -> None:
    x, ref, flutter = load(record)
    det = ecg_rpeaks(ecg_condition(x, FS), FS)
    det = det[~in_intervals(det, flutter)]
    se, ppv = scores(ref, det)
    assert se >= min_se, f"record {record}: Se {se:.2f}"
    assert ppv >= min_ppv, f"record {record}: +P {ppv:.2f}"


def test_output_type(rec100) -> None:
    x, _ = rec100
    det = ecg_rpeaks(ecg_condition(x, FS), FS)
    assert det.dtype == np.int64
    assert np.all(np.diff(det) > 0)
    assert det.min() >= 0 and det.max() < x.size


def test_inverted_lead_gives_the_same_beats(rec100) -> None:
    x, ref = rec100
    y = ecg_condition(x, FS)
    up, down = ecg_rpeaks(y, FS), ecg_rpeaks(-y, FS)
    se, ppv = scores(up, down)
    assert se >= 99.9 and ppv >= 99.9
    assert min(scores(ref, down)) >= 99.5


@pytest.mark.parametrize("fs", [250.0, 500.0, 128.0])
def test_other_rates(rec100, fs: float) -> None:
    x, ref = rec100
    y = ecg_condition(ecg_resample(x, FS, fs), fs)
    det = ecg_rpeaks(y, fs)
    se, ppv = scores(np.round(ref * fs / FS), det, fs)
    assert se >= 99.5 and ppv >= 99.5, (fs, se, ppv)


@pytest.mark.parametrize("kind", ["zeros", "constant", "white", "pink", "brown", "uniform"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_beats_in_flat_or_noise(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(60 * FS)
    raw = {
        "zeros": np.zeros(n),
        "constant": np.full(n, 3.3),
        "white": rng.normal(size=n),
        "pink": np.convolve(rng.normal(size=n), np.ones(5) / 5, mode="same"),
        "brown": np.cumsum(rng.normal(size=n)),
        "uniform": rng.uniform(0, 1023, size=n),
    }[kind]
    det = ecg_rpeaks(ecg_condition(raw, FS), FS)
    assert det.dtype == np.int64
    # A handful over a minute of noise would be tolerable; hundreds would not.
    assert det.size == 0 if kind in ("zeros", "constant", "white", "pink") else det.size <= 3


def test_unconditioned_flat_input() -> None:
    assert ecg_rpeaks(np.zeros(10_000), FS).size == 0
    assert ecg_rpeaks(np.full(10_000, np.nan), FS).size == 0


@pytest.mark.parametrize("filler", ["zeros", "nan"])
def test_missing_stretch_has_no_beats(rec100, filler: str) -> None:
    x, ref = rec100
    x = x.copy()
    a, b = int(100 * FS), int(130 * FS)
    x[a:b] = 0.0 if filler == "zeros" else np.nan
    det = ecg_rpeaks(ecg_condition(x, FS), FS)
    # The filters ring for a moment at the edges of the stretch.
    margin = int(0.3 * FS)
    assert not np.any((det > a + margin) & (det < b - margin))
    outside = (ref < a - margin) | (ref > b + margin)
    det_out = det[(det < a - margin) | (det > b + margin)]
    assert min(scores(ref[outside], det_out)) >= 99.5


def test_noise_burst_does_not_break_the_rest(rec100) -> None:
    x, ref = rec100
    x = x.copy()
    rng = np.random.default_rng(3)
    a, b = int(60 * FS), int(70 * FS)
    x[a:b] += 5.0 * rng.normal(size=b - a)  # 5 mV of noise, far above the QRS
    det = ecg_rpeaks(ecg_condition(x, FS), FS)
    keep_ref = (ref < a - FS) | (ref > b + FS)
    keep_det = (det < a - FS) | (det > b + FS)
    assert min(scores(ref[keep_ref], det[keep_det])) >= 99.5


@pytest.mark.parametrize("n", [0, 1, 2, 10, 100, 359])
def test_very_short_input(n: int) -> None:
    out = ecg_rpeaks(np.sin(np.arange(n) / 10.0), FS)
    assert out.dtype == np.int64 and out.size == 0


def test_short_but_valid_input(rec100) -> None:
    x, ref = rec100
    n = int(3 * FS)
    det = ecg_rpeaks(ecg_condition(x[:n], FS), FS)
    assert 2 <= det.size <= 5
    assert min(scores(ref[ref < n], det)) >= 75
