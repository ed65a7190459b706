"""The record catalogue: what each MIT-BIH-style record of a folder holds.

One row per record: the patient's age, sex and medications (from the ``.hea`` comments),
the duration, the reference beats per AAMI class and the rhythms present (from the
``.atr``). Reading 48 annotation files takes about a second, so the table is cached on
disk, keyed by the folder's file names, sizes and times and the software version.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.beats import AAMI_CLASSES
from ecgcore.errors import ReadError
from ecgcore.metrics import AAMI_BEAT_SYMBOLS

MITDB_ENV = "ECG_MITDB_DIR"
"""Environment variable naming a folder that holds MIT-BIH (all 48 records)."""
SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "mitdb"
"""The sample records shipped with the package."""
DATA_EXTENSIONS = (".dat", ".mat")
"""A record's signal file beside its ``.hea``: WFDB's ``.dat``, or the ``.mat`` (WFDB
format 16 behind a MATLAB v4 header) of the PhysioNet Challenges' databases."""


def records_dir() -> Path:
    """Where records are listed from: ``$ECG_MITDB_DIR`` when set, else the samples."""
    env = os.environ.get(MITDB_ENV)
    return Path(env).expanduser() if env else SAMPLES_DIR


def record_names(folder: Path | None = None) -> list[str]:
    """Names of the records of a folder: those with a ``.hea`` and a ``.dat`` (or the
    ``.mat`` of PhysioNet's Challenge databases), sorted."""
    folder = Path(folder) if folder is not None else records_dir()
    if not folder.is_dir():
        return []
    names = [p.stem for p in folder.glob("*.hea")
             if any((folder / f"{p.stem}{ext}").is_file() for ext in DATA_EXTENSIONS)]
    return sorted(names, key=lambda n: (len(n), n))


def record_path(name: str, folder: Path | None = None) -> Path:
    """The WFDB path (no extension) of a record of the catalogue.

    Raises
    ------
    ReadError
        When no such record is in the folder (names are checked, so a request cannot
        reach outside the folder).
    """
    folder = Path(folder) if folder is not None else records_dir()
    if name not in record_names(folder):
        raise ReadError(f"there is no record named {name!r} in {folder}")
    return folder / name


def record_duration_s(name: str, folder: Path | None = None) -> float:
    """The duration of a record of the catalogue from its header alone (no samples read).

    Raises
    ------
    ReadError
        No such record, or an unreadable header.
    """
    header = _read_header(record_path(name, folder))
    fs = float(header.fs or 0.0)
    return float(header.sig_len or 0) / fs if fs > 0 else 0.0


def _read_header(path: Path):
    """The WFDB header of the record at ``path`` (no extension); :class:`ReadError` if it
    cannot be read."""
    import wfdb

    try:
        return wfdb.rdheader(str(path))
    except (OSError, ValueError) as error:
        raise ReadError(f"cannot read the header of {path.name}: {error}") from error


_KEYED_COMMENT = re.compile(r"^\s*(Age|Sex|Rx)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_UNKNOWN = {"", "unknown", "nan", "none", "-1"}


def parse_header_comments(comments: list[str]) -> dict[str, Any]:
    """Age, sex and medications from WFDB header comments.

    MIT-BIH's: the first comment is ``<age> <sex> ...`` (age -1 when unknown), the second
    the medications (``None`` when there were none). The PhysioNet Challenges' (and other
    databases'): ``Age: 74``, ``Sex: Male``, ``Rx: ...`` lines, in any order.
    """
    age: int | None = None
    sex: str | None = None
    medications: str | None = None
    keyed = {m.group(1).lower(): m.group(2) for m in map(_KEYED_COMMENT.match, comments) if m}
    if keyed:
        value = keyed.get("age", "")
        if re.fullmatch(r"\d+(\.\d+)?", value):
            age = int(float(value))
        first = keyed.get("sex", "").strip()[:1].upper()
        sex = first if first in {"M", "F"} else None
        rx = keyed.get("rx", "")
        medications = None if rx.lower() in _UNKNOWN else rx
        return {"age": age, "sex": sex, "medications": medications}
    if comments:
        fields = comments[0].split()
        if fields and re.fullmatch(r"-?\d+", fields[0]):
            age = int(fields[0]) if int(fields[0]) >= 0 else None
        if len(fields) > 1 and fields[1] in {"M", "F"}:
            sex = fields[1]
    if len(comments) > 1:
        medications = comments[1].strip() or None
    return {"age": age, "sex": sex, "medications": medications}


def describe_record(path: Path) -> dict[str, Any]:
    """One catalogue row for the WFDB record at ``path`` (no extension)."""
    import wfdb

    path = Path(path)
    header = _read_header(path)
    row: dict[str, Any] = {"name": path.name}
    row.update(parse_header_comments(list(header.comments or [])))
    fs = float(header.fs)
    row["duration_s"] = round(float(header.sig_len) / fs, 3) if fs > 0 else None
    row["fs"] = fs
    row["leads"] = list(header.sig_name or [])
    counts = dict.fromkeys(AAMI_CLASSES, 0)
    rhythms: list[str] = []
    row["has_reference"] = (path.parent / f"{path.name}.atr").is_file()
    if row["has_reference"]:
        annotation = wfdb.rdann(str(path), "atr")
        for symbol in annotation.symbol:
            aami = AAMI_BEAT_SYMBOLS.get(symbol)
            if aami is not None:
                counts[aami] += 1
        for symbol, note in zip(annotation.symbol, annotation.aux_note, strict=True):
            code = (note or "").strip("\x00 ")
            if symbol == "+" and code.startswith("(") and code not in rhythms:
                rhythms.append(code)
    row["beats"] = counts
    row["n_beats"] = sum(counts.values())
    row["rhythms"] = sorted(rhythms)
    return row


def _folder_key(folder: Path, names: list[str]) -> str:
    from ecgcore.cache import software_version

    digest = hashlib.sha256(str(folder.resolve()).encode())
    for name in names:
        for suffix in (".hea", ".atr"):
            path = folder / f"{name}{suffix}"
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(software_version().encode())
    return digest.hexdigest()


def catalog(folder: Path | None = None, *, use_cache: bool = True) -> list[dict[str, Any]]:
    """The catalogue of a folder (default: :func:`records_dir`), one dict per record.

    Each row: ``name``, ``age`` (None when unknown), ``sex``, ``medications``,
    ``duration_s``, ``fs``, ``leads``, ``has_reference``, ``beats`` (reference beats per
    AAMI class), ``n_beats`` and ``rhythms`` (MIT-BIH codes such as ``(AFIB``).
    """
    from ecgcore.cache import load_json, save_json

    folder = Path(folder) if folder is not None else records_dir()
    names = record_names(folder)
    key = _folder_key(folder, names)
    cache_name = "catalog-" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    if use_cache:
        rows = load_json(cache_name, key)
        if rows is not None:
            return rows
    rows = [describe_record(folder / name) for name in names]
    if use_cache:
        save_json(cache_name, key, rows)
    return rows


def reference_rhythm_episodes(
    sample: np.ndarray, symbol: list[str], aux_note: list[str], n_samples: int
) -> list[dict[str, Any]]:
    """The reference rhythm episodes of an annotation list, as ``{"label", "start", "end"}``.

    Each ``+`` annotation with a rhythm code in ``aux_note`` starts an episode that lasts
    until the next one (or the end of the recording), in the recording's sample numbers,
    the same form as :attr:`ecgcore.analysis.Analysis.rhythm`.
    """
    episodes: list[dict[str, Any]] = []
    for position, code, note in zip(sample, symbol, aux_note, strict=True):
        label = (note or "").strip("\x00 ")
        if code != "+" or not label.startswith("("):
            continue
        if episodes:
            episodes[-1]["end"] = int(position)
        episodes.append({"label": label, "start": int(position), "end": int(n_samples)})
    return [e for e in episodes if e["end"] > e["start"]]
