"""Patient-wise cross-validation inside DS1: the record of what was tried.

Run ``python -m training.experiments NAME [NAME ...]`` to score configurations from
:data:`CONFIGS`; each result (per-fold and pooled figures) is appended to
``training/experiments.json`` and ``training/EXPERIMENTS.md`` is regenerated from it.
DS2 is never read here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ecgcore.beats import AAMI_CLASSES, RR_FEATURE_NAMES
from training.architectures import SMALL_WIDE_RR, ArchConfig
from training.dataset import DS1, build_dataset, cache_dir
from training.evaluate import aami_figures, binary_figures, summary_score
from training.train import TrainConfig, cross_validate, shift_probabilities

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "experiments.json"
REPORT = HERE / "EXPERIMENTS.md"
SHIFT_GRID = HERE / "shift_grid.json"
SHIFT_VALUES = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
"""Logit shifts tried for S and for V by ``--shift-grid`` (N, F and Q stay at 0)."""
SHIFT_RULE = ("the highest score averaged over the seeds; among shifts within 0.002 of it, "
              "the smallest total shift (what the predictions cannot tell apart stays as the "
              "network has it)")

MORPHOLOGY_GRID = HERE / "morphology_grid.json"
MORPHOLOGY_V_THRESHOLDS = (None, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98)
"""QRS correlations at or above which a V call is overruled, tried by ``--morphology-grid``
(None: V calls left alone; see :func:`ecgcore.analysis.morphology_rule_mask`)."""
MORPHOLOGY_S_THRESHOLDS = (None, 0.5, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94)
"""QRS correlations below which an S call is overruled (None: S calls left alone)."""
MORPHOLOGY_RULE = ("the highest score averaged over the seeds, both parts off included; among "
                   "settings within 0.002 of it, the one that changes the fewest beats (summed "
                   "over the seeds)")

PREMATURITY_GRID = HERE / "prematurity_grid.json"
PREMATURITY_RATIOS = (None, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
"""``rr_pre_over_sinus`` under which an N beat may become S, tried by
``--prematurity-grid`` (None: the rule off; see :func:`prematurity_rule_mask`)."""
PREMATURITY_IRREGULARITIES = (0.03, 0.05, 0.1, 0.2, None)
"""``rr_irregularity`` under which the rhythm counts as regular (None: no condition)."""
PREMATURITY_QRS = (None, 0.92)
"""QRS correlation with the neighbouring N beats required (None: no shape condition; 0.92
is the morphology rule's S threshold)."""
PREMATURITY_RULE = ("on top of the served morphology rule, the highest score averaged over "
                    "the seeds, the rule off included; among settings within 0.002 of it, the "
                    "one that changes the fewest beats (summed over the seeds). Also scored "
                    "nested: for each held-out fold, the setting this rule picks on the other "
                    "three folds' beats is applied to it")

WIDTH_GRID = HERE / "width_grid.json"
WIDTH_THRESHOLDS_S = (None, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)
"""QRS durations (s, the delineator's onset to offset) under which a V call is overruled,
tried by ``--width-grid`` on top of the served morphology rule (None: the rule off). A
ventricular beat is wide; the question is whether the delineator's width says so reliably
enough to overrule the network (tried, not served)."""
WIDTH_RULE = MORPHOLOGY_RULE.replace("both parts off included", "the rule off included")

BINARY_GRID = HERE / "binary_grid.json"
BINARY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
"""Thresholds of the binary network tried by ``--binary-grid``."""
BINARY_RULE = ("the highest abnormal sensitivity averaged over the seeds among the settings "
               "whose mean specificity is at least 95 % (the target's operating point)")

BASE = TrainConfig(epochs=12, arch=ArchConfig())
SMALL = ArchConfig(filters=(8, 16, 32), stem_stride=3)
# The RR features that compare a beat with its neighbours and with this patient's own
# sinus cycle; left out: absolute intervals (patients differ in rate), ratios to the whole
# record's mean (with runs of ectopic beats the mean is no longer the sinus cycle) and
# pre/post (a run of ectopic beats has no compensatory pause).
LOCAL_RR = (
    "rr_pre_over_local", "rr_post_over_local", "rr_pre_over_local_median",
    "rr_pre_over_sinus", "rr_post_over_sinus", "rr_irregularity",
)
# Every RR feature, without the P coherence added after the runs above it in the record:
# the served networks of that time, rerun, read these.
RR_ONLY = tuple(name for name in RR_FEATURE_NAMES if name != "p_coherence")
# Every feature but the intervals in seconds: a heart rate that is normal for one patient
# is fast or slow for another, so only intervals relative to the patient's own rhythm
# carry over to unseen patients.
RELATIVE_RR = tuple(name for name in RR_FEATURE_NAMES
                    if name not in ("rr_pre_s", "rr_post_s", "rr_local_s"))
CONFIGS: dict[str, tuple[str, TrainConfig]] = {
    "base": ("aami", BASE),
    "no_sinus_rr": ("aami", replace(BASE, rr_drop=(10, 11, 12))),
    "no_irregularity": ("aami", replace(BASE, rr_drop=(12,))),
    "one_channel": ("aami", replace(BASE, arch=replace(BASE.arch, channels=1))),
    "no_augment": ("aami", replace(BASE, augment=False)),
    "balanced_weights": ("aami", replace(BASE, weight_power=1.0, weight_cap=100.0)),
    "no_rr": ("aami", replace(BASE, arch=replace(BASE.arch, rr_units=0))),
    "wider": ("aami", replace(BASE, arch=ArchConfig(filters=(24, 48, 48), dense=48))),
    "longer": ("aami", replace(BASE, epochs=20)),
    "binary_base": ("binary", BASE),
    "small": ("aami", replace(BASE, arch=SMALL)),
    "small_binary": ("binary", replace(BASE, arch=SMALL)),
    "small_longer": ("aami", replace(BASE, arch=SMALL, epochs=20)),
    "small_weight75": ("aami", replace(BASE, arch=SMALL, weight_power=0.75)),
    "small_one_channel": ("aami", replace(BASE, arch=replace(SMALL, channels=1))),
    "small_wide_rr": ("aami", replace(BASE, arch=SMALL_WIDE_RR)),
    "small_wide_rr_longer": ("aami", replace(BASE, arch=SMALL_WIDE_RR, epochs=20)),
    "small_wide_rr_binary": ("binary", replace(BASE, arch=SMALL_WIDE_RR)),
    "small_wide_local_rr": ("aami", replace(BASE, arch=replace(SMALL_WIDE_RR, rr_used=LOCAL_RR))),
    "small_wide_local_rr_pre_post": (
        "aami", replace(BASE, arch=replace(SMALL_WIDE_RR, rr_used=(*LOCAL_RR, "rr_pre_over_post")))
    ),
    "small_wide_rr_template_difference": (
        "aami", replace(BASE, arch=replace(SMALL_WIDE_RR, waveform_used=("beat_minus_template",)))
    ),
    "small_wide_rr_template_difference_binary": (
        "binary", replace(BASE, arch=replace(SMALL_WIDE_RR, waveform_used=("beat_minus_template",)))
    ),
    "small_wide_local_rr_template_difference": (
        "aami", replace(BASE, arch=replace(SMALL_WIDE_RR, waveform_used=("beat_minus_template",),
                                           rr_used=LOCAL_RR))
    ),
    "small_wide_rr_template_difference_longer": (
        "aami", replace(BASE, epochs=20,
                        arch=replace(SMALL_WIDE_RR, waveform_used=("beat_minus_template",)))
    ),
    "small_wide_rr_template_difference_weight75_binary": (
        "binary", replace(BASE, weight_power=0.75,
                          arch=replace(SMALL_WIDE_RR, waveform_used=("beat_minus_template",)))
    ),
    "small_wide_rr_weight75_binary": (
        "binary", replace(BASE, weight_power=0.75, arch=SMALL_WIDE_RR)
    ),
    "small_wide_rr_s_swap50": ("aami", replace(BASE, s_waveform_swap=0.5, arch=SMALL_WIDE_RR)),
    "small_wide_rr_s_swap100": ("aami", replace(BASE, s_waveform_swap=1.0, arch=SMALL_WIDE_RR)),
    "small_wide_rr_s_swap100_weight35": (
        "aami", replace(BASE, s_waveform_swap=1.0, weight_power=0.35, arch=SMALL_WIDE_RR)
    ),
    "small_wide_rr_s_swap100_binary": (
        "binary", replace(BASE, s_waveform_swap=1.0, arch=SMALL_WIDE_RR)
    ),
    "small_wide_local_rr_binary": (
        "binary", replace(BASE, arch=replace(SMALL_WIDE_RR, rr_used=LOCAL_RR))
    ),
    "small_wide_rr_s_swap100_rr_only": (
        "aami", replace(BASE, s_waveform_swap=1.0, arch=replace(SMALL_WIDE_RR, rr_used=RR_ONLY))
    ),
    "small_wide_rr_s_swap100_p_coherence": (
        "aami", replace(BASE, s_waveform_swap=1.0, arch=SMALL_WIDE_RR)
    ),
    "small_wide_rr_binary_rr_only": (
        "binary", replace(BASE, arch=replace(SMALL_WIDE_RR, rr_used=RR_ONLY))
    ),
    "small_wide_rr_p_coherence_binary": ("binary", replace(BASE, arch=SMALL_WIDE_RR)),
    # SMOTE on top of the served five-class recipe: each rarer class topped up to a
    # quarter of the N beats drawn per epoch, with the class weights kept, or instead of them.
    "small_wide_rr_s_swap100_p_coherence_smote25": (
        "aami", replace(BASE, s_waveform_swap=1.0, smote=0.25, arch=SMALL_WIDE_RR)
    ),
    "small_wide_rr_s_swap100_p_coherence_smote25_unweighted": (
        "aami", replace(BASE, s_waveform_swap=1.0, smote=0.25, weight_power=0.0,
                        arch=SMALL_WIDE_RR)
    ),
    "small_wide_rr_s_swap100_p_coherence_no_augment": (
        "aami", replace(BASE, s_waveform_swap=1.0, augment=False, arch=SMALL_WIDE_RR)
    ),
    "small_wide_relative_rr_s_swap100_p_coherence": (
        "aami", replace(BASE, s_waveform_swap=1.0,
                        arch=replace(SMALL_WIDE_RR, rr_used=RELATIVE_RR))
    ),
}


def run(name: str, n_folds: int = 4, seed: int = 0, log=print) -> dict:
    """Train on 3/4 of DS1's patients and score on the rest, for each fold."""
    task, config = CONFIGS[name]
    beats = build_dataset(records=DS1)
    t0 = time.perf_counter()

    def figures(true, prob):
        return binary_figures(true, prob[:, 1]) if task == "binary" else aami_figures(true, prob)

    cv = cross_validate(beats, task, config, n_folds=n_folds, seed=seed,
                        on_fold=lambda k, held: log(f"{name} fold {k} done"))
    per_fold = []
    for k, held in enumerate(cv.folds):
        mine = cv.fold_of == k
        fig = figures(cv.true[mine], cv.probs[mine])
        per_fold.append({"records": held, "figures": fig,
                         "train_seconds": round(sum(h["seconds"] for h in cv.histories[k]), 1)})
        log(f"{name} fold {k}: {_short(fig, task)}")
    true, prob = cv.true, cv.probs
    pooled = figures(true, prob)
    # The held-out predictions themselves, for --shift-grid.
    probs_dir = cache_dir() / "cv-probs"
    probs_dir.mkdir(parents=True, exist_ok=True)
    np.savez(probs_dir / f"{name}@seed{seed}.npz", true=true, probs=prob, fold_of=cv.fold_of)
    result = {
        "name": name,
        "task": task,
        "config": config.to_dict(),
        "seed": seed,
        "rr_features": list(RR_FEATURE_NAMES),
        "folds": per_fold,
        "pooled": pooled,
        "score": None if task == "binary" else summary_score(pooled),
        "fold_scores": None if task == "binary"
        else [summary_score(f["figures"]) for f in per_fold],
        "seconds": round(time.perf_counter() - t0, 1),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if task == "binary":
        result["operating_points"] = operating_points(true, prob[:, 1])
    log(f"{name} pooled: {_short(pooled, task)}")
    return result


def operating_points(true_abnormal: np.ndarray, p_abnormal: np.ndarray) -> list[dict]:
    """Abnormal sensitivity and specificity of the pooled held-out beats per threshold.

    The binary model's decision threshold is chosen from these (patient-wise, DS1 only).
    """
    points = []
    for threshold in np.round(np.arange(0.05, 0.96, 0.05), 2):
        fig = binary_figures(true_abnormal, p_abnormal, float(threshold))
        points.append({"threshold": float(threshold),
                       "abnormal_sensitivity": fig["abnormal_sensitivity"],
                       "specificity": fig["specificity"]})
    return points


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _short(fig: dict, task: str) -> str:
    if task == "binary":
        return (f"acc {_pct(fig['accuracy'])} abn Se {_pct(fig['abnormal_sensitivity'])} "
                f"Sp {_pct(fig['specificity'])} +P {_pct(fig['abnormal_ppv'])}")
    pc = fig["per_class"]
    return f"acc {_pct(fig['accuracy'])} " + " ".join(
        f"{c} {_pct(pc[c]['sensitivity'])}/{_pct(pc[c]['ppv'])}" for c in ("N", "S", "V", "F")
    )


def shift_grid(name: str) -> dict:
    """Score every S and V logit shift of :data:`SHIFT_VALUES` on the saved held-out
    predictions of ``name`` (every seed run so far) and choose one.

    The choice: :data:`SHIFT_RULE`. Scored on the same predictions it is chosen on, so the
    chosen shift's CV figures are optimistic; DS2 tells.
    """
    saved = _saved_cv_predictions(name)
    runs = [run for _, run in saved]
    rows = []
    for s_shift in SHIFT_VALUES:
        for v_shift in SHIFT_VALUES:
            shift = (0.0, s_shift, v_shift, 0.0, 0.0)
            scores = [summary_score(aami_figures(r["true"], shift_probabilities(r["probs"], shift)))
                      for r in runs]
            rows.append({"shift": list(shift), "scores": [round(x, 4) for x in scores],
                         "mean": round(float(np.mean(scores)), 4)})
    best = max(r["mean"] for r in rows)
    tied = [r for r in rows if r["mean"] >= best - 0.002]
    chosen = min(tied, key=lambda r: (sum(abs(x) for x in r["shift"]), -r["mean"]))
    return {"name": name, "seeds": [seed for seed, _ in saved], "grid": rows,
            "chosen": chosen, "rule": SHIFT_RULE,
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def _saved_cv_predictions(name: str) -> list[tuple[str, dict]]:
    files = sorted((cache_dir() / "cv-probs").glob(f"{name}@seed*.npz"))
    if not files:
        raise SystemExit(f"no saved CV predictions of {name}: run it first")
    runs = []
    for file in files:
        with np.load(file) as saved:
            runs.append((file.stem.split("@seed")[1],
                         {"true": saved["true"], "probs": saved["probs"]}))
    return runs


def _held_out_ds1():
    """DS1's beats in the order :func:`training.train.cross_validate` returns its held-out
    predictions (the folds of :func:`training.dataset.patient_folds`, one after another)."""
    from training.dataset import patient_folds

    beats = build_dataset(records=DS1)
    return beats.take(np.concatenate([np.flatnonzero(np.isin(beats.record, held))
                                      for held in patient_folds(beats, 4)]))


def _check_saved(name: str, true: np.ndarray, held) -> None:
    if not np.array_equal(true, held.labels):
        raise SystemExit(f"the saved predictions of {name} are not of the current DS1 beats")


def _normal_qrs_correlation(held, probs: np.ndarray) -> np.ndarray:
    """Each held-out beat's :func:`ecgcore.beats.normal_qrs_correlation` with the beats of
    its own record that the fold's network (``probs``) called N, as ``ecg analyze`` does."""
    from ecgcore.beats import normal_qrs_correlation

    corr = np.full(len(held), np.nan)
    network_n = np.argmax(probs, axis=1) == 0
    for record in np.unique(held.record):
        mine = held.record == record
        corr[mine] = normal_qrs_correlation(held.waveforms[mine], network_n[mine])
    return corr


def morphology_grid(name: str) -> dict:
    """Score the morphology rule (:func:`ecgcore.analysis.morphology_rule_mask`) for every
    pair of :data:`MORPHOLOGY_V_THRESHOLDS` and :data:`MORPHOLOGY_S_THRESHOLDS` on the
    saved held-out predictions of ``name``.

    Each held-out beat is compared with the beats of its own record that the fold's
    network called N, as ``ecg analyze`` does. The choice: :data:`MORPHOLOGY_RULE`.
    """
    from ecgcore.analysis import morphology_rule_mask, overruled_labels

    runs = _saved_cv_predictions(name)
    held = _held_out_ds1()
    table: dict[tuple, dict] = {}
    for _, run in runs:
        true, probs = run["true"], run["probs"]
        _check_saved(name, true, held)
        corr = _normal_qrs_correlation(held, probs)
        for v in MORPHOLOGY_V_THRESHOLDS:
            for s_th in MORPHOLOGY_S_THRESHOLDS:
                mask = morphology_rule_mask(probs, corr, v, s_th)
                pred = np.array([AAMI_CLASSES.index(c) for c in overruled_labels(probs, mask)])
                fig = aami_figures(true, np.eye(probs.shape[1])[pred])
                pc = fig["per_class"]
                row = table.setdefault((v, s_th), {
                    "v_threshold": v, "s_threshold": s_th, "scores": [], "per_seed": []})
                row["scores"].append(round(summary_score(fig), 4))
                row["per_seed"].append({
                    "changed": int(mask.sum()),
                    "true_class_of_changed": {c: int(np.sum(true[mask] == i))
                                              for i, c in enumerate(AAMI_CLASSES)},
                    **{f"{c}_{k}": pc[c][k] for c in ("S", "V") for k in ("sensitivity", "ppv")}})
    rows = list(table.values())
    for row in rows:
        row["mean"] = round(float(np.mean(row["scores"])), 4)
        row["changed"] = sum(x["changed"] for x in row["per_seed"])
    best = max(r["mean"] for r in rows)
    tied = [r for r in rows if r["mean"] >= best - 0.002]
    chosen = min(tied, key=lambda r: (r["changed"], -r["mean"]))
    return {"name": name, "seeds": [seed for seed, _ in runs], "grid": rows,
            "chosen": chosen, "rule": MORPHOLOGY_RULE,
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def _held_out_qrs_widths(held) -> np.ndarray:
    """QRS duration (s) of each held-out DS1 beat: :func:`ecgcore.delineate.ecg_delineate`
    on its record's conditioned lead at the beats' positions, as ``ecg analyze`` does."""
    from ecgcore.delineate import ecg_delineate
    from ecgcore.signal import INTERNAL_FS
    from training.dataset import check_data_dir, load_record_beats

    data_dir = check_data_dir(None)
    widths = np.full(len(held), np.nan)
    for record in np.unique(held.record):
        mine = np.flatnonzero(held.record == record)
        x = load_record_beats(data_dir, str(record))["x"]
        points = ecg_delineate(x, held.position[mine], INTERNAL_FS)
        widths[mine] = (points["qrs_offset"] - points["qrs_onset"]) / INTERNAL_FS
    return widths


def width_grid(name: str) -> dict:
    """Score a QRS width rule for every threshold of :data:`WIDTH_THRESHOLDS_S` on the saved
    held-out predictions of ``name``: a beat the network calls V whose QRS is narrower takes
    its most probable other class, on top of the served morphology rule
    (:func:`ecgcore.analysis.morphology_rule_mask`). The choice: :data:`WIDTH_RULE`."""
    from ecgcore.analysis import morphology_rule_mask, overruled_labels

    runs = _saved_cv_predictions(name)
    held = _held_out_ds1()
    widths = _held_out_qrs_widths(held)
    v = AAMI_CLASSES.index("V")
    table = {t: {"threshold_s": t, "scores": [], "per_seed": []} for t in WIDTH_THRESHOLDS_S}
    for _, run in runs:
        true, probs = run["true"], run["probs"]
        _check_saved(name, true, held)
        shaped = morphology_rule_mask(probs, _normal_qrs_correlation(held, probs))
        for t in WIDTH_THRESHOLDS_S:
            narrow = np.zeros(len(held), dtype=bool) if t is None else (
                (np.argmax(probs, axis=1) == v) & ~shaped & (widths < t))
            labels = overruled_labels(probs, shaped | narrow)
            pred = np.array([AAMI_CLASSES.index(c) for c in labels])
            fig = aami_figures(true, np.eye(probs.shape[1])[pred])
            table[t]["scores"].append(round(summary_score(fig), 4))
            table[t]["per_seed"].append({
                "changed": int(narrow.sum()), "of_them_true_v": int(np.sum(true[narrow] == v)),
                **{f"V_{k}": fig["per_class"]["V"][k] for k in ("sensitivity", "ppv")}})
    rows = list(table.values())
    for row in rows:
        row["mean"] = round(float(np.mean(row["scores"])), 4)
        row["changed"] = sum(x["changed"] for x in row["per_seed"])
    best = max(r["mean"] for r in rows)
    chosen = min((r for r in rows if r["mean"] >= best - 0.002),
                 key=lambda r: (r["changed"], -r["mean"]))
    v_widths = widths[held.labels == v]
    return {"name": name, "seeds": [seed for seed, _ in runs], "grid": rows,
            "chosen": chosen, "rule": WIDTH_RULE,
            "true_v_width_percentiles_s": {
                str(q): round(float(np.nanpercentile(v_widths, q)), 3) for q in (5, 10, 50)},
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def prematurity_rule_mask(
    labels: np.ndarray,
    rr_pre_over_sinus: np.ndarray,
    rr_irregularity: np.ndarray,
    normal_qrs_correlation: np.ndarray,
    ratio: float | None,
    max_irregularity: float | None,
    qrs_threshold: float | None,
) -> np.ndarray:
    """Beats labelled N that a prematurity rule would make S (tried, not served).

    A premature atrial beat comes early and is conducted like the patient's other beats.
    The rule: label N, ``rr_pre_over_sinus`` under ``ratio``, ``rr_irregularity`` under
    ``max_irregularity`` (a regular rhythm, not atrial fibrillation) and a QRS correlating
    at ``qrs_threshold`` or more with the neighbouring N beats' median QRS
    (:func:`ecgcore.beats.normal_qrs_correlation`; NaN never fires). ``ratio`` None
    switches it off; ``max_irregularity`` or ``qrs_threshold`` None drops that condition.
    """
    labels = np.asarray(labels)
    mask = np.zeros(labels.size, dtype=bool)
    if ratio is None:
        return mask
    with np.errstate(invalid="ignore"):
        mask = (labels == "N") & (np.asarray(rr_pre_over_sinus) < ratio)
        if max_irregularity is not None:
            mask &= np.asarray(rr_irregularity) < max_irregularity
        if qrs_threshold is not None:
            mask &= np.asarray(normal_qrs_correlation) >= qrs_threshold
    return mask


def prematurity_grid(name: str) -> dict:
    """Score :func:`prematurity_rule_mask` for every
    combination of :data:`PREMATURITY_RATIOS`, :data:`PREMATURITY_IRREGULARITIES` and
    :data:`PREMATURITY_QRS` on the saved held-out predictions of ``name``, after the served
    morphology rule, as ``ecg analyze`` applies them. The choice: :data:`PREMATURITY_RULE`.
    """
    import itertools

    from ecgcore.analysis import morphology_rule_mask, overruled_labels
    from training.dataset import patient_folds

    runs = _saved_cv_predictions(name)
    held = _held_out_ds1()
    fold_of = np.zeros(len(held), dtype=np.int64)
    for k, records in enumerate(patient_folds(held, 4)):
        fold_of[np.isin(held.record, records)] = k
    pre = held.rr[:, RR_FEATURE_NAMES.index("rr_pre_over_sinus")].astype(np.float64)
    irregularity = held.rr[:, RR_FEATURE_NAMES.index("rr_irregularity")].astype(np.float64)
    settings = [(None, None, None)] + [
        s for s in itertools.product(PREMATURITY_RATIOS[1:], PREMATURITY_IRREGULARITIES,
                                     PREMATURITY_QRS)]
    table = {s: {"ratio": s[0], "max_irregularity": s[1], "qrs_threshold": s[2],
                 "scores": [], "per_seed": []} for s in settings}
    predictions: list[tuple[np.ndarray, dict]] = []
    for _, run in runs:
        true, probs = run["true"], run["probs"]
        _check_saved(name, true, held)
        corr = _normal_qrs_correlation(held, probs)
        shaped = overruled_labels(probs, morphology_rule_mask(probs, corr))
        preds = {}
        for setting in settings:
            mask = prematurity_rule_mask(shaped, pre, irregularity, corr, *setting)
            labels = np.where(mask, "S", shaped)
            preds[setting] = np.array([AAMI_CLASSES.index(c) for c in labels])
            fig = aami_figures(true, np.eye(probs.shape[1])[preds[setting]])
            pc = fig["per_class"]
            table[setting]["scores"].append(round(summary_score(fig), 4))
            table[setting]["per_seed"].append({
                "changed": int(mask.sum()),
                "true_class_of_changed": {c: int(np.sum(true[mask] == i))
                                          for i, c in enumerate(AAMI_CLASSES)},
                **{f"S_{k}": pc["S"][k] for k in ("sensitivity", "ppv")}})
        predictions.append((true, preds))
    rows = list(table.values())
    for row in rows:
        row["mean"] = round(float(np.mean(row["scores"])), 4)
        row["changed"] = sum(x["changed"] for x in row["per_seed"])

    def pick(scores: dict, changed: dict):
        best = max(scores.values())
        tied = [s for s in settings if scores[s] >= best - 0.002]
        return min(tied, key=lambda s: (changed[s], -scores[s]))

    chosen = pick({s: table[s]["mean"] for s in settings},
                  {s: table[s]["changed"] for s in settings})
    nested = {"scores": [], "off": [], "choices": []}
    for true, preds in predictions:
        out = preds[(None, None, None)].copy()
        choices = []
        for k in range(4):
            train = fold_of != k
            scores, changed = {}, {}
            for s in settings:
                fig = aami_figures(true[train], np.eye(len(AAMI_CLASSES))[preds[s][train]])
                scores[s] = summary_score(fig)
                changed[s] = int(np.sum(preds[s][train] != preds[(None, None, None)][train]))
            choice = pick(scores, changed)
            choices.append(list(choice))
            out[fold_of == k] = preds[choice][fold_of == k]
        nested["choices"].append(choices)
        eye = np.eye(len(AAMI_CLASSES))
        nested["scores"].append(round(summary_score(aami_figures(true, eye[out])), 4))
        nested["off"].append(round(summary_score(
            aami_figures(true, eye[preds[(None, None, None)]])), 4))
    nested["mean"] = round(float(np.mean(nested["scores"])), 4)
    nested["off_mean"] = round(float(np.mean(nested["off"])), 4)
    return {"name": name, "seeds": [seed for seed, _ in runs], "grid": rows,
            "chosen": table[chosen], "nested": nested, "rule": PREMATURITY_RULE,
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def binary_grid(binary_name: str, aami_name: str) -> dict:
    """Abnormal Se and Sp on the saved held-out DS1 predictions of the binary network alone
    (per threshold), of the five-class labels (after the beat rules) alone, and of the
    two together (abnormal when either says so), pairing the runs seed by seed.

    The choice: :data:`BINARY_RULE`; ``ecgcore.analysis.served_binary_labels`` serves it.
    """
    from training.evaluate import morphology_checked_predictions

    binary_runs = dict(_saved_cv_predictions(binary_name))
    aami_runs = dict(_saved_cv_predictions(aami_name))
    seeds = sorted(set(binary_runs) & set(aami_runs))
    if not seeds:
        raise SystemExit(f"no seed has saved CV predictions of both {binary_name} and "
                         f"{aami_name}")
    held = _held_out_ds1()
    table: dict[str, dict] = {}
    for seed in seeds:
        probs, true = aami_runs[seed]["probs"], aami_runs[seed]["true"]
        _check_saved(aami_name, true, held)
        abnormal = (true != 0).astype(np.int64)
        if not np.array_equal(binary_runs[seed]["true"], abnormal):
            raise SystemExit(f"the saved predictions of {binary_name} are not of the current "
                             "DS1 beats")
        five = morphology_checked_predictions(held, probs) != AAMI_CLASSES.index("N")
        p_abnormal = binary_runs[seed]["probs"][:, 1]
        settings = [("five-class labels alone", five.astype(float), 0.5)]
        for t in BINARY_THRESHOLDS:
            settings += [(f"binary network alone, threshold {t}", p_abnormal, t),
                         (f"either: binary network at {t} or five-class not N",
                          np.where(five, 1.0, p_abnormal), t)]
        for label, score, threshold in settings:
            fig = binary_figures(abnormal, score, threshold)
            row = table.setdefault(label, {"setting": label, "se": [], "sp": []})
            row["se"].append(round(fig["abnormal_sensitivity"], 4))
            row["sp"].append(round(fig["specificity"], 4))
    rows = list(table.values())
    for row in rows:
        row["mean_se"] = round(float(np.mean(row["se"])), 4)
        row["mean_sp"] = round(float(np.mean(row["sp"])), 4)
    eligible = [r for r in rows if r["mean_sp"] >= 0.95]
    chosen = max(eligible, key=lambda r: r["mean_se"]) if eligible else None
    return {"binary": binary_name, "aami": aami_name, "seeds": seeds, "grid": rows,
            "chosen": chosen, "rule": BINARY_RULE,
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def load_results() -> list[dict]:
    """All recorded experiment results."""
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def write_report(results: list[dict]) -> None:
    """Regenerate EXPERIMENTS.md from the recorded results."""
    lines = [
        "# Patient-wise validation inside DS1 (generated by `python -m training.experiments`)",
        "",
        "Do not edit: this file is rewritten from `training/experiments.json`. Each run trains",
        "one network per fold on the other folds' patients (4 folds grouped by record, see",
        "`training.dataset.patient_folds`) and scores it on the held-out patients. DS2 is",
        "never used here. Figures are Se/+P in %; score = mean F1 of N, S, V on the pooled",
        "held-out predictions (F is left out: nearly all F beats are record 208's, so the fold",
        "holding 208 cannot learn F). The fold spread shows how much a choice is noise.",
        "",
        "| run | task | pooled acc | N Se/+P | S Se/+P | V Se/+P | F Se/+P | score | fold scores"
        " (min-max) | time s | change from base |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = BASE.to_dict()
    for r in results:
        p = r["pooled"]
        diff = _diff(base, r["config"])
        if r.get("note"):
            diff = f"{diff}; {r['note']}" if diff != "-" else r["note"]
        if r["task"] == "binary":
            row = (f"| {r['name']} | binary | {_pct(p['accuracy'])} | abnormal Se "
                   f"{_pct(p['abnormal_sensitivity'])}, Sp {_pct(p['specificity'])}, +P "
                   f"{_pct(p['abnormal_ppv'])} | | | | | | {r['seconds']} | {diff} |")
        else:
            pc = p["per_class"]
            cells = " | ".join(
                f"{_pct(pc[c]['sensitivity'])}/{_pct(pc[c]['ppv'])}" for c in "NSVF"
            )
            fs = r["fold_scores"]
            row = (f"| {r['name']} | aami | {_pct(p['accuracy'])} | {cells} | "
                   f"{r['score']:.3f} | {min(fs):.3f}-{max(fs):.3f} | {r['seconds']} | {diff} |")
        lines.append(row)
    lines += ["", "RR features of the current code: " + ", ".join(RR_FEATURE_NAMES) + ".",
              "", "## Per fold", ""]
    for r in results:
        lines.append(f"### {r['name']} ({r['date']})")
        for k, f in enumerate(r["folds"]):
            lines.append(f"- fold {k} ({' '.join(f['records'])}): "
                         f"{_short(f['figures'], r['task'])}")
        lines.append("")
    if SHIFT_GRID.exists():
        grid = json.loads(SHIFT_GRID.read_text())
        lines += [f"## Class-prior (logit) shift grid on the CV predictions of {grid['name']}",
                  "", f"Seeds {', '.join(grid['seeds'])}; shifts are added to the S and V "
                  "logits (probabilities times exp(shift), renormalised). Rule: "
                  f"{grid['rule']}. Chosen: S {grid['chosen']['shift'][1]}, "
                  f"V {grid['chosen']['shift'][2]} (mean score {grid['chosen']['mean']:.3f}).",
                  "", "| S shift | V shift | score per seed | mean |", "|---|---|---|---|"]
        for row in grid["grid"]:
            lines.append(f"| {row['shift'][1]} | {row['shift'][2]} | "
                         f"{', '.join(f'{x:.3f}' for x in row['scores'])} | {row['mean']:.3f} |")
        lines.append("")
    if MORPHOLOGY_GRID.exists():
        grid = json.loads(MORPHOLOGY_GRID.read_text())
        chosen = grid["chosen"]
        lines += [f"## Morphology rule grid on the CV predictions of {grid['name']}", "",
                  f"Seeds {', '.join(grid['seeds'])}. A beat the network calls V whose QRS "
                  "correlates at the V threshold or more with the median QRS of the nearby "
                  "beats of its record that the network calls N takes its most probable "
                  "other class; one it calls S whose QRS correlates less than the S threshold "
                  "becomes V (`ecgcore.analysis.morphology_rule_mask`). "
                  f"Rule: {grid['rule']}. Chosen: V {chosen['v_threshold']}, S "
                  f"{chosen['s_threshold']} (mean score {chosen['mean']:.3f}). Scored on the "
                  "same predictions it is chosen on. Rows: every V threshold with S off, "
                  "every S threshold with the chosen V threshold.",
                  "", "| V threshold | S threshold | score per seed | mean | beats changed "
                  "(all seeds) | of them true V | V Se/+P per seed | S Se/+P per seed |",
                  "|---|---|---|---|---|---|---|---|"]
        shown = [r for r in grid["grid"] if r["s_threshold"] is None
                 or r["v_threshold"] == chosen["v_threshold"]]
        for row in shown:
            d = row["per_seed"]
            lines.append(
                f"| {row['v_threshold'] or 'off'} | {row['s_threshold'] or 'off'} | "
                f"{', '.join(f'{x:.3f}' for x in row['scores'])} | {row['mean']:.3f} | "
                f"{row['changed']} | {sum(x['true_class_of_changed']['V'] for x in d)} | "
                + ", ".join(f"{_pct(x['V_sensitivity'])}/{_pct(x['V_ppv'])}" for x in d)
                + " | " + ", ".join(f"{_pct(x['S_sensitivity'])}/{_pct(x['S_ppv'])}"
                                    for x in d) + " |")
        lines.append("")
    if PREMATURITY_GRID.exists():
        grid = json.loads(PREMATURITY_GRID.read_text())
        chosen, nested = grid["chosen"], grid["nested"]

        def setting(row) -> str:
            if row["ratio"] is None:
                return "off"
            return (f"{row['ratio']}, {row['max_irregularity'] or 'any'}, "
                    f"{row['qrs_threshold'] or 'any'}")

        changed = sum(x["changed"] for x in chosen["per_seed"])
        true_s = sum(x["true_class_of_changed"]["S"] for x in chosen["per_seed"])
        verdict = (
            f"The chosen setting's relabelled beats are {true_s} true S of {changed} (all "
            "seeds). "
            + ("**Not served**: nested, the rule does not beat the rule off. Its gain comes "
               "from the few DS1 patients with many premature atrial beats in a regular "
               "rhythm; chosen without them, the settings do not carry to the others."
               if nested["mean"] <= nested["off_mean"] else
               "Nested, the rule beats the rule off."))
        lines += [f"## Prematurity rule grid on the CV predictions of {grid['name']}", "",
                  f"Seeds {', '.join(grid['seeds'])}. After the morphology rule, a beat "
                  "labelled N becomes S when `rr_pre_over_sinus` is under the ratio, "
                  "`rr_irregularity` under the irregularity (a regular rhythm, not AF) and "
                  "its QRS correlates at the QRS threshold or more with the neighbouring N "
                  "beats' median QRS (`training.experiments.prematurity_rule_mask`). "
                  f"Rule: {grid['rule']}. Chosen: {setting(chosen)} (mean score "
                  f"{chosen['mean']:.3f}, scored on the predictions it is chosen on). "
                  f"Nested: {', '.join(f'{x:.3f}' for x in nested['scores'])} (mean "
                  f"{nested['mean']:.3f}) against {', '.join(f'{x:.3f}' for x in nested['off'])}"
                  f" (mean {nested['off_mean']:.3f}) with the rule off; the folds' choices "
                  f"per seed: {nested['choices']}. {verdict} Rows: the rule off, and the 12 "
                  "best.",
                  "", "| ratio, irregularity, QRS | score per seed | mean | beats changed "
                  "(all seeds) | of them true S | S Se/+P per seed |", "|---|---|---|---|---|---|"]
        shown = [r for r in grid["grid"] if r["ratio"] is None] + sorted(
            (r for r in grid["grid"] if r["ratio"] is not None), key=lambda r: -r["mean"])[:12]
        for row in shown:
            d = row["per_seed"]
            lines.append(
                f"| {setting(row)} | {', '.join(f'{x:.3f}' for x in row['scores'])} | "
                f"{row['mean']:.3f} | {row['changed']} | "
                f"{sum(x['true_class_of_changed']['S'] for x in d)} | "
                + ", ".join(f"{_pct(x['S_sensitivity'])}/{_pct(x['S_ppv'])}" for x in d) + " |")
        lines.append("")
    if WIDTH_GRID.exists():
        grid = json.loads(WIDTH_GRID.read_text())
        chosen = grid["chosen"]
        pct = grid["true_v_width_percentiles_s"]
        lines += [f"## QRS width rule grid on the CV predictions of {grid['name']} (not "
                  "served)", "",
                  f"Seeds {', '.join(grid['seeds'])} (the off row scores the predictions "
                  "themselves: training is not bit-for-bit repeatable, so a rerun's differ a "
                  "little from the table above). On top of the served morphology rule, a "
                  "beat the network calls V whose QRS (the delineator's onset to offset) is "
                  "narrower than the threshold takes its most probable other class. Rule: "
                  f"{grid['rule']}. Chosen: {chosen['threshold_s'] or 'off'} (mean score "
                  f"{chosen['mean']:.3f}). The delineator measures some true V beats narrow "
                  f"(DS1's V beats: 5th percentile {pct['5'] * 1000:.0f} ms, 10th "
                  f"{pct['10'] * 1000:.0f} ms, median {pct['50'] * 1000:.0f} ms).", "",
                  "| threshold (s) | score per seed | mean | beats changed (all seeds) | of "
                  "them true V | V Se/+P per seed |", "|---|---|---|---|---|---|"]
        for row in grid["grid"]:
            d = row["per_seed"]
            lines.append(
                f"| {row['threshold_s'] or 'off'} | "
                f"{', '.join(f'{x:.3f}' for x in row['scores'])} | {row['mean']:.3f} | "
                f"{row['changed']} | {sum(x['of_them_true_v'] for x in d)} | "
                + ", ".join(f"{_pct(x['V_sensitivity'])}/{_pct(x['V_ppv'])}" for x in d)
                + " |")
        lines.append("")
    if BINARY_GRID.exists():
        grid = json.loads(BINARY_GRID.read_text())
        chosen = grid["chosen"]
        lines += [f"## Binary label grid on the CV predictions of {grid['binary']} and "
                  f"{grid['aami']}", "",
                  f"Seeds {', '.join(grid['seeds'])} (each binary run with the five-class "
                  "run of the same seed). Rule: " + grid["rule"] + ". Chosen: "
                  + (chosen["setting"] if chosen else "none") + " (served: "
                  "`ecgcore.analysis.served_binary_labels`, `BINARY_SERVED_THRESHOLD`).", "",
                  "| setting | abnormal Se per seed | Sp per seed | mean Se | mean Sp |",
                  "|---|---|---|---|---|"]
        for row in grid["grid"]:
            lines.append(f"| {row['setting']} | {', '.join(_pct(x) for x in row['se'])} | "
                         f"{', '.join(_pct(x) for x in row['sp'])} | {_pct(row['mean_se'])} "
                         f"| {_pct(row['mean_sp'])} |")
        lines.append("")
    REPORT.write_text("\n".join(lines) + "\n")


def _diff(base: dict, cfg: dict, prefix: str = "") -> str:
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            d = _diff(base.get(k, {}), v, prefix=f"{k}.")
            if d != "-":
                out.append(d)
        elif base.get(k) != v:
            out.append(f"{prefix}{k}={v}")
    return ", ".join(out) if out else "-"


def main(argv: list[str] | None = None) -> int:
    """Run the named configurations and record them."""
    parser = argparse.ArgumentParser(prog="python -m training.experiments")
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(CONFIGS)}")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--shift-grid", metavar="NAME",
                        help="choose S and V logit shifts on NAME's saved CV predictions "
                        "(writes training/shift_grid.json)")
    parser.add_argument("--morphology-grid", metavar="NAME",
                        help="choose the morphology rule's threshold on NAME's saved CV "
                        "predictions (writes training/morphology_grid.json)")
    parser.add_argument("--width-grid", metavar="NAME",
                        help="score a QRS width rule for V calls on NAME's saved CV "
                        "predictions (writes training/width_grid.json)")
    parser.add_argument("--prematurity-grid", metavar="NAME",
                        help="choose the prematurity rule's thresholds on NAME's saved CV "
                        "predictions (writes training/prematurity_grid.json)")
    parser.add_argument("--binary-grid", nargs=2, metavar=("BINARY", "AAMI"),
                        help="score the binary network's thresholds and its union with the "
                        "five-class labels on saved CV predictions (writes "
                        "training/binary_grid.json)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first seed of the folds' networks; a run with another seed than "
                        "0 is recorded as NAME@seedK, beside the seed-0 run (the seed spread)")
    args = parser.parse_args(argv)
    results = load_results()
    if args.shift_grid:
        grid = shift_grid(args.shift_grid)
        SHIFT_GRID.write_text(json.dumps(grid, indent=1))
        print(f"chosen shift {grid['chosen']['shift']} (mean score {grid['chosen']['mean']})")
    if args.morphology_grid:
        grid = morphology_grid(args.morphology_grid)
        MORPHOLOGY_GRID.write_text(json.dumps(grid, indent=1))
        c = grid["chosen"]
        print(f"chosen V {c['v_threshold']}, S {c['s_threshold']} (mean score {c['mean']})")
    if args.width_grid:
        grid = width_grid(args.width_grid)
        WIDTH_GRID.write_text(json.dumps(grid, indent=1))
        c = grid["chosen"]
        print(f"chosen width {c['threshold_s']} (mean score {c['mean']})")
    if args.prematurity_grid:
        grid = prematurity_grid(args.prematurity_grid)
        PREMATURITY_GRID.write_text(json.dumps(grid, indent=1))
        c, nested = grid["chosen"], grid["nested"]
        print(f"chosen ratio {c['ratio']}, irregularity {c['max_irregularity']}, QRS "
              f"{c['qrs_threshold']} (mean score {c['mean']}); nested {nested['mean']} against "
              f"{nested['off_mean']} with the rule off")
    if args.binary_grid:
        grid = binary_grid(*args.binary_grid)
        BINARY_GRID.write_text(json.dumps(grid, indent=1))
        print(f"chosen: {grid['chosen']['setting'] if grid['chosen'] else 'none'}")
    for name in [] if args.report_only else args.names:
        result = run(name, seed=args.seed, log=lambda s: print(s, flush=True))
        if args.seed:
            result["name"] = f"{name}@seed{args.seed}"
        results = [r for r in load_results() if r["name"] != result["name"]] + [result]
        RESULTS.write_text(json.dumps(results, indent=1))
        write_report(results)
    write_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
