"""Live page latency: R-peak sample arrival to both models' labels, at real speed.

Plays MIT-BIH records through the simulator, a real pseudo-terminal and the recorder into
the Live page's machinery (``dashboard.live.measure``), 60 s each at 1x.

Usage: python bench/live_latency.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402

RUNS = (("119", 0.0), ("208", 0.0), ("210", 400.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    from dashboard.live import measure

    rows = {}
    for name, start in RUNS:
        result = measure(str(mitdb_dir() / name), args.seconds, start_s=start)
        reference = result.get("reference") or {}
        rows[f"{name}@{start:g}s"] = {
            **{
                k: result.get(k)
                for k in (
                    "latency_median_s", "latency_p95_s", "latency_max_s", "n_latency",
                    "startup_latency_max_s", "state", "error",
                )
            },
            "sensitivity": reference.get("sensitivity"),
            "ppv": reference.get("ppv"),
        }
    lines = [
        "# Live latency (R-peak sample arrival -> labels of both models)",
        "",
        f"{args.seconds:g} s of each record at 1x through simulator -> pty -> recorder -> "
        f"live analysis; {machine()['date']}. Target: <= 1 s.",
        "",
        "| run | beats | median ms | p95 ms | max ms | detection Se / PPV |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value * 1000:.0f}"

    def ratio(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    for run, r in rows.items():
        lines.append(
            f"| {run} | {r['n_latency']} | {ms(r['latency_median_s'])} | "
            f"{ms(r['latency_p95_s'])} | {ms(r['latency_max_s'])} | "
            f"{ratio(r['sensitivity'])} / {ratio(r['ppv'])} |"
        )
        if r.get("error"):
            lines.append(f"|  | error: {r['error']} | | | | |")
    write_results("live_latency", {"machine": machine(), "runs": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
