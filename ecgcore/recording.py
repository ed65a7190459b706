"""The plain data types that flow between ecgcore's stages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LEAD_II_NAMES = frozenset({"MLII", "II", "DII", "LEADII", "LEAD2", "ECGII", "EKGII"})
"""Names of lead II (MIT-BIH's modified lead II, the lead the classifiers were trained
on), upper case with spaces and punctuation removed: ``MLII``, ``II``, ``Lead II``,
``ECG II``, ``DII`` (European naming). ``ECG2`` is not among them: devices name their
second channel so, whatever lead it records."""


def preferred_lead(leads: Sequence[str]) -> int:
    """The lead to analyse when none is asked for: lead II by any of its names, else the
    first.

    The networks learnt MLII. A 12-lead file (INCART, a hospital export) starts with lead
    I, and MIT-BIH's 114 with V5, so the first column is not always the best guess.

    Parameters
    ----------
    leads : sequence of str
        Lead names, one per column.

    Returns
    -------
    int
        The column index.
    """
    for index, name in enumerate(leads):
        if re.sub(r"[^A-Z0-9]", "", str(name).upper()) in LEAD_II_NAMES:
            return index
    return 0


@dataclass(frozen=True)
class Annotations:
    """Reference annotations of a recording, in the recording's own sample numbers.

    Attributes
    ----------
    sample : np.ndarray
        Sample index of each annotation (int64).
    symbol : list of str
        MIT-BIH annotation code of each annotation (``N``, ``V``, ``+``, ``[`` ...).
    aux_note : list of str
        Auxiliary text (rhythm changes such as ``(AFIB`` on ``+`` annotations).
    """

    sample: np.ndarray
    symbol: list[str]
    aux_note: list[str]


@dataclass
class Recording:
    """An ECG recording as read from any source.

    Attributes
    ----------
    signal : np.ndarray
        Samples x leads, float64, in ``units``.
    fs : float
        Sampling rate in Hz.
    leads : list of str
        Lead names, one per column.
    units : list of str
        Physical unit of each lead (``mV``; ``adu`` for raw ADC counts).
    source : str
        Where the recording came from (a path, an upload name, a serial port).
    annotations : Annotations or None
        Reference annotations (WFDB ``.atr``) where present.
    fs_origin : str
        How the rate was known: ``"header"``, ``"time column"`` or ``"caller"``.
    format : str
        The input format understood (``"wfdb"``, ``"arduino-text"``, ``"csv"`` ...).
    meta : dict
        Anything else the file said (header comments, device, start time...).
    """

    signal: np.ndarray
    fs: float
    leads: list[str]
    units: list[str]
    source: str
    annotations: Annotations | None = None
    fs_origin: str = "header"
    format: str = "unknown"
    meta: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples per lead."""
        return int(self.signal.shape[0])

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.n_samples / self.fs

    def lead_index(self, lead: str | int | None) -> int:
        """Resolve a lead given by name or index (``None``: :func:`preferred_lead`)."""
        from ecgcore.errors import EcgError

        if lead is None:
            return preferred_lead(self.leads)
        if isinstance(lead, int) or (isinstance(lead, str) and lead.lstrip("-").isdigit()):
            index = int(lead)
            if not 0 <= index < len(self.leads):
                raise EcgError(
                    f"lead index {index} is out of range: this recording has "
                    f"{len(self.leads)} lead(s) ({', '.join(self.leads)})"
                )
            return index
        names = [name.lower() for name in self.leads]
        if lead.lower() not in names:
            raise EcgError(f"no lead named {lead!r}: this recording has {', '.join(self.leads)}")
        return names.index(lead.lower())
