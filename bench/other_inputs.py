"""DS2 end to end as other devices would record it: other rates, ADC counts, the lead turned over.

The project is used on recordings unlike MIT-BIH's (other databases, other rates, hobby
boards). This script changes each DS2 record the way such a device would, before
``ecgcore.analysis.analyze`` sees it, and scores the served labels exactly as
``ecg evaluate`` does (``training.evaluate.evaluate_end_to_end``: detected beats matched
to the reference within 150 ms; missed and extra beats counted):

- resampled (polyphase, anti-aliased) to 54 Hz (what the Arduino recordings in
  ``../shared/data/arduino`` were written at), 128 Hz (Holter, the MIT-BIH
  Supraventricular Arrhythmia Database), 250 Hz (the QT Database, many monitors),
  257 Hz (the St Petersburg INCART database), 500 and 1000 Hz (diagnostic carts);
- as 10-bit ADC counts (31 counts per mV about a mid-scale of 512, rounded and clipped to
  0-1023: an AD8232 board read by an Arduino);
- the lead turned over (electrodes swapped);
- mains hum, breathing wander and white noise added (:func:`with_interference`).

Usage: python bench/other_inputs.py [--records 100 200 ...]
Writes bench/results/other_inputs.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402

RATES_HZ = (54.0, 128.0, 250.0, 257.0, 500.0, 1000.0)
ADC_COUNTS_PER_MV = 31.0
ADC_MID_SCALE = 512.0


def at_rate(recording, fs: float):
    """The recording resampled to ``fs``, its annotations moved to the new sample numbers."""
    from ecgcore.recording import Annotations
    from ecgcore.signal import ecg_resample

    signal = np.column_stack([ecg_resample(recording.signal[:, k], recording.fs, fs)
                              for k in range(recording.signal.shape[1])])
    ann = recording.annotations
    sample = np.round(np.asarray(ann.sample, dtype=np.float64) * fs / recording.fs)
    sample = np.clip(sample, 0, signal.shape[0] - 1).astype(np.int64)
    return replace(recording, signal=signal, fs=fs,
                   annotations=Annotations(sample, list(ann.symbol), list(ann.aux_note)))


def as_adc_counts(recording):
    """The recording as a 10-bit converter behind an AD8232 would give it."""
    counts = np.clip(np.round(recording.signal * ADC_COUNTS_PER_MV + ADC_MID_SCALE), 0, 1023)
    return replace(recording, signal=counts, units=["adu"] * recording.signal.shape[1])


def with_interference(recording):
    """Mains hum (50 Hz, 0.2 mV), breathing wander (0.3 Hz, 0.5 mV) and white noise
    (0.05 mV RMS), as an unshielded hobby board picks them up."""
    t = np.arange(recording.signal.shape[0])[:, None] / recording.fs
    rng = np.random.default_rng(0)
    hum = 0.2 * np.sin(2 * np.pi * 50.0 * t)
    wander = 0.5 * np.sin(2 * np.pi * 0.3 * t + 1.0)
    noise = rng.normal(0.0, 0.05, size=recording.signal.shape)
    return replace(recording, signal=recording.signal + hum + wander + noise)


def turned_over(recording):
    """The same leads with their electrodes swapped."""
    return replace(recording, signal=-recording.signal)


VARIANTS = {
    "as recorded (360 Hz, mV)": None,
    **{f"resampled to {fs:g} Hz": (lambda r, fs=fs: at_rate(r, fs)) for fs in RATES_HZ},
    f"10-bit ADC counts ({ADC_COUNTS_PER_MV:g}/mV about {ADC_MID_SCALE:g})": as_adc_counts,
    "lead turned over (electrodes swapped)": turned_over,
    "mains hum, baseline wander and noise": with_interference,
}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main() -> int:
    from training.dataset import DS2

    parser = argparse.ArgumentParser()
    parser.add_argument("--records", nargs="*", default=list(DS2))
    args = parser.parse_args()
    from ecgcore.inference import load_classifiers
    from training.evaluate import evaluate_end_to_end

    classifiers = load_classifiers()
    rows = {}
    start = time.perf_counter()
    for name, transform in VARIANTS.items():
        t0 = time.perf_counter()
        result = evaluate_end_to_end(classifiers, mitdb_dir(), args.records,
                                     transform=transform)
        rows[name] = {"aami": result["aami"], "binary": result["binary"],
                      "detection": result["detection"],
                      "seconds": round(time.perf_counter() - t0, 1)}
        pc = result["aami"]["per_class"]
        print(f"{name}: acc {_pct(result['aami']['accuracy'])} "
              + " ".join(f"{c} {_pct(pc[c]['sensitivity'])}/{_pct(pc[c]['ppv'])}"
                         for c in ("N", "S", "V", "F")), flush=True)
    payload = {"machine": machine(), "records": args.records, "variants": rows,
               "seconds": round(time.perf_counter() - start, 1)}
    lines = [
        "# DS2 end to end as other devices would record it",
        "",
        f"`.venv/bin/python bench/other_inputs.py` ({payload['machine']['date']}, "
        f"{payload['seconds']:.0f} s). Each DS2 record ({len(args.records)}) is changed as "
        "below before `ecgcore.analysis.analyze` sees it; the served labels are scored as "
        "`ecg evaluate` scores them end to end (detected beats matched to the reference "
        "within 150 ms; a missed beat counts against its class's sensitivity, an extra one "
        "against the PPV of the class it was given). Figures in %, Se/+P.",
        "",
        "| input | missed | extra | accuracy | N | S | V | F | abnormal Se / Sp |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        pc = row["aami"]["per_class"]
        cells = [f"{_pct(pc[c]['sensitivity'])}/{_pct(pc[c]['ppv'])}" for c in "NSVF"]
        b = row["binary"]
        lines.append(
            f"| {name} | {row['detection']['missed']} | {row['detection']['extra']} | "
            f"{_pct(row['aami']['accuracy'])} | " + " | ".join(cells)
            + f" | {_pct(b['abnormal_sensitivity'])} / {_pct(b['specificity'])} |")
    lines += [
        "",
        "The resampled inputs go through a polyphase anti-alias filter, as a device's own "
        "filter would; a device without one folds mains and muscle noise into the band, "
        "which this does not show. `ecgcore.beats.beat_inputs` turns a served lead that "
        "looks recorded upside down (QRS and T both pointing down, "
        "`ecgcore.beats.looks_upside_down`) the right way up before the classifiers see "
        "it; a record whose T wave is discordant by nature (QRS up, T down, as in bundle "
        "branch block) looks, turned over, like a lead whose QRS points down by nature, "
        "and is read as it comes. The networks were trained on MIT-BIH's leads as "
        "recorded, none of which looks upside down.",
        "",
    ]
    write_results("other_inputs", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
