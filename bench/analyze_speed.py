"""Time `ecg analyze` per 30-minute MIT-BIH record, by stage, against NeuroKit2, and
on one 24-hour recording.

Runs ``ecg analyze`` over all records in one process (as a user would), reads the stage
timings from its JSON, and times NeuroKit2's ``ecg_clean`` + ``ecg_peaks`` +
``ecg_delineate(method="dwt")`` on channel 0 of the same records in the same run. Then,
in a fresh process (so that its peak memory is its own), analyses the lead ``ecg analyze``
reads of all 48 records joined end to end (24 h at 360 Hz, a Holter recording's length),
classifiers included.

Usage: python bench/analyze_speed.py [--nk-records N] [--classify] [--no-long]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, mitdb_dir, mitdb_records, write_results  # noqa: E402

SIGNAL_STAGES = ("load", "condition", "detect", "delineate")


def time_ecg_analyze(paths: list[str], classify: bool) -> dict[str, dict[str, float]]:
    from ecgcore.cli import main

    with tempfile.TemporaryDirectory() as out:
        argv = ["analyze", *paths, "--json-dir", out]
        if not classify:
            argv.append("--no-classify")
        start = time.perf_counter()
        code = main(argv)
        wall = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"ecg analyze failed with exit code {code}")
        timings = {}
        for path in paths:
            document = json.loads((Path(out) / f"{Path(path).name}.json").read_text())
            timings[Path(path).name] = document["timing_s"]
    print(f"ecg analyze: {len(paths)} records in {wall:.1f} s (one process)")
    return timings


def time_neurokit(path: str) -> float:
    import neurokit2 as nk
    import wfdb

    record = wfdb.rdrecord(path, channels=[0])
    x = record.p_signal[:, 0]
    fs = record.fs
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(x, sampling_rate=fs)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs)
        nk.ecg_delineate(cleaned, info["ECG_R_Peaks"], sampling_rate=fs, method="dwt")
    return time.perf_counter() - start


def analyze_long_recording() -> dict:
    """Analyse all records joined into one recording, in this process; print the figures
    as JSON (run by :func:`time_long_recording` in a process of its own)."""
    import wfdb

    from ecgcore.analysis import analyze
    from ecgcore.recording import Recording, preferred_lead

    parts = []
    for name in mitdb_records():
        path = str(mitdb_dir() / name)
        channel = preferred_lead(wfdb.rdheader(path).sig_name)
        parts.append(wfdb.rdrecord(path, channels=[channel]).p_signal[:, 0])
    starts = np.cumsum([0, *[part.size for part in parts]])
    signal = np.concatenate(parts)[:, None]
    del parts
    recording = Recording(signal=signal, fs=360.0, leads=["MLII"], units=["mV"],
                          source="all MIT-BIH records joined")
    start = time.perf_counter()
    analysis = analyze(recording)
    seconds = time.perf_counter() - start
    # Linux reports the peak resident set size in KiB.
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "hours": recording.duration_s / 3600.0,
        "beats": analysis.n_beats,
        "analyze_s": seconds,
        "stages_s": analysis.timing_s,
        "peak_rss_gib": peak_gib,
        "agreement_with_records_alone": agreement_with_records_alone(signal[:, 0], starts,
                                                                     analysis),
    }


def agreement_with_records_alone(signal: np.ndarray, starts: np.ndarray, joined) -> dict:
    """How far the joined recording's beats and served five-class labels agree with those
    of each record analysed alone (beats matched within 50 ms): a long recording should
    be read as its parts are."""
    from collections import Counter

    from ecgcore.analysis import analyze
    from ecgcore.metrics import match_beats
    from ecgcore.recording import Recording

    positions, labels, episodes = [], [], []
    for k, name in enumerate(mitdb_records()):
        part = signal[starts[k] : starts[k + 1], None]
        alone = analyze(Recording(part, 360.0, ["MLII"], ["mV"], name))
        positions.append(alone.rpeaks + starts[k])
        labels.append(alone.aami_labels)
        episodes += alone.rhythm
    positions, labels = np.concatenate(positions), np.concatenate(labels)
    match = match_beats(positions, joined.rpeaks, 0.05 * 360.0)
    a, b = labels[match.ref_index], joined.aami_labels[match.test_index]
    return {
        "beats_alone": int(positions.size),
        "beats_joined": int(joined.n_beats),
        "matched": int(match.ref_index.size),
        "label_agreement_pct": float(100.0 * np.mean(a == b)),
        "counts_alone": dict(Counter(labels.tolist())),
        "counts_joined": dict(Counter(joined.aami_labels.tolist())),
        "rhythm_alone": rhythm_totals(episodes),
        "rhythm_joined": rhythm_totals(joined.rhythm),
    }


def rhythm_totals(episodes: list[dict]) -> dict[str, dict[str, float]]:
    """Episodes and seconds per rhythm label (360 Hz sample numbers)."""
    totals: dict[str, dict[str, float]] = {}
    for episode in episodes:
        row = totals.setdefault(episode["label"], {"episodes": 0, "seconds": 0.0})
        row["episodes"] += 1
        row["seconds"] += (episode["end"] - episode["start"]) / 360.0
    return dict(sorted(totals.items()))


def time_long_recording() -> dict:
    """:func:`analyze_long_recording` in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "--long-child"], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--nk-records", type=int, default=8, help="how many records to time NeuroKit2 on (0: all)"
    )
    parser.add_argument("--classify", action="store_true", help="include the classifiers")
    parser.add_argument("--no-long", action="store_true", help="skip the 24-hour recording")
    parser.add_argument("--long-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.long_child:
        print(json.dumps(analyze_long_recording()))
        return

    directory = mitdb_dir()
    names = mitdb_records(directory)
    paths = [str(directory / name) for name in names]
    timings = time_ecg_analyze(paths, args.classify)
    stages = list(next(iter(timings.values())).keys())
    per_stage = {s: float(np.mean([t[s] for t in timings.values()])) for s in stages}
    signal_total = np.array([sum(t[s] for s in SIGNAL_STAGES) for t in timings.values()])

    nk_names = names if args.nk_records == 0 else names[: args.nk_records]
    nk_times = {name: time_neurokit(str(directory / name)) for name in nk_names}
    ours_same = np.array([sum(timings[n][s] for s in SIGNAL_STAGES) for n in nk_names])
    nk_same = np.array([nk_times[n] for n in nk_names])
    speedup = float(nk_same.sum() / ours_same.sum())
    long = None if args.no_long else time_long_recording()

    payload = {
        "machine": machine(),
        "records": len(names),
        "mean_s_per_record_by_stage": per_stage,
        "signal_stages_s_per_record": {
            "mean": float(signal_total.mean()),
            "max": float(signal_total.max()),
            "worst_record": names[int(signal_total.argmax())],
        },
        "neurokit2": {
            "records": nk_names,
            "mean_s_per_record": float(nk_same.mean()),
            "ours_mean_s_same_records": float(ours_same.mean()),
            "speedup": speedup,
        },
        "per_record": timings,
        "long_recording": long,
        "target": {"signal_stages_s_per_record": 1.0, "speedup_vs_neurokit2": 5.0},
    }
    lines = [
        "# `ecg analyze` speed per 30-minute MIT-BIH record",
        "",
        f"{len(names)} records, one process, {payload['machine']['date']}, "
        f"{payload['machine']['cpus']} CPUs.",
        "",
        "| stage | mean s / record |",
        "| --- | --- |",
        *[f"| {s} | {v:.3f} |" for s, v in per_stage.items()],
        f"| **load+condition+detect+delineate** | **{signal_total.mean():.3f}** "
        f"(max {signal_total.max():.3f}, record {names[int(signal_total.argmax())]}; "
        "target <= 1.0) |",
        "",
        f"NeuroKit2 `ecg_clean` + `ecg_peaks` + `ecg_delineate(dwt)` on {len(nk_names)} records: "
        f"{nk_same.mean():.2f} s / record; ours on the same records {ours_same.mean():.3f} s: "
        f"**{speedup:.1f}x faster** (target >= 5x).",
        "",
    ]
    if long:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in long["stages_s"].items())
        lines += [
            f"**A {long['hours']:.1f}-hour recording** (all {len(names)} records' lead joined "
            f"end to end, 360 Hz, {long['beats']:,} beats), classifiers included, in a "
            f"fresh process: `analyze` {long['analyze_s']:.0f} s ({stages} s); peak memory "
            f"of the process {long['peak_rss_gib']:.1f} GiB. Above "
            "`ecgcore.delineate.CHUNK_BEATS` beats the delineator works in chunks of that "
            "many.",
            "",
        ]
        agree = long["agreement_with_records_alone"]
        lines += [
            f"Read as its parts are: of the {agree['beats_alone']:,} beats found in the 48 "
            f"records analysed one by one, {agree['matched']:,} are found in the joined "
            f"recording (within 50 ms; it has {agree['beats_joined']:,}), and "
            f"**{agree['label_agreement_pct']:.2f} %** of them get the same five-class "
            "label. A beat's recording-wide context (amplitude scale, median beat, median "
            "RR) is taken per stretch of about 30 minutes (`ecgcore.beats.CONTEXT_S`). "
            f"Labels, records alone: {agree['counts_alone']}; joined: "
            f"{agree['counts_joined']}.",
            "",
            "| rhythm | episodes alone | joined | seconds alone | joined |",
            "| --- | ---: | ---: | ---: | ---: |",
            *[f"| {label} | {agree['rhythm_alone'].get(label, {}).get('episodes', 0)} | "
              f"{agree['rhythm_joined'].get(label, {}).get('episodes', 0)} | "
              f"{agree['rhythm_alone'].get(label, {}).get('seconds', 0.0):.0f} | "
              f"{agree['rhythm_joined'].get(label, {}).get('seconds', 0.0):.0f} |"
              for label in sorted({*agree["rhythm_alone"], *agree["rhythm_joined"]})],
            "",
            "An episode that crosses a joint between two records counts once when joined.",
            "",
        ]
    write_results("analyze_speed", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
