"""A folder of thousands of records (a PhysioNet Challenge set has 8,528) in the browser.

The records table draws one page at a time; sorting and filtering still see every row.
"""

from __future__ import annotations

import pytest
from conftest import browser_users, serve_in_thread

pytestmark = pytest.mark.browser

N_RECORDS = 250


@pytest.fixture(scope="module")
def many_url(tmp_path_factory):
    from dashboard.app import create_app
    from dashboard.components.records_table import PAGE_SIZE
    from dashboard.config import Config
    from ecgcore.catalog import SAMPLES_DIR

    assert PAGE_SIZE < N_RECORDS
    folder = tmp_path_factory.mktemp("many-records")
    header = (SAMPLES_DIR / "100.hea").read_text()
    for i in range(1, N_RECORDS + 1):
        name = f"R{i:04d}"
        (folder / f"{name}.dat").symlink_to(SAMPLES_DIR / "100.dat")
        (folder / f"{name}.hea").write_text(header.replace("100", name, 1)
                                            .replace("100.dat", f"{name}.dat"))
    with serve_in_thread(create_app(Config(records_dir=folder, debug=False))) as url:
        yield url


@pytest.fixture()
def many_web(chromium, many_url):
    with browser_users(chromium, many_url) as make:
        yield make()


def test_a_large_folder_draws_one_page_and_filters_over_all_records(many_web):
    from dashboard.components.records_table import PAGE_SIZE

    many_web.goto("/records")
    many_web.page.wait_for_selector("#records-table .dash-cell")
    assert f"{N_RECORDS} record(s)" in many_web.page.inner_text("body")
    links = many_web.page.locator("#records-table a[href^='/record/']")
    assert links.count() == PAGE_SIZE
    # The last record is on the last page; the name filter finds it from the first, typed
    # in lower case (the filter is case-blind).
    assert many_web.page.locator(f"#records-table a[href='/record/R{N_RECORDS:04d}']").count() == 0
    many_web.page.locator("#records-table th.dash-filter input").first.fill(f"r{N_RECORDS:04d}")
    many_web.page.keyboard.press("Enter")
    target = many_web.page.locator(f"#records-table a[href='/record/R{N_RECORDS:04d}']")
    target.wait_for()
    assert links.count() == 1
    target.click()
    many_web.page.wait_for_selector("#rec-beats td")
    many_web.check_clean()
