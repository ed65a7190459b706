"""Figures of beat classification: confusion matrices, sensitivity, PPV, F1, accuracy.

Three evaluations of the shipped models, all through the serving code path
(:mod:`ecgcore.beats` + :mod:`ecgcore.inference`):

- ``reference``: DS2 beats at the reference annotation positions (as the literature does).
  The networks' own labels: the rhythm rule (S -> N inside detected AF/AFL) needs the
  detected rhythm of the whole record, which this way does not have;
- ``end_to_end``: DS2 records analysed by :func:`ecgcore.analysis.analyze`, exactly as
  ``ecg analyze`` serves them (rhythm rule included), matched to the reference within
  150 ms; missed and extra beats are counted and reported, never dropped. The figures
  without the rule are kept beside, so its effect shows;
- ``intra_patient``: a random beat split over all 44 records (LEAKY: every patient is on
  both sides), for comparison with published intra-patient claims only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgcore.analysis import BINARY_THRESHOLD
from ecgcore.beats import AAMI_CLASSES, BINARY_CLASSES


def confusion(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """``n x n`` counts, rows = reference class, columns = predicted class."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def figures_from_confusion(m: np.ndarray, names: tuple[str, ...]) -> dict:
    """Per-class sensitivity, PPV, F1 and overall accuracy from a confusion matrix.

    A ratio with a zero denominator is ``None`` (JSON null), never 0 or 1.
    """
    m = np.asarray(m)
    per_class = {}
    for i, name in enumerate(names):
        tp = m[i, i]
        se = _ratio(tp, m[i, :].sum())
        ppv = _ratio(tp, m[:, i].sum())
        f1 = (2 * se * ppv / (se + ppv)) if se is not None and ppv is not None and se + ppv else (
            0.0 if se is not None and ppv is not None else None
        )
        per_class[name] = {
            "support": int(m[i, :].sum()),
            "predicted": int(m[:, i].sum()),
            "sensitivity": se,
            "ppv": ppv,
            "f1": f1,
        }
    return {
        "n_beats": int(m.sum()),
        "accuracy": _ratio(np.trace(m), m.sum()),
        "per_class": per_class,
        "confusion": m.astype(int).tolist(),
        "classes": list(names),
    }


def aami_figures(true: np.ndarray, probs: np.ndarray) -> dict:
    """Five-class figures from reference labels and the model's probabilities."""
    return figures_from_confusion(
        confusion(true, np.argmax(probs, axis=1), len(AAMI_CLASSES)), AAMI_CLASSES
    )


def binary_figures(true_abnormal: np.ndarray, p_abnormal: np.ndarray,
                   threshold: float = 0.5) -> dict:
    """Normal/abnormal figures: abnormal sensitivity, specificity, PPV, F1, accuracy."""
    pred = (np.asarray(p_abnormal) >= threshold).astype(np.int64)
    m = confusion(true_abnormal, pred, 2)
    out = figures_from_confusion(m, BINARY_CLASSES)
    out["threshold"] = threshold
    out["abnormal_sensitivity"] = out["per_class"]["abnormal"]["sensitivity"]
    out["specificity"] = out["per_class"]["normal"]["sensitivity"]
    out["abnormal_ppv"] = out["per_class"]["abnormal"]["ppv"]
    return out


def summary_score(fig: dict) -> float:
    """Model-selection score of a five-class result: mean F1 of N, S and V.

    F is left out: nearly all of DS1's F beats are one patient's, so in patient-wise
    validation the fold holding 208 has almost none to learn from.
    """
    f1 = [fig["per_class"][c]["f1"] or 0.0 for c in ("N", "S", "V")]
    return float(np.mean(f1))


def per_record_errors(records: np.ndarray, true: np.ndarray, pred: np.ndarray) -> dict:
    """Errors per record, worst first: ``{record: {"beats": n, "errors": k}}``."""
    out = {}
    for r in sorted(set(records.tolist())):
        mask = records == r
        out[str(r)] = {"beats": int(mask.sum()), "errors": int((true[mask] != pred[mask]).sum())}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["errors"]))


# --- Evaluations of saved models -------------------------------------------------------

INTRA_TEST_FRACTION = 0.2
INTRA_SEED = 0


def intra_patient_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random beat split (train, test) over all beats: LEAKY, for comparison only."""
    rng = np.random.default_rng(INTRA_SEED)
    order = rng.permutation(n)
    n_test = int(round(INTRA_TEST_FRACTION * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def morphology_checked_predictions(beats, aami_probs: np.ndarray) -> np.ndarray:
    """Class indices after the morphology rule, each record's beats compared among
    themselves (:func:`ecgcore.analysis.morphology_checked_labels`)."""
    from ecgcore.analysis import morphology_checked_labels

    pred = np.argmax(aami_probs, axis=1) if len(beats) else np.zeros(0, dtype=np.int64)
    for record in np.unique(beats.record):
        mine = beats.record == record
        labels, _ = morphology_checked_labels(beats.waveforms[mine], aami_probs[mine])
        pred[mine] = [AAMI_CLASSES.index(c) for c in labels]
    return pred


def _both_figures(classifiers, beats) -> dict:
    from ecgcore.beats import BeatInputs
    from ecgcore.inference import classify_beats

    out = classify_beats(
        classifiers, BeatInputs(beats.waveforms, beats.rr, beats.position)
    )
    from ecgcore.analysis import served_binary_labels

    pred = morphology_checked_predictions(beats, out["aami_probs"])
    n = len(AAMI_CLASSES)
    served_binary = served_binary_labels(out["binary_p_abnormal"],
                                         np.asarray(AAMI_CLASSES)[pred]) == "abnormal"
    return {
        "aami": figures_from_confusion(confusion(beats.labels, pred, n), AAMI_CLASSES),
        "aami_network": aami_figures(beats.labels, out["aami_probs"]),
        "morphology_rule_changed": int(np.sum(pred != np.argmax(out["aami_probs"], axis=1)))
        if len(beats) else 0,
        "binary": binary_figures(beats.binary, served_binary.astype(float)),
        "binary_network": binary_figures(beats.binary, out["binary_p_abnormal"]),
        "errors_by_record": per_record_errors(beats.record, beats.labels, pred),
    }


def evaluate_reference(classifiers, data_dir, records) -> dict:
    """DS2 at the reference beat positions (aligned by ``ecgcore.beats.align_rpeaks``)."""
    from training.dataset import build_dataset

    beats = build_dataset(data_dir, records)
    out = _both_figures(classifiers, beats)
    out["records"] = list(records)
    out["note"] = ("five-class labels after the morphology rule ('aami_network': the network's "
                   "own); the rhythm rule (S -> N inside AF/AFL) needs the rhythm detected on "
                   "the whole record, which this way does not have")
    return out


def member_spread(classifiers, data_dir, records) -> dict:
    """DS2 figures of the served network and of the same training with other seeds.

    The other seeds' networks (``<model>_seed<k>.keras`` beside the served ones, written by
    ``ecg train``) only show how much a result depends on the seed; they are not served.
    """
    from ecgcore.inference import JittedModel, load_model_file
    from training.commands import SERVED_SEED
    from training.dataset import build_dataset

    beats = build_dataset(data_dir, records)
    folder = Path(classifiers.models_dir)
    out = {}
    for name in ("binary", "aami"):
        networks = [(SERVED_SEED, classifiers.model(name))]
        for path in sorted(folder.glob(f"{name}_seed*.keras")):
            seed = int(path.stem.rsplit("_seed", 1)[1])
            networks.append((seed, JittedModel(load_model_file(path), name)))
        rows = []
        for seed, network in networks:
            probs = network(beats.waveforms, beats.rr)
            if name == "aami":
                fig = aami_figures(beats.labels, probs)
                pc = fig["per_class"]
                rows.append({"seed": seed, "accuracy": fig["accuracy"], **{
                    f"{c}_{k}": pc[c][k] for c in ("N", "S", "V", "F")
                    for k in ("sensitivity", "ppv")}})
            else:
                fig = binary_figures(beats.binary, probs[:, 1])
                rows.append({"seed": seed, **{k: fig[k] for k in (
                    "accuracy", "abnormal_sensitivity", "specificity", "abnormal_ppv")}})
        out[name] = rows
    return out


def evaluate_intra(classifiers, data_dir, records) -> dict:
    """The held-out random beats of the leaky intra-patient split."""
    from training.dataset import build_dataset

    beats = build_dataset(data_dir, records)
    _, test = intra_patient_split(len(beats))
    out = _both_figures(classifiers, beats.take(test))
    out["records"] = list(records)
    out["note"] = ("LEAKY: random beat split, every patient on both sides; not a measure of "
                   "performance on new patients. Five-class labels after the morphology rule, "
                   "each test beat compared with the test beats of its record")
    return out


def detector_available() -> bool:
    """Whether ecgcore's R-peak detector (ecgcore.detect.ecg_rpeaks) can be imported."""
    try:
        from ecgcore.detect import ecg_rpeaks  # noqa: F401
    except ImportError:
        return False
    return True


BINARY_VARIANTS = {
    "network": "the binary network's own label on every beat",
    "either_network_or_five_class": "abnormal when the binary network's p(abnormal) >= "
                                    "0.9 or the served five-class label is not N "
                                    "(ecgcore.analysis.served_binary_labels); SERVED",
    "rule_when_five_class_s": "the network at 0.5, abnormal -> normal on the beats the rhythm "
                              "rule relabelled (five-class S inside detected AFIB/AFL); "
                              "served until the union with the five-class labels",
    "rule_in_af_unless_five_class_vfq": "abnormal -> normal on every beat inside detected "
                                        "AFIB/AFL that the five-class network calls N or S "
                                        "(not served; shown for comparison)",
}
"""The binary labels compared end to end; ``either_network_or_five_class`` is served."""


class _Tally:
    """Confusion matrices with a ``missed`` column and an ``extra`` row, for one labelling."""

    def __init__(self, n: int):
        self.n = n
        self.full = np.zeros((n + 1, n + 1), dtype=np.int64)

    def add(self, match, true: np.ndarray, pred: np.ndarray) -> int:
        """Count one record; returns its number of wrongly labelled matched beats."""
        n = self.n
        true_m = true[match.ref_index]
        np.add.at(self.full, (true_m, pred[match.test_index]), 1)
        np.add.at(self.full, (true[match.missed], n), 1)
        np.add.at(self.full, (n, pred[match.extra]), 1)
        return int((true_m != pred[match.test_index]).sum())


def _binary_result(tally: _Tally) -> dict:
    out = _with_missed_extra(tally.full, BINARY_CLASSES)
    out["abnormal_sensitivity"] = out["per_class"]["abnormal"]["sensitivity"]
    out["specificity"] = out["per_class"]["normal"]["sensitivity"]
    out["abnormal_ppv"] = out["per_class"]["abnormal"]["ppv"]
    out["threshold"] = BINARY_THRESHOLD
    return out


def evaluate_end_to_end(classifiers, data_dir, records, progress=None, transform=None) -> dict:
    """Records analysed exactly as ``ecg analyze`` serves them, matched within 150 ms.

    Each record goes through :func:`ecgcore.analysis.analyze` (its default lead, MLII), so
    detection,
    classification and the rhythm rule (S -> N inside detected AF/AFL,
    :func:`ecgcore.analysis.rhythm_rule_mask`) are the product's own. The top-level
    ``aami`` and ``binary`` figures are the served labels; ``without_rhythm_rule`` has the
    networks' own labels on the same beats, and ``binary_variants`` the binary labels
    of :data:`BINARY_VARIANTS`.

    A reference beat no detection matched is counted in the ``missed`` column of its
    class (a miss for that class's sensitivity); a detection matching no reference beat
    is counted in the ``extra`` row under the class it was given (a false positive for
    that class's PPV). Nothing is dropped.

    ``transform``, if given, changes each :class:`ecgcore.recording.Recording` (and its
    reference annotations alike) before the analysis: another rate, units or polarity,
    as another device would record it (``bench/other_inputs.py``).
    """
    from ecgcore.analysis import (
        MORPHOLOGY_RULE_NOTE,
        NO_S_RHYTHMS,
        RHYTHM_RULE_NOTE,
        S_NORMAL_QRS_CORRELATION,
        V_NORMAL_QRS_CORRELATION,
        analyze,
        in_rhythm,
        rhythm_rule_mask,
    )
    from ecgcore.catalog import reference_rhythm_episodes
    from ecgcore.io import read
    from ecgcore.metrics import MATCH_TOLERANCE_S, match_beats, reference_beats
    from ecgcore.signal import INTERNAL_FS, to_internal_index

    n = len(AAMI_CLASSES)
    served, network, oracle = _Tally(n), _Tally(n), _Tally(n)
    binary = {name: _Tally(2) for name in BINARY_VARIANTS}
    relabelled_by_reference = np.zeros(n, dtype=np.int64)
    relabelled_unmatched = 0
    per_record = {}
    for record in records:
        recording = read(Path(data_dir) / record)
        if transform is not None:
            recording = transform(recording)
        analysis = analyze(recording, classifiers=classifiers)
        fs = recording.fs
        ann = recording.annotations
        ref, ref_classes = reference_beats(to_internal_index(ann.sample, fs), list(ann.symbol))
        labels = np.array([AAMI_CLASSES.index(c) for c in ref_classes], dtype=np.int64)
        det = to_internal_index(analysis.rpeaks, fs)
        match = match_beats(ref, det, MATCH_TOLERANCE_S * INTERNAL_FS)
        k = analysis.n_beats
        if analysis.aami_probs is not None:
            to_index = {c: i for i, c in enumerate(AAMI_CLASSES)}
            pred = np.array([to_index[c] for c in analysis.aami_labels], dtype=np.int64)
            pred_net = np.array([to_index[c] for c in analysis.aami_network_labels],
                                dtype=np.int64)
            pred_beat = np.array([to_index[c] for c in analysis.aami_beat_labels],
                                 dtype=np.int64)
            rule = analysis.rhythm_rule
        else:  # no beat found
            pred = pred_net = pred_beat = np.zeros(k, dtype=np.int64)
            rule = np.zeros(k, dtype=bool)
        in_no_s = in_rhythm(analysis.rpeaks, analysis.rhythm)
        bin_net = (analysis.binary_network_labels == "abnormal").astype(np.int64) if k else (
            np.zeros(0, dtype=np.int64))
        bin_served = (analysis.binary_labels == "abnormal").astype(np.int64) if k else bin_net
        bin_rule_only = np.where(rule, 0, bin_net) if k else bin_net
        bin_wide = np.where(in_no_s & np.isin(pred_net, [0, 1]), 0, bin_net)
        true_bin = (labels != 0).astype(np.int64)
        # Not served: the same rule with the reference's own AF/AFL episodes, i.e. what a
        # perfect AF detector would give it (an upper bound, to judge the detector by).
        ref_rhythm = [dict(e, label=e["label"].lstrip("("))
                      for e in reference_rhythm_episodes(ann.sample, list(ann.symbol),
                                                         list(ann.aux_note), recording.n_samples)]
        rule_ref = rhythm_rule_mask(analysis.rpeaks, np.asarray(AAMI_CLASSES)[pred_beat],
                                    ref_rhythm) if k else np.zeros(0, dtype=bool)
        errors_oracle = oracle.add(match, labels, np.where(rule_ref, 0, pred_beat))
        errors = served.add(match, labels, pred)
        errors_net = network.add(match, labels, pred_net)
        binary["network"].add(match, true_bin, bin_net)
        binary["either_network_or_five_class"].add(match, true_bin, bin_served)
        binary["rule_when_five_class_s"].add(match, true_bin, bin_rule_only)
        binary["rule_in_af_unless_five_class_vfq"].add(match, true_bin, bin_wide)
        matched_rule = rule[match.test_index]
        by_class = np.bincount(labels[match.ref_index][matched_rule], minlength=n)
        relabelled_by_reference += by_class
        relabelled_unmatched += int(rule[match.extra].sum())
        per_record[record] = {
            "lead": analysis.lead_used,
            "reference": int(ref.size), "detected": int(det.size),
            "missed": int(match.missed.size), "extra": int(match.extra.size),
            "errors": errors, "errors_without_rhythm_rule": errors_net,
            # Matched beats, rows the reference class, columns the served label.
            "confusion": confusion(labels[match.ref_index], pred[match.test_index],
                                   n).tolist(),
            "beats_in_af_afl": int(in_no_s.sum()), "relabelled_by_rhythm_rule": int(rule.sum()),
            "relabelled_by_morphology_rule": int(np.sum(pred_beat != pred_net)),
            "morphology_rule_by_reference_class": {
                c: int(np.sum((pred_beat != pred_net)[match.test_index]
                              & (labels[match.ref_index] == i)))
                for i, c in enumerate(AAMI_CLASSES)},
            "relabelled_by_reference_class": {
                c: int(v) for c, v in zip(AAMI_CLASSES, by_class, strict=True)},
            "relabelled_inside_reference_af_afl": int((rule & rule_ref).sum()),
            "relabelled_with_reference_rhythm": int(rule_ref.sum()),
            "errors_with_reference_rhythm": errors_oracle,
            # The convention has exceptions: MIT-BIH labels a few aberrated beats inside
            # AF 'a' (class S); the rule cannot get those right.
            "reference_s_inside_reference_af_afl": int(np.sum(
                (labels == AAMI_CLASSES.index("S"))
                & in_rhythm(ref, [dict(e, start=round(e["start"] * INTERNAL_FS / fs),
                                       end=round(e["end"] * INTERNAL_FS / fs))
                                  for e in ref_rhythm]))),
        }
        if progress is not None:
            progress(record)
    full = served.full
    total_ref = int(full[:n, :].sum())
    binary_figs = {name: _binary_result(t) for name, t in binary.items()}
    return {
        "records": list(records),
        "aami": _with_missed_extra(full, AAMI_CLASSES),
        "binary": binary_figs["either_network_or_five_class"],
        "detection": {
            "reference_beats": total_ref,
            "missed": int(full[:n, n].sum()),
            "extra": int(full[n, :n].sum()),
            "tolerance_s": MATCH_TOLERANCE_S,
        },
        "morphology_rule": {
            "rule": MORPHOLOGY_RULE_NOTE,
            "v_threshold": V_NORMAL_QRS_CORRELATION,
            "s_threshold": S_NORMAL_QRS_CORRELATION,
            "relabelled_beats": int(sum(v["relabelled_by_morphology_rule"]
                                        for v in per_record.values())),
            "relabelled_by_reference_class": {
                c: int(sum(v["morphology_rule_by_reference_class"][c]
                           for v in per_record.values())) for c in AAMI_CLASSES},
        },
        "rhythm_rule": {
            "rule": RHYTHM_RULE_NOTE,
            "rhythms": list(NO_S_RHYTHMS),
            "binary_variant_served": "either_network_or_five_class",
            "relabelled_beats": int(sum(v["relabelled_by_rhythm_rule"]
                                        for v in per_record.values())),
            "relabelled_by_reference_class": {
                c: int(v) for c, v in zip(AAMI_CLASSES, relabelled_by_reference, strict=True)},
            "relabelled_extra_detections": relabelled_unmatched,
            "reference_s_inside_reference_af_afl": int(sum(
                v["reference_s_inside_reference_af_afl"] for v in per_record.values())),
        },
        "without_rhythm_rule": {
            "aami": _with_missed_extra(network.full, AAMI_CLASSES),
            "binary": binary_figs["network"],
        },
        "with_reference_rhythm": {
            "note": "NOT SERVED: the rule applied with the reference annotation's AF/AFL "
                    "episodes instead of the detected ones (what a perfect AF detector would "
                    "give the rule)",
            "aami": _with_missed_extra(oracle.full, AAMI_CLASSES),
        },
        "binary_variants": {
            name: {"description": BINARY_VARIANTS[name], **fig}
            for name, fig in binary_figs.items()
        },
        "per_record": dict(sorted(per_record.items(), key=lambda kv: -kv[1]["errors"])),
    }


def _with_missed_extra(full: np.ndarray, names: tuple[str, ...]) -> dict:
    """Figures where a missed beat lowers its class's Se and an extra lowers the PPV."""
    n = len(names)
    out = figures_from_confusion(full[:n, :n], names)
    for i, name in enumerate(names):
        tp = full[i, i]
        se = _ratio(tp, full[i, :].sum())
        ppv = _ratio(tp, full[:, i].sum())
        f1 = (2 * se * ppv / (se + ppv)) if se and ppv else (0.0 if se is not None
                                                               and ppv is not None else None)
        out["per_class"][name].update({
            "support": int(full[i, :].sum()), "predicted": int(full[:, i].sum()),
            "sensitivity": se, "ppv": ppv, "f1": f1, "missed": int(full[i, n]),
            "extra_predicted_as": int(full[n, i]),
        })
    # Accuracy over every reference beat and every extra detection.
    out["accuracy"] = _ratio(np.trace(full[:n, :n]), full.sum())
    out["n_beats"] = int(full.sum())
    out["confusion_with_missed_extra"] = full.astype(int).tolist()
    out["confusion_rows"] = list(names) + ["extra"]
    out["confusion_columns"] = list(names) + ["missed"]
    return out
