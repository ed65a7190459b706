"""Beat classification on patients of other databases: the QT Database records not taken
from MIT-BIH.

The networks learnt from MIT-BIH DS1 and are reported on DS2, both recorded on the same
Holter equipment in the same hospital in the 1970s. The QT Database's records come from
seven databases (ST change, supraventricular arrhythmia, normal sinus rhythm, long-term,
sudden death, the European ST-T database...) at 250 Hz; those with the source database's
beat annotations (``.atr``) and not taken from the MIT-BIH Arrhythmia Database (whose
records appear there as ``sel`` + the MIT-BIH name) are patients the networks never saw,
recorded elsewhere. Each goes through ``ecgcore.analysis.analyze`` and is scored as
``ecg evaluate`` scores DS2 end to end (``training.evaluate.evaluate_end_to_end``:
detected beats matched to the reference within 150 ms; missed and extra beats counted).
Nothing here was used to choose anything.

Usage: python bench/other_databases.py [--qtdb DIR]
Writes bench/results/other_databases.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_DATA, machine, mitdb_records, write_results  # noqa: E402


def qtdb_dir() -> Path:
    """The QT Database folder: ``ECG_QTDB_DIR`` or ``../shared/data/qtdb-dev``."""
    return Path(os.environ.get("ECG_QTDB_DIR", SHARED_DATA / "qtdb-dev"))


def unseen_records(directory: Path) -> tuple[list[str], list[str]]:
    """(records scored, records left out with why): those with beat annotations and not
    from MIT-BIH's Arrhythmia Database (DS1 trained the networks, DS2 is reported apart)."""
    mitdb = set(mitdb_records())
    scored, left_out = [], []
    for name in (directory / "RECORDS").read_text().split():
        if name.startswith("sel") and name[3:] in mitdb:
            left_out.append(f"{name} (MIT-BIH {name[3:]})")
        elif not (directory / f"{name}.atr").exists():
            left_out.append(f"{name} (no beat annotations)")
        else:
            scored.append(name)
    return scored, left_out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--qtdb", type=Path, default=qtdb_dir())
    args = parser.parse_args()
    from ecgcore.beats import AAMI_CLASSES
    from ecgcore.inference import load_classifiers
    from training.evaluate import evaluate_end_to_end

    records, left_out = unseen_records(args.qtdb)
    start = time.perf_counter()
    result = evaluate_end_to_end(load_classifiers(), args.qtdb, records)
    leads = {name: r["lead"] for name, r in result["per_record"].items()}
    payload = {"machine": machine(), "records": records, "leads": leads,
               "left_out": left_out,
               "aami": result["aami"], "binary": result["binary"],
               "without_rhythm_rule": result["without_rhythm_rule"],
               "detection": result["detection"], "per_record": result["per_record"],
               "seconds": round(time.perf_counter() - start, 1)}
    pc = result["aami"]["per_class"]
    rows, cols = result["aami"]["confusion_rows"], result["aami"]["confusion_columns"]
    confusion = result["aami"]["confusion_with_missed_extra"]
    b = result["binary"]
    lines = [
        "# Beat classification on other databases (QT Database records not from MIT-BIH)",
        "",
        f"`.venv/bin/python bench/other_databases.py` ({payload['machine']['date']}, "
        f"{payload['seconds']:.0f} s). {len(records)} records at 250 Hz, 15 minutes each, "
        "from databases other than MIT-BIH's Arrhythmia Database: patients the networks "
        "never saw, recorded on other equipment. Scored as `ecg evaluate` scores DS2 end "
        "to end (served labels; detected beats matched to the source database's beat "
        "annotations within 150 ms; a missed beat counts against its class's sensitivity, "
        "an extra one against the PPV of the class it was given). Nothing here was used "
        "to choose anything. Left out: " + ", ".join(left_out) + ".",
        "",
        f"Beats: {sum(r['reference'] for r in result['per_record'].values())} in the "
        f"reference; detection missed {result['detection']['missed']}, added "
        f"{result['detection']['extra']}.",
        "",
        "| class | reference beats | labelled so | Se % | +P % |",
        "|---|---|---|---|---|",
    ]
    for c in ("N", "S", "V", "F", "Q"):
        lines.append(f"| {c} | {pc[c]['support']} | {pc[c]['predicted']} | "
                     f"{_pct(pc[c]['sensitivity'])} | {_pct(pc[c]['ppv'])} |")
    lines += [
        "",
        f"Accuracy {_pct(result['aami']['accuracy'])} %; binary label: abnormal Se "
        f"{_pct(b['abnormal_sensitivity'])} % at specificity {_pct(b['specificity'])} %. "
        "With so few S, F and Q beats their figures say little; N and V are the point.",
        "",
        "Confusion (rows: reference, then detections matching none; columns: served "
        "label, then reference beats not detected):",
        "",
        "| | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, row in zip(rows, confusion, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "Per record (the lead analysed: lead II where the record has it, else its "
              "first):", "",
              "| record | lead | reference beats | N | N called V | N called S | V | V found "
              "| missed | extra | beats labelled wrong |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    n, s, v = (AAMI_CLASSES.index(c) for c in "NSV")
    for name, r in result["per_record"].items():
        m = r["confusion"]
        lines.append(
            f"| {name} | {leads[name]} | {r['reference']} | {sum(m[n])} | {m[n][v]} | "
            f"{m[n][s]} | {sum(m[v])} | {m[v][v]} | {r['missed']} | {r['extra']} | "
            f"{r['errors']} |")
    lines.append("")
    write_results("other_databases", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
