"""HRV figures (ecgcore.hrv) on synthetic RR series with known values and on real NN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgcore.hrv import hrv_summary, nn_intervals

MITDB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mitdb"
FS = 1000.0


def _peaks(rr_ms: np.ndarray, fs: float = FS) -> np.ndarray:
    return np.round(np.concatenate([[500.0], 500.0 + np.cumsum(rr_ms)]) * fs / 1000).astype(
        np.int64)


def test_known_time_domain_figures():
    # Alternating 800 / 900 ms: mean 850, every successive difference 100 ms.
    rr = np.tile([800.0, 900.0], 150)
    h = hrv_summary(_peaks(rr), FS, beat_classes=np.full(rr.size + 1, "N"))
    assert h["n_nn"] == rr.size
    assert h["mean_nn_ms"] == pytest.approx(850.0)
    assert h["sdnn_ms"] == pytest.approx(np.std(rr, ddof=1))
    assert h["rmssd_ms"] == pytest.approx(100.0)
    # neurokit2 divides NN50 by (number of differences + 1).
    assert h["pnn50_pct"] == pytest.approx(100.0 * 299 / 300)
    assert h["mean_hr_bpm"] == pytest.approx(60000 / 850, abs=0.01)


def test_random_series_matches_direct_formulas():
    rng = np.random.default_rng(3)
    rr = 900 + 40 * rng.standard_normal(400)
    h = hrv_summary(_peaks(rr), FS, beat_classes=np.full(rr.size + 1, "N"))
    d = np.diff(rr)
    assert h["sdnn_ms"] == pytest.approx(np.std(rr, ddof=1), rel=1e-3)
    assert h["rmssd_ms"] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-3)
    assert h["pnn50_pct"] == pytest.approx(100 * np.sum(np.abs(d) > 50) / d.size, abs=0.5)


def test_ectopic_beats_are_left_out():
    rr = np.full(200, 1000.0)
    rr[100], rr[101] = 600.0, 1400.0  # a premature beat and its compensatory pause
    peaks = _peaks(rr)
    classes = np.full(peaks.size, "N")
    classes[101] = "V"
    for cls in (classes, None):  # by class, or by the 20 % rule without classes
        h = hrv_summary(peaks, FS, beat_classes=cls)
        assert h["n_nn"] == 198
        assert h["sdnn_ms"] == pytest.approx(0.0, abs=1e-6)
        assert h["rmssd_ms"] == pytest.approx(0.0, abs=1e-6)
    rri, t = nn_intervals(peaks, FS, classes)
    assert np.isnan(rri[100]) and np.isnan(rri[101]) and t.size == rr.size


def test_excluded_episodes_are_left_out():
    rng = np.random.default_rng(5)
    rr = np.full(300, 800.0)
    rr[100:200] = rng.uniform(400, 1200, 100)  # an AF-like stretch
    peaks = _peaks(rr)
    h_all = hrv_summary(peaks, FS, beat_classes=np.full(peaks.size, "N"))
    h_ex = hrv_summary(peaks, FS, beat_classes=np.full(peaks.size, "N"),
                       exclude=[(int(peaks[100]), int(peaks[200]) + 1)])
    assert h_all["rmssd_ms"] > 50
    assert h_ex["rmssd_ms"] == pytest.approx(0.0, abs=1e-6)
    assert h_ex["n_nn"] == 300 - 102  # beats 100..200 inside: intervals 99..200 out


def test_frequency_domain_only_from_five_minutes():
    rr = np.full(200, 1000.0)  # 200 s
    assert hrv_summary(_peaks(rr), FS)["frequency"] is None


@pytest.mark.parametrize(("f_mod", "dominant"), [(0.1, "lf"), (0.25, "hf")])
def test_frequency_domain_finds_the_modulation(f_mod, dominant):
    t = np.arange(0, 600.0, 0.9)
    rr = 900 + 30 * np.sin(2 * np.pi * f_mod * t)
    h = hrv_summary(_peaks(rr), FS)
    f = h["frequency"]
    assert f is not None
    other = "hf" if dominant == "lf" else "lf"
    assert f[f"{dominant}_ms2"] > 10 * f[f"{other}_ms2"]
    # A sine of amplitude 30 ms has variance 450 ms^2, nearly all in its band.
    assert f[f"{dominant}_ms2"] == pytest.approx(450, rel=0.15)


def test_too_few_beats():
    for peaks in (np.zeros(0, dtype=np.int64), np.array([10]), np.array([10, 900])):
        h = hrv_summary(peaks, FS)
        assert h["sdnn_ms"] is None and h["frequency"] is None


@pytest.mark.skipif(not (MITDB / "RECORDS").exists(), reason="MIT-BIH not present")
def test_agrees_with_neurokit2_on_real_nn():
    import warnings

    import neurokit2 as nk
    import wfdb

    from ecgcore.metrics import reference_beats

    ann = wfdb.rdann(str(MITDB / "100"), "atr")
    peaks, classes = reference_beats(ann.sample, ann.symbol)
    h = hrv_summary(peaks, 360.0, beat_classes=classes)
    rri, t = nn_intervals(peaks, 360.0, classes)
    assert 0.9 < h["nn_fraction"] <= 1.0
    ok = np.isfinite(rri)
    # Direct formulas on the NN series (differences only between adjacent NN intervals).
    d = np.diff(rri)
    d = d[np.isfinite(d)]
    assert h["mean_nn_ms"] == pytest.approx(np.mean(rri[ok]), abs=1e-3)
    assert h["sdnn_ms"] == pytest.approx(np.std(rri[ok], ddof=1), abs=1e-3)
    assert h["rmssd_ms"] == pytest.approx(np.sqrt(np.mean(d**2)), abs=1e-3)
    # neurokit2's own frequency analysis gives the same balance of LF and HF.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nkf = nk.hrv_frequency({"RRI": rri, "RRI_Time": t}, sampling_rate=360)
    nk_ratio = float(nkf["HRV_LF"].iloc[0] / nkf["HRV_HF"].iloc[0])
    assert h["frequency"]["lf_hf"] == pytest.approx(nk_ratio, rel=0.25)
    # Record 100 is a calm sinus rhythm: the figures are physiological.
    assert 700 < h["mean_nn_ms"] < 900 and 10 < h["rmssd_ms"] < 80
