"""Paths and small helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"


def mitdb_dir() -> Path:
    """The MIT-BIH folder: ``ECG_MITDB_DIR`` or ``../shared/data/mitdb``."""
    return Path(os.environ.get("ECG_MITDB_DIR", SHARED_DATA / "mitdb"))


def mitdb_records(directory: Path | None = None) -> list[str]:
    """Record names listed in the folder's ``RECORDS`` file."""
    directory = directory or mitdb_dir()
    return (directory / "RECORDS").read_text().split()


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        # Other work on the machine slows every figure: say how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def write_results(name: str, payload: dict, markdown: str) -> None:
    """Write ``bench/results/<name>.json`` and ``<name>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
