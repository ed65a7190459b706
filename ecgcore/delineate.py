"""P/QRS/T wave delineation: where each wave of each beat starts, peaks and ends.

The method is a slope and area approach, vectorised over beats (every beat is a row of
a 2-D array of samples around its R peak):

- QRS onset and offset: the derivative envelope around R is compared with a fraction of
  the beat's steepest QRS slope; the onset is the end of the last *sustained* quiet run
  before the first steep slope (a short dip, as at the bottom of a q wave, does not stop
  the search), the offset the start of the first sustained quiet run after the last one.
- T peak: the extreme of the low-passed signal, relative to the isoelectric level just
  before QRS onset, in a window after QRS offset scaled with the RR interval. Upright,
  inverted and biphasic T waves (the larger lobe) are handled alike; a candidate must be a
  hump (come back down on both sides), so a sloping ST segment is not taken for a T wave.
  A "beat" much flatter than the record's QRS complexes shortly after the previous one
  (typically a tall T wave taken for a beat by the detector) does not cut the previous
  beat's T window short.
- T offset: the area indicator of Zhang et al. (2006, IEEE TBME 53:1425), the maximum of
  the area between the signal and a horizontal line through the candidate point.
- P wave, first pass: the largest hump of the low-passed signal in a window before QRS
  onset that starts after the previous T wave (humps far from the QRS are down-weighted),
  its onset and offset with the same area indicator (mirrored for the onset). A P wave is
  kept only if it is clearly above the noise of the segment and if the beat agrees with
  the P wave of its neighbours (a leave-one-out median of the surrounding beats, made only
  of beats that look like real QRS complexes, not T waves the detector took for beats).
- P wave, second pass, for beats the first pass left without one: at fast rates the P
  wave rides on the falling T wave, before the T end estimate. It is searched from
  shortly after the previous T peak in a copy of the signal with the slow trend removed
  (QRS complexes bridged first), with one polarity per lead, a closer match to the
  neighbours and a steady PR distance (most neighbours have their P at the same distance
  from the QRS), and never for a premature beat or a QRS unlike its neighbours'.
- P absence: in atrial fibrillation the fibrillatory waves average out of the neighbour
  median, and before a premature ventricular beat the window holds the previous T wave,
  so P is reported absent (NaN). In an irregular rhythm, and for a QRS unlike its
  neighbours', a first-pass P wave must also keep a steady PR distance.

All windows are given in seconds and scaled by ``fs``, so any sampling rate works.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter1d

from ecgcore.signal import INTERNAL_FS, check_rate

DELINEATION_POINTS = (
    "p_onset",
    "p_peak",
    "p_offset",
    "qrs_onset",
    "qrs_offset",
    "t_peak",
    "t_offset",
)
"""The fiducial points :func:`ecg_delineate` returns, in physiological order."""

# Fractions of the beat's steepest QRS slope below which the signal counts as quiet.
QRS_ONSET_FRACTION = 0.045
QRS_OFFSET_FRACTION = 0.10
# A quiet run must last this long (s) to end the QRS (a q-wave trough is shorter).
QUIET_RUN_S = 0.010
# After the QRS the slow return of an S wave needs a longer quiet run to count as ended.
QRS_OFFSET_RUN_S = 0.026
# The T peak is searched from this long (s) after QRS offset.
T_START_S = 0.04
# A T (or P) candidate must come back down on both sides by this fraction of its height.
T_MIN_PROMINENCE = 0.3
# Beats whose steepest slope is below this fraction of the record's median are suspect.
WEAK_BEAT_SLOPE = 0.35
# Below this fraction of the median QRS slope there is no QRS complex to delineate.
NO_QRS_SLOPE = 0.03
# The P hump's required prominence (fraction of its height): P waves are small and
# often ride on the end of the T wave.
P_MIN_PROMINENCE = 0.2
# A P wave must stand above the record's noise (times) and the beat's QRS (fraction).
P_MIN_SNR = 3.0
P_MIN_REL_AMP = 0.01
# Area-indicator windows (s), Zhang et al. 2006.
T_AREA_WINDOW_S = 0.13
T_MAX_DESCENT_S = 0.2
P_AREA_WINDOW_S = 0.06
# Leave-one-out P template: neighbours on each side, and the agreement required.
P_TEMPLATE_HALF = 4
# Longest stretch before QRS onset searched for the P wave (s): PR up to about 0.35 s.
P_WINDOW_S = 0.40
# Beyond this distance from QRS onset (s) a hump's weight falls linearly, to 0.4 at the
# window start.
P_USUAL_MAX_S = 0.22
# The P window starts no later than this after the previous T peak (s), in case the T end
# was placed too late.
P_AFTER_T_PEAK_S = 0.14
P_MIN_CORRELATION = 0.4
# Beats with a QRS slope below this fraction of the record's upper-quartile slope make no
# P template for their neighbours.
P_TEMPLATE_MIN_SLOPE = 0.5
# Second P pass (fast rates, P on the T slope): the trend removed is a triangle this
# long (s), longer than a P wave and shorter than a T wave; the search starts this long
# (s) after the previous T peak.
P_DETREND_S = 0.24
P_AFTER_T_PEAK_MIN_S = 0.06
# ... and is trusted only with a closer match to the neighbours' P wave, found at the
# same distance (s) from the QRS as in at least half of them.
P2_MIN_CORRELATION = 0.6
# With those two safeguards the P wave may be smaller (times the noise) than in pass one:
# the P wave on a T slope is low.
P2_MIN_SNR = 2.0
P2_PR_TOLERANCE_S = 0.02
P2_PR_NEED = 4
P2_MIN_RR_FRACTION = 0.8
P2_MIN_QRS_CORRELATION = 0.8
P2_END_BEFORE_QRS_S = 0.05
# First-pass P waves needed (at least, and at least 10 % of beats) to trust their polarity.
P2_MIN_FIRST_PASS = 10
P_MIN_TEMPLATE_RATIO = 0.35
# The P wave must also keep its distance to the QRS: at least this many of the
# 2 * P_TEMPLATE_HALF neighbours have theirs within this tolerance (s) of the same distance.
P_PR_TOLERANCE_S = 0.04
P_PR_NEED = 3
# ... in an irregular rhythm: the median RR change from beat to beat over the neighbours
# exceeds this fraction.
P_IRREGULAR_RR = 0.08
# Memory grows with beats times window length (about 40 kB a beat): recordings with more
# beats than this (a few hours) are delineated in chunks of this many beats, each with
# CHUNK_CONTEXT_BEATS of its neighbours on both sides for the record-wide medians and
# the neighbour templates, and CHUNK_MARGIN_S of signal beyond them.
CHUNK_BEATS = 10_000
CHUNK_CONTEXT_BEATS = 50
CHUNK_MARGIN_S = 3.0


def _s(seconds: float, fs: float) -> int:
    return max(1, int(round(seconds * fs)))


def _windows(sig: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows ``sig[start : start + length]``; samples outside the signal repeat the edge."""
    idx = starts[:, None] + np.arange(length)[None, :]
    np.clip(idx, 0, sig.size - 1, out=idx)
    return sig[idx]


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Column of the first True per row, -1 where a row has none."""
    pos = np.argmax(mask, axis=1)
    pos[~mask.any(axis=1)] = -1
    return pos


def _last_true(mask: np.ndarray) -> np.ndarray:
    """Column of the last True per row, -1 where a row has none."""
    n = mask.shape[1]
    pos = n - 1 - np.argmax(mask[:, ::-1], axis=1)
    pos[~mask.any(axis=1)] = -1
    return pos


def _masked_argext(values: np.ndarray, valid: np.ndarray, largest: bool) -> np.ndarray:
    fill = -np.inf if largest else np.inf
    v = np.where(valid, values, fill)
    return np.argmax(v, axis=1) if largest else np.argmin(v, axis=1)


def _area_indicator(
    y: np.ndarray, starts: np.ndarray, length: int, w: int, backward: bool
) -> np.ndarray:
    """Zhang's area indicator ``A(t) = sum(y[j] - y[t])`` over ``w`` samples before ``t``.

    With ``backward=False`` the sum runs over the ``w`` samples after ``t`` (for onsets).
    Row ``i``, column ``c`` is the indicator at sample ``starts[i] + c``.
    """
    ext = _windows(y, starts - w, length + 2 * w)
    csum = np.concatenate(
        [np.zeros((ext.shape[0], 1), dtype=ext.dtype), np.cumsum(ext, axis=1)], axis=1
    )
    cols = np.arange(length) + w  # position of t inside ext
    if backward:
        area = csum[:, cols + 1] - csum[:, cols + 1 - w]
    else:
        area = csum[:, cols + w] - csum[:, cols]
    return area - w * ext[:, cols]


def _qrs_bounds(
    e: np.ndarray, r: np.ndarray, lo: np.ndarray, hi: np.ndarray, fs: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """QRS onset/offset from the derivative envelope ``e`` (absolute slope)."""
    before, after = _s(0.22, fs), _s(0.26, fs)
    length = before + after
    starts = r - before
    win = _windows(e, starts, length)
    col = np.arange(length)[None, :]
    inside = (col >= (lo - starts)[:, None]) & (col <= (hi - starts)[:, None])
    core = (col >= before - _s(0.09, fs)) & (col <= before + _s(0.09, fs)) & inside
    slope_max = np.where(core, win, 0.0).max(axis=1)
    slope_max = np.maximum(slope_max, 1e-12)
    # The first and last steep slopes of the complex (half the steepest) anchor the searches.
    steep = core & (win >= 0.5 * slope_max[:, None])
    first_steep = _first_true(steep)
    last_steep = _last_true(steep)
    first_steep[first_steep < 0] = before
    last_steep[last_steep < 0] = before
    def quiet_runs(fraction: float, run: int) -> np.ndarray:
        quiet = (win < fraction * slope_max[:, None]) | ~inside
        c = np.concatenate([np.zeros((quiet.shape[0], 1)), np.cumsum(quiet, axis=1)], axis=1)
        # full[j]: samples j-run+1 .. j are all quiet (a run ending at j).
        full = np.zeros_like(quiet)
        full[:, run - 1 :] = (c[:, run:] - c[:, :-run]) == run
        return full

    full_on = quiet_runs(QRS_ONSET_FRACTION, _s(QUIET_RUN_S, fs))
    ends_before = full_on & (col < first_steep[:, None])
    on_col = _last_true(ends_before)
    run = _s(QRS_OFFSET_RUN_S, fs)
    full_off = quiet_runs(QRS_OFFSET_FRACTION, run)
    # A run ending at j starts at j - run + 1.
    start_after = np.zeros_like(full_off)
    start_after[:, : length - run + 1] = full_off[:, run - 1 :]
    start_after &= col > last_steep[:, None]
    off_col = _first_true(start_after)
    onset = np.where(on_col >= 0, starts + on_col, np.maximum(lo, starts)).astype(np.float64)
    offset = np.where(off_col >= 0, starts + off_col, np.minimum(hi, starts + length - 1))
    return onset, offset.astype(np.float64), slope_max


def ecg_delineate(
    x: np.ndarray, rpeaks: np.ndarray, fs: float = INTERNAL_FS
) -> dict[str, np.ndarray]:
    """Locate the P, QRS and T waves of every beat.

    Parameters
    ----------
    x : np.ndarray
        One lead, conditioned (band-passed about 0.5-40 Hz, zero phase, e.g. by
        :func:`ecgcore.signal.ecg_condition`).
    rpeaks : np.ndarray
        R-peak sample indices, e.g. from :func:`ecgcore.detect.ecg_rpeaks` (any order;
        indices outside ``x`` give NaN rows).
    fs : float
        Sampling rate of ``x`` in Hz (windows scale with it).

    Returns
    -------
    dict of str to np.ndarray
        For each name in :data:`DELINEATION_POINTS`, one float64 sample index per beat
        (same order as ``rpeaks``), NaN where the wave is absent or cannot be placed.

    Raises
    ------
    SignalError
        If ``fs`` is not a usable ECG sampling rate.
    """
    fs = check_rate(fs)
    x = np.asarray(x, dtype=np.float64).ravel()
    r = np.asarray(rpeaks, dtype=np.float64).ravel()
    n = r.size
    out = {name: np.full(n, np.nan) for name in DELINEATION_POINTS}
    if n == 0 or x.size < 3:
        return out
    if not np.all(np.isfinite(x)):
        x = np.where(np.isfinite(x), x, 0.0)
    ok = np.isfinite(r) & (r >= 0) & (r < x.size)
    if not ok.all():
        sub = ecg_delineate(x, r[ok].astype(np.int64), fs)
        for name in DELINEATION_POINTS:
            out[name][ok] = sub[name]
        return out
    order = np.argsort(r, kind="stable")
    if np.any(order != np.arange(n)):
        sub = ecg_delineate(x, r[order].astype(np.int64), fs)
        for name in DELINEATION_POINTS:
            out[name][order] = sub[name]
        return out
    r = r.astype(np.int64)
    if n > CHUNK_BEATS + 2 * CHUNK_CONTEXT_BEATS:
        return _delineate_in_chunks(x, r, fs)
    last = x.size - 1

    # RR context: the previous and next intervals, the edges borrowing their neighbour.
    rr = np.diff(r).astype(np.float64)
    default_rr = float(np.median(rr)) if rr.size else fs
    rr_prev = np.concatenate([[rr[0] if rr.size else default_rr], rr])
    rr_next = np.concatenate([rr, [rr[-1] if rr.size else default_rr]])
    rr_prev = np.clip(rr_prev, 0.2 * fs, 2.5 * fs)
    rr_next = np.clip(rr_next, 0.2 * fs, 2.5 * fs)

    # Slope: a central difference over +-4 ms (the signal is already band-limited).
    k = _s(0.004, fs)
    d = np.zeros_like(x)
    d[k:-k] = x[2 * k :] - x[: -2 * k]
    # The per-beat 2-D windows are float32: half the memory traffic, ample precision.
    e = np.abs(d).astype(np.float32)
    # Low-passed copy for the slow waves (two 30 ms boxcars: a 60 ms triangle).
    box = _s(0.03, fs)
    y = uniform_filter1d(uniform_filter1d(x, box, mode="nearest"), box, mode="nearest")
    y32 = y.astype(np.float32)

    # ---- QRS -------------------------------------------------------------------------
    lo = np.maximum(r - np.minimum(_s(0.2, fs), (0.45 * rr_prev).astype(np.int64)), 0)
    hi = np.minimum(r + np.minimum(_s(0.24, fs), (0.45 * rr_next).astype(np.int64)), last)
    qrs_on, qrs_off, slope_max = _qrs_bounds(e, r, lo, hi, fs)
    # A "beat" far flatter than the record's QRS complexes, soon after the previous beat,
    # is most likely a T wave taken for a beat: it must not cut the previous beat's
    # T window short, so the T search runs to the next real-looking beat.
    weak = slope_max < WEAK_BEAT_SLOPE * np.median(slope_max)
    weak &= rr_prev < 0.6 * fs
    weak[0] = False
    strong = np.flatnonzero(~weak)
    nxt = np.searchsorted(strong, np.arange(n), side="right")
    has_next = nxt < strong.size
    rr_next_t = np.where(
        has_next, r[strong[np.minimum(nxt, strong.size - 1)]] - r, rr_next
    ).astype(np.float64)
    rr_next_t = np.clip(rr_next_t, 0.2 * fs, 2.5 * fs)
    qrs_on = np.maximum(np.minimum(qrs_on, r - 1), 0)
    qrs_off = np.minimum(np.maximum(qrs_off, r + 1), last)
    qon = qrs_on.astype(np.int64)
    qoff = qrs_off.astype(np.int64)
    # A beat on the first or last sample has no room for a bound on that side.
    out["qrs_onset"] = np.where(qrs_on < r, qrs_on, np.nan)
    out["qrs_offset"] = np.where(qrs_off > r, qrs_off, np.nan)

    # Isoelectric level: the low-passed signal just before QRS onset.
    iso = _windows(y, qon - _s(0.02, fs), _s(0.02, fs)).mean(axis=1)
    qrs_amp = np.ptp(_windows(x, qon, _s(0.12, fs)), axis=1)
    qrs_amp = np.maximum(qrs_amp, 1e-9)
    # Noise: the high-frequency residue of the conditioned signal, robustly per record.
    resid = x - y
    # (every few samples is plenty for a median over minutes of signal)
    sub = resid[:: max(1, int(fs // 90))]
    noise = 1.4826 * float(np.median(np.abs(sub - np.median(sub)))) + 1e-12

    # ---- T wave ----------------------------------------------------------------------
    rr_t = rr_prev / fs
    t_lo = qoff + _s(T_START_S, fs)
    t_hi_s = np.minimum(0.45 * np.sqrt(rr_t), 0.75 * rr_next_t / fs)
    t_hi = np.minimum(r + (t_hi_s * fs).astype(np.int64), last)
    t_hi = np.maximum(t_hi, t_lo + _s(0.04, fs))
    end_bound = np.minimum(
        r + (np.minimum(0.7 * np.sqrt(rr_t), 0.85 * rr_next_t / fs) * fs).astype(np.int64),
        last,
    )
    end_bound = np.maximum(end_bound, t_hi)
    # One window from QRS offset to the end bound: the peak is searched in
    # [t_lo, t_hi], its prominence measured against the whole stretch.
    tlen = int(np.max(end_bound - qoff)) + 1
    tw = _windows(y32, qoff, tlen) - iso[:, None].astype(np.float32)
    tcol = np.arange(tlen)[None, :]
    in_all = tcol <= (end_bound - qoff)[:, None]
    in_peak = (tcol >= (t_lo - qoff)[:, None]) & (tcol <= (t_hi - qoff)[:, None])
    rows = np.arange(n)
    best_prom = np.full(n, -np.inf)
    t_pk = t_lo.copy()
    polarity = np.ones(n)
    for sign in (1.0, -1.0):
        v = sign * tw
        j = _masked_argext(v, in_peak, True)
        big = np.where(in_all, v, np.inf)
        left = np.minimum.accumulate(big, axis=1)[rows, j]
        right = np.minimum.accumulate(big[:, ::-1], axis=1)[:, ::-1][rows, j]
        # A hump comes back down on both sides; a slope (ST, the next P) does not.
        amp = v[rows, j]
        prom = amp - np.maximum(left, right)
        score = np.where(prom >= T_MIN_PROMINENCE * np.abs(amp), amp, -np.inf)
        take = score > best_prom
        best_prom = np.where(take, score, best_prom)
        t_pk = np.where(take, qoff + j, t_pk)
        polarity = np.where(take, sign, polarity)
    t_amp = best_prom
    t_ok = np.isfinite(t_amp) & (t_amp > 3.0 * noise) & (t_amp > 0.02 * qrs_amp)

    # T offset: maximum of the area indicator between the T peak and the bound.
    wt = _s(T_AREA_WINDOW_S, fs)
    # A T wave's descent from its peak lasts a limited time (scaled like QT with RR).
    end_bound = np.minimum(end_bound, t_pk + (T_MAX_DESCENT_S * np.sqrt(rr_t) * fs).astype(int))
    end_bound = np.maximum(end_bound, t_pk + 2)
    elen = int(np.max(end_bound - t_pk)) + 1
    area = _area_indicator(y32, t_pk, elen, wt, backward=True)
    area = area * polarity[:, None]
    evalid = np.arange(elen)[None, :] <= (end_bound - t_pk)[:, None]
    t_end = t_pk + _masked_argext(area, evalid, True)
    out["t_peak"] = np.where(t_ok, t_pk, np.nan).astype(np.float64)
    out["t_offset"] = np.where(t_ok, t_end, np.nan).astype(np.float64)

    # ---- P wave ----------------------------------------------------------------------
    p_hi = qon - _s(0.02, fs)
    # The P window starts after the previous T wave; its end estimate is the least sure
    # point in a fast rhythm (T running into P), so the bound is the earlier of the T end
    # and a fixed delay after the T peak.
    # Only beats that look like real QRS complexes count as the previous beat and make P
    # templates: a T or P wave taken for a beat by the detector (much flatter than the
    # record's QRS) would close the window and spoil its neighbours' templates.
    members = slope_max >= P_TEMPLATE_MIN_SLOPE * np.percentile(slope_max, 75)
    m_idx = np.flatnonzero(members)
    prev_m = np.searchsorted(m_idx, np.arange(n)) - 1
    has_prev = prev_m >= 0
    prev_m = m_idx[np.maximum(prev_m, 0)] if m_idx.size else np.zeros(n, dtype=np.int64)
    has_prev &= m_idx.size > 0
    far = -(10**9)
    prev_t_end = np.where(has_prev, np.where(t_ok, t_end, r + _s(0.3, fs))[prev_m], far)
    prev_t_pk = np.where(has_prev, np.where(t_ok, t_pk, r + _s(0.2, fs))[prev_m], far)
    after_t = np.minimum(prev_t_end + _s(0.02, fs), prev_t_pk + _s(P_AFTER_T_PEAK_S, fs))
    p_lo = np.maximum.reduce([qon - _s(P_WINDOW_S, fs), after_t, np.zeros(n, int)])
    p_lo = np.minimum(p_lo, p_hi)
    plen = _s(P_WINDOW_S, fs)
    pstart = qon - plen
    pcol = np.arange(plen)[None, :]
    # Prefer humps at a usual PR distance: far from QRS onset, the previous T wave's tail
    # and U waves are likelier than a P wave.
    dist = (plen - pcol) / fs
    prior = np.clip(1.0 - (dist - P_USUAL_MAX_S) / (P_WINDOW_S - P_USUAL_MAX_S) * 0.6, 0.4, 1.0)
    p_ok, p_pk, ppol, hump1 = _p_pass(
        y32, iso, pstart, p_lo, p_hi, prior, noise, qrs_amp, fs, members=members
    )

    # Second chance where the first pass found no P wave: at fast rates the P wave rides
    # on the falling T wave, starts before the T end estimate, and is no hump of the raw
    # level. Search from shortly after the previous T peak in a copy with the slow trend
    # removed (a symmetric smoother leaves a straight T slope out of the difference).
    box2 = _s(P_DETREND_S / 2, fs)
    # The trend must not see the QRS complexes (their edges would dig false humps just
    # before QRS onset): bridge each complex with a straight line first.
    in_qrs = np.zeros(x.size + 1, dtype=np.int64)
    np.add.at(in_qrs, qon, 1)
    np.add.at(in_qrs, qoff + 1, -1)
    bridged = np.cumsum(in_qrs[:-1]) > 0
    y_b = y.copy()
    if bridged.any() and not bridged.all():
        idx = np.arange(x.size)
        y_b[bridged] = np.interp(idx[bridged], idx[~bridged], y[~bridged])
    slow = uniform_filter1d(uniform_filter1d(y_b, box2, mode="nearest"), box2, mode="nearest")
    z32 = (y_b - slow).astype(np.float32)
    p_lo2 = np.maximum.reduce(
        [qon - _s(P_WINDOW_S, fs), prev_t_pk + _s(P_AFTER_T_PEAK_MIN_S, fs), np.zeros(n, int)]
    )
    # Its end stops short of the PR segment, which the detrending turns into a hump of
    # its own (a P peak lies at least about 70 ms before QRS onset).
    p_hi2 = qon - _s(P2_END_BEFORE_QRS_S, fs)
    p_lo2 = np.minimum(p_lo2, p_hi2)
    # The second pass looks for P waves of one polarity: that of the lead's P waves found
    # by the first pass when there are enough of them, else upright (the usual polarity in
    # limb lead II and the precordial leads V3-V6 that monitoring leads resemble). The
    # detrended signal has a trough of the opposite sign on each side of a P wave, which
    # must not be taken for an inverted one.
    n_first = int(p_ok.sum())
    lead_pol = 1.0
    if n_first >= max(P2_MIN_FIRST_PASS, 0.1 * n):
        lead_pol = 1.0 if float(np.sum(ppol[p_ok])) >= 0 else -1.0
    ok2, pk2, pol2, hump2 = _p_pass(
        z32, np.zeros(n), pstart, p_lo2, p_hi2, prior, noise, qrs_amp, fs, P2_MIN_CORRELATION,
        one_polarity=lead_pol, members=members, min_snr=P2_MIN_SNR,
    )
    # A conducted P wave keeps its distance to the QRS from beat to beat; in atrial
    # fibrillation the humps found fall anywhere (and before a premature beat the window
    # holds something else), so most neighbours must have their P at the same distance.
    found = np.where(p_ok | hump1, qon - p_pk, np.where(hump2, qon - pk2, np.nan))
    second = ok2 & ~p_ok & _steady_pr(found, members, fs, P2_PR_TOLERANCE_S, P2_PR_NEED)
    # In an irregular rhythm (atrial fibrillation's hallmark) a first-pass P wave must
    # keep its distance to the QRS too: fibrillatory waves that happen to match the
    # neighbours' windows do not.
    drr = np.abs(np.diff(rr_prev, prepend=rr_prev[0])) / rr_prev
    drr_pad = np.pad(drr, P_TEMPLATE_HALF, mode="edge")
    irregular = (
        np.median(sliding_window_view(drr_pad, 2 * P_TEMPLATE_HALF + 1), axis=1)
        > P_IRREGULAR_RR
    )
    # So must the P wave of a QRS unlike its neighbours' (a ventricular beat has no P wave
    # of its own; an aberrantly conducted one keeps its PR interval).
    qrs_like = _qrs_like_neighbours(x, qon, members, fs)
    p_ok &= (qrs_like & ~irregular) | _steady_pr(found, members, fs, P_PR_TOLERANCE_S, P_PR_NEED)
    # Not before a premature beat (its window holds the previous T wave).
    rr_pad = np.pad(rr_prev, P_TEMPLATE_HALF, mode="edge")
    rr_local = np.median(sliding_window_view(rr_pad, 2 * P_TEMPLATE_HALF + 1), axis=1)
    rr_member = np.where(has_prev, r - r[prev_m], rr_prev)
    second &= rr_member >= P2_MIN_RR_FRACTION * rr_local
    # Nor for a QRS unlike its neighbours'.
    second &= qrs_like
    p_ok = p_ok | second
    p_pk = np.where(second, pk2, p_pk)
    ppol = np.where(second, pol2, ppol)

    wp = _s(P_AREA_WINDOW_S, fs)
    span_p = _s(0.12, fs)
    p_on = np.zeros(n, dtype=np.int64)
    p_off = np.zeros(n, dtype=np.int64)
    for sig, rows_, lo_ in ((y32, ~second, p_lo), (z32, second, p_lo2)):
        if not rows_.any():
            continue
        pk_, pol_, qon_, lo_ = p_pk[rows_], ppol[rows_], qon[rows_], lo_[rows_]
        a_off = _area_indicator(sig, pk_, span_p, wp, backward=True)
        off_valid = (pk_[:, None] + np.arange(span_p)[None, :]) <= qon_[:, None] - 1
        p_off[rows_] = pk_ + _masked_argext(a_off * pol_[:, None], off_valid, True)
        on_start = pk_ - span_p + 1
        a_on = _area_indicator(sig, on_start, span_p, wp, backward=False)
        on_valid = (on_start[:, None] + np.arange(span_p)[None, :]) >= np.maximum(
            lo_ - wp, 0
        )[:, None]
        p_on[rows_] = on_start + _masked_argext(a_on * pol_[:, None], on_valid, True)
    p_ok &= (p_on < p_pk) & (p_pk < p_off) & (p_off < qon)
    out["p_peak"] = np.where(p_ok, p_pk, np.nan).astype(np.float64)
    out["p_onset"] = np.where(p_ok, p_on, np.nan).astype(np.float64)
    out["p_offset"] = np.where(p_ok, p_off, np.nan).astype(np.float64)

    # T bounds must respect the order of the points (a T offset beyond the next QRS
    # onset is not a T wave of this beat).
    next_qon = np.where(has_next, qon[strong[np.minimum(nxt, strong.size - 1)]], last + 1)
    bad_t = ~(
        (out["t_peak"] > qrs_off) & (out["t_offset"] > out["t_peak"]) & (out["t_offset"] < next_qon)
    )
    out["t_peak"][bad_t] = np.nan
    out["t_offset"][bad_t] = np.nan
    # No QRS at all (a flat stretch, a beat marked in a gap): nothing to delineate.
    no_qrs = slope_max < max(NO_QRS_SLOPE * float(np.median(slope_max)), 1e-9)
    for name in DELINEATION_POINTS:
        out[name][no_qrs] = np.nan
    return out


def _delineate_in_chunks(x: np.ndarray, r: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """:func:`ecg_delineate` of many sorted beats, :data:`CHUNK_BEATS` at a time.

    Each chunk is delineated with :data:`CHUNK_CONTEXT_BEATS` of its neighbours on each
    side, on the stretch of signal they span plus :data:`CHUNK_MARGIN_S`, and keeps the
    results of its own beats: the record-wide medians become medians over some hours,
    and the templates of the beats at a chunk's edge still have their neighbours.
    """
    n = r.size
    out = {name: np.full(n, np.nan) for name in DELINEATION_POINTS}
    margin = _s(CHUNK_MARGIN_S, fs)
    for first in range(0, n, CHUNK_BEATS):
        stop = min(n, first + CHUNK_BEATS)
        a, b = max(0, first - CHUNK_CONTEXT_BEATS), min(n, stop + CHUNK_CONTEXT_BEATS)
        s0, s1 = max(0, int(r[a]) - margin), min(x.size, int(r[b - 1]) + margin + 1)
        part = ecg_delineate(x[s0:s1], r[a:b] - s0, fs)
        for name in DELINEATION_POINTS:
            out[name][first:stop] = part[name][first - a : stop - a] + s0
    return out


def _p_pass(
    sig: np.ndarray,
    iso: np.ndarray,
    pstart: np.ndarray,
    p_lo: np.ndarray,
    p_hi: np.ndarray,
    prior: np.ndarray,
    noise: float,
    qrs_amp: np.ndarray,
    fs: float,
    min_corr: float = P_MIN_CORRELATION,
    one_polarity: bool | float = False,
    members: np.ndarray | None = None,
    min_snr: float = P_MIN_SNR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One P search: the largest hump of ``sig`` in ``[p_lo, p_hi]`` that agrees with the
    neighbours. With ``one_polarity`` every beat takes one polarity: +1 or -1 if given
    as such, else (True) the one found in more beats.
    Returns (found, peak sample, polarity, a hump clear of the noise whether or not it
    agrees with the neighbours)."""
    n = pstart.size
    plen = prior.shape[1]
    rows = np.arange(n)
    edge = _s(0.01, fs)
    pw = _windows(sig, pstart, plen) - iso[:, None].astype(np.float32)
    pcol = np.arange(plen)[None, :]
    pvalid = (pcol >= (p_lo - pstart)[:, None]) & (pcol <= (p_hi - pstart)[:, None])
    first_col = p_lo - pstart
    last_col = p_hi - pstart
    cons = _p_consistent(pw, pvalid, n, min_corr, members)
    long_enough = (p_hi - p_lo) > _s(0.06, fs)
    found = {}
    for sign in (1.0, -1.0):
        v = sign * pw
        j = _masked_argext(v * prior, pvalid, True)
        big = np.where(pvalid, v, np.inf)
        left = np.minimum.accumulate(big, axis=1)[rows, j]
        right = np.minimum.accumulate(big[:, ::-1], axis=1)[:, ::-1][rows, j]
        amp = v[rows, j]
        hump = (amp - np.maximum(left, right)) >= P_MIN_PROMINENCE * np.abs(amp)
        hump &= (j > first_col + edge) & (j < last_col - edge)
        score = np.where(hump, amp * prior[0, j], -np.inf)
        ok = hump & (amp > min_snr * noise) & (amp > P_MIN_REL_AMP * qrs_amp)
        # Agreement with the neighbours' P wave (leave-one-out median of aligned windows).
        found[sign] = (score, ok & long_enough & cons, pstart + j, ok)
    if one_polarity:
        # A lead's P waves all have the same polarity: given, or the one found in more
        # beats.
        if one_polarity is True:
            sign = 1.0 if found[1.0][1].sum() >= found[-1.0][1].sum() else -1.0
        else:
            sign = float(one_polarity)
        _, p_ok, p_pk, hump_ok = found[sign]
        return p_ok, p_pk, np.full(n, sign), hump_ok
    take = found[-1.0][0] > found[1.0][0]
    p_ok = np.where(take, found[-1.0][1], found[1.0][1])
    p_pk = np.where(take, found[-1.0][2], found[1.0][2])
    ppol = np.where(take, -1.0, 1.0)
    hump_ok = np.where(take, found[-1.0][3], found[1.0][3])
    return p_ok, p_pk, ppol, hump_ok


def _qrs_like_neighbours(
    x: np.ndarray, qon: np.ndarray, members: np.ndarray, fs: float
) -> np.ndarray:
    """Whether each beat's QRS (from its onset) correlates with the median of its
    neighbours' QRS complexes."""
    n = qon.size
    if n < 3:
        return np.ones(n, dtype=bool)
    step = max(1, int(fs // 180))
    w = _windows(x, qon - _s(0.01, fs), _s(0.12, fs))[:, ::step]
    w = w - w.mean(axis=1, keepdims=True)
    template = np.median(w[_neighbours(members, P_TEMPLATE_HALF)], axis=1)
    num = (w * template).sum(axis=1)
    den = np.sqrt((w * w).sum(axis=1) * (template * template).sum(axis=1)) + 1e-12
    return num / den >= P2_MIN_QRS_CORRELATION


def _steady_pr(
    dist: np.ndarray, members: np.ndarray, fs: float, tolerance_s: float, need: int
) -> np.ndarray:
    """Whether at least ``need`` of the neighbours (member beats) have a P wave within
    ``tolerance_s`` of the same distance from their QRS (``dist``, samples, NaN where
    none)."""
    n = dist.size
    if n < 3:
        return np.ones(n, dtype=bool)
    others = dist[_neighbours(members, P_TEMPLATE_HALF)]
    with np.errstate(invalid="ignore"):
        close = np.abs(others - dist[:, None]) <= tolerance_s * fs
    return close.sum(axis=1) >= need


def _neighbours(members: np.ndarray, h: int) -> np.ndarray:
    """Per beat, the ``h`` nearest member beats on each side (itself excluded), as indices;
    at the ends of the record the missing side is taken further on the other side."""
    n = members.size
    m_idx = np.flatnonzero(members)
    if m_idx.size < 2 * h + 1:
        members = np.ones(n, dtype=bool)
        m_idx = np.arange(n)
    m = m_idx.size
    pos = np.searchsorted(m_idx, np.arange(n))  # first member at or after the beat
    right0 = pos + members.astype(np.int64)  # skip the beat itself if it is a member
    left = pos[:, None] - np.arange(h, 0, -1)[None, :]
    right = right0[:, None] + np.arange(h)[None, :]
    extra_r = right0[:, None] + h + np.arange(h)[None, :]
    extra_l = pos[:, None] - h - 1 - np.arange(h)[None, :]
    left = np.where(left < 0, extra_r, left)
    right = np.where(right >= m, extra_l, right)
    idx = np.clip(np.concatenate([left, right], axis=1), 0, m - 1)
    return m_idx[idx]


def _p_consistent(
    pw: np.ndarray,
    pvalid: np.ndarray,
    n: int,
    min_corr: float = P_MIN_CORRELATION,
    members: np.ndarray | None = None,
) -> np.ndarray:
    """Whether each beat's P window matches the median of its neighbours' (itself left
    out; only ``members``, the beats that look like real QRS complexes, make templates)."""
    if members is None:
        members = np.ones(n, dtype=bool)
    h = P_TEMPLATE_HALF
    if n < 3:
        return np.ones(n, dtype=bool)
    cnt = np.maximum(pvalid.sum(axis=1), 1)
    mean = np.where(pvalid, pw, 0.0).sum(axis=1) / cnt
    # Invalid samples (outside this beat's window) count as the beat's own mean: zero.
    w = np.where(pvalid, pw - mean[:, None], 0.0)
    # Every other sample: the P wave is slow, and the median is the costly step.
    others = w[:, ::2][_neighbours(members, h)]  # (n, 2h, L/2)
    template = np.median(others, axis=1)
    a = w[:, ::2]
    pvalid = pvalid[:, ::2]
    cnt = np.maximum(pvalid.sum(axis=1), 1)
    b = np.where(pvalid, template, 0.0)
    b = b - (b.sum(axis=1) / cnt)[:, None] * pvalid
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-12
    corr = num / den
    ratio = np.ptp(b, axis=1) / (np.ptp(a, axis=1) + 1e-12)
    return (corr >= min_corr) & (ratio >= P_MIN_TEMPLATE_RATIO)
