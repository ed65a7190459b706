"""Fuzzing the readers and the upload callback with generated malformed inputs.

Hypothesis generates random bytes, tables with wrong delimiters, BOMs, unicode, huge and
NaN/inf values and one-sample files, WFDB records with truncated or mangled headers and
data, and zips with path tricks, too many or nested members. Every input must give either
a recording or a :class:`~ecgcore.errors.EcgError` with a one-line message from the
readers; over HTTP (``ecg serve``), a 200 answer whose upload status says clearly what
happened: never an unhandled exception, never a 500.

The number of cases run is counted and checked (>= 1,000 in all) in the last test.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from dash_client import DashClient, Served, text_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgcore.errors import EcgError
from ecgcore.io import read_bytes, read_files
from ecgcore.recording import Recording

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "mitdb"

N_PER_READER_TEST = 200
N_HTTP = 400
COUNTS: dict[str, int] = {}

FUZZ = settings(max_examples=N_PER_READER_TEST, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# A short real record: 10 s of MIT-BIH 100 (format 212: 3 bytes per two-lead frame).
BASE_HEADER = (MITDB / "100.hea").read_text().replace("650000", "3600", 1)
BASE_DAT = (MITDB / "100.dat").read_bytes()[: 3600 * 3]
BASE_ATR = (MITDB / "100.atr").read_bytes()

EXTENSIONS = ["", ".txt", ".TXT", ".csv", ".tsv", ".dat", ".hea", ".atr", ".zip", ".json",
              ".exe", ".py", ".pkl", ".npy"]
BOMS = [b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]
NASTY_TOKENS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e400",
                "9" * 400, "", "  ", "−1.5", "٣", "１２", "0x1F", "1,5", "1.2.3", "e",
                "\u200b12", "null", "None", "#N/A", "'7'", '"8"', "1_000", "ⅷ"]
NAMES = st.sampled_from(["ecg", "rec", "100", "../../etc/passwd", "..\\..\\boot",
                         "/abs/path", "C:evil", "a/b/c", "ünïcødé", "nul\x00byte", " ",
                         "con", ".hidden", "x" * 300, "émoji😀"])


def count(kind: str) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + 1


def check_reader(call) -> None:
    """A recording or one clear EcgError line; any other exception fails the test."""
    try:
        recording = call()
    except EcgError as error:
        message = str(error)
        assert message.strip() and "\n" not in message and len(message) < 600, message
        return
    assert isinstance(recording, Recording)
    assert recording.signal.ndim == 2 and recording.signal.shape[0] >= 3
    assert np.isfinite(recording.fs) and recording.fs > 0
    assert len(recording.leads) == recording.signal.shape[1] == len(recording.units)


# --------------------------------------------------------------------------- strategies


@st.composite
def tables(draw) -> tuple[str, bytes]:
    """Delimited or one-value-per-line text with every kind of nasty cell."""
    n_rows = draw(st.sampled_from([0, 1, 2, 3, 5, 40, 400]))
    n_cols = draw(st.integers(1, 4))
    sep = draw(st.sampled_from([",", ";", "\t", " ", "|", ":", ", ", "  ", ",,"]))
    numbers = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(NASTY_TOKENS),
        st.text(max_size=6),
    )
    regular = draw(st.booleans())
    rows = []
    for i in range(n_rows):
        if regular:
            cells = [str(i * 3 + k) if draw(st.integers(0, 9)) else draw(numbers)
                     for k in range(n_cols)]
        else:
            cells = draw(st.lists(numbers, min_size=0, max_size=n_cols + 1))
        rows.append(sep.join(cells))
    header = []
    if draw(st.booleans()):
        header = [sep.join(draw(st.lists(st.sampled_from(
            ["time", "time_ms", "seq", "ECG (mV)", "lead1", "leads_off", "t", "ü", "", "V5"]),
            min_size=1, max_size=n_cols + 1)))]
    if draw(st.booleans()):
        header = [draw(st.sampled_from(["# fs_hz: 250", "Fs: 0", "Sampling rate: -5",
                                        "# fs_hz: 1e9", "fs: nan", "---", "Channels:"]))] + header
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(header + rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    data = draw(st.sampled_from(BOMS)) + text.encode(encoding, "replace")
    name = draw(NAMES) + draw(st.sampled_from([".txt", ".csv", ".TXT", ".tsv", ""]))
    return name, data


@st.composite
def wfdb_sets(draw) -> dict[str, bytes]:
    """The 10-s record with its header, data or annotations cut or mangled."""
    header = BASE_HEADER
    mutation = draw(st.sampled_from(["none", "truncate-header", "field", "line", "unicode"]))
    if mutation == "truncate-header":
        header = header[: draw(st.integers(0, len(header)))]
    elif mutation == "field":
        lines = header.splitlines()
        k = draw(st.integers(0, 2))
        fields = lines[k].split(" ")
        j = draw(st.integers(0, len(fields) - 1))
        fields[j] = draw(st.sampled_from(["0", "-1", "nan", "1e99", "", "x", "99999999999",
                                          "212", "16", "8", "310", "0.0001", "../x.dat"]))
        lines[k] = " ".join(fields)
        header = "\n".join(lines) + "\n"
    elif mutation == "line":
        lines = header.splitlines()
        del lines[draw(st.integers(0, len(lines) - 1))]
        header = "\n".join(lines) + "\n"
    elif mutation == "unicode":
        header = header.replace("MLII", draw(st.text(min_size=1, max_size=5)), 1)
    dat = BASE_DAT
    if draw(st.booleans()):
        dat = dat[: draw(st.integers(0, len(dat)))]
    if draw(st.integers(0, 3)) == 0:
        dat = draw(st.binary(max_size=200))
    files = {"100.hea": header.encode("utf-8", "replace")}
    if draw(st.integers(0, 5)):
        files["100.dat"] = dat
    if draw(st.booleans()):
        atr = BASE_ATR
        if draw(st.booleans()):
            atr = atr[: draw(st.integers(0, len(atr)))]
        files["100.atr"] = atr
    if draw(st.integers(0, 6)) == 0:
        files["other.hea"] = b"other 1 360 10\n"
    return files


@st.composite
def zips(draw) -> tuple[str, bytes]:
    """Zips of records or text, with path tricks, extra or nested members, or cut short."""
    buffer = io.BytesIO()
    members: list[tuple[str, bytes]] = []
    kind = draw(st.sampled_from(["record", "text", "many", "nested", "tricks", "empty"]))
    if kind == "record":
        prefix = draw(st.sampled_from(["", "folder/", "a/b/"]))
        members = [(prefix + "100.hea", BASE_HEADER.encode()), (prefix + "100.dat", BASE_DAT)]
    elif kind == "text":
        members = [("ecg.txt", "\n".join(str(v) for v in range(50)).encode())]
    elif kind == "many":
        members = [(f"f{k}.txt", b"1\n2\n3\n") for k in range(draw(st.integers(15, 30)))]
    elif kind == "nested":
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as z:
            z.writestr("x.txt", "1\n2\n3\n")
        members = [(draw(st.sampled_from(["inner.zip", "inner.txt"])), inner.getvalue())]
    elif kind == "tricks":
        members = [(draw(st.sampled_from(["../evil.txt", "/etc/passwd", "..\\..\\x.txt",
                                           "a/../../b.txt", "C:/x.txt", "ok/../ok.txt"])),
                    b"1\n2\n3\n4\n")]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    data = buffer.getvalue()
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from(["upload.zip", "upload.ZIP", "upload.txt"])), data


# --------------------------------------------------------------------------- the readers


@FUZZ
@given(name=NAMES, ext=st.sampled_from(EXTENSIONS), data=st.binary(max_size=3000))
def test_random_bytes_never_crash_the_reader(name, ext, data):
    count("readers")
    check_reader(lambda: read_bytes(name + ext, data))


@FUZZ
@given(table=tables(), fs=st.sampled_from([None, 360.0, 0.0, -1.0, float("nan"), 1e9]))
def test_malformed_tables_never_crash_the_reader(table, fs):
    count("readers")
    name, data = table
    check_reader(lambda: read_bytes(name, data, fs=fs))


@FUZZ
@given(files=wfdb_sets())
def test_mangled_wfdb_records_never_crash_the_reader(files):
    count("readers")
    check_reader(lambda: read_files(files))


@FUZZ
@given(archive=zips())
def test_hostile_zips_never_crash_the_reader(archive):
    count("readers")
    name, data = archive
    check_reader(lambda: read_files({name: data}))


def test_a_zip_bomb_is_stopped_by_its_unpacked_size():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.txt", b"0\n" * (4 * 1024 * 1024))
    with pytest.raises(EcgError, match="limit"):
        read_files({"bomb.zip": buffer.getvalue()}, max_bytes=1024 * 1024)


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("fuzz-serve"), ["--workers", "1", "--threads", "4"])
    yield served, DashClient.over_http(served.base, timeout=120)
    log = served.log()
    served.stop()
    assert "Traceback" not in log, log


ANSWERS = ("What was understood", "This upload cannot be read", "The sampling rate is needed",
           "too large", "could not be received")


def _uploads():
    single = st.one_of(
        st.tuples(NAMES.map(lambda n: n + ".txt"), st.binary(max_size=2000)).map(lambda t: [t]),
        tables().map(lambda t: [t]),
        zips().map(lambda t: [t]),
    )
    return st.one_of(single, single, wfdb_sets().map(lambda f: list(f.items())))


def test_the_upload_callback_answers_every_malformed_upload_clearly(client):
    served, dash_client = client
    sessions = [f"fuzz-session-{k}-" + "z" * 16 for k in range(3)]

    @settings(max_examples=N_HTTP, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(files=_uploads(), session=st.sampled_from(sessions))
    def run(files, session):
        count("http")
        status, answer = dash_client.upload(session, dict(files))
        assert status == 200, (status, served.log()[-1500:])
        message = text_of(answer["response"]["up-status"]["children"])
        assert any(a in message for a in ANSWERS), message
        assert "unexpected" not in message, message  # a reader bug reached the catch-all

    run()


def test_a_non_base64_upload_is_refused_clearly(client):
    _, dash_client = client
    status, answer = dash_client.call(
        "up-status.children",
        {"up-files.contents": ["data:text/plain;base64,@@@not base64!!"],
         "up-files.filename": ["x.txt"], "session-id.data": "s-" + "q" * 20},
        ["up-files.contents"],
    )
    assert status == 200
    message = text_of(answer["response"]["up-status"]["children"])
    assert any(a in message for a in ANSWERS), message


def test_at_least_a_thousand_cases_were_run():
    if len(COUNTS) < 2:
        pytest.skip("counts the cases of the whole file: run all of tests/test_fuzz.py")
    total = sum(COUNTS.values())
    print(f"fuzz cases run: {COUNTS} total {total}")
    assert COUNTS.get("http", 0) >= N_HTTP and total >= 1000, COUNTS
