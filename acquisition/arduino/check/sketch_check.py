"""Compile ``ecg_ad8232.ino`` and run it cycle-exact on simavr's ATmega328P (no board needed).

It checks what the sketch promises: the sampling instants are timer-exact at 250, 360 and
500 Hz, no sample is lost at 115200 baud, every line passes the protocol's parser, the
header repeats and answers ``?``, the leads-off flag follows LO+, and the ADC values are
those of the input. Run it directly for a table::

    .venv/bin/python acquisition/arduino/check/sketch_check.py

Needs Debian's ``gcc-avr avr-libc arduino-core-avr libsimavr-dev`` and a C compiler (``gcc``);
``tests/test_acquisition.py`` skips its sketch test when they are absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKETCH = HERE.parent / "ecg_ad8232" / "ecg_ad8232.ino"
HARNESS = HERE / "sim_harness.c"
F_CPU = 16_000_000
CORE = Path(os.environ.get("ARDUINO_AVR_CORE", "/usr/share/arduino/hardware/arduino/avr"))
# The core files the sketch links (Serial, analogRead, millis/init, main).
CORE_SOURCES = ["hooks.c", "wiring.c", "wiring_analog.c", "wiring_digital.c", "main.cpp",
                "HardwareSerial.cpp", "HardwareSerial0.cpp", "Print.cpp", "abi.cpp", "new.cpp"]


def missing_tools() -> list[str]:
    """What is not installed for :func:`build` (empty when everything is there)."""
    missing = [tool for tool in ("avr-gcc", "avr-g++", "gcc") if shutil.which(tool) is None]
    if not (CORE / "cores" / "arduino" / "Arduino.h").exists():
        missing.append(f"Arduino AVR core in {CORE} (Debian: arduino-core-avr)")
    if not Path("/usr/include/simavr/sim_avr.h").exists():
        missing.append("simavr headers (Debian: libsimavr-dev)")
    return missing


def build(workdir: Path) -> tuple[Path, Path, int]:
    """Compile the sketch for an Uno and the simavr harness; return (elf, harness, flash bytes).

    The static RAM (``.data`` + ``.bss``) is left in ``build.ram_bytes``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    flags = ["-mmcu=atmega328p", f"-DF_CPU={F_CPU}L", "-DARDUINO=10807", "-DARDUINO_AVR_UNO",
             "-DARDUINO_ARCH_AVR", "-Os", "-ffunction-sections", "-fdata-sections",
             f"-I{CORE / 'cores' / 'arduino'}", f"-I{CORE / 'variants' / 'standard'}"]
    cpp = ["-std=gnu++11", "-fno-exceptions", "-fno-threadsafe-statics"]
    objects = []
    sketch_cpp = workdir / "ecg_ad8232.cpp"
    sketch_cpp.write_text(SKETCH.read_text())
    sources = [CORE / "cores" / "arduino" / name for name in CORE_SOURCES] + [sketch_cpp]
    for source in sources:
        obj = workdir / (source.name + ".o")
        compiler = ["avr-gcc"] if source.suffix == ".c" else ["avr-g++", *cpp]
        warnings = ["-Wall", "-Wextra", "-Werror"] if source == sketch_cpp else []
        _run([*compiler, *flags, *warnings, "-c", str(source), "-o", str(obj)])
        objects.append(str(obj))
    elf = workdir / "ecg_ad8232.elf"
    _run(["avr-gcc", "-mmcu=atmega328p", "-Os", "-Wl,--gc-sections", "-o", str(elf), *objects])
    size = _run(["avr-size", "-A", str(elf)])
    sections = {line.split()[0]: int(line.split()[1]) for line in size.splitlines()
                if line.startswith(".")}
    flash = sections.get(".text", 0) + sections.get(".data", 0)
    build.ram_bytes = sections.get(".data", 0) + sections.get(".bss", 0)
    harness = workdir / "sim_harness"
    _run(["gcc", "-O2", "-o", str(harness), str(HARNESS), "-lsimavr", "-lm"])
    return elf, harness, flash


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class SimLog:
    """What the simulated board did: ADC starts, UART lines, pin and command events."""

    adc: list[tuple[int, int]] = field(default_factory=list)  # (cycle, millivolts)
    lines: list[tuple[int, str]] = field(default_factory=list)  # (cycle, text)
    leads_off_edges: list[tuple[int, int]] = field(default_factory=list)
    command_at: int | None = None


def simulate_board(elf: Path, harness: Path, rate: int, seconds: float,
                   lo_window: tuple[float, float] = (1e9, 1e9), command: str = "-") -> SimLog:
    """Run the firmware for ``seconds`` of simulated time and parse the harness log."""
    out = _run([str(harness), str(elf), str(rate), str(seconds), str(lo_window[0]),
                str(lo_window[1]), command])
    log = SimLog()
    for raw in out.splitlines():
        kind, _, rest = raw.partition(" ")
        if kind == "A":
            cycle, mv = rest.split()
            log.adc.append((int(cycle), int(mv)))
        elif kind == "U":
            cycle, _, text = rest.partition(" ")
            log.lines.append((int(cycle), text))
        elif kind == "L":
            cycle, state = rest.split()
            log.leads_off_edges.append((int(cycle), int(state)))
        elif kind == "C":
            log.command_at = int(rest.split()[0])
    return log


def analyse(log: SimLog, rate: int) -> dict:
    """Decode the log with the project's own parser and measure it against the input."""
    sys.path.insert(0, str(HERE.parents[2]))
    from acquisition.protocol import Garbled, Header, Sample, parse_line

    samples, headers, garbled = [], [], 0
    for cycle, text in log.lines:
        parsed = parse_line(text.encode("latin-1"))
        if isinstance(parsed, Sample):
            samples.append((cycle, parsed))
        elif isinstance(parsed, Header):
            headers.append((cycle, parsed, len(samples)))
        elif isinstance(parsed, Garbled):
            garbled += 1
    # The first conversion is the sketch's setup analogRead; conversion k + 1 is sample k.
    starts = [cycle for cycle, _ in log.adc[1:]]
    intervals = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    nominal = F_CPU / rate
    seqs = [sample.seq for _, sample in samples]
    value_errors, latencies, flag_errors = [], [], 0
    off_from, off_to = _window(log.leads_off_edges)
    for k, (cycle, sample) in enumerate(samples):
        if k + 1 >= len(log.adc):
            break
        start, mv = log.adc[k + 1]
        value_errors.append(abs(sample.value - mv * 1024 / 5000))
        latencies.append((cycle - start) / F_CPU)
        flag_errors += sample.leads_off != int(off_from <= start < off_to)
    total_bytes = sum(len(text) + 1 for _, text in log.lines)
    span_s = (log.lines[-1][0] - log.lines[0][0]) / F_CPU if len(log.lines) > 1 else 0.0
    return {
        "rate_hz": rate,
        "header_fs": headers[0][1].fs if headers else None,
        "samples": len(samples),
        "consecutive": seqs == list(range(len(seqs))),
        "garbled": garbled,
        "mean_interval_cycles": (starts[-1] - starts[0]) / (len(starts) - 1),
        "nominal_interval_cycles": nominal,
        "max_jitter_cycles": max(abs(i - nominal) for i in intervals),
        "max_value_error_counts": max(value_errors),
        "max_latency_ms": 1000 * max(latencies),
        "leads_off_samples": sum(sample.leads_off for _, sample in samples),
        "leads_off_flag_errors": flag_errors,
        "headers": [(header.seq, before) for _, header, before in headers],
        "serial_load": total_bytes * 10 / span_s / 115200 if span_s else 0.0,
    }


def _window(edges: list[tuple[int, int]]) -> tuple[int, int]:
    rise = next((cycle for cycle, state in edges if state == 1), 10**18)
    fall = next((cycle for cycle, state in edges if state == 0 and cycle > rise), 10**18)
    return rise, fall


def main() -> int:
    missing = missing_tools()
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        elf, harness, flash = build(Path(tmp))
        print(f"sketch: {flash} bytes of flash (Uno: 32,256), {build.ram_bytes} bytes of "
              f"static RAM (2,048)")
        for rate, seconds in ((250, 10.0), (360, 10.0), (500, 10.0)):
            log = simulate_board(elf, harness, rate, seconds, (2.0, 3.0), "?")
            result = analyse(log, rate)
            print(f"{rate} Hz, {seconds:g} s simulated: {result['samples']} samples, "
                  f"consecutive {result['consecutive']}, garbled {result['garbled']}, "
                  f"interval {result['mean_interval_cycles']:.3f} cycles "
                  f"(nominal {result['nominal_interval_cycles']:.3f}), "
                  f"jitter <= {result['max_jitter_cycles']:.0f} cycles, "
                  f"value error <= {result['max_value_error_counts']:.2f} counts, "
                  f"latency <= {result['max_latency_ms']:.2f} ms, "
                  f"serial load {100 * result['serial_load']:.0f} %, "
                  f"leads-off flag errors {result['leads_off_flag_errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
