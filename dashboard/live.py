"""Server-side machinery of the Live page: one :class:`LiveSession` per browser session.

A live session runs, in threads of its own:

* the recorder (:func:`acquisition.recorder.record`) reading a serial port, or the link
  of the simulator (:func:`acquisition.simulator.simulate`, which then runs in a third
  thread) and writing the recorder's CSV;
* an analysis loop that runs ecgcore's offline chain on the last
  :attr:`LiveSettings.context_s` of signal (the same conditioning, detector, beat inputs
  and jitted classifiers as ``ecg analyze``) and reports the beats that have become
  final. It runs every :attr:`LiveSettings.step_s`, and sooner when a beat it has already
  detected is about to become final.

When is a beat final (reported once, with its labels)? Its R peak must lie at least
:attr:`LiveSettings.min_settle_s` before the newest sample (the beat window of
``ecgcore.beats`` reaches 0.4 s after R, and the zero-phase filters need a little more),
and then either the next beat is already detected (so the classifiers get the true next
RR interval) or :attr:`LiveSettings.max_wait_s` has passed since its R peak, in which case
the next RR is missing and ``ecgcore.beats.beat_rr_features`` takes the local mean RR in
its place, as it does for the last beat of any recording. This bounds the label latency
(``max_wait_s`` plus the time one analysis step takes, tens of milliseconds); the price
is that a premature beat is usually classified without its compensatory pause. A beat is
new when its R peak lies more than :attr:`LiveSettings.dedup_s` after the last one
reported (positions are absolute sample numbers of the stream, so overlapping buffers
never report a beat twice).

Latency is measured per beat as the wall-clock time from the arrival of its R-peak sample
in the recorder's ``on_samples`` callback to the moment its labels exist.

Serving with several worker processes (:class:`LiveHub`): a stream runs in the worker that
received Start, which publishes :meth:`LiveSession.snapshot` (plus a heartbeat) to the
session store every worker shares; any worker answers the page's polls from there, and
Stop from any worker is a flag in the store the owner reads. Only bounded data is
published (the visible window, the newest beats, counters), never the whole signal: the
recorder's CSV is the recording, registered as a record of the browser session when the
stream ends.

Nothing here imports Dash: the page (``dashboard/pages/live.py``) only calls
:class:`LiveHub` (start, read, request_stop) and the tests drive both directly.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.protocol import DEFAULT_BAUD, parse_plain_rate
from dashboard.state import SessionStore, new_token
from ecgcore.beats import AAMI_CLASSES
from ecgcore.errors import EcgError
from ecgcore.rhythm import PLAUSIBLE_RR_S, beat_rates_bpm

V_RUN_MIN = 3
"""Consecutive V beats that raise the alert."""


class LiveError(EcgError):
    """A live session cannot start (bad choice, too many streams, no device)."""


def plain_rate(text: Any) -> float | str | None:
    """The Live form's plain stream rate field
    (:func:`acquisition.protocol.parse_plain_rate`).

    Raises
    ------
    LiveError
        Anything else.
    """
    try:
        return parse_plain_rate(text)
    except ValueError as error:
        raise LiveError(f"{error} (leave it empty for the ecg_ad8232 sketch)") from None


@dataclass(frozen=True)
class LiveSettings:
    """How the live analysis runs.

    Attributes
    ----------
    context_s : float
        Signal analysed at each step (the newest seconds): enough for the detector's
        thresholds and the beat inputs' patient template and RR context.
    step_s : float
        Period of the analysis loop.
    min_settle_s : float
        A beat is never reported before its R peak is this old (its window must be whole).
    max_wait_s : float
        A beat is reported at this age even if the next beat has not been detected.
    next_settle_s : float
        How old the next R peak must be to count as detected.
    dedup_s : float
        Beats closer than this to the last reported one are the same beat.
    edge_s : float
        Beats this close to the start of the analysed buffer are left to earlier steps
        (the filters' start-up and the missing pre-R part of the window).
    min_signal_s : float
        No analysis before this much signal has arrived (the beats of these first
        seconds are labelled late, once it has: their latency is kept apart, see
        :meth:`LiveSession.stats`).
    display_s : float
        Span of the scrolling view.
    max_duration_s : float
        A recording stops by itself after this much signal (bounds the disk file).
    reconnect_s : float
        How long the recorder tries to reopen a port that vanished.
    rhythm_span_s : float
        Signal the rhythm is found over (the newest seconds), by the record view's own
        pipeline (:func:`ecgcore.analysis.analyze`): atrial fibrillation needs 30 s of
        irregular beats and 31-beat windows, far more than the labelling context.
    rhythm_every_s : float
        Period of the rhythm analysis.
    """

    context_s: float = 20.0
    step_s: float = 0.2
    min_settle_s: float = 0.45
    max_wait_s: float = 0.5
    next_settle_s: float = 0.10
    dedup_s: float = 0.15
    edge_s: float = 0.35
    min_signal_s: float = 2.0
    display_s: float = 10.0
    max_duration_s: float = 3600.0
    reconnect_s: float = 30.0
    rhythm_span_s: float = 120.0
    rhythm_every_s: float = 5.0


@dataclass
class LiveBeat:
    """One reported beat (positions in the stream's own sample numbers)."""

    sample: int
    time_s: float
    aami: str
    aami_p: float
    binary: str
    binary_p: float
    latency_s: float
    next_rr_known: bool
    labelled_at: float = 0.0
    """Wall-clock time (``time.time()``) the labels existed: another process's clock can
    tell from it how long the beat took to reach a page."""


@dataclass
class VRun:
    """A run of at least :data:`V_RUN_MIN` consecutive beats labelled V."""

    start_s: float
    end_s: float
    n_beats: int


@dataclass
class RhythmFinding:
    """A rhythm episode found live (stream seconds), merged across the analysed windows."""

    label: str
    name: str
    start_s: float
    end_s: float


@dataclass
class _Chunk:
    seq: np.ndarray
    value: np.ndarray
    leads_off: np.ndarray
    arrival: float


@dataclass
class _Source:
    kind: str  # "port" or "simulator"
    port: str
    description: str


RHYTHM_MERGE_GAP_S = 5.0
"""Live findings of one rhythm closer than this join (windows overlap, edges move)."""


def merge_findings(
    known: list[RhythmFinding], found: list[RhythmFinding], window_start_s: float
) -> list[RhythmFinding]:
    """The rhythm so far, updated with one analysed window's episodes.

    The newest window decides within its own span: a known finding that ends inside it
    is cut at the window's start (its part there was not found again), and each episode
    found joins a known one of the same label that it overlaps or nearly touches
    (:data:`RHYTHM_MERGE_GAP_S`).

    Parameters
    ----------
    known : list of RhythmFinding
        What was known before, in time order.
    found : list of RhythmFinding
        The window's episodes.
    window_start_s : float
        Where the window starts (stream seconds).

    Returns
    -------
    list of RhythmFinding
        In time order; findings cut to nothing are dropped.
    """
    out = []
    for f in known:
        if f.end_s > window_start_s:
            f = RhythmFinding(f.label, f.name, f.start_s, window_start_s)
        if f.end_s > f.start_s:
            out.append(f)
    for f in sorted(found, key=lambda e: e.start_s):
        near = [k for k in out if k.label == f.label
                and k.start_s <= f.end_s + RHYTHM_MERGE_GAP_S
                and f.start_s <= k.end_s + RHYTHM_MERGE_GAP_S]
        if near:
            keep = near[0]
            keep.start_s = min([keep.start_s, f.start_s] + [k.start_s for k in near[1:]])
            keep.end_s = max([keep.end_s, f.end_s] + [k.end_s for k in near[1:]])
            out = [k for k in out if k is keep or all(k is not n for n in near)]
        else:
            out.append(RhythmFinding(f.label, f.name, f.start_s, f.end_s))
    return sorted(out, key=lambda e: e.start_s)


URGENT_RHYTHMS = ("AFIB", "AFL", "VT", "VFL", "SVTA", "PAUSE")
"""Rhythm findings the Live page shows as a warning; the others (brady/tachycardia,
bigeminy...) as information."""


def rhythm_lines(findings: list[dict[str, Any]], newest: int = 6) -> tuple[list[str], bool]:
    """What the Live page says of the rhythm findings (:meth:`LiveSession.stats`'s
    ``rhythm``): one line per finding, the newest ``newest``, and whether one is urgent."""
    from dashboard.components.figures import format_hms

    lines = [f"{f['name']} ({f['label']}): {format_hms(f['start_s'])}–{format_hms(f['end_s'])}"
             for f in findings[-newest:]]
    return lines, any(f["label"] in URGENT_RHYTHMS for f in findings)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _fs_from_file(path: Path) -> float | None:
    # The recorder writes (and fsyncs) its header lines, fs_hz among them, before it hands
    # out the first sample, so the file is where the rate is known first.
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for _ in range(20):
                line = handle.readline()
                if not line.startswith("#"):
                    break
                key, _, value = line[1:].partition(":")
                if key.strip() == "fs_hz":
                    return float(value)
    except (OSError, ValueError):
        return None
    return None


def _near_long_gaps(missing: np.ndarray, fs: float, longest_filled_s: float = 0.02,
                    margin_s: float = 0.05) -> np.ndarray:
    """Samples within ``margin_s`` of a run of missing samples longer than ``longest_filled_s``.

    A lost line or two is interpolated harmlessly; a detection in or next to a real gap or
    a leads-off stretch is an artefact of the interpolation, not a beat to report.
    """
    out = np.zeros(missing.size, dtype=bool)
    if not missing.any():
        return out
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    margin = int(round(margin_s * fs))
    for start, stop in zip(starts, stops, strict=True):
        if stop - start > longest_filled_s * fs:
            out[max(0, start - margin):stop + margin] = True
    return out


class LiveSession:
    """One live stream: recorder (+ simulator) threads, a ring buffer and the beat stream.

    Create it, then call :meth:`start_simulator` or :meth:`start_port`; read it with
    :meth:`view` / :meth:`stats` from any thread; :meth:`stop` ends it and returns the
    path of the saved CSV. Every public method is thread-safe.

    Parameters
    ----------
    out_dir : path
        Folder where the recording's CSV is written.
    settings : LiveSettings, optional
    classifiers : optional
        Preloaded :class:`ecgcore.inference.Classifiers`; by default the packaged ones are
        loaded at start. If they cannot be loaded, beats are detected but not labelled and
        :attr:`notices` says why.
    models_dir : path, optional
        Folder of the weights to load instead of the packaged ones.
    """

    def __init__(self, out_dir: str | Path, settings: LiveSettings | None = None, *,
                 classifiers: Any = None, models_dir: str | Path | None = None) -> None:
        self.settings = settings or LiveSettings()
        self.out_dir = Path(out_dir)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.out_path = self.out_dir / f"live-{stamp}-{secrets.token_hex(3)}.csv"
        self.started_wall = datetime.now(UTC)
        self._classifiers = classifiers
        self._models_dir = models_dir
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_sim = threading.Event()
        self._chunks: deque[_Chunk] = deque()
        self._fs: float | None = None
        self._last_seq = -1
        self._first_seq: int | None = None
        self._n_samples = 0
        self._beats: list[LiveBeat] = []
        self._counts = dict.fromkeys(AAMI_CLASSES, 0)
        self._latencies: list[float] = []
        self._startup_latencies: list[float] = []
        self._runs: list[VRun] = []
        self._v_streak: list[LiveBeat] = []
        self._rhythm: list[RhythmFinding] = []
        self._rhythm_analysed_s = 0.0
        self._vf_note_said = False
        self._messages: deque[str] = deque(maxlen=8)
        self.notices: list[str] = []
        self._state = "idle"
        self._error: str | None = None
        self._summary = None
        self._step_times: deque[float] = deque(maxlen=200)
        self._threads: list[threading.Thread] = []
        self._sim_dir: Path | None = None
        self._source: _Source | None = None
        self._finished = threading.Event()
        self._port: str | None = None
        self._vanished: str | None = None
        self.beats_added = threading.Event()
        """Set when new beats are reported (the hub publishes them at once)."""

    # ----------------------------------------------------------------- starting

    def start_simulator(self, record_path: str | Path, *, start_s: float = 0.0,
                        speed: float = 1.0, leads_off_per_min: float = 0.0,
                        drop_rate: float = 0.0, noise_mv: float = 0.0,
                        duration_s: float | None = None, seed: int = 0) -> None:
        """Play a recording through the simulator on a pseudo-terminal and record it.

        Parameters
        ----------
        record_path : path
            Any recording ``ecgcore.io`` reads (an MIT-BIH record path without extension).
        start_s : float
            Where in the recording to start.
        speed : float
            Playback speed (1 = real time; the latency target is for real time).
        leads_off_per_min, drop_rate, noise_mv : float
            Faults of the simulated board (see :func:`acquisition.simulator.simulate`).
        duration_s : float, optional
            Stretch to play (default: to the end of the recording).
        seed : int
            Seed of the simulated faults.
        """
        from acquisition.simulator import SimulatorError, simulate

        self._sim_dir = Path(tempfile.mkdtemp(prefix="ecg-live-"))
        link = self._sim_dir / "ttyECG"
        ready = threading.Event()
        name = Path(str(record_path)).name
        self._source = _Source("simulator", str(link),
                               f"simulator playing record {name} from {start_s:g} s")

        def play() -> None:
            try:
                simulate(record_path, link, speed=speed, noise=noise_mv, drop_rate=drop_rate,
                         leads_off=leads_off_per_min, seed=seed, start_s=start_s,
                         duration_s=duration_s, stop_event=self._stop_sim,
                         reader_timeout_s=30.0, on_ready=lambda _name: ready.set(),
                         on_message=lambda text: self._say(f"simulator: {text}"))
            except SimulatorError as error:
                self._fail(f"the simulator cannot start: {error}")
            except Exception as error:  # noqa: BLE001 -- shown to the user, never a crash
                self._fail(f"the simulator failed ({type(error).__name__}: {error})")
            finally:
                ready.set()

        self._prepare()
        thread = threading.Thread(target=play, name="live-simulator", daemon=True)
        self._threads.append(thread)
        thread.start()
        if not ready.wait(30.0) or self._error:
            self._stop_sim.set()
            self._finished.set()
            raise LiveError(self._error or "the simulator did not start within 30 s")
        self._start_recorder(str(link))

    def start_port(self, port: str, baud: int = DEFAULT_BAUD,
                   plain_fs: float | str | None = None) -> None:
        """Record a board on a serial port (``/dev/ttyACM0``...).

        ``plain_fs``: the board prints bare values at this rate (or at the rate they arrive,
        with ``"auto"``) instead of speaking the ``ecg_ad8232`` protocol
        (:class:`acquisition.recorder.PlainStreamDecoder`).
        """
        if plain_fs is None:
            plain = ""
        elif isinstance(plain_fs, str):
            plain = ", plain stream at the rate it arrives"
        else:
            plain = f", plain stream at {plain_fs:g} Hz"
        what = f"serial port {port} at {baud} baud{plain}"
        self._source = _Source("port", port, what)
        self._prepare()
        self._start_recorder(port, baud=baud, plain_fs=plain_fs)

    def _prepare(self) -> None:
        with self._lock:
            if self._state != "idle":
                raise LiveError("this live session has already been started")
            self._state = "starting"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self._classifiers is None:
            try:
                from ecgcore.inference import load_classifiers

                self._classifiers = load_classifiers(self._models_dir)
            except (ImportError, EcgError) as error:
                self.notices.append(f"the beat classifiers are not available ({error}): beats "
                                    "are detected but not labelled")
        if self._classifiers is not None:
            self._warm_up()

    def _warm_up(self) -> None:
        # The first call of a jitted model compiles it (about a second); pay it before the
        # stream starts, not on the first beat.
        from ecgcore.beats import RR_FEATURE_NAMES, WAVEFORM_CHANNELS, WINDOW_LENGTH, BeatInputs
        from ecgcore.inference import classify_beats

        inputs = BeatInputs(
            np.zeros((1, WINDOW_LENGTH, len(WAVEFORM_CHANNELS)), np.float32),
            np.ones((1, len(RR_FEATURE_NAMES)), np.float32), np.zeros(1, np.int64),
        )
        try:
            classify_beats(self._classifiers, inputs)
            # A 20 s buffer at a fast rate holds more beats than the smallest batch size.
            classify_beats(self._classifiers, inputs.subset(np.zeros(40, dtype=np.int64)))
        except EcgError as error:
            self.notices.append(f"the beat classifiers cannot run ({error}): beats are "
                                "detected but not labelled")
            self._classifiers = None

    def _start_recorder(self, port: str, baud: int = DEFAULT_BAUD,
                        plain_fs: float | str | None = None) -> None:
        from acquisition.recorder import AcquisitionError, record

        def run() -> None:
            try:
                summary = record(
                    port, self.out_path, duration_s=self.settings.max_duration_s,
                    baud=baud, reconnect=True, reconnect_timeout_s=self.settings.reconnect_s,
                    on_samples=self._on_samples, on_message=self._say,
                    on_progress=self._on_progress, stop_event=self._stop, plain_fs=plain_fs,
                )
                with self._lock:
                    self._summary = summary
                    if self._state != "failed":
                        self._state = "stopped"
                    if summary.stop_reason == "port lost":
                        # The board went away and did not come back: the file ends there
                        # (whole lines only) and the page says so, not just "stopped".
                        self._vanished = (
                            f"The device on {port} disappeared after "
                            f"{summary.duration_s:.1f} s of signal and did not come back "
                            f"within {self.settings.reconnect_s:g} s: the recording ends "
                            "there (saved, valid up to the last whole line)."
                        )
                self._say(f"recording ended: {summary.describe()}")
            except AcquisitionError as error:
                self._fail(str(error))
            except Exception as error:  # noqa: BLE001 -- a vanished port must not crash the app
                self._fail(f"the recorder failed ({type(error).__name__}: {error})")
            finally:
                # Once the recorder is gone nothing feeds the analysis; the simulator
                # stops after it, so the recorder never sees its port vanish on Stop.
                self._stop.set()
                self._finished.set()
                self._stop_sim.set()

        with self._lock:
            self._state = "waiting"
            self._port = port
        self._say(f"opening {self._source.description if self._source else port}")
        recorder = threading.Thread(target=run, name="live-recorder", daemon=True)
        analysis = threading.Thread(target=self._analysis_loop, name="live-analysis",
                                    daemon=True)
        rhythm = threading.Thread(target=self._rhythm_loop, name="live-rhythm", daemon=True)
        self._threads += [recorder, analysis, rhythm]
        recorder.start()
        analysis.start()
        rhythm.start()

    # ---------------------------------------------------------------- callbacks

    def _say(self, text: str) -> None:
        with self._lock:
            self._messages.append(text)
            # The recorder reports a lost port and its return only as messages: mirror
            # them in the state so the page shows the outage while it lasts.
            if self._port is not None and self._state in ("recording", "reconnecting"):
                if text.startswith(f"port {self._port} disappeared"):
                    self._state = "reconnecting"
                elif text == f"reconnected to {self._port}":
                    self._state = "recording"

    def _fail(self, text: str) -> None:
        with self._lock:
            self._state = "failed"
            self._error = text
            self._messages.append(text)

    def _on_progress(self, summary) -> None:
        with self._lock:
            self._summary = summary

    def _on_samples(self, seq: np.ndarray, value: np.ndarray, leads_off: np.ndarray) -> None:
        arrival = time.monotonic()
        if self._fs is None:
            fs = _fs_from_file(self.out_path)
            if fs is None and self._summary is not None:
                fs = self._summary.fs
            if fs is None:
                return  # cannot happen with the recorder as written: it writes fs first
            self._fs = fs
        with self._lock:
            if self._first_seq is None:
                self._first_seq = int(seq[0])
            self._chunks.append(_Chunk(seq.copy(), value.copy(), leads_off.copy(), arrival))
            self._last_seq = int(seq[-1])
            self._n_samples += int(seq.size)
            if self._state in ("waiting", "reconnecting"):
                self._state = "recording"
            keep_s = max(self.settings.context_s, self.settings.rhythm_span_s,
                         self.settings.display_s)
            keep_from = self._last_seq - int(keep_s * self._fs) - 1
            while self._chunks and self._chunks[0].seq[-1] < keep_from:
                self._chunks.popleft()

    # ----------------------------------------------------------------- analysis

    def _snapshot(self, span_s: float) -> dict[str, Any] | None:
        """The newest ``span_s`` of signal as contiguous arrays (NaN where missing)."""
        with self._lock:
            if not self._chunks or self._fs is None:
                return None
            chunks = list(self._chunks)
            fs = self._fs
        seq = np.concatenate([c.seq for c in chunks])
        value = np.concatenate([c.value for c in chunks]).astype(np.float64)
        off = np.concatenate([c.leads_off for c in chunks]).astype(bool)
        arrival = np.concatenate([np.full(c.seq.size, c.arrival) for c in chunks])
        last = int(seq[-1])
        first = max(int(seq[0]), last - int(round(span_s * fs)) + 1)
        keep = seq >= first
        seq, value, off, arrival = seq[keep], value[keep], off[keep], arrival[keep]
        n = last - first + 1
        x = np.full(n, np.nan)
        arrived = np.full(n, np.nan)
        leads_off = np.zeros(n, dtype=bool)
        where = seq - first
        # A leads-off sample is the amplifier at its rail, not ECG: missing, like a gap.
        x[where] = np.where(off, np.nan, value)
        arrived[where] = arrival
        leads_off[where] = off
        return {"first": first, "x": x, "arrival": arrived, "leads_off": leads_off, "fs": fs}

    def _analysis_loop(self) -> None:
        step = self.settings.step_s
        while not self._stop.is_set():
            started = time.monotonic()
            due = None
            try:
                due = self._step(final=False)
            except Exception as error:  # noqa: BLE001 -- one bad buffer must not end the stream
                self._say(f"live analysis skipped a step ({type(error).__name__}: {error})")
            elapsed = time.monotonic() - started
            self._step_times.append(elapsed)
            # Wake when the next detected beat becomes final rather than at the next
            # regular step: the label latency is then the wait rule plus one step's work.
            wait = step if due is None else min(step, due)
            self._stop.wait(max(0.01, wait - elapsed))
        self._finished.wait(10.0)
        with contextlib.suppress(Exception):
            self._step(final=True)

    def _step(self, final: bool) -> float | None:
        """Report the beats that became final; seconds until the next one will (or None)."""
        from ecgcore.analysis import prepare_lead
        from ecgcore.detect import ecg_rpeaks
        from ecgcore.recording import Recording
        from ecgcore.signal import INTERNAL_FS, to_input_index

        s = self.settings
        snap = self._snapshot(s.context_s)
        if snap is None:
            return
        fs, x, first = snap["fs"], snap["x"], snap["first"]
        if x.size < s.min_signal_s * fs:
            return
        missing = ~np.isfinite(x)
        if missing.mean() > 0.5:
            return  # leads off or a long gap: nothing to analyse in this buffer
        recording = Recording(x[:, None], float(fs), ["ECG"], ["adu"], "live")
        try:
            x360, _ = prepare_lead(recording)
        except EcgError:
            return  # a flat line (the board's output at a rail) has no beat
        rpeaks360 = ecg_rpeaks(x360, INTERNAL_FS)
        if rpeaks360.size == 0:
            return
        local = to_input_index(rpeaks360, fs).astype(np.int64)
        local = np.clip(local, 0, x.size - 1)
        ok = ~_near_long_gaps(missing, fs)[local]
        end = x.size - 1
        age = (end - local) / fs
        with self._lock:
            last_reported = self._beats[-1].sample if self._beats else None
        new = []
        due = None
        for i in np.flatnonzero(ok):
            position = first + int(local[i])
            if last_reported is not None and position <= last_reported + s.dedup_s * fs:
                continue
            if local[i] < s.edge_s * fs and first > (self._first_seq or 0):
                continue
            later = np.flatnonzero(ok & (local > local[i]))
            next_known = bool(later.size) and age[later[0]] >= s.next_settle_s
            final_at = s.min_settle_s if next_known else max(s.min_settle_s, s.max_wait_s)
            if not final and age[i] < final_at:
                if due is None:
                    due = final_at - age[i]
                continue
            new.append((i, next_known))
        if new:
            beats = self._label(x360, rpeaks360[ok], np.flatnonzero(ok), new, snap, local)
            self._accept(beats)
        return due

    def _rhythm_loop(self) -> None:
        # Its own thread: a rhythm analysis takes a few tenths of a second, which would
        # otherwise delay the beat labels.
        while not self._stop.wait(self.settings.rhythm_every_s):
            try:
                self._rhythm_step()
            except Exception as error:  # noqa: BLE001 -- one bad window must not end the stream
                self._say(f"live rhythm skipped a window ({type(error).__name__}: {error})")
        self._finished.wait(10.0)
        with contextlib.suppress(Exception):
            self._rhythm_step()

    def _rhythm_step(self) -> None:
        """Find the rhythm over the newest :attr:`LiveSettings.rhythm_span_s` and merge it."""
        from ecgcore.analysis import VF_NOT_SOUGHT_WARNING, analyze
        from ecgcore.recording import Recording
        from ecgcore.rhythm import rhythm_name

        snap = self._snapshot(self.settings.rhythm_span_s)
        if snap is None:
            return
        fs, x, first = snap["fs"], snap["x"], snap["first"]
        end_s = (first + x.size) / fs
        if x.size < self.settings.context_s * fs or end_s <= self._rhythm_analysed_s:
            return
        recording = Recording(x[:, None], float(fs), ["ECG"], ["adu"], "live")
        try:
            analysis = analyze(recording, classify=self._classifiers is not None,
                               classifiers=self._classifiers)
        except EcgError:
            return  # mostly missing (leads off), or a flat line: nothing to find
        if not self._vf_note_said:
            # A stream at a rate that folds mains into the flutter band (a bare-value
            # sketch near 54 Hz): say once that VF is not looked for, as the record view does.
            note = next((w for w in analysis.warnings if w.startswith(VF_NOT_SOUGHT_WARNING)),
                        None)
            if note is not None:
                self._vf_note_said = True
                self._say(note)
        found = [RhythmFinding(e["label"], rhythm_name(e["label"]),
                               (first + e["start"]) / fs, (first + e["end"]) / fs)
                 for e in analysis.rhythm]
        with self._lock:
            self._rhythm = merge_findings(self._rhythm, found, first / fs)
            self._rhythm_analysed_s = end_s

    def rhythm(self) -> list[RhythmFinding]:
        """Rhythm episodes found so far (merged across the analysed windows)."""
        with self._lock:
            return [RhythmFinding(**asdict(f)) for f in self._rhythm]

    def _label(self, x360, rpeaks_ok, ok_index, new, snap, local) -> list[LiveBeat]:
        fs, first, arrival = snap["fs"], snap["first"], snap["arrival"]
        chosen = np.searchsorted(ok_index, [i for i, _ in new])
        labels = None
        if self._classifiers is not None:
            from ecgcore.analysis import (
                UPSIDE_DOWN_WARNING,
                morphology_checked_labels,
                served_binary_labels,
            )
            from ecgcore.beats import beat_inputs
            from ecgcore.inference import classify_beats
            from ecgcore.signal import INTERNAL_FS

            # Every beat in the buffer gives context (template, RR) and is run: the
            # morphology rule compares each beat with its neighbours the network calls N.
            inputs = beat_inputs(x360, rpeaks_ok, INTERNAL_FS)
            if inputs.turned_over and UPSIDE_DOWN_WARNING not in self.notices:
                self.notices.append(UPSIDE_DOWN_WARNING)
            every = classify_beats(self._classifiers, inputs)
            checked, _ = morphology_checked_labels(inputs.waveforms, every["aami_probs"])
            labels = {key: every[key][chosen] for key in ("aami_probs", "binary_p_abnormal")}
            labels["aami"] = checked[chosen]
            labels["binary"] = served_binary_labels(labels["binary_p_abnormal"],
                                                    labels["aami"])
        done, done_wall = time.monotonic(), time.time()
        out = []
        for k, (i, next_known) in enumerate(new):
            sample = first + int(local[i])
            arrived = arrival[int(local[i])]
            latency = done - arrived if np.isfinite(arrived) else float("nan")
            if labels is not None:
                probs = labels["aami_probs"][k]
                aami = str(labels["aami"][k])
                aami_p = float(probs[AAMI_CLASSES.index(aami)])
                binary = str(labels["binary"][k])
                p_abn = float(labels["binary_p_abnormal"][k])
                binary_p = p_abn if binary == "abnormal" else 1.0 - p_abn
            else:
                aami, aami_p, binary, binary_p = "", float("nan"), "", float("nan")
            out.append(LiveBeat(sample, sample / fs, aami, aami_p, binary, binary_p,
                                float(latency), next_known, done_wall))
        return out

    def _accept(self, beats: list[LiveBeat]) -> None:
        try:
            self._accept_locked(beats)
        finally:
            if beats:
                self.beats_added.set()

    def _accept_locked(self, beats: list[LiveBeat]) -> None:
        with self._lock:
            for beat in beats:
                self._beats.append(beat)
                if beat.aami in self._counts:
                    self._counts[beat.aami] += 1
                if np.isfinite(beat.latency_s):
                    start_s = (self._first_seq or 0) / self._fs
                    # Beats of the first seconds wait for the analysis to begin at all.
                    if beat.time_s - start_s < self.settings.min_signal_s:
                        self._startup_latencies.append(beat.latency_s)
                    else:
                        self._latencies.append(beat.latency_s)
                if self._v_streak and beat.time_s - self._v_streak[-1].time_s > PLAUSIBLE_RR_S[1]:
                    self._v_streak = []  # a gap (leads off...) breaks a run
                if beat.aami == "V":
                    self._v_streak.append(beat)
                    if len(self._v_streak) == V_RUN_MIN:
                        self._runs.append(VRun(self._v_streak[0].time_s, beat.time_s,
                                               V_RUN_MIN))
                    elif len(self._v_streak) > V_RUN_MIN:
                        self._runs[-1].end_s = beat.time_s
                        self._runs[-1].n_beats = len(self._v_streak)
                else:
                    self._v_streak = []

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> str:
        """``starting``, ``waiting`` (for the header), ``recording``, ``reconnecting`` (the
        port vanished, the recorder tries to reopen it), ``stopped``, ``failed``."""
        with self._lock:
            return self._state

    @property
    def finished(self) -> bool:
        """Whether the recorder has ended (stopped, failed, or the stream ended)."""
        return self._finished.is_set()

    @property
    def running(self) -> bool:
        """Whether threads were started and the recorder has not ended yet."""
        return bool(self._threads) and not self._finished.is_set()

    @property
    def source(self) -> str:
        """What is being recorded, for a human."""
        return self._source.description if self._source else ""

    def beats(self) -> list[LiveBeat]:
        """Every beat reported so far, in order."""
        with self._lock:
            return list(self._beats)

    def runs(self) -> list[VRun]:
        """Runs of V beats so far."""
        with self._lock:
            return [VRun(r.start_s, r.end_s, r.n_beats) for r in self._runs]

    def stats(self) -> dict[str, Any]:
        """Counters, heart rate, leads-off and the latency figures (plain data).

        ``latency_median_s``, ``latency_p95_s`` and ``latency_max_s`` are over the beats
        whose R peak came after the first :attr:`LiveSettings.min_signal_s` of the stream
        (steady state); the beats of those first seconds are labelled only once the
        analysis can start, and their worst latency is ``startup_latency_max_s``.
        """
        with self._lock:
            beats = self._beats[-12:]
            latencies = list(self._latencies)
            startup = list(self._startup_latencies)
            summary = self._summary
            fs = self._fs
            leads_off_now = bool(self._chunks and self._chunks[-1].leads_off[-1])
            out = {
                "state": self._state,
                "error": self._error,
                "source": self.source,
                "fs": fs,
                "n_samples": self._n_samples,
                "signal_s": (self._last_seq + 1 - (self._first_seq or 0)) / fs if fs else 0.0,
                "n_beats": len(self._beats),
                "counts": dict(self._counts),
                "messages": list(self._messages),
                "notices": list(self.notices),
                "runs": [VRun(r.start_s, r.end_s, r.n_beats) for r in self._runs],
                "rhythm": [asdict(f) for f in self._rhythm],
                "rhythm_span_s": self.settings.rhythm_span_s,
                "v_streak": len(self._v_streak),
                "classified": self._classifiers is not None,
                "vanished": self._vanished,
            }
        step_times = list(self._step_times)
        times = np.array([b.time_s for b in beats])
        rr = np.diff(times) if times.size > 1 else np.zeros(0)
        rates = beat_rates_bpm(rr)
        rates = rates[np.isfinite(rates)]
        out["heart_rate_bpm"] = float(np.median(rates)) if rates.size else None
        out["leads_off"] = leads_off_now or bool(summary and summary.leads_off_now)
        out["gaps"] = len(summary.gaps) if summary else 0
        out["lost_samples"] = summary.lost_samples if summary else 0
        out["garbled_lines"] = summary.garbled_lines if summary else 0
        out["latency_median_s"] = _percentile(latencies, 50)
        out["latency_p95_s"] = _percentile(latencies, 95)
        out["latency_max_s"] = max(latencies) if latencies else None
        out["n_latency"] = len(latencies)
        out["startup_latency_max_s"] = max(startup) if startup else None
        out["step_median_s"] = _percentile(step_times, 50)
        return out

    def view(self, span_s: float | None = None, max_points: int = 1200) -> dict[str, Any] | None:
        """The newest ``span_s`` seconds ready to draw.

        Returns
        -------
        dict or None
            ``t`` (s, float32) and ``y`` (conditioned, baseline-free ADC counts, float32,
            NaN in gaps and leads-off stretches), down-sampled to about ``max_points``;
            ``start_s``/``end_s``; ``beats`` in view (lists ``time_s``, ``aami``,
            ``binary``, ``aami_p``, ``binary_p``, ``y``); None before the first sample.
        """
        from ecgcore.signal import ecg_condition

        span_s = span_s or self.settings.display_s
        snap = self._snapshot(span_s)
        if snap is None:
            return None
        fs, x, first = snap["fs"], snap["x"], snap["first"]
        missing = ~np.isfinite(x)
        if missing.all() or x.size < 16:
            y = np.full(x.size, np.nan)
        else:
            y = ecg_condition(x, fs)
            y[missing] = np.nan
        t = (first + np.arange(x.size)) / fs
        if x.size > max_points:
            from dashboard.components.figures import downsample

            filled = np.where(missing, 0.0, y)
            index, _ = downsample(filled, 0, x.size, max_points)
            t, y = t[index], y[index]
        start_s = first / fs
        end_s = start_s + span_s
        with self._lock:
            since = len(self._beats)
            while since > 0 and self._beats[since - 1].time_s >= start_s:
                since -= 1
            beats = self._beats[since:]
        nearest = np.clip(np.searchsorted(t, [b.time_s for b in beats]), 0, max(0, t.size - 1))
        heights = [float(y[i]) if t.size and np.isfinite(y[i]) else 0.0 for i in nearest]
        return {
            "t": t.astype(np.float32), "y": y.astype(np.float32),
            "start_s": max(start_s, (first + x.size) / fs - span_s), "end_s": end_s,
            "now_s": (first + x.size) / fs,
            "beats": {
                "time_s": [b.time_s for b in beats], "aami": [b.aami for b in beats],
                "binary": [b.binary for b in beats], "aami_p": [b.aami_p for b in beats],
                "binary_p": [b.binary_p for b in beats], "y": heights,
            },
        }

    def snapshot(self, max_points: int = 1200, recent: int = 10) -> dict[str, Any]:
        """Everything the Live page shows, as plain JSON-able data (for the shared store).

        Parameters
        ----------
        max_points : int
            Points of the visible window (see :meth:`view`).
        recent : int
            Newest beats listed in full.

        Returns
        -------
        dict
            ``state``, ``finished``, ``source``, ``started`` (ISO time), ``path`` (the CSV),
            ``stats`` (:meth:`stats`, runs as dicts), ``beats`` (the newest ``recent`` as
            dicts) and ``view`` (:meth:`view` with ``t``/``y`` as plotly.js typed arrays,
            base64 float32), or None before the first sample.
        """
        from dataclasses import asdict

        from dashboard.components.figures import typed

        view = self.view(max_points=max_points)
        if view is not None:
            view["t"], view["y"] = typed(view["t"]), typed(view["y"])
        stats = self.stats()
        stats["runs"] = [asdict(run) for run in stats["runs"]]
        with self._lock:
            beats = [asdict(beat) for beat in self._beats[-recent:]] if recent else []
        return {
            "state": stats["state"], "finished": self.finished, "source": self.source,
            "started": self.started_wall.isoformat(), "path": str(self.out_path),
            "stats": stats, "beats": beats, "view": view,
        }

    # ----------------------------------------------------------------- stopping

    def request_stop(self) -> None:
        """Ask the recorder to stop and return at once (:attr:`finished` tells when it has)."""
        self._stop.set()

    def stop(self, timeout_s: float = 15.0) -> Path | None:
        """Stop the recorder (and simulator), wait for the threads, return the saved CSV.

        Returns
        -------
        Path or None
            The recorder's file, or None when nothing was recorded (no header came).
        """
        self._stop.set()
        if not self._threads:  # never started
            self._finished.set()
            return None
        deadline = time.monotonic() + timeout_s
        self._finished.wait(timeout_s)
        self._stop_sim.set()
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        if self._sim_dir is not None:
            shutil.rmtree(self._sim_dir, ignore_errors=True)
        return self.out_path if self.out_path.is_file() and self._n_samples else None

    def saved_path(self) -> Path | None:
        """The recording's file once the recorder has ended, else None."""
        if not self.finished:
            return None
        return self.out_path if self.out_path.is_file() and self._n_samples else None


LIVE_NAMESPACE = "live:"
"""Prefix of the store namespace of a browser session's Live stream. It is kept apart from
the session's uploads, so the stream's frequent writes never push an upload out of the
session's bounded set of entries."""
CONTROL_KEY = "control"
"""``{"stream": id, "stop": bool}``: the session's current stream, and whether to stop it."""
SEEN_KEY = "seen"
"""When the page last polled (wall clock), for the owner's idle check."""
STREAM_KEYS = 6
"""Most entries of a Live namespace: the control, the seen time and the stream states."""
SEEN_EVERY_S = 5.0
"""A poll refreshes :data:`SEEN_KEY` only when the owner's copy is older than this."""

Register = Callable[[str, Path, str, str], str]
"""``register(session_id, csv_path, started_iso, source) -> record_id``: make a saved file a
record of the browser session (the page does it with the session store)."""


def _state_key(stream_id: str) -> str:
    return f"state-{stream_id}"


@dataclass
class _Owned:
    """A stream run by this process."""

    session_id: str
    stream_id: str
    live: LiveSession
    seen: float
    thread: threading.Thread | None = None
    asked: bool = False

    def ask_stop(self, why: str) -> None:
        """Stop the recorder (at once) and say why, once."""
        if not self.asked and not self.live.finished:
            self.live._say(why)
        self.asked = True
        self.live.request_stop()


class LiveHub:
    """The Live streams of a server, whichever of its worker processes runs each one.

    A stream runs in the process that received its Start: the recorder (the serial
    reader), the analysis and, for the simulator, the fake board are threads there. A
    publisher thread of that process writes the stream's state every ``publish_s`` into
    the shared session store (:mod:`dashboard.state`: SQLite on disk or Redis), under a
    namespace of the browser session that started it: what the page shows
    (:meth:`LiveSession.snapshot`: status, errors, counters, the visible window, the
    newest beats) plus a heartbeat. So any process answers the page's polls
    (:meth:`read`), and Stop from any process writes a flag (:meth:`request_stop`) that
    the owner reads on its next beat. Another browser session has another namespace and
    never sees the stream.

    When the recorder ends (Stop, the device gone, an error), the owner registers the
    saved file as a record of the browser session (``register``) and publishes the final
    state; it then forgets the stream (the store keeps its final state, with the store's
    expiry and bounds). If the owner's process dies, the heartbeat stops: a poll finding
    it older than ``stale_s`` shows the stream as ended and registers the file written so
    far (the recorder writes whole lines only). On a clean shutdown (atexit: gunicorn's
    SIGTERM) the owner stops its streams and publishes their final state itself.

    Parameters
    ----------
    root : path
        Folder under which each browser session gets its own folder of recordings.
    store : SessionStore
        The store shared by every process of the server.
    max_live : int
        Most streams running at once in this process.
    idle_timeout_s : float
        Stop a stream whose page has stopped polling for this long (a hidden tab may be
        throttled by the browser to one poll a minute, so keep it well above that).
    settings : LiveSettings, optional
    register : callable, optional
        See :data:`Register`; without it saved files are not registered.
    publish_s : float
        Period of the owner's publishing (and of its reading of the Stop flag).
    stale_s : float
        A running stream whose heartbeat is older than this is taken for dead.
    classifiers : optional
        Preloaded classifiers for every stream (default: each loads the packaged ones).
    """

    def __init__(self, root: str | Path, store: SessionStore, *, max_live: int = 4,
                 idle_timeout_s: float = 180.0, settings: LiveSettings | None = None,
                 register: Register | None = None, publish_s: float = 0.25,
                 stale_s: float = 15.0, max_points: int = 1200, recent_beats: int = 10,
                 classifiers: Any = None) -> None:
        self.root = Path(root)
        self.store = store
        self.max_live = max_live
        self.idle_timeout_s = idle_timeout_s
        self.settings = settings or LiveSettings()
        self.register = register
        self.publish_s = publish_s
        self.stale_s = stale_s
        self.max_points = max_points
        self.recent_beats = recent_beats
        self.classifiers = classifiers
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._owned: dict[str, _Owned] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        atexit.register(self.shutdown)

    def session_dir(self, session_id: str) -> Path:
        """The folder of one browser session's recordings (named by a hash of its id)."""
        return self.root / hashlib.sha256(session_id.encode()).hexdigest()[:20]

    @staticmethod
    def _ns(session_id: str) -> str:
        return LIVE_NAMESPACE + session_id

    def _put(self, session_id: str, key: str, value: Any) -> None:
        self.store.put(self._ns(session_id), key, value, max_keys=STREAM_KEYS)

    def running_here(self) -> int:
        """Streams this process runs now."""
        with self._lock:
            return sum(not o.live.finished for o in self._owned.values())

    # ------------------------------------------------------------------ starting

    def start(self, session_id: str, begin: Callable[[LiveSession], None]) -> str:
        """Start a stream for a browser session in this process (ending its previous one).

        Parameters
        ----------
        session_id : str
            The browser session's id.
        begin : callable
            Called with the new :class:`LiveSession` to start it
            (``start_simulator``/``start_port``); what it raises is raised.

        Returns
        -------
        str
            The stream's id.
        """
        if not session_id or not isinstance(session_id, str):
            raise LiveError("this page needs its session id: reload the page")
        self._end_previous(session_id)
        with self._lock:
            running = sum(not o.live.finished for o in self._owned.values())
            if running >= self.max_live:
                raise LiveError(f"{running} live streams are already running in this server "
                                "process (the limit): try again later")
            owned = _Owned(session_id, new_token(),
                           LiveSession(self.session_dir(session_id), self.settings,
                                       classifiers=self.classifiers), time.time())
            self._owned[owned.stream_id] = owned
        try:
            begin(owned.live)
        except BaseException:
            with self._lock:
                self._owned.pop(owned.stream_id, None)
            owned.live.stop()
            raise
        # The state first: a poll that finds the control always finds its state.
        self._publish(owned)
        self._put(session_id, SEEN_KEY, owned.seen)
        self._put(session_id, CONTROL_KEY, {"stream": owned.stream_id, "stop": False})
        owned.thread = threading.Thread(target=self._run, args=(owned,),
                                        name="live-publisher", daemon=True)
        owned.thread.start()
        return owned.stream_id

    def _end_previous(self, session_id: str, timeout_s: float = 20.0) -> None:
        """Stop the session's previous stream (wherever it runs) and wait for its end.

        Waiting matters for a real board: its port must be closed before it is reopened.
        """
        ns = self._ns(session_id)
        control = self.store.get(ns, CONTROL_KEY)
        if not control:
            return
        old = control["stream"]
        if not control.get("stop"):
            self._put(session_id, CONTROL_KEY, {"stream": old, "stop": True})
        with self._lock:
            owned = self._owned.get(old)
        if owned is not None:
            owned.ask_stop("stopped: a new stream was started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.store.get(ns, _state_key(old))
            if state is None or state["finished"]:
                break
            if self._stale(state):
                self._declare_dead(session_id, state)
                break
            time.sleep(0.1)
        self.store.delete(ns, _state_key(old))

    # ------------------------------------------------------------ the owner's side

    def _publish(self, owned: _Owned, *, final: bool = False, record_id: str | None = None,
                 saved_error: str | None = None) -> None:
        state = owned.live.snapshot(self.max_points, self.recent_beats)
        state.update(stream=owned.stream_id, owner=self.owner, heartbeat=time.time(),
                     seen=owned.seen, finished=final, record_id=record_id,
                     saved_error=saved_error)
        self._put(owned.session_id, _state_key(owned.stream_id), state)

    def _run(self, owned: _Owned) -> None:
        """The owner's loop: obey Stop, stop an unwatched stream, publish, then finish."""
        live, ns = owned.live, self._ns(owned.session_id)
        next_seen = 0.0
        while True:
            try:
                if not live.finished and not owned.asked:
                    control = self.store.get(ns, CONTROL_KEY) or {}
                    now = time.time()
                    if control.get("stream") != owned.stream_id:
                        owned.ask_stop("stopped: a new stream was started")
                    elif control.get("stop"):
                        owned.ask_stop("stopped from the page")
                    elif self._closing.is_set():
                        owned.ask_stop("stopped: the server is shutting down")
                    elif now >= next_seen:
                        next_seen = now + 1.0
                        seen = self.store.get(ns, SEEN_KEY)
                        if isinstance(seen, int | float):
                            owned.seen = max(owned.seen, float(seen))
                        if now - owned.seen > self.idle_timeout_s:
                            owned.ask_stop(f"stopped: the page was not seen for "
                                           f"{self.idle_timeout_s:g} s")
                if live.finished:
                    break
                self._publish(owned)
            except Exception as error:  # noqa: BLE001 -- a store hiccup must not end the stream
                live._say(f"the stream's state could not be shared ({type(error).__name__}: "
                          f"{error})")
            # New beats are published at once (they are what the page waits for), the
            # rest every publish_s.
            live.beats_added.wait(self.publish_s)
            live.beats_added.clear()
        self._finish(owned)

    def _finish(self, owned: _Owned) -> None:
        live = owned.live
        # The recorder has ended: this joins the threads and removes the simulator's link.
        path = live.stop()
        record_id = saved_error = None
        if path is not None and self.register is not None:
            try:
                record_id = self.register(owned.session_id, path, live.started_wall.isoformat(),
                                          live.source)
            except EcgError as error:
                saved_error = str(error)
            except Exception as error:  # noqa: BLE001 -- shown on the page
                saved_error = f"{type(error).__name__}: {error}"
        for attempt in range(10):
            try:
                self._publish(owned, final=True, record_id=record_id, saved_error=saved_error)
                break
            except Exception:  # noqa: BLE001 -- retried: the page waits for this state
                time.sleep(0.2 * (attempt + 1))
        with self._lock:
            self._owned.pop(owned.stream_id, None)

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """Stop this process's streams and publish their final state (called at exit)."""
        self._closing.set()
        with self._lock:
            owned = list(self._owned.values())
        for o in owned:
            o.ask_stop("stopped: the server is shutting down")
        deadline = time.monotonic() + timeout_s
        for o in owned:
            if o.thread is not None:
                o.thread.join(max(0.1, deadline - time.monotonic()))

    # ------------------------------------------------------------ any process's side

    def _stale(self, state: dict) -> bool:
        return not state["finished"] and time.time() - state["heartbeat"] > self.stale_s

    def read(self, session_id: str | None) -> dict[str, Any] | None:
        """The session's stream as the page shows it (from the store), or None.

        A dict as published by the owner (see :meth:`LiveSession.snapshot`) plus
        ``stream``, ``owner``, ``heartbeat``, ``finished`` (the final state: the file is
        saved and registered), ``record_id`` and ``saved_error``. A stream whose owner has
        stopped publishing is returned ended, with an error saying so.
        """
        found = self._stream(session_id)
        if found is None:
            return None
        control, state = found
        if state["finished"]:
            return state
        if self._stale(state):
            return self._declare_dead(session_id, state)
        if control.get("stop") and state["state"] not in ("stopped", "failed"):
            state["state"] = "stopping"
        now = time.time()
        if now - (state.get("seen") or 0.0) > SEEN_EVERY_S:
            self._put(session_id, SEEN_KEY, now)
        return state

    def _stream(self, session_id: str | None) -> tuple[dict, dict] | None:
        """The session's latest stream in the store: its control and its state, or None."""
        if not session_id or not isinstance(session_id, str):
            return None
        ns = self._ns(session_id)
        control = self.store.get(ns, CONTROL_KEY)
        if not control:
            return None
        state = self.store.get(ns, _state_key(control["stream"]))
        return None if state is None else (control, state)

    def _declare_dead(self, session_id: str, state: dict) -> dict:
        """End a stream whose owner stopped publishing; register what it had saved."""
        age = time.time() - state["heartbeat"]
        error = (f"The server process running this stream ({state['owner']}) stopped "
                 f"answering {age:.0f} s ago: the stream has ended.")
        state = {**state, "state": "failed", "finished": True}
        state["stats"] = {**state["stats"], "state": "failed", "error": error}
        path = Path(state["path"])
        if self.register is not None and path.is_file() and state["stats"]["n_samples"]:
            try:
                state["record_id"] = self.register(session_id, path, state["started"],
                                                   state["source"])
            except EcgError as exc:
                state["saved_error"] = str(exc)
        self._put(session_id, _state_key(state["stream"]), state)
        return state

    def request_stop(self, session_id: str | None) -> bool:
        """Ask the session's running stream to stop (whichever process runs it).

        Returns
        -------
        bool
            Whether a running stream was asked to stop.
        """
        found = self._stream(session_id)
        if found is None or found[1]["finished"]:
            return False
        control = found[0]
        if not control.get("stop"):
            self._put(session_id, CONTROL_KEY, {**control, "stop": True})
        with self._lock:
            owned = self._owned.get(control["stream"])
        if owned is not None:  # no need to wait for the owner's next beat
            owned.ask_stop("stopped from the page")
        return True


def measure(record_path: str | Path, seconds: float, *, start_s: float = 0.0,
            speed: float = 1.0, out_dir: str | Path | None = None,
            settings: LiveSettings | None = None, classifiers: Any = None) -> dict[str, Any]:
    """Play a recording through the simulator into a :class:`LiveSession` and measure it.

    Returns the session's :meth:`~LiveSession.stats` plus, when the recording has
    reference annotations, the beats matched to them (``ecgcore.metrics.match_beats``,
    150 ms): ``sensitivity``, ``ppv``, and the reference class of each matched beat
    next to the live AAMI label (``agreement``).
    """
    from ecgcore.metrics import MATCH_TOLERANCE_S, match_beats, reference_beats

    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="ecg-live-"))
    live = LiveSession(out_dir, settings, classifiers=classifiers)
    live.start_simulator(record_path, start_s=start_s, speed=speed)
    deadline = time.monotonic() + seconds / speed
    while time.monotonic() < deadline and not live.finished:
        time.sleep(0.2)
    saved = live.stop()
    result = live.stats()
    result["runs"] = [vars(run) for run in result["runs"]]
    result["saved"] = str(saved) if saved else None
    beats = live.beats()
    try:
        from ecgcore.io import read

        annotations = read(str(record_path)).annotations
    except EcgError:
        annotations = None
    if annotations is not None and result["fs"]:
        fs = result["fs"]
        ref, classes = reference_beats(annotations.sample, list(annotations.symbol))
        first = int(round(start_s * fs))
        inside = (ref >= first) & (ref < first + result["n_samples"])
        ref, classes = ref[inside] - first, classes[inside]
        match = match_beats(ref, np.array([b.sample for b in beats]), MATCH_TOLERANCE_S * fs)
        labels = np.array([b.aami for b in beats])
        result["reference"] = {
            "n_reference": int(ref.size), "sensitivity": match.sensitivity, "ppv": match.ppv,
            "reference_classes": "".join(classes[match.ref_index]),
            "live_labels": "".join(labels[match.test_index]),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m dashboard.live --record PATH``: measure the live latency on a recording."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--record", required=True, help="recording (e.g. an MIT-BIH path)")
    parser.add_argument("--seconds", type=float, default=30.0, help="signal time to play")
    parser.add_argument("--start", type=float, default=0.0, help="where to start (s)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = measure(args.record, args.seconds, start_s=args.start, speed=args.speed)
    result["settings"] = vars(LiveSettings())
    result["args"] = vars(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
