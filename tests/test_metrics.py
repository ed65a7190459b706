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


def test_episode_agreement_counts_overlaps_and_shared_time_once():
    from ecgcore.metrics import episode_agreement, pooled_episode_agreement

    fs = 10.0
    reference = [(0, 100), (200, 300), (500, 600)]
    # Two detections inside the first reference episode, overlapping each other; one
    # straddling the second; one where the reference has none.
    detected = [(10, 60), (40, 90), (250, 350), (700, 800)]
    a = episode_agreement(reference, detected, fs)
    assert (a["ref_n"], a["ref_found"], a["det_n"], a["det_true"]) == (3, 2, 4, 3)
    assert a["ref_s"] == 30.0
    assert a["det_s"] == (80 + 100 + 100) / fs  # (10, 90) merged, (250, 350), (700, 800)
    assert a["overlap_s"] == (80 + 50) / fs
    pooled = pooled_episode_agreement([a, episode_agreement([], [(0, 10)], fs)])
    assert pooled["episode_se"] == round(100 * 2 / 3, 1)
    assert pooled["episode_ppv"] == round(100 * 3 / 5, 1)
    assert pooled["duration_se"] == round(100 * 13 / 30, 1)
    assert pooled["duration_ppv"] == round(100 * 13 / 29, 1)
    empty = pooled_episode_agreement([episode_agreement([], [], fs)])
    assert empty["duration_se"] is None and empty["episode_ppv"] is None


def test_beat_codes_of_other_databases_take_their_aami_class():
    import numpy as np

    from ecgcore.metrics import reference_beats

    positions, classes = reference_beats(np.array([10, 20, 30, 40, 50]),
                                         ["B", "n", "r", "+", "N"])
    assert positions.tolist() == [10, 20, 30, 50]
    assert classes.tolist() == ["N", "N", "V", "N"]
