"""The line protocol spoken by the ``ecg_ad8232`` sketch (and by the simulator).

Pure functions only: the sketch's README, the recorder, the simulator and the live page
all rely on this one definition.

Protocol (version 1)
--------------------
ASCII lines ending in ``\\n`` (a ``\\r`` before it is tolerated), 115200 baud 8N1.
Every line ends with ``*XX``: the CRC-8 of all the bytes before the ``*`` as two
upper-case hex digits (CRC-8/SMBUS: polynomial 0x07, initial value 0, no reflection,
no final XOR; the CRC of ``b"123456789"`` is ``F4``). A line whose CRC, syntax or range
is wrong is *garbled*: it is dropped whole, never recorded as a wrong value.

Header line, sent at boot, after a rate change, on request (``?``) and every
:data:`HEADER_EVERY` samples so that a receiver joining mid-stream learns the rate::

    #ECG device=AD8232-Uno firmware=1.0.0 fs=360 bits=10 seq=0*A2

``device``, ``firmware`` and ``fs`` (Hz) are required; ``bits`` (ADC resolution,
default 10) and ``seq`` (the sequence number of the next sample line) are optional;
other ``key=value`` pairs are kept as extras. Values contain no spaces.

Sample line, one per sample taken::

    1234,517,0*29

``seq`` is the sample counter modulo :data:`SEQ_MODULUS` (65536: it wraps after 182 s at
360 Hz), ``value`` the ADC count (0 .. 2**bits - 1), ``leads_off`` ``1`` when LO+ or LO-
reports a detached electrode. The counter advances for every sample *taken*, sent or not,
so a sample the device could not send shows as a jump in ``seq``. A receiver unwraps it
with :func:`seq_delta`: a forward step of 1 .. 32767 is taken as that many samples.

Other ``#`` lines with a valid CRC (``#MSG ...``, ``#ERR ...``, ``#END``) are
:class:`Message` s for a human; ``#END`` is sent by the simulator when its recording is
over (a real board never ends its stream).

Sizes: a sample line is at most ``65535,1023,1*XX\\n`` = 16 bytes, 160 bits at 8N1, so
500 Hz needs at most 80,000 of the 115,200 baud (69 %), 360 Hz 50 %, 250 Hz 35 % (plus a
60-byte header every 2048 samples).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PROTOCOL_VERSION = 1
SEQ_MODULUS = 65536
"""Sample counters wrap at this value (16 bits)."""

HEADER_EVERY = 2048
"""The device repeats its header every this many samples (5.7 s at 360 Hz)."""

SUPPORTED_RATES = (250, 360, 500)
DEFAULT_BAUD = 115200
BAUD_CHOICES = (9600, 57600, 115200, 230400)
"""Serial speeds offered: the sketch's, and those other sketches use (SparkFun's AD8232
example: 9600)."""
MAX_LINE = 200
"""A line longer than this (bytes, without newline) cannot be valid: it is garbled."""

_SAMPLE_RE = re.compile(rb"^(\d{1,5}),(\d{1,5}),([01])$")
_PLAIN_RE = re.compile(rb"^\s*(\d{1,5})\s*$")
_CHECK_RE = re.compile(rb"^[0-9A-F]{2}$")
_TOKEN_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$")


@dataclass(frozen=True)
class Header:
    """A device header line.

    Attributes
    ----------
    device, firmware : str
        What the device says it is.
    fs : float
        Sampling rate in Hz.
    bits : int
        ADC resolution (values lie in 0 .. 2**bits - 1).
    seq : int or None
        Sequence number of the next sample line, if the device said.
    extras : dict
        Any other ``key=value`` pairs.
    """

    device: str
    firmware: str
    fs: float
    bits: int = 10
    seq: int | None = None
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One sample line: wrapped counter, ADC count, leads-off flag."""

    seq: int
    value: int
    leads_off: int


@dataclass(frozen=True)
class Message:
    """A ``#`` line for humans (``#MSG``, ``#ERR``, ``#END``), CRC checked."""

    kind: str
    text: str


@dataclass(frozen=True)
class Garbled:
    """A line that failed the checksum, the syntax or a range check."""

    raw: bytes
    reason: str


Line = Header | Sample | Message | Garbled


def _crc8_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (polynomial 0x07, init 0) of ``data``.

    It catches every single-byte error, every odd number of flipped bits and every
    transposition of two different bytes, which a plain XOR (NMEA) misses.
    """
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _seal(body: str) -> bytes:
    raw = body.encode("ascii")
    return raw + b"*%02X\n" % crc8(raw)


def format_sample(seq: int, value: int, leads_off: int | bool) -> bytes:
    """Encode one sample line (with CRC and newline); ``seq`` is wrapped here."""
    return _seal(f"{int(seq) % SEQ_MODULUS},{int(value)},{1 if leads_off else 0}")


def format_header(
    device: str,
    firmware: str,
    fs: float,
    bits: int = 10,
    seq: int | None = None,
    **extras: object,
) -> bytes:
    """Encode a header line (with CRC and newline)."""
    parts = [f"device={device}", f"firmware={firmware}", f"fs={fs:g}", f"bits={int(bits)}"]
    if seq is not None:
        parts.append(f"seq={int(seq) % SEQ_MODULUS}")
    parts += [f"{key}={value}" for key, value in extras.items()]
    for part in parts:
        if not _TOKEN_RE.match(part):
            raise ValueError(f"header field {part!r} must be key=value without spaces")
    return _seal("#ECG " + " ".join(parts))


def format_message(kind: str, text: str = "") -> bytes:
    """Encode a ``#KIND text`` line for humans (``kind`` e.g. ``MSG``, ``ERR``, ``END``)."""
    body = f"#{kind}" + (f" {text}" if text else "")
    return _seal(body)


def parse_line(line: bytes) -> Line:
    """Decode one line (with or without its ``\\r\\n``).

    Never raises: whatever is wrong gives a :class:`Garbled` with the reason.
    """
    raw = line.rstrip(b"\r\n")
    if len(raw) > MAX_LINE:
        return Garbled(raw[:MAX_LINE], "line too long")
    star = raw.rfind(b"*")
    if star < 0 or len(raw) - star != 3:
        return Garbled(raw, "no checksum")
    body, check = raw[:star], raw[star + 1 :]
    if not _CHECK_RE.match(check):
        return Garbled(raw, "bad checksum digits")
    if crc8(body) != int(check, 16):
        return Garbled(raw, "checksum mismatch")
    if body.startswith(b"#"):
        return _parse_hash_line(raw, body)
    match = _SAMPLE_RE.match(body)
    if not match:
        return Garbled(raw, "not a sample line")
    seq, value, leads_off = (int(group) for group in match.groups())
    if seq >= SEQ_MODULUS:
        return Garbled(raw, "seq out of range")
    if value > 0xFFFF:
        return Garbled(raw, "value out of range")
    return Sample(seq, value, leads_off)


def _parse_hash_line(raw: bytes, body: bytes) -> Line:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return Garbled(raw, "non-ASCII header")
    kind, _, rest = text[1:].partition(" ")
    if kind != "ECG":
        return Message(kind, rest)
    fields: dict[str, str] = {}
    for token in rest.split():
        match = _TOKEN_RE.match(token)
        if not match:
            return Garbled(raw, f"bad header field {token!r}")
        fields[match.group(1)] = match.group(2)
    try:
        device = fields.pop("device")
        firmware = fields.pop("firmware")
        fs = float(fields.pop("fs"))
        bits = int(fields.pop("bits", "10"))
        seq_text = fields.pop("seq", None)
        seq = None if seq_text is None else int(seq_text)
    except KeyError as missing:
        return Garbled(raw, f"header lacks {missing.args[0]}")
    except ValueError:
        return Garbled(raw, "header number unreadable")
    if not (fs > 0 and 1 <= bits <= 16) or (seq is not None and not 0 <= seq < SEQ_MODULUS):
        return Garbled(raw, "header value out of range")
    return Header(device, firmware, fs, bits, seq, fields)


PLAIN_RATE_AUTO = "auto"
"""The rate to give for a plain stream (bare values) whose rate the recorder measures."""
MAX_PLAIN_RATE = 100_000
"""The highest plain stream rate taken (Hz)."""


def parse_plain_rate(text: object) -> float | str | None:
    """A plain stream's rate as a user types it (``ecg record --plain-rate``, the Live
    page): None when empty (the board speaks the protocol), a rate in Hz, or
    :data:`PLAIN_RATE_AUTO`.

    Raises
    ------
    ValueError
        Anything else, with a message for the user.
    """
    text = "" if text is None else str(text).strip()
    if not text:
        return None
    if text.lower() == PLAIN_RATE_AUTO:
        return PLAIN_RATE_AUTO
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 < rate <= MAX_PLAIN_RATE:
        raise ValueError(f"the plain stream's rate must be in Hz, above 0 and at most "
                         f"{MAX_PLAIN_RATE}, or '{PLAIN_RATE_AUTO}'")
    return rate
PLAIN_LEADS_OFF = b"!"
"""What SparkFun's AD8232 example sketch prints instead of a value while LO+ or LO- is
set (an electrode off)."""
LEADS_OFF = -1
""":func:`parse_plain_line`'s value for a :data:`PLAIN_LEADS_OFF` line."""


def parse_plain_line(line: bytes) -> int | None:
    """Decode one line of a *plain* stream: the bare ``analogRead`` values, one per line,
    that the AD8232 example sketches print (``Serial.println(analogRead(A0))``).

    Returns
    -------
    int or None
        The value (0 .. 65535); :data:`LEADS_OFF` for a leads-off mark
        (:data:`PLAIN_LEADS_OFF`); ``None`` for anything else (garbled). Never raises.
    """
    raw = line.rstrip(b"\r\n")
    if raw.strip() == PLAIN_LEADS_OFF:
        return LEADS_OFF
    match = _PLAIN_RE.match(raw)
    if not match:
        return None
    value = int(match.group(1))
    return value if value <= 0xFFFF else None


def check_value(sample: Sample, bits: int) -> bool:
    """Whether a sample's value fits the ADC resolution announced by the header."""
    return sample.value < (1 << bits)


def seq_delta(previous: int, current: int) -> int:
    """Forward distance from wrapped counter ``previous`` to ``current`` (0 .. 65535).

    1 means consecutive, ``k`` means ``k - 1`` samples were lost in between. A value of 0
    or above half the modulus cannot be told from a repeated or stale line.
    """
    return (current - previous) % SEQ_MODULUS


def unwrap_near(seq: int, expected: int) -> int:
    """The unwrapped number congruent to ``seq`` that lies nearest ``expected``.

    Used after an outage, when the number of wraps is estimated from the clock.
    """
    base = expected - (expected % SEQ_MODULUS) + seq
    candidates = (base - SEQ_MODULUS, base, base + SEQ_MODULUS)
    return min(candidates, key=lambda value: abs(value - expected))
