"""Tests of ecgcore.io: every reader into one Recording, and every bad input refused cleanly."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgcore import io as ecgio
from ecgcore.errors import InputTooLargeError, RateUnknownError, ReadError
from ecgcore.recording import preferred_lead

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MITDB = DATA / "mitdb"
QTDB = DATA / "qtdb-dev"
ARDUINO = DATA / "arduino"
ARDUINO_FILES = ["ECG_exp_pac_1.TXT", "ECG_exp_pac_2.TXT", "ECG_exp_sim_1.TXT"]


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def sine_lines(n: int = 400, fs: float = 360.0) -> np.ndarray:
    return np.round(np.sin(2 * np.pi * 1.2 * np.arange(n) / fs), 4)


def copy_record(dest: Path, record: str = "100", exts=(".hea", ".dat", ".atr")) -> Path:
    for ext in exts:
        shutil.copy(MITDB / f"{record}{ext}", dest / f"{record}{ext}")
    return dest / record


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --------------------------------------------------------------------------- real records


def test_mitdb_100_signal_annotations_and_comments():
    rec = ecgio.read(MITDB / "100")
    assert rec.signal.shape == (650_000, 2)
    assert rec.signal.dtype == np.float64
    assert rec.fs == 360.0 and rec.fs_origin == "header" and rec.format == "wfdb"
    assert rec.leads == ["MLII", "V5"] and rec.units == ["mV", "mV"]
    assert rec.meta["comments"] == ["69 M 1085 1629 x1", "Aldomet, Inderal"]
    ann = rec.annotations
    assert ann is not None and ann.sample.dtype == np.int64
    beats = [s for s in ann.symbol if s != "+"]
    assert len(beats) == 2273  # MIT-BIH directory: record 100 has 2273 beats
    assert ann.aux_note[0] == "(N"  # trailing NUL of the rhythm note removed
    raw = wfdb.rdrecord(str(MITDB / "100"))
    np.testing.assert_array_equal(rec.signal, raw.p_signal)


@pytest.mark.parametrize("suffix", [".hea", ".dat", ".atr"])
def test_wfdb_record_named_by_any_of_its_files(suffix):
    rec = ecgio.read(str(MITDB / "100") + suffix)
    assert rec.signal.shape == (650_000, 2) and rec.annotations is not None


def test_qtdb_250_hz_record():
    rec = ecgio.read(QTDB / "sel100")
    assert rec.fs == 250.0
    assert rec.signal.shape == (225_000, 2)
    assert "Produced by xform from record 100, beginning at 7:00.000" in rec.meta["comments"]


def test_wfdb_caller_rate_must_agree_with_header():
    assert ecgio.read(QTDB / "sel100", fs=250).fs_origin == "header"
    with pytest.raises(ReadError) as exc:
        ecgio.read(QTDB / "sel100", fs=360)
    assert "disagrees" in one_line(exc)


@pytest.mark.parametrize("name", ARDUINO_FILES)
def test_arduino_files_need_a_rate(name):
    path = ARDUINO / name
    with pytest.raises(RateUnknownError) as exc:
        ecgio.read(path)
    assert "--fs" in one_line(exc)
    rec = ecgio.read(path, fs=54)
    assert rec.fs == 54.0 and rec.fs_origin == "caller" and rec.format == "arduino-text"
    assert rec.signal.shape == (len(path.read_text().split()), 1)
    assert rec.units == ["adu"]
    assert np.nanmin(rec.signal) >= 0 and np.nanmax(rec.signal) <= 1023


def test_generated_wfdb_record_any_rate_and_lead_count(tmp_path):
    x = np.stack([sine_lines(1000, 500) * k for k in (1, 2, 3)], axis=1)
    wfdb.wrsamp("gen", fs=500, units=["mV"] * 3, sig_name=["I", "II", "V2"], p_signal=x,
                fmt=["16"] * 3, adc_gain=[1000] * 3, baseline=[0] * 3,
                comments=["synthetic"], write_dir=str(tmp_path))
    rec = ecgio.read(tmp_path / "gen")
    assert rec.fs == 500 and rec.leads == ["I", "II", "V2"] and rec.annotations is None
    np.testing.assert_allclose(rec.signal, x, atol=1e-3)
    assert rec.meta["comments"] == ["synthetic"]
    # No lead asked for: lead II, the lead the classifiers learnt, not the first column.
    assert rec.lead_index(None) == 1 and rec.lead_index(0) == 0


@pytest.mark.parametrize("leads, expected", [
    (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"], 1),
    (["V5", "MLII"], 1), (["Lead I", "Lead II"], 1), (["DI", "DII", "DIII"], 1),
    (["ECG I", "ECG II"], 1), (["III", "aVF"], 0), (["ECG1", "ECG2"], 0), (["V1"], 0),
])
def test_lead_ii_is_analysed_by_default_whatever_its_name(leads, expected):
    assert preferred_lead(leads) == expected


# --------------------------------------------------------------------------- text formats


def test_one_value_per_line_with_and_without_header(tmp_path):
    values = sine_lines()
    plain = write(tmp_path, "a.txt", "\n".join(f"{v}" for v in values) + "\n")
    with pytest.raises(RateUnknownError):
        ecgio.read(plain)
    rec = ecgio.read(plain, fs=360)
    np.testing.assert_array_equal(rec.signal[:, 0], values)
    assert rec.format == "arduino-text" and rec.units == ["mV"] and rec.leads == ["lead1"]
    named = write(tmp_path, "b.txt", "ECG\n" + "\n".join(f"{v}" for v in values))
    rec = ecgio.read(named, fs=360)
    assert rec.leads == ["ECG"] and rec.n_samples == values.size


def _adc_counts() -> np.ndarray:
    return np.loadtxt(ARDUINO / "ECG_exp_pac_2.TXT").astype(int).ravel()


def test_ad8232_example_sketch_leads_off_marks_are_missing_samples(tmp_path):
    # SparkFun's AD8232 sketch prints '!' instead of a value while a lead is off.
    x = _adc_counts()
    lines = [str(v) for v in x[:1500]] + ["!"] * 40 + [str(v) for v in x[1500:]]
    rec = ecgio.read(write(tmp_path, "sparkfun.txt", "\n".join(lines) + "\n"), fs=54)
    assert rec.n_samples == x.size + 40 and rec.units == ["adu"]
    assert np.isnan(rec.signal[1500:1540, 0]).all()
    np.testing.assert_array_equal(rec.signal[1540:, 0], x[1500:])
    assert rec.meta["leads_off_samples"] == 40 and rec.meta["n_missing"] == 40


def test_serial_monitor_timestamps_are_stripped_and_only_suggest_the_rate(tmp_path):
    x = _adc_counts()[:600]
    # Arrival times: USB hands the lines over in bursts of 8, around midnight.
    t = 86400.0 - 3.0 + (np.arange(x.size) // 8) * 8 / 54.0
    lines = []
    for v, sec in zip(x, t, strict=True):
        sec %= 86400.0
        h, m = int(sec // 3600), int(sec % 3600 // 60)
        lines.append(f"{h:02d}:{m:02d}:{sec % 60:06.3f} -> {v}")
    path = write(tmp_path, "monitor.txt", "\n".join(lines) + "\n")
    with pytest.raises(RateUnknownError, match=r"suggest 5\d\.\d Hz"):
        ecgio.read(path)
    rec = ecgio.read(path, fs=54)
    np.testing.assert_array_equal(rec.signal[:, 0], x)
    assert rec.fs_origin == "caller" and 50 < rec.meta["serial_monitor_rate_hz"] < 58


@pytest.mark.parametrize("sep", [",", " ", "\t"])
def test_serial_plotter_labels_become_leads(tmp_path, sep):
    x = _adc_counts()[:300]
    text = "\n".join(f"ECG:{v}{sep}threshold:600" for v in x) + "\n"
    rec = ecgio.read(write(tmp_path, "plotter.txt", text), fs=54)
    assert rec.leads == ["ECG", "threshold"]
    np.testing.assert_array_equal(rec.signal[:, 0], x)
    rows = text.splitlines()
    rows[100] = rows[100].replace("threshold", "limit")
    with pytest.raises(ReadError, match="line 101 of plotter.txt does not have the labels"):
        ecgio.read(write(tmp_path, "plotter.txt", "\n".join(rows)), fs=54)
    # A header of distinct 'key: value' lines is still a header, not plotter output.
    rec = ecgio.read(write(tmp_path, "zoo.txt", "Fs: 54\nUnit: adu\n---\n"
                           + "\n".join(str(v) for v in x)))
    assert rec.fs == 54 and rec.leads == ["lead1"]


@pytest.mark.parametrize("header", ["seq,value\n", ""])
def test_seq_column_is_an_index_not_a_rate(tmp_path, header):
    rows = "".join(f"{i},{500 + i % 7}\n" for i in range(300))
    path = write(tmp_path, "s.csv", header + rows)
    with pytest.raises(RateUnknownError) as exc:
        ecgio.read(path)
    assert "index" in one_line(exc)
    rec = ecgio.read(path, fs=250)
    assert rec.signal.shape == (300, 1) and rec.units == ["adu"] and rec.fs_origin == "caller"


@pytest.mark.parametrize(
    ("header", "scale", "fs"),
    [("time,value\n", 1.0, 360.0), ("time_ms,value\n", 1e3, 360.0), ("Time (s),ECG\n", 1.0, 500.0),
     ("t,ECG\n", 1e3, 500.0), ("timestamp,ECG\n", 1e6, 250.0), ("", 1.0, 360.0), ("", 1e3, 250.0)],
)
def test_time_column_gives_the_rate(tmp_path, header, scale, fs):
    values = sine_lines(500, fs)
    t = np.arange(values.size) / fs * scale
    rows = "".join(f"{a:.6f},{v}\n" for a, v in zip(t, values, strict=True))
    path = write(tmp_path, "t.csv", header + rows)
    rec = ecgio.read(path)
    assert rec.fs == pytest.approx(fs, rel=1e-6)
    assert rec.fs_origin == "time column" and rec.format == "csv"
    assert rec.signal.shape == (500, 1)
    np.testing.assert_array_equal(rec.signal[:, 0], values)


def test_physionet_csv_export_with_clock_times_and_unit_row():
    t = np.arange(2000) / 360
    rows = "".join(f"'{int(a // 60)}:{a % 60:06.3f}',{np.sin(a):.3f},{np.cos(a):.3f}\n"
                   for a in t)
    text = "'Elapsed time','MLII','V5'\n'hh:mm:ss.mmm','mV','mV'\n" + rows
    rec = ecgio.read_bytes("samples.csv", text.encode())
    assert rec.fs == 360.0 and rec.fs_origin == "time column"
    assert rec.leads == ["MLII", "V5"] and rec.units == ["mV", "mV"]
    np.testing.assert_allclose(rec.signal[:, 0], np.round(np.sin(t), 3))


def test_rounded_millis_timestamps_are_uniform_enough(tmp_path):
    t = np.floor(np.arange(2000) * 1000 / 360)  # Arduino millis() at 360 Hz
    path = write(tmp_path, "m.csv", "millis,value\n" + "".join(f"{int(a)},{512}\n" for a in t))
    rec = ecgio.read(path)
    assert rec.fs == 360.0


def test_uneven_time_column_is_refused(tmp_path):
    t = np.arange(400) / 360
    t[200:] += 0.05  # a pause of 18 samples
    path = write(tmp_path, "u.csv", "time,value\n" + "".join(f"{a:.6f},1.5\n" for a in t))
    with pytest.raises(ReadError) as exc:
        ecgio.read(path)
    assert "not evenly spaced" in one_line(exc) and "a pause or lost samples" in one_line(exc)


def test_drifting_sample_times_are_put_on_a_uniform_grid(tmp_path):
    # A sketch timed by delay(4): each loop takes 4.3-4.8 ms, stamped by millis(). The
    # times wander many samples off any steady clock, but never pause.
    rng = np.random.default_rng(0)
    t = np.cumsum(4.0 + rng.uniform(0.3, 0.8, 20_000))
    ramp = t / 1000.0  # a signal equal to its own time in s shows where samples land
    path = write(tmp_path, "loop.csv", "millis,ecg\n"
                 + "".join(f"{int(a)},{v:.6f}\n" for a, v in zip(t, ramp, strict=True)))
    rec = ecgio.read(path)
    mean_rate = (t.size - 1) / ((int(t[-1]) - int(t[0])) / 1000.0)
    assert rec.fs == pytest.approx(mean_rate, rel=1e-3) and rec.fs_origin == "time column"
    assert rec.meta["resampled_from_time_column"]["max_drift_samples"] > 2
    assert "uniform grid" in rec.meta["notes"][0]
    # On the grid, sample k lies at k / fs after the first: the ramp says so within the
    # millis() rounding (1 ms).
    grid_time = int(t[0]) / 1000.0 + np.arange(rec.n_samples) / rec.fs
    assert np.max(np.abs(rec.signal[:, 0] - grid_time)) < 1.5e-3
    assert abs(rec.n_samples - t.size) <= 1


def test_time_column_going_back_is_refused(tmp_path):
    path = write(tmp_path, "b.csv", "time,value\n0,1\n0.01,2\n0.005,3\n0.02,4\n")
    with pytest.raises(ReadError) as exc:
        ecgio.read(path)
    assert "line 4" in one_line(exc)


def test_caller_rate_must_agree_with_time_column(tmp_path):
    t = np.arange(300) / 360
    path = write(tmp_path, "c.csv", "time,value\n" + "".join(f"{a:.6f},1.0\n" for a in t))
    assert ecgio.read(path, fs=360).fs_origin == "time column"
    with pytest.raises(ReadError) as exc:
        ecgio.read(path, fs=500)
    assert "disagrees" in one_line(exc)


@pytest.mark.parametrize(
    ("sep", "decimal"), [(";", ","), ("\t", "."), (" ", "."), (",", ".")]
)
def test_delimiters_and_multiple_leads(tmp_path, sep, decimal):
    a, b = sine_lines(300), -2 * sine_lines(300)
    rows = [f"{x}{sep}{y}".replace(".", decimal) if decimal == "," else f"{x}{sep}{y}"
            for x, y in zip(a, b, strict=True)]
    path = write(tmp_path, "m.csv", f"MLII(mV.){sep}V1\n" + "\n".join(rows) + "\n")
    rec = ecgio.read(path, fs=360)
    assert rec.leads == ["MLII(mV.)", "V1"] and rec.units == ["mV", "mV"]
    np.testing.assert_allclose(rec.signal, np.stack([a, b], axis=1))


def test_physiozoo_yaml_header(tmp_path):
    text = (
        "---\nMammal:            human\nFs:                500\n"
        "Integration_level: electrocardiogram\n\nChannels:\n\n"
        "    - type:   time\n      name:   Time\n      unit:   sec\n      enable: yes\n\n"
        "    - type:   electrography\n      name:   data\n      unit:   millivolt\n"
        "      enable: yes\n\n---\n\n"
    )
    values = sine_lines(600, 500)
    text += "".join(f"{i / 500:.3f}  {v}\n" for i, v in enumerate(values))
    rec = ecgio.read(write(tmp_path, "pz.txt", text))
    assert rec.fs == 500 and rec.fs_origin == "header" and rec.format == "physiozoo-text"
    assert rec.leads == ["data"] and rec.units == ["mV"]
    np.testing.assert_array_equal(rec.signal[:, 0], values)
    assert rec.meta["header"]["Mammal"] == "human"


def test_plain_fs_header_line(tmp_path):
    path = write(tmp_path, "fs.txt", "Fs: 500\nUnit: uV\n" + "\n".join(["10", "20", "15"] * 50))
    rec = ecgio.read(path)
    assert rec.fs == 500 and rec.fs_origin == "header" and rec.units == ["uV"]
    with pytest.raises(ReadError):
        ecgio.read(path, fs=250)


RECORDER_HEAD = (  # as written by acquisition/recorder.py
    "# format: ecg-workbench-recorder-1\n# fs_hz: 360\n# device: arduino-uno-ad8232\n"
    "# firmware: ecg-1.0\n# bits: 10\n# start_time: 2026-11-22T00:00:00Z\n"
    "# port: /dev/ttyACM0\nseq,time_s,value,leads_off\n"
)


def test_recorder_csv_with_gaps_and_leads_off(tmp_path):
    seqs = [s for s in range(100) if not (10 <= s < 13) and s != 50]  # 3 + 1 samples lost
    rows = "".join(f"{s},{s / 360:.4f},{500 + s},{1 if s in (20, 21) else 0}\n" for s in seqs)
    rec = ecgio.read(write(tmp_path, "rec.csv", RECORDER_HEAD + rows))
    assert rec.format == "recorder-csv" and rec.fs == 360 and rec.fs_origin == "header"
    assert rec.units == ["adu"] and rec.leads == ["value"]
    assert rec.n_samples == 100  # timing kept: lost samples are NaN
    assert rec.meta["gaps"] == [(10, 3), (50, 1)]
    assert rec.meta["leads_off_samples"] == 2
    assert rec.meta["n_missing"] == 6
    missing = np.flatnonzero(np.isnan(rec.signal[:, 0]))
    assert missing.tolist() == [10, 11, 12, 20, 21, 50]
    assert rec.signal[99, 0] == 599
    assert rec.meta["header"]["device"] == "arduino-uno-ad8232"
    assert rec.meta["header"]["start_time"] == "2026-11-22T00:00:00Z"


def test_recorder_seq_wraps_round_16_bits(tmp_path):
    seqs = [(65530 + i) % 65536 for i in range(12)]
    rows = "".join(f"{s},0,{500 + i},0\n" for i, s in enumerate(seqs))
    rec = ecgio.read(write(tmp_path, "w.csv", RECORDER_HEAD + rows))
    assert rec.n_samples == 12 and "gaps" not in rec.meta


def test_seq_going_back_is_refused(tmp_path):
    rows = "".join(f"{s},0,500,0\n" for s in [5, 6, 7, 3, 4, 5])
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "b.csv", RECORDER_HEAD + rows))
    assert "goes back" in one_line(exc)


def test_huge_seq_jump_is_refused_without_allocating(tmp_path):
    rows = "0,0,500,0\n1,0,500,0\n2,0,500,0\n10000000000,0,500,0\n"
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "j.csv", RECORDER_HEAD + rows))
    assert "jumps over" in one_line(exc)


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig CRLF", "utf-16", "utf-16-le", "utf-8 CR"]
)
def test_bom_line_endings_and_utf16(tmp_path, encoding):
    codec, _, ending = encoding.partition(" ")
    newline = {"CRLF": "\r\n", "CR": "\r"}.get(ending, "\n")
    text = newline.join(["time,ECG"] + [f"{i / 250:.3f},{v}" for i, v in
                                        enumerate(sine_lines(200, 250))]) + newline
    rec = ecgio.read(write(tmp_path, "e.csv", text.encode(codec)))
    assert rec.fs == pytest.approx(250) and rec.leads == ["ECG"] and rec.n_samples == 200


def test_missing_values_become_nan(tmp_path):
    values = [str(v) for v in sine_lines(20)]
    values[3], values[7], values[11] = "nan", "", "inf"
    path = write(tmp_path, "n.csv", "time,ECG\n" + "".join(
        f"{i / 360:.6f},{v}\n" for i, v in enumerate(values)))
    rec = ecgio.read(path)
    assert np.flatnonzero(np.isnan(rec.signal[:, 0])).tolist() == [3, 7, 11]
    assert rec.meta["n_missing"] == 3
    line = write(tmp_path, "l.txt", "1 2 nan 4 5 inf 7\n")
    assert ecgio.read(line, fs=100).meta["n_missing"] == 2


@pytest.mark.parametrize("body", ["1\nnan\nnan\n4\nnan\n", "nan\nnan\nnan\n"])
def test_mostly_missing_is_refused(tmp_path, body):
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "m.txt", body), fs=100)
    assert "lead1" in one_line(exc)


# --------------------------------------------------------------------------- bad text inputs


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ReadError) as exc:
        ecgio.read(tmp_path / "nope.csv")
    assert "no such file" in one_line(exc)
    with pytest.raises(ReadError) as exc:
        ecgio.read(tmp_path)
    assert "folder" in one_line(exc)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty"), (b"  \n\r\n", "empty"), (b"# only a comment\n", "no samples"),
     (b"ECG\n", "no samples"), (b"512\n", "1 sample"), (b"512\n513\n", "2 sample"),
     (b"1 2\n", "2 sample"), (b"ECG,V1\n1,2\n", "1 sample")],
)
def test_empty_and_too_short(tmp_path, content, expected):
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "x.txt", content), fs=360)
    assert expected in one_line(exc)


def test_binary_garbage(tmp_path):
    garbage = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "g.bin", garbage), fs=360)
    assert "binary" in one_line(exc)


@pytest.mark.parametrize(
    ("content", "line"),
    [("1\n2\n3\nhello\n5\n", 4), ("time,v\n0,1\n0.01,2\n0.02,abc\n", 4),
     ("a;b\n1;2\n\n3;x\n4;5\n", 4), ("1 2 3 x 5\n", 1)],
)
def test_non_numeric_text_says_which_line(tmp_path, content, line):
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "t.csv", content), fs=360)
    assert f"line {line}" in one_line(exc)


def test_header_naming_more_columns_than_rows_have(tmp_path):
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "w.txt", "MLII (mV) V1\n1 2\n3 4\n5 6\n"), fs=360)
    assert "names 3 columns" in one_line(exc)


@pytest.mark.parametrize("text", ["a,b\n1,2\n3,4\n5,6,7\n8,9\n", "a,b\n\n\n1,2,3\n4,5\n6,7\n"])
def test_row_with_too_many_fields(tmp_path, text):
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "f.csv", text), fs=360)
    assert "line 4" in one_line(exc)


@pytest.mark.parametrize("fs", [0, -360, float("nan"), 1e6, "fast"])
def test_absurd_given_rate(tmp_path, fs):
    path = write(tmp_path, "a.txt", "1\n2\n3\n4\n")
    with pytest.raises(ReadError) as exc:
        ecgio.read(path, fs=fs)
    assert "rate" in one_line(exc)


@pytest.mark.parametrize("header", ["Fs: 0\n", "Fs: -5\n", "Fs: 1000000\n", "Fs: nan\n"])
def test_absurd_rate_in_text_header(tmp_path, header):
    with pytest.raises(ReadError) as exc:
        ecgio.read(write(tmp_path, "h.txt", header + "1\n2\n3\n4\n"))
    assert "rate" in one_line(exc)


def test_size_limit_refused_before_reading(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:  # sparse: 300 MiB that take no disk and are never read
        fh.truncate(300 * 2**20)
    with pytest.raises(InputTooLargeError) as exc:
        ecgio.read(big)
    assert "limit" in one_line(exc)
    assert ecgio.MAX_FILE_BYTES == 256 * 2**20
    with pytest.raises(InputTooLargeError):
        ecgio.read_bytes("x.txt", b"1\n" * 100, max_bytes=50)


# --------------------------------------------------------------------------- bad WFDB inputs


def test_wfdb_record_size_counts_all_files(tmp_path):
    base = copy_record(tmp_path)
    hea, dat = (os.path.getsize(str(base) + ext) for ext in (".hea", ".dat"))
    with pytest.raises(InputTooLargeError):
        ecgio.read(base, max_bytes=hea + dat - 1)
    with pytest.raises(InputTooLargeError):  # the .atr counts too
        ecgio.read(base, max_bytes=hea + dat + 1)


def test_truncated_dat_is_refused(tmp_path):
    base = copy_record(tmp_path, exts=(".hea",))
    (tmp_path / "100.dat").write_bytes((MITDB / "100.dat").read_bytes()[:30_001])
    with pytest.raises(ReadError) as exc:
        ecgio.read(base)
    message = one_line(exc)
    assert "shorter than its header says" in message and "650000" in message


def test_header_declaring_fewer_samples_is_fine(tmp_path):
    base = copy_record(tmp_path, exts=(".dat",))
    text = (MITDB / "100.hea").read_text().replace("360 650000", "360 1000")
    (tmp_path / "100.hea").write_text(text)
    assert ecgio.read(base).n_samples == 1000


@pytest.mark.parametrize(
    ("header", "error"),
    [("garbage here\n", ReadError), ("x 2 360 650000\nfoo\n", ReadError),
     ("x two 360\n", ReadError), ("# only a comment\n", ReadError), ("", ReadError),
     ("x 1 0 10\nx.dat 16\n", ReadError), ("x 1 1e6 10\nx.dat 16\n", ReadError),
     ("x 1\nx.dat 16\n", RateUnknownError), ("x 1 360 10\nx.dat 999\n", ReadError),
     ("x 1 360 10\nother.dat 16\n", ReadError), ("x/2 1 360 10\nx.dat 16\n", ReadError)],
)
def test_bad_headers(tmp_path, header, error):
    write(tmp_path, "x.hea", header)
    write(tmp_path, "x.dat", np.arange(10, dtype="<i2").tobytes())
    with pytest.raises(error) as exc:
        ecgio.read(tmp_path / "x")
    one_line(exc)


def test_header_without_rate_takes_callers(tmp_path):
    write(tmp_path, "x.hea", "x 1\nx.dat 16 200 16 0 0 0 0 ECG\n")
    write(tmp_path, "x.dat", np.arange(10, dtype="<i2").tobytes())
    rec = ecgio.read(tmp_path / "x", fs=200)
    assert rec.fs == 200 and rec.fs_origin == "caller"
    np.testing.assert_allclose(rec.signal[:, 0], np.arange(10) / 200)


def test_lone_dat_without_header(tmp_path):
    write(tmp_path, "y.dat", b"\x00\x01" * 10)
    with pytest.raises(ReadError) as exc:
        ecgio.read(tmp_path / "y.dat")
    assert "header" in one_line(exc)


# --------------------------------------------------------------------------- uploads


def mitdb_set(record: str = "100", exts=(".hea", ".dat", ".atr", ".xws")) -> dict[str, bytes]:
    return {f"{record}{ext}": (MITDB / f"{record}{ext}").read_bytes() for ext in exts}


def test_read_files_wfdb_set_matches_read():
    from_disk = ecgio.read(MITDB / "100")
    rec = ecgio.read_files(mitdb_set())
    np.testing.assert_array_equal(rec.signal, from_disk.signal)
    assert rec.fs == 360 and rec.leads == ["MLII", "V5"] and rec.format == "wfdb"
    assert len(rec.annotations.sample) == len(from_disk.annotations.sample)
    assert rec.meta["record_name"] == "100" and rec.meta["ignored_files"] == ["100.xws"]
    assert rec.meta["comments"] == from_disk.meta["comments"]


def test_read_files_zip_of_a_record_in_a_folder():
    blob = zip_bytes({f"mitdb/{n}": d for n, d in mitdb_set("100", (".hea", ".dat")).items()})
    rec = ecgio.read_files({"upload.zip": blob})
    assert rec.signal.shape == (650_000, 2) and rec.annotations is None
    assert ecgio.read_bytes("upload.zip", blob).n_samples == 650_000


def test_truncated_upload_names_the_users_file():
    files = mitdb_set("100", (".hea", ".dat"))
    files["100.dat"] = files["100.dat"][:3000]
    with pytest.raises(ReadError) as exc:
        ecgio.read_files(files)
    assert "100.dat is shorter than its header says" in one_line(exc)


def test_read_zip_from_a_path(tmp_path):
    blob = zip_bytes({"a.csv": b"time,ECG\n0,1\n0.004,2\n0.008,3\n0.012,4\n"})
    rec = ecgio.read(write(tmp_path, "a.zip", blob))
    assert rec.fs == pytest.approx(250) and rec.leads == ["ECG"]


def test_read_bytes_text_and_wfdb_parts():
    rec = ecgio.read_bytes("trace.txt", b"1\n2\n3\n4\n", fs=100)
    assert rec.source == "trace.txt" and rec.n_samples == 4
    with pytest.raises(ReadError) as exc:
        ecgio.read_bytes("100.hea", (MITDB / "100.hea").read_bytes())
    assert ".dat" in one_line(exc)


def test_upload_header_naming_a_missing_or_foreign_file():
    files = mitdb_set("100", (".hea", ".dat"))
    files["100.hea"] = files["100.hea"].replace(b"100.dat", b"../../etc/passwd")
    with pytest.raises(ReadError) as exc:
        ecgio.read_files(files)
    assert "not uploaded" in one_line(exc)


@pytest.mark.parametrize(
    ("files", "expected"),
    [({}, "nothing"), ({"100.dat": b"\x00" * 30}, ".hea"),
     ({"a.txt": b"1\n2\n3\n", "b.txt": b"1\n2\n3\n"}, "no WFDB header"),
     ({"../a.txt": b"1\n2\n3\n"}, "unsafe"), ({"/etc/a.txt": b"1\n2\n3\n"}, "unsafe"),
     ({"a.hea": b"a 1 360 3\na.dat 16\n", "b.hea": b"b 1 360 3\nb.dat 16\n"}, "one record")],
)
def test_bad_uploads(files, expected):
    with pytest.raises(ReadError) as exc:
        ecgio.read_files(files, fs=360)
    assert expected in one_line(exc)


@pytest.mark.parametrize(
    ("members", "expected"),
    [({"../evil.txt": b"1\n2\n3\n"}, "unsafe"), ({"/abs/evil.txt": b"1\n2\n3\n"}, "unsafe"),
     ({"a\\..\\..\\evil.txt": b"1\n2\n3\n"}, "unsafe"),
     ({f"f{i}.txt": b"1\n" for i in range(21)}, "at most 20"),
     ({"inner.zip": zip_bytes({"a.txt": b"1\n2\n3\n"})}, "nested"),
     ({"inner.bin": zip_bytes({"a.txt": b"1\n2\n3\n"})}, "nested"),
     ({"a.txt": b"1\n2\n3\n", "b.txt": b"4\n5\n6\n"}, "no WFDB header"),
     ({"folder/": b""}, "no files"), ({"photo.png": b"\x89PNG\r\n\x1a\n\x00\x00"}, "binary")],
)
def test_zip_attacks_and_junk(members, expected):
    with pytest.raises(ReadError) as exc:
        ecgio.read_files({"up.zip": zip_bytes(members)}, fs=360)
    assert expected in one_line(exc)


def test_zip_bomb_refused_by_size():
    blob = zip_bytes({"bomb.txt": b"1\n" * 3_000_000})  # 6 MB that compress to a few kB
    assert len(blob) < 100_000
    with pytest.raises(InputTooLargeError):
        ecgio.read_files({"up.zip": blob}, fs=360, max_bytes=1_000_000)


def test_corrupt_zip():
    with pytest.raises(ReadError) as exc:
        ecgio.read_bytes("up.zip", b"PK\x03\x04" + b"\x00junk" * 50, fs=360)
    assert "zip" in one_line(exc)


# --------------------------------------------------------------------------- more edge cases


def test_trailing_delimiter_and_comments_in_body(tmp_path):
    text = "# exported by a scope\n1,2,\n3,4,\n# pause\n5,6,\n7,8,\n"
    rec = ecgio.read(write(tmp_path, "d.csv", text), fs=100)
    assert rec.signal.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert rec.meta["comments"] == ["exported by a scope"]


def test_header_declaring_signals_it_does_not_describe(tmp_path):
    write(tmp_path, "h.hea", "h 100000000 360 10\nh.dat 16\n")
    write(tmp_path, "h.dat", b"\x00" * 20)
    with pytest.raises(ReadError) as exc:
        ecgio.read(tmp_path / "h")
    assert "describes 1" in one_line(exc)


def test_long_lines_parse_in_linear_time():
    for data in (b"a" + b" " * 300_000, b"a: x" + b" " * 300_000 + b"y"):
        with pytest.raises(ReadError):
            ecgio.read_bytes("long.txt", data, fs=100)


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TEXTISH = st.text(alphabet="0123456789.,;\t -+\n\r#:eEnaifFsTtimeqv_xyz", max_size=400)


def _read_or_refuse(call) -> None:
    try:
        rec = call()
    except ReadError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert rec.signal.ndim == 2 and rec.n_samples >= ecgio.MIN_SAMPLES
    assert rec.signal.shape[1] == len(rec.leads) == len(rec.units)
    assert np.isfinite(rec.signal).sum(axis=0).min() >= rec.n_samples / 2


@FUZZ
@given(data=st.binary(max_size=400) | TEXTISH.map(str.encode),
       fs=st.sampled_from([None, 360.0]))
def test_fuzz_text_never_escapes(data, fs):
    _read_or_refuse(lambda: ecgio.read_bytes("f.txt", data, fs))


@FUZZ
@given(header=TEXTISH, dat=st.binary(max_size=64))
def test_fuzz_wfdb_header_never_escapes(header, dat):
    _read_or_refuse(lambda: ecgio.read_files({"x.hea": header.encode(), "x.dat": dat}, 360.0))


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8))
def test_fuzz_damaged_zip_never_escapes(flips):
    blob = bytearray(zip_bytes({"a.txt": b"\n".join(b"%d" % v for v in range(200))}))
    for position, value in flips:
        blob[position % len(blob)] = value
    _read_or_refuse(lambda: ecgio.read_bytes("up.zip", bytes(blob), 360.0))


def test_the_readers_notes_reach_the_analysis_warnings(tmp_path):
    from ecgcore.analysis import analyze

    x = _adc_counts()
    lines = [str(v) for v in x[:1500]] + ["!"] * 40 + [str(v) for v in x[1500:]]
    rec = ecgio.read(write(tmp_path, "sparkfun.txt", "\n".join(lines)), fs=54)
    warnings = analyze(rec, classify=False).warnings
    assert warnings[0] == rec.meta["notes"][0] and "'!'" in warnings[0]


def _sine_uv(n: int, fs: float) -> np.ndarray:
    return np.round(1000 * np.sin(2 * np.pi * 1.2 * np.arange(n) / fs), 3)


def test_apple_watch_ecg_export(tmp_path):
    # The Health app's CSV: 'Key,Value' lines (quoted commas), a blank line, one column.
    values = _sine_uv(3000, 512.0)
    header = ('Name,Jane Doe\nDate of Birth,"Jan 1, 1970"\nRecorded Date,2021-03-04 10:11:12 '
              '+0100\nClassification,Sinus Rhythm\nSymptoms,\nSoftware Version,1.90\n'
              'Device,"Watch4,4"\nSample Rate,512 hertz\nLead,Lead I\nUnit,µV\n\n')
    path = write(tmp_path, "ecg_2021-03-04.csv", (header + "\n".join(map(str, values)))
                 .encode("utf-8-sig"))
    rec = ecgio.read(path)
    assert (rec.fs, rec.fs_origin, rec.leads, rec.units) == (512.0, "header", ["Lead I"], ["uV"])
    assert rec.format == "key-value-csv" and rec.meta["header"]["Device"] == "Watch4,4"
    np.testing.assert_array_equal(rec.signal[:, 0], values)
    # A two-column table's header line is not such a block.
    plain = write(tmp_path, "t.csv", "time,ecg\n" + "".join(
        f"{k / 250:.3f},{v}\n" for k, v in enumerate(values[:500])))
    assert ecgio.read(plain).fs == 250.0


def test_polar_sensor_logger_prefers_the_sensor_clock(tmp_path):
    # Polar H10 through Polar Sensor Logger: ';', the phone's arrival times (bursts of 73
    # samples, one BLE frame each) beside the sensor's own nanosecond clock.
    fs, n = 130.0, 2600
    values = _sine_uv(n, fs).astype(int)
    ns = 599_616_000_000_000_000 + np.round(np.arange(n) * 1e9 / fs).astype(np.int64)
    frame_end = (np.arange(n) // 73 + 1) * 73 / fs
    lines = ["Phone timestamp;sensor timestamp [ns];timestamp [ms];ecg [uV]"]
    for k in range(n):
        ms = int(frame_end[k] * 1000)
        lines.append(f"2023-05-06T10:{11 + ms // 60000:02d}:{ms % 60000 / 1000:06.3f};"
                     f"{ns[k]};{k * 1000 / fs:.3f};{values[k]}")
    rec = ecgio.read(write(tmp_path, "polar.txt", "\n".join(lines) + "\n"))
    assert (rec.fs, rec.fs_origin, rec.units) == (130.0, "time column", ["uV"])
    assert rec.meta["time_column"] == "sensor timestamp [ns]" and rec.leads == ["ecg [uV]"]
    np.testing.assert_array_equal(rec.signal[:, 0], values)
    assert "resampled_from_time_column" not in rec.meta


def test_edf_file_and_upload(tmp_path):
    from wfdb.io.convert.edf import wfdb_to_edf

    copy_record(tmp_path, "100", (".hea", ".dat"))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # wfdb_to_edf writes beside the record it reads
    try:
        wfdb_to_edf("100", sampto=360 * 20, output_filename="100.edf")
    finally:
        os.chdir(cwd)
    path = tmp_path / "100.edf"
    rec = ecgio.read(path)
    assert (rec.format, rec.fs, rec.fs_origin) == ("edf", 360.0, "header")
    assert rec.leads == ["MLII", "V5"] and rec.units == ["mV", "mV"]
    original = wfdb.rdrecord(str(tmp_path / "100"), sampto=360 * 20)
    np.testing.assert_allclose(rec.signal[: 360 * 20], original.p_signal, atol=0.006)
    data = path.read_bytes()
    assert ecgio.read_bytes("upload.edf", data).n_samples == rec.n_samples
    with pytest.raises(ReadError, match="disagrees"):
        ecgio.read(path, fs=250)
    with pytest.raises(ReadError, match="could not be read as EDF"):
        ecgio.read_bytes("broken.edf", data[:300])
    with pytest.raises(ReadError, match="not an EDF file"):
        ecgio.read_bytes("notes.edf", b"1,2,3\n")


def edf_bytes(signals: list[np.ndarray], rates: list[int], labels: list[str]) -> bytes:
    """An EDF+C file of 1-s data records, written field by field as the format says
    (physical range -5..5 mV over the 16-bit digital range)."""
    def field(value, width: int) -> bytes:
        return str(value)[:width].ljust(width).encode("ascii")

    n_records = min(len(x) // r for x, r in zip(signals, rates, strict=True))
    head = (field(0, 8) + field("X X X X", 80) + field("Startdate 01-JAN-2020 X X X", 80)
            + field("01.01.20", 8) + field("00.00.00", 8) + field(256 * (len(labels) + 1), 8)
            + field("EDF+C", 44) + field(n_records, 8) + field(1, 8) + field(len(labels), 4))
    for values, width in ((labels, 16), ([""] * len(labels), 80), (["mV"] * len(labels), 8),
                          ([-5] * len(labels), 8), ([5] * len(labels), 8),
                          ([-32768] * len(labels), 8), ([32767] * len(labels), 8),
                          ([""] * len(labels), 80), (rates, 8), ([""] * len(labels), 32)):
        head += b"".join(field(v, width) for v in values)
    body = b"".join(
        np.round((x[k * r:(k + 1) * r] + 5) / 10 * 65535 - 32768).astype("<i2").tobytes()
        for k in range(n_records) for x, r in zip(signals, rates, strict=True))
    return head + body


def test_edf_with_signals_at_several_rates_keeps_the_ecg_rate(tmp_path):
    # A sleep-study export: two ECG leads at 256 Hz, respiration at 32 Hz.
    t, slow = np.arange(0, 20, 1 / 256), np.arange(0, 20, 1 / 32)
    ecg = np.sin(2 * np.pi * 1.2 * t)
    data = edf_bytes([np.sin(2 * np.pi * 0.3 * slow), ecg, 0.5 * ecg], [32, 256, 256],
                     ["Resp", "ECG II", "EKG V1"])
    rec = ecgio.read_bytes("night.edf", data)
    assert (rec.format, rec.fs, rec.leads) == ("edf", 256.0, ["ECG II", "EKG V1"])
    np.testing.assert_allclose(rec.signal[:, 0], ecg, atol=1e-3)
    np.testing.assert_allclose(rec.signal[:, 1], 0.5 * ecg, atol=1e-3)
    assert rec.meta["notes"] == ["signals at other rates than the ECG's 256 Hz left out: "
                                 "Resp (32 Hz)"]
    # No ECG label: the first signal's rate.
    other = ecgio.read_bytes("x.edf", edf_bytes([ecg, ecg[::8]], [256, 32], ["A", "B"]))
    assert other.fs == 256.0 and other.leads == ["A"]
    with pytest.raises(ReadError, match="could not be read as EDF|no data record"):
        ecgio.read_bytes("empty.edf", data[: 256 * 4])
