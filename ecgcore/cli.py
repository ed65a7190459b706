"""The ``ecg`` command: a thin dispatcher to each subcommand.

Each subcommand imports its package only when it runs, so ``ecg record`` does not pay
for JAX and ``ecg analyze`` does not pay for Dash.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

USAGE = """usage: ecg COMMAND [options]

commands:
  analyze    detect, delineate and classify the beats of recordings, as JSON
  train      rebuild both beat classifiers from MIT-BIH
  evaluate   inter-patient (DS2) evaluation of the classifiers
  serve      start the dashboard
  record     record an Arduino/AD8232 over a serial port
  simulate   play a recording as a fake Arduino on a pseudo-terminal

`ecg COMMAND --help` for each command's options.
"""


def _fail(message: str) -> int:
    print(f"ecg: error: {message}", file=sys.stderr)
    return 2


def analyze_main(argv: list[str]) -> int:
    """``ecg analyze``: one JSON object per recording."""
    parser = argparse.ArgumentParser(
        prog="ecg analyze",
        description="Detect, delineate and classify the beats of ECG recordings.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a WFDB record (path without extension) or a text/CSV file",
    )
    parser.add_argument("--fs", type=float, help="sampling rate in Hz, when the file has none")
    parser.add_argument(
        "--lead", help="lead name or index (default: lead II where the recording has it, "
        "else the first lead)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--json", metavar="OUT", help="write the JSON here (a list for several inputs)"
    )
    out.add_argument("--json-dir", metavar="DIR", help="write one <name>.json per input here")
    out.add_argument(
        "--csv-dir", metavar="DIR",
        help="write <name>_beats.csv (a row per beat) and <name>_rhythm.csv (a row per "
        "rhythm episode) per input here, for a spreadsheet")
    parser.add_argument(
        "--no-classify", action="store_true", help="skip the beat classifiers (faster)"
    )
    args = parser.parse_args(argv)

    from ecgcore.analysis import analyze
    from ecgcore.errors import EcgError
    from ecgcore.io import output_stem, read

    results, failures = [], 0
    used_names: set[str] = set()
    for path in args.paths:
        try:
            start = time.perf_counter()
            recording = read(path, fs=args.fs)
            load_s = time.perf_counter() - start
            analysis = analyze(recording, args.lead, classify=not args.no_classify,
                               progress=_stage_printer(path, recording.duration_s))
        except EcgError as error:
            print(f"ecg: error: {path}: {error}", file=sys.stderr)
            failures += 1
            continue
        analysis.timing_s = {"load": load_s, **analysis.timing_s}
        for warning in analysis.warnings:
            print(f"ecg: warning: {path}: {warning}", file=sys.stderr)
        if args.json_dir or args.csv_dir:
            # Two inputs of the same name (a/100, b/100) do not overwrite each other.
            name = output_stem(recording.source)
            stem, k = name, 1
            while name in used_names:
                k += 1
                name = f"{stem}-{k}"
            used_names.add(name)
            directory = Path(args.json_dir or args.csv_dir)
            directory.mkdir(parents=True, exist_ok=True)
            if args.json_dir:
                (directory / f"{name}.json").write_text(json.dumps(analysis.to_dict()))
            else:
                analysis.beats_frame().to_csv(directory / f"{name}_beats.csv", index=False)
                analysis.rhythm_frame().to_csv(directory / f"{name}_rhythm.csv", index=False)
        else:
            results.append(analysis.to_dict())

    if not (args.json_dir or args.csv_dir) and results:
        payload = results[0] if len(args.paths) == 1 else results
        text = json.dumps(payload)
        if args.json:
            Path(args.json).write_text(text)
        else:
            print(text)
    return 1 if failures else 0


LONG_RECORDING_S = 3600.0
"""From this long on, ``ecg analyze`` says on stderr which step it is at (a 24-hour
recording takes about a minute)."""


def _stage_printer(path: str, duration_s: float) -> Callable[[str], None] | None:
    from ecgcore.analysis import describe_stage

    if duration_s < LONG_RECORDING_S:
        return None

    def show(stage: str) -> None:
        print(f"ecg: {path}: {duration_s / 3600.0:.1f} h, {describe_stage(stage)}",
              file=sys.stderr, flush=True)

    return show


def _lazy(module: str, function: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(argv)

    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "analyze": analyze_main,
    "serve": _lazy("dashboard.serve", "serve_main"),
    "train": _lazy("training.commands", "train_main"),
    "evaluate": _lazy("training.commands", "evaluate_main"),
    "record": _lazy("acquisition.commands", "record_main"),
    "simulate": _lazy("acquisition.commands", "simulate_main"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ecg`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        return _fail(f"unknown command {argv[0]!r}\n{USAGE}")
    from ecgcore.errors import EcgError

    try:
        return command(argv[1:])
    except EcgError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
