"""Beat segmentation and RR features for the classifiers.

The one place where a beat becomes model input, so training (``training/``) and serving
(``ecgcore.inference``) can never differ. The front door is :func:`beat_inputs`: give it
the conditioned lead at :data:`INTERNAL_FS` and any R positions (reference annotations or
the detector's), and it returns exactly what the models were trained on. One step is for
serving only: a lead that looks recorded upside down (QRS and T both pointing down, as with
swapped electrodes) is turned over (``turn_upright``); no MIT-BIH lead 0 looks so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from ecgcore.signal import INTERNAL_FS

WINDOW_BEFORE = 90
"""Samples before the R peak in a beat window, at :data:`INTERNAL_FS` (250 ms)."""
WINDOW_AFTER = 144
"""Samples after the R peak in a beat window, at :data:`INTERNAL_FS` (400 ms)."""
WINDOW_LENGTH = WINDOW_BEFORE + WINDOW_AFTER

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
"""The AAMI EC57 beat classes, in the order of the five-class model's outputs."""
BINARY_CLASSES = ("normal", "abnormal")
"""The binary model's classes: N against S, V, F and Q."""

WAVEFORM_CHANNELS = ("beat", "beat_minus_template")
"""Channels of :attr:`BeatInputs.waveforms`: the normalised beat, and the same beat minus
the median beat of its context (the patient's own usual beat; :data:`CONTEXT_S`), so a
model can see how a beat differs from this patient's norm rather than from the training
patients'."""

RR_FEATURE_NAMES = (
    "rr_pre_s",
    "rr_post_s",
    "rr_local_s",
    "rr_pre_over_local",
    "rr_post_over_local",
    "rr_pre_over_post",
    "rr_pre_over_record",
    "rr_post_over_record",
    "rr_local_over_record",
    "rr_pre_over_local_median",
    "rr_pre_over_sinus",
    "rr_post_over_sinus",
    "rr_irregularity",
    "p_coherence",
)
"""Names of the columns :func:`beat_rr_features` returns, in order: the beat's rhythm
context. All but the last come from the RR intervals; ``p_coherence``
(:func:`p_coherence`) says whether the atrial activity before the QRS is locked to it,
which the RR intervals cannot: a premature beat in sinus rhythm (S) and a short cycle of
atrial fibrillation (N) look alike in RR, but only the first comes with a P wave."""

LOCAL_RR_BEATS = 10
"""Intervals around a beat averaged into ``rr_local_s``."""
LOCAL_MEDIAN_BEATS = 40
"""Intervals around a beat whose median gives the robust local rhythm."""
SINUS_BEATS = 100
"""Intervals around a beat whose upper quantile estimates the underlying sinus cycle."""
IRREGULARITY_BEATS = 20
"""Intervals around a beat over which the rhythm's irregularity is measured."""
SINUS_QUANTILE = 80.0
"""With frequent ectopic beats (record 232: more S than N beats) the median interval is
the ectopic one; the longer intervals still belong to the sinus rhythm."""
ALIGN_HALF_WIDTH_S = 0.060
""":func:`align_rpeaks` searches this far either side of a given R position."""
RATIO_CLIP = (0.1, 5.0)
P_COHERENCE_BEATS = 31
"""Beats over which ``p_coherence`` is taken (the rhythm module's AF window)."""
NORMAL_TEMPLATE_BEATS = 31
"""Beats called normal whose median QRS is a beat's reference (:func:`normal_qrs_correlation`)."""
POLARITY_HALF_WIDTH_S = 0.060
""":func:`looks_upside_down` takes the QRS this far either side of the R peak."""
POLARITY_T_WINDOW_S = (0.15, 0.40)
""":func:`looks_upside_down` takes the T wave in this stretch after the R peak."""
POLARITY_BASELINE_S = (-0.10, -0.07)
"""The PR segment, before the R peak: the zero line of :func:`looks_upside_down`."""
QRS_WINDOW_S = (0.08, 0.12)
"""The QRS: this long before and after the R peak."""
MIN_NORMAL_BEATS = 5
"""Fewer beats called normal than this give no reference QRS."""
CONTEXT_S = 1800.0
"""A beat's recording-wide context (the amplitude scale, the median beat, the median RR)
is taken over about this long: the length of the MIT-BIH records the networks learnt
from. A recording up to 1.5 times as long is one context (every MIT-BIH record); a longer
one, a Holter recording, is cut into consecutive stretches of about this length
(:func:`context_segments`), so that hours of changing posture, electrodes and heart rate
do not blur the patient's usual beat."""
MIN_CONTEXT_BEATS = 50
"""A context stretch with fewer beats (mostly leads-off) takes the whole recording's."""


@dataclass(frozen=True)
class BeatInputs:
    """Model inputs for the beats of one recording.

    Attributes
    ----------
    waveforms : np.ndarray
        ``(n_beats, WINDOW_LENGTH, len(WAVEFORM_CHANNELS))`` float32.
    rr_features : np.ndarray
        ``(n_beats, len(RR_FEATURE_NAMES))`` float32.
    rpeaks_aligned : np.ndarray
        The R positions actually used (int64, at :data:`INTERNAL_FS`), after
        :func:`align_rpeaks`; one per input position, same order.
    turned_over : bool
        The lead looked recorded upside down, so the waveforms are those of the lead
        turned over (:func:`looks_upside_down`).
    """

    waveforms: np.ndarray
    rr_features: np.ndarray
    rpeaks_aligned: np.ndarray
    turned_over: bool = False

    def __len__(self) -> int:
        return int(self.rr_features.shape[0])

    def subset(self, index: np.ndarray | slice) -> BeatInputs:
        """The inputs of some beats only (RR features stay those computed in context)."""
        return BeatInputs(
            self.waveforms[index], self.rr_features[index], self.rpeaks_aligned[index],
            self.turned_over,
        )


def _qrs_energy(x: np.ndarray, fs: float) -> np.ndarray:
    # A 8-20 Hz band keeps the QRS slopes and drops P/T waves and baseline, so the
    # extremum of its magnitude is a fiducial point that does not depend on who placed
    # the R mark (annotator or detector) nor on the QRS polarity.
    nyquist = fs / 2.0
    high = min(20.0, 0.45 * fs)
    sos = sps.butter(2, [8.0 / nyquist, high / nyquist], btype="bandpass", output="sos")
    if x.size <= 15:
        return np.abs(x)
    return np.abs(sps.sosfiltfilt(sos, x, padlen=min(x.size - 1, 3 * int(fs))))


def align_rpeaks(
    x: np.ndarray, positions: np.ndarray, fs: float = INTERNAL_FS
) -> np.ndarray:
    """Move each R position to the same fiducial point of its QRS complex.

    Reference annotations and detectors place R marks a few samples apart (onset, peak,
    steepest slope...). Training on one and serving on the other would shift every
    window. Each position is moved to the maximum of the smoothed 8-20 Hz band-passed
    magnitude within :data:`ALIGN_HALF_WIDTH_S` of it.

    Parameters
    ----------
    x : np.ndarray
        The conditioned lead.
    positions : np.ndarray
        R positions (sample indices) at ``fs``.
    fs : float
        Rate of ``x``.

    Returns
    -------
    np.ndarray
        Aligned positions (int64), same length and order (ties and crossings are kept as
        they are: the caller's beat list is never reordered or shortened).
    """
    x = np.asarray(x, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0 or x.size == 0:
        return positions.copy()
    energy = _qrs_energy(x, fs)
    # A 30 ms moving average gives the centre of the QRS energy, steadier than one peak.
    width = max(1, int(round(0.030 * fs)))
    energy = np.convolve(energy, np.ones(width) / width, mode="same")
    half = max(1, int(round(ALIGN_HALF_WIDTH_S * fs)))
    padded = np.pad(energy, (half, half), mode="constant", constant_values=-1.0)
    clipped = np.clip(positions, 0, x.size - 1)
    offsets = np.arange(-half, half + 1)
    segments = padded[clipped[:, None] + offsets[None, :] + half]
    return clipped + offsets[np.argmax(segments, axis=1)]


def context_segments(rpeaks: np.ndarray, n_samples: int, fs: float) -> np.ndarray:
    """Per beat, the index of its context stretch (see :data:`CONTEXT_S`).

    All 0 for a recording up to 1.5 * :data:`CONTEXT_S` long; otherwise the recording is
    cut into ``round(duration / CONTEXT_S)`` stretches of equal length.
    """
    rpeaks = np.asarray(rpeaks)
    duration = n_samples / fs
    if duration <= 1.5 * CONTEXT_S:
        return np.zeros(rpeaks.size, dtype=np.int64)
    count = int(round(duration / CONTEXT_S))
    edges = n_samples * np.arange(1, count) / count
    return np.searchsorted(edges, rpeaks, side="right").astype(np.int64)


def _per_context(values: np.ndarray, segments: np.ndarray, reduce, whole=None) -> np.ndarray:
    """``reduce`` of ``values`` (one row per beat) over each beat's context stretch, one
    row per beat; stretches with fewer than :data:`MIN_CONTEXT_BEATS` take the whole
    recording's (``whole``, when the caller has it already)."""
    whole = reduce(values) if whole is None else whole
    out = np.repeat(np.asarray(whole)[None, ...], values.shape[0], axis=0)
    if values.shape[0] and segments.max() > 0:
        for k in np.unique(segments):
            mine = segments == k
            if mine.sum() >= MIN_CONTEXT_BEATS:
                out[mine] = reduce(values[mine])
    return out


def beat_windows(
    x: np.ndarray, rpeaks: np.ndarray, segments: np.ndarray | None = None
) -> np.ndarray:
    """Cut a fixed window around each R peak and normalise it.

    Parameters
    ----------
    x : np.ndarray
        The conditioned lead at :data:`INTERNAL_FS`.
    rpeaks : np.ndarray
        R-peak indices at :data:`INTERNAL_FS`.
    segments : np.ndarray, optional
        Each beat's context stretch (:func:`context_segments`); by default the
        recording's length decides.

    Returns
    -------
    np.ndarray
        ``(n_beats, WINDOW_LENGTH)`` float32. Each window has its median removed and is
        divided by the median beat amplitude of its context (the recording, or its
        stretch of a long recording), so a ventricular beat twice the size of the
        patient's own normal beats stays twice the size.
    """
    x = np.asarray(x, dtype=np.float64)
    rpeaks = np.asarray(rpeaks, dtype=np.int64)
    if rpeaks.size == 0 or x.size == 0:
        return np.zeros((rpeaks.size, WINDOW_LENGTH), dtype=np.float32)
    if segments is None:
        segments = context_segments(rpeaks, x.size, INTERNAL_FS)
    padded = np.pad(x, (WINDOW_BEFORE, WINDOW_AFTER), mode="edge")
    offsets = np.arange(-WINDOW_BEFORE, WINDOW_AFTER)
    index = np.clip(rpeaks, 0, x.size - 1)[:, None] + offsets[None, :] + WINDOW_BEFORE
    windows = padded[index]
    windows = windows - np.median(windows, axis=1, keepdims=True)
    amplitude = np.ptp(windows, axis=1)
    scale = _per_context(amplitude, segments, lambda a: float(np.median(a)))
    scale[~np.isfinite(scale) | (scale <= 1e-9)] = 1.0
    return (windows / scale[:, None]).astype(np.float32)


def looks_upside_down(windows: np.ndarray) -> bool:
    """Whether these beat windows look like a lead recorded upside down.

    On the median beat, measured from the PR segment (:data:`POLARITY_BASELINE_S`): the
    QRS (within :data:`POLARITY_HALF_WIDTH_S` of the R peak) and the T wave
    (:data:`POLARITY_T_WINDOW_S`) both reach further down than up. Swapped electrodes turn
    the whole beat over, so a usual beat (QRS and T up) then has both down, and the
    same lead the right way up gives the opposite answer. A QRS that points down with
    an upright T is left alone: that is how some leads are by nature (MIT-BIH 207's
    MLII; 217's paced beats), and how the networks were trained on them.
    """
    return _beat_upside_down(beat_template(windows))


def _beat_upside_down(template: np.ndarray) -> bool:
    """:func:`looks_upside_down` of the median beat itself."""
    beat = np.asarray(template, dtype=np.float64)

    def at(seconds: float) -> int:
        return WINDOW_BEFORE + int(round(seconds * INTERNAL_FS))

    beat = beat - float(np.median(beat[at(POLARITY_BASELINE_S[0]) : at(POLARITY_BASELINE_S[1])]))
    qrs = beat[at(-POLARITY_HALF_WIDTH_S) : at(POLARITY_HALF_WIDTH_S) + 1]
    t_wave = beat[at(POLARITY_T_WINDOW_S[0]) : at(POLARITY_T_WINDOW_S[1])]
    return bool(-qrs.min() > qrs.max() and -t_wave.min() > t_wave.max())


def beat_template(windows: np.ndarray) -> np.ndarray:
    """The recording's usual beat: the sample-wise median of its beat windows.

    Most beats of most recordings are the patient's normal beats, so the median is their
    shape even with many ectopic beats (it needs only a majority).
    """
    if windows.shape[0] == 0:
        return np.zeros(windows.shape[1:], dtype=np.float32)
    return np.median(windows, axis=0).astype(np.float32)


def _window_stat(values: np.ndarray, half: int, stat: str | float) -> np.ndarray:
    """Mean, median or a percentile (``stat`` a number) of ``values[i-half:i+half]``."""
    n = values.size
    out = np.empty(n, dtype=np.float64)
    if stat == "mean":
        cumulative = np.concatenate([[0.0], np.cumsum(values)])

    def one(i: int) -> float:
        lo, hi = max(0, i - half), min(n, i + half)
        if hi <= lo:
            lo, hi = max(0, n - 1), n
        if stat == "mean":
            return (cumulative[hi] - cumulative[lo]) / (hi - lo)
        if stat == "median":
            return np.median(values[lo:hi])
        return np.percentile(values[lo:hi], float(stat))

    width = 2 * half
    if stat == "mean" or half < 1 or n < width + 1:
        for i in range(n):
            out[i] = one(i)
        return out
    # Every full window at once (a per-beat loop took a third of a second per 30-minute
    # record); the same numpy reductions, so the values are identical. The windows cut
    # short at both ends go one by one. Blocks bound the memory on day-long recordings.
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    first, last = half, n - half  # beats whose window is full: values[i-half:i+half]
    block = 8192
    for start in range(first, last + 1, block):
        stop = min(start + block, last + 1)
        chunk = windows[start - half:stop - half]
        if stat == "median":
            out[start:stop] = np.median(chunk, axis=1)
        else:
            out[start:stop] = np.percentile(chunk, float(stat), axis=1)
    for i in [*range(0, first), *range(last + 1, n)]:
        out[i] = one(i)
    return out


def column_running_median(rows: np.ndarray, size: int) -> np.ndarray:
    """The running median of ``size`` rows down each column of a 2-D array, the ends
    extended (``scipy.ndimage.median_filter(rows, size=(size, 1), mode="nearest")``).

    Taken one column at a time: scipy's one-dimensional median filter is about seven
    times faster than its n-dimensional one, and a median picks one of the values, so
    the result is the same to the bit.
    """
    from scipy.ndimage import median_filter

    rows = np.asarray(rows, dtype=np.float64)
    out = np.empty_like(rows)
    for column in range(rows.shape[1]):
        out[:, column] = median_filter(rows[:, column], size=size, mode="nearest")
    return out


def nearest_index(kept: np.ndarray, n: int) -> np.ndarray:
    """For each of ``range(n)``, the position in ``kept`` (sorted indices) of the closest."""
    idx = np.arange(n)
    after = np.clip(np.searchsorted(kept, idx), 0, kept.size - 1)
    before = np.clip(after - 1, 0, kept.size - 1)
    return np.where(np.abs(kept[before] - idx) < np.abs(kept[after] - idx), before, after)


def normal_qrs_correlation(
    waveforms: np.ndarray, normal: np.ndarray, n_beats: int = NORMAL_TEMPLATE_BEATS
) -> np.ndarray:
    """How much each beat's QRS is shaped like the QRS of the nearby beats called normal.

    The reference shape of a beat is the sample-wise median QRS of the ``n_beats`` beats
    called normal around the closest one to it; the figure is the correlation of the beat's
    QRS (:data:`QRS_WINDOW_S` around the R peak, mean removed) with it. A ventricular beat
    is shaped unlike the patient's conducted beats (about -0.3 in MIT-BIH's median); a
    conducted beat scores near 1 whatever its timing.

    Parameters
    ----------
    waveforms : np.ndarray
        ``(n, WINDOW_LENGTH)`` or ``(n, WINDOW_LENGTH, channels)`` beat windows
        (:attr:`BeatInputs.waveforms`; the first channel is used).
    normal : np.ndarray
        ``(n,)`` bool: the beats called normal.
    n_beats : int
        Beats called normal in each reference.

    Returns
    -------
    np.ndarray
        ``(n,)`` float64 in [-1, 1]; NaN for every beat when fewer than
        :data:`MIN_NORMAL_BEATS` are called normal, and for a beat whose QRS or
        reference is flat.
    """

    w = np.asarray(waveforms, dtype=np.float64)
    if w.ndim == 3:
        w = w[:, :, 0]
    normal = np.asarray(normal, dtype=bool).ravel()
    if normal.size != w.shape[0]:
        raise ValueError(f"{normal.size} normal flags for {w.shape[0]} beats")
    out = np.full(w.shape[0], np.nan)
    kept = np.flatnonzero(normal)
    if kept.size < MIN_NORMAL_BEATS:
        return out
    a = WINDOW_BEFORE - int(round(QRS_WINDOW_S[0] * INTERNAL_FS))
    b = WINDOW_BEFORE + int(round(QRS_WINDOW_S[1] * INTERNAL_FS)) + 1
    qrs = w[:, a:b] - w[:, a:b].mean(axis=1, keepdims=True)
    reference = column_running_median(qrs[kept], n_beats)
    reference = reference[nearest_index(kept, w.shape[0])]
    den = np.sqrt(np.sum(qrs * qrs, axis=1) * np.sum(reference * reference, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        # A flat QRS (a filled gap, a rail) has no shape to compare: unknown, not 0.
        out = np.where(den > 0, np.sum(qrs * reference, axis=1) / den, np.nan)
    return out


def p_coherence(
    x: np.ndarray, rpeaks: np.ndarray, fs: float, skip: np.ndarray, window: int
) -> np.ndarray:
    """How much of the activity before each QRS is locked to it, per beat.

    The stretch from 300 to 80 ms before each R peak is taken for every beat not in
    ``skip``; the running median of ``window`` such stretches keeps what recurs at the
    same distance from the QRS (a P wave, even one too small for the delineator to
    mark) and averages out what does not (fibrillatory waves, noise). The coherence is
    the median stretch's peak-to-peak over the running median of the single
    stretches' peak-to-peak: about 0.6-0.9 in sinus rhythm, 0.3-0.4 in AF. NaN
    everywhere when fewer than 3 beats can be used.
    """
    from scipy.ndimage import median_filter

    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(rpeaks, dtype=np.int64)
    out = np.full(r.size, np.nan)
    a, b = int(round(0.30 * fs)), int(round(0.08 * fs))
    idx = np.flatnonzero((r >= a) & (r < x.size) & ~np.asarray(skip, dtype=bool))
    if idx.size < 3:
        return out
    w = x[r[idx][:, None] + np.arange(-a, -b)[None, :]]
    w = w - w[:, -1:]
    template = column_running_median(w, window)
    single = median_filter(np.ptp(w, axis=1), size=window, mode="nearest")
    coherence = np.ptp(template, axis=1) / np.maximum(single, 1e-12)
    return coherence[nearest_index(idx, r.size)]


def beat_rr_features(
    x: np.ndarray, rpeaks: np.ndarray, fs: float = INTERNAL_FS
) -> np.ndarray:
    """RR features of each beat, relative to the patient's own rhythm, and its P coherence.

    Parameters
    ----------
    x : np.ndarray
        The conditioned lead the R peaks index, for ``p_coherence``.
    rpeaks : np.ndarray
        R-peak indices (any rate), ascending.
    fs : float
        The rate of ``x`` and of those indices.

    Returns
    -------
    np.ndarray
        ``(n_beats, len(RR_FEATURE_NAMES))`` float32: previous RR, next RR and the local
        mean RR (the ``LOCAL_RR_BEATS`` intervals around the beat) in seconds; their
        ratios; the previous, next and local RR over the median RR of the beat's context
        (the recording, or its stretch of a long one: :data:`CONTEXT_S`); and the
        previous RR over the median of the ``LOCAL_MEDIAN_BEATS`` intervals around the
        beat (a premature beat is short against its neighbours even in a fast rhythm);
        the previous and next RR over the estimated sinus cycle (the ``SINUS_QUANTILE``
        percentile of the ``SINUS_BEATS`` intervals around the beat); and the rhythm's
        irregularity (median successive difference over median interval, over the
        ``IRREGULARITY_BEATS`` intervals around the beat); last, :func:`p_coherence`
        over the ``P_COHERENCE_BEATS`` beats around it (clipped to 0-2; 1 when fewer
        than 3 beats can be used).
        At the ends, a missing interval is taken as the local mean. Ratios are clipped to
        ``RATIO_CLIP``.
    """
    rpeaks = np.asarray(rpeaks, dtype=np.float64)
    n = rpeaks.size
    out = np.ones((n, len(RR_FEATURE_NAMES)), dtype=np.float32)
    if n < 2:
        return out
    rr = np.diff(rpeaks) / fs
    rr = np.maximum(rr, 1.0 / fs)
    local_intervals = _window_stat(rr, LOCAL_RR_BEATS // 2, "mean")
    median_intervals = _window_stat(rr, LOCAL_MEDIAN_BEATS // 2, "median")
    # Beat i sits between interval i-1 (before) and interval i (after).
    before = np.concatenate([[np.nan], rr])
    after = np.concatenate([rr, [np.nan]])
    local = np.concatenate([local_intervals[:1], local_intervals])
    local = 0.5 * (local + np.concatenate([local_intervals, local_intervals[-1:]]))
    median_local = np.concatenate([median_intervals[:1], median_intervals])
    sinus_intervals = _window_stat(rr, SINUS_BEATS // 2, SINUS_QUANTILE)
    sinus = np.concatenate([sinus_intervals[:1], sinus_intervals])
    # In atrial fibrillation every interval is "premature" against the sinus estimate;
    # the median successive difference over the median interval tells the model so.
    successive = np.abs(np.diff(rr, prepend=rr[0]))
    irregular = _window_stat(successive, IRREGULARITY_BEATS // 2, "median") / np.maximum(
        _window_stat(rr, IRREGULARITY_BEATS // 2, "median"), 1e-3
    )
    irregular = np.concatenate([irregular[:1], irregular])
    pre = np.where(np.isnan(before), local, before)
    post = np.where(np.isnan(after), local, after)
    # The median RR of the beat's context (the recording, or its stretch of a long one);
    # interval i starts at beat i, and the last beat takes its predecessor's.
    segments = context_segments(rpeaks, np.asarray(x).size, fs)
    record = _per_context(rr, segments[:-1], lambda v: float(np.median(v)))
    record = np.concatenate([record, record[-1:]])
    lo, hi = RATIO_CLIP
    out[:, 0] = pre
    out[:, 1] = post
    out[:, 2] = local
    out[:, 3] = np.clip(pre / local, lo, hi)
    out[:, 4] = np.clip(post / local, lo, hi)
    out[:, 5] = np.clip(pre / post, lo, hi)
    out[:, 6] = np.clip(pre / record, lo, hi)
    out[:, 7] = np.clip(post / record, lo, hi)
    out[:, 8] = np.clip(local / record, lo, hi)
    out[:, 9] = np.clip(pre / median_local, lo, hi)
    out[:, 10] = np.clip(pre / sinus, lo, hi)
    out[:, 11] = np.clip(post / sinus, lo, hi)
    out[:, 12] = np.clip(irregular, 0.0, 2.0)
    out[:, :3] = np.clip(out[:, :3], 0.0, 5.0)
    coherence = p_coherence(x, rpeaks.astype(np.int64), fs, np.zeros(n, dtype=bool),
                            P_COHERENCE_BEATS)
    out[:, 13] = np.clip(np.nan_to_num(coherence, nan=1.0), 0.0, 2.0)
    return out


def beat_inputs(
    x: np.ndarray, rpeaks: np.ndarray, fs: float = INTERNAL_FS, *, turn_upright: bool = True
) -> BeatInputs:
    """Turn a conditioned lead and its R positions into the classifiers' inputs.

    Parameters
    ----------
    x : np.ndarray
        One lead conditioned by :func:`ecgcore.signal.ecg_condition`, at
        :data:`INTERNAL_FS` (resample first if the recording is at another rate).
    rpeaks : np.ndarray
        R positions at :data:`INTERNAL_FS`, ascending: reference annotations or detections.
    fs : float
        Must be :data:`INTERNAL_FS`; present so a wrong rate fails loudly.
    turn_upright : bool
        Turn the lead over when it looks recorded upside down (:func:`looks_upside_down`),
        so a lead recorded with its electrodes swapped is read like the training leads.
        The training set is built without it (see :mod:`training.dataset`).

    Returns
    -------
    BeatInputs
        One row per given position, same order.
    """
    if abs(float(fs) - INTERNAL_FS) > 1e-6:
        raise ValueError(f"beat_inputs needs the lead at {INTERNAL_FS:g} Hz, got {fs:g} Hz")
    x = np.asarray(x, dtype=np.float64)
    rpeaks = np.asarray(rpeaks, dtype=np.int64)
    aligned = align_rpeaks(x, rpeaks, fs)
    segments = context_segments(aligned, x.size, fs)
    windows = beat_windows(x, aligned, segments)
    # Electrodes get swapped, on hobby boards above all: a served lead recorded upside
    # down is turned over, so it is classified as the right way up. The RR features and
    # the P coherence do not depend on the polarity. One decision for the recording.
    whole = beat_template(windows)
    turned_over = turn_upright and _beat_upside_down(whole)
    if turned_over:
        windows, whole = -windows, -whole
    template = _per_context(windows, segments, beat_template, whole)
    waveforms = np.stack([windows, windows - template], axis=-1).astype(np.float32)
    rr = beat_rr_features(x, aligned, fs)
    return BeatInputs(waveforms, rr, aligned, turned_over)
