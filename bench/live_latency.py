"""Live page latency: R-peak sample arrival to both models' labels, at real speed.

Two measures:

- In one process (``dashboard.live.measure``): MIT-BIH records played through the
  simulator, a real pseudo-terminal and the recorder into the Live page's machinery, 60 s
  each at 1x. R-peak sample arrival -> labels of both models.
- Through ``ecg serve``'s default configuration (gunicorn, several workers): a stream
  started over HTTP as the page does, polled over HTTP every 0.3 s as the page does (fresh
  connections, so any worker answers). R-peak sample arrival in the owning worker -> the
  beat in a poll answer (labels, publishing to the shared store, the poll), and the polls'
  round-trip times.

Usage: python bench/live_latency.py [--seconds 60] [--no-served]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402

RUNS = (("119", 0.0), ("208", 0.0), ("210", 400.0))
SERVED_RECORD = "119"
POLL_S = 0.3
R_PEAK = re.compile(r"\b\d+:\d\d:\d\d\.\d\d\b")


def served_run(seconds: float) -> dict:
    """One stream through ``ecg serve`` (default workers and threads), polled over HTTP."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from dash_client import DashClient, Served, children_of, text_of

    from dashboard.components.figures import format_hms
    from dashboard.live import LiveHub
    from dashboard.serve import default_threads, default_workers
    from dashboard.state import new_token, open_session_store

    folder = Path(tempfile.mkdtemp(prefix="ecg-live-bench-"))
    served = Served(folder, [], {"ECG_MITDB_DIR": str(mitdb_dir())})
    try:
        client = DashClient.over_http(served.base)
        workers = len(children_of(served.process.pid))
        session = "bench-live-" + new_token()

        def click(button: str) -> None:
            status, answer = client.call(
                "live-control.children",
                {f"{button}.n_clicks": 1, "live-source.value": "simulator",
                 "live-record.value": SERVED_RECORD, "live-start-s.value": 0,
                 "live-faults.value": [], "session-id.data": session},
                [f"{button}.n_clicks"])
            assert status == 200 and not text_of(
                answer["response"].get("live-control", {}).get("children", "")), answer

        click("live-start")
        # The published state (as any worker reads it) gives each shown beat's timings.
        hub = LiveHub(folder / "unused", open_session_store(folder=served.sessions),
                      stale_s=3600.0)
        shown: dict[str, float] = {}
        beats: dict[str, dict] = {}
        round_trips = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.time()
            status, answer = client.call(
                "live-graph.figure", {"live-interval.n_intervals": 1, "session-id.data": session},
                ["live-interval.n_intervals"])
            received = time.time()
            assert status == 200, answer
            round_trips.append(received - sent)
            table = text_of(answer["response"].get("live-beats", {}).get("children", ""))
            for peak in R_PEAK.findall(table):
                shown.setdefault(peak, received)
            for beat in hub.read(session)["beats"]:
                beats.setdefault(format_hms(beat["time_s"], 2), beat)
            time.sleep(max(0.0, POLL_S - (time.time() - sent)))
        click("live-stop")
        state = hub.read(session)
    finally:
        served.stop()
    start_s = 2.0  # as LiveSession.stats: the first seconds wait for the analysis to start
    display = [shown[p] - (b["labelled_at"] - b["latency_s"]) for p, b in beats.items()
               if p in shown and b["time_s"] >= start_s and np.isfinite(b["latency_s"])]
    label = [b["latency_s"] for p, b in beats.items()
             if p in shown and b["time_s"] >= start_s and np.isfinite(b["latency_s"])]
    return {
        "workers": workers, "threads": default_threads(), "workers_default": default_workers(),
        "record": SERVED_RECORD, "seconds": seconds, "n_beats": len(display),
        "beats_in_stream": state["stats"]["n_beats"] if state else None,
        "label_median_s": float(np.median(label)) if label else None,
        "display_median_s": float(np.median(display)) if display else None,
        "display_p95_s": float(np.percentile(display, 95)) if display else None,
        "display_max_s": float(np.max(display)) if display else None,
        "polls": len(round_trips),
        "poll_median_s": float(np.median(round_trips)),
        "poll_p95_s": float(np.percentile(round_trips, 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-served", action="store_true",
                        help="skip the run through `ecg serve`")
    args = parser.parse_args()
    import os

    from dashboard.live import measure

    loadavg = os.getloadavg()
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
    served = None if args.no_served else served_run(args.seconds)
    lines = [
        "# Live latency (R-peak sample arrival -> labels of both models)",
        "",
        f"{args.seconds:g} s of each record at 1x through simulator -> pty -> recorder -> "
        f"live analysis; {machine()['date']}, load average before "
        f"{[round(x, 2) for x in loadavg]} (the machine is shared). "
        "Target: <= 1 s.",
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
    if served is not None:
        s = served
        lines += [
            "",
            f"## Through `ecg serve` ({s['workers']} workers x {s['threads']} threads, "
            "the default)",
            "",
            f"MIT-BIH {s['record']}, {s['seconds']:g} s at 1x, started over HTTP; polled over "
            f"HTTP every {POLL_S:g} s on fresh connections (any worker answers). A beat's "
            "display latency: its R-peak sample's arrival in the owning worker -> the first "
            "poll answer listing it (labels + publishing to the shared store + the poll).",
            "",
            f"- Beats shown: {s['n_beats']} (label latency median {ms(s['label_median_s'])} ms)",
            f"- Display latency: median {ms(s['display_median_s'])} ms, p95 "
            f"{ms(s['display_p95_s'])} ms, max {ms(s['display_max_s'])} ms",
            f"- Poll round trip: {s['polls']} polls, median {ms(s['poll_median_s'])} ms, "
            f"p95 {ms(s['poll_p95_s'])} ms",
        ]
    write_results("live_latency", {"machine": machine(), "loadavg_before": loadavg,
                                   "runs": rows, "served": served},
                  "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
