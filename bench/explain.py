"""Seconds per beat to explain both classifiers (SHAP, every class), warm.

Usage: python bench/explain.py [--beats N]
Writes bench/results/explain.json and .md. Target: <= 1 s per beat for both models.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402

TARGET_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beats", type=int, default=20)
    args = parser.parse_args()
    from ecgcore.beats import BeatInputs
    from ecgcore.explain import DEFAULT_MAX_EVALS, explain_beat, integrated_gradients
    from ecgcore.inference import load_classifiers
    from training.dataset import load_record_beats

    rec = load_record_beats(mitdb_dir(), "208")  # N, V, F and S beats
    inputs = BeatInputs(rec["waveforms"], rec["rr"], rec["position"])
    classifiers = load_classifiers()
    for model in ("aami", "binary"):  # warm: compile
        explain_beat(classifiers, inputs, 10, model)
        integrated_gradients(classifiers, inputs, 10, model)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(inputs), args.beats, replace=False)
    shap_s, ig_s, errors = [], [], []
    for i in picks:
        t0 = time.perf_counter()
        for model in ("aami", "binary"):
            e = explain_beat(classifiers, inputs, int(i), model)
            errors.append(e["completeness_error"])
        shap_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for model in ("aami", "binary"):
            integrated_gradients(classifiers, inputs, int(i), model)
        ig_s.append(time.perf_counter() - t0)
    payload = {
        "machine": machine(),
        "beats": args.beats,
        "max_evals": DEFAULT_MAX_EVALS,
        "shap_seconds_per_beat_both_models": {"median": float(np.median(shap_s)),
                                              "max": float(np.max(shap_s))},
        "ig_seconds_per_beat_both_models": {"median": float(np.median(ig_s)),
                                            "max": float(np.max(ig_s))},
        "max_completeness_error": float(np.max(errors)),
        "target_seconds": TARGET_S,
        "meets_target": float(np.median(shap_s)) <= TARGET_S,
    }
    ig_steps = inspect.signature(integrated_gradients).parameters["steps"].default
    md = (f"# Explanation time (record 208, {args.beats} random beats, warm)\n\n"
          f"- SHAP (PermutationExplainer, {DEFAULT_MAX_EVALS} evaluations, every class) for "
          f"both models: median **{np.median(shap_s):.2f} s** per beat, max "
          f"{np.max(shap_s):.2f} s (target {TARGET_S} s: "
          f"{'met' if payload['meets_target'] else 'NOT met'})\n"
          f"- Integrated gradients ({ig_steps} steps) for both models: median "
          f"{np.median(ig_s) * 1000:.0f} ms per beat\n"
          f"- Largest SHAP completeness error: {np.max(errors):.2e}\n"
          f"- Machine: {payload['machine']}\n")
    write_results("explain", payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
