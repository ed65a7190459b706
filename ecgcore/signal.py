"""Signal conditioning and rate conversion.

Analysis runs at one internal rate, :data:`INTERNAL_FS`; every index handed back to a
user is converted to the input's own sample numbers with :func:`to_input_index`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps

from ecgcore.errors import SignalError

INTERNAL_FS = 360.0
"""The rate (Hz) at which detection, delineation and classification run."""

MIN_FS = 50.0
MAX_FS = 20_000.0


def check_rate(fs: float) -> float:
    """Return ``fs`` as a float, or raise :class:`SignalError` if it is not a usable ECG rate."""
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise SignalError(f"sampling rate {fs!r} is not a number") from None
    if not np.isfinite(fs) or fs <= 0:
        raise SignalError(f"sampling rate {fs} Hz is not a positive number")
    if fs < MIN_FS or fs > MAX_FS:
        raise SignalError(
            f"sampling rate {fs:g} Hz is outside the supported range "
            f"{MIN_FS:g}-{MAX_FS:g} Hz for ECG"
        )
    return fs


def ecg_resample(x: np.ndarray, fs_in: float, fs_out: float = INTERNAL_FS) -> np.ndarray:
    """Resample a 1-D signal from ``fs_in`` to ``fs_out`` with a polyphase anti-alias filter.

    Sample ``i`` of the output lies at time ``i / fs_out``, as sample ``j`` of the input
    lies at ``j / fs_in``, so indices convert by the ratio of rates.
    """
    x = np.asarray(x, dtype=np.float64)
    if fs_in == fs_out:
        return x.copy()
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    # resample_poly pads with the edge values so the ends do not ring toward zero.
    return sps.resample_poly(x, up, down, padtype="line")


def to_input_index(index: np.ndarray, fs_in: float, fs_internal: float = INTERNAL_FS) -> np.ndarray:
    """Map sample indices at the internal rate back to the input's own sample numbers.

    NaN (an absent wave) stays NaN; the result is float so absent points can be NaN.
    """
    index = np.asarray(index, dtype=np.float64)
    return np.round(index * (fs_in / fs_internal))


def to_internal_index(
    index: np.ndarray, fs_in: float, fs_internal: float = INTERNAL_FS
) -> np.ndarray:
    """Map input sample numbers to sample indices at the internal rate (int64)."""
    index = np.asarray(index, dtype=np.float64)
    return np.round(index * (fs_internal / fs_in)).astype(np.int64)


def fill_gaps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate over non-finite samples.

    Returns
    -------
    filled : np.ndarray
        The signal with every NaN/inf replaced.
    missing : np.ndarray of bool
        Where samples were missing, so later stages can ignore those stretches.
    """
    x = np.asarray(x, dtype=np.float64)
    missing = ~np.isfinite(x)
    if not missing.any():
        return x, missing
    if missing.all():
        raise SignalError("the signal has no finite sample")
    filled = x.copy()
    good = np.flatnonzero(~missing)
    filled[missing] = np.interp(np.flatnonzero(missing), good, x[good])
    return filled, missing


def ecg_condition(
    x: np.ndarray,
    fs: float,
    *,
    highpass_hz: float = 0.5,
    lowpass_hz: float = 40.0,
    mains_hz: float | None = None,
) -> np.ndarray:
    """Remove baseline wander, mains interference and high-frequency noise.

    Zero-phase (forward-backward) filters keep wave positions where they are, so
    delineation on the conditioned signal measures true timings.

    Parameters
    ----------
    x : np.ndarray
        One lead, any rate.
    fs : float
        Its sampling rate in Hz.
    highpass_hz : float
        Cut-off of the baseline-wander high-pass (second-order Butterworth, run twice).
    lowpass_hz : float
        Cut-off of the low-pass; lowered to 45 % of ``fs`` when the rate is low.
    mains_hz : float or None
        50 or 60 to notch out the mains frequency (skipped when above Nyquist).

    Returns
    -------
    np.ndarray
        The conditioned lead, same length and rate.
    """
    fs = check_rate(fs)
    x, _ = fill_gaps(x)
    if x.size < 3:
        return x - np.median(x) if x.size else x
    nyquist = fs / 2.0
    sections = [sps.butter(2, highpass_hz / nyquist, btype="highpass", output="sos")]
    lowpass = min(lowpass_hz, 0.45 * fs)
    if lowpass < 0.95 * nyquist:
        sections.append(sps.butter(4, lowpass / nyquist, btype="lowpass", output="sos"))
    if mains_hz is not None and mains_hz < 0.95 * nyquist:
        b, a = sps.iirnotch(mains_hz, Q=30.0, fs=fs)
        sections.append(sps.tf2sos(b, a))
    sos = np.vstack(sections)
    padlen = min(x.size - 1, int(3 * fs))
    return sps.sosfiltfilt(sos, x - np.median(x), padlen=padlen)
