"""Two browser users of the production server (gunicorn, two workers) never share uploads.

Alice uploads a record in one browser context; Bob, in another (his own session storage,
so his own session id), is refused it at every door that takes a record id: the record
view and the explain page, even with the exact address. Alice keeps it across reloads.
"""

from __future__ import annotations

import re

import pytest
from conftest import MITDB, browser_users
from dash_client import Served

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("isolation"), ["--workers", "2", "--threads", "2"],
                    {"ECG_MITDB_DIR": str(MITDB)})
    yield served.base
    served.stop()


@pytest.fixture()
def users(chromium, gunicorn_url):
    with browser_users(chromium, gunicorn_url, timeout_ms=120_000) as make:
        yield make


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
