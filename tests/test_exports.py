"""The analysis as tables (``Analysis.beats_frame``, ``Analysis.rhythm_frame``): the same
content as ``ecg analyze``'s JSON, flat, and whole through a CSV file.

Record 219 (DS2): atrial fibrillation with beats the network calls S that the rhythm rule
serves as N, so the rule columns are exercised; 100 for a record with a reference.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from ecgcore.analysis import analyze
from ecgcore.beats import AAMI_CLASSES
from ecgcore.delineate import DELINEATION_POINTS
from ecgcore.inference import load_classifiers
from ecgcore.io import output_stem, read


@pytest.fixture(scope="module")
def analysis_219(mitdb):
    return analyze(read(mitdb / "219"), "MLII", classifiers=load_classifiers())


def _from_csv(frame: pd.DataFrame) -> pd.DataFrame:
    text = io.StringIO()
    frame.to_csv(text, index=False)
    text.seek(0)
    return pd.read_csv(text, keep_default_na=False, na_values=[""])


def test_the_beats_table_says_what_the_json_says(analysis_219):
    a = analysis_219
    frame = a.beats_frame()
    beats = a.to_dict()["beats"]
    assert len(frame) == len(beats) == a.n_beats
    assert (frame["aami_rule"] != "").sum() >= 20, "219 has beats the AF rule relabels"
    for i, beat in enumerate(beats):
        row = frame.iloc[i]
        assert row["r_peak"] == beat["r_peak"]
        assert row["time_s"] == pytest.approx(beat["r_peak"] / a.fs, abs=1e-4)
        for name in DELINEATION_POINTS:
            assert (None if pd.isna(row[name]) else int(row[name])) == beat[name]
        assert row["aami"] == beat["aami"]["label"]
        assert row["aami_network"] == beat["aami"]["network_label"]
        assert (row["aami_rule"] or None) == beat["aami"]["rule"]
        for c in AAMI_CLASSES:
            assert row[f"p_{c}"] == beat["aami"]["probs"][c]
        assert row["binary"] == beat["binary"]["label"]
        assert row["binary_network"] == beat["binary"]["network_label"]
        assert (row["binary_rule"] or None) == beat["binary"]["rule"]
        assert row["p_abnormal"] == beat["binary"]["p_abnormal"]
    rr = np.diff(a.rpeaks) / a.fs
    np.testing.assert_allclose(frame["rr_s"].to_numpy()[1:], rr, atol=1e-4)
    assert np.isnan(frame["rr_s"].iloc[0])


def test_the_tables_come_back_whole_from_csv(analysis_219):
    a = analysis_219
    beats = a.beats_frame()
    back = _from_csv(beats)
    assert list(back.columns) == list(beats.columns)
    assert len(back) == len(beats)
    for name in DELINEATION_POINTS:
        # A wave that is absent is an empty cell, not 0 or -1.
        np.testing.assert_array_equal(back[name].isna().to_numpy(),
                                      beats[name].isna().to_numpy())
        present = ~beats[name].isna().to_numpy()
        np.testing.assert_array_equal(back[name].to_numpy()[present],
                                      beats[name].to_numpy()[present].astype(np.int64))
    np.testing.assert_array_equal(back["aami"].to_numpy(), beats["aami"].to_numpy())
    rhythm = a.rhythm_frame()
    assert len(rhythm) == len(a.rhythm) > 0
    assert "AFIB" in set(rhythm["label"])
    assert (rhythm["name"] == "Atrial fibrillation").sum() == (rhythm["label"] == "AFIB").sum()
    np.testing.assert_array_equal(rhythm["start"], [e["start"] for e in a.rhythm])
    np.testing.assert_allclose(rhythm["duration_s"], rhythm["end_s"] - rhythm["start_s"],
                               atol=2e-3)
    back = _from_csv(rhythm)
    np.testing.assert_array_equal(back["end"], rhythm["end"])


def test_a_reference_column_must_fit_the_beats(analysis_219):
    a = analysis_219
    reference = np.full(a.n_beats, "N")
    assert list(a.beats_frame(reference)["reference"]) == list(reference)
    with pytest.raises(ValueError, match="reference classes"):
        a.beats_frame(reference[:-1])


def test_without_the_models_the_tables_hold_what_was_found(mitdb):
    a = analyze(read(mitdb / "100"), classify=False)
    frame = a.beats_frame()
    assert len(frame) == a.n_beats > 2000
    assert not {"aami", "binary", "p_N", "p_abnormal"} & set(frame.columns)
    assert {"r_peak", "rr_s", *DELINEATION_POINTS} <= set(frame.columns)


def test_output_stems_are_file_names():
    assert output_stem("/data/mitdb/201") == "201"
    assert output_stem("ECG exp (1).TXT") == "ECG_exp_1_.TXT"
    assert output_stem("") == "recording"
    assert "/" not in output_stem("../../etc/passwd") and output_stem("a/..") == "recording"
