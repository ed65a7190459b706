"""The analysis pipeline: one recording in, one plain :class:`Analysis` out.

Every consumer (``ecg analyze``, the dashboard, training's end-to-end evaluation, the live
page) calls :func:`analyze`, so there is exactly one filter chain, one detector, one
delineator and one inference path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgcore.beats import AAMI_CLASSES
from ecgcore.errors import SignalError
from ecgcore.recording import Recording
from ecgcore.signal import (
    INTERNAL_FS,
    check_rate,
    ecg_condition,
    ecg_resample,
    fill_gaps,
    to_input_index,
    to_internal_index,
)

MIN_DURATION_S = 2.0
"""Shortest recording analysed: a beat and its neighbours need about two seconds."""
MAX_MISSING_FRACTION = 0.5
HEART_RATE_SMOOTHING_BEATS = 5
VF_NOT_SOUGHT_WARNING = "ventricular flutter or fibrillation is not looked for"
"""How the warning of an analysis at a rate that folds mains hum into the band of
ventricular flutter begins (:func:`ecgcore.rhythm.mains_folds_into_vf_band`)."""
UPSIDE_DOWN_WARNING = (
    "this lead looks recorded upside down (its QRS complexes and T waves point down, as "
    "with swapped electrodes): the classifiers read it turned over; the waveform is shown "
    "as recorded"
)
BINARY_THRESHOLD = 0.5
"""The binary network's own label: abnormal when its probability reaches this."""
BINARY_SERVED_THRESHOLD = 0.9
"""The served binary label (:func:`served_binary_labels`): abnormal when the binary
network's probability reaches this or the served five-class label is not N. Chosen by
patient-wise cross-validation inside DS1 (``python -m training.experiments --binary-grid``:
the highest abnormal sensitivity at a mean specificity of at least 95 %)."""
BINARY_RULE_NOTE = ("abnormal when the binary network's p(abnormal) >= 0.9 or the five-class "
                    "label is not N")
"""What the per-beat binary ``rule`` field says when the served label is not the network's."""
NO_S_RHYTHMS = ("AFIB", "AFL")
"""Rhythms during which no beat is supraventricular premature (S).

MIT-BIH labels no beat S during atrial fibrillation or flutter: a premature atrial beat
cannot be defined without organised atrial activity, and the irregular ventricular
response is the rhythm itself, its beats N. (MIT-BIH has a few exceptions: 43 beats of
DS1 and DS2 labelled ``a``, aberrated atrial premature, inside its AF/AFL episodes; ``ecg
evaluate`` counts them.)"""
RHYTHM_RULE_NOTE = "S -> N: no premature atrial beat during AFIB/AFL"
"""What the per-beat ``rule`` field of :meth:`Analysis.to_dict` says when the rule applied."""
V_NORMAL_QRS_CORRELATION = 0.96
"""A beat the five-class network calls V keeps that label only while its QRS correlates
less than this with the neighbouring beats called N (:func:`morphology_rule_mask`)."""
S_NORMAL_QRS_CORRELATION = 0.92
"""A beat the five-class network calls S keeps that label only while its QRS correlates
this much or more with the neighbouring beats called N (:func:`morphology_rule_mask`).
Both thresholds are chosen by patient-wise cross-validation inside DS1 (``python -m
training.experiments --morphology-grid``); ``None`` switches a part off."""
MORPHOLOGY_RULE_CLASSES = ("N", "S", "F", "Q")
"""The classes a V call overruled by the morphology rule may take (its most probable);
an overruled S call becomes V."""
MORPHOLOGY_RULE_NOTE = ("QRS shape: V -> next most probable class where it is shaped like the "
                        "neighbouring N beats', S -> V where it is not")
"""What the per-beat ``rule`` field says when the morphology rule applied."""
RHYTHM_LABELS = "morphology"
"""Which five-class labels the rhythm is found from: ``"network"`` (the network's own,
:attr:`Analysis.aami_network_labels`) or ``"morphology"`` (after the morphology rule,
:attr:`Analysis.aami_beat_labels`). Chosen on DS1 with out-of-fold classes
(``bench/rhythm.py``, setting ``cnn_cv``)."""


def rhythm_input_labels(
    network_labels: np.ndarray | None, checked_labels: np.ndarray | None
) -> np.ndarray | None:
    """The five-class labels the rhythm is found from (:data:`RHYTHM_LABELS`).

    Parameters
    ----------
    network_labels : np.ndarray
        ``(n,)`` the network's own labels.
    checked_labels : np.ndarray
        ``(n,)`` the labels after the morphology rule (:func:`morphology_checked_labels`).
        Both None without the classifiers: the rhythm is then found without classes.
    """
    return checked_labels if RHYTHM_LABELS == "morphology" else network_labels


def in_rhythm(
    positions: np.ndarray, rhythm: list[dict[str, Any]], labels: tuple[str, ...] = NO_S_RHYTHMS
) -> np.ndarray:
    """Which positions lie inside an episode whose label is one of ``labels``.

    ``start <= position < end``, the episodes' own convention (an episode runs from its
    first beat's R peak to the next beat after its last); positions and episodes in the
    same sample numbers.
    """
    positions = np.asarray(positions)
    inside = np.zeros(positions.shape, dtype=bool)
    for episode in rhythm:
        if episode["label"] in labels:
            inside |= (positions >= int(episode["start"])) & (positions < int(episode["end"]))
    return inside


def rhythm_rule_mask(
    rpeaks: np.ndarray, network_labels: np.ndarray, rhythm: list[dict[str, Any]]
) -> np.ndarray:
    """Beats whose five-class label S is overruled to N by the detected rhythm.

    A beat is overruled when the network called it S and its R peak lies inside an
    episode of :data:`NO_S_RHYTHMS` (``start <= r < end``, the episodes' own convention:
    an episode runs from its first beat's R peak to the next beat after its last).

    Parameters
    ----------
    rpeaks : np.ndarray
        R-peak positions, in the same sample numbers as the episodes.
    network_labels : np.ndarray
        The five-class network's label per beat (``"N"`` ... ``"Q"``).
    rhythm : list of dict
        Episodes ``{"label", "start", "end"}`` (:func:`ecgcore.rhythm.ecg_rhythm`).

    Returns
    -------
    np.ndarray of bool
        One flag per beat; no parameter is tuned, the rule is the labelling convention.
    """
    r = np.asarray(rpeaks, dtype=np.int64).ravel()
    labels = np.asarray(network_labels).astype(str).ravel()
    if labels.size != r.size:
        raise ValueError(f"{labels.size} beat labels for {r.size} beats")
    return in_rhythm(r, rhythm) & (labels == "S")


def served_binary_labels(
    p_abnormal: np.ndarray, aami_labels: np.ndarray, rhythm_rule: np.ndarray | None = None
) -> np.ndarray:
    """The served binary label of each beat: both networks' word on it.

    Abnormal when the binary network is confident (p(abnormal) >=
    :data:`BINARY_SERVED_THRESHOLD`) or the served five-class label is not N; normal
    otherwise. A beat the rhythm rule relabelled (five-class S inside AF/AFL) is normal:
    the only abnormality claimed there was supraventricular prematurity, which AF leaves
    undefined.

    Parameters
    ----------
    p_abnormal : np.ndarray
        ``(n,)`` the binary network's probabilities.
    aami_labels : np.ndarray
        ``(n,)`` served five-class labels (after the rules).
    rhythm_rule : np.ndarray or None
        ``(n,)`` bool, :func:`rhythm_rule_mask`.

    Returns
    -------
    np.ndarray
        ``"normal"`` / ``"abnormal"`` per beat.
    """
    p = np.asarray(p_abnormal, dtype=np.float64).ravel()
    five = np.asarray(aami_labels).astype(str).ravel()
    if five.size != p.size:
        raise ValueError(f"{five.size} five-class labels for {p.size} beats")
    confident = p >= BINARY_SERVED_THRESHOLD
    if rhythm_rule is not None:
        confident &= ~np.asarray(rhythm_rule, dtype=bool)
    return np.where(confident | (five != "N"), "abnormal", "normal")


def morphology_rule_mask(
    aami_probs: np.ndarray,
    normal_qrs_correlation: np.ndarray,
    v_threshold: float | None = V_NORMAL_QRS_CORRELATION,
    s_threshold: float | None = S_NORMAL_QRS_CORRELATION,
) -> np.ndarray:
    """Beats whose five-class label V or S is overruled by their QRS shape.

    A ventricular beat is not conducted through the bundle branches, so its QRS differs
    from the patient's conducted beats; a supraventricular one is conducted, so its QRS
    is theirs. The reference is the median QRS of the neighbouring beats the network
    calls N (:func:`ecgcore.beats.normal_qrs_correlation`). A V call whose QRS correlates
    with it at ``v_threshold`` or more, and an S call whose QRS correlates less than
    ``s_threshold``, are overruled (:func:`overruled_labels`). The network sees the same
    waveform but judges it against the whole record's median beat and the rhythm; the
    local reference catches its V calls on conducted beats in irregular rhythms and its S
    calls on premature ventricular beats.

    Parameters
    ----------
    aami_probs : np.ndarray
        ``(n, 5)`` five-class probabilities.
    normal_qrs_correlation : np.ndarray
        ``(n,)``; NaN (too few beats called N) never overrules.
    v_threshold, s_threshold : float or None
        :data:`V_NORMAL_QRS_CORRELATION` and :data:`S_NORMAL_QRS_CORRELATION` unless
        testing others; None leaves that class alone.

    Returns
    -------
    np.ndarray of bool
    """
    probs = np.asarray(aami_probs)
    corr = np.asarray(normal_qrs_correlation, dtype=np.float64).ravel()
    if corr.size != probs.shape[0]:
        raise ValueError(f"{corr.size} correlations for {probs.shape[0]} beats")
    mask = np.zeros(corr.size, dtype=bool)
    if corr.size == 0:
        return mask
    network = np.argmax(probs, axis=1)
    known = np.isfinite(corr)
    safe = np.where(known, corr, 0.0)
    if v_threshold is not None:
        mask |= known & (network == AAMI_CLASSES.index("V")) & (safe >= v_threshold)
    if s_threshold is not None:
        mask |= known & (network == AAMI_CLASSES.index("S")) & (safe < s_threshold)
    return mask


def overruled_labels(
    aami_probs: np.ndarray, overruled: np.ndarray, to: tuple[str, ...] | None = None
) -> np.ndarray:
    """The five-class labels with the ``overruled`` beats' V or S replaced.

    An overruled V takes its most probable class among ``to``
    (:data:`MORPHOLOGY_RULE_CLASSES` unless testing others); an overruled S becomes V.
    """
    to = MORPHOLOGY_RULE_CLASSES if to is None else to
    probs = np.array(aami_probs, dtype=np.float64)
    if probs.shape[0] == 0:
        return np.zeros(0, dtype="<U1")
    labels = np.asarray(AAMI_CLASSES)[np.argmax(probs, axis=1)]
    overruled = np.asarray(overruled, dtype=bool)
    rows = np.flatnonzero(overruled & (labels == "V"))
    allowed = [AAMI_CLASSES.index(c) for c in to]
    best = np.argmax(probs[np.ix_(rows, allowed)], axis=1) if rows.size else rows
    s_rows = np.flatnonzero(overruled & (labels == "S"))
    labels[rows] = np.asarray(to)[best]
    labels[s_rows] = "V"
    return labels


def morphology_checked_labels(
    waveforms: np.ndarray, aami_probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The five-class labels after the morphology rule, and that rule's input.

    Parameters
    ----------
    waveforms : np.ndarray
        The beats' windows (:attr:`ecgcore.beats.BeatInputs.waveforms`), all beats of the
        recording in order: each beat is compared with its neighbours.
    aami_probs : np.ndarray
        ``(n, 5)`` five-class probabilities of those beats.

    Returns
    -------
    (labels, normal_qrs_correlation)
        ``(n,)`` labels ``"N"`` ... ``"Q"`` (:func:`overruled_labels` of
        :func:`morphology_rule_mask`) and ``(n,)`` correlations
        (:func:`ecgcore.beats.normal_qrs_correlation` with the beats the network calls N).
    """
    from ecgcore.beats import normal_qrs_correlation

    probs = np.asarray(aami_probs)
    network = np.argmax(probs, axis=1) if probs.shape[0] else np.zeros(0, dtype=np.int64)
    corr = normal_qrs_correlation(waveforms, network == AAMI_CLASSES.index("N"))
    return overruled_labels(probs, morphology_rule_mask(probs, corr)), corr


@dataclass
class Analysis:
    """Everything ecgcore found in one lead of one recording.

    All sample indices are the input's own sample numbers. Arrays are per beat.

    Attributes
    ----------
    source, fs, n_samples, leads, lead_used
        What was analysed.
    rpeaks : np.ndarray
        R-peak positions (int64).
    points : dict of str to np.ndarray
        Delineation (``p_onset`` ... ``t_offset``), float with NaN where a wave is absent.
    binary_p_abnormal : np.ndarray or None
        The binary model's probability that each beat is abnormal (the network's output,
        never changed by the rhythm rule; see :attr:`binary_labels`).
    aami_probs : np.ndarray or None
        ``(n_beats, 5)`` probabilities of N, S, V, F, Q (the network's output, never
        changed by the rules; see :attr:`aami_labels`).
    normal_qrs_correlation : np.ndarray or None
        Per beat, :func:`ecgcore.beats.normal_qrs_correlation` with the beats the
        five-class network calls N (the morphology rule's input).
    rhythm : list of dict
        Episodes ``{"label", "start", "end"}``.
    rhythm_summary : dict
        AF burden, episode counts and durations per rhythm (:func:`ecgcore.rhythm.rhythm_summary`).
    hrv : dict
        Heart-rate variability of the NN intervals (:func:`ecgcore.hrv.hrv_summary`).
    timing_s : dict
        Seconds spent per stage.
    warnings : list of str
        What the user should know (gaps interpolated, no beats found...).
    """

    source: str
    fs: float
    n_samples: int
    leads: list[str]
    lead_used: str
    rpeaks: np.ndarray
    points: dict[str, np.ndarray]
    binary_p_abnormal: np.ndarray | None = None
    aami_probs: np.ndarray | None = None
    normal_qrs_correlation: np.ndarray | None = None
    rhythm: list[dict[str, Any]] = field(default_factory=list)
    rhythm_summary: dict[str, Any] = field(default_factory=dict)
    hrv: dict[str, Any] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_beats(self) -> int:
        """Number of detected beats."""
        return int(self.rpeaks.size)

    @property
    def aami_network_labels(self) -> np.ndarray | None:
        """The five-class network's own label of each beat (its most probable class)."""
        if self.aami_probs is None:
            return None
        return np.asarray(AAMI_CLASSES)[np.argmax(self.aami_probs, axis=1)]

    @property
    def morphology_rule(self) -> np.ndarray | None:
        """Beats whose V or S label was overruled by their QRS shape
        (:func:`morphology_rule_mask`)."""
        if self.aami_probs is None:
            return None
        if self.normal_qrs_correlation is None:
            return np.zeros(self.n_beats, dtype=bool)
        return morphology_rule_mask(self.aami_probs, self.normal_qrs_correlation)

    @property
    def aami_beat_labels(self) -> np.ndarray | None:
        """The five-class labels after the morphology rule, before the rhythm rule."""
        if self.aami_probs is None:
            return None
        return overruled_labels(self.aami_probs, self.morphology_rule)

    @property
    def rhythm_input_labels(self) -> np.ndarray | None:
        """The five-class labels the rhythm was found from (:func:`rhythm_input_labels`)."""
        return rhythm_input_labels(self.aami_network_labels, self.aami_beat_labels)

    @property
    def rhythm_rule(self) -> np.ndarray | None:
        """Beats whose labels were set by the rhythm rule (:func:`rhythm_rule_mask`).

        Derived from the rhythm episodes (found from :attr:`rhythm_input_labels`), the R
        peaks and :attr:`aami_beat_labels`, so an analysis read back from the cache carries
        the same rule without storing it.
        """
        labels = self.aami_beat_labels
        if labels is None:
            return None
        return rhythm_rule_mask(self.rpeaks, labels, self.rhythm)

    @property
    def aami_labels(self) -> np.ndarray | None:
        """The served five-class label of each beat, or None without the model.

        The network's label, except V -> its next most probable class where the QRS is
        shaped like the neighbouring N beats' and S -> V where it is not
        (:func:`morphology_rule_mask`), then S -> N
        inside atrial fibrillation or flutter (:func:`rhythm_rule_mask`);
        :attr:`aami_probs` keeps what the network said.
        """
        labels = self.aami_beat_labels
        if labels is None:
            return None
        return np.where(self.rhythm_rule, "N", labels)

    @property
    def binary_network_labels(self) -> np.ndarray | None:
        """The binary network's own label per beat (``"normal"`` / ``"abnormal"``)."""
        if self.binary_p_abnormal is None:
            return None
        return np.where(np.asarray(self.binary_p_abnormal) >= BINARY_THRESHOLD,
                        "abnormal", "normal")

    @property
    def binary_labels(self) -> np.ndarray | None:
        """The served binary label per beat (:func:`served_binary_labels`).

        Abnormal when the binary network is confident or the served five-class label is
        not N; :attr:`binary_p_abnormal` keeps what the network said. Without the
        five-class model, the network's own label.
        """
        labels = self.binary_network_labels
        if labels is None:
            return None
        five = self.aami_labels
        if five is None:
            return labels
        return served_binary_labels(self.binary_p_abnormal, five, self.rhythm_rule)

    def heart_rate_bpm(self) -> dict[str, float | None]:
        """Mean, minimum and maximum heart rate.

        The mean comes from the mean RR interval; minimum and maximum from a running median
        over a few beats, so one missed or extra beat does not give an absurd extreme.
        """
        if self.rpeaks.size < 2:
            return {"mean": None, "min": None, "max": None}
        rr = np.diff(self.rpeaks) / self.fs
        rate = 60.0 / rr
        if rate.size >= HEART_RATE_SMOOTHING_BEATS:
            from scipy.ndimage import median_filter

            rate = median_filter(rate, size=HEART_RATE_SMOOTHING_BEATS, mode="nearest")
        return {
            "mean": round(float(60.0 / rr.mean()), 2),
            "min": round(float(rate.min()), 2),
            "max": round(float(rate.max()), 2),
        }

    def heart_rate_trend(self) -> dict[str, np.ndarray]:
        """Smoothed heart rate over the recording (:func:`ecgcore.rhythm.heart_rate_trend`)."""
        from ecgcore.rhythm import heart_rate_trend

        return heart_rate_trend(self.rpeaks, self.fs)

    def beats_frame(self, reference: np.ndarray | None = None) -> Any:
        """One row per beat, for a spreadsheet or a CSV file.

        Parameters
        ----------
        reference : np.ndarray or None
            A reference class per beat (e.g. the annotation matched to each detected beat,
            ``""`` where none), added as the ``reference`` column.

        Returns
        -------
        pandas.DataFrame
            ``beat``, ``time_s``, ``r_peak`` and the delineation points (the input's own
            sample numbers, empty where a wave is absent), ``rr_s`` (the interval ending at
            the beat), then, with the models, the served labels (``aami``, ``binary``), what
            the networks said (``aami_network``, ``binary_network``, ``p_N`` ... ``p_Q``,
            ``p_abnormal``) and which rule changed a served label (``aami_rule``,
            ``binary_rule``): the same content as :meth:`to_dict`'s beats, flat.
        """
        import pandas as pd

        n = self.n_beats
        rr = np.full(n, np.nan)
        if n >= 2:
            rr[1:] = np.diff(self.rpeaks) / self.fs
        columns: dict[str, Any] = {
            "beat": np.arange(n),
            "time_s": np.round(self.rpeaks / self.fs, 4),
            "r_peak": self.rpeaks.astype(np.int64),
            "rr_s": np.round(rr, 4),
        }
        for name, values in self.points.items():
            columns[name] = pd.array(np.asarray(values, dtype=np.float64),
                                     dtype="Float64").round().astype("Int64")
        if self.aami_probs is not None:
            columns["aami"] = self.aami_labels
            columns["aami_network"] = self.aami_network_labels
            columns["aami_rule"] = self._aami_rule_notes()
            for k, c in enumerate(AAMI_CLASSES):
                columns[f"p_{c}"] = np.round(self.aami_probs[:, k].astype(np.float64), 5)
        if self.binary_p_abnormal is not None:
            served, network = self.binary_labels, self.binary_network_labels
            columns["binary"] = served
            columns["binary_network"] = network
            columns["binary_rule"] = np.where(served != network, self._binary_rule_notes(), "")
            columns["p_abnormal"] = np.round(
                np.asarray(self.binary_p_abnormal, dtype=np.float64), 5)
        if reference is not None:
            reference = np.asarray(reference).astype(str)
            if reference.size != n:
                raise ValueError(f"{reference.size} reference classes for {n} beats")
            columns["reference"] = reference
        return pd.DataFrame(columns)

    def rhythm_frame(self) -> Any:
        """The rhythm episodes as a table.

        Returns
        -------
        pandas.DataFrame
            ``label`` (the rhythm code), ``name`` (its plain name), ``start`` and ``end``
            (the input's own sample numbers, ``end`` exclusive), ``start_s``, ``end_s`` and
            ``duration_s``; sorted by start.
        """
        import pandas as pd

        from ecgcore.rhythm import rhythm_name

        rows = [{
            "label": e["label"],
            "name": rhythm_name(e["label"]),
            "start": int(e["start"]),
            "end": int(e["end"]),
            "start_s": round(e["start"] / self.fs, 3),
            "end_s": round(e["end"] / self.fs, 3),
            "duration_s": round((e["end"] - e["start"]) / self.fs, 3),
        } for e in self.rhythm]
        columns = ["label", "name", "start", "end", "start_s", "end_s", "duration_s"]
        return pd.DataFrame(rows, columns=columns)

    def _aami_rule_notes(self) -> np.ndarray:
        """Per beat, the rules that changed its served five-class label (``""``: none)."""
        notes = np.full(self.n_beats, "", dtype=object)
        if self.aami_probs is None:
            return notes
        for note, applied in ((MORPHOLOGY_RULE_NOTE, self.morphology_rule),
                              (RHYTHM_RULE_NOTE, self.rhythm_rule)):
            for i in np.flatnonzero(applied):
                notes[i] = f"{notes[i]}; {note}" if notes[i] else note
        return notes

    def _binary_rule_notes(self) -> np.ndarray:
        """Per beat, why its served binary label may differ from the binary network's."""
        rule = self.rhythm_rule
        if rule is None:
            rule = np.zeros(self.n_beats, dtype=bool)
        return np.where(rule, RHYTHM_RULE_NOTE, BINARY_RULE_NOTE)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written by ``ecg analyze``."""

        def index(value: float) -> int | None:
            return None if not np.isfinite(value) else int(value)

        beats = []
        labels, network = self.aami_labels, self.aami_network_labels
        binary, binary_network = self.binary_labels, self.binary_network_labels
        aami_notes, binary_notes = self._aami_rule_notes(), self._binary_rule_notes()
        for i in range(self.n_beats):
            beat: dict[str, Any] = {"r_peak": int(self.rpeaks[i])}
            for name, values in self.points.items():
                beat[name] = index(values[i])
            # "label" is what is served; "network_label" and the probabilities are what
            # the network said; "rule" names the rule that changed the label, if any.
            why_aami = aami_notes[i] or None
            if self.binary_p_abnormal is not None and binary is not None:
                beat["binary"] = {
                    "label": str(binary[i]),
                    "network_label": str(binary_network[i]),
                    "rule": binary_notes[i] if binary[i] != binary_network[i] else None,
                    "p_abnormal": round(float(self.binary_p_abnormal[i]), 5),
                }
            else:
                beat["binary"] = None
            if self.aami_probs is not None and labels is not None:
                beat["aami"] = {
                    "label": str(labels[i]),
                    "network_label": str(network[i]),
                    "rule": why_aami,
                    "probs": {
                        c: round(float(p), 5)
                        for c, p in zip(AAMI_CLASSES, self.aami_probs[i], strict=True)
                    },
                }
            else:
                beat["aami"] = None
            beats.append(beat)
        return {
            "source": self.source,
            "fs": self.fs,
            "n_samples": self.n_samples,
            "leads": list(self.leads),
            "lead_used": self.lead_used,
            "beats": beats,
            "rhythm": list(self.rhythm),
            "rhythm_summary": self.rhythm_summary,
            "hrv": self.hrv,
            "heart_rate_bpm": self.heart_rate_bpm(),
            "timing_s": {k: round(v, 4) for k, v in self.timing_s.items()},
            "warnings": list(self.warnings),
        }


def prepare_lead(recording: Recording, lead: str | int | None = None) -> tuple[np.ndarray, int]:
    """Check a lead and return it conditioned at :data:`INTERNAL_FS`, with its index.

    Raises
    ------
    SignalError
        When the rate is absurd, the recording too short, mostly missing or flat.
    """
    check_rate(recording.fs)
    index = recording.lead_index(lead)
    raw = np.asarray(recording.signal[:, index], dtype=np.float64)
    duration = raw.size / recording.fs
    if duration < MIN_DURATION_S:
        raise SignalError(
            f"the recording is too short to analyse: {raw.size} sample(s), {duration:.2f} s "
            f"at {recording.fs:g} Hz (at least {MIN_DURATION_S:g} s is needed)"
        )
    missing_fraction = float(np.mean(~np.isfinite(raw)))
    if missing_fraction > MAX_MISSING_FRACTION:
        raise SignalError(
            f"{missing_fraction:.0%} of the samples of lead {recording.leads[index]} are "
            "missing (empty, NaN or infinite): too few to analyse"
        )
    filled, _ = fill_gaps(raw)
    if np.ptp(filled) <= 1e-12 * max(1.0, float(np.abs(filled).max())):
        raise SignalError(
            f"lead {recording.leads[index]} is a flat line (every sample is "
            f"{filled[0]:g}): there is no ECG to analyse"
        )
    x = ecg_resample(filled, recording.fs, INTERNAL_FS)
    return ecg_condition(x, INTERNAL_FS), index


def analysis_beat_inputs(recording: Recording, analysis: Analysis) -> Any:
    """The classifiers' inputs for every beat of an analysis, as :func:`analyze` built them.

    From the same conditioned lead at the internal rate and the same R peaks (mapped back
    to that rate; each window is aligned on its R peak), so that an explanation
    (:func:`ecgcore.explain.explain_beat`) explains what was classified; row ``i`` is beat
    ``i`` of ``analysis``.

    Parameters
    ----------
    recording : Recording
        The recording that was analysed.
    analysis : Analysis
        Its analysis (:func:`analyze`).

    Returns
    -------
    ecgcore.beats.BeatInputs
    """
    from ecgcore.beats import beat_inputs

    x360, _ = prepare_lead(recording, analysis.lead_used)
    rpeaks360 = np.asarray(to_internal_index(np.asarray(analysis.rpeaks), recording.fs),
                           dtype=np.int64)
    return beat_inputs(x360, rpeaks360, INTERNAL_FS)


ANALYSIS_STAGES = {
    "condition": "filtering the signal",
    "detect": "detecting the beats",
    "delineate": "finding the P, QRS and T waves",
    "classify": "classifying the beats",
    "rhythm": "finding the rhythm episodes",
}
"""The stages of :func:`analyze`, in order, and what each does in words: the keys of
:attr:`Analysis.timing_s` and what its ``progress`` callback is given."""


def describe_stage(stage: str) -> str:
    """Where a stage of :func:`analyze` stands, in words: ``"step 2 of 5: detecting the
    beats"``, for a viewer of its ``progress``."""
    steps = list(ANALYSIS_STAGES)
    return f"step {steps.index(stage) + 1} of {len(steps)}: {ANALYSIS_STAGES[stage]}"


def analyze(
    recording: Recording,
    lead: str | int | None = None,
    *,
    classify: bool = True,
    classifiers: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    """Condition, detect, delineate and classify one lead of a recording.

    Parameters
    ----------
    recording : Recording
        From :func:`ecgcore.io.read` or any other source.
    lead : str, int or None
        Lead name or index; by default lead II where the recording has it
        (:func:`ecgcore.recording.preferred_lead`), else the first.
    classify : bool
        Run the two beat classifiers (loads the packaged models once per process).
    classifiers : optional
        Preloaded classifiers (:func:`ecgcore.inference.load_classifiers`), to use
        other weights.
    progress : callable or None
        Called with each stage's name (:data:`ANALYSIS_STAGES`) as the stage starts: a
        24-hour recording takes about a minute, and a viewer may say where it is.

    Returns
    -------
    Analysis
        Indices in the input's own sample numbers. Its served labels
        (:attr:`Analysis.aami_labels`, :attr:`Analysis.binary_labels`) apply the rhythm
        rule of :func:`rhythm_rule_mask` to the networks' outputs, which it keeps as they
        are (:attr:`Analysis.aami_probs`, :attr:`Analysis.binary_p_abnormal`).
    """
    from ecgcore.delineate import ecg_delineate
    from ecgcore.detect import ecg_rpeaks

    timing: dict[str, float] = {}

    def stage(name: str) -> float:
        if progress is not None:
            progress(name)
        return time.perf_counter()

    # What the reader did to the file (samples regridded, leads-off marks) comes first.
    warnings: list[str] = [str(note) for note in recording.meta.get("notes", [])]
    start = stage("condition")
    x360, index = prepare_lead(recording, lead)
    raw_missing = ~np.isfinite(recording.signal[:, index])
    n_missing = int(raw_missing.sum())
    if n_missing:
        warnings.append(
            f"{n_missing} missing sample(s) were interpolated; beats there are unreliable"
        )
    timing["condition"] = time.perf_counter() - start

    start = stage("detect")
    rpeaks360 = ecg_rpeaks(x360, INTERNAL_FS)
    timing["detect"] = time.perf_counter() - start
    if rpeaks360.size == 0:
        warnings.append("no heartbeat was found in this lead")

    start = stage("delineate")
    points360 = ecg_delineate(x360, rpeaks360, INTERNAL_FS)
    timing["delineate"] = time.perf_counter() - start

    binary = aami = qrs_corr = network360 = checked360 = None
    start = stage("classify")
    if classify and rpeaks360.size:
        from ecgcore.beats import beat_inputs
        from ecgcore.inference import classify_beats, load_classifiers

        models = classifiers if classifiers is not None else load_classifiers()
        inputs = beat_inputs(x360, rpeaks360, INTERNAL_FS)
        if inputs.turned_over:
            warnings.append(UPSIDE_DOWN_WARNING)
        result = classify_beats(models, inputs)
        binary = result["binary_p_abnormal"]
        aami = result["aami_probs"]
        network360 = result["aami"]
        checked360, qrs_corr = morphology_checked_labels(inputs.waveforms, aami)
    timing["classify"] = time.perf_counter() - start

    start = stage("rhythm")
    from ecgcore.hrv import hrv_summary
    from ecgcore.rhythm import ecg_rhythm, mains_folds_into_vf_band, rhythm_summary

    look_for_vf = not mains_folds_into_vf_band(recording.fs)
    if not look_for_vf:
        warnings.append(
            f"{VF_NOT_SOUGHT_WARNING}: at {recording.fs:g} Hz, mains hum picked up by a "
            "device without an anti-alias filter would look just like it"
        )
    missing360 = None
    if raw_missing.any():
        nearest = np.round(np.arange(x360.size) * recording.fs / INTERNAL_FS).astype(np.int64)
        missing360 = raw_missing[np.clip(nearest, 0, raw_missing.size - 1)]
    episodes360 = ecg_rhythm(
        x360,
        rpeaks360,
        INTERNAL_FS,
        beat_classes=rhythm_input_labels(network360, checked360),
        p_peaks=points360["p_peak"],
        missing=missing360,
        look_for_vf=look_for_vf,
    )
    # The rhythm is found from the labels its settings were chosen with (RHYTHM_LABELS).
    # The rhythm rule then turns S into N inside
    # AF/AFL (the Analysis properties apply it). It is applied once and never fed back:
    # feeding the relabelled beats to ecg_rhythm again would put them into the
    # irregularity series and could grow the episodes that relabelled them.
    # Durations and percentages do not depend on the rate, so the summary is made at 360 Hz.
    summary = rhythm_summary(episodes360, x360.size, INTERNAL_FS)
    # HRV is about sinus rhythm: AF, flutter (atrial or ventricular) and unreadable
    # stretches are left out.
    skip = [(e["start"], e["end"]) for e in episodes360
            if e["label"] in ("AFIB", "AFL", "VFL", "NOISE")]
    # NN intervals are between beats served N (the rhythm rule aside: it acts in AF only,
    # which HRV leaves out).
    hrv = hrv_summary(rpeaks360, INTERNAL_FS, beat_classes=checked360, exclude=skip)
    timing["rhythm"] = time.perf_counter() - start

    fs = recording.fs
    rhythm = [
        {
            "label": e["label"],
            "start": int(to_input_index(e["start"], fs)),
            "end": int(min(to_input_index(e["end"], fs), recording.n_samples - 1)),
        }
        for e in episodes360
    ]
    rpeaks = to_input_index(rpeaks360, fs).astype(np.int64)
    points = {name: to_input_index(values, fs) for name, values in points360.items()}
    return Analysis(
        source=recording.source,
        fs=fs,
        n_samples=recording.n_samples,
        leads=list(recording.leads),
        lead_used=recording.leads[index],
        rpeaks=rpeaks,
        points=points,
        binary_p_abnormal=binary,
        aami_probs=aami,
        normal_qrs_correlation=qrs_corr,
        rhythm=rhythm,
        rhythm_summary=summary,
        hrv=hrv,
        timing_s=timing,
        warnings=warnings,
    )
