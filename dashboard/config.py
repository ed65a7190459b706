"""Settings of the dashboard, with defaults that suit ``make run`` on a laptop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

UPLOAD_LIMIT_BYTES = 64 * 1024 * 1024
"""The dashboard's upload limit: uploads travel base64-encoded inside a JSON request, so
the web limit is below the reader's (``ecgcore.io.MAX_FILE_BYTES``); a 30-minute
two-lead MIT-BIH record is about 2 MB."""


def _default_max_upload() -> int:
    try:
        from ecgcore.io import MAX_FILE_BYTES
    except ImportError:
        return UPLOAD_LIMIT_BYTES
    return min(int(MAX_FILE_BYTES), UPLOAD_LIMIT_BYTES)


@dataclass
class Config:
    """Dashboard settings.

    Attributes
    ----------
    records_dir : Path or None
        Folder of MIT-BIH-style records (None: ``$ECG_MITDB_DIR``, else the packaged
        samples, see :func:`ecgcore.catalog.records_dir`).
    models_dir : Path or None
        Where the Models page reads evaluation, cards and histories (None: the packaged
        ``ecgcore/models/``).
    max_upload_bytes : int
        Largest upload accepted, per file and in total (the reader's documented limit).
    session_ttl_s : float
        Seconds after its last use that a session's server-side data is dropped.
    max_sessions : int
        Most browser sessions kept in memory at once (least recently used dropped first).
    max_records_in_memory : int
        Most prepared records (signals, analysis, beat table) kept in memory at once.
    points_per_view : int
        Points per lead sent for the visible range (MinMaxLTTB down-sampling).
    detail_span_s : float
        Below this visible span, every beat's labels and wave markers are drawn.
    initial_span_s : float
        Span shown when a record is opened.
    background_after_s : float
        Recordings at least this long (a Holter file) are analysed in the background on
        their first opening, while the record view says how far it is; shorter ones
        (seconds of work) arrive with the page drawn.
    preload_models : bool
        Load the classifiers in the background at start-up, so the first analysis does
        not pay for it.
    debug : bool
        Dash dev tools (never in tests).
    """

    records_dir: Path | None = None
    models_dir: Path | None = None
    max_upload_bytes: int = field(default_factory=_default_max_upload)
    session_ttl_s: float = 2 * 3600.0
    max_sessions: int = 64
    max_records_in_memory: int = 6
    points_per_view: int = 3000
    detail_span_s: float = 40.0
    initial_span_s: float = 20.0
    background_after_s: float = 3600.0
    preload_models: bool = True
    debug: bool = False
