"""SHAP explanations: complete, responsive, and consistent with integrated gradients."""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.beats import RR_FEATURE_NAMES, BeatInputs, beat_rr_features
from ecgcore.explain import explain_beat, integrated_gradients
from ecgcore.inference import classify_beats, load_classifiers
from training.dataset import load_record_beats

SHAP_TOLERANCE = 1e-4
"""|sum of SHAP values - (f(x) - f(baseline))|: exact by construction of the permutation
estimator, up to float32 rounding."""
IG_TOLERANCE = 0.02
"""Integrated gradients, 256 midpoint steps: a Riemann sum, so only approximately complete
(the served networks are steep: 64 steps left 0.021 on a clear V beat of 119, 256 steps 0.005)."""


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers()


@pytest.fixture(scope="module")
def rec(mitdb):
    return load_record_beats(mitdb, "119")


@pytest.fixture(scope="module")
def inputs(rec):
    return BeatInputs(rec["waveforms"], rec["rr"], rec["position"])


@pytest.fixture(scope="module")
def rec100(mitdb):
    return load_record_beats(mitdb, "100")


def _clear_beat(classifiers, inputs, rec, label, cls):
    probs = classify_beats(classifiers, inputs)["aami_probs"]
    candidates = np.flatnonzero((rec["labels"] == label) & (probs[:, cls] > 0.9))
    assert candidates.size, "no clear beat of that class"
    return int(candidates[len(candidates) // 2])


@pytest.mark.parametrize("model", ["aami", "binary"])
def test_attributions_are_complete(classifiers, inputs, rec, model):
    i = _clear_beat(classifiers, inputs, rec, 2, 2)
    e = explain_beat(classifiers, inputs, i, model)
    total = e["waveform"].sum(0) + e["rr"].sum(0)
    np.testing.assert_allclose(total, e["f_x"] - e["base_value"], atol=SHAP_TOLERANCE)
    assert e["completeness_error"] < SHAP_TOLERANCE
    g = integrated_gradients(classifiers, inputs, i, model)
    assert g["completeness_error"] < IG_TOLERANCE
    assert e["waveform"].shape == (inputs.waveforms.shape[1], len(e["classes"]))
    assert e["rr"].shape == (len(RR_FEATURE_NAMES), len(e["classes"]))


def test_premature_beat_shifts_weight_to_rr_features(classifiers, rec100):
    # Record 100: regular sinus rhythm, so a normal beat's neighbours are normal too.
    rec = rec100
    inputs = BeatInputs(rec["waveforms"], rec["rr"], rec["position"])
    i = _clear_beat(classifiers, inputs, rec, 0, 0)
    before = explain_beat(classifiers, inputs, i, "aami")
    # The same waveform, arriving 35 % early: recompute its RR features in context.
    r = inputs.rpeaks_aligned.copy()
    r[i] = r[i] - int(0.35 * (r[i] - r[i - 1]))
    rr = inputs.rr_features.copy()
    rr[i] = beat_rr_features(rec["x"], r)[i]
    early = BeatInputs(inputs.waveforms, rr, inputs.rpeaks_aligned)
    after = explain_beat(classifiers, early, i, "aami")

    def rr_share(e, cls):
        a = np.abs(e["rr"][:, cls]).sum()
        return a / (a + np.abs(e["waveform"][:, cls]).sum())

    s = 1  # class S: a premature beat of normal shape
    assert rr_share(after, s) > rr_share(before, s) + 0.2
    assert np.abs(after["rr"][:, s]).sum() > 5 * np.abs(before["rr"][:, s]).sum()
    # Shortening the preceding interval pushes toward S, not away.
    assert after["rr"][:, s].sum() > 0


@pytest.mark.parametrize("model", ["aami", "binary"])
def test_shap_agrees_with_integrated_gradients_on_a_clear_beat(classifiers, inputs, rec, model):
    i = _clear_beat(classifiers, inputs, rec, 2, 2)
    cls = 2 if model == "aami" else 1
    e = explain_beat(classifiers, inputs, i, model, max_evals=2000)
    g = integrated_gradients(classifiers, inputs, i, model)
    a = np.concatenate([e["waveform_segments"][:, cls], e["rr"][:, cls]])
    b = np.concatenate([g["waveform_segments"][:, cls], g["rr"][:, cls]])
    top = np.argsort(-np.abs(b))[:10]
    assert np.mean(np.sign(a[top]) == np.sign(b[top])) >= 0.8
    ranks_a = np.argsort(np.argsort(-np.abs(a)))
    ranks_b = np.argsort(np.argsort(-np.abs(b)))
    assert np.corrcoef(ranks_a, ranks_b)[0, 1] > 0.5


def test_warm_up_compiles_what_a_first_explanation_needs(classifiers, inputs):
    # Fresh jitted functions over the same weights: nothing compiled yet. After the
    # dashboard's warm-up, explaining a real beat must not compile anything new (the
    # first explanation after a server start took 7 s here, the next ones 0.1 s).
    from ecgcore.explain import warm_up
    from ecgcore.inference import _BUCKETS, Classifiers, JittedModel

    fresh = Classifiers(JittedModel(classifiers.binary.model, "binary"),
                        JittedModel(classifiers.aami.model, "aami"))
    assert fresh.aami.raw._cache_size() == 0
    for jm in (fresh.aami, fresh.binary):
        jm.compile_all()
        assert jm.raw._cache_size() == len(_BUCKETS)
    warm_up(fresh)
    compiled = (fresh.aami.raw._cache_size(), fresh.binary.raw._cache_size())
    for model in ("aami", "binary"):
        explain_beat(fresh, inputs, 5, model)
    n = len(inputs)
    classify_beats(fresh, BeatInputs(inputs.waveforms[: n // 3], inputs.rr_features[: n // 3],
                                     inputs.rpeaks_aligned[: n // 3]))
    assert (fresh.aami.raw._cache_size(), fresh.binary.raw._cache_size()) == compiled
