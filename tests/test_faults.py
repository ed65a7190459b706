"""Faults: missing or corrupt model files, truncated record data.

Each must give one clear message where the user meets it: ``ModelError`` from the loader,
a one-line refusal (exit 2, nothing started) from ``ecg serve``, and an alert in the record
view for a record whose data file is cut short.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from dash_client import DashClient, Served, record_id_in, text_of

from dashboard.serve import check_models, packaged_models_dir, serve_main
from ecgcore.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "mitdb"
MODELS = packaged_models_dir()


def broken_models(tmp_path: Path, how: str) -> Path:
    """A copy of the model folder with ``binary.keras`` missing, garbage or cut short."""
    folder = tmp_path / f"models-{how}"
    folder.mkdir()
    for name in ("binary.keras", "aami.keras"):
        shutil.copy(MODELS / name, folder / name)
    target = folder / "binary.keras"
    if how == "missing":
        target.unlink()
    elif how == "garbage":
        target.write_bytes(b"this is not a keras archive\n" * 100)
    elif how == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif how == "no-weights":
        with zipfile.ZipFile(MODELS / "binary.keras") as src, \
                zipfile.ZipFile(target, "w") as dst:
            for info in src.infolist():
                if info.filename != "model.weights.h5":
                    dst.writestr(info, src.read(info))
    return folder


FAULTS = {
    "missing": "is missing",
    "garbage": "corrupt",
    "truncated": "corrupt",
    "no-weights": "model.weights.h5",
}


@pytest.mark.parametrize("how", list(FAULTS))
def test_the_start_up_check_names_the_file_and_the_fault(tmp_path, how):
    folder = broken_models(tmp_path, how)
    with pytest.raises(ModelError, match=FAULTS[how]) as error:
        check_models(folder)
    assert "binary.keras" in str(error.value) and "\n" not in str(error.value)
    check_models(MODELS)  # the packaged files pass


@pytest.mark.parametrize("how", ["missing", "garbage", "truncated"])
def test_the_loader_raises_model_error(tmp_path, how):
    from ecgcore.inference import load_classifiers

    with pytest.raises(ModelError, match="binary.keras") as error:
        load_classifiers(broken_models(tmp_path, how))
    assert "ecg train" in str(error.value)


def test_serve_refuses_to_start_with_one_clear_line(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status = serve_main(["--port", str(port)], models_dir=broken_models(tmp_path, "garbage"))
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("ecg serve: error: the binary classifier's model file")
    assert len(err.splitlines()) == 1
    with socket.socket() as s:  # nothing was started on the port
        s.bind(("127.0.0.1", port))


def test_ecg_serve_refuses_an_unreachable_redis_in_one_line(tmp_path):
    ecg = Path(sys.executable).parent / "ecg"
    out = subprocess.run([str(ecg), "serve", "--port", "1"], capture_output=True, text=True,
                         timeout=120, env={"ECG_REDIS_URL": "redis://127.0.0.1:1/0",
                                           "ECG_SESSIONS_DIR": str(tmp_path),
                                           "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert "ECG_REDIS_URL" in out.stderr and "cannot be reached" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def truncated_server(tmp_path_factory):
    records = tmp_path_factory.mktemp("records")
    shutil.copy(MITDB / "100.hea", records / "100.hea")
    (records / "100.dat").write_bytes((MITDB / "100.dat").read_bytes()[:100_000])
    served = Served(tmp_path_factory.mktemp("serve"), ["--workers", "1", "--threads", "2"],
                    {"ECG_MITDB_DIR": str(records)})
    yield served
    served.stop()


def test_a_truncated_record_gives_a_clear_message_in_the_record_view(truncated_server):
    client = DashClient.over_http(truncated_server.base)
    status, answer = client.open_record("someone-" + "x" * 20, "100")
    assert status == 200, truncated_server.log()
    alert = text_of(answer["response"]["rec-alerts"]["children"])
    assert "100.dat is shorter than its header says" in alert and "truncated" in alert
    assert answer["response"]["rec-ready"]["data"] is None


def test_a_truncated_upload_gives_a_clear_message(truncated_server):
    client = DashClient.over_http(truncated_server.base)
    files = {"100.hea": (MITDB / "100.hea").read_bytes(),
             "100.dat": (MITDB / "100.dat").read_bytes()[:4001]}
    status, answer = client.upload("someone-" + "y" * 20, files)
    assert status == 200
    message = text_of(answer["response"]["up-status"]["children"])
    assert message.startswith("This upload cannot be read:") and "shorter" in message
    assert record_id_in(answer) is None
    assert "Traceback" not in truncated_server.log()
