"""Record an ``ecg_ad8232`` board (or the simulator) from a serial port to the CSV format.

The file format (read back by ``ecgcore.io``)::

    # format: ecg-workbench-recorder-1
    # fs_hz: 360
    # device: AD8232-Uno
    # firmware: 1.0.0
    # bits: 10
    # start_time: 2026-11-22T00:30:00.123456Z
    # port: /dev/ttyACM0
    seq,time_s,value,leads_off
    0,0.000000,517,0
    1,0.002778,519,0
    3,0.008333,522,0

``seq`` is the sample number since the start, unwrapped from the device's 16-bit counter;
a jump (2 -> 3 above) is a lost sample, never an interpolated one. ``time_s = seq / fs_hz``.
``start_time`` is the PC clock (UTC) when the header announcing sample 0 arrived, less the
samples kept from before that header (a board that was already streaming when the port
opened sends samples before its first header; those leading in sequence up to the header
are kept, the first of them is sample 0). Comments
appear only at the top: gaps are reported by the :class:`RecordingSummary` and on the
progress line, and are visible in the file as seq jumps.

The file only ever holds whole lines: rows are written with one ``os.write`` of complete
lines at least every :data:`FLUSH_EVERY_S` and ``fsync`` ed every :data:`FSYNC_EVERY_S`, so
a killed recorder loses at most the last half second and a power cut the last second.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from acquisition.protocol import (
    DEFAULT_BAUD,
    LEADS_OFF,
    MAX_LINE,
    PLAIN_RATE_AUTO,
    SEQ_MODULUS,
    Garbled,
    Header,
    Message,
    Sample,
    parse_line,
    parse_plain_line,
    seq_delta,
    unwrap_near,
)
from ecgcore.errors import EcgError

CSV_COLUMNS = "seq,time_s,value,leads_off"
FILE_FORMAT = "ecg-workbench-recorder-1"
FLUSH_EVERY_S = 0.5
FSYNC_EVERY_S = 1.0
PROGRESS_EVERY_S = 0.5
ASK_HEADER_AFTER_S = 2.5
EARLY_LIMIT = SEQ_MODULUS // 4
"""Samples kept from before the first header (a quarter of the counter's range keeps their
place unambiguous; at 360 Hz, 45 s)."""
SILENCE_WARNING_S = 3.0
CONFIRM_WINDOW = 64
"""A jump of more than a second must be followed by a line at most this far on."""
PLAIN_DEVICE = "plain-serial-stream"
"""The ``device`` a plain stream's file names (:class:`PlainStreamDecoder`)."""
PLAIN_HINT_LINES = 20
"""Bare numbers, at least this many and most of what arrived, make the refusal of a port
that does not speak the protocol say how to record them instead."""
PLAIN_RATE_MEASURE_S = 5.0
"""A plain stream's rate is measured over its first lines for this long (PC clock)."""
PLAIN_RATE_MIN_LINES = 20
"""... and from at least this many lines."""


class AcquisitionError(EcgError):
    """A recording could not start or the device does not speak the protocol."""


@dataclass(frozen=True)
class Gap:
    """Samples that never reached the file.

    Attributes
    ----------
    first : int
        Unwrapped number of the first missing sample.
    count : int
        How many consecutive samples are missing.
    cause : str
        ``"sequence jump"`` (the device's counter says exactly how many), ``"device
        restart"`` or ``"reconnect"`` (the length is estimated from the PC clock).
    estimated : bool
        Whether ``count`` is an estimate rather than counted by the device.
    """

    first: int
    count: int
    cause: str = "sequence jump"
    estimated: bool = False

    @property
    def last(self) -> int:
        """Unwrapped number of the last missing sample."""
        return self.first + self.count - 1


@dataclass
class RecordingSummary:
    """What a recording got and lost (also the progress snapshot while it runs)."""

    path: str
    port: str
    fs: float | None = None
    device: str | None = None
    firmware: str | None = None
    bits: int = 10
    start_time: str | None = None
    samples_written: int = 0
    last_seq: int = -1
    gaps: list[Gap] = field(default_factory=list)
    garbled_lines: int = 0
    out_of_sequence: int = 0
    before_header: int = 0
    messages: list[str] = field(default_factory=list)
    reconnects: int = 0
    leads_off_samples: int = 0
    leads_off_now: bool = False
    wall_s: float = 0.0
    stop_reason: str = ""

    @property
    def lost_samples(self) -> int:
        """Samples missing between the first and the last one written."""
        return sum(gap.count for gap in self.gaps)

    @property
    def duration_s(self) -> float:
        """Signal time covered by the file (first to last sample, gaps included)."""
        return (self.last_seq + 1) / self.fs if self.fs else 0.0

    def describe(self) -> str:
        """One line for a human."""
        rate = f"{self.fs:g} Hz" if self.fs else "rate unknown"
        return (
            f"{self.samples_written} samples ({self.duration_s:.1f} s at {rate}), "
            f"{len(self.gaps)} gap(s) / {self.lost_samples} lost, "
            f"{self.garbled_lines} garbled line(s); {self.stop_reason}"
        )


class _CsvSink:
    """Append-only writer of whole lines with timed flush and fsync."""

    def __init__(self, path: Path, header_lines: list[str]):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.rows: list[str] = []
        self._write("".join(line + "\n" for line in header_lines))
        os.fsync(self.fd)
        self.last_flush = self.last_fsync = time.monotonic()

    def _write(self, text: str) -> None:
        data = text.encode("ascii")
        while data:
            # A write to a regular file is not cut short by a signal, so the file holds
            # whole lines even if the process is killed right now.
            written = os.write(self.fd, data)
            data = data[written:]

    def add(self, seq: int, fs: float, value: int, leads_off: int) -> None:
        self.rows.append(f"{seq},{seq / fs:.6f},{value},{leads_off}\n")

    def maybe_flush(self, now: float) -> None:
        if now - self.last_flush >= FLUSH_EVERY_S:
            self.flush(now)

    def flush(self, now: float) -> None:
        if self.rows:
            self._write("".join(self.rows))
            self.rows.clear()
        self.last_flush = now
        if now - self.last_fsync >= FSYNC_EVERY_S:
            os.fsync(self.fd)
            self.last_fsync = now

    def close(self) -> None:
        self.flush(time.monotonic())
        os.fsync(self.fd)
        os.close(self.fd)


def _complete_lines(buffer: bytearray, summary: RecordingSummary) -> Iterator[bytes]:
    """Take the complete lines out of ``buffer`` one by one (without their newline).

    What is left is a partial line; one longer than :data:`MAX_LINE` is noise with no
    newline: it is thrown away (counted garbled) to wait for the next line start. A caller
    that stops early leaves the lines not yet taken in ``buffer``.
    """
    while True:
        newline = buffer.find(b"\n")
        if newline < 0:
            if len(buffer) > MAX_LINE:
                summary.garbled_lines += 1
                buffer.clear()
            return
        line = bytes(buffer[:newline])
        del buffer[: newline + 1]
        yield line


class StreamDecoder:
    """Turn the device's byte stream into unwrapped samples (no I/O: testable alone).

    Feed it bytes with :meth:`feed`; it parses whole lines, drops garbled ones (the next
    newline is the resynchronisation point), unwraps the 16-bit counter and records gaps
    in ``summary``. Accepted samples come back as ``(seq, value, leads_off)`` tuples.

    Parameters
    ----------
    summary : RecordingSummary
        Updated in place (counters, gaps, header fields).
    on_header : callable
        Called with the first :class:`Header` (the caller opens its file there).
    """

    def __init__(self, summary: RecordingSummary, on_header: Callable[[Header], None]):
        self.summary = summary
        self.on_header = on_header
        self.buffer = bytearray()
        self.header: Header | None = None
        self.last_u = -1
        self.last_wrapped = 0
        self.last_time = 0.0
        # (device seq or None, unwrapped number it maps to): how to place the next sample
        # after a header or an outage, instead of counting from the previous one.
        self.anchor: tuple[int | None, int] | None = None
        self.after_outage = False
        self.pending: tuple[Sample, int, tuple[int, int]] | None = None
        self.restart_cause: str | None = None
        self.ended = False
        self.rate_changed: float | None = None
        # Samples that came before the first header (a board that did not reset when the
        # port opened): kept until the header says where they belong.
        self.early: deque[Sample] = deque(maxlen=EARLY_LIMIT)
        self.early_kept = 0
        # Garbled lines that are bare numbers (another sketch), and when they came: what
        # the refusal of such a port says.
        self.plain_lines = 0
        self.plain_first_last: tuple[float, float] | None = None

    def feed(self, data: bytes, now: float) -> list[tuple[int, int, int]]:
        self.buffer += data
        out: list[tuple[int, int, int]] = []
        for line in _complete_lines(self.buffer, self.summary):
            self._line(line, now, out)
            if self.ended or self.rate_changed:
                break
        return out

    def outage(self) -> None:
        """The port went away: the partial line is lost, the next sample is placed by clock."""
        self.buffer.clear()
        if self.pending is not None:
            self.last_u, self.last_wrapped = self.pending[2]
            self.pending = None
        if self.header is not None:
            self.after_outage = True

    def _line(self, line: bytes, now: float, out: list) -> None:
        parsed = parse_line(line)
        if isinstance(parsed, Garbled):
            # Even an empty line counts: the device never sends one.
            self.summary.garbled_lines += 1
            if self.header is None and parse_plain_line(line) is not None:
                self.plain_lines += 1
                first = self.plain_first_last[0] if self.plain_first_last else now
                self.plain_first_last = (first, now)
            return
        if isinstance(parsed, Header):
            self._header(parsed, now, out)
        elif isinstance(parsed, Message):
            text = f"{parsed.kind} {parsed.text}".strip()
            self.summary.messages.append(text)
            if parsed.kind == "END":
                self.ended = True
                if self.pending is not None:
                    # A big jump nothing came to confirm: not believed (see _sample).
                    self.summary.out_of_sequence += 1
                    self.last_u, self.last_wrapped = self.pending[2]
                    self.pending = None
        elif isinstance(parsed, Sample):
            self._sample(parsed, now, out)

    def _clock_expected(self, now: float) -> int:
        return self.last_u + max(1, round((now - self.last_time) * self.header.fs))

    def _early_run(self, header: Header) -> list[Sample]:
        """The early samples that lead, in sequence, up to the header's next sample."""
        if header.seq is None or not self.early:
            return []
        kept: list[Sample] = []
        following = header.seq
        for sample in reversed(self.early):
            if not 1 <= seq_delta(sample.seq, following) <= CONFIRM_WINDOW:
                break
            kept.append(sample)
            following = sample.seq
        return kept[::-1]

    def _header(self, header: Header, now: float, out: list) -> None:
        if self.header is None:
            self.header = header
            self.summary.fs, self.summary.bits = header.fs, header.bits
            self.summary.device, self.summary.firmware = header.device, header.firmware
            kept = self._early_run(header)
            self.summary.before_header += len(self.early) - len(kept)
            self.early.clear()
            self.early_kept = len(kept)
            self.anchor = (kept[0].seq if kept else header.seq, 0)
            self.last_time = now
            self.on_header(header)
            for sample in kept:
                self._sample(sample, now, out)
            return
        if header.fs != self.header.fs:
            self.rate_changed = header.fs
            return
        if header.seq is None or self.last_u < 0:
            return
        if self.after_outage:
            expected = self._clock_expected(now)
            continued = unwrap_near(header.seq, expected)
            # A board that kept counting lands near the clock's guess; one that was reset
            # (an Uno resets when its port is opened) restarts from 0 anywhere else.
            tolerance = 0.5 * self.header.fs + 0.1 * (expected - self.last_u)
            if continued > self.last_u and abs(continued - expected) <= tolerance:
                self.anchor = (header.seq, continued)
                self.restart_cause = "reconnect"
            else:
                self.anchor = (header.seq, expected)
                self.restart_cause = "device restart"
            self.after_outage = False
        elif not 1 <= seq_delta(self.last_wrapped, header.seq) < SEQ_MODULUS // 2:
            self.anchor = (header.seq, self._clock_expected(now))
            self.restart_cause = "device restart"

    def _sample(self, sample: Sample, now: float, out: list) -> None:
        summary = self.summary
        if self.header is None:
            if len(self.early) == EARLY_LIMIT:
                summary.before_header += 1  # the oldest falls out
            self.early.append(sample)
            return
        if sample.value >= 1 << self.header.bits:
            summary.garbled_lines += 1
            return
        if self.anchor is not None:
            anchor_seq, anchor_u = self.anchor
            delta = 0 if anchor_seq is None else seq_delta(anchor_seq, sample.seq)
            if delta >= SEQ_MODULUS // 2:
                summary.out_of_sequence += 1
                return
            cause, self.restart_cause, self.anchor = self.restart_cause, None, None
            u = anchor_u + delta
            # A restarted board's gap is a clock estimate; a board that kept counting
            # gives it exactly unless the outage spans more than half a counter wrap.
            estimated = cause == "device restart" or (
                cause == "reconnect" and u - self.last_u > SEQ_MODULUS // 2
            )
            self._accept(sample, u, cause, estimated, now, out)
            return
        if self.after_outage:
            # Reconnected to a board that did not announce itself: it kept counting, so
            # its counter gives the gap modulo 65536 and the clock gives the wraps.
            u = unwrap_near(sample.seq, self._clock_expected(now))
            while u <= self.last_u:
                u += SEQ_MODULUS
            self.after_outage = False
            estimated = u - self.last_u > SEQ_MODULUS // 2
            self._accept(sample, u, "reconnect", estimated, now, out)
            return
        delta = seq_delta(self.last_wrapped, sample.seq)
        if self.pending is not None:
            # A big jump is only believed when the next line follows it closely; else it
            # was a corrupted counter that slipped through the checksum.
            held, held_u, previous = self.pending
            self.pending = None
            if 1 <= delta <= CONFIRM_WINDOW:
                self._accept(held, held_u, None, False, now, out)
                self._accept(sample, held_u + delta, None, False, now, out)
                return
            summary.out_of_sequence += 1
            self.last_u, self.last_wrapped = previous
            delta = seq_delta(self.last_wrapped, sample.seq)
        if not 1 <= delta < SEQ_MODULUS // 2:
            summary.out_of_sequence += 1
            return
        u = self.last_u + delta
        if delta > max(self.header.fs, 64) and self.last_u >= 0:
            self.pending = (sample, u, (self.last_u, self.last_wrapped))
            self.last_u, self.last_wrapped = u, sample.seq
            return
        self._accept(sample, u, None, False, now, out)

    def _accept(
        self, sample: Sample, u: int, cause: str | None, estimated: bool, now: float, out: list
    ) -> None:
        summary = self.summary
        previous = summary.last_seq
        if u > previous + 1:
            summary.gaps.append(Gap(previous + 1, u - previous - 1, cause or "sequence jump",
                                    estimated))
        out.append((u, sample.value, sample.leads_off))
        self.last_u, self.last_wrapped, self.last_time = u, sample.seq, now
        summary.last_seq = u
        summary.samples_written += 1
        summary.leads_off_samples += sample.leads_off
        summary.leads_off_now = bool(sample.leads_off)

    def plain_stream_hint(self) -> str | None:
        """If what arrived is mostly bare numbers: how to record them, and their rate."""
        garbled = self.summary.garbled_lines
        if self.plain_lines < PLAIN_HINT_LINES or self.plain_lines < 0.8 * garbled:
            return None
        first, last = self.plain_first_last
        rate = (self.plain_lines - 1) / (last - first) if last > first else None
        about = f" (about {rate:.0f} lines/s arrived)" if rate else ""
        return (f"the lines are bare numbers{about}, as the AD8232 example sketches print; "
                "to record them, give their sampling rate, or auto to measure it (ecg "
                "record --plain-rate HZ|auto, or the Live page's 'plain stream' rate)")


class PlainStreamDecoder:
    """Bare values, one per line, at a rate given or measured (no I/O: testable alone).

    The AD8232 example sketches print ``analogRead`` values (SparkFun's prints ``!``
    while an electrode is off) with no sample number, no checksum and no rate. So:

    - each number line is the next sample; a ``!`` line is a leads-off sample (its value
      repeats the last one; ecgcore reads it as missing);
    - any other line is counted garbled and dropped. Without sample numbers a lost or
      garbled line cannot be told from a late one: the samples after it move one place
      earlier, which is why the protocol of the ``ecg_ad8232`` sketch is better;
    - after the port comes back, the gap is estimated from the PC clock;
    - the first line after the port opens (or comes back) is skipped: the port opens
      wherever the board happens to be in its line, and a cut ``512`` read as ``12`` would
      be a wrong sample nothing could catch (the protocol's checksums catch it).

    The rate: given, or with ``fs`` :data:`PLAIN_RATE_AUTO`, measured as the lines that
    arrive per second of PC clock over the first :data:`PLAIN_RATE_MEASURE_S`. That is the
    board's true rate: these sketches print each value as they read it, and at 9600 baud
    the serial line, not their ``delay()``, sets the pace (960 bytes a second, 5 bytes a
    line: about 190 values a second for SparkFun's, not the 1000 its ``delay(1)``
    suggests). Those first lines are kept.

    Same interface as :class:`StreamDecoder`. The first sample (measured: once the rate
    is known) opens the file, with a :class:`Header` for ``device`` :data:`PLAIN_DEVICE`.
    """

    def __init__(self, summary: RecordingSummary, on_header: Callable[[Header], None],
                 fs: float | str):
        measure = isinstance(fs, str) and fs == PLAIN_RATE_AUTO
        if not measure and not (isinstance(fs, int | float) and fs > 0 and np.isfinite(fs)):
            raise AcquisitionError(f"the rate of a plain stream must be a positive number of "
                                   f"Hz or {PLAIN_RATE_AUTO!r}, not {fs!r}")
        self.summary = summary
        self.on_header = on_header
        self.fs: float | None = None if measure else float(fs)
        self.measuring: list[tuple[int, float]] = []
        self.rate_note = "as given"
        self.buffer = bytearray()
        self.header: Header | None = None
        self.last_u = -1
        self.last_value = 0
        self.last_time = 0.0
        self.after_outage = False
        self.early_kept = 0
        self.ended = False
        self.rate_changed: float | None = None
        self.at_line_start = False

    def feed(self, data: bytes, now: float) -> list[tuple[int, int, int]]:
        self.buffer += data
        out: list[tuple[int, int, int]] = []
        for line in _complete_lines(self.buffer, self.summary):
            if self.at_line_start:
                self._line(line, now, out)
            else:
                self.at_line_start = True  # the line the port opened in may be cut
        if self.fs is None:
            self._measure(now, out)  # a whole burst at a time: they share one arrival time
        return out

    def outage(self) -> None:
        """The port went away: the partial line is lost, the next sample is placed by clock."""
        self.buffer.clear()
        self.at_line_start = False
        # A rate measured across the outage would be wrong: measure again (no file yet).
        self.measuring.clear()
        if self.header is not None:
            self.after_outage = True

    def _line(self, line: bytes, now: float, out: list) -> None:
        value = parse_plain_line(line)
        if value is None:
            if line.strip():
                self.summary.garbled_lines += 1
            return  # a blank line (a sketch's println()) carries nothing
        if self.fs is not None:
            self._sample(value, now, out)
            return
        self.measuring.append((value, now))

    def _measure(self, now: float, out: list) -> None:
        """Once the lines have arrived for long enough, take their rate and pass them on."""
        if not self.measuring:
            return
        first, last = self.measuring[0][1], self.measuring[-1][1]
        if last - first < PLAIN_RATE_MEASURE_S or len(self.measuring) < PLAIN_RATE_MIN_LINES:
            return
        # Lines come in bursts, each burst at one clock reading: those of the first burst
        # were printed before the clock started, the rest between the first and the last.
        after_first = sum(1 for _, t in self.measuring if t > first)
        self.fs = round(after_first / (last - first), 1)
        self.rate_note = (f"measured: {after_first} lines in {last - first:.1f} s of "
                          "arrivals")
        kept, self.measuring = self.measuring, []
        self.early_kept = len(kept)
        for kept_value, _ in kept:
            self._sample(kept_value, now, out)

    def _sample(self, value: int, now: float, out: list) -> None:
        summary = self.summary
        if self.header is None:
            self.header = Header(PLAIN_DEVICE, "unknown", self.fs, 16)
            summary.fs, summary.bits = self.fs, 16
            summary.device, summary.firmware = PLAIN_DEVICE, "unknown"
            self.last_time = now
            self.on_header(self.header)
        leads_off = int(value == LEADS_OFF)
        value = self.last_value if leads_off else value
        u = self.last_u + 1
        if self.after_outage:
            self.after_outage = False
            u = self.last_u + max(1, round((now - self.last_time) * self.fs))
            if u > self.last_u + 1:
                summary.gaps.append(Gap(self.last_u + 1, u - self.last_u - 1, "reconnect",
                                        True))
        out.append((u, value, leads_off))
        self.last_u, self.last_value, self.last_time = u, value, now
        summary.last_seq = u
        summary.samples_written += 1
        summary.leads_off_samples += leads_off
        summary.leads_off_now = bool(leads_off)


def _utc_now(earlier_s: float = 0.0) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=earlier_s)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _open_port(port: str, baud: int):
    import serial

    return serial.Serial(port, baud, timeout=0.1)


def _ask_header(handle) -> None:
    import serial

    with contextlib.suppress(serial.SerialException, OSError):
        handle.write(b"?\n")


def record(
    port: str,
    out_path: str | os.PathLike,
    duration_s: float | None = None,
    baud: int = DEFAULT_BAUD,
    reconnect: bool = True,
    reconnect_timeout_s: float = 30.0,
    header_timeout_s: float = 12.0,
    overwrite: bool = True,
    on_progress: Callable[[RecordingSummary], None] | None = None,
    on_samples: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    plain_fs: float | str | None = None,
) -> RecordingSummary:
    """Record a board speaking :mod:`acquisition.protocol` (or, given ``plain_fs``, one
    printing bare values) into the CSV format.

    Parameters
    ----------
    port : str
        Serial device (``/dev/ttyACM0``, ``COM3``, or the simulator's link).
    out_path : path
        The CSV file, created when the device's header arrives.
    duration_s : float, optional
        Stop after this much signal time (``seq >= duration_s * fs``); ``None`` runs until
        ``stop_event``, the end of a simulated stream, or the port's loss.
    baud : int
        Serial speed; the sketch uses 115200.
    reconnect : bool
        When the port vanishes, try to reopen it for ``reconnect_timeout_s`` seconds.
    header_timeout_s : float
        Give up if no header line arrives within this time after opening.
    overwrite : bool
        Whether an existing ``out_path`` may be replaced.
    on_progress : callable, optional
        Called with the live :class:`RecordingSummary` about every 0.5 s.
    on_samples : callable, optional
        Called with ``(seq, value, leads_off)`` int64 arrays of each batch of new samples,
        as they are received (the live page's feed).
    on_message : callable, optional
        Called with human-readable events (port lost, reconnected, device messages).
    stop_event : threading.Event, optional
        Set it to stop cleanly from another thread.
    plain_fs : float or "auto", optional
        The board prints bare values, one per line, at this rate in Hz (the AD8232 example
        sketches; :class:`PlainStreamDecoder`), or :data:`PLAIN_RATE_AUTO`: at the rate
        they arrive, measured over :data:`PLAIN_RATE_MEASURE_S` (``header_timeout_s``
        then counts from the end of that). Without it such a board is refused, with a
        message that says so.

    Returns
    -------
    RecordingSummary
        Samples written, gaps, garbled lines, why it stopped.

    Raises
    ------
    AcquisitionError
        The port cannot be opened, or no header (in a plain stream, no value) came:
        nothing is written then.
    """
    import serial

    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise AcquisitionError(f"{out_path} already exists (choose another name or overwrite)")
    summary = RecordingSummary(path=str(out_path), port=str(port))
    say = on_message or (lambda text: None)
    sink: _CsvSink | None = None

    def open_file(header: Header) -> None:
        nonlocal sink
        # Sample 0 is the first sample kept from before the header, when there are any.
        summary.start_time = _utc_now(decoder.early_kept / header.fs)
        lines = [
            f"# format: {FILE_FORMAT}",
            f"# fs_hz: {header.fs:g}",
            f"# device: {header.device}",
            f"# firmware: {header.firmware}",
            f"# bits: {header.bits}",
            f"# start_time: {summary.start_time}",
            f"# port: {port}",
            CSV_COLUMNS,
        ]
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            sink = _CsvSink(out_path, lines)
        except OSError as error:
            raise AcquisitionError(f"cannot write {out_path}: {error.strerror or error}") from None
        if plain_fs is None:
            say(f"{header.device} firmware {header.firmware} at {header.fs:g} Hz; "
                f"writing {out_path}")
        else:
            say(f"plain stream (bare values, no sample numbers) at {header.fs:g} Hz "
                f"({decoder.rate_note}); writing {out_path}")

    decoder: StreamDecoder | PlainStreamDecoder = (
        StreamDecoder(summary, open_file) if plain_fs is None
        else PlainStreamDecoder(summary, open_file, plain_fs))
    try:
        handle = _open_port(port, baud)
    except (serial.SerialException, OSError, ValueError) as error:
        raise AcquisitionError(f"cannot open serial port {port}: {_reason(error)}") from None

    start = time.monotonic()
    last_progress = start
    stop_at = None
    # An Uno resets when its port opens and its bootloader would eat a request sent at
    # once; a board that did not reset (Nano clones, the simulator after a while) is asked
    # for its header once it has had time to boot, instead of waiting for the periodic one.
    ask_at = start + ASK_HEADER_AFTER_S if plain_fs is None else None
    measure_s = PLAIN_RATE_MEASURE_S if plain_fs == PLAIN_RATE_AUTO else 0.0
    last_data, silent, bytes_in = start, False, 0
    try:
        while True:
            if stop_event is not None and stop_event.is_set():
                summary.stop_reason = "stopped"
                break
            try:
                data = handle.read(max(1, handle.in_waiting))
            except (serial.SerialException, OSError) as error:
                with contextlib.suppress(Exception):
                    handle.close()
                decoder.outage()
                say(f"port {port} disappeared ({_reason(error)})")
                handle = _reconnect(port, baud, reconnect, reconnect_timeout_s, stop_event, say)
                if handle is None:
                    summary.stop_reason = "port lost"
                    break
                summary.reconnects += 1
                say(f"reconnected to {port}")
                if plain_fs is None:
                    ask_at = time.monotonic() + ASK_HEADER_AFTER_S
                continue
            now = time.monotonic()
            if ask_at is not None and now >= ask_at:
                if decoder.header is None or decoder.after_outage:
                    _ask_header(handle)
                ask_at = None
            if data:
                bytes_in += len(data)
                last_data = now
                if silent:
                    say(f"data from {port} again")
                    silent = False
                known_messages = len(summary.messages)
                accepted = decoder.feed(data, now)
                for text in summary.messages[known_messages:]:
                    say(f"device says: {text}")
                if stop_at is None and summary.fs and duration_s is not None:
                    stop_at = int(round(duration_s * summary.fs))
                if stop_at is not None:
                    accepted = [row for row in accepted if row[0] < stop_at]
                if accepted and sink is not None:
                    fs = summary.fs
                    for u, value, leads_off in accepted:
                        sink.add(u, fs, value, leads_off)
                    if on_samples is not None:
                        columns = np.asarray(accepted, dtype=np.int64).T
                        on_samples(columns[0], columns[1], columns[2])
                if decoder.ended:
                    summary.stop_reason = "device ended its stream"
                    break
                if decoder.rate_changed:
                    summary.stop_reason = (
                        f"device changed its rate to {decoder.rate_changed:g} Hz "
                        f"(this file is at {summary.fs:g} Hz)"
                    )
                    break
                if stop_at is not None and summary.last_seq >= stop_at - 1:
                    summary.stop_reason = f"duration reached ({duration_s:g} s)"
                    break
            elif sink is not None and not silent and now - last_data > SILENCE_WARNING_S:
                say(f"no data from {port} for {SILENCE_WARNING_S:g} s (electrode cable? board?)")
                silent = True
            if sink is None and now - start > header_timeout_s + measure_s:
                if plain_fs is not None:
                    heard = (f"{bytes_in} bytes arrived but no line was a bare number"
                             if bytes_in else "nothing arrived")
                    raise AcquisitionError(
                        f"no value from {port} within {header_timeout_s:g} s ({heard}): is "
                        f"the board printing one number per line at {baud} baud?")
                hint = decoder.plain_stream_hint()
                if hint is not None:
                    raise AcquisitionError(f"{port} does not speak the ecg_ad8232 protocol: "
                                           f"{hint}")
                heard = (f"{bytes_in} bytes arrived but no valid header line" if bytes_in
                         else "nothing arrived")
                raise AcquisitionError(
                    f"no ECG header from {port} within {header_timeout_s:g} s ({heard}): is "
                    f"the board running the ecg_ad8232 sketch at {baud} baud?"
                )
            if sink is not None:
                sink.maybe_flush(now)
            if on_progress is not None and now - last_progress >= PROGRESS_EVERY_S:
                summary.wall_s = now - start
                on_progress(summary)
                last_progress = now
    finally:
        with contextlib.suppress(Exception):
            handle.close()
        if sink is not None:
            sink.close()
        summary.wall_s = time.monotonic() - start
    if sink is None:
        raise AcquisitionError(f"no ECG header received from {port}; nothing was recorded")
    if on_progress is not None:
        on_progress(summary)
    return summary


def _reason(error: BaseException) -> str:
    # pyserial wraps the OSError as SerialException(errno, "could not open port ...: ...").
    if error.args and isinstance(error.args[0], int):
        return os.strerror(error.args[0])
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.splitlines()[0]


def _reconnect(port, baud, enabled, timeout_s, stop_event, say):
    import serial

    if not enabled or timeout_s <= 0:
        return None
    say(f"trying to reconnect to {port} for {timeout_s:g} s")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stop_event is not None and stop_event.is_set():
            return None
        try:
            return _open_port(port, baud)
        except (serial.SerialException, OSError, ValueError):
            time.sleep(0.25)
    say(f"gave up reconnecting to {port} after {timeout_s:g} s")
    return None


def list_ports() -> list[tuple[str, str]]:
    """Serial ports present, as ``(device, description)`` pairs."""
    from serial.tools import list_ports as tools

    return [(info.device, info.description or "") for info in sorted(tools.comports())]
