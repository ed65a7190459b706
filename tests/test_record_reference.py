"""What the record view compares with: beat annotations where a record has them, and
only the rhythm where its ``.atr`` holds nothing else.

The MIT-BIH Atrial Fibrillation Database is built so: its ``.atr`` files mark the rhythm
changes only (the beats are in unclassified ``.qrs`` files). A record without reference
beats must not be scored as if every detected beat were an extra one.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def record_201(mitdb):
    from ecgcore.io import read

    return read(str(mitdb / "201"))


def _rhythm_only(recording):
    from dataclasses import replace

    from ecgcore.recording import Annotations

    ann = recording.annotations
    keep = [i for i, s in enumerate(ann.symbol) if s == "+"]
    return replace(recording, annotations=Annotations(
        np.asarray(ann.sample)[keep], [ann.symbol[i] for i in keep],
        [ann.aux_note[i] for i in keep]))


def test_a_rhythm_only_reference_gives_rhythm_bands_and_no_beat_scores(record_201):
    from dashboard.records import prepare

    prepared = prepare("201", _rhythm_only(record_201))
    assert prepared.analysis is not None and prepared.analysis.n_beats > 1500
    summary = prepared.summary
    assert summary["reference"] is None
    assert "detection" not in summary and "per_class" not in summary
    assert prepared.reference is None
    assert not prepared.beats["ref"].any()
    reference_af = [e for e in prepared.rhythm
                    if e["source"] == "reference" and e["label"] == "(AFIB"]
    assert len(reference_af) == 3  # 201: three stretches of AF
    # Disagreements are then only the two models' with each other.
    binary_abnormal = prepared.beats["binary"] == "abnormal"
    aami_abnormal = prepared.beats["aami"] != "N"
    assert np.array_equal(prepared.beats["disagree"], binary_abnormal != aami_abnormal)


def test_a_full_reference_is_scored(record_201):
    from dashboard.records import prepare

    prepared = prepare("201", record_201)
    summary = prepared.summary
    assert summary["reference"]["N"] > 1500
    assert summary["detection"]["sensitivity"] > 0.95
    assert prepared.beats["ref"].any()


def test_the_rhythm_found_is_scored_against_the_reference_rhythm(record_201):
    from dashboard.records import prepare
    from ecgcore.catalog import reference_rhythm_episodes
    from ecgcore.metrics import episode_agreement

    for recording in (record_201, _rhythm_only(record_201)):
        prepared = prepare("201", recording)
        rows = {r["label"]: r for r in prepared.summary["rhythm_reference"]}
        ann = recording.annotations
        reference = [(e["start"], e["end"]) for e in reference_rhythm_episodes(
            ann.sample, list(ann.symbol), list(ann.aux_note), recording.n_samples)
            if e["label"] == "(AFIB"]
        found = [(e["start"], e["end"]) for e in prepared.analysis.rhythm
                 if e["label"] == "AFIB"]
        expected = episode_agreement(reference, found, recording.fs)
        af = rows["AFIB"]
        assert af["ref_n"] == 3 and af["ref_s"] == round(expected["ref_s"], 1)
        assert af["duration_se"] == round(100 * expected["overlap_s"] / expected["ref_s"], 1)
        assert af["duration_se"] > 80
        # 201's reference names its trigeminy too; a rhythm neither side has is left out.
        assert "T" in rows and "IVR" not in rows


def test_ventricular_flutter_is_shown_and_scored_in_207(mitdb):
    from dashboard.records import prepare
    from ecgcore.io import read
    from ecgcore.rhythm import RHYTHM_NAMES

    prepared = prepare("207", read(str(mitdb / "207")))
    found = prepared.analysis.rhythm_summary["by_label"]["VFL"]
    assert found["name"] == RHYTHM_NAMES["VFL"] and found["count"] >= 4
    row = {r["label"]: r for r in prepared.summary["rhythm_reference"]}["VFL"]
    assert row["ref_n"] == 6 and row["duration_se"] > 80 and row["duration_ppv"] > 80
    # The record view's bands: ours beside the reference's.
    labels = {e["label"] for e in prepared.rhythm}
    assert {"VFL", "(VFL"} <= labels


def test_trend_names_rhythms_plainly_without_labels_running_into_each_other(mitdb):
    # 208 has nearly a hundred short trigeminy, tachycardia and pause episodes, found and
    # in the reference: far more than there is room to label across 30 minutes.
    from dashboard.components.figures import LABEL_CHAR_PX, LABEL_PLOT_PX, trend_figure
    from dashboard.records import prepare
    from ecgcore.io import read
    from ecgcore.rhythm import RHYTHM_NAMES

    prepared = prepare("208", read(str(mitdb / "208")))
    figure = trend_figure(prepared, (0.0, 20.0))
    shown = [e for e in prepared.rhythm if e["label"] != "(N"]
    assert len(shown) > 80
    names = set(RHYTHM_NAMES.values())
    hover = [text for t in figure["data"] if t.get("name") == "rhythm episodes"
             for text in t["text"]]
    assert len(set(hover)) == len(shown)
    assert all(text.split("<br>")[0].removeprefix("ref ").removesuffix(" (detected)")
               in names for text in hover)
    labels = figure["layout"]["annotations"]
    assert all(a["text"].removeprefix("ref ").removesuffix(" (detected)") in names
               for a in labels)
    seconds_per_char = prepared.duration_s * LABEL_CHAR_PX / LABEL_PLOT_PX
    for row in {a["y"] for a in labels}:
        placed = sorted((a["x"], len(a["text"])) for a in labels if a["y"] == row)
        for (x, chars), (next_x, _) in zip(placed, placed[1:], strict=False):
            assert next_x >= x + chars * seconds_per_char
