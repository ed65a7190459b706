"""A fake ``ecg_ad8232`` board: plays a recording over a pseudo-terminal, in real time.

The simulator opens a pty pair with :func:`os.openpty`, points ``link_path`` (a symlink) at
the slave side, and writes the protocol of :mod:`acquisition.protocol` on the master side,
so the recorder opens ``link_path`` exactly as it would open ``/dev/ttyACM0``.

It behaves like an Arduino Uno: nothing is sent until a reader opens the port; opening the
port "resets the board" (a header, then ``seq`` from 0). If the reader goes away the
recording keeps playing in real time unheard; the next reader gets a new header and the
signal from wherever it has got to. At the end of the recording it sends ``#END`` (a real
board never does) and waits for the reader to close, because bytes still in the pty when
the master closes are thrown away by the kernel.

Values: a physical signal in mV becomes 10-bit counts as ``round(512 + 200 * mV)``,
clipped to 0..1023 (an AD8232 board has a gain of about 1100, i.e. about 225 counts per mV
at a 5 V reference; 200 keeps MIT-BIH's largest QRS inside the range). A recording
already in ADC counts (``adu``) is sent as is. Missing samples (NaN) are not sent and
consume a sequence number, as on the board.

Everything random (noise, drops, garbling, leads-off) is drawn up front from ``seed``, so
two runs with the same arguments send the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import time
import tty
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from acquisition.protocol import (
    HEADER_EVERY,
    PLAIN_LEADS_OFF,
    Garbled,
    format_header,
    format_message,
    format_sample,
    parse_line,
)
from ecgcore.errors import EcgError

ADC_MID = 512
COUNTS_PER_MV = 200.0
ADC_MAX = 1023
SIM_DEVICE = "AD8232-Sim"
SIM_FIRMWARE = "1.0.0"
CHUNK_S = 0.01
"""The writer wakes every 10 ms and sends every line that has come due."""
BOOT_S = 0.3
"""Time from a reader opening the port to the board's first line, as a board that resets
when its port opens (an Uno's bootloader takes longer still). Lines sent at once could be
thrown away: a reader flushes its input just after opening the port (pyserial does), and
on a busy machine that flush can come after the first lines, header included."""


class SimulatorError(EcgError):
    """The simulator cannot start (unreadable recording, link path taken...)."""


@dataclass
class SimulationSummary:
    """What the fake board did; ``dropped`` and ``garbled`` are the test's ground truth.

    Sample numbers are counted from the first sample of the (last) reader session, as the
    recorder numbers them.
    """

    fs: float
    samples_planned: int = 0
    lines_sent: int = 0
    dropped: list[int] = field(default_factory=list)
    garbled: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    leads_off_samples: int = 0
    sessions: int = 0
    max_lag_s: float = 0.0
    ended: str = ""


def load_signal(
    path: str | os.PathLike, lead: str | int | None = None
) -> tuple[np.ndarray, float, str]:
    """Read one lead of any recording: ``(signal, fs, unit)``.

    Uses ``ecgcore.io.read`` (every format the workbench reads) when it is available,
    else WFDB directly.
    """
    try:
        from ecgcore.io import read
    except ImportError:
        read = None
    if read is not None:
        recording = read(str(path))
        index = recording.lead_index(lead)
        signal = recording.signal[:, index].astype(np.float64)
        return signal, float(recording.fs), recording.units[index]
    import wfdb

    stem = str(path)
    for suffix in (".hea", ".dat", ".atr"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    try:
        rec = wfdb.rdrecord(stem)
    except Exception as error:  # wfdb raises many kinds; the message is what matters
        raise SimulatorError(f"cannot read recording {path}: {error}") from None
    index = 0 if lead is None else (int(lead) if str(lead).isdigit() else rec.sig_name.index(lead))
    return rec.p_signal[:, index].astype(np.float64), float(rec.fs), rec.units[index]


def to_adc_counts(signal: np.ndarray, unit: str) -> np.ndarray:
    """Physical values to 10-bit counts (float; NaN stays NaN for a missing sample)."""
    unit = (unit or "").lower()
    if unit in {"adu", "count", "counts", ""}:
        counts = np.round(signal)
    else:
        scale = {"uv": 1e-3, "µv": 1e-3, "v": 1e3}.get(unit, 1.0)
        counts = np.round(ADC_MID + COUNTS_PER_MV * scale * signal)
    return np.clip(counts, 0, ADC_MAX)


@dataclass
class _Plan:
    counts: np.ndarray  # float, NaN = missing
    leads_off: np.ndarray  # bool
    drop: np.ndarray  # bool
    garble: np.ndarray  # bool
    garble_seed: np.ndarray  # one int per sample, so garbling is reproducible


def _plan(counts, fs, noise, drop_rate, garble_rate, leads_off_per_min, seed) -> _Plan:
    rng = np.random.default_rng(seed)
    n = len(counts)
    counts = counts.astype(np.float64).copy()
    if noise > 0:
        counts = np.clip(np.round(counts + rng.normal(0, noise * COUNTS_PER_MV, n)), 0, ADC_MAX)
    off = np.zeros(n, dtype=bool)
    if leads_off_per_min > 0:
        episodes = rng.poisson(leads_off_per_min * n / fs / 60.0)
        for start in rng.integers(0, n, episodes):
            length = int(rng.uniform(0.5, 3.0) * fs)
            off[start : start + length] = True
        # A detached electrode drives the AD8232 output to the rail.
        counts[off] = ADC_MAX
    drop = rng.random(n) < drop_rate
    garble = ~drop & (rng.random(n) < garble_rate)
    return _Plan(counts, off, drop, garble, rng.integers(0, 2**31, n))


def garble_line(line: bytes, rng: np.random.Generator) -> bytes:
    """Corrupt a line the way a noisy cable does, keeping its newline.

    Substitution, deletion, insertion of junk bytes or truncation. Only corruptions the
    protocol can detect are produced (a deletion or insertion slips past CRC-8 about once
    in 256; such draws are redrawn), so a test can account for every line exactly.
    """
    body = line.rstrip(b"\n")
    for _ in range(50):
        kind = int(rng.integers(0, 4))
        data = bytearray(body)
        where = int(rng.integers(0, len(data)))
        if kind == 0:
            data[where] = (data[where] + int(rng.integers(1, 256))) % 256
        elif kind == 1:
            del data[where]
        elif kind == 2:
            data[where:where] = bytes(rng.integers(0, 256, int(rng.integers(1, 4))).tolist())
        else:
            del data[where:]
        data = data.replace(b"\n", b"\xff")
        if isinstance(parse_line(bytes(data)), Garbled):
            return bytes(data) + b"\n"
    raise AssertionError("unreachable: a substitution is always detected")  # pragma: no cover


def _reader_present(master: int) -> bool:
    # The master reports POLLHUP while no process has the slave side open.
    poller = select.poll()
    poller.register(master, select.POLLHUP)
    return not any(event & select.POLLHUP for _, event in poller.poll(0))


def _make_link(link_path: Path, slave_name: str) -> None:
    if link_path.is_symlink():
        link_path.unlink()  # a stale link left by a killed simulator
    elif link_path.exists():
        raise SimulatorError(f"{link_path} exists and is not a symlink; choose another --port-link")
    link_path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(slave_name, link_path)


def simulate(
    record_path: str | os.PathLike,
    link_path: str | os.PathLike,
    speed: float = 1.0,
    noise: float = 0.0,
    drop_rate: float = 0.0,
    garble_rate: float = 0.0,
    leads_off: float = 0.0,
    seed: int = 0,
    duration_s: float | None = None,
    start_s: float = 0.0,
    lead: str | int | None = None,
    stop_event: threading.Event | None = None,
    reader_timeout_s: float | None = None,
    on_ready=None,
    on_message=None,
    plain: bool = False,
) -> SimulationSummary:
    """Play a recording as a fake board on a pseudo-terminal until it ends or is stopped.

    Parameters
    ----------
    record_path : path
        Any recording ``ecgcore.io`` reads (an MIT-BIH record path without extension...).
    link_path : path
        Symlink created to the pty's slave: the "port" a recorder opens.
    speed : float
        Multiplies the line rate (the header still gives the recording's rate).
    noise : float
        Standard deviation of added Gaussian noise, in mV.
    drop_rate, garble_rate : float
        Probability that a sample line is not sent / is sent corrupted.
    leads_off : float
        Leads-off episodes per minute (0.5-3 s each, flag set, output at the rail).
    seed : int
        Seed of every random choice.
    duration_s, start_s : float
        Which stretch of the recording to play (seconds).
    lead : str or int, optional
        Lead to play (default: lead II where the recording has it, else the first).
    stop_event : threading.Event, optional
        Set to stop (the link is removed, the reader sees the port vanish).
    reader_timeout_s : float, optional
        Give up if no reader opens the port within this time (default: wait forever).
    on_ready : callable, optional
        Called with the slave's device name once the link exists.
    on_message : callable, optional
        Called with human-readable events.
    plain : bool
        Print bare values instead of the protocol, as the AD8232 example sketches do: one
        ``analogRead`` count per line, ``!`` while the leads are off, no header, no sample
        numbers, no checksum, no end message (``ecg record --plain-rate``).

    Returns
    -------
    SimulationSummary
    """
    if speed <= 0:
        raise SimulatorError("--speed must be positive")
    for name, rate in (("drop rate", drop_rate), ("garble rate", garble_rate)):
        if not 0 <= rate < 1:
            raise SimulatorError(f"{name} must be in [0, 1), got {rate}")
    signal, fs, unit = load_signal(record_path, lead)
    first = int(round(start_s * fs))
    last = len(signal)
    if duration_s is not None:
        last = min(last, first + int(round(duration_s * fs)))
    if first >= last:
        raise SimulatorError(f"nothing to play: the recording has {len(signal) / fs:.1f} s")
    plan = _plan(to_adc_counts(signal[first:last], unit), fs, noise, drop_rate, garble_rate,
                 leads_off, seed)
    n = last - first
    summary = SimulationSummary(fs=fs, samples_planned=n)
    say = on_message or (lambda text: None)
    link_path = Path(link_path)

    master, slave = os.openpty()
    slave_name = os.ttyname(slave)
    tty.setraw(slave)
    os.close(slave)  # keep no slave fd ourselves, so POLLHUP tells whether a reader is there
    os.set_blocking(master, False)
    try:
        _make_link(link_path, slave_name)
        if on_ready is not None:
            on_ready(slave_name)
        say(f"fake board on {link_path} -> {slave_name}: {n} samples at {fs:g} Hz x{speed:g}")
        _serve(master, plan, fs, speed, summary, stop_event, reader_timeout_s, say, plain)
    finally:
        with contextlib.suppress(OSError):
            if link_path.is_symlink() and os.readlink(link_path) == slave_name:
                link_path.unlink()
        os.close(master)
    return summary


def _serve(master, plan, fs, speed, summary, stop_event, reader_timeout_s, say,
           plain: bool = False) -> None:
    n = len(plan.counts)
    rate = fs * speed
    position = 0
    waited_since = time.monotonic()
    while position < n:
        # Wait for a reader; meanwhile the recording plays on unheard (a heart goes on).
        while not _reader_present(master):
            if stop_event is not None and stop_event.is_set():
                summary.ended = "stopped"
                return
            if reader_timeout_s is not None and time.monotonic() - waited_since > reader_timeout_s:
                summary.ended = "no reader"
                return
            time.sleep(0.02)
        if summary.sessions:
            position += int((time.monotonic() - waited_since) * rate)
            if position >= n:
                break
        summary.sessions += 1
        summary.dropped.clear()
        summary.garbled.clear()
        summary.missing.clear()
        say(f"reader connected (session {summary.sessions}); sending from sample {position}")
        position = _session(master, plan, fs, rate, position, summary, stop_event, plain)
        if summary.ended:
            return
        waited_since = time.monotonic()
        if position < n:
            say("reader went away")
    if not plain:  # a board printing bare values has no way to say it is done
        _send(master, format_message("END", "recording over"), stop_event)
    summary.ended = "recording over"
    # Bytes still queued in the pty die with the master: let the reader drain and close.
    deadline = time.monotonic() + 5.0
    while _reader_present(master) and time.monotonic() < deadline:
        time.sleep(0.02)


def _session(master, plan, fs, rate, position, summary, stop_event, plain: bool = False) -> int:
    n = len(plan.counts)
    booted = time.monotonic() + BOOT_S
    while time.monotonic() < booted:
        if stop_event is not None and stop_event.is_set():
            summary.ended = "stopped"
            return position
        time.sleep(CHUNK_S)
    base = position
    pending = bytearray() if plain else bytearray(format_header(SIM_DEVICE, SIM_FIRMWARE, fs,
                                                                 seq=0))
    start = time.monotonic()
    while position < n:
        if stop_event is not None and stop_event.is_set():
            summary.ended = "stopped"
            return position
        if not _reader_present(master):
            return position
        now = time.monotonic()
        due = min(n, base + int((now - start) * rate) + 1)
        for index in range(position, due):
            seq = index - base
            if seq and seq % HEADER_EVERY == 0 and not plain:
                pending += format_header(SIM_DEVICE, SIM_FIRMWARE, fs, seq=seq)
            value = plan.counts[index]
            if np.isnan(value):
                summary.missing.append(seq)
                continue
            if plan.drop[index]:
                summary.dropped.append(seq)
                continue
            if plain:
                line = PLAIN_LEADS_OFF + b"\r\n" if plan.leads_off[index] else (
                    b"%d\r\n" % int(value))
            else:
                line = format_sample(seq, int(value), plan.leads_off[index])
            if plan.garble[index]:
                line = garble_line(line, np.random.default_rng(plan.garble_seed[index]))
                summary.garbled.append(seq)
            else:
                summary.lines_sent += 1
                summary.leads_off_samples += int(plan.leads_off[index])
            pending += line
        position = due
        written = _write_some(master, pending)
        del pending[:written]
        if pending:
            # Lines produced but not yet taken by the pty: how far behind real time we are.
            summary.max_lag_s = max(summary.max_lag_s, pending.count(b"\n") / rate)
        time.sleep(CHUNK_S)
    # The last lines must reach the reader before #END.
    while pending and _reader_present(master):
        written = _write_some(master, pending)
        del pending[:written]
        time.sleep(0.001)
    return position


def _write_some(master: int, data: bytearray) -> int:
    if not data:
        return 0
    try:
        return os.write(master, data)
    except BlockingIOError:
        return 0  # the reader is slow: keep the bytes, the lag shows in max_lag_s
    except OSError:
        return 0


def _send(master: int, data: bytes, stop_event) -> None:
    data = bytearray(data)
    deadline = time.monotonic() + 2.0
    while data and time.monotonic() < deadline:
        del data[: _write_some(master, data)]


def write_truth(summary: SimulationSummary, path: str | os.PathLike) -> None:
    """Save the summary as JSON (the ground truth a test compares the recorder against)."""
    Path(path).write_text(json.dumps(asdict(summary)))


if __name__ == "__main__":
    from acquisition.commands import simulate_main

    sys.exit(simulate_main(sys.argv[1:]))
