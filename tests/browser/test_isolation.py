"""Two browser users of the production server (gunicorn, two workers) never share uploads.

Alice uploads a record in one browser context; Bob, in another (his own session storage,
so his own session id), is refused it at every door that takes a record id: the record
view and the explain page, even with the exact address. Alice keeps it across reloads.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dash_client import Served  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MITDB = Path(os.environ.get("ECG_MITDB_DIR", REPO.parent / "shared" / "data" / "mitdb"))
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser


class Watched:
    """A page whose console errors and off-machine requests are recorded (as conftest's)."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.console_errors: list[str] = []
        self.off_machine: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda error: self.console_errors.append(f"pageerror: {error}"))
        page.route("**/*", self._route)

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in {"127.0.0.1",
                                                                             "localhost"}:
            route.continue_()
        else:
            self.off_machine.append(url)
            route.abort()

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def check_clean(self) -> None:
        assert not self.off_machine, f"requests left the machine: {self.off_machine}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("isolation"), ["--workers", "2", "--threads", "2"],
                    {"ECG_MITDB_DIR": str(MITDB)})
    yield served.base
    served.stop()


@pytest.fixture()
def users(chromium, gunicorn_url):
    contexts = []

    def make() -> Watched:
        context = chromium.get().new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(120_000)
        contexts.append(context)
        return Watched(context.new_page(), gunicorn_url)

    yield make
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()


def test_an_upload_in_one_context_is_not_reachable_from_another(users):
    alice, bob = users(), users()
    alice.goto("/upload")
    alice.page.set_input_files("#up-files input[type=file]",
                               [str(MITDB / f"100.{ext}") for ext in ("hea", "dat", "atr")])
    alice.page.wait_for_selector("#up-understood")
    alice.page.click("#up-open")
    alice.page.wait_for_url(re.compile(r".*/record/upload-"))
    alice.page.wait_for_selector("#rec-wave .scatterlayer .trace")
    url = alice.page.url
    record_id = url.rsplit("/", 1)[1]
    assert len(record_id) > len("upload-") + 20  # an unguessable token

    # Bob, with the exact address, in the record view and in the explain page.
    bob.goto(f"/record/{record_id}")
    bob.page.wait_for_selector("#rec-alerts .alert")
    assert "not available in this browser session" in bob.page.inner_text("#rec-alerts")
    assert bob.page.locator("#rec-wave .scatterlayer .trace").count() == 0
    bob.goto(f"/explain?record={record_id}&beat=3")
    bob.page.wait_for_selector("#explain-body .alert")
    assert "not available in this browser session" in bob.page.inner_text("#explain-body")
    bob.shot("isolation-other-session")
    bob.check_clean()

    # Alice still has it after a reload (her tab keeps its session id).
    alice.page.reload()
    alice.page.wait_for_selector("#rec-wave .scatterlayer .trace")
    assert "sensitivity" in alice.page.inner_text("#rec-summary")
    alice.check_clean()
