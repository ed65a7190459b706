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
}
"""MIT-BIH beat symbol -> AAMI class. Symbols absent here are not beats."""


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
