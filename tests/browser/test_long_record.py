"""A long recording in a real browser: analysed in the background on its first opening.

A Holter file takes about a minute to analyse; its page must not sit blank meanwhile. The
app here counts a recording as long from 10 minutes on (``Config.background_after_s``),
so a 25-minute stretch of MIT-BIH 119 takes the long path in a few seconds.
"""

from __future__ import annotations

import pytest
from conftest import MITDB, browser_users, serve_in_thread

pytestmark = pytest.mark.browser

RECORD = "long119"
MINUTES = 25
EXPLAINED = "long119b"


@pytest.fixture(scope="module")
def long_app_url(tmp_path_factory):
    """The dashboard over a folder holding one 25-minute record, long from 10 minutes."""
    import wfdb

    from dashboard.app import create_app
    from dashboard.config import Config
    from ecgcore.cache import analysis_cached, analysis_key, cache_dir
    from ecgcore.io import read

    folder = tmp_path_factory.mktemp("long-records")
    for name, minutes in ((RECORD, MINUTES), (EXPLAINED, MINUTES - 1)):
        source = wfdb.rdrecord(str(MITDB / "119"), sampto=minutes * 60 * 360)
        wfdb.wrsamp(name, fs=360, units=source.units, sig_name=source.sig_name,
                    p_signal=source.p_signal, fmt=["212", "212"], adc_gain=[200.0, 200.0],
                    baseline=[1024, 1024], write_dir=str(folder))
        # Content-keyed: a run before this one left its analysis in the cache.
        key = analysis_key(read(str(folder / name)))
        for path in (cache_dir() / "analyses").glob(f"{key}.*"):
            path.unlink()
        assert not analysis_cached(key)
    app = create_app(Config(records_dir=folder, background_after_s=600.0, debug=False))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture()
def long_web(chromium, long_app_url):
    with browser_users(chromium, long_app_url) as make:
        yield make()


def test_a_long_recording_says_how_far_its_first_analysis_is_then_is_drawn(long_web):
    long_web.goto(f"/record/{RECORD}")
    # The page arrives at once, saying what it is doing, before any analysis is done.
    long_web.page.wait_for_selector("#rec-progress")
    text = long_web.page.inner_text("#rec-progress")
    assert f"Analysing this {MINUTES / 60:.1f}-hour recording on its first opening" in text
    assert "MLII, V1" in long_web.page.inner_text("body")
    long_web.shot("long-record-pending")
    # Once done, the page reloads itself, drawn, with the analysis just made.
    long_web.page.wait_for_selector("#rec-beats td")
    long_web.page.wait_for_selector("#rec-wave .scatterlayer .trace")
    assert long_web.page.query_selector("#rec-progress") is None
    assert "analysed on first opening" in long_web.page.inner_text("#rec-info")
    long_web.check_clean()


def test_a_long_recording_already_analysed_opens_drawn(long_web, new_long_web):
    long_web.goto(f"/record/{RECORD}")
    long_web.page.wait_for_selector("#rec-beats td")
    # Another browser: the analysis is in the server's memory and on disk by now.
    other = new_long_web()
    other.goto(f"/record/{RECORD}")
    other.page.wait_for_selector("#rec-beats td")
    assert other.page.query_selector("#rec-progress") is None
    other.check_clean()


def test_explaining_a_beat_of_a_long_recording_not_analysed_yet_points_to_its_view(long_web):
    import time

    long_web.goto(f"/explain?record={EXPLAINED}&beat=5")
    pending = long_web.page.wait_for_selector("#explain-pending")
    assert "being analysed on its first opening" in pending.inner_text()
    assert long_web.page.locator(f"#explain-pending a[href='/record/{EXPLAINED}']").count() == 1
    # The analysis it started runs on; once done, the same address explains the beat.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(2)
        long_web.goto(f"/explain?record={EXPLAINED}&beat=5")
        long_web.page.wait_for_selector("#explain-pending, #explain-neighbours")
        if long_web.page.query_selector("#explain-neighbours"):
            break
    assert long_web.page.query_selector("#explain-neighbours") is not None
    long_web.check_clean()


@pytest.fixture()
def new_long_web(chromium, long_app_url):
    with browser_users(chromium, long_app_url) as make:
        yield make
