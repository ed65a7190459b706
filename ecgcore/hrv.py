"""Heart-rate variability of a recording from its detected beats.

The figures are neurokit2's (``hrv_time``, ``hrv_frequency``), computed on NN intervals
only: intervals between two normal beats. With beat classes an interval is NN when both
its beats are ``N``; without them, intervals more than :data:`NN_MAX_DEVIATION` from the
running median of their neighbours are dropped (the usual correction for ectopic, missed
and extra beats). Intervals outside :data:`NN_RANGE_MS` are dropped in both cases.
Dropped intervals are passed to neurokit2 as missing (NaN) with the true interval times,
so successive differences (RMSSD, pNN50) are only taken between adjacent NN intervals.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

NN_RANGE_MS = (300.0, 2000.0)
"""Plausible NN intervals (200 to 30 bpm at the edges of the range)."""
NN_MAX_DEVIATION = 0.2
"""Without classes, an interval further than this fraction from the local median is not NN."""
NN_MEDIAN_BEATS = 11
MIN_NN = 3
"""Fewest NN intervals for the time-domain figures."""
FREQUENCY_MIN_S = 300.0
"""Frequency-domain figures need five minutes (the Task Force 1996 short-term standard)."""

TIME_KEYS = {
    "mean_nn_ms": "HRV_MeanNN",
    "sdnn_ms": "HRV_SDNN",
    "rmssd_ms": "HRV_RMSSD",
    "sdsd_ms": "HRV_SDSD",
    "pnn50_pct": "HRV_pNN50",
    "pnn20_pct": "HRV_pNN20",
    "median_nn_ms": "HRV_MedianNN",
}
BANDS_HZ = {"vlf": (0.0033, 0.04), "lf": (0.04, 0.15), "hf": (0.15, 0.4)}
"""Task Force (1996) frequency bands."""
RESAMPLE_HZ = 4.0


def nn_intervals(
    rpeaks: np.ndarray,
    fs: float,
    beat_classes: np.ndarray | None = None,
    exclude: list[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RR intervals (ms) with NaN where the interval is not NN, and their end times (s).

    Parameters
    ----------
    rpeaks : np.ndarray
        R peaks, samples at ``fs``, ascending.
    fs : float
        Sampling rate.
    beat_classes : np.ndarray or None
        AAMI class per beat.
    exclude : list of (start, end) or None
        Sample intervals (at ``fs``) whose beats are not NN, e.g. the AF and NOISE
        episodes of :func:`ecgcore.rhythm.ecg_rhythm`: HRV describes sinus rhythm.

    Returns
    -------
    rri_ms, rri_time_s : np.ndarray
        One value per interval (``len(rpeaks) - 1``).
    """
    r = np.asarray(rpeaks, dtype=np.float64).ravel()
    if r.size < 2:
        return np.zeros(0), np.zeros(0)
    rri = np.diff(r) / fs * 1000.0
    t = r[1:] / fs
    ok = (rri >= NN_RANGE_MS[0]) & (rri <= NN_RANGE_MS[1])
    if beat_classes is not None:
        c = np.asarray(beat_classes).astype(str).ravel()
        if c.size != r.size:
            raise ValueError(f"{c.size} beat classes for {r.size} beats")
        ok &= (c[:-1] == "N") & (c[1:] == "N")
    elif rri.size >= 3:
        import pandas as pd

        local = (
            pd.Series(np.where(ok, rri, np.nan))
            .rolling(NN_MEDIAN_BEATS, center=True, min_periods=1)
            .median()
            .to_numpy()
        )
        ok &= np.abs(rri - local) <= NN_MAX_DEVIATION * local
    for start, end in exclude or []:
        inside = (r >= start) & (r < end)
        ok &= ~(inside[:-1] | inside[1:])
    return np.where(ok, rri, np.nan), t


def hrv_summary(
    rpeaks: np.ndarray,
    fs: float,
    beat_classes: np.ndarray | None = None,
    exclude: list[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """Standard HRV figures of a recording, from its NN intervals.

    Parameters
    ----------
    rpeaks : np.ndarray
        R peaks, samples at ``fs``.
    fs : float
        Sampling rate.
    beat_classes : np.ndarray or None
        AAMI class per beat (NN = both beats ``N``); see the module notes without it.
    exclude : list of (start, end) or None
        Sample intervals whose beats are left out (see :func:`nn_intervals`).

    Returns
    -------
    dict
        ``n_intervals``, ``n_nn``, ``nn_fraction``, ``duration_s``, ``mean_hr_bpm``, the
        time-domain figures (``mean_nn_ms``, ``sdnn_ms``, ``rmssd_ms``, ``sdsd_ms``,
        ``pnn50_pct``, ``pnn20_pct``, ``median_nn_ms``; None with fewer than
        :data:`MIN_NN` NN intervals), and ``frequency``: ``vlf_ms2``, ``lf_ms2``,
        ``hf_ms2``, ``lf_hf``, ``lf_nu``, ``hf_nu``, ``total_power_ms2`` when the beats
        span at least :data:`FREQUENCY_MIN_S`, else None. ``method`` says how NN was
        decided.
    """
    rri, t = nn_intervals(rpeaks, fs, beat_classes, exclude)
    nn = rri[np.isfinite(rri)]
    r = np.asarray(rpeaks, dtype=np.float64).ravel()
    duration = float((r[-1] - r[0]) / fs) if r.size >= 2 else 0.0
    out: dict[str, Any] = {
        "n_intervals": int(rri.size),
        "n_nn": int(nn.size),
        "nn_fraction": round(float(nn.size / rri.size), 4) if rri.size else 0.0,
        "duration_s": round(duration, 2),
        "method": ("N-N by beat class" if beat_classes is not None
                   else f"RR within {NN_MAX_DEVIATION:.0%} of the local median")
        + (f", {len(exclude)} excluded episode(s)" if exclude else ""),
        "mean_hr_bpm": None,
        **{k: None for k in TIME_KEYS},
        "frequency": None,
    }
    if nn.size < MIN_NN:
        return out
    import neurokit2 as nk

    peaks = {"RRI": rri, "RRI_Time": t}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        time_df = nk.hrv_time(peaks, sampling_rate=fs)
    for key, col in TIME_KEYS.items():
        out[key] = _number(time_df, col)
    out["mean_hr_bpm"] = round(60000.0 / out["mean_nn_ms"], 2) if out["mean_nn_ms"] else None
    if duration >= FREQUENCY_MIN_S:
        out["frequency"] = frequency_domain(rri, t)
    return out


def frequency_domain(rri_ms: np.ndarray, time_s: np.ndarray) -> dict[str, float | None]:
    """VLF, LF and HF power (ms^2) of an NN series, LF/HF and normalised units.

    neurokit2's ``hrv_frequency`` reports powers on a scale that is not ms^2 (on record
    100 its total power is 0.0065 for an NN variance of about 1300 ms^2), so the powers
    are computed here the conventional way: NN intervals (NaN = not NN, left out)
    interpolated at :data:`RESAMPLE_HZ` by cubic spline, linear trend removed, Welch
    periodogram (256 s Hann segments, half overlap), integrated over :data:`BANDS_HZ`.
    The LF/HF ratio agrees with neurokit2's (tested).
    """
    from scipy import interpolate, signal

    ok = np.isfinite(rri_ms)
    empty: dict[str, float | None] = {
        k: None for k in ("vlf_ms2", "lf_ms2", "hf_ms2", "lf_hf", "lf_nu", "hf_nu",
                          "total_power_ms2")
    }
    if ok.sum() < 10:
        return empty
    t, y = np.asarray(time_s, float)[ok], np.asarray(rri_ms, float)[ok]
    grid = np.arange(t[0], t[-1], 1.0 / RESAMPLE_HZ)
    if grid.size < 64:
        return empty
    series = interpolate.CubicSpline(t, y)(grid)
    series = signal.detrend(series, type="linear")
    nper = min(series.size, int(256 * RESAMPLE_HZ))
    f, pxx = signal.welch(series, fs=RESAMPLE_HZ, window="hann", nperseg=nper,
                          noverlap=nper // 2, detrend="constant")
    power = {}
    for name, (lo, hi) in BANDS_HZ.items():
        band = (f >= lo) & (f < hi)
        power[name] = float(np.trapezoid(pxx[band], f[band])) if band.sum() > 1 else 0.0
    lf, hf = power["lf"], power["hf"]
    return {
        "vlf_ms2": round(power["vlf"], 3),
        "lf_ms2": round(lf, 3),
        "hf_ms2": round(hf, 3),
        "lf_hf": round(lf / hf, 4) if hf > 0 else None,
        "lf_nu": round(100 * lf / (lf + hf), 2) if lf + hf > 0 else None,
        "hf_nu": round(100 * hf / (lf + hf), 2) if lf + hf > 0 else None,
        "total_power_ms2": round(sum(power.values()), 3),
    }


def _number(df, column: str) -> float | None:
    if column not in df.columns:
        return None
    value = float(df[column].iloc[0])
    return round(value, 4) if np.isfinite(value) else None
