"""One exception family whose messages a clinician can read.

The edges (the ``ecg`` command, Dash callbacks) catch :class:`EcgError` and show its
message as one line; anything else escaping is a bug.
"""

from __future__ import annotations


class EcgError(Exception):
    """Base class of every error a user can cause (bad file, bad rate, bad option)."""


class ReadError(EcgError):
    """A file could not be read as an ECG recording."""


class RateUnknownError(ReadError):
    """The sampling rate cannot be known from the file; the caller must give it."""


class InputTooLargeError(ReadError):
    """A file is above the documented size limit; it is refused before being read."""


class SignalError(EcgError):
    """A signal cannot be analysed (too short, absurd rate, no finite samples...)."""


class ModelError(EcgError):
    """A model file is missing or cannot be loaded."""
