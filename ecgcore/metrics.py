"""Beat matching and the AAMI EC57 figures computed from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MATCH_TOLERANCE_S = 0.150
"""EC57 matching window: a detected beat within 150 ms of a reference beat matches it."""

AAMI_BEAT_SYMBOLS = {
    "N": "N",
    "L": "N",
    "R": "N",
    "e": "N",
    "j": "N",
    "A": "S",
    "a": "S",
    "J": "S",
    "S": "S",
    "V": "V",
    "E": "V",
    "F": "F",
    "/": "Q",
    "f": "Q",
    "Q": "Q",
    # WFDB codes that MIT-BIH does not use but other databases do (INCART, for one):
    # an unspecified bundle branch block beat and a supraventricular escape beat are N,
    # as L, R, e and j are; an R-on-T premature ventricular contraction is V.
    "B": "N",
    "n": "N",
    "r": "V",
}
"""WFDB beat symbol -> AAMI class (EC57). Symbols absent here are not beats."""


@dataclass(frozen=True)
class BeatMatch:
    """One-to-one matching of detected beats to reference beats.

    Attributes
    ----------
    ref_index, test_index : np.ndarray
        Positions (into the reference and test arrays) of matched pairs.
    missed : np.ndarray
        Positions of reference beats no detection matched (false negatives).
    extra : np.ndarray
        Positions of detections that matched no reference beat (false positives).
    """

    ref_index: np.ndarray
    test_index: np.ndarray
    missed: np.ndarray
    extra: np.ndarray

    @property
    def sensitivity(self) -> float:
        """Matched / reference beats (NaN when there is no reference beat)."""
        total = self.ref_index.size + self.missed.size
        return self.ref_index.size / total if total else float("nan")

    @property
    def ppv(self) -> float:
        """Matched / detected beats, the positive predictivity (NaN with no detection)."""
        total = self.test_index.size + self.extra.size
        return self.test_index.size / total if total else float("nan")


def match_beats(ref: np.ndarray, test: np.ndarray, tolerance: float) -> BeatMatch:
    """Match two sorted lists of beat times one-to-one within ``tolerance``.

    Each reference beat takes the nearest unmatched detection within the tolerance,
    nearest pairs first, so one detection never counts for two beats.

    Parameters
    ----------
    ref, test : np.ndarray
        Beat positions (samples or seconds), sorted ascending.
    tolerance : float
        Largest allowed distance, in the same unit (e.g. ``0.15 * fs`` samples).
    """
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    empty = np.zeros(0, dtype=np.int64)
    if ref.size == 0 or test.size == 0:
        return BeatMatch(empty, empty, np.arange(ref.size), np.arange(test.size))
    # Candidate pairs: each ref beat with its neighbours in test on either side.
    pos = np.searchsorted(test, ref)
    candidates_ref, candidates_test = [], []
    for shift in (-2, -1, 0, 1):
        j = pos + shift
        ok = (j >= 0) & (j < test.size)
        candidates_ref.append(np.flatnonzero(ok))
        candidates_test.append(j[ok])
    cr = np.concatenate(candidates_ref)
    ct = np.concatenate(candidates_test)
    dist = np.abs(ref[cr] - test[ct])
    keep = dist <= tolerance
    cr, ct, dist = cr[keep], ct[keep], dist[keep]
    order = np.argsort(dist, kind="stable")
    ref_used = np.zeros(ref.size, dtype=bool)
    test_used = np.zeros(test.size, dtype=bool)
    pairs_ref, pairs_test = [], []
    for k in order:
        r, t = cr[k], ct[k]
        if ref_used[r] or test_used[t]:
            continue
        ref_used[r] = test_used[t] = True
        pairs_ref.append(r)
        pairs_test.append(t)
    pairs_ref = np.asarray(pairs_ref, dtype=np.int64)
    pairs_test = np.asarray(pairs_test, dtype=np.int64)
    order = np.argsort(pairs_ref)
    return BeatMatch(
        pairs_ref[order], pairs_test[order], np.flatnonzero(~ref_used), np.flatnonzero(~test_used)
    )


def reference_beats(
    sample: np.ndarray, symbol: list[str], *, exclude_flutter: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The beats of a MIT-BIH-style annotation list, with their AAMI classes.

    Parameters
    ----------
    sample, symbol
        Annotation positions and codes (``Annotations.sample``, ``Annotations.symbol``).
    exclude_flutter : bool
        Leave out beats inside ventricular flutter episodes (between ``[`` and ``]``),
        as EC57 does for QRS detection.

    Returns
    -------
    positions : np.ndarray
        Sample index of each beat (int64).
    classes : np.ndarray
        AAMI class of each beat (``"N"``, ``"S"``, ``"V"``, ``"F"``, ``"Q"``).
    """
    sample = np.asarray(sample, dtype=np.int64)
    keep = np.array([s in AAMI_BEAT_SYMBOLS for s in symbol], dtype=bool)
    if exclude_flutter:
        for start, end in flutter_intervals(sample, symbol):
            keep &= ~((sample >= start) & (sample <= end))
    classes = np.array([AAMI_BEAT_SYMBOLS.get(s, "") for s in symbol], dtype="<U1")
    return sample[keep], classes[keep]


def flutter_intervals(sample: np.ndarray, symbol: list[str]) -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation episodes, ``[`` to ``]``, as (start, end) samples."""
    intervals, start = [], None
    for position, code in zip(sample, symbol, strict=True):
        if code == "[":
            start = int(position)
        elif code == "]" and start is not None:
            intervals.append((start, int(position)))
            start = None
    if start is not None:
        intervals.append((start, int(sample[-1]) if len(sample) else start))
    return intervals


def in_intervals(positions: np.ndarray, intervals: list[tuple[int, int]]) -> np.ndarray:
    """Boolean mask of the positions lying inside any of the (start, end) intervals."""
    positions = np.asarray(positions)
    mask = np.zeros(positions.shape, dtype=bool)
    for start, end in intervals:
        mask |= (positions >= start) & (positions <= end)
    return mask


def merge_intervals(intervals: list[tuple[int, int]], gap: float = 0) -> list[tuple[int, int]]:
    """Join (start, end) intervals that overlap or are at most ``gap`` samples apart."""
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if out and start - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end) for start, end in out]


def episode_agreement(
    reference: list[tuple[int, int]], detected: list[tuple[int, int]], fs: float
) -> dict[str, float]:
    """How detected episodes of one rhythm agree with the reference episodes of it.

    EC57's way for atrial fibrillation: episodes by overlap, durations by shared time.

    Parameters
    ----------
    reference, detected : list of (start, end)
        Episodes in samples (end exclusive).
    fs : float
        Their sampling rate.

    Returns
    -------
    dict
        ``ref_n`` and ``det_n`` (episodes); ``ref_found`` (reference episodes that a
        detected one overlaps by at least one sample) and ``det_true`` (detected episodes
        that overlap a reference one); ``ref_s``, ``det_s`` and ``overlap_s`` (seconds,
        overlapping episodes of one side counted once). Pool records with
        :func:`pooled_episode_agreement`.
    """

    def overlaps(episode: tuple[int, int], others: list[tuple[int, int]]) -> bool:
        return any(start < episode[1] and episode[0] < end for start, end in others)

    ref, det = merge_intervals(reference), merge_intervals(detected)
    shared = sum(min(e, u) - max(s, t) for s, e in ref for t, u in det if t < e and s < u)
    return {
        "ref_n": len(reference), "ref_found": sum(overlaps(e, detected) for e in reference),
        "det_n": len(detected), "det_true": sum(overlaps(e, reference) for e in detected),
        "ref_s": sum(e - s for s, e in ref) / fs, "det_s": sum(e - s for s, e in det) / fs,
        "overlap_s": shared / fs,
    }


def pooled_episode_agreement(rows: list[dict[str, float]]) -> dict[str, float | None]:
    """Gross figures over :func:`episode_agreement` results (records summed, as EC57 pools).

    Returns
    -------
    dict
        The summed counts (rounded to 0.1) and, in %, ``episode_se``, ``episode_ppv``,
        ``duration_se`` and ``duration_ppv`` (None where the denominator is 0).
    """

    def ratio(a: float, b: float) -> float | None:
        return round(100.0 * a / b, 1) if b > 0 else None

    keys = ("ref_n", "ref_found", "det_n", "det_true", "ref_s", "det_s", "overlap_s")
    t = {k: sum(row[k] for row in rows) for k in keys}
    return {
        **{k: round(v, 1) for k, v in t.items()},
        "episode_se": ratio(t["ref_found"], t["ref_n"]),
        "episode_ppv": ratio(t["det_true"], t["det_n"]),
        "duration_se": ratio(t["overlap_s"], t["ref_s"]),
        "duration_ppv": ratio(t["overlap_s"], t["det_s"]),
    }
