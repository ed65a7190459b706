"""The record catalogue: rows read from real MIT-BIH headers and annotations."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecgcore import catalog
from ecgcore.errors import ReadError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MITDB = DATA / "mitdb"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_CACHE_DIR", str(tmp_path / "cache"))


def test_parse_header_comments():
    row = catalog.parse_header_comments(["69 M 1085 1629 x1", "Aldomet, Inderal"])
    assert row == {"age": 69, "sex": "M", "medications": "Aldomet, Inderal"}
    unknown = catalog.parse_header_comments(["-1 M 742 654 x1", "Diapres, Xyloprim"])
    assert unknown["age"] is None and unknown["sex"] == "M"
    assert catalog.parse_header_comments([]) == {"age": None, "sex": None, "medications": None}
    # The PhysioNet Challenge 2020/2021 headers.
    challenge = ["Age: 74", "Sex: Male", "Dx: 59118001", "Rx: Unknown", "Hx: Unknown"]
    assert catalog.parse_header_comments(challenge) == {"age": 74, "sex": "M",
                                                        "medications": None}
    assert catalog.parse_header_comments(["Age: NaN", "Sex: Female", "Rx: Digoxin"]) == {
        "age": None, "sex": "F", "medications": "Digoxin"}


def test_packaged_samples_are_listed_without_env(monkeypatch):
    monkeypatch.delenv(catalog.MITDB_ENV, raising=False)
    assert catalog.records_dir() == catalog.SAMPLES_DIR
    names = catalog.record_names()
    assert {"100", "119", "201", "208", "232"} <= set(names)


def test_env_folder_lists_all_48(monkeypatch):
    monkeypatch.setenv(catalog.MITDB_ENV, str(MITDB))
    rows = catalog.catalog()
    assert len(rows) == 48
    assert [r["name"] for r in rows][:3] == ["100", "101", "102"]


def test_record_208_row_matches_its_files():
    # 208's header: "23 F ...", no medication; its .atr holds 1586 N, 2 S, 992 V, 373 F
    # and 2 Q beats (PhysioNet's table for 208), ventricular trigeminy episodes.
    row = next(r for r in catalog.catalog(MITDB) if r["name"] == "208")
    assert (row["age"], row["sex"], row["medications"]) == (23, "F", "None")
    assert row["beats"] == {"N": 1586, "S": 2, "V": 992, "F": 373, "Q": 2}
    assert row["n_beats"] == 2955
    assert "(T" in row["rhythms"] and "(N" in row["rhythms"]
    assert row["duration_s"] == pytest.approx(650000 / 360, abs=0.01)
    assert row["leads"] == ["MLII", "V1"]


def test_samples_cover_every_aami_class_and_afib():
    rows = catalog.catalog(catalog.SAMPLES_DIR)
    for aami in ("N", "S", "V", "F", "Q"):
        assert sum(r["beats"][aami] for r in rows) > 0, aami
    assert any("(AFIB" in r["rhythms"] for r in rows)


def test_catalogue_is_cached_and_invalidated(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(MITDB / f"100{suffix}", folder / f"100{suffix}")
    first = catalog.catalog(folder)
    assert [r["name"] for r in first] == ["100"]
    assert list((tmp_path / "cache" / "tables").glob("catalog-*.json"))
    # A new record in the folder changes the key: the table is rebuilt, not served stale.
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(MITDB / f"119{suffix}", folder / f"119{suffix}")
    assert [r["name"] for r in catalog.catalog(folder)] == ["100", "119"]


def test_record_path_refuses_unknown_names():
    with pytest.raises(ReadError):
        catalog.record_path("../../etc/passwd", MITDB)
    assert catalog.record_path("208", MITDB) == MITDB / "208"


def test_reference_rhythm_episodes_cover_record_201():
    import wfdb

    ann = wfdb.rdann(str(MITDB / "201"), "atr")
    episodes = catalog.reference_rhythm_episodes(ann.sample, ann.symbol, ann.aux_note, 650000)
    labels = {e["label"] for e in episodes}
    assert "(AFIB" in labels
    assert all(e["start"] < e["end"] for e in episodes)
    assert episodes[-1]["end"] == 650000
    for a, b in zip(episodes, episodes[1:], strict=False):
        assert a["end"] == b["start"]


def test_a_folder_of_physionet_challenge_records_hea_mat_is_listed_and_read(tmp_path):
    """The PhysioNet Challenges (AF 2017, 12-lead 2020/2021) ship ``.hea`` + ``.mat``."""
    import numpy as np
    import wfdb
    from wfdb.io.convert.matlab import wfdb_to_mat

    from ecgcore.io import read, read_files

    for suffix in (".hea", ".dat"):
        shutil.copy(MITDB / f"100{suffix}", tmp_path / f"100{suffix}")
    # wfdb writes <name>m.hea + <name>m.mat in the working folder.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        wfdb_to_mat("100", sampto=360 * 60)
    for suffix in (".hea", ".dat"):
        (tmp_path / f"100{suffix}").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100m.hea", "100m.mat"]
    assert catalog.record_names(tmp_path) == ["100m"]
    row = catalog.catalog(tmp_path, use_cache=False)[0]
    assert row["duration_s"] == 60.0 and row["leads"] == ["MLII", "V5"]
    original = wfdb.rdrecord(str(MITDB / "100"), sampto=360 * 60).p_signal
    for recording in (read(str(tmp_path / "100m")), read(str(tmp_path / "100m.mat")),
                      read_files({n: (tmp_path / n).read_bytes()
                                  for n in ("100m.hea", "100m.mat")})):
        assert recording.fs == 360.0 and recording.leads == ["MLII", "V5"]
        np.testing.assert_allclose(recording.signal, original, atol=1e-9)
