"""From a record id to everything the record view draws, prepared once and kept in memory.

A record id is a catalogue name (``208``) or an upload (``upload-<token>``), the latter
resolved only within the browser session that uploaded it. Preparation calls ecgcore
(read, the cached analysis, beat matching) and arranges its results as per-beat arrays;
it computes no ECG processing of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from dashboard.state import MemoryStore, SessionStore
from ecgcore.beats import AAMI_CLASSES
from ecgcore.errors import EcgError, ModelError
from ecgcore.recording import Recording

UPLOAD_PREFIX = "upload-"
_log = logging.getLogger(__name__)


class NotAvailableError(EcgError):
    """A part of the workbench this page needs is not installed or not built yet."""


@dataclass
class PreparedRecord:
    """One record ready to draw.

    Attributes
    ----------
    record_id, title
        The id in the URL and a human title.
    recording : Recording
    analysis : Analysis or None
        None when the analysis could not run (``analysis_error`` says why).
    beats : dict of str to np.ndarray
        Per detected beat: ``sample``, ``time_s``, ``rr_s``, ``hr_bpm``, ``aami``,
        ``aami_p`` (n, 5), ``binary`` (``"abnormal"``/``"normal"``/""), ``binary_p``,
        ``ref`` (matched reference class or ""), ``abnormal``, ``disagree``, ``rule``
        (bool; ``rule``: the labels were set by the rhythm rule, the network said S).
    rhythm : list of dict
        Rhythm episodes ``{"label", "start", "end", "source"}``.
    summary : dict
        Beat counts per class and, with a reference, per-record Se/PPV.
    """

    record_id: str
    title: str
    recording: Recording
    analysis: Any = None
    analysis_error: str | None = None
    from_cache: bool = False
    notices: list[str] = field(default_factory=list)
    beats: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, np.ndarray] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    """Derived data computed on demand (model inputs, explanations), kept with the record."""
    rhythm: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def fs(self) -> float:
        return float(self.recording.fs)

    def conditioned(self, lead: int) -> np.ndarray:
        """One lead conditioned (ecgcore.signal) at the recording's own rate, float32."""
        return self._display("conditioned", lead)

    def raw(self, lead: int) -> np.ndarray:
        """One lead minus its median, float32 (the "raw" toggle)."""
        return self._display("raw", lead)

    def _display(self, kind: str, lead: int) -> np.ndarray:
        # Computed when a lead is first drawn, not for every lead when the record opens:
        # most views show one lead, and conditioning costs ~20 ms per lead of 30 minutes.
        key = f"{kind}:{int(lead)}"
        with _extras_lock:
            found = self.extras.get(key)
        if found is not None:
            return found
        x = np.asarray(self.recording.signal[:, int(lead)], dtype=np.float64)
        if kind == "conditioned":
            from ecgcore.signal import ecg_condition

            values = ecg_condition(x, self.recording.fs).astype(np.float32)
        else:
            finite = np.isfinite(x)
            values = (x - (np.median(x[finite]) if finite.any() else 0.0)).astype(np.float32)
        with _extras_lock:
            self.extras[key] = values
        return values

    @property
    def duration_s(self) -> float:
        return float(self.recording.duration_s)

    @property
    def lead_used(self) -> int:
        if self.analysis is None:
            return 0
        return self.recording.lead_index(self.analysis.lead_used)


def record_href(record_id: str, lead: str | None = None) -> str:
    """The record view's address, analysing ``lead`` (None: the default lead)."""
    return f"/record/{quote(record_id)}" + (f"?lead={quote(lead)}" if lead else "")


def explain_href(record_id: str, beat: int, lead: str | None = None) -> str:
    """The explain page's address for a beat of the analysis of ``lead``."""
    return (f"/explain?record={quote(record_id)}&beat={int(beat)}"
            + (f"&lead={quote(lead)}" if lead else ""))


def is_upload(record_id: str) -> bool:
    """Whether a record id names an upload."""
    return record_id.startswith(UPLOAD_PREFIX)


def read_record(
    record_id: str, session_id: str | None, sessions: SessionStore, records_dir=None
) -> Recording:
    """The recording behind a record id.

    Raises
    ------
    EcgError
        Unknown record, or an upload of another (or an expired) session.
    NotAvailableError
        ``ecgcore.io`` is not there yet.
    """
    if is_upload(record_id):
        recording = sessions.get(session_id or "", record_id)
        if recording is None:
            raise EcgError(
                "this upload is not available in this browser session (uploads are private "
                "to the tab that made them and expire after a while): upload the file again"
            )
        return recording
    from ecgcore.catalog import record_path

    path = record_path(record_id, records_dir)
    try:
        from ecgcore.io import read
    except ImportError as error:
        raise NotAvailableError(
            f"reading records is not available yet (ecgcore.io: {error})"
        ) from None
    return read(str(path))


class RecordPreparer:
    """Prepares records once and keeps the last few in memory (thread-safe, bounded).

    A long recording (a Holter file) takes about a minute to analyse: it can be prepared
    in a background thread (:meth:`start`) while its page says how far it is.
    """

    def __init__(self, max_records: int = 6, ttl_s: float = 3600.0) -> None:
        self._memory = MemoryStore(max_records, ttl_s)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._failed: dict[str, str] = {}

    def get(self, key: str, record_id: str, load, lead: str | None = None) -> PreparedRecord:
        """The prepared record under ``key``, preparing it with ``load()`` -> Recording,
        analysed on ``lead`` (None: the default lead)."""
        found = self._memory.get(key)
        if found is not None:
            return found
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._memory.get(key)
            if found is None:
                found = prepare(record_id, load(), lead)
                self._memory.put(key, found)
        return found

    def peek(self, key: str) -> PreparedRecord | None:
        """The prepared record if it is in memory, without preparing it."""
        return self._memory.get(key)

    def start(self, key: str, record_id: str, load, lead: str | None = None) -> bool:
        """Prepare in a background thread, as :meth:`get` would; True when a thread was
        started (not when the record is in memory or already being prepared here)."""
        if self._memory.get(key) is not None:
            return False
        with self._guard:
            running = self._running.get(key)
            if running is not None and running.is_alive():
                return False
            self._failed.pop(key, None)
            thread = threading.Thread(target=self._prepare_in_background,
                                      args=(key, record_id, load, lead),
                                      name=f"prepare-{record_id}", daemon=True)
            self._running[key] = thread
        thread.start()
        return True

    def _prepare_in_background(self, key: str, record_id: str, load, lead: str | None) -> None:
        try:
            self.get(key, record_id, load, lead)
        except Exception as error:  # noqa: BLE001 - the waiting page must hear of it
            _log.exception("preparing %s failed", record_id)
            with self._guard:
                self._failed[key] = f"{type(error).__name__}: {error}"
        finally:
            with self._guard:
                self._running.pop(key, None)

    def running(self, key: str) -> bool:
        """Whether :meth:`start` is preparing ``key`` in this process now."""
        with self._guard:
            thread = self._running.get(key)
        return thread is not None and thread.is_alive()

    def failure(self, key: str) -> str | None:
        """Why the last background preparation of ``key`` failed, if it did."""
        with self._guard:
            return self._failed.get(key)


def prepared_key(record_id: str, session_id: str | None, lead: str | None = None) -> str:
    """The key a record is prepared and kept under: uploads per browser session, and per
    analysed lead."""
    key = f"{session_id}:{record_id}" if is_upload(record_id) else record_id
    return f"{key}#lead={lead}" if lead else key


def get_prepared(record_id: str, session_id: str | None, lead: str | None = None,
                 recording: Recording | None = None) -> PreparedRecord:
    """The prepared record for this browser session, from inside a Dash callback, analysed
    on ``lead`` (a lead name; None: :func:`ecgcore.recording.preferred_lead`).
    ``recording``: the record's recording when the caller has already read it.

    Raises
    ------
    EcgError
        With a message for the user (unknown record, upload of another session...).
    """
    from dashboard import context

    cfg = context.config()
    return context.records().get(
        prepared_key(record_id, session_id, lead), record_id,
        (lambda: recording) if recording is not None else
        (lambda: read_record(record_id, session_id, context.sessions(), cfg.records_dir)),
        lead or None,
    )


def start_long_preparation(record_id: str | None, session_id: str | None,
                           lead: str | None = None) -> dict[str, Any] | Recording | None:
    """Start analysing a long recording in the background, for a page that polls for it.

    Returns
    -------
    dict, Recording or None
        A dict when a preparation is under way (``key``, ``analysis_key``, ``record_id``,
        ``lead``, ``duration_s``, ``leads``, ``fs``, ``started``); the recording, when it
        had to be read here (an upload, whose length only the recording gives, or a long
        record whose analysis is already on disk): prepare it at once, without reading it
        again; None when a catalogue record is short (:attr:`Config.background_after_s`),
        the record is already in memory, or it cannot be read (preparing it at once says
        why).
    """
    from dashboard import context
    from ecgcore.cache import analysis_cached, analysis_key
    from ecgcore.catalog import record_duration_s

    if not record_id:
        return None
    cfg = context.config()
    key = prepared_key(record_id, session_id, lead)
    if context.records().peek(key) is not None:
        return None
    try:
        if is_upload(record_id):
            recording = read_record(record_id, session_id, context.sessions())
            if recording.duration_s < cfg.background_after_s:
                return recording
        else:
            if record_duration_s(record_id, cfg.records_dir) < cfg.background_after_s:
                return None
            recording = read_record(record_id, session_id, context.sessions(),
                                    cfg.records_dir)
        analysed = analysis_key(recording, lead)
    except EcgError:
        return None
    if analysis_cached(analysed):
        return recording
    context.records().start(key, record_id, lambda: recording, lead)
    return {"key": key, "analysis_key": analysed, "record_id": record_id, "lead": lead,
            "duration_s": recording.duration_s, "leads": list(recording.leads),
            "fs": recording.fs, "started": time.time()}


def preparation_status(pending: dict[str, Any], session_id: str | None) -> dict[str, Any]:
    """Where the background preparation of :func:`start_long_preparation` stands.

    It may run in another worker process of the server than the one asked: the disk
    cache's progress marker (:func:`ecgcore.cache.analysis_progress`) says where. When
    nothing runs anywhere and nothing is ready (a worker restarted), it starts here.

    Returns
    -------
    dict
        ``ready`` (bool), ``error`` (str or None), ``stage`` and ``stage_index`` and
        ``stages`` (from the progress marker, or None).
    """
    from dashboard import context
    from ecgcore.cache import analysis_cached, analysis_progress

    key = pending["key"]
    records = context.records()
    status: dict[str, Any] = {"ready": False, "error": None, "stage": None,
                              "stage_index": None, "stages": None}
    if records.peek(key) is not None or analysis_cached(pending["analysis_key"]):
        return {**status, "ready": True}
    failure = records.failure(key)
    if failure is not None:
        return {**status, "error": failure}
    marker = analysis_progress(pending["analysis_key"])
    if marker is not None:
        return {**status, "stage": marker.get("stage"),
                "stage_index": marker.get("stage_index"), "stages": marker.get("stages")}
    if not records.running(key):
        # Read in the background thread, which has no request context: take what it
        # needs now.
        record_id, sessions = pending["record_id"], context.sessions()
        records_dir = context.config().records_dir
        records.start(key, record_id,
                      lambda: read_record(record_id, session_id, sessions, records_dir),
                      pending.get("lead"))
    return status


_failure_lock = threading.Lock()
_last_failure: tuple[tuple, str] | None = None


def _classifiers_failure() -> str | None:
    """Why the classifiers cannot be loaded, or None when they can.

    Checked before analysing, so a missing model does not cost a whole analysis before
    failing; a failure is remembered until the model files change, so a half-written
    models folder is not reloaded (seconds) on every page.
    """
    global _last_failure
    try:
        from ecgcore.inference import MODELS_DIR, load_classifiers
    except ImportError as error:
        return str(error)
    folder = Path(MODELS_DIR)
    signature = tuple(
        (p.name, p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.glob("*.keras")) if p.is_file()
    ) if folder.is_dir() else ()
    with _failure_lock:
        if _last_failure is not None and _last_failure[0] == signature:
            return _last_failure[1]
    try:
        load_classifiers()
    except ModelError as error:
        with _failure_lock:
            _last_failure = (signature, str(error))
        return str(error)
    return None


def _analyse(recording: Recording, lead: str | None = None) -> tuple[Any, bool, list[str]]:
    from ecgcore.cache import cached_analyze

    notices: list[str] = []
    classify = True
    failure = _classifiers_failure()
    if failure is not None:
        # The classifiers may not be built yet: still show beats and waves.
        notices.append(f"the beat classifiers are not available yet ({failure}); beats are "
                       "detected and delineated but not classified")
        classify = False
    analysis, hit = cached_analyze(recording, lead, classify=classify)
    return analysis, hit, notices


def prepare(record_id: str, recording: Recording, lead: str | None = None) -> PreparedRecord:
    """Analyse ``lead`` (through the cache; None: the default lead) and arrange per beat;
    leads are conditioned when drawn."""
    title = (recording.meta.get("title") or recording.source) if is_upload(record_id) else (
        f"record {record_id}"
    )
    prepared = PreparedRecord(record_id, str(title), recording)
    try:
        analysis, hit, notices = _analyse(recording, lead)
    except ImportError as error:
        prepared.analysis_error = f"the analysis is not available yet ({error})"
        return prepared
    except EcgError as error:
        prepared.analysis_error = str(error)
        return prepared
    prepared.analysis, prepared.from_cache = analysis, hit
    prepared.notices = notices + list(analysis.warnings)
    _arrange_beats(prepared)
    return prepared


def _arrange_beats(prepared: PreparedRecord) -> None:
    from ecgcore.metrics import MATCH_TOLERANCE_S, match_beats, reference_beats
    from ecgcore.rhythm import beat_rates_bpm

    analysis, fs = prepared.analysis, prepared.fs
    rpeaks = np.asarray(analysis.rpeaks, dtype=np.int64)
    n = rpeaks.size
    time_s = rpeaks / fs
    rr = np.full(n, np.nan)
    if n > 1:
        rr[1:] = np.diff(rpeaks) / fs
    hr = beat_rates_bpm(rr)
    aami = (
        np.asarray(analysis.aami_labels, dtype="<U1")
        if analysis.aami_probs is not None
        else np.full(n, "", dtype="<U1")
    )
    aami_p = (
        np.asarray(analysis.aami_probs, dtype=np.float32)
        if analysis.aami_probs is not None
        else np.full((n, len(AAMI_CLASSES)), np.nan, dtype=np.float32)
    )
    # Served labels: the networks' own, but for the morphology rule (V calls shaped like
    # the N neighbours, S calls not shaped like them) and the rhythm rule (S -> N in AF/AFL).
    rule = analysis.rhythm_rule
    rule = np.zeros(n, dtype=bool) if rule is None else np.asarray(rule, dtype=bool)
    morphology = analysis.morphology_rule
    morphology = (np.zeros(n, dtype=bool) if morphology is None
                  else np.asarray(morphology, dtype=bool))
    network_aami = (
        np.asarray(analysis.aami_network_labels, dtype="<U1")
        if analysis.aami_probs is not None
        else np.full(n, "", dtype="<U1")
    )
    if analysis.binary_p_abnormal is not None:
        binary_p = np.asarray(analysis.binary_p_abnormal, dtype=np.float32)
        binary = np.asarray(analysis.binary_labels, dtype="<U8")
    else:
        binary_p = np.full(n, np.nan, dtype=np.float32)
        binary = np.full(n, "", dtype="<U8")
    ref = np.full(n, "", dtype="<U1")
    recording = prepared.recording
    summary: dict[str, Any] = {
        "n_beats": n,
        "model": {c: int(np.sum(aami == c)) for c in AAMI_CLASSES} if aami.any() else None,
        "binary": (
            {"normal": int(np.sum(binary == "normal")),
             "abnormal": int(np.sum(binary == "abnormal"))}
            if binary.any() else None
        ),
        "reference": None,
        "rhythm_rule": int(rule.sum()),
        "morphology_rule": int(morphology.sum()),
    }
    rhythm = [dict(e, source="analysis") for e in analysis.rhythm]
    ann = recording.annotations
    if ann is not None and len(ann.sample):
        from ecgcore.catalog import reference_rhythm_episodes

        ref_pos, ref_cls = reference_beats(ann.sample, list(ann.symbol))
        # Some references mark the rhythm only (the MIT-BIH AF Database's .atr): nothing to
        # score the beats against, but the rhythm bands still come from it.
        if ref_pos.size:
            match = match_beats(ref_pos, rpeaks, MATCH_TOLERANCE_S * fs)
            ref[match.test_index] = ref_cls[match.ref_index]
            prepared.reference = {"sample": ref_pos, "aami": ref_cls, "missed": match.missed}
            summary["reference"] = {c: int(np.sum(ref_cls == c)) for c in AAMI_CLASSES}
            summary["detection"] = {
                "sensitivity": match.sensitivity, "ppv": match.ppv,
                "matched": int(match.ref_index.size), "missed": int(match.missed.size),
                "extra": int(match.extra.size),
            }
            if aami.any():
                summary["per_class"] = _per_class(ref_cls, aami, match)
        reference_rhythm = [
            dict(e, source="reference")
            for e in reference_rhythm_episodes(
                ann.sample, list(ann.symbol), list(ann.aux_note), recording.n_samples
            )
        ]
        if reference_rhythm:
            summary["rhythm_reference"] = _rhythm_agreement(reference_rhythm,
                                                            analysis.rhythm, fs)
        rhythm = reference_rhythm + rhythm
    abnormal = (aami != "N") & (aami != "")
    if not aami.any():
        abnormal = binary == "abnormal"
    disagree = np.zeros(n, dtype=bool)
    if aami.any():
        has_ref = ref != ""
        disagree |= has_ref & (ref != aami)
        if binary.any():
            # The two models disagree when one calls abnormal what the other calls N.
            disagree |= (binary == "abnormal") != (aami != "N")
    prepared.beats = {
        "sample": rpeaks, "time_s": time_s, "rr_s": rr, "hr_bpm": hr,
        "aami": aami, "aami_p": aami_p, "binary": binary, "binary_p": binary_p,
        "ref": ref, "abnormal": abnormal, "disagree": disagree, "rule": rule,
        "network_aami": network_aami, "morphology": morphology,
    }
    prepared.rhythm = rhythm
    summary["n_disagree"] = int(disagree.sum())
    prepared.summary = summary


SCORED_RHYTHMS = ("AFIB", "AFL", "VFL", "VT", "IVR", "SVTA", "B", "T", "SBR")
"""Rhythms found by ecgcore that MIT-BIH's rhythm annotations also name (``(AFIB`` ...)."""


def _rhythm_agreement(reference: list[dict[str, Any]], found: list[dict[str, Any]],
                      fs: float) -> list[dict[str, Any]]:
    """Per rhythm that either side has, how the episodes found agree with the reference
    ones (``ecgcore.metrics.episode_agreement``, pooled over this one record)."""
    from ecgcore.metrics import episode_agreement, pooled_episode_agreement
    from ecgcore.rhythm import rhythm_name

    rows = []
    for label in SCORED_RHYTHMS:
        ref = [(e["start"], e["end"]) for e in reference if e["label"] == f"({label}"]
        det = [(e["start"], e["end"]) for e in found if e["label"] == label]
        if ref or det:
            rows.append({"label": label, "name": rhythm_name(label),
                         **pooled_episode_agreement([episode_agreement(ref, det, fs)])})
    return rows


def _per_class(ref_cls: np.ndarray, aami: np.ndarray, match) -> dict[str, dict[str, Any]]:
    # Per-class figures over matched beats, as EC57 reports classification: a class's
    # sensitivity counts its reference beats the model labelled so, its +P the model's
    # labels of that class the reference confirms.
    truth = ref_cls[match.ref_index]
    pred = aami[match.test_index]
    out = {}
    for c in AAMI_CLASSES:
        tp = int(np.sum((truth == c) & (pred == c)))
        n_ref = int(np.sum(truth == c))
        n_pred = int(np.sum(pred == c))
        out[c] = {
            "tp": tp, "n_ref": n_ref, "n_pred": n_pred,
            "sensitivity": tp / n_ref if n_ref else None,
            "ppv": tp / n_pred if n_pred else None,
        }
    return out


_extras_lock = threading.Lock()


def beat_model_inputs(prepared: PreparedRecord):
    """The classifiers' inputs for every beat of the record (ecgcore.beats), kept once built.

    Built from the same conditioned lead at the internal rate and the same R peaks as the
    analysis, so an explanation explains exactly what was classified.
    """
    with _extras_lock:
        found = prepared.extras.get("beat_inputs")
    if found is not None:
        return found
    from ecgcore.analysis import analysis_beat_inputs

    inputs = analysis_beat_inputs(prepared.recording, prepared.analysis)
    with _extras_lock:
        prepared.extras["beat_inputs"] = inputs
    return inputs


def explanation(prepared: PreparedRecord, index: int, model: str) -> dict[str, Any]:
    """SHAP attributions of one beat for one model (ecgcore.explain), kept once computed.

    Kept in the record's memory and in the disk cache (ecgcore.cache), so every server
    process and every later visit reuses an explanation computed once.
    """
    key = f"explain:{model}:{index}"
    with _extras_lock:
        found = prepared.extras.get(key)
    if found is not None:
        return found
    try:
        from ecgcore.cache import (
            analysis_key,
            explanation_key,
            load_explanation,
            save_explanation,
        )
        from ecgcore.explain import DEFAULT_MAX_EVALS, explain_beat
        from ecgcore.inference import load_classifiers
    except ImportError as error:
        raise NotAvailableError(f"explanations are not available yet ({error})") from None
    with _extras_lock:
        record_key = prepared.extras.get("analysis_key")
    if record_key is None:
        # Hashing the samples takes a few milliseconds: once per record is enough.
        record_key = analysis_key(prepared.recording, prepared.analysis.lead_used)
        with _extras_lock:
            prepared.extras["analysis_key"] = record_key
    disk_key = explanation_key(record_key, index, model, DEFAULT_MAX_EVALS)
    result = load_explanation(disk_key)
    if result is None:
        result = explain_beat(load_classifiers(), beat_model_inputs(prepared), int(index), model)
        # A full or read-only disk only costs recomputing it next time.
        with contextlib.suppress(OSError):
            save_explanation(disk_key, result)
    with _extras_lock:
        # A few explanations per record are plenty to keep.
        kept = [k for k in prepared.extras if k.startswith("explain:")]
        for old in kept[: max(0, len(kept) - 16)]:
            prepared.extras.pop(old, None)
        prepared.extras[key] = result
    return result
