"""Why a beat got its label: SHAP attributions and integrated gradients.

Features explained: the beat waveform, in short segments of samples, and each RR feature.
The baseline ("nothing remarkable") is the patient's own usual beat (the recording's
median beat, recovered from the two input channels) at a regular rhythm (RR ratios 1, the
previous and next intervals equal to the local mean). An attribution therefore says how
much a part of this beat, or its timing, moved the model's output away from what the
patient's ordinary beat would get.

Both explanations work in the same coordinates: a feature vector ``z`` in [0, 1]^d where
``z_k = 1`` takes feature ``k`` from the beat and ``z_k = 0`` from the baseline. SHAP
(``shap.PermutationExplainer``, model-agnostic, over the jitted model) explains ``z = 1``
against ``z = 0``; integrated gradients integrate ``jax.grad`` along the straight path
from 0 to 1, which is the straight path from baseline to beat in input space.
"""

from __future__ import annotations

import time

import numpy as np

from ecgcore.beats import (
    AAMI_CLASSES,
    BINARY_CLASSES,
    RR_FEATURE_NAMES,
    WINDOW_BEFORE,
    WINDOW_LENGTH,
    BeatInputs,
)
from ecgcore.errors import EcgError
from ecgcore.inference import Classifiers, JittedModel

SEGMENT_SAMPLES = 6
"""Waveform samples per SHAP feature (6 at 360 Hz = 16.7 ms)."""
DEFAULT_MAX_EVALS = 1000


class _Problem:
    """One beat, its baseline and the map from ``z`` to model inputs."""

    def __init__(self, jm: JittedModel, inputs: BeatInputs, index: int, segment: int):
        if not 0 <= index < len(inputs):
            raise EcgError(f"beat {index} does not exist: the recording has {len(inputs)} beats")
        self.jm = jm
        w = np.asarray(inputs.waveforms[index], dtype=np.float64)
        self.beat = w[:, 0]
        # Channel 1 is beat - template, so the patient's template is their difference.
        self.template = w[:, 0] - w[:, 1] if w.shape[1] > 1 else np.zeros_like(w[:, 0])
        self.channels = min(w.shape[1], jm.channels)  # the channels the model takes
        rr = np.asarray(inputs.rr_features[index], dtype=np.float64)
        self.rr = rr
        self.rr_base = regular_rhythm_baseline(rr)
        length = self.beat.size
        self.segment = segment
        self.n_seg = int(np.ceil(length / segment))
        self.seg_of_sample = np.arange(length) // segment
        self.n_features = self.n_seg + rr.size

    def inputs(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs for each row of ``z`` (n, d)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        zs = z[:, : self.n_seg][:, self.seg_of_sample]
        beat = self.template + zs * (self.beat - self.template)
        chans = [beat, beat - self.template][: self.channels]
        waveforms = np.stack(chans, axis=-1).astype(np.float32)
        rr = (self.rr_base + z[:, self.n_seg:] * (self.rr - self.rr_base)).astype(np.float32)
        return waveforms, rr

    def f(self, z: np.ndarray) -> np.ndarray:
        """Model probabilities for each row of ``z``."""
        return self.jm(*self.inputs(z))

    def to_samples(self, seg_values: np.ndarray) -> np.ndarray:
        """Spread segment attributions (d_seg, k) over their samples, by |beat - baseline|.

        Sums are kept, so completeness holds sample-wise too.
        """
        diff = np.abs(self.beat - self.template)
        seg_total = np.bincount(self.seg_of_sample, diff, minlength=self.n_seg)
        counts = np.bincount(self.seg_of_sample, minlength=self.n_seg)
        share = np.where(seg_total[self.seg_of_sample] > 1e-12,
                         diff / np.maximum(seg_total[self.seg_of_sample], 1e-12),
                         1.0 / counts[self.seg_of_sample])
        return seg_values[self.seg_of_sample] * share[:, None]


def regular_rhythm_baseline(rr: np.ndarray) -> np.ndarray:
    """Rhythm features of the same beat in a regular rhythm at its local mean rate."""
    names = RR_FEATURE_NAMES
    base = np.array(rr, dtype=np.float64, copy=True)
    local = rr[names.index("rr_local_s")]
    local_over_record = rr[names.index("rr_local_over_record")]
    for name in names:
        i = names.index(name)
        if name in ("rr_pre_s", "rr_post_s"):
            base[i] = local
        elif name in ("rr_pre_over_record", "rr_post_over_record"):
            base[i] = local_over_record
        elif name.startswith("rr_pre_over") or name.startswith("rr_post_over"):
            base[i] = 1.0
        # rr_local_*, rr_irregularity, p_coherence: the context stays as it is.
    return base


def _classes(model: str) -> tuple[str, ...]:
    return AAMI_CLASSES if model == "aami" else BINARY_CLASSES


def explain_beat(
    classifiers: Classifiers,
    inputs: BeatInputs,
    index: int,
    model: str = "aami",
    *,
    max_evals: int = DEFAULT_MAX_EVALS,
    segment: int = SEGMENT_SAMPLES,
    seed: int = 0,
) -> dict:
    """SHAP attributions of one beat for every class of one model.

    Parameters
    ----------
    classifiers : Classifiers
        From :func:`ecgcore.inference.load_classifiers`.
    inputs : BeatInputs
        The recording's beats (:func:`ecgcore.beats.beat_inputs`).
    index : int
        Which beat.
    model : {"aami", "binary"}
    max_evals : int
        Model evaluations SHAP may spend (more: less sampling noise).
    segment : int
        Waveform samples per feature.
    seed : int
        Seed of SHAP's permutation sampling (results are reproducible).

    Returns
    -------
    dict
        ``classes``; ``waveform`` (L, k) attributions per sample and class;
        ``waveform_segments`` (n_seg, k) per segment; ``segment_samples``; ``rr`` (n_rr, k)
        per RR feature and ``rr_names``; ``base_value`` (k,) = f(baseline); ``f_x`` (k,) =
        f(beat); ``completeness_error`` = max |sum(attributions) - (f_x - base_value)|;
        ``r_index`` (the R peak's position in the window); ``baseline_waveform``;
        ``seconds``.
    """
    import shap

    t0 = time.perf_counter()
    jm = classifiers.model(model)
    problem = _Problem(jm, inputs, index, segment)
    d = problem.n_features
    masker = shap.maskers.Independent(np.zeros((1, d)), max_samples=1)
    explainer = shap.PermutationExplainer(problem.f, masker, seed=seed)
    max_evals = max(int(max_evals), 2 * d + 1)
    result = explainer(np.ones((1, d)), max_evals=max_evals, silent=True)
    values = np.asarray(result.values[0], dtype=np.float64)  # (d, k)
    base = np.asarray(problem.f(np.zeros((1, d)))[0], dtype=np.float64)
    fx = np.asarray(problem.f(np.ones((1, d)))[0], dtype=np.float64)
    seg_values = values[: problem.n_seg]
    return {
        "model": model,
        "classes": list(_classes(model)),
        "waveform": problem.to_samples(seg_values),
        "waveform_segments": seg_values,
        "segment_samples": segment,
        "rr": values[problem.n_seg:],
        "rr_names": list(RR_FEATURE_NAMES),
        "rr_values": problem.rr,
        "rr_baseline": problem.rr_base,
        "base_value": base,
        "f_x": fx,
        "completeness_error": float(np.max(np.abs(values.sum(axis=0) - (fx - base)))),
        "r_index": WINDOW_BEFORE,
        "baseline_waveform": problem.template,
        "seconds": time.perf_counter() - t0,
    }


def warm_up(classifiers: Classifiers) -> None:
    """Explain one synthetic beat with each model, so that importing shap, compiling its
    helpers and the models' batch sizes happen before a user's first explanation (about
    7 s here, against 0.1 s once warm)."""
    t = np.arange(WINDOW_LENGTH, dtype=np.float64)
    beat = np.exp(-0.5 * ((t - WINDOW_BEFORE) / 8.0) ** 2)
    for model in ("aami", "binary"):
        jm = classifiers.model(model)
        waveforms = np.repeat(beat[None, :, None], jm.channels, axis=2).astype(np.float32)
        rr = np.linspace(0.8, 1.2, jm.n_rr, dtype=np.float32)[None, :]
        inputs = BeatInputs(waveforms, rr, np.array([WINDOW_BEFORE]))
        explain_beat(classifiers, inputs, 0, model)


_ig_cache: dict = {}


def integrated_gradients(
    classifiers: Classifiers,
    inputs: BeatInputs,
    index: int,
    model: str = "aami",
    *,
    steps: int = 256,
    segment: int = SEGMENT_SAMPLES,
) -> dict:
    """Integrated gradients of one beat, in the same features as :func:`explain_beat`.

    The path runs straight from the baseline (``z = 0``) to the beat (``z = 1``);
    gradients come from ``jax.grad`` through the jitted model, midpoint rule.

    Returns
    -------
    dict
        ``classes``, ``waveform_segments`` (n_seg, k), ``waveform`` (L, k), ``rr``
        (n_rr, k), ``base_value``, ``f_x``, ``completeness_error``, ``seconds``.
    """
    import jax
    import jax.numpy as jnp

    t0 = time.perf_counter()
    jm = classifiers.model(model)
    problem = _Problem(jm, inputs, index, segment)
    beat = jnp.asarray(problem.beat, jnp.float32)
    template = jnp.asarray(problem.template, jnp.float32)
    rr = jnp.asarray(problem.rr, jnp.float32)
    rr_base = jnp.asarray(problem.rr_base, jnp.float32)
    seg_of_sample = jnp.asarray(problem.seg_of_sample)
    n_seg, channels = problem.n_seg, problem.channels

    key = (id(jm), n_seg, channels, steps)
    fn = _ig_cache.get(key)
    if fn is None:
        raw = jm.raw

        def g(z, beat, template, rr, rr_base, seg_of_sample):
            zs = z[:n_seg][seg_of_sample]
            b = template + zs * (beat - template)
            wave = jnp.stack([b, b - template][:channels], axis=-1)[None]
            r = (rr_base + z[n_seg:] * (rr - rr_base))[None]
            return raw(wave, r)[0]

        jac = jax.vmap(jax.jacrev(g), in_axes=(0, None, None, None, None, None))

        def ig(beat, template, rr, rr_base, seg_of_sample):
            alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
            d = n_seg + rr.shape[0]
            zs = alphas[:, None] * jnp.ones((1, d), jnp.float32)
            grads = jac(zs, beat, template, rr, rr_base, seg_of_sample)  # (steps, k, d)
            return grads.mean(axis=0).T  # (d, k); (x - baseline) is 1 in z

        fn = jax.jit(ig)
        _ig_cache[key] = fn
    values = np.asarray(fn(beat, template, rr, rr_base, seg_of_sample), dtype=np.float64)
    d = problem.n_features
    base = np.asarray(problem.f(np.zeros((1, d)))[0], dtype=np.float64)
    fx = np.asarray(problem.f(np.ones((1, d)))[0], dtype=np.float64)
    seg_values = values[:n_seg]
    return {
        "model": model,
        "classes": list(_classes(model)),
        "waveform": problem.to_samples(seg_values),
        "waveform_segments": seg_values,
        "rr": values[n_seg:],
        "rr_names": list(RR_FEATURE_NAMES),
        "base_value": base,
        "f_x": fx,
        "completeness_error": float(np.max(np.abs(values.sum(axis=0) - (fx - base)))),
        "seconds": time.perf_counter() - t0,
    }
