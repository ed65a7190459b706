"""Figures of beat classification: confusion matrices, sensitivity, PPV, F1, accuracy.

Three evaluations of the shipped models, all through the serving code path
(:mod:`ecgcore.beats` + :mod:`ecgcore.inference`):

- ``reference``: DS2 beats at the reference annotation positions (as the literature does);
- ``end_to_end``: DS2 beats found by ecgcore's own detector, matched to the reference
  within 150 ms; missed and extra beats are counted and reported, never dropped;
- ``intra_patient``: a random beat split over all 44 records (LEAKY: every patient is on
  both sides), for comparison with published intra-patient claims only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.dataset import AAMI_CLASSES, BINARY_CLASSES


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


def _both_figures(classifiers, beats) -> dict:
    from ecgcore.beats import BeatInputs
    from ecgcore.inference import classify_beats

    out = classify_beats(
        classifiers, BeatInputs(beats.waveforms, beats.rr, beats.position)
    )
    pred = np.argmax(out["aami_probs"], axis=1) if len(beats) else np.zeros(0, int)
    return {
        "aami": aami_figures(beats.labels, out["aami_probs"]),
        "binary": binary_figures(beats.binary, out["binary_p_abnormal"]),
        "errors_by_record": per_record_errors(beats.record, beats.labels, pred),
    }


def evaluate_reference(classifiers, data_dir, records) -> dict:
    """DS2 at the reference beat positions (aligned by ``ecgcore.beats.align_rpeaks``)."""
    from training.dataset import build_dataset

    beats = build_dataset(data_dir, records)
    out = _both_figures(classifiers, beats)
    out["records"] = list(records)
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
                   "performance on new patients")
    return out


def detector_available() -> bool:
    """Whether ecgcore's R-peak detector (ecgcore.detect.ecg_rpeaks) can be imported."""
    try:
        from ecgcore.detect import ecg_rpeaks  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate_end_to_end(classifiers, data_dir, records, progress=None) -> dict:
    """DS2 on the beats ecgcore's own detector finds, matched within 150 ms.

    A reference beat no detection matched is counted in the ``missed`` column of its
    class (a miss for that class's sensitivity); a detection matching no reference beat
    is counted in the ``extra`` row under the class the model gave it (a false positive
    for that class's PPV). Nothing is dropped.
    """
    from ecgcore.beats import beat_inputs
    from ecgcore.detect import ecg_rpeaks
    from ecgcore.inference import classify_beats
    from ecgcore.metrics import MATCH_TOLERANCE_S, match_beats
    from ecgcore.signal import INTERNAL_FS
    from training.dataset import load_record_beats

    n = len(AAMI_CLASSES)
    # (n+1) x (n+1): last row = extra detections, last column = missed reference beats.
    full = np.zeros((n + 1, n + 1), dtype=np.int64)
    full_bin = np.zeros((3, 3), dtype=np.int64)
    per_record = {}
    for record in records:
        rec = load_record_beats(data_dir, record)
        x, ref, labels = rec["x"].astype(np.float64), rec["reference"], rec["labels"]
        det = np.sort(np.asarray(ecg_rpeaks(x, fs=INTERNAL_FS), dtype=np.int64))
        inputs = beat_inputs(x, det, INTERNAL_FS)
        out = classify_beats(classifiers, inputs)
        pred = np.argmax(out["aami_probs"], axis=1) if len(det) else np.zeros(0, int)
        pred_bin = (out["binary_p_abnormal"] >= 0.5).astype(int)
        match = match_beats(ref, det, MATCH_TOLERANCE_S * INTERNAL_FS)
        true_m = labels[match.ref_index]
        np.add.at(full, (true_m, pred[match.test_index]), 1)
        np.add.at(full, (labels[match.missed], n), 1)
        np.add.at(full, (n, pred[match.extra]), 1)
        true_b = (true_m != 0).astype(int)
        np.add.at(full_bin, (true_b, pred_bin[match.test_index]), 1)
        np.add.at(full_bin, ((labels[match.missed] != 0).astype(int), 2), 1)
        np.add.at(full_bin, (2, pred_bin[match.extra]), 1)
        per_record[record] = {
            "reference": int(ref.size), "detected": int(det.size),
            "missed": int(match.missed.size), "extra": int(match.extra.size),
            "errors": int((true_m != pred[match.test_index]).sum()),
        }
        if progress is not None:
            progress(record)
    aami = _with_missed_extra(full, AAMI_CLASSES)
    binary = _with_missed_extra(full_bin, BINARY_CLASSES)
    binary["abnormal_sensitivity"] = binary["per_class"]["abnormal"]["sensitivity"]
    binary["specificity"] = binary["per_class"]["normal"]["sensitivity"]
    binary["abnormal_ppv"] = binary["per_class"]["abnormal"]["ppv"]
    binary["threshold"] = 0.5
    total_ref = int(full[:n, :].sum())
    return {
        "records": list(records),
        "aami": aami,
        "binary": binary,
        "detection": {
            "reference_beats": total_ref,
            "missed": int(full[:n, n].sum()),
            "extra": int(full[n, :n].sum()),
            "tolerance_s": MATCH_TOLERANCE_S,
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
