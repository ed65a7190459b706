"""The morphology rule: a beat called V whose QRS is shaped like its N neighbours' is not V,
and a beat called S whose QRS is not shaped like theirs is not S.

Real MIT-BIH records: 119 (DS1, ventricular bigeminy and trigeminy with one clear PVC
shape), 208 (DS1, several PVC shapes and fusion beats) at the reference beat positions,
and 222 (DS2, AF, flutter and nodal rhythm, where the network calls V on beats that the
reference calls N) through the served pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.analysis import (
    AAMI_CLASSES,
    MORPHOLOGY_RULE_NOTE,
    RHYTHM_RULE_NOTE,
    S_NORMAL_QRS_CORRELATION,
    V_NORMAL_QRS_CORRELATION,
    analyze,
    morphology_checked_labels,
    morphology_rule_mask,
    overruled_labels,
    prepare_lead,
)
from ecgcore.beats import MIN_NORMAL_BEATS, beat_inputs, normal_qrs_correlation
from ecgcore.inference import load_classifiers
from ecgcore.io import read
from ecgcore.metrics import reference_beats
from ecgcore.signal import INTERNAL_FS, to_internal_index


def _reference_inputs(mitdb, record: str):
    recording = read(mitdb / record)
    x360, _ = prepare_lead(recording, "MLII")
    ann = recording.annotations
    positions, classes = reference_beats(to_internal_index(ann.sample, recording.fs),
                                         list(ann.symbol))
    return beat_inputs(x360, positions, INTERNAL_FS), np.asarray(classes)


@pytest.fixture(scope="module")
def reference_119(mitdb):
    return _reference_inputs(mitdb, "119")


@pytest.fixture(scope="module")
def analysis_222(mitdb):
    recording = read(mitdb / "222")
    return recording, analyze(recording, "MLII", classifiers=load_classifiers())


@pytest.mark.parametrize("record", ["119", "208"])
def test_ventricular_beats_are_shaped_unlike_their_normal_neighbours(mitdb, record):
    inputs, classes = _reference_inputs(mitdb, record)
    corr = normal_qrs_correlation(inputs.waveforms, classes == "N")
    assert corr.shape == classes.shape and np.all(np.isfinite(corr))
    assert np.all((corr >= -1 - 1e-9) & (corr <= 1 + 1e-9))
    v, n = corr[classes == "V"], corr[classes == "N"]
    assert v.size > 400 and n.size > 1000
    assert np.median(n) > 0.97
    assert np.median(v) < 0.5
    # The rule's threshold keeps (almost) every true V beat: it only overrules V calls.
    assert np.mean(v >= V_NORMAL_QRS_CORRELATION) < 0.01


def test_the_reference_is_the_normal_beats_not_the_majority(reference_119):
    """With every other beat a PVC, a median of all beats would be half ventricular; the
    reference takes the beats called N only."""
    inputs, classes = reference_119
    corr = normal_qrs_correlation(inputs.waveforms, classes == "N")
    # Called N by the reference, and a PVC called N (swap the flags): the PVCs become
    # the reference and the normal beats are now the ones unlike it.
    swapped = normal_qrs_correlation(inputs.waveforms, classes == "V")
    assert np.median(swapped[classes == "V"]) > 0.97
    assert np.median(swapped[classes == "N"]) < 0.5
    assert np.median(corr[classes == "N"]) > 0.97


def test_too_few_normal_beats_give_no_reference_and_never_overrule(reference_119):
    inputs, classes = reference_119
    few = np.zeros(classes.size, dtype=bool)
    few[np.flatnonzero(classes == "N")[: MIN_NORMAL_BEATS - 1]] = True
    corr = normal_qrs_correlation(inputs.waveforms, few)
    assert np.all(np.isnan(corr))
    probs = np.tile([0.1, 0.1, 0.6, 0.1, 0.1], (classes.size, 1))
    assert not morphology_rule_mask(probs, corr).any()
    with pytest.raises(ValueError):
        normal_qrs_correlation(inputs.waveforms, few[:-1])
    # A flat beat (a filled gap) has no shape: unknown, so an S call on it stays S.
    flat = np.array(inputs.waveforms[:300])
    flat[7] = 0.0
    corr = normal_qrs_correlation(flat, classes[:300] == "N")
    assert np.isnan(corr[7]) and np.isfinite(np.delete(corr, 7)).all()
    probs = np.tile([0.2, 0.7, 0.05, 0.04, 0.01], (300, 1))
    assert not morphology_rule_mask(probs, corr)[7]


def test_a_normal_beat_called_v_is_overruled_and_a_pvc_is_not(reference_119):
    inputs, classes = reference_119
    normal = np.flatnonzero(classes == "N")
    pvc = np.flatnonzero(classes == "V")
    probs = np.zeros((classes.size, 5), dtype=np.float32)
    probs[:, 0] = 1.0
    # The network is wrong on 20 normal beats (V, then S) and on 20 PVCs (S, then N),
    # right on 20 other PVCs and 20 normal beats it calls S (premature or not, the shape
    # of a conducted beat).
    wrong, right = normal[100:120], pvc[100:120]
    pvc_called_s, normal_called_s = pvc[200:220], normal[200:220]
    probs[wrong] = [0.1, 0.3, 0.5, 0.05, 0.05]
    probs[right] = [0.3, 0.05, 0.6, 0.04, 0.01]
    probs[pvc_called_s] = [0.3, 0.6, 0.05, 0.04, 0.01]
    probs[normal_called_s] = [0.3, 0.6, 0.05, 0.04, 0.01]
    labels, corr = morphology_checked_labels(inputs.waveforms, probs)
    assert np.all(corr[wrong] >= V_NORMAL_QRS_CORRELATION)
    assert np.all(labels[wrong] == "S")  # the next most probable class, not always N
    assert np.all(labels[right] == "V")
    assert np.all(corr[pvc_called_s] < S_NORMAL_QRS_CORRELATION)
    assert np.all(labels[pvc_called_s] == "V")
    assert np.all(labels[normal_called_s] == "S")
    untouched = np.setdiff1d(np.arange(classes.size), np.concatenate([wrong, pvc_called_s]))
    np.testing.assert_array_equal(
        labels[untouched], np.asarray(AAMI_CLASSES)[np.argmax(probs[untouched], axis=1)])


def test_overruled_labels_take_the_best_allowed_class():
    probs = np.array([[0.1, 0.05, 0.6, 0.2, 0.05],   # next best F
                      [0.3, 0.05, 0.6, 0.04, 0.01],  # next best N
                      [0.1, 0.1, 0.7, 0.05, 0.05],   # not overruled
                      [0.3, 0.6, 0.05, 0.04, 0.01],  # an S call: becomes V
                      [0.9, 0.05, 0.03, 0.01, 0.01]])  # N is never overruled
    overruled = np.array([True, True, False, True, True])
    assert overruled_labels(probs, overruled).tolist() == ["F", "N", "V", "V", "N"]
    assert overruled_labels(probs, overruled, to=("N", "S")).tolist() == [
        "N", "N", "V", "V", "N"]
    corr = np.array([0.99, 0.99, 0.5, 0.5, 0.1])
    assert morphology_rule_mask(probs, corr).tolist() == [True, True, False, True, False]
    assert morphology_rule_mask(probs, corr, v_threshold=None).tolist() == [
        False, False, False, True, False]
    assert morphology_rule_mask(probs, corr, s_threshold=None).tolist() == [
        True, True, False, False, False]
    assert not morphology_rule_mask(probs, np.full(5, np.nan)).any()
    assert overruled_labels(np.zeros((0, 5)), np.zeros(0, bool)).size == 0
    with pytest.raises(ValueError):
        morphology_rule_mask(probs, np.ones(2))


def test_served_labels_of_222(analysis_222):
    recording, a = analysis_222
    rule = a.morphology_rule
    network, before_rhythm, served = a.aami_network_labels, a.aami_beat_labels, a.aami_labels
    from_v = rule & (network == "V")
    assert from_v.sum() >= 10, "222: the network calls V on conducted beats; the rule should act"
    assert np.all(np.isin(network[rule], ["V", "S"]))
    assert not np.any(before_rhythm[from_v] == "V")
    assert np.all(before_rhythm[rule & (network == "S")] == "V")
    np.testing.assert_array_equal(before_rhythm[~rule], network[~rule])
    # Then the rhythm rule, S -> N inside AF/AFL, on top.
    np.testing.assert_array_equal(served, np.where(a.rhythm_rule, "N", before_rhythm))
    # The probabilities are the network's own.
    np.testing.assert_array_equal(
        np.asarray(AAMI_CLASSES)[np.argmax(a.aami_probs[rule], axis=1)], network[rule])
    beats = a.to_dict()["beats"]
    for i in np.flatnonzero(rule):
        assert MORPHOLOGY_RULE_NOTE in beats[i]["aami"]["rule"]
        assert beats[i]["aami"]["network_label"] == network[i]
        assert beats[i]["aami"]["label"] == served[i]
        if a.rhythm_rule[i]:
            assert RHYTHM_RULE_NOTE in beats[i]["aami"]["rule"]


def test_the_rhythm_is_found_from_the_labels_it_was_tuned_with(analysis_222):
    """The rhythm's settings were chosen with the labels of ecgcore.analysis.RHYTHM_LABELS
    (bench/rhythm.py), the network's own or the morphology rule's."""
    from ecgcore.rhythm import ecg_rhythm

    recording, a = analysis_222
    x360, _ = prepare_lead(recording, "MLII")
    episodes = ecg_rhythm(x360, a.rpeaks, INTERNAL_FS, beat_classes=a.rhythm_input_labels,
                          p_peaks=a.points["p_peak"])
    last = recording.n_samples - 1
    assert [(e["label"], e["start"], min(e["end"], last)) for e in episodes] == [
        (e["label"], e["start"], e["end"]) for e in a.rhythm]


def test_a_cached_analysis_keeps_the_rule(analysis_222, tmp_path):
    from ecgcore.cache import load_analysis, save_analysis

    _, a = analysis_222
    save_analysis("k", a, tmp_path)
    back = load_analysis("k", tmp_path)
    np.testing.assert_array_equal(back.morphology_rule, a.morphology_rule)
    np.testing.assert_array_equal(back.aami_labels, a.aami_labels)
