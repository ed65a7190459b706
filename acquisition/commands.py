"""``ecg record`` and ``ecg simulate``: argument parsing, progress and messages.

Errors end as one ``ecg: error: ...`` line on stderr and a non-zero status, never a
traceback. Neither command imports JAX, Keras or Dash.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ecgcore.errors import EcgError


def _error(message: str) -> int:
    print(f"ecg: error: {message}", file=sys.stderr)
    return 2


def _note(message: str) -> None:
    print(f"ecg: {message}", file=sys.stderr, flush=True)


def _stop_on_signals(stop: threading.Event) -> None:
    # SIGTERM (and Ctrl-C) stop cleanly: the file is flushed and closed, links removed.
    def handler(signum, frame):  # noqa: ARG001
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def record_main(argv: list[str]) -> int:
    """``ecg record``: record a board (or the simulator) to the workbench CSV format."""
    parser = argparse.ArgumentParser(
        prog="ecg record",
        description="Record an Arduino + AD8232 running the ecg_ad8232 sketch "
        "(or `ecg simulate`) into a CSV file.",
    )
    parser.add_argument("--list", action="store_true", help="list the serial ports and exit")
    parser.add_argument("--port", help="serial port (/dev/ttyACM0, COM3, a simulator link)")
    parser.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="seconds of signal to record (default: until Ctrl-C)")
    parser.add_argument("--out", metavar="FILE.csv", help="output CSV file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--reconnect-timeout", type=float, default=30.0, metavar="S",
                        help="when the port vanishes, try to reopen it this long (0: don't)")
    parser.add_argument("--plain-rate", metavar="HZ|auto",
                        help="the board prints bare values, one per line (the AD8232 example "
                        "sketches), at this sampling rate, or 'auto': at the rate they "
                        "arrive, measured over the first 5 s; record them without sample "
                        "numbers")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)

    from acquisition import recorder
    from acquisition.protocol import parse_plain_rate

    if args.list:
        ports = recorder.list_ports()
        if not ports:
            print("no serial ports found (is the board plugged in?)")
        for device, description in ports:
            print(f"{device}\t{description}")
        return 0
    if not args.port or not args.out:
        return _error("ecg record needs --port PORT and --out FILE.csv (or --list)")
    if args.duration is not None and args.duration <= 0:
        return _error("--duration must be positive")
    try:
        plain_fs = parse_plain_rate(args.plain_rate)
    except ValueError as error:
        return _error(f"--plain-rate: {error}")

    stop = threading.Event()
    _stop_on_signals(stop)
    bar = None if args.quiet else _ProgressLine()
    try:
        summary = recorder.record(
            args.port,
            args.out,
            duration_s=args.duration,
            baud=args.baud,
            reconnect=args.reconnect_timeout > 0,
            reconnect_timeout_s=args.reconnect_timeout,
            overwrite=args.force,
            on_progress=bar.update if bar else None,
            on_message=bar.message if bar else _note,
            stop_event=stop,
            plain_fs=plain_fs,
        )
    except EcgError as error:
        if bar:
            bar.close()
        return _error(str(error))
    if bar:
        bar.close()
    _note(f"wrote {summary.path}: {summary.describe()}")
    for gap in summary.gaps[:20]:
        how = "about " if gap.estimated else ""
        _note(f"  gap at sample {gap.first}: {how}{gap.count} lost ({gap.cause})")
    if len(summary.gaps) > 20:
        _note(f"  ... and {len(summary.gaps) - 20} more gaps")
    return 0 if summary.stop_reason != "port lost" else 1


class _ProgressLine:
    """One updating status line on stderr; messages are printed above it.

    On a terminal the line is redrawn in place; into a file or pipe a plain line is
    written every 10 s instead, so logs stay readable.
    """

    def __init__(self, stream=None):
        import shutil

        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.width = shutil.get_terminal_size((100, 20)).columns or 100
        self.shown = False
        self.last_plain = 0.0

    def _show(self, text: str) -> None:
        import time

        if self.tty:
            self.stream.write("\r" + text[: self.width - 1] + "\x1b[K")
            self.shown = True
        elif time.monotonic() - self.last_plain >= 10.0:
            self.stream.write(f"ecg: {text}\n")
            self.last_plain = time.monotonic()
        self.stream.flush()

    def update(self, summary) -> None:
        if summary.fs is None:
            self._show("waiting for the board's header...")
            return
        rate = summary.samples_written / summary.wall_s if summary.wall_s > 0 else 0.0
        off = "  LEADS OFF" if summary.leads_off_now else ""
        self._show(
            f"{summary.samples_written} samples, {summary.duration_s:.1f} s, "
            f"{rate:.0f}/s, gaps {len(summary.gaps)} ({summary.lost_samples} lost), "
            f"garbled {summary.garbled_lines}{off}"
        )

    def message(self, text: str) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"ecg: {text}\n")
        self.shown = False
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
        self.shown = False


def simulate_main(argv: list[str]) -> int:
    """``ecg simulate``: play a recording as a fake board on a pseudo-terminal."""
    parser = argparse.ArgumentParser(
        prog="ecg simulate",
        description="Play a recording as a fake Arduino + AD8232 (same line protocol) on a "
        "pseudo-terminal; record it with `ecg record --port LINK`.",
    )
    parser.add_argument("--record", required=True, metavar="PATH",
                        help="recording to play (e.g. an MIT-BIH record path without extension)")
    parser.add_argument("--port-link", required=True, metavar="LINK",
                        help="symlink to create to the pseudo-terminal (the port to record)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1)")
    parser.add_argument("--noise", type=float, default=0.0, metavar="MV",
                        help="Gaussian noise standard deviation in mV")
    parser.add_argument("--drop-rate", type=float, default=0.0, metavar="P",
                        help="probability that a sample line is not sent")
    parser.add_argument("--garble-rate", type=float, default=0.0, metavar="P",
                        help="probability that a sample line is corrupted")
    parser.add_argument("--leads-off", type=float, default=0.0, metavar="PER_MIN",
                        help="leads-off episodes per minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=float, default=0.0, metavar="S", help="start at S s")
    parser.add_argument("--duration", type=float, metavar="S", help="play S s only")
    parser.add_argument("--lead", help="lead name or index (default: lead II where the "
                        "recording has it, else the first)")
    parser.add_argument("--plain", action="store_true",
                        help="print bare values, one per line, like the AD8232 example "
                        "sketches (no header, sample numbers or checksums): for "
                        "`ecg record --plain-rate`")
    parser.add_argument("--truth", metavar="FILE.json",
                        help="write what was sent, dropped and garbled (for tests)")
    args = parser.parse_args(argv)
    if os.name != "posix":
        return _error("ecg simulate needs POSIX pseudo-terminals (Linux, macOS); on Windows "
                      "use a virtual COM-port pair instead")

    from acquisition.simulator import simulate, write_truth

    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        summary = simulate(
            args.record, args.port_link, speed=args.speed, noise=args.noise,
            drop_rate=args.drop_rate, garble_rate=args.garble_rate, leads_off=args.leads_off,
            seed=args.seed, duration_s=args.duration, start_s=args.start, lead=args.lead,
            stop_event=stop, on_message=_note, plain=args.plain,
        )
    except EcgError as error:
        return _error(str(error))
    except OSError as error:
        return _error(f"{args.port_link}: {error.strerror or error}")
    if args.truth:
        write_truth(summary, args.truth)
    _note(
        f"{summary.ended}: {summary.lines_sent} lines sent, {len(summary.dropped)} dropped, "
        f"{len(summary.garbled)} garbled, max lag {summary.max_lag_s:.3f} s"
    )
    return 0


def main() -> int:
    """``python -m acquisition.commands record|simulate ...`` without the ``ecg`` entry point."""
    commands = {"record": record_main, "simulate": simulate_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        return _error("usage: python -m acquisition.commands record|simulate [options]")
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
