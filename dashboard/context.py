"""Access to the app's configuration and stores from inside callbacks."""

from __future__ import annotations

from flask import current_app

from dashboard.config import Config
from dashboard.records import RecordPreparer
from dashboard.state import SessionStore


def config() -> Config:
    """The running app's :class:`Config`."""
    return current_app.config["ECG_CONFIG"]


def sessions() -> SessionStore:
    """The per-session store (uploads)."""
    return current_app.extensions["ecg_sessions"]


def records() -> RecordPreparer:
    """The in-memory store of prepared records."""
    return current_app.extensions["ecg_records"]
