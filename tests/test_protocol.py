"""The line protocol, the recorder's stream decoder, and the sketch on an emulated AVR."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from system_tools import require_system_tool

from acquisition.protocol import (
    SEQ_MODULUS,
    Garbled,
    Header,
    Message,
    Sample,
    crc8,
    format_header,
    format_message,
    format_sample,
    parse_line,
    seq_delta,
    unwrap_near,
)
from acquisition.recorder import RecordingSummary, StreamDecoder

ROOT = Path(__file__).resolve().parents[1]


def test_crc8_is_crc8_smbus():
    # The catalogued check value of CRC-8/SMBUS, so the sketch's C code can be checked too.
    assert crc8(b"123456789") == 0xF4
    assert format_sample(1234, 517, 0) == b"1234,517,0*29\n"


@pytest.mark.parametrize(
    ("seq", "value", "off"), [(0, 0, 0), (65535, 1023, 1), (65536 + 7, 512, 0), (1, 1, 1)]
)
def test_sample_round_trip(seq, value, off):
    line = format_sample(seq, value, off)
    assert len(line) <= 17
    assert parse_line(line) == Sample(seq % SEQ_MODULUS, value, off)
    assert parse_line(line.rstrip(b"\n") + b"\r\n") == Sample(seq % SEQ_MODULUS, value, off)


def test_header_and_message_round_trip():
    line = format_header("AD8232-Uno", "1.0.0", 360, seq=42, overflow=3)
    parsed = parse_line(line)
    assert parsed == Header("AD8232-Uno", "1.0.0", 360.0, 10, 42, {"overflow": "3"})
    assert parse_line(format_message("END", "recording over")) == Message("END", "recording over")
    with pytest.raises(ValueError):
        format_header("AD8232 Uno", "1.0.0", 360)


def test_every_single_byte_substitution_is_detected():
    lines = [format_sample(40000, 1023, 1), format_header("AD8232-Uno", "1.0.0", 500, seq=9)]
    for line in lines:
        body = line.rstrip(b"\n")
        for position in range(len(body)):
            for byte in range(256):
                if byte in (body[position], ord("\n")):
                    continue
                corrupted = body[:position] + bytes([byte]) + body[position + 1 :]
                assert isinstance(parse_line(corrupted), Garbled), corrupted


@pytest.mark.parametrize(
    "line",
    [b"", b"1,2", b"1,2,0", b"1,2,2*00", b"\xff\xfe*00",
     b"99999,1,0" + b"*%02X" % crc8(b"99999,1,0"),
     b"#ECG fs=360" + b"*%02X" % crc8(b"#ECG fs=360"), b"x" * 500],
)
def test_malformed_lines_are_garbled(line):
    assert isinstance(parse_line(line), Garbled)


def test_seq_arithmetic_across_the_wrap():
    assert seq_delta(65535, 0) == 1
    assert seq_delta(65530, 4) == 10
    assert unwrap_near(5, 3 * SEQ_MODULUS + 2) == 3 * SEQ_MODULUS + 5
    assert unwrap_near(65535, 3 * SEQ_MODULUS + 2) == 3 * SEQ_MODULUS - 1


def _decode(chunks: list[bytes]) -> tuple[list[tuple[int, int, int]], RecordingSummary]:
    summary = RecordingSummary(path="-", port="-")
    decoder = StreamDecoder(summary, lambda header: None)
    rows = []
    for chunk in chunks:
        rows += decoder.feed(chunk, 0.0)
    return rows, summary


def test_decoder_unwraps_past_65536_and_splits_lines_anywhere():
    n = 70_000
    stream = format_header("T", "1", 360, seq=65000) + b"".join(
        format_sample(65000 + k, k % 1024, 0) for k in range(n)
    )
    # Feed in odd-sized pieces so lines straddle reads, as they do on a real port.
    pieces = [stream[i : i + 997] for i in range(0, len(stream), 997)]
    rows, summary = _decode(pieces)
    assert [row[0] for row in rows] == list(range(n))
    assert [row[1] for row in rows] == [k % 1024 for k in range(n)]
    assert summary.gaps == [] and summary.garbled_lines == 0


def test_decoder_resynchronises_and_reports_exact_gaps():
    lines = [format_sample(k, 500 + k, 0) for k in range(20)]
    stream = (
        b"\x00\xffnoise before the header\n"
        + format_header("T", "1", 360, seq=0)
        + b"".join(lines[:5])
        + b"3,5"  # a line cut short: it merges with the next one, both are lost
        + lines[6]
        + b"".join(lines[7:10])
        + b"".join(lines[12:20])  # 10 and 11 never sent
    )
    rows, summary = _decode([stream])
    assert [row[0] for row in rows] == [0, 1, 2, 3, 4, 7, 8, 9] + list(range(12, 20))
    assert [(gap.first, gap.count) for gap in summary.gaps] == [(5, 2), (10, 2)]
    assert summary.garbled_lines == 2  # the noise line and the merged line


def test_samples_before_the_first_header_are_kept_when_they_lead_up_to_it():
    # A board already streaming when the port opened: samples first, then its header.
    early = b"".join(format_sample(k, k % 1000, 0) for k in range(65500, 65536 + 100))
    later = b"".join(format_sample(k, k % 1000, 0) for k in range(100, 150))
    summary = RecordingSummary(path="-", port="-")
    decoder = StreamDecoder(summary, lambda header: None)
    rows = decoder.feed(b"\x00\xff\n" + early, 0.0)
    assert rows == []  # nothing can be placed before the header gives the rate
    rows += decoder.feed(format_header("T", "1", 360, seq=100) + later, 0.0)
    assert [row[0] for row in rows] == list(range(136 + 50))
    assert [row[1] for row in rows[:3]] == [500, 501, 502]
    assert decoder.early_kept == 136 and summary.before_header == 0 and summary.gaps == []


def test_samples_before_the_first_header_that_do_not_lead_up_to_it_are_dropped():
    stale = b"".join(format_sample(k, 1, 0) for k in range(5000, 5010))
    stream = stale + format_header("T", "1", 360, seq=100) + b"".join(
        format_sample(k, 2, 0) for k in range(100, 110))
    rows, summary = _decode([stream])
    assert [row[0] for row in rows] == list(range(10))
    assert {row[1] for row in rows} == {2}
    assert summary.before_header == 10


def test_decoder_rejects_a_lone_corrupt_counter():
    lines = [format_sample(k, 500, 0) for k in range(10)]
    bogus = format_sample(30_000, 500, 0)  # checksum valid, counter absurd
    rows, summary = _decode([format_header("T", "1", 360, seq=0) + b"".join(lines[:5]) + bogus
                             + b"".join(lines[5:])])
    assert [row[0] for row in rows] == list(range(10))
    assert summary.out_of_sequence == 1 and summary.gaps == []


def test_decoder_stops_on_rate_change_and_end():
    stream = format_header("T", "1", 360, seq=0) + format_sample(0, 1, 0)
    summary = RecordingSummary(path="-", port="-")
    decoder = StreamDecoder(summary, lambda header: None)
    decoder.feed(stream + format_header("T", "1", 250, seq=1), 0.0)
    assert decoder.rate_changed == 250
    decoder = StreamDecoder(RecordingSummary(path="-", port="-"), lambda header: None)
    decoder.feed(stream + format_message("END"), 0.0)
    assert decoder.ended


def test_decoder_places_a_restarted_board_by_clock():
    summary = RecordingSummary(path="-", port="-")
    decoder = StreamDecoder(summary, lambda header: None)
    decoder.feed(format_header("T", "1", 100, seq=0)
                 + b"".join(format_sample(k, 1, 0) for k in range(50)), 10.0)
    decoder.outage()
    # Two seconds later the board (reset by the reopening) starts again from 0.
    rows = decoder.feed(format_header("T", "1", 100, seq=0) + format_sample(0, 2, 0), 12.0)
    assert rows == [(249, 2, 0)]
    assert summary.gaps[-1].cause == "device restart" and summary.gaps[-1].estimated
    assert np.isclose(summary.gaps[-1].count, 199)


def _sketch_check():
    import importlib.util

    path = ROOT / "acquisition" / "arduino" / "check" / "sketch_check.py"
    spec = importlib.util.spec_from_file_location("sketch_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_sketch_on_an_emulated_atmega328p(tmp_path):
    """The real sketch, compiled for an Uno and run cycle-exact on simavr."""
    check = _sketch_check()
    missing = check.missing_tools()
    require_system_tool(not missing, "AVR toolchain/simavr not installed: " + "; ".join(missing))
    elf, harness, flash = check.build(tmp_path)
    assert flash < 32_256
    for rate, seconds in ((360, 6.0), (250, 1.5), (500, 1.5)):
        log = check.simulate_board(elf, harness, rate, seconds, (0.6, 0.9), "?")
        result = check.analyse(log, rate)
        print(f"\n{rate} Hz: {result}")
        assert result["header_fs"] == rate
        assert result["garbled"] == 0 and result["consecutive"]
        assert result["samples"] >= rate * seconds - 3
        nominal = result["nominal_interval_cycles"]
        # Timer-exact sampling: each instant within 10 us of its slot, the average exact.
        assert result["max_jitter_cycles"] < 160
        assert abs(result["mean_interval_cycles"] - nominal) <= (
            2 * result["max_jitter_cycles"] / (result["samples"] - 1) + 1e-6
        )
        assert result["max_value_error_counts"] <= 2.0
        assert result["leads_off_flag_errors"] == 0
        assert abs(result["leads_off_samples"] - 0.3 * rate) <= 1
        assert result["max_latency_ms"] < 20
        # Boot header, the answer to "?" (sent at 0.5 s), the periodic one at 2048.
        headers = result["headers"]
        assert headers[0] == (0, 0) and all(seq == before for seq, before in headers)
        assert any(abs(seq - 0.5 * rate) <= 5 for seq, _ in headers)
        if seconds * rate > 2048:
            assert (2048, 2048) in headers


def test_sketch_rate_commands_on_an_emulated_atmega328p(tmp_path):
    check = _sketch_check()
    missing = check.missing_tools()
    require_system_tool(not missing, "AVR toolchain/simavr not installed: " + "; ".join(missing))
    elf, harness, _ = check.build(tmp_path)
    log = check.simulate_board(elf, harness, 360, 1.0, command="R500")
    parsed = [(cycle, parse_line(text.encode("latin-1"))) for cycle, text in log.lines]
    headers = [(cycle, line) for cycle, line in parsed if isinstance(line, Header)]
    assert [(h.fs, h.seq) for _, h in headers] == [(360.0, 0), (500.0, 0)]
    switch = headers[1][0]
    before = [line.seq for cycle, line in parsed if isinstance(line, Sample) and cycle < switch]
    after = [line.seq for cycle, line in parsed if isinstance(line, Sample) and cycle > switch]
    assert before == list(range(len(before))) and after == list(range(len(after)))
    assert abs(len(after) - 0.5 * 500) <= 3
    starts = [cycle for cycle, _ in log.adc if cycle > switch]
    assert np.allclose(np.diff(starts), 32000, atol=160)
    refused = check.simulate_board(elf, harness, 360, 0.6, command="R123")
    assert any(text.startswith("#ERR rate must be") for _, text in refused.lines)
