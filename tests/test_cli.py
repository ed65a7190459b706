"""`ecg analyze` end to end, and every kind of bad input the issue lists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgcore.cli import main
from ecgcore.io import MAX_FILE_BYTES
from ecgcore.metrics import match_beats, reference_beats

POINTS = ("p_onset", "p_peak", "p_offset", "qrs_onset", "qrs_offset", "t_peak", "t_offset")


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clear_failure(code, err):
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ecg: error:")
    assert "Traceback" not in err


def test_analyze_record_100_json(mitdb, tmp_path, capsys):
    out = tmp_path / "out.json"
    code, _, err = run(["analyze", str(mitdb / "100"), "--json", str(out), "--no-classify"], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["fs"] == 360 and doc["n_samples"] == 650000
    assert doc["leads"] == ["MLII", "V5"] and doc["lead_used"] == "MLII"
    assert {"load", "condition", "detect", "delineate", "classify"} <= set(doc["timing_s"])
    assert isinstance(doc["rhythm"], list)
    beat = doc["beats"][10]
    assert set(POINTS) <= set(beat) and {"r_peak", "binary", "aami"} <= set(beat)
    rpeaks = np.array([b["r_peak"] for b in doc["beats"]])
    ann = wfdb.rdann(str(mitdb / "100"), "atr")
    ref, _ = reference_beats(ann.sample, ann.symbol)
    m = match_beats(ref, rpeaks, 0.15 * 360)
    assert m.sensitivity > 0.998 and m.ppv > 0.998
    # R peaks line up with the annotations, not just within 150 ms.
    error_ms = np.abs(rpeaks[m.test_index] - ref[m.ref_index]) / 360 * 1000
    assert np.median(error_ms) < 15
    hr = doc["heart_rate_bpm"]
    assert 65 < hr["mean"] < 85 and hr["min"] <= hr["mean"] <= hr["max"]


def test_analyze_says_its_steps_on_a_long_recording_only(mitdb, tmp_path, capsys):
    from ecgcore.analysis import ANALYSIS_STAGES

    # Three records joined: 90 minutes, long enough for a minute of silence to worry.
    parts = [wfdb.rdrecord(str(mitdb / name), channels=[0]).p_signal for name in
             ("100", "101", "103")]
    wfdb.wrsamp("joined", fs=360, units=["mV"], sig_name=["MLII"],
                p_signal=np.concatenate(parts), fmt=["16"], adc_gain=[200.0], baseline=[0],
                write_dir=str(tmp_path))
    out = tmp_path / "out.json"
    code, _, err = run(["analyze", str(tmp_path / "joined"), "--json", str(out),
                        "--no-classify"], capsys)
    assert code == 0, err
    steps = [line for line in err.splitlines() if ", step " in line]
    assert steps == [f"ecg: {tmp_path / 'joined'}: 1.5 h, step {i} of {len(ANALYSIS_STAGES)}: "
                     f"{text}" for i, text in enumerate(ANALYSIS_STAGES.values(), start=1)]
    assert json.loads(out.read_text())["n_samples"] == 3 * 650000
    code, _, err = run(["analyze", str(mitdb / "100"), "--json", str(out), "--no-classify"],
                       capsys)
    assert code == 0 and ", step " not in err


def test_indices_are_in_the_input_rate(qtdb, tmp_path, capsys):
    """A 250 Hz record: every index is in its own samples, not the internal 360 Hz."""
    out = tmp_path / "sel100.json"
    code, _, err = run(
        ["analyze", str(qtdb / "sel100"), "--json", str(out), "--no-classify"], capsys
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["fs"] == 250
    rpeaks = np.array([b["r_peak"] for b in doc["beats"]])
    assert rpeaks.max() < doc["n_samples"]
    ann = wfdb.rdann(str(qtdb / "sel100"), "atr")
    ref, _ = reference_beats(ann.sample, ann.symbol)
    m = match_beats(ref, rpeaks, 0.15 * 250)
    assert m.sensitivity > 0.99 and m.ppv > 0.99
    assert np.median(np.abs(rpeaks[m.test_index] - ref[m.ref_index])) <= 4


def test_many_paths_json_dir(mitdb, arduino_dir, tmp_path, capsys):
    target = tmp_path / "results"
    code, _, err = run(
        [
            "analyze",
            str(mitdb / "100"),
            str(arduino_dir / "ECG_exp_sim_1.TXT"),
            "--fs",
            "54",
            "--json-dir",
            str(target),
            "--no-classify",
            "--lead",
            "0",
        ],
        capsys,
    )
    # The 360 Hz record disagrees with --fs 54: that one fails clearly, the other is written.
    names = sorted(p.name for p in target.glob("*.json"))
    assert "ECG_exp_sim_1.TXT.json" in names
    doc = json.loads((target / "ECG_exp_sim_1.TXT.json").read_text())
    assert doc["fs"] == 54 and len(doc["beats"]) > 10
    assert code == 1 and "100" in err and "Traceback" not in err


def test_csv_dir_writes_a_beats_and_a_rhythm_table_per_input(mitdb, tmp_path, capsys):
    import pandas as pd

    target = tmp_path / "tables"
    code, out, err = run(["analyze", str(mitdb / "201"), "--csv-dir", str(target)], capsys)
    assert code == 0, err
    assert out == ""
    assert sorted(p.name for p in target.iterdir()) == ["201_beats.csv", "201_rhythm.csv"]
    beats = pd.read_csv(target / "201_beats.csv", keep_default_na=False, na_values=[""])
    assert len(beats) > 1800 and {"r_peak", "aami", "p_abnormal", *POINTS} <= set(beats)
    assert set(beats["aami"]) <= {"N", "S", "V", "F", "Q"}
    rhythm = pd.read_csv(target / "201_rhythm.csv")
    assert "AFIB" in set(rhythm["label"]) and (rhythm["end"] > rhythm["start"]).all()


def test_arduino_file_without_rate_asks_for_it(arduino_dir, capsys):
    code, _, err = run(["analyze", str(arduino_dir / "ECG_exp_pac_1.TXT")], capsys)
    assert_clear_failure(code, err)
    assert "--fs" in err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def make_bad_inputs(tmp: Path, mitdb: Path) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    cases: dict[str, list[str]] = {}
    cases["missing file"] = [str(tmp / "nope.csv"), "--fs", "360"]
    cases["empty file"] = [str(write(tmp / "empty.txt", "")), "--fs", "360"]
    cases["non-numeric text"] = [
        str(write(tmp / "words.txt", "hello\nworld\nthis is no ecg\n")),
        "--fs",
        "360",
    ]
    mostly_nan = ["nan"] * 900 + [f"{v:.3f}" for v in rng.normal(size=100)]
    cases["NaN everywhere"] = [str(write(tmp / "nan.txt", "\n".join(mostly_nan))), "--fs", "360"]
    cases["one sample"] = [str(write(tmp / "one.txt", "512\n")), "--fs", "360"]
    cases["flat line"] = [str(write(tmp / "flat.txt", "512\n" * 5000)), "--fs", "360"]
    signal_text = "\n".join(str(int(v)) for v in 512 + 50 * rng.normal(size=3000))
    for rate in ("0", "-360", "1000000"):
        cases[f"absurd rate {rate}"] = [
            str(write(tmp / f"rate{rate}.txt", signal_text)),
            "--fs",
            rate,
        ]
    big = tmp / "huge.csv"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    cases["file above the size limit"] = [str(big), "--fs", "360"]
    for name in ("100.hea", "100.dat", "100.atr"):
        shutil.copy(mitdb / name, tmp / name)
        os.chmod(tmp / name, 0o644)
    truncated = tmp / "trunc"
    truncated.mkdir()
    for name in ("100.hea", "100.atr"):
        shutil.copy(tmp / name, truncated / name)
    data = (tmp / "100.dat").read_bytes()
    (truncated / "100.dat").write_bytes(data[: len(data) // 3 + 1])
    cases["truncated .dat"] = [str(truncated / "100")]
    liar = tmp / "liar"
    liar.mkdir()
    header = (tmp / "100.hea").read_text().replace("100 2 360 650000", "100 2 360 6500000", 1)
    (liar / "100.hea").write_text(header)
    shutil.copy(tmp / "100.dat", liar / "100.dat")
    cases[".hea that lies about its length"] = [str(liar / "100")]
    return cases


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, mitdb):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"), mitdb)


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "empty file",
        "non-numeric text",
        "NaN everywhere",
        "one sample",
        "flat line",
        "absurd rate 0",
        "absurd rate -360",
        "absurd rate 1000000",
        "file above the size limit",
        "truncated .dat",
        ".hea that lies about its length",
    ],
)
def test_bad_input_gives_one_clear_line(case, bad_inputs, capsys):
    code, out, err = run(["analyze", *bad_inputs[case], "--no-classify"], capsys)
    assert_clear_failure(code, err)
    assert out == ""


def test_short_gaps_are_interpolated_with_a_warning(mitdb, tmp_path, capsys):
    record = wfdb.rdrecord(str(mitdb / "100"), sampto=7200, channels=[0])
    values = [f"{v:.3f}" for v in record.p_signal[:, 0]]
    for i in range(3000, 3030):
        values[i] = "nan"
    path = write(tmp_path / "gaps.csv", "ecg\n" + "\n".join(values))
    code, out, err = run(["analyze", str(path), "--fs", "360", "--no-classify"], capsys)
    assert code == 0, err
    assert "warning" in err and "30 missing" in err
    doc = json.loads(out)
    assert 20 <= len(doc["beats"]) <= 30


def test_console_script_runs_without_traceback(tmp_path):
    ecg = Path(sys.executable).parent / "ecg"
    result = subprocess.run(
        [str(ecg), "analyze", str(tmp_path / "missing.txt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("ecg: error:") and "Traceback" not in result.stderr


def test_record_114_is_analysed_on_mlii_its_second_signal(mitdb, tmp_path, capsys):
    out = tmp_path / "out.json"
    code, _, err = run(["analyze", str(mitdb / "114"), "--json", str(out), "--no-classify"],
                       capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["leads"] == ["V5", "MLII"] and doc["lead_used"] == "MLII"


def test_unknown_lead_is_a_clear_error(mitdb, capsys):
    code, _, err = run(["analyze", str(mitdb / "100"), "--lead", "V9", "--no-classify"], capsys)
    assert_clear_failure(code, err)
    assert "MLII" in err
