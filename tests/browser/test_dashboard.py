"""The dashboard in a real browser: pages, record 208, zoom, uploads, explanations."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
MITDB = Path(os.environ.get("ECG_MITDB_DIR", SHARED_DATA / "mitdb"))
ARDUINO = SHARED_DATA / "arduino"

pytestmark = pytest.mark.browser

WAVE_DRAWN = """() => {
  const g = document.querySelector('#rec-wave .js-plotly-plot');
  return !!(g && g._fullData && g._fullData.length && g.layout.meta && g.layout.meta.view
            && g.querySelectorAll('.scatterlayer .trace').length > 0);
}"""
WAVE_STATE = """() => {
  const g = document.querySelector('#rec-wave .js-plotly-plot');
  const x = g.calcdata[0].map(c => c.x);
  const steps = x.slice(1).map((v, i) => v - x[i]).sort((a, b) => a - b);
  return {names: g._fullData.map(t => t.name), view: g.layout.meta.view,
          detail: g.layout.meta.detail, n: x.length,
          median_step: steps.length ? steps[Math.floor(steps.length / 2)] : null,
          texts: g.querySelectorAll('.textpoint').length,
          markers: g.querySelectorAll('.scatterlayer .point').length};
}"""


def wait_wave(web, predicate: str = "true") -> dict:
    """Wait for the waveform to be drawn and ``predicate`` (JS on its state) to hold."""
    web.page.wait_for_function(WAVE_DRAWN)
    web.page.wait_for_function(
        f"() => {{ const s = ({WAVE_STATE})(); return {predicate}; }}"
    )
    return web.page.evaluate(WAVE_STATE)


@pytest.mark.parametrize(
    ("path", "ready"),
    [
        ("/", "#records-table .dash-cell"),
        ("/records", "#records-table .dash-cell"),
        ("/record/100", "#rec-wave .scatterlayer .trace"),
        ("/upload", "#up-files"),
        ("/models", "h2"),
        ("/explain", "#explain-record"),
    ],
)
def test_every_page_loads_without_console_errors(web, path, ready):
    web.goto(path)
    web.page.wait_for_selector(ready)
    web.page.wait_for_load_state("networkidle")
    web.shot("page" + (path.replace("/", "-") if path != "/" else "-root"))
    web.check_clean()


def test_records_page_lists_all_48_and_opens_a_record(web):
    web.goto("/records")
    web.page.wait_for_selector("#records-table .dash-cell")
    text = web.page.inner_text("#records-table")
    assert "48 record(s)" in web.page.inner_text("body")
    assert "Ventricular trigeminy" in text and "Digoxin" in text
    web.page.click("#records-table a[href='/record/208']")
    web.page.wait_for_url(re.compile(r".*/record/208$"))
    wait_wave(web)
    web.check_clean()


def test_record_208_shows_waveform_markers_and_labels(web):
    web.goto("/record/208")
    state = wait_wave(web, "s.texts > 20")
    names = set(state["names"])
    assert "MLII" in names
    assert {"P waves", "QRS waves", "T waves", "R peaks", "reference"} <= names
    assert state["detail"] and state["markers"] > 50
    # The colour key says what the marks and labels mean (plotly's legend is off).
    key = web.page.inner_text("#rec-key")
    assert all(word in key for word in ("P", "QRS", "T", "AAMI model", "binary", "disagreement"))
    # The summary has the reference counts of 208 and per-record detection figures.
    summary = web.page.inner_text("#rec-summary")
    assert "992" in summary and "sensitivity" in summary
    # A beat table row moves the view there.
    web.page.wait_for_selector("#rec-beats td")
    web.page.click("#rec-beats-next")
    web.page.wait_for_function(
        "() => document.querySelector('#rec-beats-page-label').textContent.includes('page 2')")
    web.page.click("#rec-beats-next")
    web.page.wait_for_function(
        "() => document.querySelector('#rec-beats-page-label').textContent.includes('page 3')")
    assert web.page.inner_text("#rec-beats tbody tr:nth-child(3) td:nth-child(1)") == "26"
    web.page.click("#rec-beats tbody tr:nth-child(3) td:nth-child(2)")
    moved = wait_wave(web, "s.view[0] > 5")
    assert moved["detail"]
    # The clicked beat is selected, with a link to explain it.
    web.page.wait_for_selector("#rec-explain-a")
    assert web.page.get_attribute("#rec-explain-a", "href").startswith("/explain?record=208")
    web.shot("record-208")
    web.check_clean()


def test_another_lead_can_be_analysed(web):
    # MIT-BIH 114 records V5 first and MLII second: MLII, the models' lead, is analysed.
    web.goto("/record/114")
    wait_wave(web)
    assert "beats on MLII" in web.page.inner_text("#rec-info")
    chooser = web.page.inner_text("#rec-analysed-lead")
    assert "Analysed lead: MLII" in chooser and "V5" in chooser
    web.page.click("#rec-analysed-lead a.rec-analyse-lead")
    web.page.wait_for_function(
        "() => document.querySelector('#rec-info')?.textContent.includes('beats on V5')")
    assert web.page.url.endswith("/record/114?lead=V5")
    assert "Analysed lead: V5" in web.page.inner_text("#rec-analysed-lead")
    # The beats' explanations are of this analysis.
    web.page.wait_for_selector("#rec-beats a[href*='/explain?record=114']")
    href = web.page.get_attribute("#rec-beats a[href*='/explain?record=114']", "href")
    assert href.endswith("&lead=V5"), href
    web.check_clean()


def test_record_view_opened_by_its_address_comes_drawn_with_the_layout(web):
    """No routing or loading callback before the figures; light, compressed scripts."""
    requests, responses = [], {}
    web.page.on("request", lambda r: requests.append(r))
    web.page.on("response", lambda r: responses.__setitem__(r.url, r))
    web.goto("/record/208")
    wait_wave(web, "s.texts > 20")
    web.page.wait_for_selector("#rec-beats td")
    web.page.wait_for_selector("#rec-summary table")
    outputs = [json.loads(r.post_data or "{}").get("output", "") for r in requests
               if "_dash-update-component" in r.url]
    assert not [o for o in outputs if "_pages_content" in o or "rec-info" in o], outputs
    scripts = [r.url for r in requests if r.resource_type == "script"]
    assert not [u for u in scripts if "polyfill" in u], scripts
    # dcc.Graph's chunk comes with the page's scripts, versioned, not after the layout.
    chunks = [(u, i) for i, u in enumerate(scripts) if "async-graph" in u]
    assert len(chunks) == 1 and ".v" in chunks[0][0], scripts
    layout_request = next(i for i, r in enumerate(requests) if "_dash-layout" in r.url)
    chunk_request = next(i for i, r in enumerate(requests) if "async-graph" in r.url)
    assert chunk_request < layout_request
    plotly = [u for u in scripts if "plotly" in u]
    assert len(plotly) == 1, plotly
    headers = responses[plotly[0]].headers
    assert headers.get("content-encoding") in {"zstd", "br", "gzip"}, headers
    assert "immutable" in headers.get("cache-control", ""), headers
    web.check_clean()


def test_record_201_shows_af_episodes_burden_and_hrv(web):
    import re

    web.goto("/record/201")
    web.page.wait_for_selector("#rec-summary-af", timeout=120_000)
    burden = float(re.search(r"burden ([0-9.]+) %", web.page.inner_text("#rec-summary-af"))[1])
    # 201 is about a third atrial fibrillation by its reference annotations.
    assert 15.0 < burden < 60.0
    assert "Atrial fibrillation" in web.page.inner_text("#rec-summary-rhythm")
    assert "SDNN" in web.page.inner_text("#rec-summary-hrv")
    web.shot("record-201-rhythm")
    web.check_clean()



def test_record_201_analysis_downloads_as_csv_and_json(web):
    import pandas as pd

    web.goto("/record/201")
    web.page.wait_for_selector("#rec-summary-af", timeout=120_000)
    n_beats = int(re.search(r"(\d+) beats on MLII", web.page.inner_text("#rec-info"))[1])
    files = {}
    for button in ("#rec-dl-beats", "#rec-dl-rhythm", "#rec-dl-json"):
        with web.page.expect_download() as download:
            web.page.click(button)
        files[download.value.suggested_filename] = Path(download.value.path())
    assert set(files) == {"201_MLII_beats.csv", "201_MLII_rhythm.csv", "201_MLII.json"}
    beats = pd.read_csv(files["201_MLII_beats.csv"], keep_default_na=False, na_values=[""])
    doc = json.loads(files["201_MLII.json"].read_text())
    assert len(beats) == len(doc["beats"]) == n_beats
    np.testing.assert_array_equal(beats["r_peak"], [b["r_peak"] for b in doc["beats"]])
    assert list(beats["aami"]) == [b["aami"]["label"] for b in doc["beats"]]
    # The reference class matched to each beat (201 has annotations), as the table shows.
    counts = beats["reference"].value_counts()
    assert counts.get("N", 0) > 1500 and counts.get("V", 0) > 150
    rhythm = pd.read_csv(files["201_MLII_rhythm.csv"])
    assert list(rhythm["start"]) == [e["start"] for e in doc["rhythm"]]
    af_s = rhythm.loc[rhythm["label"] == "AFIB", "duration_s"].sum()
    assert af_s == pytest.approx(doc["rhythm_summary"]["af_total_s"], abs=1.0)
    web.check_clean()


def drag_zoom(web, start: float, width: float) -> None:
    """Drag a zoom box over the waveform, from ``start`` for ``width`` (plot fractions)."""
    box = web.page.locator("#rec-wave .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + box["width"] * start
    web.page.mouse.move(x0, y)
    web.page.mouse.down()
    web.page.mouse.move(x0 + box["width"] * width, y, steps=8)
    web.page.mouse.up()


def test_zooming_in_brings_finer_detail(web):
    web.goto("/record/208")
    wait_wave(web)
    web.page.click("#rec-whole")
    whole = wait_wave(web, "s.view[1] - s.view[0] > 1000")
    assert not whole["detail"]
    # About 3,000 points for 650,000 samples: each point stands for many samples.
    assert whole["n"] <= 3100 and whole["median_step"] > 0.1
    # Plotly ignores zoom boxes under 20 px: zoom in twice, as a user would.
    drag_zoom(web, 0.40, 0.02)
    wait_wave(web, "s.view[1] - s.view[0] < 60")
    drag_zoom(web, 0.40, 0.20)
    zoomed = wait_wave(web, "s.view[1] - s.view[0] < 12")
    assert zoomed["detail"]
    # Every sample of the visible range is now drawn (1/360 s apart).
    assert zoomed["median_step"] == pytest.approx(1 / 360, rel=1e-6)
    assert zoomed["view"][0] > 600
    assert "P waves" in zoomed["names"]
    web.shot("record-208-zoomed")
    web.check_clean()


def test_navigation_buttons_move_the_view(web):
    web.goto("/record/201")
    first = wait_wave(web)
    web.page.click("#rec-next-rhythm")
    moved = wait_wave(web, f"s.view[0] != {first['view'][0]}")
    assert moved["view"][0] > first["view"][0]
    assert re.search(r"at \d:\d\d:\d\d", web.page.inner_text("#rec-nav-msg"))
    web.check_clean()


def upload(web, *paths) -> None:
    web.page.set_input_files("#up-files input[type=file]", [str(p) for p in paths])


def test_arduino_upload_asks_for_the_rate_then_shows_the_analysis(web):
    web.goto("/upload")
    upload(web, ARDUINO / "ECG_exp_pac_1.TXT")
    web.page.wait_for_selector("#up-ask-rate")
    assert web.page.is_visible("#up-rate")
    web.shot("upload-asks-rate")
    web.page.fill("#up-rate", "54")
    web.page.click("#up-rate-go")
    web.page.wait_for_selector("#up-understood")
    understood = web.page.inner_text("#up-understood")
    assert "54 Hz" in understood and "as you gave it" in understood
    web.page.click("#up-open")
    web.page.wait_for_url(re.compile(r".*/record/upload-"))
    state = wait_wave(web)
    assert state["n"] > 100
    assert "54 Hz" in web.page.inner_text("#rec-info")
    web.shot("upload-analysis")
    web.check_clean()


def test_wfdb_set_upload_keeps_its_reference_and_is_private(web, new_web):
    web.goto("/upload")
    upload(web, MITDB / "100.hea", MITDB / "100.dat", MITDB / "100.atr")
    web.page.wait_for_selector("#up-understood")
    assert "360 Hz" in web.page.inner_text("#up-understood")
    web.page.click("#up-open")
    web.page.wait_for_url(re.compile(r".*/record/upload-"))
    wait_wave(web)
    assert "sensitivity" in web.page.inner_text("#rec-summary")
    url = web.page.url
    web.check_clean()
    # Another browser session cannot open this upload, even knowing its address.
    other = new_web()
    other.page.goto(url)
    other.page.wait_for_selector("#rec-alerts .alert")
    assert "not available in this browser session" in other.page.inner_text("#rec-alerts")
    other.check_clean()


def test_malformed_upload_gives_a_clear_message_and_the_app_keeps_working(web, tmp_path):
    bad = tmp_path / "notes.csv"
    bad.write_text("patient;comment\nalice;fine\nbob;tired\n")
    web.goto("/upload")
    upload(web, bad)
    web.page.wait_for_selector("#up-error")
    message = web.page.inner_text("#up-error")
    assert "cannot be read" in message and len(message) > 30
    web.shot("upload-malformed")
    # The page and the app still work: a good file right after is understood.
    upload(web, ARDUINO / "ECG_exp_sim_1.TXT")
    web.page.wait_for_selector("#up-ask-rate")
    web.goto("/records")
    web.page.wait_for_selector("#records-table .dash-cell")
    web.check_clean()


def test_an_upload_above_the_limit_is_refused_with_a_message(web, tmp_path):
    from dashboard.config import Config

    limit = Config().max_upload_bytes
    big = tmp_path / "big.txt"
    with big.open("wb") as handle:
        handle.write(b"512 " * (limit // 4 + 1024))
    web.goto("/upload")
    upload(web, big)
    web.page.wait_for_selector("#up-error")
    assert "too large" in web.page.inner_text("#up-error")
    web.check_clean()


def _models_present() -> bool:
    folder = REPO / "ecgcore" / "models"
    return (folder / "aami.keras").is_file() and (folder / "binary.keras").is_file()


def _first_v_beat() -> int:
    from ecgcore.cache import cached_analyze
    from ecgcore.io import read

    analysis, _ = cached_analyze(read(str(MITDB / "208")), classify=True)
    labels = analysis.aami_labels
    return int(np.flatnonzero(labels == "V")[0])


@pytest.mark.skipif(not _models_present(), reason="ecgcore/models/ has no trained models yet")
def test_explaining_a_v_beat_draws_attributions(web):
    index = _first_v_beat()
    # Reachable from the record view: the beat table's explain links.
    web.goto("/record/208")
    wait_wave(web)
    web.page.wait_for_selector("#rec-beats a[href*='/explain?record=208']")
    web.goto(f"/explain?record=208&beat={index}")
    web.page.wait_for_selector("#explain-wave-aami .js-plotly-plot", timeout=180_000)
    web.page.wait_for_selector("#explain-rr-binary .js-plotly-plot", timeout=180_000)
    bars = web.page.evaluate("""() => {
      const g = document.querySelector('#explain-wave-aami .js-plotly-plot');
      const y = Array.from(g._fullData[0].y);
      return {n: y.length, nonzero: y.filter(v => Math.abs(v) > 1e-6).length,
              title: g.layout.title.text};
    }""")
    assert bars["n"] > 100 and bars["nonzero"] > 10
    assert "towards V" in bars["title"]
    assert "V" in web.page.inner_text("#explain-probs")
    web.shot("explain-v-beat")
    web.check_clean()


@pytest.mark.skipif(not _models_present(), reason="ecgcore/models/ has no trained models yet")
def test_beats_relabelled_by_the_af_rule_are_shown_as_such(web):
    """S calls inside detected AF are served as N, and the views say the network said S."""
    from ecgcore.cache import cached_analyze
    from ecgcore.io import read

    analysis, _ = cached_analyze(read(str(MITDB / "201")), classify=True)
    relabelled = np.flatnonzero(analysis.rhythm_rule)
    assert relabelled.size > 0, "201 should have S calls inside its detected AF"
    web.goto("/record/201")
    web.page.wait_for_selector("#rec-summary-rule", timeout=120_000)
    assert web.page.inner_text("#rec-summary-rule").startswith(f"{relabelled.size} beat(s)")
    beat = int(relabelled[0])
    web.goto(f"/explain?record=201&beat={beat}")
    web.page.wait_for_selector("#explain-rule", timeout=120_000)
    assert "called this beat S" in web.page.inner_text("#explain-rule")
    row = web.page.inner_text("#explain-probs tbody tr:nth-child(1)")
    assert row.split("\t")[1].strip() == "N", row
    web.check_clean()


@pytest.mark.skipif(not _models_present(), reason="ecgcore/models/ has no trained models yet")
def test_beats_relabelled_by_the_morphology_rule_are_shown_as_such(web):
    """In 222 the network calls V on beats shaped like their normal neighbours; the record
    view counts them, and the explanation says what the network said and why it is not
    served."""
    from ecgcore.cache import cached_analyze
    from ecgcore.io import read

    analysis, _ = cached_analyze(read(str(MITDB / "222")), classify=True)
    overruled = np.flatnonzero(analysis.morphology_rule
                               & (analysis.aami_network_labels == "V"))
    assert overruled.size > 0, "222 should have V calls on conducted beats"
    web.goto("/record/222")
    web.page.wait_for_selector("#rec-summary-morphology-rule", timeout=120_000)
    count = int(analysis.morphology_rule.sum())
    assert web.page.inner_text("#rec-summary-morphology-rule").startswith(f"{count} beat(s)")
    beat = int(overruled[0])
    web.goto(f"/explain?record=222&beat={beat}")
    web.page.wait_for_selector("#explain-rule", timeout=120_000)
    note = web.page.inner_text("#explain-rule")
    assert "called this beat V" in note and "QRS shape rule" in note
    row = web.page.inner_text("#explain-probs tbody tr:nth-child(1)")
    assert row.split("\t")[1].strip() == str(analysis.aami_labels[beat]) != "V", row
    web.check_clean()


def test_models_page_shows_the_rhythm_rule_beside_the_networks_alone(web):
    evaluation = json.loads((REPO / "ecgcore" / "models" / "evaluation.json").read_text())
    end_to_end = evaluation["end_to_end"]
    web.goto("/models")
    web.page.wait_for_selector("#models-rhythm-rule")
    text = web.page.inner_text("#models-rhythm-rule")
    for figures in (end_to_end, end_to_end["without_rhythm_rule"]):
        assert f"{100 * figures['aami']['accuracy']:.1f}" in text
        v = figures["aami"]["per_class"]["V"]
        assert f"{100 * v['sensitivity']:.1f} / {100 * v['ppv']:.1f}" in text
    web.check_clean()
