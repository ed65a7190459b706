"""QRS detection benchmark on MIT-BIH (channel 0, whole records) and the QT DB dev set.

Scores ecgcore's detector and, with ``--compare`` (the default), NeuroKit2's default
detector, NeuroKit2's Pan-Tompkins and wfdb's XQRS, exactly the same way: reference =
beat annotations of ``.atr`` (ventricular flutter episodes of record 207 left out, and
detections inside them dropped), one-to-one matching within 150 ms, gross (pooled) and
per-record sensitivity (Se) and positive predictivity (+P).

Usage::

    .venv/bin/python bench/qrs_detection.py [--records 100 105 ...] [--no-compare]
        [--no-qtdb] [--out bench/results/qrs_detection.json]

Writes the JSON and a Markdown table beside it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import wfdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecgcore.detect import ecg_rpeaks  # noqa: E402
from ecgcore.metrics import (  # noqa: E402
    MATCH_TOLERANCE_S,
    flutter_intervals,
    in_intervals,
    match_beats,
    reference_beats,
)
from ecgcore.signal import INTERNAL_FS, ecg_condition, ecg_resample  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
MITDB = DATA / "mitdb"
QTDB = DATA / "qtdb-dev"


def ours(x: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """The pipeline's way: resample to 360 Hz, condition, detect; indices at ``fs``.

    Returns the detections and the time spent in ``ecg_rpeaks`` alone.
    """
    y = ecg_condition(ecg_resample(x, fs, INTERNAL_FS), INTERNAL_FS)
    t0 = time.perf_counter()
    peaks = ecg_rpeaks(y, INTERNAL_FS)
    detect_s = time.perf_counter() - t0
    return np.round(peaks * (fs / INTERNAL_FS)).astype(np.int64), detect_s


def neurokit_default(x: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=fs), sampling_rate=fs)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def neurokit_pantompkins(x: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    clean = nk.ecg_clean(x, sampling_rate=fs, method="pantompkins1985")
    _, info = nk.ecg_peaks(clean, sampling_rate=fs, method="pantompkins1985")
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def wfdb_xqrs(x: np.ndarray, fs: float) -> np.ndarray:
    from wfdb import processing

    return np.asarray(processing.xqrs_detect(sig=x, fs=fs, verbose=False), dtype=np.int64)


def score(ref: np.ndarray, det: np.ndarray, fs: float) -> dict:
    m = match_beats(ref, np.sort(det), MATCH_TOLERANCE_S * fs)
    tp, fn, fp = int(m.ref_index.size), int(m.missed.size), int(m.extra.size)
    return {"tp": tp, "fn": fn, "fp": fp, **rates(tp, fn, fp)}


def rates(tp: int, fn: int, fp: int) -> dict:
    return {
        "se": 100.0 * tp / (tp + fn) if tp + fn else float("nan"),
        "ppv": 100.0 * tp / (tp + fp) if tp + fp else float("nan"),
    }


def run_records(
    folder: Path, records: list[str], detectors: dict[str, Callable], label: str
) -> dict:
    results = {name: {"records": {}} for name in detectors}
    for record in records:
        rec = wfdb.rdrecord(str(folder / record), channels=[0])
        try:
            ann = wfdb.rdann(str(folder / record), "atr")
        except FileNotFoundError:
            continue  # no reference beats for this record
        fs = float(rec.fs)
        x = rec.p_signal[:, 0].astype(np.float64)
        ref, _ = reference_beats(ann.sample, ann.symbol)
        flutter = flutter_intervals(ann.sample, ann.symbol)
        line = [f"{label} {record}"]
        for name, detect in detectors.items():
            t0 = time.perf_counter()
            detect_s = None
            try:
                out = detect(x, fs)
                error = None
            except Exception as exc:  # a comparison detector crashing is a result too
                out, error = np.zeros(0, dtype=np.int64), f"{type(exc).__name__}: {exc}"
            if isinstance(out, tuple):
                out, detect_s = out
            elapsed = time.perf_counter() - t0
            det = np.unique(np.asarray(out, dtype=np.int64))
            if flutter:
                det = det[~in_intervals(det, flutter)]
            row = score(ref, det, fs)
            row["time_s"] = elapsed
            if detect_s is not None:
                row["detect_time_s"] = detect_s
            if error:
                row["error"] = error
            results[name]["records"][record] = row
            line.append(f"{name} Se {row['se']:.2f} +P {row['ppv']:.2f} {elapsed:.2f}s")
        print(" | ".join(line), flush=True)
    for name in detectors:
        rows = results[name]["records"].values()
        tp, fn, fp = (sum(r[k] for r in rows) for k in ("tp", "fn", "fp"))
        gross = {"tp": tp, "fn": fn, "fp": fp, **rates(tp, fn, fp)}
        gross["mean_time_s"] = float(np.mean([r["time_s"] for r in rows])) if rows else None
        detect_times = [r["detect_time_s"] for r in rows if "detect_time_s" in r]
        if detect_times:
            gross["mean_detect_time_s"] = float(np.mean(detect_times))
            gross["max_detect_time_s"] = float(np.max(detect_times))
        gross["errors"] = sum("error" in r for r in rows)
        results[name]["gross"] = gross
    return results


def _from_mitdb(qt_record: str) -> bool:
    """QT DB records ``sel100`` ... ``sel234`` are excerpts of MIT-BIH Arrhythmia records."""
    number = qt_record.removeprefix("sel")
    return number.isdigit() and len(number) == 3 and 100 <= int(number) <= 234


def markdown(result: dict) -> str:
    out = ["# QRS detection benchmark", ""]
    out.append(f"Command: `{result['command']}`  ")
    out.append(f"Machine: {result['machine']}  ")
    out.append(
        "Channel 0, whole records; reference = `.atr` beats (207 flutter excluded); "
        "one-to-one matching within 150 ms. Gross = pooled over all beats. "
        "Time = per record (ours: resample + condition + detect; detect alone in brackets)."
    )
    sections = (("MIT-BIH Arrhythmia", "mitdb"), ("QT DB dev, out of sample", "qtdb"))
    for title, key in sections:
        if key not in result:
            continue
        res = result[key]
        names = list(res)
        title = f"{title} ({len(res[names[0]]['records'])} records)"
        out += ["", f"## {title}", "", "| detector | Se % | +P % | TP | FN | FP | s/record |",
                "|---|---|---|---|---|---|---|"]
        for name in names:
            g = res[name]["gross"]
            t = f"{g['mean_time_s']:.3f}" if g["mean_time_s"] is not None else "-"
            if "mean_detect_time_s" in g:
                t += f" ({g['mean_detect_time_s']:.3f})"
            err = f" ({g['errors']} crashed)" if g["errors"] else ""
            out.append(
                f"| {name}{err} | {g['se']:.3f} | {g['ppv']:.3f} | {g['tp']} | {g['fn']} | "
                f"{g['fp']} | {t} |"
            )
        if key == "qtdb":
            # sel1xx/sel2xx are excerpts of MIT-BIH Arrhythmia records, seen in tuning.
            for name in names:
                rows = [r for rec, r in res[name]["records"].items() if not _from_mitdb(rec)]
                tp, fn, fp = (sum(r[k] for r in rows) for k in ("tp", "fn", "fp"))
                g = rates(tp, fn, fp)
                out.append(
                    f"| {name}, {len(rows)} records not from MIT-BIH Arrhythmia | "
                    f"{g['se']:.3f} | {g['ppv']:.3f} | {tp} | {fn} | {fp} | |"
                )
        out += ["", "Per record (Se / +P, FN / FP):", ""]
        out.append("| record | " + " | ".join(names) + " |")
        out.append("|---" * (len(names) + 1) + "|")
        records = list(res[names[0]]["records"])
        for record in records:
            cells = []
            for name in names:
                r = res[name]["records"][record]
                cells.append(f"{r['se']:.2f} / {r['ppv']:.2f} ({r['fn']}/{r['fp']})")
            out.append(f"| {record} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="+", help="MIT-BIH records (default: all 48)")
    parser.add_argument(
        "--compare", action=argparse.BooleanOptionalAction, default=True,
        help="also run NeuroKit2 (default, Pan-Tompkins) and wfdb XQRS (slow)",
    )
    parser.add_argument(
        "--qtdb", action=argparse.BooleanOptionalAction, default=True,
        help="also score ours on the QT DB dev records (out of sample)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "qrs_detection.json"))
    parser.add_argument(
        "--markdown-only", action="store_true",
        help="only rewrite the Markdown table from an existing --out JSON",
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        out = Path(args.out)
        out.with_suffix(".md").write_text(markdown(json.loads(out.read_text())))
        print(f"wrote {out.with_suffix('.md')}")
        return 0

    records = args.records or (MITDB / "RECORDS").read_text().split()
    detectors: dict[str, Callable] = {"ecgcore": ours}
    if args.compare:
        detectors |= {
            "neurokit2 default": neurokit_default,
            "neurokit2 pantompkins1985": neurokit_pantompkins,
            "wfdb xqrs": wfdb_xqrs,
        }
    result = {
        "command": " ".join(
            [".venv/bin/python bench/qrs_detection.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}, load average at start {os.getloadavg()[0]:.1f}"
        ),
        "mitdb": run_records(MITDB, records, detectors, "mitdb"),
    }
    if args.qtdb:
        qt_records = (QTDB / "RECORDS").read_text().split()
        result["qtdb"] = run_records(QTDB, qt_records, {"ecgcore": ours}, "qtdb")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["machine"] += f", at end {os.getloadavg()[0]:.1f}"
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    for key in ("mitdb", "qtdb"):
        for name, res in result.get(key, {}).items():
            g = res["gross"]
            print(f"{key} {name}: Se {g['se']:.3f} +P {g['ppv']:.3f} "
                  f"(TP {g['tp']} FN {g['fn']} FP {g['fp']}), {g['mean_time_s']:.3f} s/record")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
