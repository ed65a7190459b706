"""Read ECG recordings from files and uploads into the one :class:`Recording` type.

Front doors
-----------
:func:`read` takes a path, :func:`read_bytes` one uploaded file, :func:`read_files` an
upload of several files (a WFDB set, a ``.zip`` of one, or a single text file).

Formats understood
------------------
- WFDB records (``.hea`` + ``.dat`` [+ ``.atr``]) at any rate and lead count, in physical
  units; ``.atr`` reference annotations; header comments in ``meta["comments"]``. The
  PhysioNet Challenges' ``.hea`` + ``.mat`` records are WFDB records too.
- EDF and EDF+ files (``.edf``, through wfdb's EDF reader; every signal at one rate),
  ``format="edf"``.
- Arduino/AD8232 text: one value per line, or whitespace-separated values on one line
  (``format="arduino-text"``).
- Delimited text (``format="csv"``): comma, semicolon, tab or whitespace, with or without a
  header line. Columns named like a time (``time``, ``t``, ``timestamp``, ``time_ms`` ...)
  give the rate; columns named like an index (``seq``, ``sample``, ``index`` ...) give none,
  but jumps in them mark lost samples (filled with NaN, listed in ``meta["gaps"]``); a
  ``leads_off`` column blanks its rows. Every other column is a lead.
- The Arduino IDE's ways of showing a sketch's output: the Serial Monitor with timestamps
  (``12:00:00.018 -> 512``: the prefix goes; the times, when the computer received each
  line, only suggest the rate in the message that asks for it, ``meta``
  ``["serial_monitor_rate_hz"]``) and the Serial Plotter's ``label:value`` pairs
  (``ECG:512,threshold:600``: one lead per label). A line ``!`` (what the AD8232 example
  sketch prints while a lead is off) is a missing sample counted in
  ``meta["leads_off_samples"]``.
- A block of ``Key,Value`` lines ended by a blank line (the Apple Watch ECG export:
  ``Sample Rate,512 hertz``, ``Lead,Lead I``, ``Unit,µV``; ``format="key-value-csv"``)
  is read as such a header.
- ``Key: value`` header lines before the data (PhysioZoo text, with its ``---`` block and
  ``Channels:`` list; ``format="physiozoo-text"``) and ``# key: value`` comment lines (the
  project's recorder CSV, ``format="recorder-csv"``); ``Fs``/``fs_hz`` there give the rate.

Policies
--------
- Size: one input (or all files of one WFDB record, or one upload) may not exceed
  :data:`MAX_FILE_BYTES`; larger inputs are refused from their size, before being read.
- Rate: from the file's header, else from a time column, else from the caller; never
  guessed (:class:`RateUnknownError`). A caller's rate that disagrees with the file's
  (by more than 0.1 % for a header, 1 % for a time column) is an error.
  ``Recording.fs_origin`` says which source was used. Every rate passes
  :func:`ecgcore.signal.check_rate`.
- Time columns: s, ms or µs, from the column name (``time_ms``, ``Time (s)``, ``millis``)
  else from the step size (the one unit giving 50 Hz-20 kHz). The rate is the slope of a
  line fitted to the times (rounded to a whole number of Hz when within 0.05 % of one);
  ``[h:]m:ss.mmm`` clock times and a second header line of units are understood
  (PhysioNet CSV exports). Times that drift more than half a sample off that line while
  every step stays within :data:`MAX_STEP_JITTER` of the median step (a loop timed by
  ``delay()``) have their values put on a uniform grid at the average rate by linear
  interpolation (``meta["resampled_from_time_column"]``); a step far from the median (a
  pause, lost samples) is an error. Without a header line, a first column rising in
  uniform steps is a time column, except one counting 1 by 1, which is an index. When a
  header gives the rate, a time column is ignored (recorder CSVs carry host clock times).
- Index columns: jumps mean lost samples: one NaN per missing sample keeps the timing,
  ``meta["gaps"] = [(first missing seq, n missing), ...]``; 16/32-bit counters may wrap;
  going back otherwise, or losing more samples than are present, is an error. Repeated
  numbers are dropped (``meta["duplicate_rows"]``). ``leads_off`` rows are NaN
  (``meta["leads_off_samples"]``).
- Notes: what the reader did that the user should know (samples put on a uniform grid,
  leads-off marks) is said in plain sentences in ``meta["notes"]``; ``analyze`` passes
  them on as warnings.
- Missing samples: ``nan``/``inf``/empty cells, sequence gaps and leads-off rows become
  NaN; ``meta["n_missing"]`` counts NaN values (all leads together). A lead with no finite
  sample, or more than half missing, is refused.
- Units: WFDB physical units. Text: the unit written in a column name (``ECG (mV)``) or
  header, else ``"adu"`` when every value is an integer (raw ADC counts), else ``"mV"``.

WFDB: one record per call (multi-segment records are refused); in an upload the ``.atr``
named like the header (or the only ``.atr``) is read; other files are listed in
``meta["ignored_files"]``.

Every failure is a :class:`ReadError` (or its subclasses :class:`RateUnknownError`,
:class:`InputTooLargeError`) with a one-line message. Upload names are never used as
paths, nothing is unpickled or executed.
"""

from __future__ import annotations

import io as _stdio
import math
import os
import re
import tempfile
import warnings
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from ecgcore.errors import EcgError, InputTooLargeError, RateUnknownError, ReadError, SignalError
from ecgcore.recording import Annotations, Recording
from ecgcore.signal import check_rate

MAX_FILE_BYTES = 256 * 1024 * 1024
"""Largest input accepted (bytes): one file, all files of one WFDB record, or one upload."""

MAX_ZIP_MEMBERS = 20
"""Most entries a ``.zip`` upload may hold."""

MIN_SAMPLES = 3
"""Fewest samples per lead a recording must have."""

MAX_MISSING_FRACTION = 0.5
"""A lead with more than this fraction of missing samples is refused."""

RATE_HINT = "give it with --fs HZ"

_WFDB_EXTS = (".hea", ".dat", ".mat", ".atr")
_ZIP_MAGIC = b"PK\x03\x04"
_EDF_MAGIC = b"0       "
_MISSING_TOKENS = {"", "nan", "-nan", "+nan", "na", "n/a", "null", "none", "inf", "+inf",
                   "-inf", "infinity", "-infinity", "+infinity", "#n/a"}
_INDEX_NAMES = {"seq", "sequence", "seqno", "seqnum", "sample", "samples", "sampleno",
                "samplenum", "samplenumber", "sampleindex", "index", "idx", "no", "nr", "#",
                "count", "counter"}
_TIME_WORDS = {"t", "time", "times", "timestamp", "ts", "elapsed", "sec", "secs", "second",
               "seconds", "s", "ms", "msec", "millis", "millisecond", "milliseconds", "us",
               "µs", "usec", "micros", "microsecond", "microseconds", "ns", "nsec", "nanos"}
_LEADS_OFF_NAMES = {"leadsoff", "leadoff", "lo", "loff"}
_RATE_KEYS = {"fs", "fshz", "samplingrate", "samplingratehz", "samplerate", "sampleratehz",
              "samplingfrequency", "samplingfrequencyhz", "sps"}
_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
# Bits per sample of the WFDB formats whose file length follows from the sample count.
_WFDB_BITS = {"8": Fraction(8), "16": Fraction(16), "24": Fraction(24), "32": Fraction(32),
              "61": Fraction(16), "80": Fraction(8), "160": Fraction(16), "212": Fraction(12),
              "310": Fraction(32, 3), "311": Fraction(32, 3)}


# --------------------------------------------------------------------------- front doors


def read(
    path: str | os.PathLike, fs: float | None = None, *, max_bytes: int = MAX_FILE_BYTES
) -> Recording:
    """Read a recording from a path.

    Parameters
    ----------
    path : str or os.PathLike
        A WFDB record (path without extension, or its ``.hea``/``.dat``/``.atr``), a text or
        CSV file, or a ``.zip`` holding one of these.
    fs : float or None
        Sampling rate in Hz, for files that do not state it. Must agree with the file's
        own rate when it has one.
    max_bytes : int
        Size limit of the input (all files of a WFDB record together).

    Returns
    -------
    Recording

    Raises
    ------
    ReadError, RateUnknownError, InputTooLargeError
        With a one-line message a user can act on.
    """
    try:
        path = Path(os.fspath(path))
    except TypeError:
        raise ReadError(f"{path!r} is not a file path") from None
    name = str(path)
    try:
        if path.is_dir():
            raise ReadError(f"{name} is a folder, not a recording file")
        suffix = path.suffix.lower()
        base = path.with_suffix("") if suffix in _WFDB_EXTS else path
        # A WFDB record is named without extension ("mitdb/100"); its header decides.
        if Path(str(base) + ".hea").is_file():
            return _read_wfdb(base, fs, max_bytes=max_bytes, source=name)
        if path.is_file() and suffix not in _WFDB_EXTS:
            _check_size(name, path.stat().st_size, max_bytes)
            data = path.read_bytes()
            if suffix == ".zip" or data[:4] == _ZIP_MAGIC:
                return read_files({path.name: data}, fs, max_bytes=max_bytes)
            return _read_one_file(path.name, data, fs, source=name)
        if suffix in _WFDB_EXTS and path.exists():
            raise ReadError(f"{name} belongs to a WFDB record but its header {base.name}.hea "
                            "is missing")
        if path.exists():
            raise ReadError(f"{name} is not a regular file")
        raise ReadError(f"{name}: no such file (nor a WFDB record {base.name}.hea)")
    except EcgError:
        raise
    except OSError as exc:
        raise ReadError(f"{name} could not be read: {exc.strerror or exc}") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise ReadError(f"{name!r} is not a usable path ({exc})") from None


def read_bytes(
    name: str, data: bytes, fs: float | None = None, *, max_bytes: int = MAX_FILE_BYTES
) -> Recording:
    """Read one uploaded file (text/CSV, or a ``.zip`` of a record) from its bytes.

    ``name`` is only used to describe the file and to pick the format; it is never a path.
    See :func:`read` for the parameters and errors.
    """
    name = _upload_name(name)
    data = _as_bytes(name, data)
    _check_size(name, len(data), max_bytes)
    lower = name.lower()
    if lower.endswith(".zip") or data[:4] == _ZIP_MAGIC:
        return read_files({name: data}, fs, max_bytes=max_bytes)
    if lower.endswith(_WFDB_EXTS):
        raise ReadError(f"{name} is part of a WFDB record: upload its .hea and its data file "
                        "(.dat, or .mat) together (or a .zip of them)")
    return _read_one_file(name, data, fs, source=name)


def read_files(
    files: dict[str, bytes], fs: float | None = None, *, max_bytes: int = MAX_FILE_BYTES
) -> Recording:
    """Read an upload of several files: a WFDB set, a ``.zip`` of one, or one text file.

    Parameters
    ----------
    files : dict of str to bytes
        Upload name -> content. Names only identify files (``100.hea``, ``100.dat``); they
        are never used as filesystem paths.
    fs, max_bytes
        As in :func:`read`; ``max_bytes`` bounds the whole upload (unpacked, for a zip).

    Returns
    -------
    Recording
    """
    if not isinstance(files, dict) or not files:
        raise ReadError("nothing was uploaded")
    clean: dict[str, bytes] = {}
    total = 0
    for raw_name, data in files.items():
        name = _upload_name(raw_name)
        data = _as_bytes(name, data)
        total += len(data)
        _check_size("the upload", total, max_bytes)
        if name in clean:
            raise ReadError(f"two uploaded files are both named {name}")
        clean[name] = data
    source = ", ".join(sorted(clean))
    if len(clean) == 1:
        (name, data), = clean.items()
        if name.lower().endswith(".zip") or data[:4] == _ZIP_MAGIC:
            clean = _unzip(name, data, max_bytes)
            source = name
    return _read_set(clean, fs, max_bytes=max_bytes, source=source)


# --------------------------------------------------------------------------- helpers


def output_stem(source: str) -> str:
    """A file-name stem for what is written about a recording (``ecg analyze --json-dir``,
    the record view's downloads): the last part of its source, with anything but letters,
    digits, ``.``, ``_`` and ``-`` replaced by ``_``.

    Examples
    --------
    >>> output_stem("/data/mitdb/201")
    '201'
    >>> output_stem("ECG exp (1).TXT")
    'ECG_exp_1_.TXT'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(source)).name)
    return "recording" if name.strip(".") == "" else name


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise InputTooLargeError(
            f"{name} is {size / 2**20:.1f} MiB, above the {max_bytes / 2**20:.0f} MiB limit "
            "for one input"
        )


def _as_bytes(name: str, data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise ReadError(f"the content of {name} is not bytes")


def _safe_member_name(name: str, what: str) -> str:
    """Return the base name of an upload or zip member, refusing path tricks."""
    if not isinstance(name, str) or not name.strip():
        raise ReadError(f"a {what} has no name")
    parts = re.split(r"[\\/]+", name)
    if (
        name.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", name)
        or any(part == ".." for part in parts)
        or "\x00" in name
    ):
        raise ReadError(f"{what} {name!r} has an unsafe path (absolute or with '..'); refused")
    return parts[-1] if parts[-1] else (parts[-2] if len(parts) > 1 else name)


def _upload_name(name: str) -> str:
    return _safe_member_name(name, "uploaded file")


def _unzip(name: str, data: bytes, max_bytes: int) -> dict[str, bytes]:
    """Unpack a zip upload in memory, bounded in member count, names and size."""
    try:
        archive = zipfile.ZipFile(_stdio.BytesIO(data))
        infos = archive.infolist()
    except Exception as exc:  # zipfile raises several types on corrupt archives
        raise ReadError(f"{name} is not a readable zip file ({_short(exc)})") from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ReadError(f"{name} holds {len(infos)} entries; at most {MAX_ZIP_MEMBERS} are "
                        "accepted (zip one record only)")
    out: dict[str, bytes] = {}
    total = 0
    for info in infos:
        base = _safe_member_name(info.filename, f"zip member of {name}")
        if info.is_dir() or info.filename.startswith("__MACOSX/") or base.startswith("._") \
                or base == ".DS_Store":
            continue
        if base.lower().endswith(".zip"):
            raise ReadError(f"{name} contains another zip ({base}); nested zips are refused")
        if info.flag_bits & 0x1:
            raise ReadError(f"{name} is encrypted; upload an unencrypted zip")
        total += info.file_size
        _check_size(f"{name} unpacked", total, max_bytes)
        room = max_bytes - (total - info.file_size)
        try:
            with archive.open(info) as member:
                # Read at most one byte past the room left: a member lying about its size
                # (a zip bomb) is stopped there instead of being inflated whole.
                content = member.read(room + 1)
        except Exception as exc:
            raise ReadError(f"{base} in {name} could not be unpacked ({_short(exc)})") from None
        if len(content) > room:
            raise InputTooLargeError(f"{name} unpacks to more than the "
                                     f"{max_bytes / 2**20:.0f} MiB limit")
        total += len(content) - info.file_size
        if content[:4] == _ZIP_MAGIC:
            raise ReadError(f"{name} contains another zip ({base}); nested zips are refused")
        if base in out:
            raise ReadError(f"{name} holds two files named {base}")
        out[base] = content
    if not out:
        raise ReadError(f"{name} holds no files")
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def _read_set(files: dict[str, bytes], fs: float | None, *, max_bytes: int,
              source: str) -> Recording:
    """Read a set of named files: one WFDB record, or one text file."""
    headers = [n for n in files if n.lower().endswith(".hea")]
    if len(headers) > 1:
        raise ReadError(f"the upload holds {len(headers)} WFDB headers "
                        f"({', '.join(sorted(headers))}); upload one record at a time")
    if headers:
        return _read_wfdb_set(headers[0], files, fs, max_bytes=max_bytes, source=source)
    if any(n.lower().endswith(".dat") for n in files):
        raise ReadError("a WFDB .dat file needs its .hea header: upload both")
    if len(files) == 1:
        (name, data), = files.items()
        return _read_one_file(name, data, fs, source=source)
    raise ReadError(f"the upload holds {len(files)} files ({', '.join(sorted(files))}) but no "
                    "WFDB header: upload one text file, or one WFDB record (.hea + .dat)")


# --------------------------------------------------------------------------- rates


def _checked_rate(fs: object, what: str) -> float:
    try:
        return check_rate(fs)
    except SignalError as exc:
        raise ReadError(f"{what}: {exc}") from None


def _resolve_rate(file_fs: float | None, origin: str, caller_fs: float | None,
                  name: str, why_unknown: str = "") -> tuple[float, str]:
    """Pick the rate from the file or the caller and say where it came from."""
    caller = None if caller_fs is None else _checked_rate(caller_fs, "the given rate")
    if file_fs is not None:
        file_fs = _checked_rate(file_fs, f"the rate in {name} ({origin})")
        # A header states the rate exactly; a time column only estimates it.
        tol = 1e-3 if origin == "header" else 1e-2
        if caller is not None and not math.isclose(caller, file_fs, rel_tol=tol):
            raise ReadError(f"the given rate {caller:g} Hz disagrees with the {file_fs:g} Hz "
                            f"of {name} (from its {origin}); leave the rate out or fix the file")
        return file_fs, origin
    if caller is None:
        raise RateUnknownError(f"the sampling rate is not in {name}{why_unknown}; {RATE_HINT} "
                               "(it is never guessed)")
    return caller, "caller"


# --------------------------------------------------------------------------- finishing


def _finish(signal: np.ndarray, fs: float, leads: list[str], units: list[str], *,
            source: str, fmt: str, fs_origin: str, meta: dict,
            annotations: Annotations | None = None) -> Recording:
    """Apply the shared checks (length, missing samples) and build the Recording."""
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    n = signal.shape[0]
    if n < MIN_SAMPLES:
        raise ReadError(f"{source} holds {n} sample(s) per lead; at least {MIN_SAMPLES} are "
                        "needed")
    missing = ~np.isfinite(signal)
    if missing.any():
        signal = np.where(missing, np.nan, signal)
        for k, lead in enumerate(leads):
            n_bad = int(missing[:, k].sum())
            if n_bad == n:
                raise ReadError(f"lead {lead} of {source} has no finite sample")
            if n_bad > MAX_MISSING_FRACTION * n:
                raise ReadError(f"lead {lead} of {source} misses {n_bad} of {n} samples "
                                f"(more than {MAX_MISSING_FRACTION:.0%}); refused")
    meta["n_missing"] = int(missing.sum())
    return Recording(signal=signal, fs=float(fs), leads=list(leads), units=list(units),
                     source=source, annotations=annotations, fs_origin=fs_origin,
                     format=fmt, meta=meta)


# --------------------------------------------------------------------------- WFDB


def _record_line(text: str) -> tuple[list[str], int]:
    """The tokens of a header's record line and its index among the lines."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.split(), i
    raise ReadError("the WFDB header has no record line")


def _header_rate(tokens: list[str], name: str) -> float | None:
    """The rate written on a header's record line, or None when the line has none."""
    if len(tokens) < 3:
        return None
    match = re.match(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", tokens[2])
    if not match:
        raise ReadError(f"the WFDB header {name} has an unreadable sampling rate "
                        f"{tokens[2]!r}")
    return float(match.group(0))


def _decode_header(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_wfdb(base: Path, fs: float | None, *, max_bytes: int, source: str,
               record_name: str | None = None,
               shown: dict[str, str] | None = None) -> Recording:
    """Read a WFDB record from disk (``base`` is the path without extension).

    ``record_name`` and ``shown`` (safe file name -> uploaded name) make messages about
    an upload name the user's files rather than the fixed names they were written under.
    """
    import wfdb  # heavy-ish import, only when a WFDB record is read

    folder, rec = base.parent, base.name
    label = record_name or rec
    hea = folder / f"{rec}.hea"
    hea_size = hea.stat().st_size
    _check_size(f"the header {label}.hea", hea_size, max_bytes)
    if hea_size == 0:
        raise ReadError(f"the WFDB header {label}.hea is empty")
    text = _decode_header(hea.read_bytes())
    if "\x00" in text:
        raise ReadError(f"{label}.hea is not a WFDB header (binary data)")
    tokens, rec_index = _record_line(text)
    if "/" in tokens[0]:
        raise ReadError(f"{label} is a multi-segment WFDB record; these are not supported")
    # wfdb spends minutes on a header declaring millions of signals it does not describe.
    described = sum(1 for line in text.splitlines()[rec_index + 1:]
                    if line.strip() and not line.lstrip().startswith("#"))
    try:
        declared = int(tokens[1])
    except (IndexError, ValueError):
        raise ReadError(f"the record line of {label}.hea does not give a number of signals") \
            from None
    if not 0 < declared <= described:
        raise ReadError(f"{label}.hea declares {declared} signal(s) but describes {described}")
    header_fs = _header_rate(tokens, f"{label}.hea")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises many types on malformed headers
        raise ReadError(f"the WFDB header {label}.hea could not be parsed ({_short(exc)})") \
            from None
    if not header.n_sig:
        raise ReadError(f"the WFDB header {label}.hea declares no signals")
    file_fs, origin = _resolve_rate(header_fs, "header", fs, f"{label}.hea",
                                    " (its record line has no rate)")

    # Size and length checks before anything is read whole.
    total = hea_size
    files: dict[str, list[int]] = {}
    for k, file_name in enumerate(header.file_name):
        files.setdefault(file_name, []).append(k)
    for file_name, sigs in files.items():
        if file_name == "~":
            continue
        user_name = (shown or {}).get(file_name, file_name)
        if Path(file_name).name != file_name:
            raise ReadError(f"{label}.hea names the data file {file_name!r} in another folder; "
                            "refused")
        data_path = folder / file_name
        if not data_path.is_file():
            raise ReadError(f"the data file {user_name} named by {label}.hea is missing")
        size = data_path.stat().st_size
        total += size
        _check_size(f"the record {label}", total, max_bytes)
        fmt = str(header.fmt[sigs[0]])
        bits = _WFDB_BITS.get(fmt)
        if bits is None:
            continue  # compressed or unusual formats: wfdb itself checks them
        offset = int(header.byte_offset[sigs[0]] or 0) if header.byte_offset else 0
        per_frame = sum(int((header.samps_per_frame or [1] * header.n_sig)[k] or 1)
                        for k in sigs)
        frames = math.floor(Fraction(max(size - offset, 0) * 8) / (bits * per_frame))
        if frames == 0:
            raise ReadError(f"the data file {user_name} of {label} holds no samples")
        if header.sig_len and frames < header.sig_len:
            raise ReadError(
                f"the data file {user_name} is shorter than its header says: it holds "
                f"{frames} samples per lead, {label}.hea declares {header.sig_len} "
                "(truncated download?)"
            )
    # The float64 signal must fit in memory too (compressed formats escape the checks above).
    n_values = int(header.sig_len or 0) * sum(int(s or 1) for s in
                                              (header.samps_per_frame or [1] * header.n_sig))
    if n_values * 8 > 4 * max_bytes:
        raise InputTooLargeError(f"the record {label} declares {n_values} samples, more than "
                                 "the size limit allows")
    atr = folder / f"{rec}.atr"
    has_atr = atr.is_file()
    if has_atr:
        total += atr.stat().st_size
        _check_size(f"the record {label}", total, max_bytes)

    try:
        record = wfdb.rdrecord(str(base), physical=True)
    except Exception as exc:
        raise ReadError(f"the WFDB record {label} could not be read ({_short(exc)})") from None
    if record.p_signal is None:
        raise ReadError(f"the WFDB record {label} has no signal")
    annotations = None
    if has_atr:
        try:
            ann = wfdb.rdann(str(base), "atr")
        except Exception as exc:
            raise ReadError(f"the annotation file {label}.atr could not be read "
                            f"({_short(exc)})") from None
        annotations = Annotations(
            sample=np.asarray(ann.sample, dtype=np.int64),
            symbol=[str(s) for s in ann.symbol],
            aux_note=[str(a or "").rstrip("\x00")
                      for a in (ann.aux_note or [""] * len(ann.sample))],
        )
    n_sig = record.p_signal.shape[1]
    leads = [str(s) if s else f"lead{k + 1}" for k, s in
             enumerate(record.sig_name or [None] * n_sig)]
    units = [str(u) if u else "mV" for u in (record.units or [None] * n_sig)]
    meta = {
        "comments": [str(c) for c in (record.comments or [])],
        "record_name": label,
        "fmt": [str(f) for f in (record.fmt or [])],
    }
    if record.base_time is not None:
        meta["base_time"] = str(record.base_time)
    if record.base_date is not None:
        meta["base_date"] = str(record.base_date)
    return _finish(record.p_signal, file_fs, leads, units, source=source, fmt="wfdb",
                   fs_origin=origin, meta=meta, annotations=annotations)


def _read_wfdb_set(hea_name: str, files: dict[str, bytes], fs: float | None, *,
                   max_bytes: int, source: str) -> Recording:
    """Write an uploaded WFDB set under fixed names into a fresh folder and read it."""
    text = _decode_header(files[hea_name])
    if not text.strip():
        raise ReadError(f"the WFDB header {hea_name} is empty")
    if "\x00" in text:
        raise ReadError(f"{hea_name} is not a WFDB header (binary data)")
    lines = text.splitlines()
    tokens, rec_index = _record_line(text)
    rec_name = tokens[0]
    if "/" in rec_name:
        raise ReadError(f"{hea_name} is a multi-segment WFDB record; these are not supported")
    try:
        n_sig = int(tokens[1])
    except (IndexError, ValueError):
        raise ReadError(f"the record line of {hea_name} does not give a number of signals") \
            from None
    if not 0 < n_sig <= 1000:
        raise ReadError(f"{hea_name} declares {n_sig} signals; refused")
    # Rewrite the record name and every data file name to fixed safe names.
    lines[rec_index] = re.sub(r"^\s*\S+", "record", lines[rec_index], count=1)
    renamed: dict[str, str] = {}
    seen = 0
    for i in range(rec_index + 1, len(lines)):
        if seen == n_sig:
            break
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        seen += 1
        file_name = stripped.split()[0]
        if file_name == "~":
            continue
        if file_name not in files:
            raise ReadError(f"{hea_name} names the data file {file_name}, which was not "
                            "uploaded")
        if file_name not in renamed:
            renamed[file_name] = f"record{len(renamed) or ''}.dat"
        lines[i] = re.sub(r"^\s*\S+", renamed[file_name], lines[i], count=1)
    atr_names = [n for n in files if n.lower().endswith(".atr")]
    stem = hea_name[: -len(".hea")]
    atr = f"{stem}.atr" if f"{stem}.atr" in files else (atr_names[0] if len(atr_names) == 1
                                                        else None)
    with tempfile.TemporaryDirectory(prefix="ecg-upload-") as tmp:
        folder = Path(tmp)
        (folder / "record.hea").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for original, safe in renamed.items():
            (folder / safe).write_bytes(files[original])
        if atr is not None:
            (folder / "record.atr").write_bytes(files[atr])
        recording = _read_wfdb(folder / "record", fs, max_bytes=max_bytes, source=source,
                               record_name=rec_name,
                               shown={safe: original for original, safe in renamed.items()})
    ignored = sorted(set(files) - {hea_name, *renamed} - ({atr} if atr else set()))
    if ignored:
        recording.meta["ignored_files"] = ignored
    return recording


# --------------------------------------------------------------------------- text


def _decode_text(name: str, data: bytes) -> str:
    """Decode uploaded text (UTF-8/16 with or without BOM, else Latin-1); refuse binary."""
    if not data.strip():
        raise ReadError(f"{name} is empty")
    encoding = None
    if data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif len(data) >= 4 and b"\x00" in data[:4096]:
        head = data[:4096]
        odd_nuls, even_nuls = head[1::2].count(0), head[0::2].count(0)
        half = len(head) // 2
        if odd_nuls > 0.4 * half and even_nuls < 0.05 * half:
            encoding = "utf-16-le"
        elif even_nuls > 0.4 * half and odd_nuls < 0.05 * half:
            encoding = "utf-16-be"
    try:
        text = data.decode(encoding or "utf-8")
    except UnicodeDecodeError:
        if encoding is not None:
            raise ReadError(f"{name} is not valid {encoding} text") from None
        text = data.decode("latin-1")
    sample = text[:65536]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if "\x00" in sample or controls > 0.01 * len(sample):
        raise ReadError(f"{name} is binary data, not a text ECG file (a WFDB .dat needs its "
                        ".hea; upload both)")
    return text


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9#µ]", "", name.lower())


def _is_number(token: str, decimal: str = ".") -> bool:
    token = token.strip().strip('"').strip("'")
    if decimal == ",":
        token = token.replace(",", ".")
    try:
        float(token)
    except ValueError:
        return token.lower() in _MISSING_TOKENS
    return True


def _time_unit(name: str) -> str | None:
    """The time unit written in a column name (or PhysioZoo unit), if any."""
    words = re.findall(r"[a-zµ]+", name.lower())
    for word in words:
        if word in {"ms", "msec", "millis", "millisecond", "milliseconds"}:
            return "ms"
        if word in {"us", "µs", "usec", "micros", "microsecond", "microseconds"}:
            return "us"
        if word in {"ns", "nsec", "nanos", "nanosecond", "nanoseconds"}:
            return "ns"
    for word in words:
        if word in {"s", "sec", "secs", "second", "seconds"}:
            return "s"
    return None


def _is_time_name(name: str) -> bool:
    # 'time', 'millis', 'time_ms'... or a name with the word 'timestamp' in it
    # ('sensor timestamp [ns]', 'Phone timestamp': Polar Sensor Logger).
    words = re.findall(r"[a-zµ]+", name.lower())
    return (bool(words) and (words[0] in _TIME_WORDS or "timestamp" in words)
            and not re.search(r"\d", name))


def _signal_unit(name: str) -> str | None:
    """The amplitude unit written in a column name or header value, if any."""
    low = name.lower()
    for pattern, unit in ((r"\b(mv|millivolts?)\b", "mV"), (r"\b(uv|µv|microvolts?)\b", "uV"),
                          (r"\b(v|volts?)\b", "V"), (r"\b(adu|adc|counts?|raw)\b", "adu")):
        if re.search(pattern, low):
            return unit
    return None


_KEY = re.compile(r"[A-Za-z_][\w .()/-]{0,40}")


def _key_value(line: str) -> tuple[str, str] | None:
    """Split ``Key: value`` (key a short name starting with a letter), else None.

    Done with ``find`` rather than one regex so a long line costs linear time.
    """
    colon = line.find(":", 0, 64)
    if colon < 0:
        return None
    key = line[:colon].strip()
    if not _KEY.fullmatch(key):
        return None
    return key, line[colon + 1:].strip()


def _parse_header_block(lines: list[str]) -> tuple[int, dict, list[str], list[dict]]:
    """Split leading metadata (``# key: value``, ``Key: value``, PhysioZoo ``---`` blocks).

    Returns the index of the first data (or column-header) line, the key/value pairs,
    free comment lines and PhysioZoo channel descriptions.
    """
    keys: dict[str, str] = {}
    comments: list[str] = []
    channels: list[dict] = []
    in_channels = False
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped == "---":
            i += 1
            continue
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            pair = _key_value(body)
            if pair and pair[1]:
                keys[pair[0]] = pair[1]
            elif body:
                comments.append(body)
            i += 1
            continue
        item = stripped.startswith("- ")
        pair = _key_value(stripped[2:] if item else stripped)
        if not pair:
            break
        key, value = pair
        if in_channels and (item or (channels and key.lower() in {"name", "unit", "enable",
                                                                  "type"})):
            if item or not channels:
                channels.append({})
            channels[-1][key.lower()] = value
        elif key.lower() == "channels" and not value:
            in_channels = True
        else:
            keys[key] = value
        i += 1
    return i, keys, comments, channels


def _sniff(sample: list[str]) -> tuple[str | None, str]:
    """Pick the delimiter (None = whitespace) and decimal mark from some data lines."""
    for sep in ("\t", ";", ","):
        counts = [line.count(sep) for line in sample]
        if counts and min(counts) > 0:
            mode = max(set(counts), key=counts.count)
            if counts.count(mode) >= 0.5 * len(counts):
                decimal = "."
                body = sample[1:] or sample  # the first line may be a header with dots
                if sep != "," and any("," in s for s in body) and not any(
                        "." in s for s in body):
                    decimal = ","
                return sep, decimal
    return None, "."


def _split(line: str, sep: str | None) -> list[str]:
    return line.split() if sep is None else [t.strip() for t in line.split(sep)]


def _floats(tokens: list[str], name: str, line_no: int) -> np.ndarray:
    """Tokens of one long line to floats; missing tokens to NaN; say where a bad one is."""
    try:
        return np.asarray(tokens, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(tokens))
    for k, token in enumerate(tokens):
        try:
            out[k] = float(token)
        except ValueError:
            if token.strip().lower() not in _MISSING_TOKENS:
                raise ReadError(f"line {line_no} of {name}: value {k + 1} ({token[:30]!r}) "
                                "is not a number") from None
            out[k] = np.nan
    return out


_MONITOR_LINE = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})\.(\d{1,3})\s*->\s?(.*)$")
_PLOTTER_PAIR = re.compile(r"^([A-Za-z_][\w.-]{0,40}):\s*([-+]?(?:\d+\.?\d*|\.\d+)"
                           r"(?:[eE][-+]?\d+)?)$")
_LEADS_OFF_MARK = "!"


def _serial_monitor_lines(lines: list[str]) -> tuple[list[str], float | None]:
    """Lines copied from the Arduino IDE's Serial Monitor with timestamps shown.

    ``12:00:00.018 -> 512``: the prefix goes. The times are when the computer received
    each line (USB delivers in bursts), not when it was sampled, so they only suggest the
    average rate, returned for the message that asks for it (None when the lines are not
    of this kind).
    """
    body = [line for line in lines[:200] if line.strip()][:50]
    if not body or sum(bool(_MONITOR_LINE.match(line)) for line in body) < 0.9 * len(body):
        return lines, None
    out, times = [], []
    for line in lines:
        match = _MONITOR_LINE.match(line)
        if match is None:
            out.append(line)
            continue
        h, m, sec, frac, rest = match.groups()
        times.append(int(h) * 3600 + int(m) * 60 + int(sec) + int(frac) / 10 ** len(frac))
        out.append(rest)
    t = np.asarray(times)
    t = t + 86400.0 * np.cumsum(np.diff(t, prepend=t[:1]) < -43200)  # past midnight
    span = float(t[-1] - t[0]) if t.size > 1 else 0.0
    return out, (t.size - 1) / span if span > 0 else None


def _comma_header_lines(lines: list[str]) -> tuple[list[str], bool]:
    """A leading block of ``Key,Value`` lines ended by a blank line, as the Apple Watch
    ECG export (Health app) writes it (``Sample Rate,512 hertz``, ``Unit,µV``), turned
    into ``Key: Value`` lines for :func:`_parse_header_block`. Needs at least three such
    lines, so a two-column table's header line is never taken for one."""
    import csv

    block = []
    for i, line in enumerate(lines[:64]):
        if not line.strip():
            break
        if len(line) > 256:  # header lines are short; leave long ones to the data parser
            return lines, False
        row = next(csv.reader([line]), [])
        if len(row) not in (1, 2) or not _KEY.fullmatch(row[0].strip()) or ":" in row[0]:
            return lines, False
        block.append((i, row[0].strip(), row[1].strip() if len(row) == 2 else ""))
    else:
        return lines, False
    if len(block) < 3 or i + 1 >= len(lines):
        return lines, False
    out = list(lines)
    for j, key, value in block:
        out[j] = f"{key}: {value}" if value else "#"
    return out, True


def _serial_plotter_lines(lines: list[str], name: str) -> list[str]:
    """Lines written for the Arduino IDE's Serial Plotter: ``ECG:512`` or
    ``ECG:512,threshold:600`` (comma, space or tab between the pairs).

    Becomes a header line of the labels and rows of values. Returns the lines unchanged
    when the first data lines are not all such pairs with a label seen on most of them.
    """
    def is_data(line: str) -> bool:
        stripped = line.strip()
        return bool(stripped) and stripped != _LEADS_OFF_MARK and not stripped.startswith("#")

    def pairs(line: str) -> list[tuple[str, str]] | None:
        found = []
        for token in re.split(r"[,\t ]+(?=[A-Za-z_])", line.strip()):
            match = _PLOTTER_PAIR.match(token.strip())
            if match is None:
                return None
            found.append(match.groups())
        return found

    head = [pairs(line) for line in [line for line in lines[:200] if is_data(line)][:50]]
    if len(head) < 3 or not all(head) or len({h[0][0] for h in head}) > 1:
        return lines
    labels = [label for label, _ in head[0]]
    data = [(i, line) for i, line in enumerate(lines) if is_data(line)]
    out = list(lines)
    first = data[0][0]
    for i, line in data:
        found = pairs(line)
        if found is None or [label for label, _ in found] != labels:
            raise ReadError(f"line {i + 1} of {name} does not have the labels of the first "
                            f"Serial Plotter line ({', '.join(labels)})")
        out[i] = ",".join(value for _, value in found)
    out.insert(first, ",".join(labels))
    return out


def _read_one_file(name: str, data: bytes, fs: float | None, *, source: str) -> Recording:
    """An EDF file (by its name or its header's first bytes), else text."""
    if name.lower().endswith(".edf") or data[:8] == _EDF_MAGIC:
        return _read_edf(name, data, fs, source=source)
    return _read_text(name, data, fs, source=source)


def _read_edf(name: str, data: bytes, fs: float | None, *, source: str) -> Recording:
    """An EDF or EDF+ file, through wfdb's EDF reader (signals at several rates:
    :func:`_read_edf_ecg_rate`)."""
    from wfdb.io.convert.edf import read_edf

    if data[:8] != _EDF_MAGIC:
        raise ReadError(f"{name} is not an EDF file (its header does not start with "
                        "version 0)")
    header = _edf_header(data)
    if header is not None and len(set(header["spr"])) > 1:
        # A sleep study or a Holter export: the ECG beside slower signals (respiration,
        # oximetry), or an EDF+ annotation signal. wfdb averages every signal down to the
        # slowest rate (or fails), so the ECG leads are read here at their own rate.
        return _read_edf_ecg_rate(name, data, header, fs, source=source)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.edf"
        path.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                record = read_edf(str(path))
        except Exception as exc:  # a damaged header: wfdb raises many kinds
            raise ReadError(f"{name} could not be read as EDF ({_short(exc)})") from None
    frames = set(np.atleast_1d(record.samps_per_frame).tolist())
    if len(frames) > 1 or record.p_signal is None:
        raise ReadError(f"{name} could not be read as EDF (its signals' rates are unclear)")
    signal = np.asarray(record.p_signal, dtype=np.float64)
    file_fs = float(record.fs) * frames.pop()
    fs_value, origin = _resolve_rate(file_fs, "header", fs, name)
    units = [_signal_unit(str(u)) or str(u) for u in record.units]
    return _finish(signal, fs_value, list(record.sig_name), units, source=source,
                   fmt="edf", fs_origin=origin, meta={"comments": list(record.comments or [])})


_ECG_LABEL = re.compile(r"ECG|EKG|^(ML)?(I{1,3}|AV[RLF]|V[1-6])$|LEAD", re.IGNORECASE)
"""An EDF signal label that names an ECG lead (``ECG II``, ``EKG``, ``V1``, ``Lead I``...)."""


def _edf_header(data: bytes) -> dict | None:
    """The fields of an EDF header (per signal: ``label``, ``unit``, ``spr`` samples per
    data record, physical and digital ``pmin``/``pmax``/``dmin``/``dmax``; and ``ns``,
    ``n_records``, ``record_s``), or None when it is damaged."""
    try:
        ns = int(data[252:256])
        out: dict = {"ns": ns, "n_records": int(data[236:244]),
                     "record_s": float(data[244:252])}
        offset = 256
        for key, width in (("label", 16), ("transducer", 80), ("unit", 8), ("pmin", 8),
                           ("pmax", 8), ("dmin", 8), ("dmax", 8), ("prefilter", 80),
                           ("spr", 8), ("reserved", 32)):
            out[key] = [data[offset + i * width: offset + (i + 1) * width]
                        .decode("latin-1").strip() for i in range(ns)]
            offset += width * ns
        out["spr"] = [int(v) for v in out["spr"]]
        for key in ("pmin", "pmax", "dmin", "dmax"):
            out[key] = np.array(out[key], dtype=np.float64)
    except ValueError:
        return None
    if ns < 1 or not out["record_s"] > 0 or min(out["spr"]) < 1:
        return None
    return out


def _read_edf_ecg_rate(name: str, data: bytes, header: dict, fs: float | None, *,
                       source: str) -> Recording:
    """An EDF file whose signals have different rates (``header``: :func:`_edf_header`):
    the signals at the rate of its first ECG lead (by label; else of its first signal),
    the others left out with a note.
    """
    ns, n_records, record_s = header["ns"], header["n_records"], header["record_s"]
    spr, labels = header["spr"], header["label"]
    pmin, pmax, dmin, dmax = (header[k] for k in ("pmin", "pmax", "dmin", "dmax"))
    header_bytes = 256 * (ns + 1)
    record_bytes = 2 * sum(spr)
    available = (len(data) - header_bytes) // record_bytes
    n_records = available if n_records < 0 else min(n_records, available)
    if n_records < 1:
        raise ReadError(f"{name} holds no data record")
    digital = np.frombuffer(data, dtype="<i2", count=n_records * sum(spr),
                            offset=header_bytes).reshape(n_records, sum(spr))
    signals = [i for i in range(ns) if labels[i] != "EDF Annotations"]
    if not signals:
        raise ReadError(f"{name} holds annotations only, no signal")
    rates = {i: spr[i] / record_s for i in signals}
    ecg = [i for i in signals if _ECG_LABEL.search(labels[i])]
    rate = rates[(ecg or signals)[0]]
    kept = [i for i in signals if rates[i] == rate]
    starts = np.concatenate([[0], np.cumsum(spr)])
    columns = []
    for i in kept:
        gain = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i]) if dmax[i] != dmin[i] else 1.0
        values = digital[:, starts[i]:starts[i + 1]].astype(np.float64).ravel()
        columns.append(pmin[i] + (values - dmin[i]) * gain)
    left = [f"{labels[i]} ({rates[i]:g} Hz)" for i in signals if i not in kept]
    fs_value, origin = _resolve_rate(rate, "header", fs, name)
    units = [_signal_unit(header["unit"][i]) or header["unit"][i] for i in kept]
    meta = {"notes": [f"signals at other rates than the ECG's {rate:g} Hz left out: "
                      + ", ".join(left)]} if left else {}
    return _finish(np.stack(columns, axis=1), fs_value, [labels[i] for i in kept],
                   units, source=source, fmt="edf", fs_origin=origin, meta=meta)


def _read_text(name: str, data: bytes, fs: float | None, *, source: str) -> Recording:
    """Read any of the text formats (see the module docstring)."""
    text = _decode_text(name, data)
    lines, comma_header = _comma_header_lines(text.splitlines())
    lines, monitor_fs = _serial_monitor_lines(lines)
    lines = _serial_plotter_lines(lines, name)
    # The AD8232 example sketch prints '!' instead of a sample while a lead is off.
    n_marked_off = (sum(line.strip() == _LEADS_OFF_MARK for line in lines)
                    if _LEADS_OFF_MARK in text else 0)
    if n_marked_off:
        lines = ["nan" if line.strip() == _LEADS_OFF_MARK else line for line in lines]
    start, keys, comments, channels = _parse_header_block(lines)
    meta: dict = {}
    if monitor_fs is not None:
        meta["serial_monitor_rate_hz"] = round(monitor_fs, 2)
    if n_marked_off:
        meta["leads_off_samples"] = n_marked_off
        meta["notes"] = [f"{n_marked_off} line(s) '!' (a lead off, as the AD8232 example "
                         "sketch marks it) are missing samples"]
    if comments:
        meta["comments"] = comments
    if keys:
        meta["header"] = dict(keys)
    norm_keys = {_norm(k): v for k, v in keys.items()}
    header_fs = None
    for key, value in norm_keys.items():
        if key in _RATE_KEYS:
            match = re.match(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value)
            if not match:
                raise ReadError(f"the sampling rate {value!r} in the header of {name} is not "
                                "a number")
            header_fs = float(match.group(0))
            break
    if norm_keys.get("format", "").startswith("ecg-workbench-recorder") or (
            "fshz" in norm_keys and any(k in norm_keys for k in ("device", "firmware"))):
        fmt = "recorder-csv"
    elif comma_header:
        fmt = "key-value-csv"
    elif header_fs is not None or channels:
        fmt = "physiozoo-text"
    else:
        fmt = None

    # Data lines with their 1-based line numbers (blank and comment lines dropped).
    numbered = [(i + 1, line) for i, line in enumerate(lines[start:], start)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise ReadError(f"{name} holds no samples")
    sep, decimal = _sniff([line for _, line in numbered[:21]])
    first = _split(numbered[0][1], sep)
    names: list[str] | None = None
    unit_row: list[str] | None = None
    # A header line is mostly words; a data line with one bad cell is not a header.
    head = first[:1000]
    if sum(not _is_number(t, decimal) for t in head) >= len(head) / 2:
        names = [t.strip().strip('"').strip("'") for t in first]
        numbered = numbered[1:]
        if not numbered:
            raise ReadError(f"{name} has a column header but no samples")
        if sep is None and len(names) > 1 and len(_split(numbered[0][1], None)) == 1:
            names = [" ".join(names)]  # a one-column file whose header has spaces
        # A second header line of units ('hh:mm:ss.mmm','mV','mV' in PhysioNet exports).
        second = _split(numbered[0][1], sep)
        if len(second) == len(names) and all(
                not _is_number(t, decimal) and (_signal_unit(t) or _time_unit(t) or ":" in t)
                for t in second):
            unit_row = [t.strip().strip('"').strip("'") for t in second]
            meta["unit_row"] = unit_row
            numbered = numbered[1:]
            if not numbered:
                raise ReadError(f"{name} has a column header but no samples")
    n_fields = [len(_split(line, sep)) for _, line in numbered[:50]]
    if names and max(n_fields) < len(names):
        raise ReadError(f"the header line of {name} names {len(names)} columns but its rows "
                        f"have {max(n_fields)} (a column name with spaces in a space-separated "
                        "file?)")

    # One long line of values, or ragged whitespace-separated values: a flat sequence.
    if sep is None and names is None and (len(numbered) == 1 or len(set(n_fields)) > 1):
        parts = [_floats(line.split(), name, no) for no, line in numbered]
        values = np.concatenate(parts)[:, None]
        col_names: list[str | None] = [None]
    else:
        clock = tuple(k for k, n in enumerate(names or []) if _is_time_name(n))
        values = _parse_table(name, numbered, sep, decimal,
                              len(names) if names else max(n_fields), clock)
        col_names = list(names) if names else [None] * values.shape[1]
    ncols = values.shape[1]

    # PhysioZoo channel list: names, units, types, enable flags per column.
    chan_info: list[dict] = channels if len(channels) == ncols else [{} for _ in range(ncols)]
    if names is None:
        col_names = [chan.get("name") or None for chan in chan_info]
    roles: list[str] = []
    for k in range(ncols):
        cname = col_names[k] if k < len(col_names) else None
        chan = chan_info[k]
        ctype = chan.get("type", "").lower()
        if chan.get("enable", "yes").lower() in {"no", "false", "0"}:
            roles.append("drop")
        elif ctype == "time":
            roles.append("time")
        elif ctype and ctype not in {"electrography", "ecg", "signal"}:
            roles.append("drop")
        elif not cname and ncols > 1 and np.isnan(values[:, k]).all():
            roles.append("drop")  # a trailing delimiter makes an empty unnamed column
        elif cname is None:
            roles.append("signal")
        elif _norm(cname) in _INDEX_NAMES:
            roles.append("index")
        elif _norm(cname) in _LEADS_OFF_NAMES:
            roles.append("leads_off")
        elif _is_time_name(cname):
            roles.append("time")
        else:
            roles.append("signal")
    if names is None and ncols >= 2 and not channels and roles[0] == "signal":
        roles[0] = _guess_first_column(values[:, 0])

    signal_cols = [k for k, r in enumerate(roles) if r == "signal"]
    if not signal_cols:
        raise ReadError(f"{name} has no signal column (only time/index columns)")
    signal = values[:, signal_cols].copy()
    leads = [col_names[k] or f"lead{j + 1}" for j, k in enumerate(signal_cols)]
    if len(leads) == 1 and not col_names[signal_cols[0]] and norm_keys.get("lead"):
        leads = [norm_keys["lead"]]  # 'Lead,Lead I' in an Apple Watch export

    # Leads-off rows carry no signal.
    if "leads_off" in roles:
        flags = values[:, roles.index("leads_off")]
        off = np.isfinite(flags) & (flags != 0)
        signal[off, :] = np.nan
        meta["leads_off_samples"] = meta.get("leads_off_samples", 0) + int(off.sum())

    # Rate: header, else time column, else caller.
    time_fs = None
    why = ""
    if "time" in roles:
        k = roles.index("time")
        meta["time_column"] = col_names[k] or "column 1"
        if header_fs is None:
            k, time_fs, positions = _best_clock(
                [j for j, r in enumerate(roles) if r == "time"], values, col_names,
                chan_info, unit_row, name, numbered)
            meta["time_column"] = col_names[k] or "column 1"
            if positions is not None:
                if "index" in roles:
                    raise ReadError(f"the time column {meta['time_column']} of {name} is "
                                    "not evenly spaced and an index column numbers the "
                                    "samples; resample the file")
                drift = float(np.max(np.abs(positions - np.arange(positions.size))))
                signal = _on_uniform_grid(signal, positions)
                meta["resampled_from_time_column"] = {"rate_hz": round(time_fs, 3),
                                                      "max_drift_samples": round(drift, 1)}
                meta.setdefault("notes", []).append(
                    f"the samples were taken at drifting intervals (up to {drift:.0f} "
                    f"samples off a steady clock); they were put on a uniform grid at the "
                    f"average rate, {time_fs:.2f} Hz, by linear interpolation")
    if "index" in roles:
        k = roles.index("index")
        meta["index_column"] = col_names[k] or "column 1"
        signal, gaps, dupes = _apply_index(values[:, k], signal, name, numbered,
                                           col_names[k] or "the first column")
        if gaps:
            meta["gaps"] = gaps
        if dupes:
            meta["duplicate_rows"] = dupes
        if header_fs is None and time_fs is None:
            why = (f" (its column {col_names[k]!r} is a sample index, which gives no time)"
                   if col_names[k] else " (its first column counts samples one by one: an "
                   "index, or a time in ms?)")
    if monitor_fs is not None and not why:
        why = (" (the Serial Monitor's timestamps say when the computer received each line, "
               f"not when it was sampled; on average they suggest {monitor_fs:.1f} Hz)")
    if header_fs is not None:
        fs_value, origin = _resolve_rate(header_fs, "header", fs, name)
    else:
        fs_value, origin = _resolve_rate(time_fs, "time column", fs, name, why)

    # Units: written in the file, else integers are ADC counts, else mV.
    header_unit = next((_signal_unit(v) for k, v in norm_keys.items()
                        if k in {"unit", "units"} and _signal_unit(v)), None)
    integral = bool(np.all(np.mod(signal[np.isfinite(signal)], 1) == 0))
    units = []
    for k in signal_cols:
        unit = (_signal_unit(chan_info[k].get("unit", "")) if chan_info[k] else None) \
            or (_signal_unit(unit_row[k]) if unit_row else None) \
            or (_signal_unit(col_names[k]) if col_names[k] else None) or header_unit
        if unit is None:
            unit = "adu" if (fmt == "recorder-csv" or integral) else "mV"
        units.append(unit)
    if fmt is None:
        fmt = "arduino-text" if (ncols == 1 and names is None) else "csv"
    if fmt == "csv" and ncols == 1:
        fmt = "arduino-text"
    meta["delimiter"] = {None: "whitespace", "\t": "tab"}.get(sep, sep)
    return _finish(signal, fs_value, leads, units, source=source, fmt=fmt,
                   fs_origin=origin, meta=meta)


_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _clock_to_seconds(text):
    """``[h:]m:ss.mmm`` clock times (PhysioNet CSV exports) and ISO 8601 date-times
    (``2023-05-06T10:11:12.345``, phone apps' logs) to seconds, as text.

    Cells that are not clock times are left as they are, for the caller to report.
    """
    import pandas as pd

    if text.size and _ISO_DATETIME.match(str(text.iloc[0])):
        stamps = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        first = stamps.dropna().iloc[0] if stamps.notna().any() else None
        if first is not None:
            seconds = (stamps - first).dt.total_seconds()
            return seconds.astype(str).where(seconds.notna(), text)

    parts = text.str.split(":", expand=True).apply(pd.to_numeric, errors="coerce")
    values = parts.to_numpy(dtype=np.float64)
    n_colons = text.str.count(":").to_numpy()
    total = np.full(len(text), np.nan)
    for colons in np.unique(n_colons):
        if colons > 2:
            continue
        rows = n_colons == colons
        acc = np.zeros(int(rows.sum()))
        for j in range(int(colons) + 1):
            acc = acc * 60 + values[rows, j]
        total[rows] = acc
    parsed = pd.Series(total, index=text.index)
    return parsed.astype(str).where(parsed.notna(), text)


def _parse_table(name: str, numbered: list[tuple[int, str]], sep: str | None, decimal: str,
                 ncols: int, clock_columns: tuple[int, ...] = ()) -> np.ndarray:
    """Parse delimited rows into a float array (rows x columns) with pandas' C parser.

    Columns in ``clock_columns`` (time columns) may hold ``[h:]m:ss.mmm`` clock times.
    """
    import pandas as pd  # only for delimited text

    body = "\n".join(line for _, line in numbered)
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first row is longer than the
            # header: make that an error like any other over-long row.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                _stdio.StringIO(body), sep=r"\s+" if sep is None else sep, header=None,
                names=list(range(ncols)), decimal=decimal, skip_blank_lines=False,
                na_values=sorted(_MISSING_TOKENS), keep_default_na=True, index_col=False,
                engine="c", low_memory=False,
            )
    except pd.errors.ParserWarning:
        row = next((i for i, (_, line) in enumerate(numbered)
                    if len(_split(line, sep)) > ncols), 0)
        raise ReadError(f"line {numbered[row][0]} of {name} has more fields than its "
                        f"{ncols} columns") from None
    except Exception as exc:
        match = re.search(r"line (\d+), saw (\d+)", str(exc))
        if match:
            row = int(match.group(1)) - 1
            line_no = numbered[row][0] if row < len(numbered) else row + 1
            raise ReadError(f"line {line_no} of {name} has {match.group(2)} fields, "
                            f"expected {ncols}") from None
        raise ReadError(f"{name} could not be parsed as a table ({_short(exc)})") from None
    out = np.empty(frame.shape, dtype=np.float64)
    for k in range(frame.shape[1]):
        column = frame.iloc[:, k]
        if column.dtype.kind in "fiub":
            out[:, k] = column.to_numpy(dtype=np.float64)
            continue
        as_text = column.astype(str).str.strip().str.strip("'")
        if decimal == ",":
            as_text = as_text.str.replace(",", ".", regex=False)
        if k in clock_columns and as_text.str.contains(":", regex=False).any():
            as_text = _clock_to_seconds(as_text)
        numeric = pd.to_numeric(as_text.where(column.notna(), "nan"), errors="coerce")
        bad = numeric.isna() & column.notna() & ~as_text.str.lower().isin(_MISSING_TOKENS)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReadError(f"line {numbered[row][0]} of {name} is not numeric "
                            f"({str(column.iloc[row])[:30]!r} in column {k + 1})")
        out[:, k] = numeric.to_numpy(dtype=np.float64)
    return out


def _guess_first_column(col: np.ndarray) -> str:
    """Role of an unnamed first column: an index counting 1 by 1, a time, or a lead."""
    if col.size < 10 or not np.isfinite(col).all():
        return "signal"
    steps = np.diff(col)
    if not (steps > 0).all():
        return "signal"
    if np.all(col == np.round(col)) and np.all(steps == 1):
        return "index"
    return "time"  # a steadily increasing first column is no ECG lead


def _best_clock(columns: list[int], values: np.ndarray, col_names: list, chan_info: list,
                unit_row: list[str] | None, name: str, numbered: list[tuple[int, str]]
                ) -> tuple[int, float, np.ndarray | None]:
    """Of several time columns (a phone's arrival times beside the sensor's own clock,
    say), the first that is evenly spaced, else the first that can be put on a uniform
    grid; the first one's error when none can."""
    found, first_error = [], None
    for k in columns:
        unit = _time_unit(chan_info[k].get("unit", "")) or (
            _time_unit(col_names[k]) if col_names[k] else None)
        if unit_row:
            # Clock times were turned into seconds.
            unit = "s" if ":" in unit_row[k] else (_time_unit(unit_row[k]) or unit)
        try:
            rate, positions = _rate_from_time(values[:, k], unit, name,
                                              col_names[k] or "the first column", numbered)
        except ReadError as exc:
            first_error = first_error or exc
            continue
        if positions is None:
            return k, rate, None
        found.append((k, rate, positions))
    if found:
        return found[0]
    assert first_error is not None
    raise first_error


MAX_STEP_JITTER = 0.5
"""A time column whose every step is within this share of the median step, but whose times
drift off a steady rate (a sketch timed by ``delay()``, stamped by ``millis()``), is
resampled onto a uniform grid; a longer step is a pause or lost samples, an error."""


def _rate_from_time(t: np.ndarray, unit: str | None, name: str, column: str,
                    numbered: list[tuple[int, str]]) -> tuple[float, np.ndarray | None]:
    """The rate given by a time column, after checking it increases in uniform steps.

    Returns the rate and, when the samples were taken at drifting intervals, each row's
    position on a uniform grid at the average rate (None when the rows already are).
    """
    n = t.size
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ReadError(f"line {numbered[bad[0]][0]} of {name}: the time column {column} has "
                        "no value")
    if n < 2:
        return float("nan"), None
    t = t - t[0]  # epoch nanoseconds lose their digits in a fitted line
    steps = np.diff(t)
    back = np.flatnonzero(steps <= 0)
    if back.size:
        raise ReadError(f"line {numbered[back[0] + 1][0]} of {name}: the time column "
                        f"{column} does not increase")
    index = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(index, t, 1)
    residual = np.abs(t - (intercept + slope * index))
    worst = int(np.argmax(residual))
    positions = None
    # Rounded or jittery timestamps are fine; a lost sample or a pause (a full step off a
    # steady clock) is not. Steps that only jitter but add up to a drift are the sample
    # times of a loop timed by delay(): the values are put on a uniform grid.
    if residual[worst] > 0.5 * slope:
        median = float(np.median(steps))
        long = np.flatnonzero(np.abs(steps - median) > MAX_STEP_JITTER * median)
        if long.size:
            k = int(long[0])
            raise ReadError(
                f"the time column {column} of {name} is not evenly spaced (line "
                f"{numbered[k + 1][0]} comes {steps[k] / median:.1f} steps after the one "
                "before: a pause or lost samples); resample the file, or drop the time "
                "column and give the rate with --fs"
            )
        slope = float(t[-1] - t[0]) / (n - 1)
        positions = (t - t[0]) / slope
    if unit is None:
        for candidate, scale in _TIME_SCALE.items():
            rate = 1.0 / (slope * scale)
            if 50.0 <= rate <= 20_000.0:
                unit = candidate
                break
        else:
            raise ReadError(f"the time column {column} of {name} has steps of {slope:g}, "
                            "which give no ECG rate read as s, ms or µs")
    rate = 1.0 / (slope * _TIME_SCALE[unit])
    # Times rounded to the ms put the fitted rate a hair off a whole number (360.00007):
    # within 0.05 % of one, the whole number is what the device ran at.
    whole = round(rate)
    if whole > 0 and abs(rate - whole) <= 5e-4 * rate:
        rate = float(whole)
    if positions is not None:
        positions = positions * (rate * slope * _TIME_SCALE[unit])
    return rate, positions


def _on_uniform_grid(signal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Columns sampled at ``positions`` (in samples, rising), linearly interpolated at
    0, 1, 2, ... up to the last position."""
    grid = np.arange(int(np.floor(positions[-1] + 1e-9)) + 1, dtype=np.float64)
    return np.column_stack([np.interp(grid, positions, signal[:, k])
                            for k in range(signal.shape[1])])


def _apply_index(seq: np.ndarray, signal: np.ndarray, name: str,
                 numbered: list[tuple[int, str]], column: str
                 ) -> tuple[np.ndarray, list[tuple[int, int]], int]:
    """Insert NaN where sequence numbers jump (lost samples); drop repeated rows."""
    bad = np.flatnonzero(~np.isfinite(seq) | (seq != np.round(seq)))
    if bad.size:
        raise ReadError(f"line {numbered[bad[0]][0]} of {name}: the index column {column} "
                        "is not a whole number")
    seq = seq.astype(np.int64)
    steps = np.diff(seq)
    wrap = np.flatnonzero(steps < 0)
    if wrap.size:
        # Counters of 16 or 32 bits wrap round to 0; anything else going back is an error.
        modulus = next((m for m in (2**16, 2**32) if seq.max() < m), None)
        for w in wrap:
            if modulus is None or seq[w] < modulus * 0.9 or seq[w + 1] > modulus * 0.1:
                raise ReadError(f"line {numbered[w + 1][0]} of {name}: the index column "
                                f"{column} goes back from {seq[w]} to {seq[w + 1]}")
            steps[w] += modulus
    keep = np.concatenate([[True], steps != 0])
    dupes = int((~keep).sum())
    steps = steps[steps != 0]
    signal = signal[keep]
    n_lost = int((steps - 1).sum())
    if n_lost == 0:
        return signal, [], dupes
    if n_lost > signal.shape[0]:
        raise ReadError(f"the index column {column} of {name} jumps over {n_lost} samples, "
                        f"more than the {signal.shape[0]} present; refused")
    positions = np.concatenate([[0], np.cumsum(steps)])
    out = np.full((int(positions[-1]) + 1, signal.shape[1]), np.nan)
    out[positions] = signal
    kept_seq = seq[keep]
    jumps = np.flatnonzero(steps > 1)
    gaps = [(int(kept_seq[j] + 1), int(steps[j] - 1)) for j in jumps]
    return out, gaps, dupes
