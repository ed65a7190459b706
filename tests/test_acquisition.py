"""Simulator -> pseudo-terminal -> recorder, end to end, with MIT-BIH record 100.

The simulator and the recorder talk over a real pty (os.openpty), exactly as the recorder
talks to a board's /dev/ttyACM0. The reference values are computed here from WFDB
directly, not with the simulator's code.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import wfdb

from acquisition.recorder import record
from acquisition.simulator import simulate
from ecgcore.errors import EcgError
from ecgcore.io import read

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RECORD_100 = DATA / "mitdb" / "100"
FS = 360
FAST = 20.0  # playback speed of the long round trips (60 s of signal in about 3 s)


@pytest.fixture(scope="module")
def reference_counts() -> np.ndarray:
    """MLII of record 100 as the documented mapping gives it: round(512 + 200 mV), 0..1023."""
    mv = wfdb.rdrecord(str(RECORD_100), sampto=FS * 120, channels=[0]).p_signal[:, 0]
    return np.clip(np.round(512 + 200 * mv), 0, 1023).astype(np.int64)


def read_csv(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """The recorder's format, read strictly with the csv module: (metadata, rows n x 4)."""
    meta: dict[str, str] = {}
    with open(path, newline="") as handle:
        lines = handle.read().split("\n")
    assert lines[-1] == "", "the file must end with a complete line"
    lines = lines[:-1]
    while lines and lines[0].startswith("#"):
        key, _, value = lines.pop(0)[1:].partition(":")
        meta[key.strip()] = value.strip()
    rows = list(csv.reader(lines))
    assert rows[0] == ["seq", "time_s", "value", "leads_off"]
    data = np.array([[int(r[0]), round(float(r[1]) * 1e6), int(r[2]), int(r[3])] for r in rows[1:]],
                    dtype=np.int64)
    fs = float(meta["fs_hz"])
    assert np.all(np.diff(data[:, 0]) > 0), "seq strictly increases"
    assert np.array_equal(data[:, 1], np.round(data[:, 0] / fs * 1e6)), "time_s = seq / fs"
    assert set(np.unique(data[:, 3])) <= {0, 1}
    return meta, data


def run_pair(tmp_path, sim_kwargs, rec_kwargs=None):
    """Simulator in a thread, recorder in this one; returns (simulation, recording, csv)."""
    link = tmp_path / "ttyECG"
    out = tmp_path / "rec.csv"
    result = {}
    ready, stop = threading.Event(), threading.Event()

    def play():
        result["sim"] = simulate(RECORD_100, link, on_ready=lambda name: ready.set(),
                                 reader_timeout_s=20, stop_event=stop, **sim_kwargs)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    assert ready.wait(20)
    try:
        summary = record(str(link), out, reconnect=False, **(rec_kwargs or {}))
    finally:
        stop.set()  # a recorder that stops early must not leave the board waiting
        thread.join(20)
    return result["sim"], summary, out


def test_round_trip_60s_of_record_100_is_sample_exact(tmp_path, reference_counts):
    sim, rec, out = run_pair(tmp_path, {"duration_s": 60, "speed": FAST})
    meta, data = read_csv(out)
    n = 60 * FS
    print(f"\nround trip x{FAST:g}: sent {sim.lines_sent}, written {rec.samples_written}, "
          f"identical {int(np.sum(data[:, 2] == reference_counts[:n]))}, "
          f"simulator max lag {sim.max_lag_s:.3f} s, recorder wall {rec.wall_s:.2f} s")
    assert sim.lines_sent == n and sim.ended == "recording over"
    assert rec.stop_reason == "device ended its stream"
    assert rec.samples_written == n and rec.gaps == [] and rec.garbled_lines == 0
    assert np.array_equal(data[:, 0], np.arange(n))
    assert np.array_equal(data[:, 2], reference_counts[:n])
    assert meta["fs_hz"] == "360" and meta["device"] == "AD8232-Sim"
    assert datetime.fromisoformat(meta["start_time"].replace("Z", "+00:00")).tzinfo is not None


def test_drops_and_garbles_are_reported_exactly(tmp_path, reference_counts):
    sim, rec, out = run_pair(
        tmp_path, {"duration_s": 60, "speed": FAST, "drop_rate": 0.01, "garble_rate": 0.01,
                   "seed": 7},
    )
    _, data = read_csv(out)
    n = 60 * FS
    lost_reported = sorted(gap.first + k for gap in rec.gaps for k in range(gap.count))
    lost_true = sorted(sim.dropped + sim.garbled)
    good = np.setdiff1d(np.arange(n), lost_true)
    print(f"\n1 % drop + 1 % garble: {n} samples, {sim.lines_sent} lines sent intact, "
          f"dropped {len(sim.dropped)}, garbled "
          f"{len(sim.garbled)}; recorder: {len(rec.gaps)} gaps / {rec.lost_samples} lost, "
          f"{rec.garbled_lines} garbled, {rec.samples_written} written")
    assert len(sim.dropped) > 100 and len(sim.garbled) > 100  # the faults really happened
    assert lost_reported == lost_true
    assert all(not gap.estimated and gap.cause == "sequence jump" for gap in rec.gaps)
    assert rec.garbled_lines == len(sim.garbled) and rec.out_of_sequence == 0
    assert np.array_equal(data[:, 0], good), "every good line is in the file"
    assert np.array_equal(data[:, 2], reference_counts[good])


def test_duration_option_and_live_feed(tmp_path, reference_counts):
    batches = []
    sim, rec, out = run_pair(
        tmp_path, {"duration_s": 20, "speed": FAST, "leads_off": 6, "seed": 3},
        {"duration_s": 10, "on_samples": lambda s, v, lo: batches.append((s, v, lo))},
    )
    _, data = read_csv(out)
    assert rec.stop_reason.startswith("duration reached")
    assert np.array_equal(data[:, 0], np.arange(10 * FS))
    fed = np.concatenate([np.stack(batch, axis=1) for batch in batches])
    assert np.array_equal(fed, data[:, [0, 2, 3]])
    off = data[:, 3] == 1
    assert np.all(data[off, 2] == 1023)
    assert np.array_equal(data[~off, 2], reference_counts[: 10 * FS][~off])


def test_killing_the_simulator_leaves_a_valid_file(tmp_path, reference_counts):
    link, out = tmp_path / "ttyECG", tmp_path / "killed.csv"
    sim = subprocess.Popen(
        [sys.executable, "-m", "acquisition.simulator", "--record", str(RECORD_100),
         "--port-link", str(link), "--speed", "4"],
        cwd=ROOT, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not link.is_symlink():
            assert time.monotonic() < deadline and sim.poll() is None, "simulator did not start"
            time.sleep(0.02)
        messages = []

        def kill_midstream(summary):
            if summary.samples_written >= 5 * FS and sim.poll() is None:
                sim.send_signal(signal.SIGKILL)

        rec = record(str(link), out, reconnect=True, reconnect_timeout_s=1.0,
                     on_progress=kill_midstream, on_message=messages.append)
    finally:
        if sim.poll() is None:
            sim.kill()
        sim.wait()
    assert sim.returncode == -signal.SIGKILL
    assert rec.stop_reason == "port lost"
    assert any("disappeared" in text for text in messages)
    assert any("gave up reconnecting" in text for text in messages)
    _, data = read_csv(out)
    assert len(data) == rec.samples_written >= 5 * FS
    assert np.array_equal(data[:, 0], np.arange(len(data)))
    assert np.array_equal(data[:, 2], reference_counts[: len(data)])


def test_killing_the_recorder_loses_at_most_a_second(tmp_path, reference_counts):
    link, out = tmp_path / "ttyECG", tmp_path / "crash.csv"
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=simulate, args=(RECORD_100, link),
        kwargs={"stop_event": stop, "on_ready": lambda name: ready.set(), "reader_timeout_s": 30},
        daemon=True,
    )
    thread.start()
    assert ready.wait(20)
    rec = subprocess.Popen(
        [sys.executable, "-m", "acquisition.commands", "record", "--port", str(link),
         "--out", str(out), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 0):
            assert time.monotonic() < deadline and rec.poll() is None, "recorder did not start"
            time.sleep(0.02)
        time.sleep(3.0)
        rec.send_signal(signal.SIGKILL)
        killed_at = time.time()
        rec.wait()
    finally:
        if rec.poll() is None:
            rec.kill()
        stop.set()
        thread.join(10)
    meta, data = read_csv(out)
    started = datetime.fromisoformat(meta["start_time"].replace("Z", "+00:00")).timestamp()
    streamed = (killed_at - started) * FS
    print(f"\nrecorder killed after {streamed / FS:.2f} s of stream: {len(data)} rows on disk, "
          f"{(streamed - len(data)) / FS:.2f} s lost")
    assert np.array_equal(data[:, 0], np.arange(len(data)))
    assert np.array_equal(data[:, 2], reference_counts[: len(data)])
    assert len(data) >= streamed - 1.0 * FS


def test_reconnects_to_a_restarted_board(tmp_path):
    link, out = tmp_path / "ttyECG", tmp_path / "reconnect.csv"
    messages: list[str] = []

    def boards():
        first = threading.Event()
        threading.Thread(target=lambda: (time.sleep(2.5), first.set()), daemon=True).start()
        simulate(RECORD_100, link, stop_event=first, reader_timeout_s=20)
        time.sleep(1.0)  # the cable is out for a second
        simulate(RECORD_100, link, duration_s=2.0, reader_timeout_s=20)

    thread = threading.Thread(target=boards, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not link.is_symlink():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rec = record(str(link), out, reconnect=True, reconnect_timeout_s=10,
                 on_message=messages.append)
    thread.join(20)
    _, data = read_csv(out)
    assert rec.reconnects == 1 and rec.stop_reason == "device ended its stream"
    assert len(rec.gaps) == 1
    gap = rec.gaps[0]
    assert gap.cause == "device restart" and gap.estimated
    # The outage lasted about a second (plus the reopen); the clock estimate says so.
    assert 0.8 * FS <= gap.count <= 2.5 * FS, gap
    assert len(data) == rec.samples_written and data[-1, 0] == rec.last_seq


def test_record_cli_errors_are_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "acquisition.commands", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    missing = run("record", "--port", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("ecg: error: cannot open serial port")
    assert len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()
    assert run("record", "--out", "x.csv").returncode == 2
    for rate in ("0", "nan", "-360", "fast"):
        wrong = run("record", "--port", "p", "--out", "x.csv", f"--plain-rate={rate}")
        assert wrong.returncode == 2 and wrong.stderr.startswith("ecg: error: --plain-rate")
    assert run("record", "--list").returncode == 0
    bad = run("simulate", "--record", str(tmp_path / "none"), "--port-link", str(tmp_path / "l"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_ecgcore_reads_the_recorder_csv(tmp_path, reference_counts):
    io = pytest.importorskip("ecgcore.io", reason="ecgcore.io is written by another helper")
    sim, rec, out = run_pair(tmp_path, {"duration_s": 10, "speed": FAST, "drop_rate": 0.01,
                                        "seed": 11})
    recording = io.read(str(out))
    assert recording.fs == FS
    signal_ = recording.signal[:, 0]
    assert len(signal_) == 10 * FS
    lost = np.array(sim.dropped)
    assert np.all(np.isnan(signal_[lost]))
    good = np.setdiff1d(np.arange(10 * FS), lost)
    assert np.array_equal(signal_[good], reference_counts[good])



def test_a_port_that_does_not_speak_the_protocol_is_refused(tmp_path):
    # A board running another sketch (the wild ones print bare numbers).
    master, slave = os.openpty()
    out = tmp_path / "wrong.csv"
    stop = threading.Event()

    def talk():
        while not stop.is_set():
            os.write(master, b"512\n513\n")
            time.sleep(0.05)

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    try:
        # The refusal says what to do about bare numbers, and how fast they came.
        with pytest.raises(EcgError, match=r"bare numbers \(about \d+ lines/s arrived\).*"
                           r"--plain-rate HZ\|auto"):
            record(os.ttyname(slave), out, header_timeout_s=1.0, reconnect=False)
    finally:
        stop.set()
        thread.join(5)
        os.close(master)
        os.close(slave)
    assert not out.exists()


def test_a_plain_stream_is_recorded_at_the_rate_given(tmp_path):
    # What SparkFun's AD8232 example sketch prints: analogRead values, "!" while an
    # electrode is off; plus a line of noise, and a blank line.
    values = (512 + 200 * np.sin(np.arange(600) / 20)).astype(int)
    lines = [f"{v}\r\n".encode() for v in values]
    off = set(range(100, 110))
    for i in off:
        lines[i] = b"!\r\n"
    lines[300] = b"hello\r\n"
    lines.insert(200, b"\r\n")
    # The port opens in the middle of a line: the end of a "512" comes first, and must not
    # become a sample of 12.
    lines.insert(0, b"12\r\n")
    master, slave = os.openpty()
    out = tmp_path / "plain.csv"

    def talk():
        time.sleep(0.5)  # the recorder has opened the port: nothing is sent into the void
        for k in range(0, len(lines), 25):
            os.write(master, b"".join(lines[k : k + 25]))
            time.sleep(0.02)

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    try:
        summary = record(os.ttyname(slave), out, duration_s=2.0, plain_fs=250,
                         reconnect=False, header_timeout_s=5)
    finally:
        thread.join(10)
        os.close(master)
        os.close(slave)
    meta, data = read_csv(out)
    assert meta["fs_hz"] == "250" and meta["device"] == "plain-serial-stream"
    assert summary.stop_reason == "duration reached (2 s)" and summary.garbled_lines == 1
    # Every line is the next sample: 500 samples, the noise line dropped (values after it
    # move one place earlier: a plain stream cannot know better), no gap claimed.
    kept = [v for i, v in enumerate(values) if i != 300]
    assert np.array_equal(data[:, 0], np.arange(500)) and not summary.gaps
    assert set(np.flatnonzero(data[:, 3])) == off and summary.leads_off_samples == 10
    on = np.setdiff1d(np.arange(500), list(off))
    assert np.array_equal(data[on, 2], np.array(kept[:500])[on])
    rec = read(out)
    assert rec.fs == 250 and rec.n_samples == 500
    assert np.isnan(rec.signal[list(off), 0]).all() and not np.isnan(rec.signal[on, 0]).any()


def test_a_plain_stream_after_an_outage_has_an_estimated_gap():
    from acquisition.recorder import PlainStreamDecoder, RecordingSummary

    summary = RecordingSummary(path="x.csv", port="p")
    opened = []
    decoder = PlainStreamDecoder(summary, opened.append, fs=100)
    # The first line after the port opens may be cut ("1" of "511"): skipped.
    assert decoder.feed(b"1\n2\n3\n4", now=0.0) == [(0, 2, 0), (1, 3, 0)]
    assert opened[0].fs == 100
    decoder.outage()  # the partial "4" is lost with the port
    # Back, again in the middle of a line: "5" is skipped, "6" comes 2 s after "3".
    assert decoder.feed(b"5\n6\n", now=2.0) == [(201, 6, 0)]
    assert [(g.first, g.count, g.estimated) for g in summary.gaps] == [(2, 199, True)]
    with pytest.raises(EcgError, match="positive number of Hz"):
        PlainStreamDecoder(summary, opened.append, fs=float("nan"))


def test_a_plain_stream_rate_can_be_measured_from_its_arrivals():
    from acquisition.recorder import PLAIN_RATE_MEASURE_S, PlainStreamDecoder, RecordingSummary

    summary = RecordingSummary(path="x.csv", port="p")
    opened = []
    decoder = PlainStreamDecoder(summary, opened.append, fs="auto")
    # A board printing 192 values a second (SparkFun's sketch at 9600 baud), read by the
    # PC in bursts of 24 lines every 0.125 s; the port opened in the middle of a line.
    out, k, now = [], 0, 0.0
    feed = b"2\n"
    while not opened:
        feed += b"".join(b"%d\n" % (k + i) for i in range(24))
        out += decoder.feed(feed, now)
        feed, k, now = b"", k + 24, now + 0.125
    assert now - 0.125 >= PLAIN_RATE_MEASURE_S and opened[0].fs == 192.0
    assert summary.fs == 192.0 and "measured" in decoder.rate_note
    # The lines of the measurement are kept: the file starts with the first whole line.
    assert [v for _, v, _ in out] == list(range(k)) and [u for u, _, _ in out] == list(range(k))
    assert decoder.early_kept == k
    # The rate holds from then on.
    assert decoder.feed(b"%d\n" % k, now) == [(k, k, 0)]
    with pytest.raises(EcgError, match="positive number of Hz or 'auto'"):
        PlainStreamDecoder(summary, opened.append, fs="fast")


def test_a_plain_stream_recorded_at_the_rate_it_arrives(tmp_path):
    # `ecg record --plain-rate auto`: a board printing 250 values a second into a real pty.
    values = (512 + 200 * np.sin(np.arange(2500) / 20)).astype(int)
    master, slave = os.openpty()
    out = tmp_path / "auto.csv"
    stop = threading.Event()

    def talk():
        time.sleep(0.5)
        start = time.monotonic()
        for k in range(0, values.size, 25):
            if stop.is_set():
                return
            os.write(master, b"".join(b"%d\r\n" % v for v in values[k : k + 25]))
            # On a fixed schedule, so the rate does not drift with the writes' own time.
            time.sleep(max(0.0, start + (k + 25) / 250 - time.monotonic()))

    messages = []
    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    try:
        summary = record(os.ttyname(slave), out, duration_s=6.0, plain_fs="auto",
                         reconnect=False, header_timeout_s=5, on_message=messages.append)
    finally:
        stop.set()
        thread.join(10)
        os.close(master)
        os.close(slave)
    meta, data = read_csv(out)
    print(f"\nmeasured {meta['fs_hz']} Hz for 250; {messages[0]}")
    assert 240 <= float(meta["fs_hz"]) <= 260 and summary.fs == float(meta["fs_hz"])
    assert any("measured" in m for m in messages), messages
    # Nothing lost: the values are the board's from its second line on, in order.
    n = data.shape[0]
    assert np.array_equal(data[:, 2], values[1 : n + 1]) and not summary.gaps


def test_round_trip_of_a_plain_stream_is_sample_exact(tmp_path, reference_counts):
    # `ecg simulate --plain` prints bare values as the AD8232 example sketches do; recorded
    # at the rate given, the file holds exactly the record's counts, leads-off as flags,
    # from the second line on (the first line after the port opens may be cut: skipped).
    sim, summary, out = run_pair(tmp_path, {"speed": FAST, "duration_s": 30, "plain": True,
                                            "leads_off": 8.0, "seed": 3},
                                 {"plain_fs": FS, "duration_s": 25, "header_timeout_s": 20})
    meta, data = read_csv(out)
    assert meta["device"] == "plain-serial-stream" and meta["fs_hz"] == "360"
    assert summary.stop_reason == "duration reached (25 s)" and not summary.gaps
    assert summary.garbled_lines == 0 and np.array_equal(data[:, 0], np.arange(25 * FS))
    on = data[:, 3] == 0
    assert np.array_equal(data[on, 2], reference_counts[1 : 25 * FS + 1][on])
    assert 0 < (~on).sum() == summary.leads_off_samples
