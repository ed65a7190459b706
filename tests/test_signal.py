import numpy as np
import pytest
import wfdb

from ecgcore.errors import SignalError
from ecgcore.signal import (
    INTERNAL_FS,
    check_rate,
    ecg_condition,
    ecg_resample,
    fill_gaps,
    to_input_index,
    to_internal_index,
)


@pytest.mark.parametrize("fs", [0, -360, float("nan"), 1e6, "abc", None])
def test_absurd_rates_are_refused(fs):
    with pytest.raises(SignalError):
        check_rate(fs)


def test_condition_removes_baseline_wander_and_mains():
    fs = 250.0
    t = np.arange(int(20 * fs)) / fs
    ecg_like = np.sin(2 * np.pi * 1.2 * t) ** 63  # narrow periodic spikes
    wander = 2.0 * np.sin(2 * np.pi * 0.15 * t)
    mains = 0.5 * np.sin(2 * np.pi * 50 * t)
    cleaned = ecg_condition(ecg_like + wander + mains, fs, mains_hz=50)
    reference = ecg_condition(ecg_like, fs, mains_hz=50)
    middle = slice(int(2 * fs), int(18 * fs))
    assert np.std(cleaned[middle] - reference[middle]) < 0.02


def test_condition_keeps_peak_positions(mitdb):
    record = wfdb.rdrecord(str(mitdb / "100"), sampto=36000, channels=[0])
    x = record.p_signal[:, 0]
    cleaned = ecg_condition(x, record.fs)
    ann = wfdb.rdann(str(mitdb / "100"), "atr", sampto=36000)
    beats = ann.sample[(ann.sample > 100) & (ann.sample < 35900)]
    # Zero-phase filtering: the R maximum stays within 3 samples of the raw one.
    shifts = [np.argmax(cleaned[b - 20 : b + 20]) - np.argmax(x[b - 20 : b + 20]) for b in beats]
    assert np.percentile(np.abs(shifts), 95) <= 3


@pytest.mark.parametrize("fs_in", [125.0, 250.0, 500.0, 1000.0, 54.0])
def test_resample_round_trip_of_indices(fs_in):
    n = int(10 * fs_in)
    x = np.zeros(n)
    spikes = np.array([int(fs_in), int(3.3 * fs_in), int(7.1 * fs_in)])
    x[spikes] = 1.0
    y = ecg_resample(x, fs_in, INTERNAL_FS)
    assert abs(y.size - n * INTERNAL_FS / fs_in) <= 1
    found = np.sort(np.argsort(y)[-3:])
    back = to_input_index(found, fs_in)
    np.testing.assert_allclose(back, spikes, atol=1)
    np.testing.assert_array_equal(to_internal_index(spikes, fs_in), np.round(spikes * 360 / fs_in))


def test_fill_gaps_interpolates_and_flags():
    x = np.array([0.0, 1.0, np.nan, np.inf, 4.0])
    filled, missing = fill_gaps(x)
    np.testing.assert_allclose(filled, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(missing, [False, False, True, True, False])
    with pytest.raises(SignalError):
        fill_gaps(np.array([np.nan, np.nan]))
