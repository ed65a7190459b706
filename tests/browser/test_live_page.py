"""The Live page in a real browser: simulator -> beats labelled on the page -> Stop -> record view.

The app runs as ``ecg serve`` does by default (gunicorn, several worker processes: the
stream runs in one, the polls reach any); the chromium fixtures are those of
``tests/browser/conftest.py``. The simulator plays MIT-BIH 119 (N and V beats) at real
speed through a pseudo-terminal. A second pseudo-terminal stands for a board running an
AD8232 example sketch (bare values, one per line), offered to the page as a serial port.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time

import numpy as np
import pytest
import wfdb
from conftest import MITDB
from dash_client import Served, children_of

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def plain_board():
    """A pseudo-terminal for a board printing bare values: (master fd, the port's path)."""
    master, slave = os.openpty()
    os.set_blocking(master, False)  # nobody reading: lines are lost, as on a real board
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, plain_board):
    """``ecg serve`` with its default workers and threads, on a free local port."""
    served = Served(tmp_path_factory.mktemp("live-serve"), [],
                    {"ECG_MITDB_DIR": str(MITDB), "ECG_SERVE_WORKERS": "",
                     "ECG_SERVE_THREADS": "", "ECG_LIVE_PORTS": plain_board[1]})
    try:
        assert len(children_of(served.process.pid)) >= 2, served.log()
        yield served.base
    finally:
        assert served.stop() == 0
        log = served.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-4000:]

BEATS_WANTED = 8
N_BEATS = "() => parseInt(document.querySelector('#live-nbeats').textContent) || 0"
GRAPH_STATE = """() => {
  const g = document.querySelector('#live-graph .js-plotly-plot');
  if (!g || !g._fullData || g._fullData.length < 3) return null;
  return {n: g._fullData[0].x.length, labels: Array.from(g._fullData[1].text || []),
          binary: g._fullData[2].x.length, range: g._fullLayout.xaxis.range};
}"""


def status(web) -> str:
    """What the page says about the stream (for failure messages)."""
    return " | ".join(
        web.page.inner_text(selector)
        for selector in ("#live-state", "#live-nbeats", "#live-control", "#live-messages")
    )


def test_simulated_beats_arrive_labelled_then_stop_opens_the_saved_record(web, new_web):
    web.goto("/live")
    web.page.wait_for_selector("#live-start")
    web.page.wait_for_function(
        "() => document.querySelector('#live-record')?.textContent.includes('119')"
    )
    polls = []

    def measure(request) -> None:
        # The size of each poll's answer: the visible window and the beats, never more.
        if "/_dash-update-component" in request.url and "live-interval" in (
                request.post_data or ""):
            polls.append(request.sizes()["responseBodySize"])

    web.page.on("requestfinished", measure)
    web.page.click("#live-start")
    try:
        # The first Start in a fresh worker waits for it to load and compile the models,
        # which takes a minute or more when the two workers boot on a busy machine.
        web.page.wait_for_function(f"() => ({N_BEATS})() >= {BEATS_WANTED}", timeout=240_000)
    except Exception:
        web.shot("live-no-beats")
        raise AssertionError(f"no beats: {status(web)}") from None

    # Beats are labelled by both models, in the table and on the graph.
    rows = web.page.locator("#live-beats-table .live-beat-row")
    assert rows.count() >= 5
    first_row = [rows.nth(0).locator("td").nth(i).inner_text() for i in range(5)]
    assert re.fullmatch(r"[NSVFQ] \(\d+%\)", first_row[1]), first_row
    assert re.fullmatch(r"(normal|abnormal) \(\d+%\)( \(AAMI [NSVFQ]\))?", first_row[2]), first_row
    assert re.fullmatch(r"\d+ ms", first_row[3]), first_row
    graph = web.page.evaluate(GRAPH_STATE)
    assert graph["n"] > 500, graph  # the last seconds of signal are drawn
    assert graph["binary"] >= 3 and set(graph["labels"]) <= set("NSVFQ") and graph["labels"]
    assert 0 < graph["range"][1] - graph["range"][0] <= 10.5  # a scrolling 10 s window

    latency = web.page.inner_text("#live-latency")
    found = re.search(r"median (\d+) ms, p95 (\d+) ms \((\d+) beats\)", latency)
    assert found, latency
    median_ms, p95_ms, n = (int(v) for v in found.groups())
    print(f"\nlive page latency: median {median_ms} ms, p95 {p95_ms} ms over {n} beats")
    assert 0 < median_ms <= p95_ms and n >= 3
    sizes = sorted(polls)
    print(f"poll answers: {len(sizes)}, median {sizes[len(sizes) // 2] / 1024:.1f} kB, "
          f"largest {sizes[-1] / 1024:.1f} kB")
    assert len(sizes) > 10 and sizes[-1] < 64 * 1024
    assert web.page.inner_text("#live-leads") == "leads on"
    assert "bpm" in web.page.inner_text("#live-hr")
    web.shot("live-running")

    web.page.click("#live-stop")
    web.page.wait_for_selector("#live-open", timeout=30_000)
    assert web.page.inner_text("#live-state") == "stopped"
    web.shot("live-stopped")
    web.page.click("#live-open")
    web.page.wait_for_url(re.compile(r".*/record/upload-"))
    web.page.wait_for_function(
        "() => document.querySelector('#rec-title')?.textContent.includes('Live recording')"
    )
    web.page.wait_for_selector("#rec-wave .scatterlayer .trace")
    web.page.wait_for_selector("#rec-summary-counts")
    web.shot("live-saved-record")
    web.check_clean()

    # Another browser session cannot open this recording, even knowing its address.
    other = new_web()
    other.page.goto(web.page.url)
    other.page.wait_for_function(
        "() => document.querySelector('#rec-alerts')?.textContent.includes('not available')"
    )


def choose(web, dropdown: str, text: str) -> None:
    """Open a dcc.Dropdown and click its option whose label holds ``text``."""
    web.page.click(dropdown)
    web.page.locator(".dash-dropdown-content [role=option]", has_text=text).first.click()


def test_a_board_printing_bare_values_streams_at_the_rate_given(web, plain_board):
    master, port = plain_board
    mv = wfdb.rdrecord(str(MITDB / "100"), sampto=60 * 360, channels=[0]).p_signal[:, 0]
    counts = np.clip(np.round(512 + 200 * mv), 0, 1023).astype(int)
    stop = threading.Event()

    def board():
        # analogRead values at 360 Hz in real time, as `Serial.println` sends them.
        k = 0
        while not stop.is_set() and k < counts.size:
            with contextlib.suppress(BlockingIOError):
                os.write(master, b"".join(b"%d\r\n" % v for v in counts[k : k + 36]))
            k += 36
            time.sleep(0.1)

    web.goto("/live")
    web.page.wait_for_selector("#live-start")
    choose(web, "#live-source", port)
    web.page.wait_for_selector("#live-plain-fs", state="visible")
    choose(web, "#live-baud", "9600")
    web.page.fill("#live-plain-fs", "360")
    thread = threading.Thread(target=board, daemon=True)
    thread.start()
    try:
        web.page.click("#live-start")
        try:
            web.page.wait_for_function(f"() => ({N_BEATS})() >= {BEATS_WANTED}",
                                       timeout=240_000)
        except Exception:
            web.shot("live-plain-no-beats")
            raise AssertionError(f"no beats: {status(web)}") from None
        messages = web.page.inner_text("#live-messages")
        assert "plain stream" in messages and "360 Hz" in messages, messages
        assert "9600 baud" in messages, messages
        rows = web.page.locator("#live-beats-table .live-beat-row")
        assert re.fullmatch(r"[NSVFQ] \(\d+%\)", rows.nth(0).locator("td").nth(1).inner_text())
        assert "bpm" in web.page.inner_text("#live-hr")
        web.shot("live-plain-running")
        web.page.click("#live-stop")
        web.page.wait_for_selector("#live-open", timeout=30_000)
        web.check_clean()
    finally:
        stop.set()
        thread.join(5)
