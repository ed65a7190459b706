"""Benchmark of ecgcore.delineate against the QT Database manual marks (.q1c), with
NeuroKit2's DWT delineator on the same beats, the same signal and the same rate.

Pipeline per record: read (wfdb) -> ecg_resample to 360 Hz -> ecg_condition ->
R peaks (ecgcore.detect.ecg_rpeaks when it exists, else the record's .atr beats) ->
delineate each of the two leads -> match detected beats to the annotated QRS marks within
150 ms -> per annotated point, the lead whose mark is closest to the reference ("best lead",
Martinez 2004 / Laguna 1994), identically for both methods. Lead-0-only figures are in the
JSON too.

    .venv/bin/python bench/delineation.py [--out bench/results/delineation.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import wfdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecgcore.delineate import DELINEATION_POINTS, ecg_delineate  # noqa: E402
from ecgcore.metrics import MATCH_TOLERANCE_S, match_beats  # noqa: E402
from ecgcore.signal import INTERNAL_FS, ecg_condition, ecg_resample  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
QTDB = DATA / "qtdb-dev"
MITDB = DATA / "mitdb"
CACHE = Path("/tmp") / "ecg_delineation_bench_cache"

CSE_2SD_MS = {"p_onset": 10.2, "p_offset": 12.7, "qrs_onset": 6.5, "qrs_offset": 11.6,
              "t_offset": 30.6}
NK_KEYS = {
    "p_onset": "ECG_P_Onsets", "p_peak": "ECG_P_Peaks", "p_offset": "ECG_P_Offsets",
    "qrs_onset": "ECG_R_Onsets", "qrs_offset": "ECG_R_Offsets",
    "t_peak": "ECG_T_Peaks", "t_offset": "ECG_T_Offsets",
}
WAVE_SYMBOLS = {"p": "p", "t": "t", "u": "u"}


def detector():
    """``ecg_rpeaks`` if ecgcore.detect exists, else None (the .atr beats are used)."""
    try:
        from ecgcore.detect import ecg_rpeaks
    except ImportError:
        return None
    return ecg_rpeaks


def parse_q1c(path: Path) -> list[dict[str, float]]:
    """Annotated beats: per QRS mark its time (s) and those of its annotated points."""
    ann = wfdb.rdann(str(path), "q1c")
    fs = float(ann.fs) if ann.fs else 250.0
    s = np.asarray(ann.sample)
    sym = list(ann.symbol)
    waves = []  # (kind, peak, onset or None, offset or None)
    for i, c in enumerate(sym):
        if c in "()":
            continue
        kind = WAVE_SYMBOLS.get(c, "qrs")
        on = s[i - 1] / fs if i > 0 and sym[i - 1] == "(" else None
        off = s[i + 1] / fs if i + 1 < len(sym) and sym[i + 1] == ")" else None
        waves.append((kind, s[i] / fs, on, off))
    beats = []
    qrs_idx = [k for k, w in enumerate(waves) if w[0] == "qrs"]
    for j, k in enumerate(qrs_idx):
        _, peak, on, off = waves[k]
        beat = {"r": peak, "qrs_onset": on, "qrs_offset": off}
        prev_k = qrs_idx[j - 1] if j > 0 else -1
        next_k = qrs_idx[j + 1] if j + 1 < len(qrs_idx) else len(waves)
        for kk in range(prev_k + 1, k):
            if waves[kk][0] == "p":
                beat.update(p_peak=waves[kk][1], p_onset=waves[kk][2], p_offset=waves[kk][3])
        for kk in range(k + 1, next_k):
            if waves[kk][0] == "t":
                beat.update(t_peak=waves[kk][1], t_offset=waves[kk][3])
                break
        beats.append({key: v for key, v in beat.items() if v is not None})
    return beats


def nk_delineate(x: np.ndarray, rpeaks: np.ndarray, fs: float, key: str) -> tuple[dict, float]:
    """NeuroKit2 dwt on the same conditioned lead and R peaks (cached between runs)."""
    CACHE.mkdir(exist_ok=True)
    h = hashlib.sha1(x.tobytes() + rpeaks.astype(np.int64).tobytes()).hexdigest()[:16]
    f = CACHE / f"{key}_{h}.npz"
    if f.exists():
        z = np.load(f)
        return {k: z[k] for k in DELINEATION_POINTS}, float(z["seconds"])
    import neurokit2 as nk

    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _, waves = nk.ecg_delineate(x, rpeaks, sampling_rate=int(fs), method="dwt")
            res = {p: np.asarray(waves[NK_KEYS[p]], dtype=np.float64) for p in DELINEATION_POINTS}
        except Exception as exc:  # NeuroKit2 crashes are a result too
            print(f"  NeuroKit2 failed on {key}: {exc!r}")
            res = {p: np.full(rpeaks.size, np.nan) for p in DELINEATION_POINTS}
    secs = time.process_time() - t0
    np.savez(f, seconds=secs, **res)
    return res, secs


def run(out: Path) -> dict:
    rpeaks_fn = detector()
    records = (QTDB / "RECORDS").read_text().split()
    fs = INTERNAL_FS
    # errors[method][mode][point] -> list of (ours - manual) ms, or NaN when missing
    errors = {m: {mode: {p: [] for p in DELINEATION_POINTS} for mode in ("best", "lead0")}
              for m in ("ours", "nk")}
    per_record = []
    n_annot, n_matched = 0, 0
    for rec in records:
        path = QTDB / rec
        sig = wfdb.rdrecord(str(path))
        fs_in = float(sig.fs)
        leads = [ecg_condition(ecg_resample(sig.p_signal[:, i], fs_in, fs), fs)
                 for i in range(sig.p_signal.shape[1])]
        if rpeaks_fn is not None:
            rpeaks = np.asarray(rpeaks_fn(leads[0], fs), dtype=np.int64)
            source = "ecgcore.detect.ecg_rpeaks"
        else:
            atr = wfdb.rdann(str(path), "atr") if (QTDB / f"{rec}.atr").exists() else None
            if atr is None:
                import neurokit2 as nk

                _, info = nk.ecg_peaks(leads[0], sampling_rate=int(fs))
                rpeaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
                source = "neurokit2 ecg_peaks (no detector, no .atr)"
            else:
                from ecgcore.metrics import AAMI_BEAT_SYMBOLS

                keep = [s in AAMI_BEAT_SYMBOLS for s in atr.symbol]
                rpeaks = np.round(np.asarray(atr.sample)[keep] * fs / fs_in).astype(np.int64)
                source = "reference .atr beats"
        beats = parse_q1c(path)
        ref_r = np.array([b["r"] for b in beats])
        match = match_beats(ref_r, rpeaks / fs, MATCH_TOLERANCE_S)
        n_annot += len(beats)
        n_matched += match.ref_index.size
        ours, nks, t_ours, t_nk = [], [], 0.0, 0.0
        for li, x in enumerate(leads):
            t0 = time.process_time()
            ours.append(ecg_delineate(x, rpeaks, fs))
            t_ours += time.process_time() - t0
            res, secs = nk_delineate(x, rpeaks, fs, f"{rec}_{li}")
            nks.append(res)
            t_nk += secs
        per_record.append({"record": rec, "beats_detected": int(rpeaks.size),
                           "annotated": len(beats), "matched": int(match.ref_index.size),
                           "ours_cpu_s": round(t_ours, 3), "nk_cpu_s": round(t_nk, 3),
                           "rpeaks": source})
        for bi, ti in zip(match.ref_index, match.test_index, strict=True):
            beat = beats[bi]
            for p in DELINEATION_POINTS:
                if p not in beat:
                    continue
                for method, res in (("ours", ours), ("nk", nks)):
                    vals = np.array([res[li][p][ti] for li in range(len(leads))]) / fs
                    err = (vals - beat[p]) * 1000.0
                    finite = err[np.isfinite(err)]
                    best = finite[np.argmin(np.abs(finite))] if finite.size else np.nan
                    errors[method]["best"][p].append(best)
                    errors[method]["lead0"][p].append(err[0])
        # Annotated beats we did not detect count against the sensitivity of both methods.
        for bi in match.missed:
            for p in DELINEATION_POINTS:
                if p in beats[bi]:
                    for method in ("ours", "nk"):
                        for mode in ("best", "lead0"):
                            errors[method][mode][p].append(np.nan)
        print(f"{rec}: {len(beats)} annotated, {match.ref_index.size} matched, "
              f"ours {t_ours:.2f} s, nk {t_nk:.2f} s")

    def summary(vals: list[float]) -> dict:
        v = np.asarray(vals, dtype=np.float64)
        f = v[np.isfinite(v)]
        return {"n": int(v.size), "se": float(f.size / v.size) if v.size else float("nan"),
                "mean_ms": float(np.mean(f)) if f.size else float("nan"),
                "sd_ms": float(np.std(f, ddof=1)) if f.size > 1 else float("nan")}

    table = {method: {mode: {p: summary(errors[method][mode][p]) for p in DELINEATION_POINTS}
                      for mode in ("best", "lead0")} for method in ("ours", "nk")}
    timing = mitdb_timing()
    survey = mitdb_survey()
    af = mitdb_af_p()
    result = {"mitdb_af_p": af, "annotated_beats": n_annot, "matched_beats": n_matched,
              "rpeaks": per_record[0]["rpeaks"],
              "table": table, "cse_2sd_ms": CSE_2SD_MS, "per_record": per_record,
              "mitdb_timing": timing, "mitdb_survey": survey}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)
    return result


def mitdb_timing() -> list[dict]:
    """CPU time of ecg_delineate on whole 30-minute MIT-BIH records (lead 0, 360 Hz)."""
    rows = []
    t0 = time.perf_counter()
    import ecgcore.delineate  # noqa: F401  (import cost, reported separately)

    import_s = time.perf_counter() - t0
    for rec in ("100", "208", "203"):
        path = MITDB / rec
        if not (MITDB / f"{rec}.dat").exists():
            continue
        sig = wfdb.rdrecord(str(path), channels=[0])
        x = ecg_condition(sig.p_signal[:, 0], sig.fs)
        atr = wfdb.rdann(str(path), "atr")
        from ecgcore.metrics import AAMI_BEAT_SYMBOLS

        rp = np.asarray(atr.sample)[[s in AAMI_BEAT_SYMBOLS for s in atr.symbol]]
        rpeaks_fn = detector()
        if rpeaks_fn is not None:
            rp = np.asarray(rpeaks_fn(x, sig.fs), dtype=np.int64)
        ecg_delineate(x[:5000], rp[rp < 5000], sig.fs)  # warm-up
        best, best_cpu = np.inf, np.inf
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            ecg_delineate(x, rp, sig.fs)
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
        rows.append({"record": rec, "samples": int(x.size), "beats": int(rp.size),
                     "delineate_s": round(best, 3), "delineate_cpu_s": round(best_cpu, 3)})
    return rows + [{"import_s": round(import_s, 3)}]


AF_RECORDS = ("201", "202", "203", "210", "219", "221", "222")


def mitdb_af_p(records: tuple[str, ...] = AF_RECORDS) -> dict:
    """P waves where none is expected, for both methods, on MIT-BIH records with AF.

    Lead 0, conditioned, R peaks from ecgcore.detect; NeuroKit2 dwt on the same signal and
    R peaks (cached). Counted per reference beat matched by a detected beat: beats inside
    "(AFIB"/"(AFL" episodes and ventricular beats (V), each given a P wave or not; also
    normal beats in sinus rhythm "(N" of the same records (P expected), for contrast.
    """
    from ecgcore.detect import ecg_rpeaks
    from ecgcore.metrics import AAMI_BEAT_SYMBOLS

    keys = ("af_afl", "V", "sinus_N")
    counts = {m: {k: [0, 0] for k in keys} for m in ("ours", "nk")}
    per_record = []
    for rec in records:
        if not (MITDB / f"{rec}.dat").exists():
            continue
        sig = wfdb.rdrecord(str(MITDB / rec), channels=[0])
        x = ecg_condition(sig.p_signal[:, 0], sig.fs)
        rp = np.asarray(ecg_rpeaks(x, sig.fs), dtype=np.int64)
        ours = ecg_delineate(x, rp, sig.fs)
        nk, _ = nk_delineate(x, rp, sig.fs, f"mitdb{rec}_0")
        atr = wfdb.rdann(str(MITDB / rec), "atr")
        rhythm, current = [], ""
        for sym, aux in zip(atr.symbol, atr.aux_note, strict=True):
            if sym == "+" and aux.startswith("("):
                current = aux.strip("\x00")
            rhythm.append(current)
        keep = np.array([s in AAMI_BEAT_SYMBOLS for s in atr.symbol])
        sym = np.array(atr.symbol)[keep]
        rhy = np.array(rhythm)[keep]
        m = match_beats(np.asarray(atr.sample)[keep], rp, MATCH_TOLERANCE_S * sig.fs)
        s_, r_ = sym[m.ref_index], rhy[m.ref_index]
        masks = {"af_afl": np.isin(r_, ["(AFIB", "(AFL"]), "V": s_ == "V",
                 "sinus_N": (s_ == "N") & (r_ == "(N")}
        row = {"record": rec}
        for method, res in (("ours", ours), ("nk", nk)):
            has_p = np.isfinite(np.asarray(res["p_peak"], dtype=np.float64)[m.test_index])
            for k in keys:
                counts[method][k][0] += int(has_p[masks[k]].sum())
                counts[method][k][1] += int(masks[k].sum())
                row[f"{method}_{k}"] = [int(has_p[masks[k]].sum()), int(masks[k].sum())]
        per_record.append(row)
        print(f"mitdb {rec}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "record"))
    return {"records": per_record,
            "p_present": {m: {k: {"with_p": a, "beats": b, "fraction": a / b if b else None}
                              for k, (a, b) in c.items()} for m, c in counts.items()}}


def mitdb_survey() -> dict:
    """The whole pipeline on all 48 MIT-BIH records (lead 0): time and P-wave presence.

    P presence is counted per reference beat matched by a detected beat: normal beats in
    normal sinus rhythm "(N" (P expected), beats during "(AFIB"/"(AFL" (no P expected) and
    ventricular beats (no P expected before them).
    """
    from ecgcore.detect import ecg_rpeaks
    from ecgcore.metrics import AAMI_BEAT_SYMBOLS

    rows = []
    counts = {"sinus_N": [0, 0], "af_afl": [0, 0], "V": [0, 0]}
    for rec in (MITDB / "RECORDS").read_text().split():
        sig = wfdb.rdrecord(str(MITDB / rec), channels=[0])
        x = ecg_condition(sig.p_signal[:, 0], sig.fs)
        rp = np.asarray(ecg_rpeaks(x, sig.fs), dtype=np.int64)
        t, c = time.perf_counter(), time.process_time()
        d = ecg_delineate(x, rp, sig.fs)
        rows.append({"record": rec, "beats": int(rp.size),
                     "delineate_s": round(time.perf_counter() - t, 3),
                     "delineate_cpu_s": round(time.process_time() - c, 3)})
        atr = wfdb.rdann(str(MITDB / rec), "atr")
        rhythm, current = [], ""
        for sym, aux in zip(atr.symbol, atr.aux_note, strict=True):
            if sym == "+" and aux.startswith("("):
                current = aux.strip("\x00")
            rhythm.append(current)
        keep = np.array([s in AAMI_BEAT_SYMBOLS for s in atr.symbol])
        ref = np.asarray(atr.sample)[keep]
        sym = np.array(atr.symbol)[keep]
        rhy = np.array(rhythm)[keep]
        m = match_beats(ref, rp, MATCH_TOLERANCE_S * sig.fs)
        has_p = np.isfinite(d["p_peak"][m.test_index])
        s_, r_ = sym[m.ref_index], rhy[m.ref_index]
        for key, mask in (("sinus_N", (s_ == "N") & (r_ == "(N")),
                          ("af_afl", np.isin(r_, ["(AFIB", "(AFL"])),
                          ("V", s_ == "V")):
            counts[key][0] += int(has_p[mask].sum())
            counts[key][1] += int(mask.sum())
    times = np.array([r["delineate_s"] for r in rows])
    cpu = np.array([r["delineate_cpu_s"] for r in rows])
    return {"records": rows, "median_s": float(np.median(times)), "max_s": float(times.max()),
            "median_cpu_s": float(np.median(cpu)), "max_cpu_s": float(cpu.max()),
            "p_present": {k: {"with_p": a, "beats": b, "fraction": a / b if b else None}
                          for k, (a, b) in counts.items()}}


def markdown(result: dict) -> str:
    t = result["table"]
    lines = []
    names = {"p_onset": "P onset", "p_peak": "P peak", "p_offset": "P offset",
             "qrs_onset": "QRS onset", "qrs_offset": "QRS offset", "t_peak": "T peak",
             "t_offset": "T offset"}
    for mode, title in (("best", "best of the 2 leads per beat and point (both methods)"),
                        ("lead0", "lead 0 only (both methods)")):
        lines += [f"### QT Database ({len(result['per_record'])} records), {title}", "",
                  f"Annotated beats: {result['annotated_beats']}, matched to a detected beat "
                  f"(150 ms): {result['matched_beats']}. R peaks: {result['rpeaks']}.", "",
                  "| point | n | ours Se | ours mean (ms) | ours SD (ms) | NK2 dwt Se | "
                  "NK2 mean (ms) | NK2 SD (ms) | CSE 2SD (ms) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in DELINEATION_POINTS:
            o, k = t["ours"][mode][p], t["nk"][mode][p]
            cse = result["cse_2sd_ms"].get(p)
            lines.append(
                f"| {names[p]} | {o['n']} | {100 * o['se']:.1f} % | {o['mean_ms']:+.1f} | "
                f"{o['sd_ms']:.1f} | {100 * k['se']:.1f} % | {k['mean_ms']:+.1f} | "
                f"{k['sd_ms']:.1f} | {cse if cse else '-'} |")
        lines.append("")
    lines += ["Error = ours - manual; Se = annotated points with a delineation, over all "
              "annotated points (undetected beats count as misses).", "",
              "### CPU time per QT Database record (15 min, 2 leads, 360 Hz)", "",
              "| record | beats | ours (s) | NeuroKit2 dwt (s) |", "|---|---|---|---|"]
    for r in result["per_record"]:
        lines.append(f"| {r['record']} | {r['beats_detected']} | {r['ours_cpu_s']:.2f} | "
                     f"{r['nk_cpu_s']:.2f} |")
    tot_o = sum(r["ours_cpu_s"] for r in result["per_record"])
    tot_k = sum(r["nk_cpu_s"] for r in result["per_record"])
    lines += [f"| total | | {tot_o:.2f} | {tot_k:.2f} |", "",
              "### ecg_delineate time on whole MIT-BIH records (30 min, lead 0, 360 Hz, "
              "best of 3)", "",
              "| record | samples | beats | wall (s) | CPU (s) |", "|---|---|---|---|---|"]
    for r in result["mitdb_timing"]:
        if "record" in r:
            lines.append(f"| {r['record']} | {r['samples']} | {r['beats']} | "
                         f"{r['delineate_s']} | {r['delineate_cpu_s']} |")
    lines += ["", "NeuroKit2 times are CPU seconds measured on the first run (later runs read "
              f"them from the cache in {CACHE}); the machine is shared with other jobs."]
    sv = result["mitdb_survey"]
    lines += ["", "### Whole pipeline on all 48 MIT-BIH records (lead 0, R peaks from "
              "ecgcore.detect)", "",
              f"ecg_delineate per 30-minute record, one run each: wall median "
              f"{sv['median_s']:.3f} s, max {sv['max_s']:.3f} s; CPU median "
              f"{sv['median_cpu_s']:.3f} s, max {sv['max_cpu_s']:.3f} s "
              f"(load average while measured: {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores).", "",
              "| beats (matched to the reference) | P found | beats | fraction |",
              "|---|---|---|---|"]
    labels = {"sinus_N": "normal beats in normal sinus rhythm (P expected)",
              "af_afl": "beats in atrial fibrillation / flutter (no P expected)",
              "V": "ventricular beats (no P expected)"}
    for k, v in sv["p_present"].items():
        frac = f"{100 * v['fraction']:.1f} %" if v["fraction"] is not None else "-"
        lines.append(f"| {labels[k]} | {v['with_p']} | {v['beats']} | {frac} |")
    af = result["mitdb_af_p"]["p_present"]
    lines += ["", "### P waves where none is expected: MIT-BIH records with AF "
              f"({', '.join(AF_RECORDS)}), lead 0, both methods", "",
              "Same conditioned signal and R peaks (ecgcore.detect) for both; reference beats "
              "matched by a detected beat. Lower is better in the first two rows (NeuroKit2 "
              "outputs a P wave whether or not there is one); the sinus row is for contrast "
              "(higher is better).", "",
              "| beats | ours P found | ours fraction | NK2 dwt P found | NK2 fraction |",
              "|---|---|---|---|---|"]
    labels2 = {"af_afl": "inside (AFIB / (AFL episodes", "V": "ventricular beats (P before V)",
               "sinus_N": "normal beats in sinus rhythm (N"}
    for k, lab in labels2.items():
        o, q = af["ours"][k], af["nk"][k]
        fo = f"{100 * o['fraction']:.1f} %" if o["fraction"] is not None else "-"
        fq = f"{100 * q['fraction']:.1f} %" if q["fraction"] is not None else "-"
        lines.append(f"| {lab} | {o['with_p']} / {o['beats']} | {fo} | "
                     f"{q['with_p']} / {q['beats']} | {fq} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "delineation.json")
    run(parser.parse_args().out)


if __name__ == "__main__":
    main()
