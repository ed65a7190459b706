"""Rhythm episodes: atrial fibrillation and flutter, ventricular flutter or fibrillation,
ventricular and supraventricular runs, bigeminy, trigeminy, sinus bradycardia and
tachycardia, pauses and unreadable stretches.

Everything works on one sampling rate ``fs`` (the pipeline calls it at the internal
360 Hz) and returns plain ``{"label", "start", "end"}`` episodes in samples of that rate.
Labels are the MIT-BIH rhythm codes where one exists (``AFIB``, ``AFL``, ``VFL``,
``VT``, ``SVTA``, ``B``, ``T``, ``SBR``, ``IVR``) and short codes of ours otherwise
(``STACH``, ``PAUSE``, ``NOISE``); :func:`rhythm_name` gives the plain names for display.

An episode runs from the R peak of its first beat to the R peak of the first beat after
it (the MIT-BIH convention: a rhythm annotation sits on the first beat of the new rhythm).

Atrial fibrillation does not need beat classes: it is found from RR irregularity and the
absence of P waves. A P wave the delineator reports counts only when the activity before
the QRS is locked to it (:func:`p_coherence`): fibrillatory waves taken for P waves
are not. Episodes last at least 30 s (the clinical definition), and ventricular
rhythms found inside AF (VT, IVR, bigeminy, trigeminy) are cut out of it, as MIT-BIH
labels them. Optionally (:data:`AF_PR_TOLERANCE_S`) a P wave counts only when its
PR interval agrees with the local median PR: the delineator sometimes takes a
fibrillatory wave for a P wave, and those sit at random distances from the QRS.
Atrial flutter is split off the AF episodes where the atrial activity left after
subtracting the average QRS-T complex is organised at a flutter rate
(:func:`atrial_organisation`).

Ectopic beats would make sinus rhythm look irregular, so they are left out of the RR
series first: by class (:data:`ECTOPIC_CLASSES`) when classes are given, otherwise by
their RR pattern (a premature beat followed by a compensatory pause). Without classes,
regular ectopic patterns (bigeminy, trigeminy) are also discounted by measuring the
irregularity at lags 1, 2 and 3 and keeping the smallest: alternation is irregular at
lag 1 but not at lag 2.

Ventricular tachycardia is a run of at least three ventricular beats faster than 100 bpm
whose QRS complexes are wide (:func:`ventricular_runs`, :data:`VT_MIN_QRS_S`); a beat the
detector skipped inside a fast run is looked for in the signal first
(:func:`recover_missed_beats`).

Ventricular flutter and fibrillation are found without beats, by the VF filter
(:func:`vf_episodes`): their waves are nearly sinusoidal, which QRS complexes and noise
are not; every other rhythm yields to them.

Every threshold was chosen on the DS1 records with ``bench/rhythm.py`` (its grids are in
``bench/results/rhythm.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecgcore.beats import QRS_WINDOW_S, context_segments, nearest_index, p_coherence
from ecgcore.delineate import ecg_delineate
from ecgcore.metrics import merge_intervals

RHYTHM_NAMES: dict[str, str] = {
    "AFIB": "Atrial fibrillation",
    "AFL": "Atrial flutter",
    "VT": "Ventricular tachycardia",
    "IVR": "Idioventricular rhythm",
    "SVTA": "Supraventricular tachyarrhythmia",
    "B": "Ventricular bigeminy",
    "T": "Ventricular trigeminy",
    "SBR": "Sinus bradycardia",
    "STACH": "Sinus tachycardia",
    "PAUSE": "Pause",
    "NOISE": "Unreadable signal (noise or leads off)",
    "VFL": "Ventricular flutter or fibrillation",
    # MIT-BIH rhythm codes ecgcore does not report, for the reference's episodes.
    "AB": "Atrial bigeminy",
    "BII": "2nd degree heart block",
    "N": "Normal sinus rhythm",
    "NOD": "Nodal (junctional) rhythm",
    "P": "Paced rhythm",
    "PREX": "Pre-excitation (WPW)",
}
"""Rhythm code -> plain name, for the views: ecgcore's codes and MIT-BIH's (without the
``(`` of its ``aux_note``)."""


def rhythm_name(code: str) -> str:
    """The plain name of a rhythm code, ecgcore's (``STACH``) or MIT-BIH's with or
    without its ``(`` (``(AFIB``); the code itself when unknown."""
    bare = str(code).lstrip("(")
    return RHYTHM_NAMES.get(bare, bare)

# --- Settings (chosen on DS1 with bench/rhythm.py; see bench/results/rhythm.md) ---------
AF_WINDOW_BEATS = 31
"""Beats in the centred window over which AF features are computed."""
AF_IRREGULARITY = 0.07
"""Median absolute successive RR difference / median RR above which the window is
irregular (the smallest of lags 1-3, so bigeminy does not count)."""
AF_IRREGULARITY_NO_P = 0.12
"""The irregularity threshold when P waves are unknown (no delineation given)."""
AF_MAX_P_FRACTION = 0.3
"""Largest fraction of beats with a P wave in an AF window."""
AF_MAX_P_COHERENCE: float | None = 0.45
"""P coherence (:func:`p_coherence`) above which the activity before the QRS is taken as
locked to it (a P wave); how it combines with the delineator's P waves is
:data:`AF_P_EVIDENCE`. None: not used. It lies between the sinus (about 0.6-0.9) and AF
(0.3-0.4) values and is the middle of the DS1 plateau (bench/results/rhythm.md)."""
AF_COHERENCE_WINDOW = 31
"""Beats over which the P coherence is taken (more beats average fibrillatory waves out
further; a P wave stays). 61 beats was tried on DS1 with the S options below and not
kept (bench/results/rhythm.md)."""
AF_P_EVIDENCE = "both"
"""How the two kinds of P-wave evidence veto AF: ``"both"``: P waves are present only
when the delineator finds them in more than :data:`AF_MAX_P_FRACTION` of the beats and
the coherence exceeds :data:`AF_MAX_P_COHERENCE` (the delineator takes some
fibrillatory waves for P waves, but those are not locked to the QRS); ``"either"``:
when one of them says so."""
AF_PR_TOLERANCE_S: float | None = None
"""When set (s), a P wave counts only if its PR interval is this close to the local median
PR. Off: on DS1 it ties with the plain P count (bench/results/rhythm.md)."""
AF_S_NEEDS_P = False
"""With P waves given, an S beat is left out of the RR series only when the delineator
found a P wave before it."""
AF_S_MAX_SHARE: float | None = 0.2
"""An S beat is left out of the RR series only where S beats are at most this share of
the beats of its window (None: always). Premature atrial beats are isolated events
among sinus beats; where a large share of the beats is called S, "S" is the irregular
rhythm itself (a classifier calling the short cycles of AF premature), not ectopy.
Kept on DS1 with the fold networks' classes (bench/results/rhythm.md). Its cost: with
the reference classes it takes the densest runs of 232's premature atrial beats for AF
(tests/test_rhythm.py)."""
AF_S_SECOND_OPINION: str | None = "vote"
"""A second AF vote from the RR series with the S beats kept in (with classes and P
waves given), accepted only where atrial activity is clearly absent: few delineated P
waves (at most :data:`AF_MAX_P_FRACTION`) *and* no activity locked to the QRS
(coherence at most :data:`AF_MAX_P_COHERENCE`), so that sinus rhythm with frequent
premature atrial beats (which bring P waves) is not taken for AF. It recovers AF whose
short cycles the classifier calls S. ``"vote"``: it votes like the first; ``"hold"``:
it only extends an AF episode the first vote found on its own (at least
:data:`AF_MIN_DURATION_S`); None: off. "vote": the first option kept on DS1 with each
record's beats classified by the cross-validation fold network that never saw its
patient, whose AF beats it calls S and V far more often than the served network calls
DS1's (bench/results/rhythm.md)."""
AF_SECOND_MAX_CLUSTERED: float | None = None
"""Veto of the second opinion where the RR intervals (S beats kept in) are organised
rather than random: the share of the window's intervals within
:data:`AF_CLUSTER_TOLERANCE_S` of its :data:`AF_CLUSTER_COUNT` most populated RR values
(:func:`rr_clustered_share`). Atrial flutter with variable block conducts at a few
multiples of the flutter cycle, nodal or sinus rhythm with ectopics gives one or two
RR values; AF gives a broad unimodal spread. Above this share the second opinion does
not vote (the first is untouched). None: no veto. Off: at 0.6 it changes next to
nothing (all 48 records, CNN classes: AF +P 87.1 % as without it); in 222 the
detected RR intervals of the flutter, nodal and sinus stretches the second opinion
takes for AF are no more clustered than real AF (bench/results/rhythm.md)."""
AF_CLUSTER_TOLERANCE_S = 0.03
"""Half-width of an RR cluster (s)."""
AF_CLUSTER_COUNT = 2
"""RR clusters counted by :func:`rr_clustered_share`."""
AF_SECOND_LAGS: tuple[int, ...] = (1,)
"""Lags of the second opinion's irregularity, the smallest kept (1-3 discounts regular
patterns such as atrial bigeminy, which the S beats bring back into the series)."""
AF_SECOND_IRREGULARITY: float | None = None
"""The second opinion's irregularity threshold (None: :data:`AF_IRREGULARITY`)."""
AF_S_NEEDS_PAUSE: float | None = None
"""When set, an S beat is left out of the RR series only when the interval after it is
at least this fraction of the local median RR: a premature atrial beat resets the sinus
node, so about one sinus cycle follows it, while a short cycle of AF is followed by an
interval of any length. Off: it lowers the DS1 AF +P with the CNN's classes."""
AF_RR_ECTOPIC_WITH_CLASSES = False
"""With classes, also leave out the beats whose RR pattern is ectopic (premature, then a
compensatory pause; :func:`_rr_ectopic`), whatever their class: ventricular ectopics
the classifier calls N would make sinus rhythm look irregular. Off: no DS1 gain."""
AF_P_EVIDENCE_WITH_S = False
"""The P-wave evidence (P fraction and coherence) also takes the S beats, which stay
out of the RR series: with the short cycles of AF called S, what is left for the
evidence is the beats after long cycles, where the delineator more often takes a
fibrillatory wave for a P wave. Off: it helps on DS1 with the CNN's classes, but
over all 48 records it lowers the AF +P below 90 % (bench/results/rhythm.md)."""
AF_MIN_TURNING_POINTS: float | None = None
"""When set, a window whose usable RR intervals turn (a local peak or trough) less often
than this share of the time does not vote AF: AF's intervals are random, so about 2/3 of
them turn (0.5 is the lower end of the 95 % range of a random series of 31 intervals,
Dash et al. 2009), while sinus arrhythmia rises and falls smoothly with breathing and
turns less. None: not used. Off: it lowers the DS1 harmonic mean in both settings, and
over all 48 records it costs AF sensitivity (87.9 against 91.4 with the CNN's classes)
without raising +P (bench/results/rhythm.md)."""
AF_CLASSES_LAG1 = True
"""With beat classes, measure irregularity at lag 1 only (the ectopic beats are out)."""
AF_SKIP_AFTER_ECTOPIC = 0
"""Normal-to-normal intervals left out after an ectopic beat (0: none)."""
AF_MIN_USABLE = 0.25
"""Least share of usable (normal-to-normal) intervals in a window for an AF decision."""
AF_SMOOTH_BEATS = 15
"""Majority vote over this many beats, so single beats do not toggle the decision."""
AF_MIN_DURATION_S = 30.0
"""Shortest AF episode reported: the clinical definition of an AF episode (at least 30 s
of irregular RR without discernible P waves, ESC 2020 AF guidelines), not a tuned
value; on DS1 it ties with 15 s."""
AF_MERGE_GAP_S = 10.0
"""AF episodes closer than this are joined."""
AF_HOLD_IRREGULARITY = 1.0
"""Hysteresis: once an AF episode has started, it lasts while the irregularity stays
above this fraction of :data:`AF_IRREGULARITY` (1: no hysteresis)."""
AF_HOLD_P_FRACTION = 0.3
"""...and the P fraction at most this (:data:`AF_MAX_P_FRACTION` or more)."""
AF_REFINE_EDGES = False
"""Move each AF episode's onset and offset to the best split, within half a window, of
the per-beat evidence (an irregular interval without a P wave) into a steadier and a
more AF-like part (least squares, no threshold): the window features need more than
half the window in AF, which trims a few beats off each edge."""
AF_YIELD_TO_VENTRICULAR = True
"""Ventricular rhythms found inside AF (VT, IVR, bigeminy, trigeminy) are cut out of the
AF and flutter episodes: rhythm labels are exclusive, and MIT-BIH labels such a
stretch by its ventricular rhythm while AF goes on beneath it."""
AF_MIN_PIECE_AFTER_CUT_S = 0.0
"""AF and flutter pieces left between the ventricular rhythms cut out of an episode are
dropped when shorter than this (0: every piece kept). Off: on DS1 every length tried
lowers the AF duration harmonic mean (bench/rhythm.py); MIT-BIH's own AF episodes are
cut as short by its ventricular rhythm annotations."""
AFL_DETECT = True
"""Split atrial flutter off the AF episodes by the organisation of the atrial activity."""
AFL_BLOCK_S = 10.0
"""Length of the blocks over which the atrial activity's spectrum is taken."""
AFL_RATE_HZ = (3.5, 6.0)
"""Flutter waves: a regular atrial rate of 210-360/min (fibrillatory waves run faster
and are not regular)."""
AFL_MIN_ORGANISATION = 0.35
"""Least share of the atrial activity's 2-15 Hz power at its dominant frequency (and
its first harmonic) for flutter."""
AFL_SMOOTH_BLOCKS = 3
"""Running median over this many blocks of the organisation."""
AFL_BLANK_S = True
"""Blank the S beats too (not only V, F, Q) when the average QRS-T complex is subtracted
for the flutter search. S beats are conducted the normal way, so their QRS-T matches
the template; off, they are subtracted like the N beats. On: DS1 cannot tell (no
flutter is found there either way)."""
AFL_MIN_PIECE_S = 15.0
"""Within an AF episode, fibrillation or flutter stretches shorter than this join their
longer neighbour (the 30 s minimum is for the episode as a whole; flutter comes in short
bouts amid fibrillation)."""
VT_MIN_BEATS = 3
VT_MIN_BPM = 100.0
VT_RATE_FROM_COUPLING = True
"""The rate of a ventricular run is the mean of the intervals between its beats or, when
faster, the median of the intervals ending at its beats with the coupling interval (to
the first V beat) included: a three-beat run has only two intervals of its own, and one
late beat should not make it slow. Off: the mean only."""
VT_FUSION_IN_RUN = True
"""A fusion (F) beat next to a V beat counts as ventricular in a run (MIT-BIH marks
runs such as V V F as VT)."""
VT_AMBIGUOUS_IN_RUN = False
"""One beat the classifier calls S, F or Q between two V beats of a fast run (both its
intervals under 60 / :data:`VT_MIN_BPM` s) counts as ventricular; never an N beat."""
VT_RECOVER_MISSED = True
"""Look for a QRS the detector missed inside a fast ventricular run (see
:func:`recover_missed_beats`)."""
VT_RELABEL_AFTER_MISSED = False
"""The beat after a recovered one, called N, counts as V when unlike the record's normal
QRS (see :func:`recover_missed_beats`)."""
VT_GAP_RATIO = 1.6
"""An interval next to a V beat about twice its shorter neighbour (between this ratio
and 4 minus it) is searched for a missed beat."""
VT_MISSED_MIN_SLOPE = 0.7
"""The missed beat's steepest slope must reach this fraction of the flanking V beats'."""
VT_MISSED_MIN_CORR = 0.8
"""...and its waveform must correlate this well with a flanking V beat's."""
VT_MIN_QRS_S = 0.11
"""A fast ventricular run is VT only when the median QRS duration of its V beats (from
:func:`ecgcore.delineate.ecg_delineate` on the lead) is at least this (s): ventricular
tachycardia is a wide-complex tachycardia (QRS >= 120 ms), and a run of narrow complexes
the classifier calls V is more likely a supraventricular rhythm (222's flutter and
nodal stretches). 0: no condition. A run whose QRS cannot be measured stays VT. 0.11 s
chosen on DS1 (bench/rhythm.py: the highest DS1 VT episode Se, then +P, among 0, 0.10,
0.11, 0.12 and 0.13 s, with each DS1 record's beats classified by the cross-validation
fold network that never saw its patient): Se as without it, the highest +P; 0.12 s and
wider lose DS1 episodes."""

# The VT options above (VT_RATE_FROM_COUPLING ... VT_MISSED_MIN_CORR) are chosen together
# on DS1 by bench/rhythm.py (tune_vt), with the fold networks' classes: the served network
# learnt DS1, and with its classes there the choice trusted the classes more than an
# unseen patient allows.
SVTA_MIN_BEATS = 3
SVTA_MIN_BPM = 100.0
BIGEMINY_MIN_CYCLES = 3
TRIGEMINY_MIN_CYCLES = 4
SINUS_WINDOW_BEATS = 15
SINUS_MIN_DURATION_S = 30.0
BRADY_BPM = 60.0
TACHY_BPM = 100.0
PAUSE_S = 2.0
PLAUSIBLE_RR_S = (0.2, 3.0)
"""A single RR interval outside this range (300 and 20 bpm) is taken for a missed or an
extra beat when a rate is read from it (:func:`beat_rates_bpm`)."""
NOISE_BLOCK_S = 1.0
NOISE_HF_RATIO = 0.12
"""Unreadable when the high-frequency residue (robust SD) exceeds this fraction of the
record's typical QRS amplitude."""
NOISE_MIN_DURATION_S = 3.0
NOISE_MERGE_GAP_S = 2.0
VF_DETECT = True
"""Look for ventricular flutter and fibrillation (:func:`vf_episodes`)."""
VF_WINDOW_S = 4.0
"""Length of the windows the VF filter is applied to."""
VF_STEP_S = 2.0
"""Step between the windows (they overlap by half)."""
VF_MAX_LEAKAGE = 0.6
"""Largest VF-filter leakage (:func:`vf_leakage`) of a window taken for ventricular
flutter or fibrillation (chosen on DS1 with the shortest episode; from 0.7 on, other
records' QRS complexes pass for flutter)."""
VF_RATE_HZ = (2.5, 8.0)
"""Frequencies the VF filter may find in ventricular flutter or fibrillation (150 to 480
cycles per minute)."""
VF_MIN_DURATION_S = 8.0
"""Shortest ventricular flutter or fibrillation episode reported."""
VF_MAX_QRS_PROMINENCE = 1.2
"""A window whose detected beats stand this many times above the oscillation around them
(peak-to-peak) holds QRS complexes, not flutter waves: not VF. Set from physiology, not
tuned: a device sampling near 54 Hz folds 50 Hz mains to a 4 Hz sinusoid, which the
filter alone takes for flutter (tests/test_rhythm.py)."""
VF_REGULAR_RATE_BPM = (40.0, 150.0)
"""A window with at least 3 detected beats at a rate in this range whose RR intervals
spread by less than :data:`VF_REGULAR_SPREAD` of their median is an organised rhythm,
not VF."""
VF_REGULAR_SPREAD = 0.25
"""Largest spread (longest minus shortest) of a regular window's RR intervals, as a
fraction of their median."""
VF_MONOMORPHIC_CORR = 0.8
"""A window with at least 3 detected beats whose consecutive QRS complexes correlate
this well (median) repeats one QRS shape: a monomorphic ventricular tachycardia or
another organised rhythm, not fibrillation, whose waves change from one to the next.
The correlation :data:`VT_MISSED_MIN_CORR` asks of a beat like its run's."""
MAINS_HZ = (50.0, 60.0)
"""Mains frequencies: a device without an anti-alias filter sampling near one of them
folds the hum to a low-frequency sinusoid (:func:`mains_folds_into_vf_band`)."""
ECTOPIC_CLASSES: tuple[str, ...] = ("V", "F", "Q", "S")
"""Beats left out of the AF RR series when classes are given (Q: paced or unknown; S:
premature atrial beats, which make sinus rhythm look irregular)."""


def _rolling(values: np.ndarray, window: int, func: str) -> np.ndarray:
    """Centred rolling median or mean that ignores NaN (needs a third of the window)."""
    import pandas as pd

    s = pd.Series(values, dtype=np.float64)
    roll = s.rolling(window, center=True, min_periods=max(1, window // 3))
    out = roll.median() if func == "median" else roll.mean()
    return out.to_numpy()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of the runs of True in a boolean array."""
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _beat_span(rpeaks: np.ndarray, first: int, last: int, n_samples: int) -> tuple[int, int]:
    """Samples covered by beats first..last: to the next beat's R peak (or one RR on)."""
    start = int(rpeaks[first])
    if last + 1 < rpeaks.size:
        end = int(rpeaks[last + 1])
    elif last > 0:
        end = int(rpeaks[last] + (rpeaks[last] - rpeaks[last - 1]))
    else:
        end = int(rpeaks[last]) + 1
    return start, min(max(end, start + 1), n_samples)


def _subtract(
    intervals: list[tuple[int, int]], cuts: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``intervals`` with every stretch of ``cuts`` taken out (pieces kept in order)."""
    out = list(intervals)
    for a, b in sorted(cuts):
        nxt: list[tuple[int, int]] = []
        for s, e in out:
            if b <= s or e <= a:
                nxt.append((s, e))
                continue
            if s < a:
                nxt.append((s, a))
            if b < e:
                nxt.append((b, e))
        out = nxt
    return out


def _in_any(positions: np.ndarray, intervals: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(positions.shape, dtype=bool)
    for s, e in intervals:
        mask |= (positions >= s) & (positions < e)
    return mask


# --- Ventricular flutter and fibrillation --------------------------------------------


def vf_leakage(x: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """The VF filter (Kuo and Dillman 1978) over windows of the lead.

    Per :data:`VF_WINDOW_S` window every :data:`VF_STEP_S`: the signal's mean frequency
    is estimated from its mean absolute value over its mean absolute slope; the window
    is then added to itself shifted by half that period, which cancels a sinusoid. The
    leakage is what is left over what went in: near 0 for the almost sinusoidal waves of
    ventricular flutter and fibrillation, about 1 for QRS complexes and for noise. The
    filter needs no beats: in flutter and fibrillation there are none to detect.

    Returns
    -------
    dict
        ``start`` (window start samples), ``leakage`` and ``frequency_hz`` (NaN where
        the window is flat), one value per window.
    """
    x = np.asarray(x, dtype=np.float64)
    window = int(round(VF_WINDOW_S * fs))
    step = max(1, int(round(VF_STEP_S * fs)))
    starts = np.arange(0, max(0, x.size - window + 1), step)
    leakage = np.full(starts.size, np.nan)
    frequency = np.full(starts.size, np.nan)
    for k, s0 in enumerate(starts):
        v = x[s0 : s0 + window]
        v = v - v.mean()
        slope = float(np.abs(np.diff(v)).sum())
        if not np.isfinite(slope) or slope <= 0:
            continue
        half_period = int(np.floor(np.pi * float(np.abs(v).sum()) / slope + 0.5))
        if half_period < 1 or half_period >= v.size:
            continue
        a, b = v[half_period:], v[:-half_period]
        leakage[k] = float(np.abs(a + b).sum() / (np.abs(a) + np.abs(b)).sum())
        frequency[k] = fs / (2.0 * half_period)
    return {"start": starts, "leakage": leakage, "frequency_hz": frequency}


def mains_folds_into_vf_band(fs: float) -> bool:
    """Whether mains hum sampled at ``fs`` without an anti-alias filter folds into the
    band of ventricular flutter (:data:`VF_RATE_HZ`).

    An Arduino sampling at about 54 Hz turns 50 Hz hum into a 4 Hz sinusoid, which no
    filter can then tell from ventricular flutter; at 128 Hz and above, neither 50 nor
    60 Hz folds there.
    """
    fs = float(fs)
    if fs <= 0:
        return False
    folded = [abs(f - fs * round(f / fs)) for f in MAINS_HZ]
    return any(VF_RATE_HZ[0] <= f <= VF_RATE_HZ[1] for f in folded)


def vf_episodes(
    x: np.ndarray, fs: float, rpeaks: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Stretches of ventricular flutter or fibrillation (MIT-BIH's ``VFL``).

    Windows whose VF-filter leakage (:func:`vf_leakage`) is at most
    :data:`VF_MAX_LEAKAGE` at a frequency within :data:`VF_RATE_HZ`, joined where they
    overlap, kept when at least :data:`VF_MIN_DURATION_S` long. With the detected beats,
    a window where they are QRS complexes is not VF, whatever oscillates around them:
    where they stand well above the oscillation (:data:`VF_MAX_QRS_PROMINENCE`), beat
    a regular rhythm at an ordinary rate (:data:`VF_REGULAR_RATE_BPM`) or repeat one
    shape (:data:`VF_MONOMORPHIC_CORR`: a monomorphic ventricular tachycardia).

    Returns
    -------
    list of (start, end)
        Sample intervals (end exclusive).
    """
    x = np.asarray(x, dtype=np.float64)
    found = vf_leakage(x, fs)
    window = int(round(VF_WINDOW_S * fs))
    with np.errstate(invalid="ignore"):
        hit = ((found["leakage"] <= VF_MAX_LEAKAGE)
               & (found["frequency_hz"] >= VF_RATE_HZ[0])
               & (found["frequency_hz"] <= VF_RATE_HZ[1]))
    starts = found["start"]
    if rpeaks is not None:
        r = np.sort(np.asarray(rpeaks, dtype=np.int64))
        for k in np.flatnonzero(hit):
            inside = r[(r >= starts[k]) & (r < starts[k] + window)]
            hit[k] = not _organised_beats(x, inside, int(starts[k]), window, fs)
    spans = [(int(starts[a]), min(x.size, int(starts[b]) + window)) for a, b in _runs(hit)]
    return [(s, e) for s, e in merge_intervals(spans) if e - s >= VF_MIN_DURATION_S * fs]


def _organised_beats(x: np.ndarray, beats: np.ndarray, start: int, window: int,
                     fs: float) -> bool:
    """Whether the beats detected in a window are QRS complexes (see :func:`vf_episodes`)."""
    if beats.size == 0:
        return False
    if beats.size >= 3:
        rr = np.diff(beats) / fs
        median = float(np.median(rr))
        rate = 60.0 / median if median > 0 else np.inf
        if (VF_REGULAR_RATE_BPM[0] <= rate <= VF_REGULAR_RATE_BPM[1]
                and float(np.ptp(rr)) < VF_REGULAR_SPREAD * median):
            return True
        qrs = _qrs_windows(x, beats, fs)
        alike = [_corr(a, b) for a, b in zip(qrs[:-1], qrs[1:], strict=True)]
        if float(np.median(alike)) >= VF_MONOMORPHIC_CORR:
            return True
    segment = x[start : start + window]
    around = np.ones(segment.size, dtype=bool)
    half = int(round(0.1 * fs))
    for b in beats - start:
        around[max(0, b - half) : max(0, b + half)] = False
    if around.sum() < segment.size // 4:
        return False
    low, high = np.percentile(segment[around], [2.5, 97.5])
    qrs_half = int(round(0.06 * fs))
    qrs = np.median([np.ptp(x[max(0, b - qrs_half) : b + qrs_half + 1]) for b in beats])
    return bool(qrs >= VF_MAX_QRS_PROMINENCE * max(float(high - low), 1e-12))


# --- Unreadable stretches -------------------------------------------------------------


ROWS_AT_ONCE = 2048
"""Blocks :func:`_kept_robust_sd` sorts together: a day's one-second blocks at once would
hold several copies of the whole lead."""


def _kept_row_median(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The median of each row's kept values (NaN for a row with none), as ``np.median``
    of ``row[keep_row]`` gives it, for all rows at once."""
    count = keep.sum(axis=1)
    ordered = np.sort(np.where(keep, values, np.inf), axis=1)
    rows = np.arange(values.shape[0])
    low = ordered[rows, np.maximum((count - 1) // 2, 0)]
    high = ordered[rows, np.minimum(count // 2, values.shape[1] - 1)]
    unknown = (count == 0) | (np.isnan(values) & keep).any(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(unknown, np.nan, (low + high) / 2.0)


def _kept_robust_sd(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Each row's robust SD (1.4826 x the median absolute deviation) of its kept values,
    :data:`ROWS_AT_ONCE` rows at a time."""
    out = np.empty(values.shape[0])
    for i in range(0, values.shape[0], ROWS_AT_ONCE):
        v, k = values[i : i + ROWS_AT_ONCE], keep[i : i + ROWS_AT_ONCE]
        centre = _kept_row_median(v, k)
        out[i : i + ROWS_AT_ONCE] = 1.4826 * _kept_row_median(np.abs(v - centre[:, None]), k)
    return out


def noise_intervals(
    x: np.ndarray, rpeaks: np.ndarray, fs: float, missing: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Stretches where the lead cannot be read: missing samples, flat line or heavy noise.

    The noise measure is the robust SD of the high-frequency residue (signal minus a
    40 ms moving average) outside the QRS complexes, per block of :data:`NOISE_BLOCK_S`,
    relative to the record's median QRS amplitude; the QRS is left out because its own
    slopes are high-frequency.

    Returns
    -------
    list of (start, end)
        Sample intervals, merged and at least :data:`NOISE_MIN_DURATION_S` long.
    """
    from scipy.ndimage import uniform_filter1d

    x = np.asarray(x, dtype=np.float64)
    n = x.size
    block = max(1, int(round(NOISE_BLOCK_S * fs)))
    n_blocks = n // block
    if n_blocks == 0:
        return []
    rpeaks = np.asarray(rpeaks, dtype=np.int64)
    rpeaks = rpeaks[(rpeaks >= 0) & (rpeaks < n)]
    half_qrs = int(round(0.06 * fs))
    if rpeaks.size >= 3:
        idx = np.clip(rpeaks[:, None] + np.arange(-half_qrs, half_qrs + 1)[None, :], 0, n - 1)
        qrs_amp = float(np.median(np.ptp(x[idx], axis=1)))
    else:
        qrs_amp = float(np.percentile(np.abs(x), 99.5) * 2)
    qrs_amp = max(qrs_amp, 1e-9)
    resid = x - uniform_filter1d(x, max(1, int(round(0.04 * fs))), mode="nearest")
    outside = np.ones(n, dtype=bool)
    for shift in range(-half_qrs, half_qrs + 1):
        pos = rpeaks + shift
        outside[pos[(pos >= 0) & (pos < n)]] = False
    blocks = resid[: n_blocks * block].reshape(n_blocks, block)
    keep = outside[: n_blocks * block].reshape(n_blocks, block)
    xb = x[: n_blocks * block].reshape(n_blocks, block)
    sd = _kept_robust_sd(blocks, keep)
    # A block of nearly all QRS is a fast rhythm, not noise.
    bad = (keep.sum(axis=1) >= block // 4) & (sd > NOISE_HF_RATIO * qrs_amp)
    flat = np.ptp(xb, axis=1) < 0.02 * qrs_amp
    bad |= flat
    if missing is not None:
        m = np.asarray(missing, dtype=bool)[: n_blocks * block]
        if m.size == n_blocks * block:
            bad |= m.reshape(n_blocks, block).mean(axis=1) > 0.2
    intervals = [(s * block, min(n, (e + 1) * block)) for s, e in _runs(bad)]
    intervals = merge_intervals(intervals, NOISE_MERGE_GAP_S * fs)
    return [(s, e) for s, e in intervals if e - s >= NOISE_MIN_DURATION_S * fs]


# --- Atrial fibrillation --------------------------------------------------------------


def _rr_ectopic(rr: np.ndarray) -> np.ndarray:
    """Beats that look ectopic from RR alone: premature, then a compensatory pause.

    ``rr[i]`` is the interval ending at beat ``i + 1``. Beat ``i + 1`` is flagged when
    ``rr[i]`` is short, ``rr[i + 1]`` long, and the two together about two local RRs.
    """
    n = rr.size
    flag = np.zeros(n + 1, dtype=bool)
    if n < 3:
        return flag
    local = _rolling(rr, 9, "median")
    pre, post = rr[:-1], rr[1:]
    loc = local[:-1]
    ectopic = (pre < 0.85 * loc) & (post > 1.1 * loc) & (np.abs(pre + post - 2 * loc) < 0.15 * loc)
    flag[1:n][ectopic] = True
    return flag


def af_features(
    rpeaks: np.ndarray,
    fs: float,
    *,
    beat_classes: np.ndarray | None = None,
    p_peaks: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    window: int = AF_WINDOW_BEATS,
    x: np.ndarray | None = None,
    ectopic_classes: tuple[str, ...] | None = None,
    lags: tuple[int, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Per-beat AF features over a centred window of beats.

    Parameters
    ----------
    rpeaks : np.ndarray
        R peaks (samples at ``fs``), ascending.
    fs : float
        Sampling rate.
    beat_classes : np.ndarray or None
        AAMI class per beat; V and F beats are left out of the RR series.
    p_peaks : np.ndarray or None
        P-peak position per beat, NaN where no P wave was found.
    exclude : np.ndarray of bool or None
        Beats to ignore (in unreadable stretches).
    window : int
        Window length in beats.
    x : np.ndarray or None
        The conditioned lead, for ``p_coherence``.
    ectopic_classes : tuple of str or None
        Classes left out of the RR series (None: :data:`ECTOPIC_CLASSES`).
    lags : tuple of int or None
        Lags at which the irregularity is measured, the smallest kept (None: 1 with
        classes and :data:`AF_CLASSES_LAG1`, else 1-3).

    Returns
    -------
    dict
        ``irregularity`` (median absolute successive RR difference over the median RR,
        on normal-to-normal intervals; without classes the smallest of lags 1-3),
        ``p_fraction`` (share of non-ectopic beats with a P wave at a consistent PR
        interval, NaN without ``p_peaks``), ``p_coherence`` (see
        :func:`p_coherence`; NaN without ``x``), ``turning_points`` (share of the
        window's usable intervals that are a local peak or trough), ``ectopic`` (bool
        per beat). One value per beat.
    """
    r = np.asarray(rpeaks, dtype=np.float64)
    nb = r.size
    out = {
        "irregularity": np.full(nb, np.nan),
        "p_fraction": np.full(nb, np.nan),
        "p_coherence": np.full(nb, np.nan),
        "ectopic": np.zeros(nb, dtype=bool),
        "beat_evidence": np.full(nb, np.nan),
        "turning_points": np.full(nb, np.nan),
    }
    if nb < 4:
        return out
    rr = np.diff(r) / fs
    if beat_classes is not None:
        cls = np.asarray(beat_classes).astype(str)
        left_out = ECTOPIC_CLASSES if ectopic_classes is None else ectopic_classes
        ectopic = np.isin(cls, left_out)
        if AF_S_MAX_SHARE is not None and "S" in left_out:
            is_s = cls == "S"
            share = _rolling(is_s.astype(np.float64), window, "mean")
            ectopic &= ~(is_s & (share > AF_S_MAX_SHARE))
        if AF_S_NEEDS_PAUSE is not None and "S" in left_out and rr.size >= 3:
            # A premature atrial beat resets the sinus node: the interval after it is
            # about one sinus cycle or longer. An "S" beat followed by a short interval
            # is a short cycle of an irregular rhythm, not ectopy.
            local = _rolling(rr, window, "median")
            post = np.concatenate([rr, [np.nan]])
            loc = np.concatenate([local, [np.nan]])
            with np.errstate(invalid="ignore"):
                short_after = post < AF_S_NEEDS_PAUSE * loc
            ectopic &= ~((cls == "S") & short_after)
        if AF_RR_ECTOPIC_WITH_CLASSES:
            ectopic |= _rr_ectopic(rr)
        if AF_S_NEEDS_P and p_peaks is not None:
            # A premature atrial beat has a (premature) P wave; an "S" beat without one
            # is more likely an early conducted beat of AF, and stays in the RR series.
            ectopic &= ~((cls == "S") & ~np.isfinite(np.asarray(p_peaks, dtype=float)))
    else:
        ectopic = _rr_ectopic(rr)
    out["ectopic"] = ectopic
    bad = ectopic.copy()
    if exclude is not None:
        bad |= np.asarray(exclude, dtype=bool)
    bad_p = bad
    if AF_P_EVIDENCE_WITH_S and beat_classes is not None:
        bad_p = bad & ~(np.asarray(beat_classes).astype(str) == "S")
    # An interval is usable when neither of its beats is ectopic or excluded, and it is
    # not a pause or a missed-beat gap.
    rr_ok = ~bad[:-1] & ~bad[1:] & (rr < PAUSE_S) & (rr > 0.2)
    # The sinus rate swings for a few beats after an ectopic beat (heart rate
    # turbulence): those normal-to-normal intervals are left out too.
    for k in range(1, AF_SKIP_AFTER_ECTOPIC + 1):
        rr_ok[k:] &= ~bad[: rr.size - k]
    # Features run on the usable intervals only, packed together, so a stretch dense
    # with ectopic beats still has a full window; each interval then takes the value of
    # the nearest usable one. Differences across a removed beat compare two normal
    # intervals, which is what sinus rhythm vs AF is about.
    keep = np.flatnonzero(rr_ok)
    irr = np.full(rr.size, np.nan)
    if keep.size >= 4:
        packed = rr[keep]
        med_rr = _rolling(packed, window, "median")
        best = np.full(packed.size, np.inf)
        # Without classes, regular ectopic patterns are discounted by the smallest lag.
        if lags is None:
            lags = (1,) if (beat_classes is not None and AF_CLASSES_LAG1) else (1, 2, 3)
        for k in lags:
            d = np.full(packed.size, np.nan)
            if packed.size > k:
                d[k:] = np.abs(packed[k:] - packed[:-k])
            best = np.fmin(best, _rolling(d, window, "median") / med_rr)
        best[~np.isfinite(best)] = np.nan
        near = nearest_index(keep, rr.size)
        irr = best[near]
        turns = np.full(packed.size, np.nan)
        a, b, c = packed[:-2], packed[1:-1], packed[2:]
        turns[1:-1] = (((b > a) & (b > c)) | ((b < a) & (b < c))).astype(np.float64)
        turning = _rolling(turns, window, "mean")[near]
        out["turning_points"] = np.concatenate([[turning[0]], turning])
        step = np.full(rr.size, np.nan)
        jump = np.abs(np.diff(packed)) / med_rr[1:]
        step[keep[1:]] = (jump > AF_IRREGULARITY).astype(np.float64)
        out["beat_evidence"] = np.concatenate([[np.nan], step])
        # Where almost every interval touches an ectopic beat (bigeminy), the nearest
        # usable ones are too far away to speak for this stretch: no decision there.
        usable = _rolling(rr_ok.astype(np.float64), window, "mean")
        irr[usable < AF_MIN_USABLE] = np.nan
    # Interval i ends at beat i + 1; beat 0 borrows interval 0.
    out["irregularity"] = np.concatenate([[irr[0]], irr])
    if p_peaks is not None:
        pp = np.asarray(p_peaks, dtype=np.float64)
        has_p = np.isfinite(pp)
        if AF_PR_TOLERANCE_S is not None and has_p.sum() >= 4:
            # A sinus P wave keeps its distance to the QRS; "P waves" found in AF
            # (fibrillatory waves) do not. Keep the P waves whose PR interval is
            # within a tolerance of the local median PR.
            pr = np.where(has_p, r - pp, np.nan)
            med_pr = _rolling(pr, window, "median")
            has_p &= np.abs(pr - med_pr) <= AF_PR_TOLERANCE_S * fs
        with np.errstate(invalid="ignore"):
            out["beat_evidence"] = np.where(has_p, 0.0, out["beat_evidence"])
        has_p = has_p.astype(np.float64)
        good = np.flatnonzero(~bad_p)
        if good.size:
            packed_p = _rolling(has_p[good], window, "mean")
            out["p_fraction"] = packed_p[nearest_index(good, nb)]
    if x is not None:
        out["p_coherence"] = p_coherence(x, r.astype(np.int64), fs, bad_p,
                                         AF_COHERENCE_WINDOW)
    return out


def rr_clustered_share(
    rpeaks: np.ndarray,
    fs: float,
    *,
    beat_classes: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    window: int = AF_WINDOW_BEATS,
    tolerance_s: float = AF_CLUSTER_TOLERANCE_S,
    clusters: int = AF_CLUSTER_COUNT,
) -> np.ndarray:
    """Share of the RR intervals near the most populated RR values, per beat.

    Over a centred window of ``window`` usable intervals (V, F and Q beats, unreadable
    beats, pauses left out; S beats kept in), the most populated RR value (the interval
    with the most others within ``tolerance_s``) takes its neighbours as a cluster,
    which is removed, ``clusters`` times over; the result is the share of the window
    covered. Organised rhythms (flutter with variable block at a few multiples of the
    flutter cycle, sinus or nodal rhythm with ectopics) score high, AF's broad spread
    of intervals low. NaN where there are too few usable intervals.
    """
    r = np.asarray(rpeaks, dtype=np.float64)
    nb = r.size
    out = np.full(nb, np.nan)
    if nb < 4:
        return out
    rr = np.diff(r) / fs
    bad = np.zeros(nb, dtype=bool)
    if beat_classes is not None:
        bad |= np.isin(np.asarray(beat_classes).astype(str), ("V", "F", "Q"))
    if exclude is not None:
        bad |= np.asarray(exclude, dtype=bool)
    ok = ~bad[:-1] & ~bad[1:] & (rr < PAUSE_S) & (rr > 0.2)
    keep = np.flatnonzero(ok)
    if keep.size < window:
        return out
    packed = rr[keep]
    half = window // 2
    padded = np.pad(packed, half, mode="edge")
    w = np.lib.stride_tricks.sliding_window_view(padded, window)
    near = np.abs(w[:, :, None] - w[:, None, :]) <= tolerance_s
    free = np.ones(w.shape, dtype=bool)
    for _ in range(clusters):
        counts = (near & free[:, None, :]).sum(axis=2)
        counts[~free] = -1
        centre = np.argmax(counts, axis=1)
        members = near[np.arange(w.shape[0]), centre] & free
        free &= ~members
    share = 1.0 - free.mean(axis=1)
    per_rr = share[nearest_index(keep, rr.size)]
    return np.concatenate([[per_rr[0]], per_rr])


def af_episodes(
    rpeaks: np.ndarray,
    fs: float,
    n_samples: int,
    *,
    beat_classes: np.ndarray | None = None,
    p_peaks: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    x: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Atrial fibrillation episodes as (start, end) samples; see :func:`af_features`.

    A beat votes AF when its window is irregular (:data:`AF_IRREGULARITY`) and shows no
    P waves. Given the lead ``x``, P waves are there when the delineator finds them in
    more than :data:`AF_MAX_P_FRACTION` of the beats and the activity before the QRS is
    locked to it (coherence above :data:`AF_MAX_P_COHERENCE`; see
    :data:`AF_P_EVIDENCE`); without ``x`` the delineator alone decides; without
    ``p_peaks`` the RR alone (the coherence too with ``"either"``). Votes are smoothed
    over :data:`AF_SMOOTH_BEATS` beats; episodes closer than :data:`AF_MERGE_GAP_S` are
    joined and those shorter than :data:`AF_MIN_DURATION_S` dropped. With
    :data:`AF_S_SECOND_OPINION`, a second vote with the S beats kept in the RR series
    joins in where there is clearly no atrial activity.
    """
    r = np.asarray(rpeaks, dtype=np.int64)
    use_x = x if AF_MAX_P_COHERENCE is not None else None
    f = af_features(r, fs, beat_classes=beat_classes, p_peaks=p_peaks, exclude=exclude,
                    x=use_x)
    irr, pf, coh = f["irregularity"], f["p_fraction"], f["p_coherence"]
    if r.size < 4:
        return []
    second = None
    if (AF_S_SECOND_OPINION is not None and beat_classes is not None and p_peaks is not None
            and use_x is not None and "S" in ECTOPIC_CLASSES):
        # The RR series with the S beats kept in: AF whose short cycles the classifier
        # calls premature looks irregular again. Only where both kinds of P-wave
        # evidence say there is no atrial activity (premature atrial beats come with
        # P waves, so frequent ones do not pass).
        g = af_features(r, fs, beat_classes=beat_classes, p_peaks=p_peaks,
                        exclude=exclude, x=use_x,
                        ectopic_classes=tuple(c for c in ECTOPIC_CLASSES if c != "S"),
                        lags=AF_SECOND_LAGS)
        thr2 = AF_IRREGULARITY if AF_SECOND_IRREGULARITY is None else AF_SECOND_IRREGULARITY
        with np.errstate(invalid="ignore"):
            second = ((g["irregularity"] > thr2)
                      & (g["p_fraction"] <= AF_MAX_P_FRACTION)
                      & (g["p_coherence"] <= AF_MAX_P_COHERENCE))
        if AF_SECOND_MAX_CLUSTERED is not None:
            # Organised RR intervals (flutter with variable block, nodal or sinus
            # rhythm with ectopics) are not AF's random ones: no second opinion there.
            clustered = rr_clustered_share(r, fs, beat_classes=beat_classes,
                                           exclude=exclude)
            with np.errstate(invalid="ignore"):
                second &= ~(clustered > AF_SECOND_MAX_CLUSTERED)

    def votes(scale_irr: float, max_p: float, use_second: bool = True) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            coherent = coh > AF_MAX_P_COHERENCE if use_x is not None else None
            if p_peaks is not None:
                p_seen = pf > max_p
                if coherent is not None:
                    p_seen = (p_seen & coherent if AF_P_EVIDENCE == "both"
                              else p_seen | coherent)
                v = (irr > AF_IRREGULARITY * scale_irr) & ~p_seen
            else:
                v = irr > AF_IRREGULARITY_NO_P * scale_irr
                # With no delineation to confirm it, the coherence vetoes only when
                # either kind of evidence may (as before the coherence was used).
                if coherent is not None and AF_P_EVIDENCE == "either":
                    v &= ~coherent
        v &= np.isfinite(irr)
        if AF_MIN_TURNING_POINTS is not None:
            # Smoothly rising and falling intervals (sinus arrhythmia) are not AF's
            # random ones.
            with np.errstate(invalid="ignore"):
                v &= ~(f["turning_points"] < AF_MIN_TURNING_POINTS)
        if second is not None and use_second:
            v |= second
        if exclude is not None:
            v &= ~np.asarray(exclude, dtype=bool)
        return _rolling(v.astype(np.float64), AF_SMOOTH_BEATS, "mean") > 0.5

    hold_second = second is not None and AF_S_SECOND_OPINION == "hold"
    smooth = votes(1.0, AF_MAX_P_FRACTION, use_second=not hold_second)
    if hold_second:
        # The second opinion only extends an episode the first one found on its own
        # (an AF episode's full length, once close episodes are joined).
        seeds = np.zeros_like(smooth)
        spans0 = merge_intervals([_beat_span(r, a, b, n_samples) for a, b in _runs(smooth)],
                                 AF_MERGE_GAP_S * fs)
        for s0, e0 in spans0:
            if e0 - s0 >= AF_MIN_DURATION_S * fs:
                seeds |= (r >= s0) & (r < e0)
        hold = votes(1.0, AF_MAX_P_FRACTION) | smooth
        smooth = np.zeros_like(hold)
        for a, b in _runs(hold):
            smooth[a : b + 1] = seeds[a : b + 1].any()
    if AF_HOLD_IRREGULARITY < 1.0 or AF_HOLD_P_FRACTION > AF_MAX_P_FRACTION:
        # Hysteresis: an episode starts on the full evidence and lasts while the weaker
        # evidence holds (a stretch of AF with a steadier ventricular response, or
        # fibrillatory waves taken for P waves, does not cut it in two).
        strong = smooth
        hold = votes(AF_HOLD_IRREGULARITY, AF_HOLD_P_FRACTION) | strong
        smooth = np.zeros_like(hold)
        for a, b in _runs(hold):
            smooth[a : b + 1] = strong[a : b + 1].any()
    runs = _runs(smooth)
    if AF_REFINE_EDGES:
        runs = _refine_edges(runs, f["beat_evidence"], AF_WINDOW_BEATS // 2)
    spans = [_beat_span(r, a, b, n_samples) for a, b in runs]
    spans = merge_intervals(spans, AF_MERGE_GAP_S * fs)
    return [(s, e) for s, e in spans if e - s >= AF_MIN_DURATION_S * fs]


def _refine_edges(
    runs: list[tuple[int, int]], evidence: np.ndarray, half: int
) -> list[tuple[int, int]]:
    """Move each run's first and last beat to the least-squares split of ``evidence``
    (per beat, NaN: no say) within ``half`` beats, AF-like on the run's side."""
    v = np.asarray(evidence, dtype=np.float64)
    ok = np.isfinite(v)
    c_n = np.concatenate([[0.0], np.cumsum(ok)])
    c_s = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    c_q = np.concatenate([[0.0], np.cumsum(np.where(ok, v * v, 0.0))])

    def split(lo: int, hi: int, rising: bool) -> int | None:
        """Best k in (lo, hi): segments [lo, k) and [k, hi), the second the more
        AF-like when ``rising``."""
        k = np.arange(lo + 1, hi)
        if k.size == 0:
            return None
        n1, n2 = c_n[k] - c_n[lo], c_n[hi] - c_n[k]
        s1, s2 = c_s[k] - c_s[lo], c_s[hi] - c_s[k]
        q1, q2 = c_q[k] - c_q[lo], c_q[hi] - c_q[k]
        with np.errstate(invalid="ignore", divide="ignore"):
            m1, m2 = s1 / n1, s2 / n2
            sse = (q1 - s1 * m1) + (q2 - s2 * m2)
        valid = (n1 >= 3) & (n2 >= 3) & ((m2 > m1) if rising else (m1 > m2))
        if not valid.any():
            return None
        return int(k[valid][np.argmin(sse[valid])])

    out: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(runs):
        prev_end = out[-1][1] if out else -1
        next_start = runs[i + 1][0] if i + 1 < len(runs) else v.size
        lo, hi = max(prev_end + 1, a - half), min(b + 1, a + half + 1)
        k = split(lo, hi, rising=True)
        a2 = a if k is None else k
        lo, hi = max(a2, b - half), min(next_start, b + half + 1)
        k = split(lo, hi, rising=False)
        b2 = b if k is None else k - 1
        if b2 > a2:
            out.append((a2, b2))
    return out


# --- Atrial flutter ------------------------------------------------------------------


def atrial_activity(
    x: np.ndarray, rpeaks: np.ndarray, fs: float, ectopic: np.ndarray | None = None
) -> np.ndarray:
    """The lead with the QRS-T complexes taken out (average beat subtraction).

    Each beat's complex (100 ms before the R peak to 450 ms after, cut 100 ms before the
    next R peak) loses the running median of the 15 nearest non-ectopic complexes;
    ectopic complexes, which have no such template, are blanked. What is left between
    the beats is atrial: P waves, flutter or fibrillatory waves, and noise.
    """
    from scipy.ndimage import median_filter

    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(rpeaks, dtype=np.int64)
    res = x.copy()
    pre, post = int(round(0.1 * fs)), int(round(0.45 * fs))
    idx = np.flatnonzero((r >= pre) & (r < x.size - post))
    ect = np.zeros(r.size, dtype=bool) if ectopic is None else np.asarray(ectopic, bool)
    good = idx[~ect[idx]]
    if good.size < 5:
        return res
    waves = x[r[good][:, None] + np.arange(-pre, post)[None, :]]
    templates = median_filter(waves, size=(15, 1), mode="nearest")
    for i in idx:
        end = post if i + 1 >= r.size else min(post, int(r[i + 1] - r[i]) - pre)
        if end <= -pre:
            continue
        a, b = int(r[i]) - pre, int(r[i]) + end
        if ect[i]:
            res[a:b] = 0.0
        else:
            k = min(int(np.searchsorted(good, i)), good.size - 1)
            res[a:b] -= templates[k, : b - a]
    return res


def atrial_organisation(
    x: np.ndarray, rpeaks: np.ndarray, fs: float, ectopic: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Dominant frequency and organisation of the atrial activity per block.

    Per :data:`AFL_BLOCK_S` block of :func:`atrial_activity`: the Welch spectrum's peak
    between 3.5 and 7.5 Hz, and the organisation index, the share of the 2-15 Hz power
    within 0.35 Hz of that peak or of its first harmonic. Flutter waves are regular and
    sawtooth-shaped (a sharp peak and a harmonic: index about 0.4-0.7); fibrillatory
    waves and noise spread their power (about 0.1-0.3).

    Returns
    -------
    dict
        ``start`` (block start samples), ``dominant_hz``, ``organisation``.
    """
    from scipy.signal import welch

    res = atrial_activity(x, rpeaks, fs, ectopic)
    block = int(round(AFL_BLOCK_S * fs))
    starts = np.arange(0, max(0, res.size - block + 1), block)
    dom = np.full(starts.size, np.nan)
    org = np.full(starts.size, np.nan)
    for k, s0 in enumerate(starts):
        f, p = welch(res[s0 : s0 + block], fs=fs, nperseg=min(block, int(round(4 * fs))))
        band = (f >= 2.0) & (f <= 15.0)
        peak = (f >= 3.5) & (f <= 7.5)
        total = float(p[band].sum())
        if total <= 0 or not peak.any():
            continue
        fp = float(f[peak][np.argmax(p[peak])])
        near = (np.abs(f - fp) <= 0.35) | (np.abs(f - 2 * fp) <= 0.35)
        dom[k], org[k] = fp, float(p[near & band].sum()) / total
    return {"start": starts, "dominant_hz": dom, "organisation": org}


def split_flutter(
    episodes: list[tuple[int, int]], organisation: dict[str, np.ndarray], fs: float,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split AF episodes (irregular, no P waves) into fibrillation and flutter.

    A block is flutter when the running median (:data:`AFL_SMOOTH_BLOCKS`) of its
    organisation reaches :data:`AFL_MIN_ORGANISATION` and its dominant frequency lies in
    :data:`AFL_RATE_HZ`. Within each episode, stretches shorter than
    :data:`AFL_MIN_PIECE_S` join their longer neighbour.

    Returns
    -------
    (afib, afl)
        Sample intervals.
    """
    import pandas as pd

    starts = organisation["start"]
    block = int(round(AFL_BLOCK_S * fs))
    if starts.size == 0:
        return list(episodes), []
    org = pd.Series(organisation["organisation"]).rolling(
        AFL_SMOOTH_BLOCKS, center=True, min_periods=1).median().to_numpy()
    dom = organisation["dominant_hz"]
    with np.errstate(invalid="ignore"):
        flutter = ((org >= AFL_MIN_ORGANISATION) & (dom >= AFL_RATE_HZ[0])
                   & (dom <= AFL_RATE_HZ[1]))
    afib: list[tuple[int, int]] = []
    afl: list[tuple[int, int]] = []
    for s, e in episodes:
        # Label each block of the episode, then cut the episode where the label changes.
        ks = np.arange(max(0, s // block), min(starts.size, -(-e // block)))
        pieces: list[list] = []
        for k in ks:
            a, b = max(s, int(starts[k])), min(e, int(starts[k]) + block)
            if b <= a:
                continue
            lab = bool(flutter[k])
            if pieces and pieces[-1][0] == lab:
                pieces[-1][2] = b
            else:
                pieces.append([lab, a, b])
        if not pieces:
            afib.append((s, e))
            continue
        pieces[0][1], pieces[-1][2] = s, e
        # Short pieces take the label of their longer neighbour, shortest first.
        while len(pieces) > 1:
            j = min(range(len(pieces)), key=lambda i: pieces[i][2] - pieces[i][1])
            if pieces[j][2] - pieces[j][1] >= AFL_MIN_PIECE_S * fs:
                break
            nb = [i for i in (j - 1, j + 1) if 0 <= i < len(pieces)]
            k = max(nb, key=lambda i: pieces[i][2] - pieces[i][1])
            pieces[j][0] = pieces[k][0]
            merged: list[list] = []
            for p in pieces:
                if merged and merged[-1][0] == p[0]:
                    merged[-1][2] = p[2]
                else:
                    merged.append(list(p))
            pieces = merged
        for lab, a, b in pieces:
            (afl if lab else afib).append((int(a), int(b)))
    return afib, afl


# --- Runs of ectopic beats ------------------------------------------------------------


def _class_runs(
    classes: np.ndarray, rpeaks: np.ndarray, fs: float, n_samples: int, cls: str,
    min_beats: int, min_bpm: float,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Runs of >= ``min_beats`` beats of class ``cls``: (fast runs, slow runs)."""
    fast, slow = [], []
    for a, b in _runs(classes == cls):
        if b - a + 1 < min_beats:
            continue
        rate = 60.0 * fs / float(np.mean(np.diff(rpeaks[a : b + 1])))
        span = _beat_span(rpeaks, a, b, n_samples)
        (fast if rate > min_bpm else slow).append(span)
    return fast, slow


def _qrs_windows(x: np.ndarray, positions: np.ndarray, fs: float) -> np.ndarray:
    """QRS waveforms around each position, mean removed: the QRS the morphology rule
    compares (:data:`ecgcore.beats.QRS_WINDOW_S`), cut from the lead itself."""
    before, after = QRS_WINDOW_S
    offsets = np.arange(-int(round(before * fs)), int(round(after * fs)) + 1)
    idx = np.clip(np.asarray(positions, dtype=np.int64)[:, None] + offsets[None, :], 0,
                  x.size - 1)
    w = x[idx]
    return w - w.mean(axis=1, keepdims=True)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / den if den > 0 else 0.0


def recover_missed_beats(
    x: np.ndarray, rpeaks: np.ndarray, classes: np.ndarray, fs: float
) -> tuple[np.ndarray, np.ndarray]:
    """Beats the detector missed inside fast ventricular runs, put back as ``V``.

    A QRS detector with a refractory period or an adaptive threshold can skip one beat
    of a run at 150-200 bpm; the run then looks like a couplet and is not called VT.
    An interval next to a V beat that is about twice its shorter neighbour
    (:data:`VT_GAP_RATIO`), with both halves faster than :data:`VT_MIN_BPM`, is searched
    in its middle half for the steepest slope; a beat is put there when that slope
    reaches :data:`VT_MISSED_MIN_SLOPE` of the flanking V beats' and its waveform
    correlates with one of them at :data:`VT_MISSED_MIN_CORR` or better (a T wave is
    neither steep nor shaped like the QRS). The beat after a recovered one was
    classified with a preceding interval twice too long, which makes a premature
    ventricular beat look late; with :data:`VT_RELABEL_AFTER_MISSED`, if it was called
    N but its QRS correlates less than :data:`VT_MISSED_MIN_CORR` with the median N beat
    of its context (the record, or its stretch of a long one:
    :data:`ecgcore.beats.CONTEXT_S`), it is taken as V.

    Returns
    -------
    (rpeaks, classes)
        With the recovered beats inserted (class ``"V"``), sorted, and the classes
        after them revised.
    """
    r = np.asarray(rpeaks, dtype=np.int64)
    if r.size < 3:
        return r, classes
    rr = np.diff(r)
    slope = np.abs(np.diff(x, prepend=x[:1]))
    half = max(1, int(round(0.04 * fs)))
    max_rr = 2 * 60.0 * fs / VT_MIN_BPM

    def steepest(pos: int) -> float:
        return float(slope[max(0, pos - half): pos + half + 1].max())

    added: list[int] = []
    for i in range(rr.size):
        if not (classes[i] == "V" or classes[i + 1] == "V") or rr[i] >= max_rr:
            continue
        neighbours = [rr[k] for k in (i - 1, i + 1) if 0 <= k < rr.size]
        ratio = rr[i] / min(neighbours)
        if not VT_GAP_RATIO <= ratio <= 4.0 - VT_GAP_RATIO:
            continue
        lo, hi = int(r[i] + rr[i] // 4), int(r[i + 1] - rr[i] // 4)
        if hi <= lo:
            continue
        pos = lo + int(np.argmax(slope[lo:hi]))
        flank = [k for k in (i, i + 1) if classes[k] == "V"]
        if steepest(pos) < VT_MISSED_MIN_SLOPE * min(steepest(int(r[k])) for k in flank):
            continue
        # Centre the window on the largest deflection near the slope.
        seg = np.abs(x[max(0, pos - half): pos + half + 1])
        pos = max(0, pos - half) + int(np.argmax(seg))
        w = _qrs_windows(x, np.array([pos, *r[flank]]), fs)
        if max(_corr(w[0], w[j]) for j in range(1, w.shape[0])) >= VT_MISSED_MIN_CORR:
            added.append(pos)
    if not added:
        return r, classes
    r2 = np.concatenate([r, np.asarray(added, dtype=np.int64)])
    c2 = np.concatenate([np.asarray(classes).astype(str), np.full(len(added), "V")])
    new = np.concatenate([np.zeros(r.size, dtype=bool), np.ones(len(added), dtype=bool)])
    order = np.argsort(r2, kind="stable")
    r2, c2, new = r2[order], c2[order], new[order]
    if VT_RELABEL_AFTER_MISSED:
        # The median N beat of the beat's context: the recording, or its stretch of a long
        # one (ecgcore.beats.CONTEXT_S), as the classifiers see it.
        segments = context_segments(r2, x.size, fs)
        templates: dict[int, np.ndarray | None] = {}

        def normal_template(segment: int) -> np.ndarray | None:
            normal = np.flatnonzero((c2 == "N") & (segments == segment))
            if normal.size < 5:
                return None
            pick = normal[np.linspace(0, normal.size - 1, min(normal.size, 300)).astype(int)]
            return np.median(_qrs_windows(x, r2[pick], fs), axis=0)

        for k in np.flatnonzero(new[:-1] & ~new[1:]):
            if c2[k + 1] != "N":
                continue
            segment = int(segments[k + 1])
            if segment not in templates:
                templates[segment] = normal_template(segment)
            template = templates[segment]
            if template is None:
                continue
            w = _qrs_windows(x, r2[k + 1 : k + 2], fs)[0]
            if _corr(w, template) < VT_MISSED_MIN_CORR:
                c2[k + 1] = "V"
    return r2, c2


def ventricular_runs(
    classes: np.ndarray, rpeaks: np.ndarray, fs: float, n_samples: int,
    x: np.ndarray | None = None,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Runs of >= :data:`VT_MIN_BEATS` ventricular beats: (VT, slower runs).

    A beat is ventricular when classed V; with :data:`VT_FUSION_IN_RUN` an F beat next
    to a V beat too, and with :data:`VT_AMBIGUOUS_IN_RUN` one S, F or Q beat between two
    V beats at a fast rate. A run is VT when its rate (see
    :data:`VT_RATE_FROM_COUPLING`) is above :data:`VT_MIN_BPM` and, given the lead ``x``
    and :data:`VT_MIN_QRS_S`, its QRS complexes are wide; a fast run of narrow complexes
    is neither VT nor a slower run.
    """
    c = np.asarray(classes).astype(str)
    r = np.asarray(rpeaks, dtype=np.int64)
    is_v = c == "V"
    vent = is_v.copy()
    if c.size >= 2:
        next_to_v = np.zeros(c.size, dtype=bool)
        next_to_v[1:] |= is_v[:-1]
        next_to_v[:-1] |= is_v[1:]
        if VT_FUSION_IN_RUN:
            vent |= (c == "F") & next_to_v
        if VT_AMBIGUOUS_IN_RUN and c.size >= 3:
            fast = 60.0 * fs / VT_MIN_BPM
            rr = np.diff(r)
            mid = np.arange(1, c.size - 1)
            ok = (is_v[mid - 1] & is_v[mid + 1] & np.isin(c[mid], ("S", "F", "Q"))
                  & (rr[mid - 1] < fast) & (rr[mid] < fast))
            vent[mid[ok]] = True
    fast_runs, slow_runs = [], []
    for a, b in _runs(vent):
        # A run must hold at least two beats classed V itself (a tolerated beat
        # never makes a run on its own).
        if b - a + 1 < VT_MIN_BEATS or is_v[a : b + 1].sum() < 2:
            continue
        rate = 60.0 * fs / float(np.mean(np.diff(r[a : b + 1])))
        if VT_RATE_FROM_COUPLING and a > 0:
            rate = max(rate, 60.0 * fs / float(np.median(np.diff(r[a - 1 : b + 1]))))
        span = _beat_span(r, a, b, n_samples)
        if rate <= VT_MIN_BPM:
            slow_runs.append(span)
            continue
        if VT_MIN_QRS_S and x is not None:
            widths = _qrs_durations(x, r, fs, a, b)[is_v[a : b + 1]]
            widths = widths[np.isfinite(widths)]
            if widths.size and float(np.median(widths)) < VT_MIN_QRS_S:
                continue
        fast_runs.append(span)
    return fast_runs, slow_runs


QRS_CONTEXT_S = 3.0
"""Signal kept on each side of a run for :func:`_qrs_durations` (more than any window of
the delineator, so the slice gives what the whole lead would)."""


def _qrs_durations(x: np.ndarray, rpeaks: np.ndarray, fs: float, first: int,
                   last: int) -> np.ndarray:
    """QRS duration (s) of beats ``first``..``last`` from the delineator, NaN where it
    found no bounds (the run's neighbours are delineated with it, for context).

    Only the stretch of the lead around the run is delineated: the delineator filters all
    of the signal it is given, which over a 24-hour lead, run after run, took minutes."""
    lo, hi = max(first - 1, 0), min(last + 2, rpeaks.size)
    beats = np.asarray(rpeaks[lo:hi], dtype=np.int64)
    margin = int(QRS_CONTEXT_S * fs)
    start = max(int(beats[0]) - margin, 0)
    stop = min(int(beats[-1]) + margin, np.asarray(x).size)
    points = ecg_delineate(np.asarray(x[start:stop], dtype=np.float64), beats - start, fs)
    widths = (points["qrs_offset"] - points["qrs_onset"]) / fs
    return widths[first - lo : first - lo + last - first + 1]


def _pattern_runs(
    is_v: np.ndarray, rpeaks: np.ndarray, n_samples: int, period: int, min_cycles: int
) -> list[tuple[int, int]]:
    """Bigeminy (period 2) or trigeminy (period 3): a V beat every ``period`` beats,
    the beats between them not V, for at least ``min_cycles`` V beats in a row."""
    v = np.flatnonzero(is_v)
    if v.size < min_cycles:
        return []
    # Consecutive V beats exactly ``period`` apart, with no V between (guaranteed by
    # taking consecutive V indices).
    link = np.diff(v) == period
    out = []
    for a, b in _runs(link):
        first_v, last_v = v[a], v[b + 1]
        n_cycles = b - a + 2
        if n_cycles < min_cycles:
            continue
        start = max(0, first_v - (period - 1))
        out.append(_beat_span(rpeaks, start, last_v, n_samples))
    return out


# --- Sinus rate -----------------------------------------------------------------------


def _rate_episodes(
    rpeaks: np.ndarray, fs: float, n_samples: int, sinus: np.ndarray, allowed: np.ndarray,
    slow: bool,
) -> list[tuple[int, int]]:
    """Sustained sinus bradycardia (``slow``) or tachycardia.

    The rate is the running median of :data:`SINUS_WINDOW_BEATS` sinus-to-sinus
    intervals (both beats in ``sinus``), so premature beats between them do not make a
    slow sinus rhythm look fast. Every beat takes the rate of the nearest such interval;
    runs of ``allowed`` beats beyond the bound for :data:`SINUS_MIN_DURATION_S` count.
    """
    if rpeaks.size < SINUS_WINDOW_BEATS:
        return []
    rr = np.diff(rpeaks) / fs
    nn = np.flatnonzero(sinus[:-1] & sinus[1:] & (rr < 2 * PAUSE_S))
    if nn.size < SINUS_WINDOW_BEATS:
        return []
    rate = 60.0 / _rolling(rr[nn], SINUS_WINDOW_BEATS, "median")
    rate = rate[nearest_index(nn, rr.size)]
    # The rate is meaningless where the nearest sinus interval is far away.
    density = _rolling((sinus[:-1] & sinus[1:]).astype(np.float64), SINUS_WINDOW_BEATS, "mean")
    rate[density < 0.2] = np.nan
    rate = np.concatenate([[rate[0]], rate])
    with np.errstate(invalid="ignore"):
        hit = rate < BRADY_BPM if slow else rate > TACHY_BPM
    hit &= allowed
    spans = [_beat_span(rpeaks, a, b, n_samples) for a, b in _runs(hit)]
    spans = merge_intervals(spans, 2.0 * fs)
    return [(s, e) for s, e in spans if e - s >= SINUS_MIN_DURATION_S * fs]


# --- The whole analysis ---------------------------------------------------------------


def ecg_rhythm(
    x: np.ndarray,
    rpeaks: np.ndarray,
    fs: float,
    *,
    beat_classes: np.ndarray | None = None,
    p_peaks: np.ndarray | None = None,
    missing: np.ndarray | None = None,
    look_for_vf: bool = True,
) -> list[dict[str, Any]]:
    """Rhythm episodes of one lead.

    Parameters
    ----------
    x : np.ndarray
        The conditioned lead (:func:`ecgcore.signal.ecg_condition`) at ``fs``.
    rpeaks : np.ndarray
        Detected R peaks, samples at ``fs``.
    fs : float
        Sampling rate of ``x`` and of every position.
    beat_classes : np.ndarray or None
        AAMI class per beat (``"N"``, ``"S"``, ``"V"``, ``"F"``, ``"Q"``). Without it the
        class-based rhythms (VT, IVR, SVTA, bigeminy, trigeminy) are not looked for.
    p_peaks : np.ndarray or None
        P-peak position per beat, NaN where absent.
    missing : np.ndarray of bool or None
        Samples that were interpolated (gaps, leads off).
    look_for_vf : bool
        Look for ventricular flutter or fibrillation (not where the recording's own rate
        folds mains hum into its band: :func:`mains_folds_into_vf_band`).

    Returns
    -------
    list of dict
        ``{"label": str, "start": int, "end": int}`` sorted by start; ``end`` is
        exclusive. Different labels may overlap (a pause inside bradycardia).
    """
    fs = float(fs)
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    r = np.asarray(rpeaks, dtype=np.int64).ravel()
    classes = None
    if beat_classes is not None:
        classes = np.asarray(beat_classes).astype(str).ravel()
        if classes.size != r.size:
            raise ValueError(f"{classes.size} beat classes for {r.size} beats")
    if p_peaks is not None:
        p_peaks = np.asarray(p_peaks, dtype=np.float64).ravel()
        if p_peaks.size != r.size:
            raise ValueError(f"{p_peaks.size} P peaks for {r.size} beats")
    found: list[tuple[str, int, int]] = []

    noise = noise_intervals(x, r, fs, missing) if n else []
    found += [("NOISE", s, e) for s, e in noise]
    in_noise = _in_any(r, noise)

    if r.size >= 2:
        rr = np.diff(r)
        for i in np.flatnonzero(rr > PAUSE_S * fs):
            a, b = int(r[i]), int(r[i + 1])
            if not any(s < b and a < e for s, e in noise):
                found.append(("PAUSE", a, b))

    af = af_episodes(r, fs, n, beat_classes=classes, p_peaks=p_peaks, exclude=in_noise, x=x)
    afl: list[tuple[int, int]] = []
    if af and AFL_DETECT:
        blanked = (ECTOPIC_CLASSES if AFL_BLANK_S
                   else tuple(c for c in ECTOPIC_CLASSES if c != "S"))
        ectopic = (np.isin(classes, blanked) if classes is not None
                   else _rr_ectopic(np.diff(r) / fs))
        organisation = atrial_organisation(x, r, fs, ectopic)
        af_only, afl = split_flutter(af, organisation, fs)
    else:
        af_only = af
    found += [("AFIB", s, e) for s, e in af_only]
    found += [("AFL", s, e) for s, e in afl]

    busy = list(af) + list(noise)
    if classes is not None and r.size:
        cls = np.where(in_noise, "Q", classes)
        r_v, cls_v = (recover_missed_beats(x, r, cls, fs) if VT_RECOVER_MISSED
                      else (r, cls))
        vt, ivr = ventricular_runs(cls_v, r_v, fs, n, x=x)
        svta, _ = _class_runs(cls, r, fs, n, "S", SVTA_MIN_BEATS, SVTA_MIN_BPM)
        found += [("VT", s, e) for s, e in vt]
        found += [("IVR", s, e) for s, e in ivr]
        found += [("SVTA", s, e) for s, e in svta if not _overlaps(s, e, af)]
        is_v = cls == "V"
        big = _pattern_runs(is_v, r, n, 2, BIGEMINY_MIN_CYCLES)
        tri = _pattern_runs(is_v, r, n, 3, TRIGEMINY_MIN_CYCLES)
        found += [("B", s, e) for s, e in big]
        found += [("T", s, e) for s, e in tri if not _overlaps(s, e, big)]
        busy += vt + svta + big + tri
        if AF_YIELD_TO_VENTRICULAR:
            ventricular = vt + ivr + big + tri
            found = [(lab, s, e) for lab, s, e in found if lab not in ("AFIB", "AFL")]
            shortest = AF_MIN_PIECE_AFTER_CUT_S * fs
            found += [("AFIB", s, e) for s, e in _subtract(af_only, ventricular)
                      if e - s >= shortest]
            found += [("AFL", s, e) for s, e in _subtract(afl, ventricular)
                      if e - s >= shortest]

    if r.size >= SINUS_WINDOW_BEATS:
        allowed = ~_in_any(r, busy)
        if classes is not None:
            sinus = classes == "N"
        else:
            rr_s = np.diff(r) / fs
            sinus = ~_rr_ectopic(rr_s) if rr_s.size else np.ones(r.size, dtype=bool)
        sinus &= ~in_noise
        for label, slow in (("SBR", True), ("STACH", False)):
            found += [(label, s, e) for s, e in _rate_episodes(r, fs, n, sinus, allowed, slow)]

    if VF_DETECT and look_for_vf and n:
        vf = vf_episodes(x, fs, r)
        if vf:
            # A stretch of ventricular flutter or fibrillation is that and nothing else:
            # the "beats" found in it, and the noise, irregularity or runs of V beats
            # they make, are its waves.
            found = [(lab, a, b) for lab, s, e in found for a, b in _subtract([(s, e)], vf)]
            found += [("VFL", s, e) for s, e in vf]

    found.sort(key=lambda t: (t[1], t[2], t[0]))
    return [{"label": lab, "start": int(s), "end": int(e)} for lab, s, e in found]


def _overlaps(s: int, e: int, intervals: list[tuple[int, int]]) -> bool:
    return any(a < e and s < b for a, b in intervals)


def rhythm_summary(episodes: list[dict[str, Any]], n_samples: int, fs: float) -> dict[str, Any]:
    """AF burden and per-rhythm counts and durations of a recording.

    Parameters
    ----------
    episodes : list of dict
        From :func:`ecg_rhythm` (positions at ``fs``).
    n_samples : int
        Length of the analysed lead, samples at ``fs``.
    fs : float
        Sampling rate.

    Returns
    -------
    dict
        ``duration_s``; ``af_burden_pct`` (share of the readable time in AF: NOISE time
        is left out of the denominator); ``af_episodes``; ``noise_pct``; ``by_label``:
        per code ``{"name", "count", "total_s", "longest_s"}``.
    """
    fs = float(fs)
    duration = n_samples / fs if fs > 0 else 0.0

    def covered(label: str) -> float:
        spans = merge_intervals([(e["start"], e["end"]) for e in episodes if e["label"] == label])
        return sum(e - s for s, e in spans) / fs if fs > 0 else 0.0

    by_label: dict[str, dict[str, Any]] = {}
    for e in episodes:
        d = by_label.setdefault(
            e["label"],
            {"name": rhythm_name(e["label"]), "count": 0, "total_s": 0.0,
             "longest_s": 0.0},
        )
        length = (e["end"] - e["start"]) / fs
        d["count"] += 1
        d["total_s"] += length
        d["longest_s"] = max(d["longest_s"], length)
    for d in by_label.values():
        d["total_s"] = round(d["total_s"], 2)
        d["longest_s"] = round(d["longest_s"], 2)
    af_s, noise_s = covered("AFIB"), covered("NOISE")
    readable = max(duration - noise_s, 0.0)
    return {
        "duration_s": round(duration, 2),
        "af_burden_pct": round(100.0 * af_s / readable, 2) if readable > 0 else 0.0,
        "af_episodes": by_label.get("AFIB", {}).get("count", 0),
        "af_total_s": round(af_s, 2),
        "noise_pct": round(100.0 * noise_s / duration, 2) if duration > 0 else 0.0,
        "by_label": by_label,
    }


def beat_rates_bpm(rr_s: np.ndarray) -> np.ndarray:
    """The heart rate each RR interval gives (60 / RR), NaN where the interval is outside
    :data:`PLAUSIBLE_RR_S` (a missed or an extra beat) or not a number.

    Parameters
    ----------
    rr_s : np.ndarray
        RR intervals in seconds.

    Returns
    -------
    np.ndarray
        Beats per minute, float64, the same shape.
    """
    rr = np.asarray(rr_s, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        plausible = (rr >= PLAUSIBLE_RR_S[0]) & (rr <= PLAUSIBLE_RR_S[1])
        return np.where(plausible, 60.0 / rr, np.nan)


def heart_rate_trend(
    rpeaks: np.ndarray, fs: float, *, step_s: float = 1.0, smooth_beats: int = 5,
    max_gap_s: float = PAUSE_S * 1.5,
) -> dict[str, np.ndarray]:
    """The heart rate over time, robust to one missed or extra beat.

    Instantaneous rates (60 / RR) go through a running median of ``smooth_beats`` beats
    (a missed beat gives one half rate, an extra beat two high ones: the median drops
    them), then are sampled every ``step_s`` seconds. Gaps between beats longer than
    ``max_gap_s`` are left as NaN, not interpolated across.

    Returns
    -------
    dict
        ``time_s`` and ``bpm`` arrays of the same length (empty with fewer than 2 beats).
    """
    r = np.asarray(rpeaks, dtype=np.float64).ravel()
    if r.size < 2:
        return {"time_s": np.zeros(0), "bpm": np.zeros(0)}
    t = r[1:] / fs
    rate = 60.0 * fs / np.diff(r)
    if rate.size >= smooth_beats:
        rate = _rolling(rate, smooth_beats, "median")
    grid = np.arange(np.ceil(t[0] / step_s) * step_s, t[-1] + 1e-9, step_s)
    if grid.size == 0:
        return {"time_s": t.copy(), "bpm": rate}
    bpm = np.interp(grid, t, rate)
    # Grid points inside a long gap between beats carry no rate.
    k = np.searchsorted(t, grid, side="right")
    prev_t = t[np.clip(k - 1, 0, t.size - 1)]
    next_t = t[np.clip(k, 0, t.size - 1)]
    bpm[(next_t - prev_t) > max_gap_s] = np.nan
    return {"time_s": grid, "bpm": bpm}
