"""Browser tests: the dashboard served from a thread, driven by Debian's chromium.

Every page is loaded in a real browser with every request that would leave the machine
blocked and recorded (a test fails if one is attempted) and the console watched for errors.
Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
from system_tools import require_system_tool

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
MITDB = Path(os.environ.get("ECG_MITDB_DIR", SHARED_DATA / "mitdb"))
ARDUINO = SHARED_DATA / "arduino"
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = Path(os.environ.get("ECG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="session")
def app_url():
    """The dashboard on a free local port, all 48 MIT-BIH records offered."""
    from dashboard.app import create_app
    from dashboard.config import Config

    os.environ["ECG_MITDB_DIR"] = str(MITDB)
    with serve_in_thread(create_app(Config(records_dir=MITDB, debug=False))) as url:
        yield url


@contextlib.contextmanager
def serve_in_thread(app):
    """A Dash app served from a thread of this process on a free local port; yields its
    base URL and stops it afterwards."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dash-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


class Chromium:
    """Debian's headless chromium, relaunched if it ever dies (one crash, one test)."""

    def __init__(self, playwright, tmp: Path) -> None:
        self.playwright = playwright
        self.tmp = tmp
        self.browser = None

    def get(self):
        if self.browser is None or not self.browser.is_connected():
            self.tmp.mkdir(parents=True, exist_ok=True)
            self.browser = self.playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
                env={**os.environ, "TMPDIR": str(self.tmp)},
            )
        return self.browser

    def close(self) -> None:
        if self.browser is not None and self.browser.is_connected():
            self.browser.close()


@pytest.fixture(scope="session")
def chromium():
    """One headless Debian chromium for the session (never `playwright install`)."""
    require_system_tool(
        CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    )
    from playwright.sync_api import sync_playwright

    # A folder of this session only: two test runs at once must not share (or delete)
    # each other's chromium sockets and profiles.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="chromium-tmp-", dir=ARTIFACTS))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        holder = Chromium(playwright, tmp)
        yield holder
        holder.close()
    shutil.rmtree(tmp, ignore_errors=True)


class Watched:
    """A page whose console errors and off-machine requests are recorded."""

    def __init__(self, page, base: str) -> None:
        self.page = page
        self.base = base
        self.console_errors: list[str] = []
        self.off_machine: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(f"pageerror: {error}"))
        page.route("**/*", self._route)

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            self.off_machine.append(route.request.url)
            route.abort()

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        # The viewport only: full-page captures of long pages crashed software-rendering
        # chromium here now and then.
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def check_clean(self) -> None:
        assert not self.off_machine, f"requests left the machine: {self.off_machine}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


@contextlib.contextmanager
def browser_users(chromium, base: str, timeout_ms: float = 90_000):
    """Yields ``make() -> Watched``: each call opens a fresh browser context on ``base``
    (its own session storage, so its own session id: another user). All are closed
    afterwards."""
    contexts = []

    def make() -> Watched:
        context = chromium.get().new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(timeout_ms)
        contexts.append(context)
        return Watched(context.new_page(), base)

    try:
        yield make
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):  # the browser may have died with the test
                context.close()


@pytest.fixture()
def web(chromium, app_url):
    """A fresh browser context (its own session storage, so its own session id)."""
    with browser_users(chromium, app_url) as make:
        yield make()


@pytest.fixture()
def new_web(chromium, app_url):
    """Open another, independent browser context (another user)."""
    with browser_users(chromium, app_url) as make:
        yield make
