"""The plain data types that flow between ecgcore's stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
        """Resolve a lead given by name or index (``None``: the first lead)."""
        from ecgcore.errors import EcgError

        if lead is None:
            return 0
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
