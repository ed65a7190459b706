"""The committed classifiers: safe loading, thread safety, clear errors."""

from __future__ import annotations

import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ecgcore.beats import BeatInputs, align_rpeaks, beat_inputs
from ecgcore.errors import ModelError
from ecgcore.inference import MODELS_DIR, classify_beats, load_classifiers, load_model_file
from training.dataset import load_record_beats


@pytest.fixture(scope="module")
def record_119(mitdb):
    return load_record_beats(mitdb, "119")


@pytest.fixture(scope="module")
def inputs_119(record_119):
    r = record_119
    return BeatInputs(r["waveforms"], r["rr"], r["position"])


def test_committed_weights_load_safely_and_classify(inputs_119, record_119):
    for name in ("binary", "aami"):
        path = MODELS_DIR / f"{name}.keras"
        # A .keras file is a zip of JSON config + HDF5 weights; no pickle inside.
        assert not any(n.endswith((".pkl", ".pickle", ".npy")) for n in
                       zipfile.ZipFile(path).namelist())
        load_model_file(path)  # safe_mode=True
    classifiers = load_classifiers()
    out = classify_beats(classifiers, inputs_119)
    n = len(inputs_119)
    assert out["aami_probs"].shape == (n, 5) and out["binary_p_abnormal"].shape == (n,)
    np.testing.assert_allclose(out["aami_probs"].sum(1), 1.0, atol=1e-4)
    # Record 119 has hundreds of PVCs: a working model finds most of them.
    is_v = record_119["labels"] == 2
    assert np.mean(out["aami"][is_v] == "V") > 0.8
    assert np.mean(out["binary"][is_v] == "abnormal") > 0.8
    assert np.mean(out["aami"][~is_v] == "N") > 0.8


def test_eight_threads_give_single_thread_results(inputs_119):
    classifiers = load_classifiers()
    chunks = [inputs_119.subset(slice(i * 200, i * 200 + 150 + 37 * i)) for i in range(8)]
    single = [classify_beats(classifiers, c) for c in chunks]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            multi = list(pool.map(lambda c: classify_beats(classifiers, c), chunks))
            for a, b in zip(single, multi, strict=True):
                np.testing.assert_array_equal(a["aami_probs"], b["aami_probs"])
                np.testing.assert_array_equal(a["binary_p_abnormal"], b["binary_p_abnormal"])


def test_missing_or_corrupt_model_file_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        load_classifiers(tmp_path)
    (tmp_path / "binary.keras").write_bytes(b"not a keras archive")
    (tmp_path / "aami.keras").write_bytes((MODELS_DIR / "aami.keras").read_bytes()[:5000])
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_classifiers(tmp_path)


def test_alignment_makes_reference_and_shifted_marks_agree(mitdb):
    # Record 100: narrow QRS complexes. (On wide ventricular beats, e.g. records 119 and
    # 208, the fiducial point is less stable: 70-99 % agree within 1 sample; see the report.)
    record = load_record_beats(mitdb, "100")
    x = record["x"]
    ref = record["reference"]
    aligned = align_rpeaks(x, ref)
    for shift in (-12, -5, 5, 12):  # up to 33 ms, as between annotators and detectors
        moved = align_rpeaks(x, ref + shift)
        assert np.mean(np.abs(moved - aligned) <= 1) > 0.99
    # Inputs for an empty beat list are empty, not an error.
    empty = beat_inputs(x, np.zeros(0, dtype=np.int64))
    assert len(empty) == 0


def test_p_coherence_feature_tells_sinus_rhythm_from_atrial_fibrillation(mitdb):
    # The one rhythm feature not from RR: sinus beats (record 100) carry a P wave locked
    # to the QRS, the beats of record 201's atrial fibrillation do not.
    import wfdb

    from ecgcore.beats import RR_FEATURE_NAMES, beat_rr_features
    from ecgcore.catalog import reference_rhythm_episodes

    column = RR_FEATURE_NAMES.index("p_coherence")
    sinus = load_record_beats(mitdb, "100")
    assert np.median(sinus["rr"][:, column]) > 0.8
    record = load_record_beats(mitdb, "201")
    ann = wfdb.rdann(str(mitdb / "201"), "atr")
    in_af = np.zeros(record["x"].size, dtype=bool)
    for episode in reference_rhythm_episodes(ann.sample, ann.symbol, ann.aux_note, in_af.size):
        in_af[episode["start"]:episode["end"]] = episode["label"] == "(AFIB"
    af_beats = in_af[record["position"]]
    assert af_beats.sum() > 500
    assert np.median(record["rr"][af_beats, column]) < 0.5
    assert np.median(record["rr"][~af_beats, column]) > 0.7
    # Too few beats to tell: a finite, neutral value, never NaN.
    few = beat_rr_features(sinus["x"], sinus["reference"][:2])
    assert np.all(np.isfinite(few)) and np.all(few[:, column] == 1.0)


def test_a_lead_recorded_upside_down_is_classified_alike(mitdb):
    # Electrodes swapped: the classifiers see the lead the right way up either way, so
    # every probability is the same, and the user is told which one was turned.
    from dataclasses import replace

    from ecgcore.analysis import UPSIDE_DOWN_WARNING, analyze
    from ecgcore.io import read

    full = read(mitdb / "100")
    part = replace(full, signal=full.signal[: int(300 * full.fs)], annotations=None)
    upside_down = replace(part, signal=-part.signal)
    a, b = analyze(part, "MLII"), analyze(upside_down, "MLII")
    np.testing.assert_array_equal(a.rpeaks, b.rpeaks)
    np.testing.assert_array_equal(a.aami_probs, b.aami_probs)
    np.testing.assert_array_equal(a.binary_p_abnormal, b.binary_p_abnormal)
    assert list(a.aami_labels) == list(b.aami_labels)
    assert [UPSIDE_DOWN_WARNING in x.warnings for x in (a, b)] == [False, True]


def test_a_lead_whose_qrs_points_down_by_nature_is_read_as_recorded(mitdb):
    # 207's MLII: the QRS points down but the T wave up. Swapped electrodes would turn
    # both; so it is read as recorded, as the networks were trained on it.
    from ecgcore.beats import looks_upside_down

    waves = load_record_beats(mitdb, "207")["waveforms"][..., 0]
    assert not looks_upside_down(waves) and not looks_upside_down(-waves)
    # Record 100 the right way up, and upside down.
    waves = load_record_beats(mitdb, "100")["waveforms"][..., 0]
    assert not looks_upside_down(waves) and looks_upside_down(-waves)


def test_a_long_recording_gives_each_beat_the_context_of_its_own_half_hour(mitdb):
    # A Holter recording is far longer than the 30-minute records the networks learnt
    # from; its context (amplitude scale, median beat, median RR) is taken per stretch of
    # about 30 minutes (ecgcore.beats.CONTEXT_S). Three records joined (90 minutes) are
    # cut at their own joints, so every beat away from a joint gets exactly the inputs it
    # gets in its own record; one context for the 90 minutes would give 208's beats a
    # median beat and amplitude taken mostly from 100 and 119.
    import wfdb

    from ecgcore.beats import context_segments
    from ecgcore.signal import ecg_condition

    leads, beats, alone = [], [], []
    offset = 0
    for name in ("100", "208", "119"):
        x = ecg_condition(wfdb.rdrecord(str(mitdb / name), channels=[0]).p_signal[:, 0], 360.0)
        r = wfdb.rdann(str(mitdb / name), "atr").sample
        r = r[(r > 100) & (r < x.size - 200)]
        alone.append(beat_inputs(x, r))
        leads.append(x)
        beats.append(r + offset)
        offset += x.size
    joined_x, joined_r = np.concatenate(leads), np.concatenate(beats)
    joined = beat_inputs(joined_x, joined_r)
    segments = context_segments(joined_r, joined_x.size, 360.0)
    assert np.array_equal(segments, np.repeat([0, 1, 2], [b.size for b in beats]))
    start = 0
    for one in alone:
        n = len(one)
        # Away from the joints (the local RR and P-wave windows reach 50 beats).
        inner = slice(60, n - 60)
        mine = slice(start + 60, start + n - 60)
        np.testing.assert_array_equal(joined.waveforms[mine], one.waveforms[inner])
        np.testing.assert_array_equal(joined.rr_features[mine], one.rr_features[inner])
        start += n
    # A 30-minute record is one context: the inputs the networks were trained on.
    assert not context_segments(beats[0], leads[0].size, 360.0).any()
