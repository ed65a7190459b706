"""R-peak (QRS) detection.

A Hamilton-Tompkins style detector, run on one lead:

1. feature: band-pass 8-20 Hz (zero phase), derivative, the root of its energy integrated
   over 150 ms. The root keeps the feature linear in amplitude, so large ectopic beats do
   not lift the threshold above the small normal beats around them;
2. candidates: feature peaks at least 200 ms apart that stand out of their surroundings
   (a shoulder on a larger mound, such as a P wave fused to its QRS, is not a candidate);
3. decision, in time order: adaptive levels of recent QRS and noise peaks (medians of 8),
   threshold between them, search-back at half that threshold after 1.5 RR without a beat,
   T-wave (and P-wave) rejection by slope within 360 ms of a beat, and a slow decay of the
   QRS level after a long wait (a noise burst must not blind the detector for good);
4. a run of beats whose feature peaks do not rise clearly above the feature's background
   is noise, not ECG, and is dropped: pure noise gives no beats;
5. fiducial: the largest deflection of the lead (either polarity) near each feature peak.

Measured on MIT-BIH and the QT DB by ``bench/qrs_detection.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

from ecgcore.signal import INTERNAL_FS, check_rate, fill_gaps

# Tuning (fractions and multiples, independent of rate and gain).
_BAND = (8.0, 20.0)  # Hz, band of the QRS feature
_TH = 0.45  # threshold = noise level + _TH * (QRS level - noise level)
_SB = 0.4  # search-back threshold, as a fraction of the threshold
_TW = 0.5  # within 360 ms of a beat, a peak with less than _TW of its slope is a T (or P) wave
_PR = 0.1  # a candidate's prominence must be at least _PR of its height
_BG = 2.6  # a run of beats must stand _BG times above the feature's background...
_PCT = 25  # ...taken as this percentile of the feature over 2 s blocks...
_RUN = 11  # ...judged on the median of this many consecutive beats
_DECAY = 0.5  # the QRS level is multiplied by this...
_DECAY_RR = 4.0  # ...each time this many RR intervals pass without a beat


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _bandpass(x: np.ndarray, fs: float, low: float, high: float) -> np.ndarray:
    nyquist = fs / 2.0
    high = min(high, 0.45 * fs)
    sos = sps.butter(2, [low / nyquist, high / nyquist], btype="bandpass", output="sos")
    return sps.sosfiltfilt(sos, x, padlen=min(x.size - 1, int(fs)))


def ecg_rpeaks(x: np.ndarray, fs: float = INTERNAL_FS) -> np.ndarray:
    """R-peak sample indices (int64, sorted) of one lead.

    Parameters
    ----------
    x : np.ndarray
        One lead, conditioned (baseline removed, e.g. by :func:`ecgcore.signal.ecg_condition`);
        NaN marks missing samples. Either polarity: inverted leads give the same beats.
    fs : float
        Its sampling rate in Hz (the pipeline gives :data:`INTERNAL_FS`); every window of the
        detector scales with it.

    Returns
    -------
    np.ndarray
        Index in ``x`` of the dominant deflection of each QRS complex. Empty for inputs
        shorter than one second, flat or all-missing signals, and pure noise; no beat is
        placed inside a missing (NaN) stretch.

    Raises
    ------
    SignalError
        If ``fs`` is not a usable ECG sampling rate.
    """
    fs = check_rate(fs)
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < int(fs):
        return _empty()
    if not np.isfinite(x).any():
        return _empty()
    x, missing = fill_gaps(x)
    if np.ptp(x) == 0.0:
        return _empty()

    beats, _ = _feature_beats(x, fs)
    if beats.size == 0:
        return _empty()
    # Fiducial: the dominant deflection of x near the feature peak, from the local level.
    w = int(round(0.08 * fs))
    idx = np.clip(beats[:, None] + np.arange(-w, w + 1)[None, :], 0, x.size - 1)
    seg = x[idx]
    seg = np.abs(seg - np.median(seg, axis=1, keepdims=True))
    out = idx[np.arange(beats.size), np.argmax(seg, axis=1)]
    out = np.unique(out)
    if missing.any():
        out = out[~missing[out]]
    return out


def _feature_beats(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Beats as positions of peaks of the QRS feature, and the feature itself."""
    band = _bandpass(x, fs, *_BAND)
    slope = np.gradient(band)
    # Root of the integrated slope energy: linear in amplitude, so big ectopic beats do not
    # lift the threshold above the normal beats that follow them.
    energy = uniform_filter1d(slope * slope, size=max(1, int(round(0.15 * fs))), mode="nearest")
    mwi = np.sqrt(np.maximum(energy, 0.0))

    refractory = int(round(0.2 * fs))
    with warnings.catch_warnings():
        # Plateaus in flat stretches have zero prominence; they are dropped just below.
        warnings.filterwarnings("ignore", message="some peaks have a prominence of 0")
        cand, props = sps.find_peaks(
            mwi, distance=refractory, prominence=0.0, wlen=int(0.8 * fs)
        )
    # A QRS stands out of the feature; a shoulder of a larger mound (a P wave fused to its
    # QRS, a notch) does not.
    keep = props["prominences"] >= _PR * mwi[cand]
    # Filter ringing in a flat stretch is not a beat, however quiet the rest is.
    keep &= mwi[cand] > 1e-6 * mwi.max()
    cand = cand[keep]
    if cand.size == 0:
        return _empty(), mwi
    heights = mwi[cand]
    # Largest slope near each candidate, for the T-wave test.
    half = int(round(0.075 * fs))
    window = np.clip(cand[:, None] + np.arange(-half, half + 1)[None, :], 0, x.size - 1)
    max_slope = np.abs(slope[window]).max(axis=1)
    beats = _decide(cand, heights, max_slope, fs)
    return beats[_stand_out(beats, mwi, fs)], mwi


def _stand_out(beats: np.ndarray, mwi: np.ndarray, fs: float) -> np.ndarray:
    """Mask of the beats whose neighbourhood of beats rises clearly above the background.

    The adaptive thresholds find "beats" in anything, pure noise included. In an ECG the
    feature peaks of the QRS complexes of a few seconds stand several times above the lower
    quartile of the feature there (the quiet stretches between beats); in noise they do
    not. Judged on a run of beats, not beat by beat, so a single small beat among normal
    ones is kept.
    """
    if beats.size == 0:
        return np.zeros(0, dtype=bool)
    block = max(1, int(2 * fs))
    n_blocks = max(1, mwi.size // block)
    background = np.percentile(mwi[: n_blocks * block].reshape(n_blocks, -1), _PCT, axis=1)
    level = background[np.minimum(beats // block, n_blocks - 1)]
    # A flat stretch (a padded or clipped signal) has a background of zero: the ratio is
    # then infinite, which is what it should be, and no warning.
    with np.errstate(over="ignore", divide="ignore"):
        ratio = mwi[beats] / np.maximum(level, np.finfo(float).tiny)
    half = _RUN // 2
    padded = np.pad(ratio, half, mode="reflect") if ratio.size > half else ratio
    if padded.size >= _RUN:
        run = np.median(np.lib.stride_tricks.sliding_window_view(padded, _RUN), axis=1)
    else:
        run = np.full(ratio.size, np.median(ratio))
    return run >= _BG


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _decide(cand: np.ndarray, heights: np.ndarray, max_slope: np.ndarray, fs: float) -> np.ndarray:
    """Classify candidate feature peaks as QRS or noise, in time order."""
    pos = cand.tolist()
    h = heights.tolist()
    sl = max_slope.tolist()
    n_init = int(8 * fs)
    init_h = [v for p, v in zip(pos, h, strict=True) if p < n_init] or h[:8]
    spk_buf = sorted(init_h)[-8:]
    npk_buf = [0.0] * 8
    rr_buf = [float(fs)] * 8
    close = 0.36 * fs
    min_gap = 0.2 * fs

    qrs: list[int] = []  # indices into cand of the accepted beats
    cache: dict[str, float] = {}  # medians, recomputed only when a buffer changes

    def threshold() -> float:
        if "th" not in cache:
            spk = _median(spk_buf)
            npk = _median(npk_buf)
            cache["th"] = npk + _TH * (spk - npk)
        return cache["th"]

    def rr_median() -> float:
        if "rr" not in cache:
            cache["rr"] = _median(rr_buf)
        return cache["rr"]

    def push(buf: list[float], value: float) -> None:
        buf.append(value)
        del buf[0]
        cache.clear()

    def accept(i: int) -> None:
        if qrs:
            last = qrs[-1]
            if pos[i] - pos[last] < close and sl[last] < _TW * sl[i]:
                # The previous "beat" was a P wave or noise just before this QRS.
                qrs.pop()
                push(npk_buf, h[last])
                # Its RR interval stays in the buffer; the median shrugs it off.
        if qrs:
            push(rr_buf, float(pos[i] - pos[qrs[-1]]))
        qrs.append(i)
        push(spk_buf, h[i])

    def t_wave(i: int) -> bool:
        if not qrs:
            return False
        last = qrs[-1]
        return pos[i] - pos[last] < close and sl[i] < _TW * sl[last]

    i = 0
    n = len(pos)
    waited_from = 0  # where the current wait for a beat (re)started
    while i < n:
        if qrs:
            last = qrs[-1]
            rr = rr_median()
            waited_from = max(waited_from, pos[last])
            if pos[i] - waited_from > _DECAY_RR * rr:
                # Nothing for long: the peak level was lifted by a burst of noise or by
                # beats larger than these. Let it sink until beats show up again.
                spk_buf[:] = [v * _DECAY for v in spk_buf]
                cache.clear()
                waited_from = pos[i]
            if pos[i] - pos[last] > 1.5 * rr:
                # Search-back: a beat may have been missed since the last detection.
                limit = _SB * threshold()
                best = -1
                for j in range(last + 1, i):
                    if (
                        h[j] > limit
                        and pos[j] - pos[last] >= min_gap
                        and not t_wave(j)
                        and (best < 0 or h[j] > h[best])
                    ):
                        best = j
                if best >= 0:
                    accept(best)
                    continue
        if h[i] <= threshold() or t_wave(i):
            push(npk_buf, h[i])
        else:
            accept(i)
        i += 1
    return cand[np.asarray(qrs, dtype=np.int64)]
