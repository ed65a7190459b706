import numpy as np
import wfdb

from ecgcore.metrics import flutter_intervals, in_intervals, match_beats, reference_beats


def test_match_is_one_to_one_and_nearest_first():
    ref = np.array([100, 200, 300, 400])
    test = np.array([101, 205, 206, 350, 399, 500])
    m = match_beats(ref, test, tolerance=20)
    assert list(zip(m.ref_index, m.test_index, strict=True)) == [(0, 0), (1, 1), (3, 4)]
    assert list(m.missed) == [2]
    assert list(m.extra) == [2, 3, 5]
    assert m.sensitivity == 0.75
    assert m.ppv == 0.5


def test_match_empty_inputs():
    m = match_beats(np.array([]), np.array([5, 6]), 10)
    assert m.ref_index.size == 0 and list(m.extra) == [0, 1]
    m = match_beats(np.array([5]), np.array([]), 10)
    assert list(m.missed) == [0] and np.isnan(m.ppv)


def test_reference_beats_of_207_leave_out_flutter(mitdb):
    ann = wfdb.rdann(str(mitdb / "207"), "atr")
    intervals = flutter_intervals(ann.sample, ann.symbol)
    assert len(intervals) >= 1
    positions, classes = reference_beats(ann.sample, ann.symbol)
    assert not in_intervals(positions, intervals).any()
    everything, _ = reference_beats(ann.sample, ann.symbol, exclude_flutter=False)
    assert positions.size == everything.size - in_intervals(everything, intervals).sum()
    # Flutter waves ('!') are not beats.
    assert positions.size < np.sum([s != "+" for s in ann.symbol])
    assert set(classes) <= {"N", "S", "V", "F", "Q"}


def test_reference_beats_of_record_100(mitdb):
    ann = wfdb.rdann(str(mitdb / "100"), "atr")
    positions, classes = reference_beats(ann.sample, ann.symbol)
    assert positions.size == 2273
    assert (classes == "S").sum() == 33 and (classes == "V").sum() == 1
