"""Rhythm benchmark: ecgcore.rhythm against the MIT-BIH rhythm annotations (issue 6).

Run ``.venv/bin/python bench/rhythm.py``; writes ``bench/results/rhythm.json`` and
``rhythm.md``. Per-record detector and delineator outputs are cached in
``.cache/rhythm/`` (gitignored), keyed by a digest of the code that produced them.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine, mitdb_dir, mitdb_records, write_results  # noqa: E402
from ecgcore.metrics import episode_agreement, pooled_episode_agreement  # noqa: E402

CACHE = REPO / ".cache" / "rhythm"
FS = 360.0
DS1 = [
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
]
DS2 = [
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
    "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234",
]


@functools.cache
def _code_digest() -> str:
    """Digest of the code behind the cached outputs, taken once per run (the modules
    imported at the start are the ones that run)."""
    h = hashlib.sha256()
    for name in ("signal.py", "detect.py", "delineate.py"):
        h.update((REPO / "ecgcore" / name).read_bytes())
    return h.hexdigest()[:12]


def reference_rhythm(sample: np.ndarray, symbol: list[str], aux: list[str], n: int) -> list[dict]:
    """Rhythm intervals of a MIT-BIH annotation list: each ``+`` runs to the next one."""
    marks = [
        (int(s), a.strip("\x00 ").lstrip("("))
        for s, sym, a in zip(sample, symbol, aux, strict=True)
        if sym == "+" and a.strip("\x00 ")
    ]
    out = []
    for i, (s, label) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else n
        if end > s:
            out.append({"label": label, "start": s, "end": end})
    return out


def reference_noise(sample: np.ndarray, symbol: list[str], subtype: np.ndarray, n: int,
                    unreadable_only: bool, channel: int = 0) -> list[tuple[int, int]]:
    """Stretches MIT-BIH marks noisy (or only unreadable) in signal ``channel``.

    A ``~`` annotation's subtype holds one bit per signal: bits 0-3 noisy, bits 4-7
    unreadable, -1 all unreadable (the WFDB convention). It holds until the next ``~``.
    """
    marks = [(int(s), int(t)) for s, sym, t in zip(sample, symbol, subtype, strict=True)
             if sym == "~"]
    out = []
    for i, (s, t) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else n
        bad = (t == -1 or bool((t >> (4 + channel)) & 1)
               or (not unreadable_only and bool((t >> channel) & 1)))
        if bad and end > s:
            out.append((s, end))
    return out


def load_record(record: str) -> dict:
    """The lead ``ecg analyze`` reads by default (MLII; V5 in 102, V2 in 104, which have
    none), conditioned at 360 Hz, with detected beats, P peaks and the reference, cached."""
    import wfdb

    from ecgcore.delineate import ecg_delineate
    from ecgcore.detect import ecg_rpeaks
    from ecgcore.metrics import reference_beats
    from ecgcore.recording import preferred_lead
    from ecgcore.signal import ecg_condition, ecg_resample

    path = str(mitdb_dir() / record)
    channel = preferred_lead(wfdb.rdheader(path).sig_name)
    rec = wfdb.rdrecord(path, channels=[channel])
    ann = wfdb.rdann(path, "atr")
    x = ecg_condition(ecg_resample(rec.p_signal[:, 0], rec.fs, FS), FS)
    CACHE.mkdir(parents=True, exist_ok=True)
    file = CACHE / f"{record}_{channel}_{_code_digest()}.npz"
    for old in CACHE.glob(f"{record}_*.npz"):
        if old != file:
            old.unlink()  # made by an older detector or delineator
    ref_pos, ref_cls = reference_beats(ann.sample, ann.symbol, exclude_flutter=False)
    scale = FS / rec.fs
    ref_beats = np.round(ref_pos * scale).astype(np.int64)
    if file.exists():
        z = np.load(file)
        rpeaks, p_peaks, ref_p_peaks = z["rpeaks"], z["p_peaks"], z["ref_p_peaks"]
    else:
        rpeaks = ecg_rpeaks(x, FS)
        p_peaks = ecg_delineate(x, rpeaks, FS)["p_peak"]
        ref_p_peaks = ecg_delineate(x, ref_beats, FS)["p_peak"]
        np.savez(file, rpeaks=rpeaks, p_peaks=p_peaks, ref_p_peaks=ref_p_peaks)
    return {
        "record": record,
        "x": x,
        "n": x.size,
        "rpeaks": rpeaks,
        "p_peaks": p_peaks,
        "ref_beats": ref_beats,
        "ref_p_peaks": ref_p_peaks,
        "ref_classes": ref_cls,
        "ref_noise": [
            (int(round(s * scale)), int(round(e * scale)))
            for s, e in reference_noise(ann.sample, ann.symbol, ann.subtype, rec.sig_len,
                                        False, channel)
        ],
        "ref_rhythm": [
            {"label": e["label"], "start": int(round(e["start"] * scale)),
             "end": int(round(e["end"] * scale))}
            for e in reference_rhythm(ann.sample, ann.symbol, ann.aux_note, rec.sig_len)
        ],
    }


# --- Scoring ------------------------------------------------------------------------

SCORED = ("AFIB", "AFL", "VFL", "VT", "IVR", "SVTA", "B", "T", "SBR", "PAUSE", "NOISE")
CLASS_RHYTHMS = ("VT", "IVR", "SVTA", "B", "T")
OVERLAP_RULE = (
    "Episode Se: a reference episode counts as found when a detected episode of the same "
    "label overlaps it by at least one sample; episode +P: a detected episode counts as "
    "true when it overlaps a reference episode of the same label. Duration Se = overlap "
    "time / reference time, duration +P = overlap time / detected time (EC57 style, "
    "gross: summed over the records of the set). Reference episodes: each MIT-BIH `+` "
    "rhythm annotation runs to the next one; PAUSE reference = reference RR > 2 s; NOISE "
    "reference = `~` stretches marked noisy or unreadable in the lead read (ours marks only "
    "unreadable stretches, so its Se against 'noisy' is expected to be low)."
)


def score_record(ref: list[tuple[int, int]], det: list[tuple[int, int]]) -> dict:
    """Counts for one label of one record (see :data:`OVERLAP_RULE`)."""
    return episode_agreement(ref, det, FS)


def classes_for_detected(d: dict) -> np.ndarray:
    """Reference AAMI classes carried to the detected beats (unmatched beats: ``Q``)."""
    from ecgcore.metrics import match_beats

    m = match_beats(d["ref_beats"], d["rpeaks"], 0.15 * FS)
    out = np.full(d["rpeaks"].size, "Q", dtype="<U1")
    out[m.test_index] = d["ref_classes"][m.ref_index]
    return out


def reference_intervals(d: dict) -> dict[str, list[tuple[int, int]]]:
    """Reference episodes per scored label (PAUSE from reference RR > 2 s)."""
    ref_iv: dict[str, list] = {k: [] for k in SCORED}
    for e in d["ref_rhythm"]:
        if e["label"] in ref_iv:
            ref_iv[e["label"]].append((e["start"], e["end"]))
    rb = d["ref_beats"]
    for i in np.flatnonzero(np.diff(rb) > 2.0 * FS):
        ref_iv["PAUSE"].append((int(rb[i]), int(rb[i + 1])))
    ref_iv["NOISE"] = list(d["ref_noise"])
    return ref_iv


_CNN_CLASSES: dict[str, dict[str, np.ndarray]] = {}
"""The CNN's labels per record (the network's own and after the morphology rule),
computed once per run."""
_CV_CLASSES: dict[str, dict[str, np.ndarray]] = {}
"""The DS1 fold networks' labels per DS1 record, as :data:`_CNN_CLASSES`."""


FOLD_SEED = 0
"""Seed of the DS1 cross-validation whose fold networks classify DS1 in setting cnn_cv."""


@functools.cache
def _fold_networks() -> dict[str, object]:
    """Per DS1 record, the five-class network of the patient-wise CV fold that held its
    patient out (the served recipe, ``training.train.SERVED_CONFIGS``, trained on the
    other folds' records), as an :class:`ecgcore.inference.JittedModel`.

    The served network was trained on all of DS1, so its classes there are the training
    set's: choosing class-based rhythm settings with them trusts the classes more than an
    unseen patient allows. Trained once and kept in ``.cache/rhythm/folds/`` under a
    digest of the training code, the dataset code and the recipe (training is not
    repeatable to the bit, so another machine's fold networks differ slightly).
    """
    import json

    from ecgcore.inference import JittedModel, load_model_file
    from training.dataset import DS1 as TRAIN_DS1
    from training.dataset import build_dataset, code_hash
    from training.train import SERVED_CONFIGS, cross_validate

    config = SERVED_CONFIGS["aami"]
    h = hashlib.sha256()
    for name in ("train.py", "architectures.py"):
        h.update((REPO / "training" / name).read_bytes())
    h.update(code_hash().encode())
    h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    h.update(str(FOLD_SEED).encode())
    folder = CACHE / "folds" / h.hexdigest()[:12]
    index = folder / "folds.json"
    if not index.exists():
        print("training the DS1 fold networks (patient-wise CV, once)", flush=True)
        cv = cross_validate(build_dataset(records=TRAIN_DS1), "aami", config,
                            seed=FOLD_SEED)
        folder.mkdir(parents=True, exist_ok=True)
        for k, model in enumerate(cv.models):
            model.save(folder / f"fold{k}.keras")
        index.write_text(json.dumps(cv.folds))
    folds = json.loads(index.read_text())
    out = {}
    for k, held in enumerate(folds):
        net = JittedModel(load_model_file(folder / f"fold{k}.keras"), "aami")
        out.update({r: net for r in held})
    return out


def _network_classes(d: dict, served: bool, cnn) -> np.ndarray:
    """The five-class labels of a record's detected beats that ``ecgcore.analysis.analyze``
    finds the rhythm from (``ecgcore.analysis.RHYTHM_LABELS``: the network's own, or after
    the morphology rule): from the served network, or (``served=False``) from the DS1
    fold network that held the record out. The network runs once per record and run."""
    from ecgcore import analysis

    cache = _CNN_CLASSES if served else _CV_CLASSES
    if d["record"] not in cache:
        from ecgcore.beats import beat_inputs

        net = cnn.aami if served else _fold_networks()[d["record"]]
        inputs = beat_inputs(d["x"], d["rpeaks"], FS)
        probs = net(inputs.waveforms, inputs.rr_features)
        checked, _ = analysis.morphology_checked_labels(inputs.waveforms, probs)
        cache[d["record"]] = {
            "network": np.asarray(analysis.AAMI_CLASSES)[np.argmax(probs, axis=1)],
            "morphology": checked,
        }
    labels = cache[d["record"]]
    return analysis.rhythm_input_labels(labels["network"], labels["morphology"])


def setting_inputs(
    d: dict, setting: str, cnn=None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(rpeaks, beat_classes, p_peaks) of one record under one benchmark setting."""
    if setting in ("cnn", "cnn_cv"):
        # cnn_cv: DS2 and the paced records as cnn (the served network never saw them).
        served = setting == "cnn" or d["record"] not in DS1
        return d["rpeaks"], _network_classes(d, served, cnn), d["p_peaks"]
    if setting == "no_classes":
        return d["rpeaks"], None, d["p_peaks"]
    if setting == "rr_only":
        return d["rpeaks"], None, None
    if setting == "ref_classes":
        return d["rpeaks"], classes_for_detected(d), d["p_peaks"]
    if setting == "ref_beats":
        return d["ref_beats"], d["ref_classes"], d["ref_p_peaks"]
    raise ValueError(setting)


def run_record(d: dict, setting: str, cnn=None) -> dict:
    """Episodes of one record under one setting and their counts per scored label."""
    from ecgcore.rhythm import ecg_rhythm

    rpeaks, classes, p_peaks = setting_inputs(d, setting, cnn)
    eps = ecg_rhythm(d["x"], rpeaks, FS, beat_classes=classes, p_peaks=p_peaks)
    ref_iv = reference_intervals(d)
    out: dict = {}
    for label in SCORED:
        det = [(e["start"], e["end"]) for e in eps if e["label"] == label]
        out[label] = score_record(ref_iv[label], det)
    for a, b in (("AFIB", "AFL"), ("VT", "IVR")):
        out[f"{a}+{b}"] = score_record(
            ref_iv[a] + ref_iv[b], [(e["start"], e["end"]) for e in eps if e["label"] in (a, b)]
        )
    out["episodes"] = eps
    return out


GROUPS = {"DS1": DS1, "DS2": DS2}
SETTINGS = {
    "rr_only": "detected beats only: no classes, no P waves (AF from RR irregularity alone)",
    "no_classes": "detected beats, no beat classes (AF, pauses, brady/tachy, noise only)",
    "ref_classes": "(a) detected beats with the reference AAMI classes carried over by "
                   "match_beats (150 ms; unmatched detections get Q)",
    "ref_beats": "reference beat positions and classes (the rhythm logic alone)",
    "cnn": "(b) detected beats with the five-class CNN's classes (ecgcore.inference)",
    "cnn_cv": "as `cnn`, but each DS1 record's beats classified by the network of the "
              "patient-wise cross-validation fold that held its patient out (the served "
              "recipe trained on the other DS1 folds): the served network learnt DS1, so "
              "setting `cnn` on DS1 is the training set. DS2 and the paced records as "
              "`cnn`. Class-based rhythm settings are chosen in this setting",
}
AF_GRID_IRR = (0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11)
AF_GRID_P = (0.2, 0.3, 0.4)
AF_GRID_PR = (None, 0.03)
AF_GRID_ECTOPIC = (("V", "F", "Q"), ("V", "F", "Q", "S"))
AF_TIE_POINTS = 0.1
"""DS1 harmonic means within this many points of the best count as tied."""
AF_OPTIONS = {
    "no P coherence (delineated P waves veto AF alone)": {"AF_MAX_P_COHERENCE": None},
    "either evidence vetoes AF (P fraction or coherence <= 0.5)":
        {"AF_P_EVIDENCE": "either", "AF_MAX_P_COHERENCE": 0.5},
    "either evidence vetoes AF (P fraction or coherence <= 0.6)":
        {"AF_P_EVIDENCE": "either", "AF_MAX_P_COHERENCE": 0.6},
    "coherence over 61 beats": {"AF_COHERENCE_WINDOW": 61},
    "skip 1 interval after an ectopic beat": {"AF_SKIP_AFTER_ECTOPIC": 1},
    "hysteresis (hold at 0.85 x irregularity, P fraction 0.4)":
        {"AF_HOLD_IRREGULARITY": 0.85, "AF_HOLD_P_FRACTION": 0.4},
    "join AF episodes closer than 5 s (not 10 s)": {"AF_MERGE_GAP_S": 5.0},
    "refine episode edges (least-squares split of the per-beat evidence)":
        {"AF_REFINE_EDGES": True},
    "S beats without a delineated P wave stay in the RR series": {"AF_S_NEEDS_P": True},
    "S beats stay in the RR series where they are over 1/3 of the window's beats":
        {"AF_S_MAX_SHARE": 1 / 3},
    "S beats stay in the RR series where they are over 1/5 of the window's beats":
        {"AF_S_MAX_SHARE": 0.2},
    "second opinion with S beats kept in, where P fraction and coherence are both low":
        {"AF_S_SECOND_OPINION": "vote"},
    "second opinion, irregularity the smallest of lags 1-3":
        {"AF_S_SECOND_OPINION": "vote", "AF_SECOND_LAGS": (1, 2, 3)},
    "second opinion, irregularity above 0.12 (the threshold without P waves)":
        {"AF_S_SECOND_OPINION": "vote", "AF_SECOND_IRREGULARITY": 0.12},
    "second opinion only extends episodes found without it":
        {"AF_S_SECOND_OPINION": "hold"},
    "second opinion vetoed where over 60 % of the RR intervals are within 30 ms of the "
    "2 most populated RR values (organised RR: flutter with variable block, nodal)":
        {"AF_S_SECOND_OPINION": "vote", "AF_SECOND_MAX_CLUSTERED": 0.6},
    "an S beat is ectopic only when a full cycle (local median RR) follows it":
        {"AF_S_NEEDS_PAUSE": 1.0},
    "beats with a compensatory pause are ectopic whatever their class":
        {"AF_RR_ECTOPIC_WITH_CLASSES": True},
    "P fraction and coherence over the S beats too (still out of the RR series)":
        {"AF_P_EVIDENCE_WITH_S": True},
    "flutter search subtracts the QRS-T of S beats instead of blanking them":
        {"AFL_BLANK_S": False},
    "no AF where under half the RR intervals turn (smooth sinus arrhythmia; a random "
    "series turns 2/3 of the time)":
        {"AF_MIN_TURNING_POINTS": 0.5},
}
"""Other AF options, each tried alone on top of the DS1 choice (kept only if DS1 says so)."""
AF_OPTION_DEFAULTS = {
    "AF_P_EVIDENCE": "both", "AF_COHERENCE_WINDOW": 31, "AF_SKIP_AFTER_ECTOPIC": 0,
    "AF_HOLD_IRREGULARITY": 1.0, "AF_MIN_DURATION_S": 30.0, "AF_MERGE_GAP_S": 10.0,
    "AF_REFINE_EDGES": False, "AF_S_NEEDS_P": False, "AF_S_MAX_SHARE": None,
    "AF_S_SECOND_OPINION": None, "AF_SECOND_LAGS": (1,), "AF_SECOND_IRREGULARITY": None,
    "AF_SECOND_MAX_CLUSTERED": None, "AF_S_NEEDS_PAUSE": None, "AF_RR_ECTOPIC_WITH_CLASSES": False,
    "AF_P_EVIDENCE_WITH_S": False, "AFL_BLANK_S": True, "AF_MIN_TURNING_POINTS": None,
}
"""The module's value of each option key unless an option is kept (the P fraction hold
and the coherence threshold default to their DS1 choices)."""
AF_GRID_COHERENCE = (None, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
"""P coherence thresholds (with ``AF_P_EVIDENCE = "both"``); None: not used."""
AFL_GRID = (0.3, 0.35, 0.4, 0.45, 0.5)
VT_FLAGS = ("VT_RATE_FROM_COUPLING", "VT_FUSION_IN_RUN", "VT_AMBIGUOUS_IN_RUN",
            "VT_RECOVER_MISSED", "VT_RELABEL_AFTER_MISSED")
VT_GRID = {"VT_GAP_RATIO": (1.5, 1.6, 1.8), "VT_MISSED_MIN_CORR": (0.7, 0.8, 0.9),
           "VT_MISSED_MIN_SLOPE": (0.3, 0.5, 0.7)}
VT_QRS_GRID_S = (0.0, 0.10, 0.11, 0.12, 0.13)
"""Least median QRS duration of a VT run tried (0: no condition; 0.12 s is the clinical
line between narrow and wide complexes)."""


def _hmean(a: float | None, b: float | None) -> float:
    return 0.0 if not a or not b else 2 * a * b / (a + b)


class _Patched:
    """Set attributes of ecgcore.rhythm for a block, then restore them."""

    def __init__(self, **values):
        self.values = values

    def __enter__(self):
        from ecgcore import rhythm

        self.saved = {k: getattr(rhythm, k) for k in self.values}
        for k, v in self.values.items():
            setattr(rhythm, k, v)

    def __exit__(self, *exc):
        from ecgcore import rhythm

        for k, v in self.saved.items():
            setattr(rhythm, k, v)


def _af_score(data: dict[str, dict], records: list[str], inputs: dict, noise: dict) -> dict:
    from ecgcore import rhythm

    rows = []
    for r in records:
        rp, cls, pp = inputs[r]
        det = rhythm.af_episodes(rp, FS, data[r]["n"], beat_classes=cls, p_peaks=pp,
                                 exclude=noise[r], x=data[r]["x"])
        rows.append(score_record(reference_intervals(data[r])["AFIB"], det))
    return pooled_episode_agreement(rows)


def _noise_masks(data: dict[str, dict], inputs: dict) -> dict:
    from ecgcore import rhythm

    return {r: rhythm._in_any(inputs[r][0],
                              rhythm.noise_intervals(data[r]["x"], inputs[r][0], FS))
            for r in inputs}


def tune_af(data: dict[str, dict], cnn=None) -> dict:
    """:func:`_tune_af` with every AF option off (:data:`AF_OPTION_DEFAULTS`), whatever
    the module's settings, so that the procedure starts from the same place each run."""
    from ecgcore import rhythm

    module_extras = {k: getattr(rhythm, k) for o in AF_OPTIONS.values() for k in o}
    with _Patched(**AF_OPTION_DEFAULTS):
        return _tune_af(data, cnn, module_extras)


def _tune_af(data: dict[str, dict], cnn, module_extras: dict) -> dict:
    """DS1 grid over the AF thresholds (setting ref_classes).

    Rule: the highest harmonic mean of DS1 duration Se and +P; among the settings within
    :data:`AF_TIE_POINTS` of it, key by key (ectopic classes, PR tolerance, P fraction)
    the module's value if a tied setting has it (what DS1 cannot tell apart stays as
    it was), else the best tied setting's; then with those, the middle irregularity
    threshold of the plateau (the one furthest from where DS1 falls off). All this with
    every option of :data:`AF_OPTIONS` off. Then the options, round by round: each one
    left is tried on top of the choice and the options kept so far, in setting
    ref_classes and (given the classifier) through the whole of ecg_rhythm in setting
    cnn_cv; it qualifies when it raises the DS1 harmonic mean by more than
    :data:`AF_TIE_POINTS` over the options kept so far in one setting, and leaves neither
    setting more than that below them or below the choice without options. Of those, the
    one with the highest DS1 harmonic mean in setting cnn_cv (else ref_classes; ties: the
    fewest settings changed, then the first listed) is kept, and the next round begins, until
    none qualifies. An option that would change a kept setting, or adds nothing to them,
    is not tried again. The chosen setting, the best one with the PR-consistency filter
    and every option are also scored on all 48 records (setting cnn for the options),
    for information only.
    """
    from ecgcore import rhythm

    names = ("AF_IRREGULARITY", "AF_MAX_P_FRACTION", "AF_PR_TOLERANCE_S", "ECTOPIC_CLASSES")
    keys = ("irregularity", "max_p_fraction", "pr_tolerance_s", "ectopic_classes")
    saved = tuple(getattr(rhythm, k) for k in names)
    records = mitdb_records()
    inputs = {r: setting_inputs(data[r], "ref_classes") for r in records}
    noise = _noise_masks(data, inputs)
    grid = []

    def row(values, a):
        return {**dict(zip(keys, values, strict=True)),
                "duration_se": a["duration_se"], "duration_ppv": a["duration_ppv"],
                "score": round(_hmean(a["duration_se"], a["duration_ppv"]), 2)}

    for ect in AF_GRID_ECTOPIC:
        for tol in AF_GRID_PR:
            for irr in AF_GRID_IRR:
                for pf in AF_GRID_P:
                    values = (irr, pf, tol, ect)
                    with _Patched(**dict(zip(names, values, strict=True))):
                        grid.append(row(values, _af_score(data, DS1, inputs, noise)))

    incumbent = dict(zip(keys, saved, strict=True))

    def pick(candidates):
        best = max(g["score"] for g in candidates)
        tied = [g for g in candidates if g["score"] >= best - AF_TIE_POINTS]
        # What DS1 cannot tell apart stays as it was: key by key (ectopic classes, PR
        # tolerance, P fraction), the module's value if a tied setting has it, otherwise
        # the best tied setting's.
        for k in reversed(keys[1:]):
            if not any(g[k] == incumbent[k] for g in tied):
                top = max(tied, key=lambda g: (g["score"], -g["irregularity"]))
                value = top[k]
            else:
                value = incumbent[k]
            tied = [g for g in tied if g[k] == value]
        plateau = sorted(tied, key=lambda g: g["irregularity"])
        return plateau[(len(plateau) - 1) // 2]

    chosen = pick(grid)
    alternative = pick([g for g in grid if g["pr_tolerance_s"] is not None])
    base = dict(zip(names, (chosen[k] for k in keys), strict=True))
    # P coherence: the delineator's P waves veto AF only where the activity before the
    # QRS is locked to it. Highest DS1 harmonic mean; among the thresholds tied with it,
    # the middle one (None only when no threshold ties with the best).
    saved_coh = rhythm.AF_MAX_P_COHERENCE
    coherence_grid = []
    with _Patched(**base, AF_P_EVIDENCE="both"):
        for c in AF_GRID_COHERENCE:
            with _Patched(AF_MAX_P_COHERENCE=c):
                a = _af_score(data, DS1, inputs, noise)
            coherence_grid.append({"threshold": c, "duration_se": a["duration_se"],
                                   "duration_ppv": a["duration_ppv"], "score": round(
                                       _hmean(a["duration_se"], a["duration_ppv"]), 2)})
    best_c = max(g["score"] for g in coherence_grid)
    tied_c = [g["threshold"] for g in coherence_grid
              if g["score"] >= best_c - AF_TIE_POINTS and g["threshold"] is not None]
    chosen_coherence = (sorted(tied_c)[(len(tied_c) - 1) // 2] if tied_c else None)
    base["AF_MAX_P_COHERENCE"] = chosen_coherence
    options = []

    def scores(a_ds1: dict, a_all: dict) -> dict:
        return {"ds1": [a_ds1["duration_se"], a_ds1["duration_ppv"],
                        round(_hmean(a_ds1["duration_se"], a_ds1["duration_ppv"]), 2)],
                "all48": [a_all["duration_se"], a_all["duration_ppv"]]}

    def cnn_scores() -> dict | None:
        # DS1 with the fold networks' classes (setting cnn_cv) chooses; all 48 with the
        # served network's (setting cnn), for information.
        if cnn is None:
            return None
        held_out = {r: run_record(data[r], "cnn_cv", cnn)["AFIB"] for r in DS1}
        served = {r: run_record(data[r], "cnn", cnn)["AFIB"] for r in records}
        return scores(pooled_episode_agreement([held_out[r] for r in DS1]),
                      pooled_episode_agreement([served[r] for r in records]))

    def spent(values: dict, kept: dict) -> bool:
        # It would change a kept setting, or the kept settings already hold it.
        return (any(k in kept and kept[k] != v for k, v in values.items())
                or all(kept.get(k, object()) == v for k, v in values.items()))

    kept: dict = {}
    with _Patched(**base):
        base_all = _af_score(data, records, inputs, noise)
        base_ref = scores(_af_score(data, DS1, inputs, noise), base_all)
        base_cnn = cnn_scores()
        current_ref, current_cnn = base_ref, base_cnn
        remaining = dict(AF_OPTIONS)
        round_no = 0
        while remaining:
            round_no += 1
            rows = []
            for label, values in remaining.items():
                with _Patched(**{**kept, **values}):
                    ref = scores(_af_score(data, DS1, inputs, noise),
                                 _af_score(data, records, inputs, noise))
                    on_cnn = cnn_scores()
                # A gain over the options kept so far in one setting, no fall in the
                # other, and no fall below the start: small falls in rounds one after
                # another would add up.
                gains = [ref["ds1"][2] - current_ref["ds1"][2]]
                falls = [ref["ds1"][2] - base_ref["ds1"][2]]
                if on_cnn is not None:
                    gains.append(on_cnn["ds1"][2] - current_cnn["ds1"][2])
                    falls.append(on_cnn["ds1"][2] - base_cnn["ds1"][2])
                rows.append({"option": label, "values": values, "round": round_no, **ref,
                             "cnn": on_cnn, "kept": False,
                             "qualifies": (max(gains) > AF_TIE_POINTS
                                           and min(gains + falls) >= -AF_TIE_POINTS)})
            options += rows
            good = [r_ for r_ in rows if r_["qualifies"]]
            if not good:
                break
            best = max(good, key=lambda r_: ((r_["cnn"] or r_)["ds1"][2], -len(r_["values"])))
            best["kept"] = True
            kept.update(best["values"])
            current_ref = {"ds1": best["ds1"], "all48": best["all48"]}
            current_cnn = best["cnn"]
            remaining = {label: values for label, values in remaining.items()
                         if label != best["option"] and not spent(values, kept)}
    all48 = {"chosen": row(tuple(chosen[k] for k in keys), base_all)}
    alt_values = tuple(alternative[k] for k in keys)
    with _Patched(**dict(zip(names, alt_values, strict=True))):
        all48["best with PR filter"] = row(alt_values,
                                           _af_score(data, records, inputs, noise))
    module = dict(zip(keys, saved, strict=True))
    defaults = {**AF_OPTION_DEFAULTS, "AF_MAX_P_COHERENCE": chosen_coherence,
                "AF_HOLD_P_FRACTION": saved[1]}
    expected_extras = {k: kept.get(k, defaults[k]) for k in module_extras}
    return {"grid": grid, "chosen": chosen, "options": options, "kept_options": kept,
            "option_values": expected_extras,
            "options_base": {"ref_classes": base_ref, "cnn": base_cnn},
            "coherence_grid": coherence_grid, "chosen_coherence": chosen_coherence,
            "module_coherence": saved_coh,
            "coherence_equal_error_ds1": coherence_equal_error(data, inputs),
            "all48_information_only": all48, "module": module,
            "module_matches": all(chosen[k] == v for k, v in module.items())
            and module_extras == expected_extras}


def coherence_equal_error(data: dict[str, dict], inputs: dict) -> dict:
    """Per-beat P coherence on DS1: the threshold where as many reference AF beats lie
    above it as non-AF beats below it (for information: how well the feature alone
    separates the beats, before any episode logic)."""
    from ecgcore import rhythm

    af, other = [], []
    for r in DS1:
        rp, cls, _ = inputs[r]
        c = rhythm.p_coherence(data[r]["x"], rp, FS, np.isin(cls, rhythm.ECTOPIC_CLASSES),
                               rhythm.AF_COHERENCE_WINDOW)
        inside = np.zeros(data[r]["n"], dtype=bool)
        for s, e in reference_intervals(data[r])["AFIB"]:
            inside[s:e] = True
        ref = inside[rp]
        af.append(c[ref & np.isfinite(c)])
        other.append(c[~ref & np.isfinite(c)])
    a, o = np.concatenate(af), np.concatenate(other)
    ts = np.round(np.arange(0.2, 0.9, 0.01), 2)
    gap = [abs(float((a > t).mean()) - float((o < t).mean())) for t in ts]
    t = float(ts[int(np.argmin(gap))])
    return {"threshold": t, "af_beats_above": round(100 * float((a > t).mean()), 1),
            "other_beats_below": round(100 * float((o < t).mean()), 1),
            "af_beats": int(a.size), "other_beats": int(o.size)}


def tune_afl(data: dict[str, dict]) -> dict:
    """DS1 grid over the flutter organisation threshold (setting ref_classes, AF chosen).

    Rule: the lowest threshold (the most flutter found) whose DS1 AFIB duration Se and +P
    both stay within :data:`AF_TIE_POINTS` of those without flutter detection: DS1's one
    flutter record (203, noisy) gives no flutter to find, so DS1 can only say how much
    fibrillation a threshold mistakes for flutter.
    """
    from ecgcore import rhythm

    inputs = {r: setting_inputs(data[r], "ref_classes") for r in DS1}
    noise = _noise_masks(data, inputs)
    af, org = {}, {}
    for r in DS1:
        rp, cls, pp = inputs[r]
        af[r] = rhythm.af_episodes(rp, FS, data[r]["n"], beat_classes=cls, p_peaks=pp,
                                   exclude=noise[r], x=data[r]["x"])
        if af[r]:
            ect = np.isin(cls, rhythm.ECTOPIC_CLASSES)
            org[r] = rhythm.atrial_organisation(data[r]["x"], rp, FS, ect)

    def score(threshold):
        rows_af, rows_afl = [], []
        for r in DS1:
            ref = reference_intervals(data[r])
            fib, fl = af[r], []
            if af[r] and threshold is not None:
                with _Patched(AFL_MIN_ORGANISATION=threshold):
                    fib, fl = rhythm.split_flutter(af[r], org[r], FS)
            rows_af.append(score_record(ref["AFIB"], fib))
            rows_afl.append(score_record(ref["AFL"], fl))
        a, b = pooled_episode_agreement(rows_af), pooled_episode_agreement(rows_afl)
        return {"threshold": threshold, "afib_se": a["duration_se"],
                "afib_ppv": a["duration_ppv"], "afl_se": b["duration_se"],
                "afl_ppv": b["duration_ppv"], "afl_det_s": b["det_s"]}

    none = score(None)
    grid = [score(t) for t in AFL_GRID]
    ok = [g for g in grid if (none["afib_se"] or 0) - (g["afib_se"] or 0) <= AF_TIE_POINTS
          and (none["afib_ppv"] or 0) - (g["afib_ppv"] or 0) <= AF_TIE_POINTS]
    chosen = min(ok, key=lambda g: g["threshold"]) if ok else None
    module = rhythm.AFL_MIN_ORGANISATION
    return {"without": none, "grid": grid, "chosen": chosen, "module": module,
            "module_matches": chosen is not None and chosen["threshold"] == module}


def _vt_score(data: dict[str, dict], records: list[str], inputs: dict, noise: dict,
              **values) -> dict:
    """VT episodes alone (as ecg_rhythm finds them) under patched settings."""
    from ecgcore import rhythm

    rows = []
    with _Patched(**values):
        for r in records:
            rp, cls, _ = inputs[r]
            c = np.where(noise[r], "Q", cls)
            if rhythm.VT_RECOVER_MISSED:
                rp, c = rhythm.recover_missed_beats(data[r]["x"], rp, c, FS)
            vt, _ = rhythm.ventricular_runs(c, rp, FS, data[r]["n"], x=data[r]["x"])
            rows.append(score_record(reference_intervals(data[r])["VT"], vt))
    a = pooled_episode_agreement(rows)
    return {"episode_se": a["episode_se"], "episode_ppv": a["episode_ppv"],
            "found": a["ref_found"], "ref_n": a["ref_n"], "det_n": a["det_n"]}


VF_GRID_LEAKAGE = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
VF_GRID_MIN_S = (4.0, 6.0, 8.0)


def tune_vf(data: dict[str, dict]) -> dict:
    """DS1 grid over the VF filter's leakage threshold and the shortest episode.

    Rule: the highest harmonic mean of DS1 VFL duration Se and +P; among the settings
    within :data:`AF_TIE_POINTS` of it, the lowest leakage threshold, then the longest
    shortest episode (the fewest false alarms). DS1's ventricular flutter is all in 207
    (six episodes, 143 s); the other DS1 records say what the filter takes for it
    where there is none. DS2 has no VFL: its detected time is all false (held out).
    """
    from ecgcore import rhythm

    saved = (rhythm.VF_MAX_LEAKAGE, rhythm.VF_MIN_DURATION_S)
    records = mitdb_records()
    refs = {r: reference_intervals(data[r])["VFL"] for r in records}
    grid = []
    for leak in VF_GRID_LEAKAGE:
        for shortest in VF_GRID_MIN_S:
            with _Patched(VF_MAX_LEAKAGE=leak, VF_MIN_DURATION_S=shortest):
                found = {r: rhythm.vf_episodes(data[r]["x"], FS, data[r]["rpeaks"])
                         for r in records}
            scores = {g: pooled_episode_agreement([score_record(refs[r], found[r])
                                                   for r in recs])
                      for g, recs in (("DS1", DS1), ("DS2", DS2), ("all", records))}
            grid.append({"max_leakage": leak, "min_duration_s": shortest,
                         "ds1": scores["DS1"], "ds2_false_s": scores["DS2"]["det_s"],
                         "all": scores["all"],
                         "score": round(_hmean(scores["DS1"]["duration_se"],
                                               scores["DS1"]["duration_ppv"]), 2),
                         "false_records": sorted(
                             r for r in records
                             if any(not any(a < e and s < b for a, b in refs[r])
                                    for s, e in found[r]))})
    best = max(g["score"] for g in grid)
    tied = [g for g in grid if g["score"] >= best - AF_TIE_POINTS]
    chosen = min(tied, key=lambda g: (g["max_leakage"], -g["min_duration_s"]))
    return {"grid": grid, "chosen": {"VF_MAX_LEAKAGE": chosen["max_leakage"],
                                     "VF_MIN_DURATION_S": chosen["min_duration_s"]},
            "module": {"VF_MAX_LEAKAGE": saved[0], "VF_MIN_DURATION_S": saved[1]},
            "module_matches": saved == (chosen["max_leakage"], chosen["min_duration_s"])}


def tune_vt(data: dict[str, dict], cnn) -> dict:
    """DS1 choice of the VT rule's options and missed-beat search (setting cnn_cv, else
    ref_classes).

    Rule: the highest DS1 episode Se, then the highest DS1 episode +P, then the fewest
    options on, then the strictest search (largest gap ratio, correlation, slope). First
    the options (:data:`VT_FLAGS`, every combination, at the module's
    search settings), then the search settings (:data:`VT_GRID`) with the options chosen.
    Each option alone is also scored on DS1 and all 48 records in settings cnn,
    ref_classes and ref_beats, for information.
    """
    import itertools

    from ecgcore import rhythm

    setting = "cnn_cv" if cnn is not None else "ref_classes"
    records = mitdb_records()
    inputs = {s: {r: setting_inputs(data[r], s, cnn) for r in records}
              for s in ("cnn_cv", "cnn", "ref_classes", "ref_beats")
              if not s.startswith("cnn") or cnn is not None}
    noise = {s: _noise_masks(data, inp) for s, inp in inputs.items()}
    def key(g):
        # Ties: fewer options on, then the strictest search (fewest beats put back).
        return (g["ds1"]["episode_se"] or 0, g["ds1"]["episode_ppv"] or 0,
                -sum(g["flags"].values()), *g.get("params", {}).values())

    flag_rows = []
    for combo in itertools.product((False, True), repeat=len(VT_FLAGS)):
        flags = dict(zip(VT_FLAGS, combo, strict=True))
        flag_rows.append({"flags": flags, "ds1": _vt_score(
            data, DS1, inputs[setting], noise[setting], **flags)})
    best_flags = max(flag_rows, key=key)["flags"]
    param_rows = []
    for values in itertools.product(*VT_GRID.values()):
        params = dict(zip(VT_GRID, values, strict=True))
        param_rows.append({"params": params, "flags": best_flags, "ds1": _vt_score(
            data, DS1, inputs[setting], noise[setting], **best_flags, **params)})
    best_params = max(param_rows, key=key)["params"]
    # Last, the QRS width a VT run needs: highest DS1 Se, then +P, then the least
    # condition (what DS1 cannot tell apart stays off). All 48 for information.
    width_rows = []
    for width in VT_QRS_GRID_S:
        values = {**best_flags, **best_params, "VT_MIN_QRS_S": width}
        width_rows.append({"VT_MIN_QRS_S": width, **{
            g: _vt_score(data, recs, inputs[setting], noise[setting], **values)
            for g, recs in (("ds1", DS1), ("ds2", DS2), ("all", records))}})
    best_width = max(width_rows, key=lambda g: (g["ds1"]["episode_se"] or 0,
                                                g["ds1"]["episode_ppv"] or 0,
                                                -g["VT_MIN_QRS_S"]))["VT_MIN_QRS_S"]
    chosen = {**best_flags, **best_params, "VT_MIN_QRS_S": best_width}
    ablation = []
    for flag in VT_FLAGS:
        for on in (False, True):
            values = {**chosen, flag: on}
            ablation.append({"flag": flag, "on": on, **{
                f"{s} {g}": _vt_score(data, recs, inputs[s], noise[s], **values)
                for s in inputs for g, recs in (("DS1", DS1), ("all", records))}})
    module = {k: getattr(rhythm, k) for k in chosen}
    return {"setting": setting, "flags_grid": flag_rows, "params_grid": param_rows,
            "width_grid": width_rows,
            "chosen": chosen, "ablation": ablation, "module": module,
            "module_matches": module == chosen}


RHYTHM_LABEL_SOURCES = ("network", "morphology")


def tune_rhythm_labels(data: dict[str, dict], cnn) -> dict:
    """DS1 choice of the five-class labels the rhythm is found from
    (``ecgcore.analysis.RHYTHM_LABELS``), setting cnn_cv, whole of ecg_rhythm at the
    module's rhythm settings.

    Rule: the network's own labels (nothing between the network and the rhythm) unless
    the morphology rule's labels do not lower the DS1 VT episode Se, lower the DS1 AF
    duration harmonic mean by no more than :data:`AF_TIE_POINTS`, and raise that
    harmonic mean by more than :data:`AF_TIE_POINTS` or the VT episode +P. DS2 and all 48
    (setting cnn_cv) for information.
    """
    from ecgcore import analysis

    saved = analysis.RHYTHM_LABELS
    records = mitdb_records()
    rows = {}
    try:
        for source in RHYTHM_LABEL_SOURCES:
            analysis.RHYTHM_LABELS = source
            runs = {r: run_record(data[r], "cnn_cv", cnn) for r in records}
            row = {}
            for g, recs in (("DS1", DS1), ("DS2", DS2), ("all", records)):
                af = pooled_episode_agreement([runs[r]["AFIB"] for r in recs])
                vt = pooled_episode_agreement([runs[r]["VT"] for r in recs])
                row[g] = {"af_duration_se": af["duration_se"],
                          "af_duration_ppv": af["duration_ppv"],
                          "af_score": round(_hmean(af["duration_se"], af["duration_ppv"]), 2),
                          "vt_episode_se": vt["episode_se"],
                          "vt_episode_ppv": vt["episode_ppv"]}
            rows[source] = row
    finally:
        analysis.RHYTHM_LABELS = saved
    net, mor = rows["network"]["DS1"], rows["morphology"]["DS1"]
    morphology = ((mor["vt_episode_se"] or 0) >= (net["vt_episode_se"] or 0)
                  and mor["af_score"] >= net["af_score"] - AF_TIE_POINTS
                  and (mor["af_score"] > net["af_score"] + AF_TIE_POINTS
                       or (mor["vt_episode_ppv"] or 0) > (net["vt_episode_ppv"] or 0)))
    chosen = "morphology" if morphology else "network"
    return {"rows": rows, "chosen": chosen, "module": saved, "module_matches": saved == chosen}


def af_errors(data: dict[str, dict], runs: dict[str, dict], min_s: float = 1.0) -> list[dict]:
    """Where the AFIB duration errors are, per record: false AF time (and what the
    reference calls it) and missed AF time (and what we reported there instead)."""
    rows = []
    for r, run in runs.items():
        d = data[r]
        n = d["n"]
        det = np.zeros(n, dtype=bool)
        for e in run["episodes"]:
            if e["label"] == "AFIB":
                det[e["start"]:e["end"]] = True
        ref = np.zeros(n, dtype=bool)
        for s, e in reference_intervals(d)["AFIB"]:
            ref[s:e] = True
        false, missed = det & ~ref, ref & ~det
        if (false.sum() + missed.sum()) / FS < min_s:
            continue
        false_by: dict[str, float] = {}
        for e in d["ref_rhythm"]:
            t = float(false[e["start"]:e["end"]].sum()) / FS
            if t > 0:
                false_by[e["label"]] = false_by.get(e["label"], 0.0) + t
        missed_by: dict[str, float] = {}
        ours = np.zeros(n, dtype=bool)
        for e in run["episodes"]:
            t = float(missed[e["start"]:e["end"]].sum()) / FS
            ours[e["start"]:e["end"]] = True
            if t > 0:
                missed_by[e["label"]] = missed_by.get(e["label"], 0.0) + t
        nothing = float((missed & ~ours).sum()) / FS
        if nothing > 0:
            missed_by["none"] = nothing
        rows.append({
            "record": r, "set": "DS1" if r in DS1 else "DS2" if r in DS2 else "-",
            "ref_s": round(float(ref.sum()) / FS, 1), "det_s": round(float(det.sum()) / FS, 1),
            "false_s": round(float(false.sum()) / FS, 1),
            "false_reference": {k: round(v, 1) for k, v in
                                sorted(false_by.items(), key=lambda kv: -kv[1])},
            "missed_s": round(float(missed.sum()) / FS, 1),
            "missed_ours": {k: round(v, 1) for k, v in
                            sorted(missed_by.items(), key=lambda kv: -kv[1])},
        })
    return rows


AF_PIECE_GRID_S = (5.0, 10.0, 20.0, 30.0)
"""Shortest AF/flutter piece kept between cut-out ventricular rhythms, tried on DS1."""


def af_yield_table(data: dict[str, dict], settings: list[str],
                   cnn) -> tuple[list[dict], bool, float]:
    """AFIB duration Se / +P with and without cutting ventricular rhythms (VT, IVR,
    bigeminy, trigeminy) out of the AF episodes (AF_YIELD_TO_VENTRICULAR), and with the
    cut on, dropping the pieces left shorter than each of :data:`AF_PIECE_GRID_S`
    (AF_MIN_PIECE_AFTER_CUT_S), DS1 and all. Also returns the module's two values."""
    from ecgcore import rhythm

    records = mitdb_records()
    out = []
    variants = [(False, 0.0), (True, 0.0)] + [(True, s) for s in AF_PIECE_GRID_S]
    for setting in settings:
        for on, shortest in variants:
            with _Patched(AF_YIELD_TO_VENTRICULAR=on, AF_MIN_PIECE_AFTER_CUT_S=shortest):
                runs = {r: run_record(data[r], setting, cnn)["AFIB"] for r in records}
            row = {"setting": setting, "on": on, "shortest_piece_s": shortest}
            for g, recs in (("DS1", DS1), ("all", records)):
                a = pooled_episode_agreement([runs[r] for r in recs])
                row[g] = [a["duration_se"], a["duration_ppv"],
                          round(_hmean(a["duration_se"], a["duration_ppv"]), 2)]
            out.append(row)
    return out, rhythm.AF_YIELD_TO_VENTRICULAR, rhythm.AF_MIN_PIECE_AFTER_CUT_S


HRV_RECORDS = ("100", "103", "113", "117", "122", "123", "234")


def hrv_table(data: dict[str, dict]) -> list[dict]:
    """HRV figures from reference beats, detected beats with classes, and without."""
    from ecgcore.hrv import hrv_summary

    rows = []
    for r in HRV_RECORDS:
        d = data[r]
        rows.append({
            "record": r,
            "ref": hrv_summary(d["ref_beats"], FS, d["ref_classes"]),
            "det+cls": hrv_summary(d["rpeaks"], FS, classes_for_detected(d)),
            "det": hrv_summary(d["rpeaks"], FS),
        })
    return rows


def _load_cnn():
    try:
        from ecgcore.inference import load_classifiers

        return load_classifiers(), None
    except Exception as exc:  # missing weights or an unfinished module
        return None, f"{type(exc).__name__}: {exc}"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def main() -> int:
    from ecgcore.rhythm import RHYTHM_NAMES, rhythm_summary

    start = time.perf_counter()
    _code_digest()
    import ecgcore.delineate  # noqa: F401  (import now: the digest describes this code)
    import ecgcore.detect  # noqa: F401
    records = mitdb_records()
    data = {r: load_record(r) for r in records}
    # The AF thresholds are chosen on DS1 first and used for every table.
    from ecgcore import analysis, rhythm

    cnn, cnn_error = _load_cnn()
    # Ventricular flutter needs no beats, and every other rhythm yields to it: first.
    vf_tuning = tune_vf(data)
    for k, v in vf_tuning["chosen"].items():
        setattr(rhythm, k, v)
    labels_tuning = None
    if cnn is not None:
        # The labels first: the AF and VT settings below are chosen with the chosen ones.
        labels_tuning = tune_rhythm_labels(data, cnn)
        analysis.RHYTHM_LABELS = labels_tuning["chosen"]
    tuning = tune_af(data, cnn)
    for k, key in (("AF_IRREGULARITY", "irregularity"), ("AF_MAX_P_FRACTION", "max_p_fraction"),
                   ("AF_PR_TOLERANCE_S", "pr_tolerance_s"),
                   ("ECTOPIC_CLASSES", "ectopic_classes")):
        setattr(rhythm, k, tuning["chosen"][key])
    rhythm.AF_MAX_P_COHERENCE = tuning["chosen_coherence"]
    for k, v in tuning["option_values"].items():
        setattr(rhythm, k, v)
    afl_tuning = tune_afl(data)
    if afl_tuning["chosen"] is not None:
        rhythm.AFL_MIN_ORGANISATION = afl_tuning["chosen"]["threshold"]
    vt_tuning = tune_vt(data, cnn)
    for k, v in vt_tuning["chosen"].items():
        setattr(rhythm, k, v)
    settings = [s for s in SETTINGS if not s.startswith("cnn") or cnn is not None]
    results: dict = {}
    per_record: dict = {}
    for setting in settings:
        runs = {r: run_record(data[r], setting, cnn) for r in records}
        per_record[setting] = runs
        table = {}
        for label in (*SCORED, "AFIB+AFL", "VT+IVR"):
            if setting in ("no_classes", "rr_only") and label in (*CLASS_RHYTHMS, "VT+IVR"):
                continue
            table[label] = {
                **{g: pooled_episode_agreement([runs[r][label] for r in recs])
                   for g, recs in GROUPS.items()},
                "all": pooled_episode_agreement([runs[r][label] for r in records]),
            }
        results[setting] = table
    af_records = [r for r in records if any(e["label"] == "AFIB" for e in data[r]["ref_rhythm"])]
    burden = []
    for r in af_records:
        d = data[r]
        ref_s = sum(e["end"] - e["start"] for e in d["ref_rhythm"] if e["label"] == "AFIB") / FS
        row = {"record": r, "set": "DS1" if r in DS1 else "DS2" if r in DS2 else "-",
               "ref_pct": round(100 * ref_s / (d["n"] / FS), 1)}
        for setting in settings:
            summ = rhythm_summary(per_record[setting][r]["episodes"], d["n"], FS)
            row[setting] = {"af_burden_pct": summ["af_burden_pct"],
                            "af_episodes": summ["af_episodes"],
                            "ref_episodes": per_record[setting][r]["AFIB"]["ref_n"]}
        burden.append(row)
    # Unreadable time found per record (MIT-BIH has no rhythm reference for it).
    noise = {r: round(rhythm_summary(per_record["no_classes"][r]["episodes"], data[r]["n"], FS)
                      ["noise_pct"], 1) for r in records}
    hrv_rows = hrv_table(data)
    errors = {s: af_errors(data, per_record[s]) for s in settings if s in ("cnn", "ref_classes")}
    yield_rows, yield_module, piece_module = af_yield_table(
        data, [s for s in ("ref_classes", "cnn") if s in settings], cnn)
    ref_yield = {(row["on"], row["shortest_piece_s"]): row["DS1"][2] for row in yield_rows
                 if row["setting"] == "ref_classes"}
    # A convention (MIT-BIH labels the ventricular rhythm), kept unless DS1 says it hurts.
    yield_choice = ref_yield[True, 0.0] >= ref_yield[False, 0.0] - AF_TIE_POINTS
    # Dropping the short pieces is a change: only if DS1 rises by more than a tie.
    best_piece = max(AF_PIECE_GRID_S, key=lambda s: (ref_yield[True, s], -s))
    piece_choice = (best_piece if ref_yield[True, best_piece]
                    > ref_yield[True, 0.0] + AF_TIE_POINTS else 0.0)
    payload = {
        "machine": machine(),
        "overlap_rule": OVERLAP_RULE,
        "settings": {s: SETTINGS[s] for s in settings},
        "cnn_unavailable": cnn_error,
        "results": results,
        "af_burden": burden,
        "noise_pct": noise,
        "rhythm_labels_ds1": labels_tuning,
        "af_tuning_ds1": tuning,
        "afl_tuning_ds1": afl_tuning,
        "vt_tuning_ds1": vt_tuning,
        "vf_tuning_ds1": vf_tuning,
        "hrv": hrv_rows,
        "af_errors": errors,
        "af_yield_to_ventricular": {"rows": yield_rows, "chosen": yield_choice,
                                    "module": yield_module,
                                    "chosen_shortest_piece_s": piece_choice,
                                    "module_shortest_piece_s": piece_module},
        "seconds": round(time.perf_counter() - start, 1),
        "code_digest": _code_digest(),
    }
    lines = [
        "# Rhythm episodes against the MIT-BIH rhythm annotations",
        "",
        f"`.venv/bin/python bench/rhythm.py` ({payload['machine']['date']}, "
        f"{payload['seconds']} s). The lead `ecg analyze` reads by default of all 48 records "
        "(MLII; V5 in 102, V2 in 104, which have none), conditioned at 360 Hz "
        "(ecg_condition), R peaks from ecgcore.detect.ecg_rpeaks, P waves from "
        "ecgcore.delineate.ecg_delineate "
        f"(code digest {payload['code_digest']} of signal/detect/delineate.py).",
        "",
        f"**Matching.** {OVERLAP_RULE}",
        "",
        "**Settings.**",
        *[f"- `{s}`: {SETTINGS[s]}" for s in settings],
    ]
    if cnn_error:
        lines.append(f"- `cnn`: not run, the classifier could not be loaded ({cnn_error}).")
    lines += [
        "",
        "Thresholds were chosen on DS1 only (see the AF grid at the end); DS2 is reported "
        "separately. Figures in %; n = reference / detected episodes.",
        "",
    ]
    for setting in settings:
        lines += [f"## Setting `{setting}`", "",
                  "| rhythm | set | ref n | det n | episode Se | episode +P | duration Se | "
                  "duration +P | ref s | det s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for label, rows in results[setting].items():
            name = RHYTHM_NAMES.get(label, {"AFIB+AFL": "Atrial fibrillation or flutter",
                                             "VT+IVR": "Any run of >= 3 V beats"}.get(label))
            for g in ("DS1", "DS2", "all"):
                a = rows[g]
                lines.append(
                    f"| {label} ({name}) | {g} | {a['ref_n']:.0f} | {a['det_n']:.0f} | "
                    f"{_fmt(a['episode_se'])} | {_fmt(a['episode_ppv'])} | "
                    f"{_fmt(a['duration_se'])} | {_fmt(a['duration_ppv'])} | "
                    f"{a['ref_s']:.0f} | {a['det_s']:.0f} |")
        lines.append("")
    lines += ["## AF burden per record with AF (% of the record; ours = % of readable time)",
              "", "| record | set | reference | " + " | ".join(settings) + " |",
              "|---|---|---|" + "---|" * len(settings)]
    for row in burden:
        cells = " | ".join(
            f"{row[s]['af_burden_pct']:.1f} ({row[s]['af_episodes']} ep.)" for s in settings)
        lines.append(f"| {row['record']} | {row['set']} | {row['ref_pct']:.1f} | {cells} |")
    def labels(d: dict) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in d.items() if v >= 0.5) or "-"

    for setting, rows in errors.items():
        tot_false = sum(r_["false_s"] for r_ in rows)
        tot_missed = sum(r_["missed_s"] for r_ in rows)
        lines += ["", f"## AFIB duration errors per record (setting `{setting}`)", "",
                  "False AF: time we call AFIB that the reference does not, by the reference "
                  "rhythm there. Missed AF: reference AFIB time we do not call AFIB, by what "
                  "we reported there instead (`none`: no episode). Seconds; records with at "
                  f"least 1 s of error. Total false {tot_false:.0f} s, missed "
                  f"{tot_missed:.0f} s.", "",
                  "| record | set | ref AF s | our AF s | false AF s | reference there | "
                  "missed AF s | ours there |", "|---|---|---|---|---|---|---|---|"]
        for r_ in rows:
            lines.append(f"| {r_['record']} | {r_['set']} | {r_['ref_s']:.0f} | "
                         f"{r_['det_s']:.0f} | {r_['false_s']:.0f} | "
                         f"{labels(r_['false_reference'])} | {r_['missed_s']:.0f} | "
                         f"{labels(r_['missed_ours'])} |")
    lines += ["", "## AF yields to ventricular rhythms (AFIB duration Se / +P / harmonic mean)",
              "", "VT, IVR, bigeminy and trigeminy episodes are cut out of the AF (and flutter) "
              "episodes: MIT-BIH labels such stretches by the ventricular rhythm. A labelling "
              "convention, kept unless the DS1 harmonic mean (setting `ref_classes`) falls by "
              f"more than {AF_TIE_POINTS}. Chosen: {'on' if yield_choice else 'off'}; module "
              f"{'on' if yield_module else 'off'} "
              f"({'matches' if yield_choice == yield_module else 'DIFFERS'}). With the cut "
              "on, the pieces of AF left shorter than a length can be dropped (a piece of a "
              "few seconds between two bigeminy runs is hardly an AF episode); a change, so "
              "kept only if the DS1 harmonic mean (setting `ref_classes`) rises by more than "
              f"{AF_TIE_POINTS}. Chosen: "
              f"{f'{piece_choice:g} s' if piece_choice else 'every piece kept'}; module "
              f"{f'{piece_module:g} s' if piece_module else 'every piece kept'} "
              f"({'matches' if piece_choice == piece_module else 'DIFFERS'}).", "",
              "| setting | cut | shortest piece kept | DS1 | all (information) |",
              "|---|---|---|---|---|"]
    for row in yield_rows:
        piece = (f"{row['shortest_piece_s']:g} s" if row["shortest_piece_s"]
                 else ("any" if row["on"] else "-"))
        lines.append(f"| {row['setting']} | {'on' if row['on'] else 'off'} | {piece} | "
                     f"{_fmt(row['DS1'][0])} / {_fmt(row['DS1'][1])} / {row['DS1'][2]:.2f} | "
                     f"{_fmt(row['all'][0])} / {_fmt(row['all'][1])} / {row['all'][2]:.2f} |")
    lines += ["", "## Unreadable (NOISE) time found, % of record (no reference)", "",
              ", ".join(f"{r}: {v}" for r, v in noise.items() if v > 0) or "none", ""]
    lines += ["## HRV from our beats vs from the reference beats (sinus records)", "",
              "NN = N-N by class (`ref` = reference beats and classes; `det+cls` = detected "
              "beats with the carried-over reference classes; `det` = detected beats, no "
              "classes, 20 % rule). Whole 30-min records.", "",
              "| record | input | NN | mean NN ms | SDNN ms | RMSSD ms | pNN50 % | LF/HF |",
              "|---|---|---|---|---|---|---|---|"]
    for row in hrv_rows:
        for key in ("ref", "det+cls", "det"):
            h = row[key]
            lf_hf = (h["frequency"] or {}).get("lf_hf")
            lines.append(f"| {row['record']} | {key} | {h['n_nn']} | {_fmt(h['mean_nn_ms'])} | "
                         f"{_fmt(h['sdnn_ms'])} | {_fmt(h['rmssd_ms'])} | "
                         f"{_fmt(h['pnn50_pct'])} | {_fmt(lf_hf)} |")
    lines.append("")
    ch = tuning["chosen"]
    differs = "DIFFERS: copy the choice into ecgcore/rhythm.py"

    def ect(classes) -> str:
        return "".join(classes)

    lt = payload["rhythm_labels_ds1"]
    if lt is not None:
        lines += ["## Which labels the rhythm is found from (DS1, setting `cnn_cv`)", "",
                  "Decided first; every choice below is made with it. Rule: the network's own "
                  "labels unless the morphology rule's labels do not lower the DS1 VT "
                  f"episode Se, lower the DS1 AF duration harmonic mean by no more than "
                  f"{AF_TIE_POINTS}, and raise that mean by more than {AF_TIE_POINTS} or the "
                  f"VT episode +P. Scored through the whole of ecg_rhythm with the module's "
                  f"settings. Chosen: `{lt['chosen']}`; module `{lt['module']}` "
                  f"({'matches' if lt['module_matches'] else differs}). DS2 and all 48 "
                  "for information only.", "",
                  "| labels | " + " | ".join(f"{g} AF duration Se / +P (hmean) | {g} VT "
                                             "episode Se / +P" for g in ("DS1", "DS2", "all"))
                  + " |", "|---|" + "---|" * 6]
        for source, row in lt["rows"].items():
            lines.append(f"| {source} | " + " | ".join(
                f"{_fmt(row[g]['af_duration_se'])} / {_fmt(row[g]['af_duration_ppv'])} "
                f"({row[g]['af_score']:.1f}) | {_fmt(row[g]['vt_episode_se'])} / "
                f"{_fmt(row[g]['vt_episode_ppv'])}" for g in ("DS1", "DS2", "all")) + " |")
        lines.append("")
    lines += ["## AF threshold grid on DS1 (setting `ref_classes`, AFIB duration Se / +P)", "",
              "Rule: highest harmonic mean of DS1 duration Se and +P; among the settings "
              f"within {AF_TIE_POINTS} point of it, key by key (ectopic classes, PR tolerance, "
              "P fraction) the module's value if a tied setting has it (what DS1 cannot tell "
              "apart stays as it was), else the best tied setting's; with those, the middle "
              "of the irregularity plateau. **Every table above "
              "uses this DS1 choice** (set for the run); the module's defaults are what ecg "
              f"analyze uses. Chosen: irregularity {ch['irregularity']}, max P "
              f"fraction {ch['max_p_fraction']}, PR tolerance {ch['pr_tolerance_s']}, "
              f"ectopic classes {ect(ch['ectopic_classes'])}; options kept "
              f"{tuning['kept_options'] or 'none'}; module setting {tuning['module']} "
              f"({'matches' if tuning['module_matches'] else differs}"
              "). PR tolerance: a P wave counts only if its PR interval is within that many "
              "seconds of the local median PR (None: every P wave the delineator reports). "
              "Ectopic classes: beats left out of the RR series.",
              "", "Other options, round by round on top of the choice and the options kept "
              "so far, in setting `ref_classes` (AF episodes alone) and in the whole of "
              "ecg_rhythm with the network's classes (DS1: setting `cnn_cv`, each record "
              "classified by the CV fold network that never saw its patient): an option "
              f"qualifies when the DS1 harmonic mean rises by more than {AF_TIE_POINTS} over "
              "the options kept so far in one setting, and neither setting ends more than "
              "that below them or below the choice without options; of those, the "
              "one with the highest `cnn_cv` DS1 harmonic mean is kept (ties: fewest "
              "settings changed, then the first listed) and the next round starts, until "
              "none qualifies. All 48 records (setting `cnn`, as ecg analyze serves it) "
              "for information only. Cells: duration Se / +P (DS1 also the harmonic mean).",
              "", "| round | option | ref_classes DS1 | ref_classes all | cnn_cv DS1 | "
              "cnn all | qualifies | kept |",
              "|---|---|---|---|---|---|---|---|"]

    def cells(sc: dict | None) -> str:
        if sc is None:
            return "- | -"
        return (f"{_fmt(sc['ds1'][0])} / {_fmt(sc['ds1'][1])} / {sc['ds1'][2]:.2f} | "
                f"{_fmt(sc['all48'][0])} / {_fmt(sc['all48'][1])}")

    ob = tuning["options_base"]
    lines.append(f"| - | (the choice, no option) | {cells(ob['ref_classes'])} | "
                 f"{cells(ob['cnn'])} | - | - |")
    for o in tuning["options"]:
        lines.append(f"| {o['round']} | {o['option']} | {cells(o)} | {cells(o['cnn'])} | "
                     f"{'yes' if o['qualifies'] else 'no'} | "
                     f"{'**yes**' if o['kept'] else 'no'} |")
    ee = tuning["coherence_equal_error_ds1"]
    coh_match = tuning["chosen_coherence"] == tuning["module_coherence"]
    lines += ["", "P coherence (`AF_P_EVIDENCE = both`: the delineator's P waves veto AF only "
              "where the activity 300-80 ms before the QRS is locked to it, coherence above "
              "the threshold). Rule: highest DS1 harmonic mean; among the thresholds within "
              f"{AF_TIE_POINTS} of it, the middle one. Chosen: {tuning['chosen_coherence']}; "
              f"module {tuning['module_coherence']} "
              f"({'matches' if coh_match else differs}"
              f"). For information, per beat on DS1 the coherence alone separates AF beats "
              f"from the others best at {ee['threshold']} ({ee['af_beats_above']} % of "
              f"{ee['af_beats']} AF beats above, {ee['other_beats_below']} % of "
              f"{ee['other_beats']} other beats below).", "",
              "| coherence <= | DS1 Se | DS1 +P | harmonic mean |", "|---|---|---|---|"]
    for g in tuning["coherence_grid"]:
        lines.append(f"| {g['threshold'] if g['threshold'] is not None else 'not used'} | "
                     f"{_fmt(g['duration_se'])} | {_fmt(g['duration_ppv'])} | "
                     f"{g['score']:.2f} |")
    lines += ["", "All 48 records, for information only (not used for the choice):", ""]
    for label, g in tuning["all48_information_only"].items():
        lines.append(f"- {label} (irregularity {g['irregularity']}, max P fraction "
                     f"{g['max_p_fraction']}, PR tolerance {g['pr_tolerance_s']}, ectopic "
                     f"{ect(g['ectopic_classes'])}): duration Se "
                     f"{_fmt(g['duration_se'])}, +P {_fmt(g['duration_ppv'])}")
    lines += ["", "| ectopic | PR tolerance | irregularity | max P fraction | Se | +P | "
              "harmonic mean |", "|---|---|---|---|---|---|---|"]
    for g in tuning["grid"]:
        lines.append(f"| {ect(g['ectopic_classes'])} | {g['pr_tolerance_s']} | "
                     f"{g['irregularity']} | {g['max_p_fraction']} | "
                     f"{_fmt(g['duration_se'])} | {_fmt(g['duration_ppv'])} | "
                     f"{g['score']:.2f} |")
    at = afl_tuning
    chosen_afl = at["chosen"]["threshold"] if at["chosen"] else None
    lines += ["", "## Flutter threshold on DS1 (setting `ref_classes`, AF as chosen above)", "",
              "Rule: the lowest organisation threshold whose DS1 AFIB duration Se and +P stay "
              f"within {AF_TIE_POINTS} point of those without flutter detection (DS1's only "
              "flutter, in the noisy record 203, is not organised enough to be found, so DS1 "
              "can only tell how much fibrillation a threshold takes for flutter). Chosen: "
              f"{chosen_afl}; module {at['module']} "
              f"({'matches' if at['module_matches'] else differs}).", "",
              "| organisation >= | DS1 AFIB Se | DS1 AFIB +P | DS1 AFL Se | DS1 AFL +P | "
              "DS1 AFL found s |", "|---|---|---|---|---|---|"]
    for g in [at["without"], *at["grid"]]:
        lines.append(f"| {g['threshold'] if g['threshold'] is not None else 'no flutter'} | "
                     f"{_fmt(g['afib_se'])} | {_fmt(g['afib_ppv'])} | {_fmt(g['afl_se'])} | "
                     f"{_fmt(g['afl_ppv'])} | {g['afl_det_s']:.0f} |")
    vf = vf_tuning
    lines += ["", "## Ventricular flutter or fibrillation (VFL) on DS1: the VF filter", "",
              "Rule: the highest harmonic mean of DS1 VFL duration Se and +P; among those "
              f"within {AF_TIE_POINTS} of it, the lowest leakage threshold, then the longest "
              "shortest episode. DS1's ventricular flutter is all in 207 (six episodes); DS2 "
              "has none, so its VFL time is all false (held out). Chosen: "
              f"{vf['chosen']}; module ({'matches' if vf['module_matches'] else differs})."
              "", "", "| leakage <= | shortest s | DS1 episodes found / ref, det | DS1 "
              "duration Se / +P | DS2 false s | all 48 duration Se / +P | records with a "
              "false episode |", "|---|---|---|---|---|---|---|"]
    for g in vf["grid"]:
        d1, a48 = g["ds1"], g["all"]
        lines.append(f"| {g['max_leakage']} | {g['min_duration_s']:g} | {d1['ref_found']:.0f}"
                     f" / {d1['ref_n']:.0f}, {d1['det_n']:.0f} | {_fmt(d1['duration_se'])} / "
                     f"{_fmt(d1['duration_ppv'])} | {g['ds2_false_s']:.0f} | "
                     f"{_fmt(a48['duration_se'])} / {_fmt(a48['duration_ppv'])} | "
                     f"{', '.join(g['false_records']) or 'none'} |")
    vt = vt_tuning
    lines += ["", f"## VT rule on DS1 (setting `{vt['setting']}`, VT episodes)", "",
              "Rule: highest DS1 episode Se, then highest DS1 episode +P, then fewest options "
              "on, then the strictest search; first the options (every combination), then "
              f"the missed-beat search settings. Chosen: {vt['chosen']}; module "
              f"({'matches' if vt['module_matches'] else differs + ': ' + str(vt['module'])})."
              " Options: `VT_RATE_FROM_COUPLING` (run rate also from the median of the "
              "intervals ending at its beats, coupling interval included), "
              "`VT_FUSION_IN_RUN` (F beats next to V count), `VT_AMBIGUOUS_IN_RUN` (one "
              "S/F/Q beat between two fast V beats counts), `VT_RECOVER_MISSED` (beats the "
              "detector skipped inside fast runs are looked for in the signal), "
              "`VT_RELABEL_AFTER_MISSED` (the beat after a recovered one, called N, counts "
              "as V when unlike the record's normal QRS).", "",
              "Each option switched on or off alone from the choice (found / reference "
              "episodes, detected episodes; all 48 records for information only):", "",
              "| option | on | " + " | ".join(k for k in vt["ablation"][0]
                                              if k not in ("flag", "on")) + " |",
              "|---|---|" + "---|" * (len(vt["ablation"][0]) - 2)]
    for a in vt["ablation"]:
        cells = " | ".join(f"{v['found']}/{v['ref_n']} ({_fmt(v['episode_se'])}), "
                           f"+P {_fmt(v['episode_ppv'])} of {v['det_n']}"
                           for k, v in a.items() if k not in ("flag", "on"))
        lines.append(f"| {a['flag']} | {'on' if a['on'] else 'off'} | {cells} |")
    lines += ["", "Missed-beat search settings on DS1 (with the options chosen):", "",
              "| gap ratio | min corr | min slope | DS1 found | DS1 Se | DS1 +P |",
              "|---|---|---|---|---|---|"]
    for g in vt["params_grid"]:
        p_ = g["params"]
        lines.append(f"| {p_['VT_GAP_RATIO']} | {p_['VT_MISSED_MIN_CORR']} | "
                     f"{p_['VT_MISSED_MIN_SLOPE']} | {g['ds1']['found']}/{g['ds1']['ref_n']} | "
                     f"{_fmt(g['ds1']['episode_se'])} | {_fmt(g['ds1']['episode_ppv'])} |")
    lines += ["", "QRS width a VT run needs (`VT_MIN_QRS_S`, the median delineated QRS "
              "duration of its V beats; 0: none), with the options and search chosen above. "
              "Rule: highest DS1 episode Se, then +P, then the least condition. DS2 and all "
              "48 records for information only:", "",
              "| least QRS (s) | DS1 found | DS1 Se | DS1 +P (of) | DS2 Se | DS2 +P (of) "
              "| all Se | all +P (of) |", "|---|---|---|---|---|---|---|---|"]
    for g in vt["width_grid"]:
        lines.append(
            f"| {g['VT_MIN_QRS_S']:g} | {g['ds1']['found']}/{g['ds1']['ref_n']} | "
            + " | ".join(f"{_fmt(g[k]['episode_se'])} | {_fmt(g[k]['episode_ppv'])} "
                         f"({g[k]['det_n']})" for k in ("ds1", "ds2", "all")) + " |")
    lines.append("")
    write_results("rhythm", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
