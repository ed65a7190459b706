"""Dataset builder, patient folds, figures, and a whole `ecg train --quick` run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ecgcore.beats import beat_inputs
from training.dataset import DS1, DS2, PACED, build_dataset, load_record_beats, patient_folds
from training.evaluate import aami_figures, binary_figures, figures_from_confusion


def test_ds1_class_counts_match_the_literature(mitdb):
    # de Chazal et al. 2004, table of DS1 beats: N 45866, S 944, V 3788, F 415, Q 8.
    beats = build_dataset(mitdb, DS1)
    assert np.bincount(beats.labels, minlength=5).tolist() == [45866, 944, 3788, 415, 8]
    assert not set(PACED) & set(beats.record.tolist())
    assert not set(DS1) & set(DS2)


def test_no_training_lead_looks_upside_down(mitdb):
    # So the polarity step of serving (ecgcore.beats.beat_inputs) never meets a training
    # lead, and training can keep every lead as recorded.
    from ecgcore.beats import looks_upside_down

    beats = build_dataset(mitdb, DS1)
    for record in DS1:
        assert not looks_upside_down(beats.of_records([record]).waveforms[..., 0]), record


def test_patient_folds_partition_ds1_by_record(mitdb):
    beats = build_dataset(mitdb, DS1)
    folds = patient_folds(beats, 4)
    flat = [r for f in folds for r in f]
    assert sorted(flat) == sorted(DS1) and len(flat) == len(set(flat))
    # Every fold can validate S and V.
    for f in folds:
        counts = np.bincount(beats.of_records(f).labels, minlength=5)
        assert counts[1] > 50 and counts[2] > 100


def test_training_inputs_are_the_serving_inputs(mitdb):
    record = load_record_beats(mitdb, "119")
    served = beat_inputs(record["x"].astype(np.float64), record["reference"])
    np.testing.assert_array_equal(served.waveforms, record["waveforms"])
    np.testing.assert_array_equal(served.rr_features, record["rr"])


def test_figures_from_a_known_matrix():
    m = np.array([[90, 5, 5, 0, 0], [10, 20, 0, 0, 0], [0, 0, 30, 0, 0],
                  [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    fig = figures_from_confusion(m, ("N", "S", "V", "F", "Q"))
    assert fig["accuracy"] == (90 + 20 + 30) / 160
    s = fig["per_class"]["S"]
    assert s["sensitivity"] == 20 / 30 and s["ppv"] == 20 / 25
    assert fig["per_class"]["F"]["sensitivity"] is None  # no F beat: undefined, not 0
    true = np.array([0, 1, 2, 2])
    probs = np.eye(5)[[0, 0, 2, 1]]
    assert aami_figures(true, probs)["confusion"][2] == [0, 1, 1, 0, 0]
    b = binary_figures(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.2, 0.7]))
    assert b["abnormal_sensitivity"] == 0.5 and b["specificity"] == 0.5


def test_quick_training_run_end_to_end(mitdb, tmp_path, capsys):
    """`ecg train --quick` builds, saves, evaluates and writes cards; evaluate agrees."""
    from ecgcore.inference import load_classifiers
    from training.commands import evaluate_main, train_main

    out = tmp_path / "models"
    assert train_main(["--quick", "--data", str(mitdb), "--out", str(out)]) == 0
    for name in ("binary", "aami"):
        assert (out / f"{name}.keras").is_file()
        card = json.loads((out / f"{name}.json").read_text())
        assert card["quick_build"] is True
        assert card["architecture"]["parameters"] > 1000
        assert set(card["figures"]) >= {"reference", "end_to_end", "intra_patient"}
        assert (out / f"{name}.md").read_text().startswith(f"# Model card: {name}")
        history = json.loads((out / f"{name}_history.json").read_text())
        assert len(history["histories"][0]) == 1  # one epoch
    classifiers = load_classifiers(out)
    assert classifiers.aami.n_classes == 5
    report = tmp_path / "evaluation.json"
    assert evaluate_main(["--quick", "--data", str(mitdb), "--models", str(out),
                          "--json", str(report)]) == 0
    evaluation = json.loads(report.read_text())
    assert evaluation["matches_cards"], evaluation["card_differences"]
    e2e = evaluation["end_to_end"]["aami"]
    # Missed and extra beats are counted, never dropped: every reference beat is there.
    reference = evaluation["reference"]["aami"]["n_beats"]
    assert sum(map(sum, e2e["confusion_with_missed_extra"][:5])) == reference
    assert "cards reproduced exactly" in capsys.readouterr().out
    # End to end is reported with and without the rules; 100 and 232 have no AF, so the
    # rhythm rule changes nothing there, and what differs is the morphology rule's doing.
    rule_free = evaluation["end_to_end"]["without_rhythm_rule"]["aami"]
    assert evaluation["end_to_end"]["rhythm_rule"]["relabelled_beats"] == 0
    morphology = evaluation["end_to_end"]["morphology_rule"]["relabelled_beats"]
    free, served = (np.array(rule_free["confusion_with_missed_extra"]),
                    np.array(e2e["confusion_with_missed_extra"]))
    np.testing.assert_array_equal(free.sum(axis=1), served.sum(axis=1))
    assert np.abs(free - served).sum() <= 2 * morphology
    if morphology == 0:
        np.testing.assert_array_equal(free, served)
    assert set(evaluation["end_to_end"]["binary_variants"]) == {
        "network", "either_network_or_five_class", "rule_when_five_class_s",
        "rule_in_af_unless_five_class_vfq"}


def test_evaluate_rewrites_the_cards_it_checks(mitdb, tmp_path, capsys):
    """`ecg evaluate --cards` rewrites the figures of existing cards, keeping training fields."""
    import shutil

    from ecgcore.inference import MODELS_DIR
    from training.commands import QUICK_TEST_RECORDS, evaluate_main

    out = tmp_path / "models"
    out.mkdir()
    for name in ("binary", "aami"):
        for suffix in (".keras", ".json"):
            shutil.copy(MODELS_DIR / f"{name}{suffix}", out)
        card = json.loads((out / f"{name}.json").read_text())
        card["figures"]["end_to_end"]["confusion"] = [[0]]  # a stale card
        (out / f"{name}.json").write_text(json.dumps(card))
    before = json.loads((out / "aami.json").read_text())
    # ecg train's timing, in the evaluation file an evaluation rewrites.
    (tmp_path / "e.json").write_text(json.dumps({"training_seconds_all_networks": 265.0}))
    args = ["--quick", "--data", str(mitdb), "--models", str(out), "--json",
            str(tmp_path / "e.json")]
    assert evaluate_main(args) == 0
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert evaluation["training_seconds_all_networks"] == 265.0
    assert evaluation["matches_cards"] is False
    assert "DIFFERENT from the cards" in capsys.readouterr().out
    assert evaluate_main([*args, "--cards"]) == 0
    assert "cards reproduced exactly" in capsys.readouterr().out
    after = json.loads((out / "aami.json").read_text())
    assert after["architecture"] == before["architecture"]
    assert after["training_seconds"] == before["training_seconds"]
    assert after["data"]["train_records"] == before["data"]["train_records"]
    assert after["data"]["test_records"] == list(QUICK_TEST_RECORDS)  # what was evaluated
    assert after["rhythm_rule"]["rule"].startswith("S -> N")
    assert after["end_to_end_without_rhythm_rule"]["classes"] == list("NSVFQ")
    assert "## The rhythm rule" in (out / "aami.md").read_text()


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    from training.commands import train_main

    assert train_main(["--quick", "--data", str(tmp_path), "--out", str(tmp_path / "m")]) == 1
    assert "no MIT-BIH" in capsys.readouterr().err


def test_cross_validation_holds_each_patient_out_once(mitdb):
    """Every beat is predicted once, by a network that never saw its patient."""
    from dataclasses import replace

    from training.commands import QUICK_TRAIN_RECORDS
    from training.train import TrainConfig, cross_validate

    beats = build_dataset(mitdb, QUICK_TRAIN_RECORDS)
    config = replace(TrainConfig(), epochs=1, normal_fraction=0.1)
    seen = []
    cv = cross_validate(beats, "aami", config, n_folds=2,
                        on_fold=lambda k, held: seen.append(list(held)))
    assert seen == cv.folds
    flat = [r for f in cv.folds for r in f]
    assert sorted(flat) == sorted(QUICK_TRAIN_RECORDS) and len(flat) == len(set(flat))
    assert cv.probs.shape == (len(beats), 5) and cv.true.shape == (len(beats),)
    np.testing.assert_allclose(cv.probs.sum(axis=1), 1.0, atol=1e-4)
    # The pooled targets are the held-out records' own labels, fold by fold.
    for k, held in enumerate(cv.folds):
        np.testing.assert_array_equal(cv.true[cv.fold_of == k],
                                      beats.of_records(held).labels)
    # Each fold's network is kept: it gives that fold's held-out predictions again.
    from training.train import predict

    assert len(cv.models) == len(cv.folds)
    for k, held in enumerate(cv.folds):
        np.testing.assert_allclose(predict(cv.models[k], beats.of_records(held), "aami"),
                                   cv.probs[cv.fold_of == k], atol=1e-6)


def test_a_network_reads_only_the_inputs_its_architecture_selects(tmp_path):
    import keras

    from ecgcore.beats import RR_FEATURE_NAMES, WINDOW_LENGTH
    from ecgcore.inference import JittedModel
    from training.architectures import SMALL_WIDE_RR, build_classifier

    config = replace(SMALL_WIDE_RR, waveform_used=("beat_minus_template",),
                     rr_used=("rr_pre_over_local", "rr_irregularity"))
    model = build_classifier(5, WINDOW_LENGTH, len(RR_FEATURE_NAMES), config)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = JittedModel(keras.models.load_model(path, safe_mode=True), "aami")
    rng = np.random.default_rng(0)
    waves = rng.normal(size=(8, WINDOW_LENGTH, 2)).astype(np.float32)
    rr = rng.uniform(0.5, 1.5, size=(8, len(RR_FEATURE_NAMES))).astype(np.float32)
    before = loaded(waves, rr)
    unused_rr = [i for i, n in enumerate(RR_FEATURE_NAMES) if n not in config.rr_used]
    changed_waves, changed_rr = waves.copy(), rr.copy()
    changed_waves[..., 0] += 1.0  # the beat channel, which this network does not read
    changed_rr[:, unused_rr] *= 3.0
    np.testing.assert_allclose(loaded(changed_waves, changed_rr), before, atol=1e-6)
    used = RR_FEATURE_NAMES.index("rr_pre_over_local")
    changed_rr[:, used] *= 0.5
    changed_waves[..., 1] += 1.0
    assert np.abs(loaded(changed_waves, changed_rr) - before).max() > 1e-4


def test_unknown_selected_inputs_are_refused():
    import pytest

    from ecgcore.beats import RR_FEATURE_NAMES, WINDOW_LENGTH
    from training.architectures import SMALL_WIDE_RR, build_classifier

    with pytest.raises(ValueError, match="unknown inputs: rr_made_up"):
        build_classifier(5, WINDOW_LENGTH, len(RR_FEATURE_NAMES),
                         replace(SMALL_WIDE_RR, rr_used=("rr_made_up",)))


def test_s_beats_take_an_n_waveform_of_their_own_record():
    from training.dataset import BeatSet
    from training.train import swap_s_waveforms

    # Two records; each beat's waveform is filled with a number naming the beat.
    labels = np.array([0, 0, 1, 1, 0, 1, 2])
    record = np.array(["a", "a", "a", "a", "b", "b", "b"])
    waves = np.repeat(np.arange(7, dtype=np.float32)[:, None, None], 4, axis=1)
    waves = np.repeat(waves, 2, axis=2)
    beats = BeatSet(waves, np.ones((7, 3), np.float32), labels, record, np.arange(7))
    idx = np.array([6, 3, 0, 5, 2, 1])
    out = swap_s_waveforms(waves[idx], idx, beats, 1.0, np.random.default_rng(0))
    source = out[:, 0, 0].astype(int)
    for row, beat in enumerate(idx):
        if labels[beat] == 1:
            assert labels[source[row]] == 0 and record[source[row]] == record[beat]
        else:
            assert source[row] == beat
    assert np.all(out == out[:, :1, :1])  # whole waveforms, both channels
    kept = swap_s_waveforms(waves[idx], idx, beats, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(kept, waves[idx])


def test_smote_tops_rare_classes_up_with_points_between_two_beats_of_the_class():
    from training.dataset import BeatSet
    from training.train import smote_neighbours, smote_rows

    rng = np.random.default_rng(1)
    labels = np.array([0] * 40 + [1] * 6 + [2] * 3 + [3] * 1)
    n = labels.size
    waves = (rng.normal(size=(n, 16, 2)) + labels[:, None, None] * 5).astype(np.float32)
    beats = BeatSet(waves, rng.normal(size=(n, 3)).astype(np.float32), labels,
                    np.array(["a"] * n), np.arange(n))
    near = smote_neighbours(beats, 5)
    assert set(near) == {0, 1, 2}  # a class of one beat has no neighbour
    for c, rows in near.items():
        members = np.flatnonzero(labels == c)
        assert np.all(np.isin(rows, members))
        assert not np.any(rows == members[:, None])  # never its own neighbour
    idx = rng.permutation(n)  # an epoch's beats, in any order
    a, b, u = smote_rows(idx, labels, near, 10, rng)
    made = np.bincount(labels[idx[a]], minlength=5)
    assert made.tolist() == [0, 4, 7, 0, 0]  # S 6 -> 10, V 3 -> 10; N and F untouched
    assert np.array_equal(labels[idx[a]], labels[idx[b]])
    assert np.all((u >= 0) & (u < 1))
    assert smote_rows(idx, labels, near, 2, rng)[0].size == 0


def test_a_logit_shift_in_the_model_rescales_its_class_probabilities(tmp_path):
    import keras

    from ecgcore.beats import RR_FEATURE_NAMES, WINDOW_LENGTH
    from ecgcore.inference import JittedModel
    from training.architectures import SMALL_WIDE_RR, build_classifier
    from training.train import shift_logits, shift_probabilities

    model = build_classifier(5, WINDOW_LENGTH, len(RR_FEATURE_NAMES), SMALL_WIDE_RR)
    rng = np.random.default_rng(1)
    waves = rng.normal(size=(16, WINDOW_LENGTH, 2)).astype(np.float32)
    rr = rng.uniform(0.5, 1.5, size=(16, len(RR_FEATURE_NAMES))).astype(np.float32)
    before = JittedModel(model, "aami")(waves, rr)
    shift = (0.0, 1.5, -0.5, 0.0, 0.0)
    shift_logits(model, shift)
    path = tmp_path / "shifted.keras"
    model.save(path)
    after = JittedModel(keras.models.load_model(path, safe_mode=True), "aami")(waves, rr)
    np.testing.assert_allclose(after, shift_probabilities(before, shift), atol=1e-5)
    assert (after[:, 1] > before[:, 1]).all() and (after[:, 2] < before[:, 2]).all()
    with pytest.raises(ValueError, match="5 classes"):
        shift_logits(model, (1.0, 2.0))


def test_the_prematurity_rule_tried_fires_only_on_early_regular_conducted_n_beats():
    from training.experiments import prematurity_rule_mask

    labels = np.array(["N", "N", "N", "S", "N"])
    pre = np.array([0.5, 0.5, 0.9, 0.5, 0.5])
    irregularity = np.array([0.02, 0.3, 0.02, 0.02, 0.02])
    corr = np.array([0.95, 0.95, 0.95, 0.95, 0.5])
    assert prematurity_rule_mask(labels, pre, irregularity, corr, 0.65, 0.05, 0.92).tolist() == [
        True, False, False, False, False]
    assert prematurity_rule_mask(labels, pre, irregularity, corr, 0.65, 0.05, None).tolist() == [
        True, False, False, False, True]
    assert prematurity_rule_mask(labels, pre, irregularity, corr, 0.65, None, 0.92).tolist() == [
        True, True, False, False, False]
    assert not prematurity_rule_mask(labels, pre, irregularity, corr, None, 0.05, 0.92).any()
