"""Call the dashboard's Dash callbacks as the browser does, without a browser.

The request body is what Dash's renderer posts to ``/_dash-update-component``: the
callback's output key from ``/_dash-dependencies``, its outputs, inputs and state with
their values, and which inputs changed.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

UPDATE = "/_dash-update-component"


def upload_contents(data: bytes, mime: str = "application/octet-stream") -> str:
    """A file as ``dcc.Upload`` puts it in ``contents``: a base64 data URL."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


class DashClient:
    """Posts callback requests through ``post(path, body) -> (status, text)``.

    Parameters
    ----------
    post : callable
        Sends a JSON body to a path of the app (over HTTP, or Flask's test client).
    get : callable
        ``get(path) -> (status, text)``.
    """

    def __init__(self, post, get) -> None:
        self._post = post
        deps_status, text = get("/_dash-dependencies")
        assert deps_status == 200, deps_status
        self.deps = json.loads(text)

    @classmethod
    def over_http(cls, base: str, timeout: float = 300.0) -> DashClient:
        """A client of a server at ``base`` (``http://127.0.0.1:PORT``), one connection per call."""

        def send(path: str, body: bytes | None) -> tuple[int, str]:
            request = urllib.request.Request(
                base + path, data=body,
                headers={"Content-Type": "application/json"} if body is not None else {},
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return response.status, response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode("utf-8", "replace")

        return cls(lambda path, body: send(path, json.dumps(body).encode()),
                   lambda path: send(path, None))

    @classmethod
    def flask(cls, server) -> DashClient:
        """A client of a Flask app (``app.server``) through its test client."""
        client = server.test_client()

        def post(path: str, body: Any) -> tuple[int, str]:
            response = client.post(path, json=body)
            return response.status_code, response.get_data(as_text=True)

        def get(path: str) -> tuple[int, str]:
            response = client.get(path)
            return response.status_code, response.get_data(as_text=True)

        return cls(post, get)

    def dependency(self, output_part: str) -> dict:
        """The callback whose output key contains ``output_part`` (e.g. ``up-status.``)."""
        found = [d for d in self.deps if output_part in d["output"]]
        assert len(found) == 1, (output_part, [d["output"] for d in found])
        return found[0]

    def call(self, output_part: str, values: dict[str, Any],
             changed: list[str]) -> tuple[int, Any]:
        """Run a callback; ``values`` maps ``"id.property"`` to the value (missing: None).

        Returns the HTTP status and the decoded JSON response (None when empty: 204).
        """
        dep = self.dependency(output_part)
        outputs = []
        for part in dep["output"].strip(".").split("..."):
            ident, _, prop = part.rpartition(".")
            outputs.append({"id": ident, "property": prop.split("@")[0]})

        def with_values(items):
            out = []
            for item in items:
                key = f"{item['id']}.{item['property']}"
                out.append({**item, "value": values.get(key)})
            return out

        body = {
            "output": dep["output"],
            "outputs": outputs if len(outputs) > 1 or dep["output"].startswith("..")
            else outputs[0],
            "inputs": with_values(dep["inputs"]),
            "state": with_values(dep["state"]),
            "changedPropIds": changed,
        }
        status, text = self._post(UPDATE, body)
        return status, (json.loads(text) if text.strip() and status == 200 else text)

    def upload(self, session_id: str, files: dict[str, bytes]) -> tuple[int, Any]:
        """Drop ``files`` on the upload page's zone, as that session's tab."""
        return self.call(
            "up-status.children",
            {"up-files.contents": [upload_contents(d) for d in files.values()],
             "up-files.filename": list(files), "session-id.data": session_id},
            ["up-files.contents"],
        )

    def open_record(self, session_id: str, record_id: str) -> tuple[int, Any]:
        """Open the record view of ``record_id`` as that session's tab."""
        return self.call(
            "rec-info.children",
            {"rec-id.data": record_id, "session-id.data": session_id,
             "rec-layers.value": []},
            ["rec-id.data"],
        )


def text_of(component: Any) -> str:
    """All the text in a Dash component tree (as JSON), for assertions."""
    if isinstance(component, str):
        return component
    if isinstance(component, list):
        return " ".join(text_of(c) for c in component)
    if isinstance(component, dict):
        return text_of(component.get("props", {}).get("children", ""))
    return "" if component is None else str(component)


def record_id_in(component: Any) -> str | None:
    """The ``/record/upload-...`` id an upload's answer links to, if any."""
    text = json.dumps(component)
    marker = '"/record/'
    start = text.find(marker)
    if start < 0:
        return None
    return text[start + len(marker): text.index('"', start + len(marker))]


# --------------------------------------------------------------------------- a served app


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (gunicorn's workers)."""
    from pathlib import Path

    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


class Served:
    """``ecg serve`` started as a subprocess on a free loopback port, with its log.

    Parameters
    ----------
    folder : Path
        Where the session store and the log go.
    args : list of str
        More ``ecg serve`` options (``--workers``, ``--threads``).
    env : dict
        More environment variables (``ECG_MITDB_DIR``...).
    """

    def __init__(self, folder, args=(), env=None, timeout_s: float = 240.0) -> None:
        import os
        import subprocess
        import sys
        import time
        from pathlib import Path

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sessions = Path(folder) / "sessions"
        self.log_path = Path(folder) / "serve.log"
        environment = {**os.environ, "ECG_SESSIONS_DIR": str(self.sessions), **(env or {})}
        environment.pop("ECG_REDIS_URL", None)
        ecg = Path(sys.executable).parent / "ecg"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(ecg), "serve", "--port", str(self.port), *args],
            env=environment, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.base + "/_dash-dependencies",
                                            timeout=10) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ecg serve did not start:\n{self.log()}")
            time.sleep(0.5)

    def log(self) -> str:
        """The end of the server's log."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait (kill if it does not stop); the exit status."""
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()
        return self.process.returncode
