"""Beats per second of both classifiers together, warm, on this machine.

Usage: python bench/inference.py [--beats N]
Writes bench/results/inference.json and .md. Target: >= 20,000 beats/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402

TARGET = 20_000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beats", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ecgcore.beats import BeatInputs
    from ecgcore.inference import classify_beats, load_classifiers
    from training.dataset import DS2, build_dataset

    beats = build_dataset(mitdb_dir(), DS2)
    n = min(args.beats, len(beats))
    inputs = BeatInputs(beats.waveforms[:n], beats.rr[:n], beats.position[:n])
    t0 = time.perf_counter()
    classifiers = load_classifiers()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    classify_beats(classifiers, inputs.subset(slice(0, 5000)))  # compile every bucket
    classify_beats(classifiers, inputs.subset(slice(0, 300)))
    classify_beats(classifiers, inputs.subset(slice(0, 100)))
    classify_beats(classifiers, inputs.subset(slice(0, 20)))
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        classify_beats(classifiers, inputs)
        times.append(time.perf_counter() - t0)
    best = min(times)
    # One 30-minute record's worth (about 2,200 beats) and one beat, as the app calls it.
    record = inputs.subset(slice(0, 2200))
    t0 = time.perf_counter()
    for _ in range(5):
        classify_beats(classifiers, record)
    record_s = (time.perf_counter() - t0) / 5
    one = inputs.subset(slice(0, 1))
    t0 = time.perf_counter()
    for _ in range(50):
        classify_beats(classifiers, one)
    one_s = (time.perf_counter() - t0) / 50
    # Four threads at once (the Dash server is threaded).
    chunks = [inputs.subset(slice(i * 2200, (i + 1) * 2200)) for i in range(4)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: classify_beats(classifiers, c), chunks))
    threads_s = time.perf_counter() - t0
    payload = {
        "machine": machine(),
        "beats": n,
        "beats_per_second": n / best,
        "seconds_all_runs": times,
        "target_beats_per_second": TARGET,
        "meets_target": n / best >= TARGET,
        "load_seconds": load_s,
        "warmup_seconds": warmup_s,
        "record_2200_beats_seconds": record_s,
        "one_beat_seconds": one_s,
        "four_threads_8800_beats_seconds": threads_s,
        "parameters": {"binary": classifiers.binary.model.count_params(),
                       "aami": classifiers.aami.model.count_params()},
    }
    md = (f"# Inference speed (both models together, warm)\n\n"
          f"- {n} DS2 beats: best of {args.repeats} {best:.2f} s -> "
          f"**{n / best:,.0f} beats/s** (target {TARGET:,}: "
          f"{'met' if n / best >= TARGET else 'NOT met'})\n"
          f"- One record (2,200 beats): {record_s * 1000:.0f} ms; one beat: "
          f"{one_s * 1000:.1f} ms; 4 threads x 2,200 beats: {threads_s * 1000:.0f} ms\n"
          f"- Load {load_s:.2f} s, first calls (compilation) {warmup_s:.1f} s\n"
          f"- Parameters: {payload['parameters']}\n- Machine: {payload['machine']}\n")
    write_results("inference", payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
