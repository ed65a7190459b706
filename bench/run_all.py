"""Run every benchmark script in bench/ and report which ones ran.

Each script writes its own ``bench/results/<name>.json`` and ``.md``. A failing script
does not stop the others; the exit code is non-zero if any failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = [
    "analyze_speed.py",
    "qrs_detection.py",
    "delineation.py",
    "inference.py",
    "explain.py",
    "rhythm.py",
    "other_inputs.py",
    "other_databases.py",
    "dashboard.py",
    "live_latency.py",
    "load.py",
]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        script = BENCH / name
        if not script.exists():
            print(f"== {name}: not present, skipped")
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"== {name}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
