"""The rhythm rule: no beat is served as S inside detected atrial fibrillation or flutter.

Real MIT-BIH records through the served pipeline (:func:`ecgcore.analysis.analyze` with the
committed models): 201 (DS1, AF), 219 (DS2, AF with many beats the network calls S) and
100 (no AF).
"""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.analysis import (
    AAMI_CLASSES,
    BINARY_RULE_NOTE,
    BINARY_SERVED_THRESHOLD,
    NO_S_RHYTHMS,
    RHYTHM_RULE_NOTE,
    analyze,
    prepare_lead,
    rhythm_rule_mask,
    served_binary_labels,
)
from ecgcore.inference import load_classifiers
from ecgcore.io import read


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers()


@pytest.fixture(scope="module")
def analyses(mitdb, classifiers):
    out = {}
    for record in ("100", "201", "219"):
        recording = read(mitdb / record)
        out[record] = (recording, analyze(recording, "MLII", classifiers=classifiers))
    return out


def _inside(analysis, labels=NO_S_RHYTHMS) -> np.ndarray:
    inside = np.zeros(analysis.n_beats, dtype=bool)
    for e in analysis.rhythm:
        if e["label"] in labels:
            inside |= (analysis.rpeaks >= e["start"]) & (analysis.rpeaks < e["end"])
    return inside


def test_the_mask_follows_the_episodes_and_touches_only_s():
    rpeaks = np.array([100, 200, 300, 400, 500, 600])
    labels = np.array(["S", "S", "S", "V", "S", "S"])
    rhythm = [
        {"label": "AFIB", "start": 200, "end": 400},  # 200 in, 300 in; end exclusive
        {"label": "AFL", "start": 400, "end": 501},   # 400 is V (kept), 500 in
        {"label": "SVTA", "start": 0, "end": 700},    # not a rhythm without S beats
        {"label": "NOISE", "start": 550, "end": 700},
    ]
    mask = rhythm_rule_mask(rpeaks, labels, rhythm)
    assert mask.tolist() == [False, True, True, False, True, False]
    with pytest.raises(ValueError):
        rhythm_rule_mask(rpeaks, labels[:3], rhythm)


@pytest.mark.parametrize("record", ["201", "219"])
def test_no_s_label_inside_detected_af(analyses, record):
    _, a = analyses[record]
    inside = _inside(a)
    assert inside.sum() > 100, f"{record}: the detector found no AF to test the rule on"
    # The rhythm rule comes after the morphology rule: compare with the labels before it.
    served, network = a.aami_labels, a.aami_beat_labels
    assert not np.any(served[inside] == "S")
    # Outside AF/AFL nothing changes; inside, only S became N.
    np.testing.assert_array_equal(served[~inside], network[~inside])
    changed = served != network
    assert np.all(network[changed] == "S") and np.all(served[changed] == "N")
    np.testing.assert_array_equal(changed, a.rhythm_rule)


def test_the_rule_keeps_what_the_network_said(analyses):
    recording, a = analyses["219"]
    rule = a.rhythm_rule
    assert rule.sum() >= 20, "219: the network called S inside AF; the rule should see them"
    # The probabilities are the network's own: their argmax is still S on relabelled beats
    # (or V, for a beat the morphology rule had already turned to S).
    assert np.all(a.aami_beat_labels[rule] == "S")
    own = rule & ~a.morphology_rule
    assert np.all(np.argmax(a.aami_probs[own], axis=1) == AAMI_CLASSES.index("S"))
    # Binary: relabelled beats are normal; elsewhere the served label is both networks'
    # word (served_binary_labels), whatever the binary network alone said.
    binary, binary_net = a.binary_labels, a.binary_network_labels
    assert np.all(binary[rule] == "normal")
    assert np.any(binary_net[rule] == "abnormal")
    either = (a.binary_p_abnormal >= BINARY_SERVED_THRESHOLD) | (a.aami_labels != "N")
    np.testing.assert_array_equal(binary[~rule] == "abnormal", either[~rule])
    beats = a.to_dict()["beats"]
    for i in np.flatnonzero(own)[:50]:
        beat = beats[i]
        assert beat["aami"]["label"] == "N" and beat["aami"]["network_label"] == "S"
        assert beat["aami"]["rule"] == RHYTHM_RULE_NOTE
        assert max(beat["aami"]["probs"], key=beat["aami"]["probs"].get) == "S"
        assert beat["binary"]["label"] == "normal"
        assert beat["binary"]["p_abnormal"] == round(float(a.binary_p_abnormal[i]), 5)
    for i in np.flatnonzero(~rule & ~a.morphology_rule)[:50]:
        assert beats[i]["aami"]["rule"] is None
        changed = beats[i]["binary"]["label"] != beats[i]["binary"]["network_label"]
        assert beats[i]["binary"]["rule"] == (BINARY_RULE_NOTE if changed else None)


def test_rhythm_comes_from_the_labels_before_the_rhythm_rule(analyses):
    """The AF detector sees the labels before the rhythm rule once (the network's own or
    the morphology rule's, ecgcore.analysis.RHYTHM_LABELS); the rhythm rule is never fed
    back."""
    from ecgcore.rhythm import ecg_rhythm
    from ecgcore.signal import INTERNAL_FS

    recording, a = analyses["219"]
    x360, _ = prepare_lead(recording, "MLII")  # MIT-BIH is at 360 Hz: same sample numbers
    episodes = ecg_rhythm(x360, a.rpeaks, INTERNAL_FS, beat_classes=a.rhythm_input_labels,
                          p_peaks=a.points["p_peak"])
    last = recording.n_samples - 1  # analyze() clips an end to the last sample
    assert [(e["label"], e["start"], min(e["end"], last)) for e in episodes] == [
        (e["label"], e["start"], e["end"]) for e in a.rhythm]


def test_the_rule_changes_nothing_without_af(analyses):
    _, a = analyses["100"]
    assert not _inside(a).any()
    assert not a.rhythm_rule.any()
    np.testing.assert_array_equal(a.aami_labels, a.aami_beat_labels)
    np.testing.assert_array_equal(
        a.binary_labels, served_binary_labels(a.binary_p_abnormal, a.aami_labels))
    assert all(RHYTHM_RULE_NOTE not in (b["aami"]["rule"] or "") for b in a.to_dict()["beats"])


def test_a_cached_analysis_serves_the_same_labels(analyses, tmp_path):
    from ecgcore.cache import load_analysis, save_analysis

    _, a = analyses["201"]
    save_analysis("k", a, tmp_path)
    back = load_analysis("k", tmp_path)
    np.testing.assert_array_equal(back.aami_labels, a.aami_labels)
    np.testing.assert_array_equal(back.binary_labels, a.binary_labels)
    np.testing.assert_array_equal(back.rhythm_rule, a.rhythm_rule)


def test_end_to_end_evaluation_uses_the_served_labels(mitdb, classifiers, analyses):
    from ecgcore.metrics import MATCH_TOLERANCE_S, match_beats, reference_beats
    from training.evaluate import evaluate_end_to_end

    result = evaluate_end_to_end(classifiers, mitdb, ["219"])
    recording, a = analyses["219"]
    ann = recording.annotations
    ref, ref_cls = reference_beats(ann.sample, list(ann.symbol))
    match = match_beats(ref, a.rpeaks, MATCH_TOLERANCE_S * recording.fs)
    for key, labels in (("aami", a.aami_labels), ("without_rhythm_rule", a.aami_network_labels)):
        fig = result[key] if key == "aami" else result[key]["aami"]
        expected = np.zeros((5, 5), dtype=int)
        np.add.at(expected, ([AAMI_CLASSES.index(c) for c in ref_cls[match.ref_index]],
                             [AAMI_CLASSES.index(c) for c in labels[match.test_index]]), 1)
        assert fig["confusion"] == expected.tolist(), key
    row = result["per_record"]["219"]
    assert row["relabelled_by_rhythm_rule"] == int(a.rhythm_rule.sum()) > 0
    assert row["errors"] < row["errors_without_rhythm_rule"]
    served = result["binary_variants"]["either_network_or_five_class"]
    assert result["binary"]["confusion"] == served["confusion"]
    truth = (ref_cls[match.ref_index] != "N").astype(int)
    predicted = (a.binary_labels[match.test_index] == "abnormal").astype(int)
    expected = np.zeros((2, 2), dtype=int)
    np.add.at(expected, (truth, predicted), 1)
    assert served["confusion"] == expected.tolist()


def test_the_served_binary_label_is_both_networks_word():
    p = np.array([0.95, 0.6, 0.1, 0.1, 0.95, 0.2])
    five = np.array(["N", "N", "V", "N", "N", "S"])
    rule = np.array([False, False, False, False, True, False])
    assert served_binary_labels(p, five, rule).tolist() == [
        "abnormal",  # the binary network is confident
        "normal",    # not confident, and the five-class label is N
        "abnormal",  # the five-class label is V
        "normal",
        "normal",    # relabelled by the rhythm rule: no claim left
        "abnormal",  # the five-class label is S
    ]
    with pytest.raises(ValueError):
        served_binary_labels(p, five[:2])
