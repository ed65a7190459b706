"""Benchmark of the dashboard's record view in headless chromium.

Measures, for a 30-minute MIT-BIH record (default 208):

- time from navigation to a fully drawn record view (waveform with beat labels and wave
  markers, heart-rate trend, summary, beat table), in a fresh browser context each time:
  * uncached: empty disk cache and empty server memory (the analysis runs);
  * cached (disk): the analysis on disk, server memory emptied (a restarted server);
  * cached (memory): a second visit to a running server;
  * cached, same browser: the same again, but from a browser that has opened the view
    before (its HTTP cache holds the scripts, as for a user coming back);
- bytes of the first waveform figure (it comes inside the page's layout) and of each zoom
  update (the callback's response), as JSON and as sent (compressed).

Targets (issue 4): <= 2.0 s uncached, <= 0.8 s cached, <= 300 KB first figure,
<= 150 KB per zoom. The classifiers are loaded before timing starts (the server preloads
them at start-up), so "uncached" is the analysis of the record, not a cold start.

    .venv/bin/python bench/dashboard.py [--record 208] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402

CHROMIUM = Path(os.environ.get("ECG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]
TARGETS = {"uncached_s": 2.0, "cached_s": 0.8, "first_figure_kb": 300.0, "zoom_kb": 150.0}
FULLY_DRAWN = """() => {
  const g = document.querySelector('#rec-wave .js-plotly-plot');
  const t = document.querySelector('#rec-trend .js-plotly-plot');
  if (!g || !t || !g._fullData || !g.layout.meta || !g.layout.meta.view) return false;
  const names = g._fullData.map(d => d.name);
  return names.includes('P waves') && g.querySelectorAll('.textpoint').length > 10
    && t._fullData && t._fullData.length > 0
    && document.querySelector('#rec-summary table') !== null
    && document.querySelectorAll('#rec-beats td').length > 0;
}"""
VIEW = """() => { const g = document.querySelector('#rec-wave .js-plotly-plot');
  return g && g.layout.meta ? g.layout.meta.view : null; }"""


def serve(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _find_figure(node, ident: str):
    """The ``figure`` prop of the component ``ident`` in a Dash layout (JSON), or None."""
    if isinstance(node, dict):
        props = node.get("props")
        if isinstance(props, dict):
            if props.get("id") == ident and "figure" in props:
                return props["figure"]
            return _find_figure(props.get("children"), ident)
        return None
    if isinstance(node, list):
        for child in node:
            found = _find_figure(child, ident)
            if found is not None:
                return found
    return None


class FigureBytes:
    """Sizes of the responses carrying a new waveform figure, in arrival order.

    ``sizes``: the whole response (what a zoom costs), as JSON; ``wire_sizes``: the same
    as sent (compressed); ``figure_sizes``: the waveform figure's own JSON within it. The
    first figure comes inside the page's layout (``/_dash-layout``, with the trend,
    summary and beat table) or, after a client-side navigation, inside the routing
    callback's answer; later ones are callback answers.
    """

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.wire_sizes: list[int | None] = []
        self.figure_sizes: list[int] = []

    def __call__(self, response) -> None:
        url = response.url
        if "_dash-update-component" not in url and not url.endswith("/_dash-layout"):
            return
        try:
            data = response.body()
        except Exception:  # noqa: BLE001 -- the context closed before the body was read
            return
        try:
            answer = json.loads(data)
        except ValueError:
            return
        if url.endswith("/_dash-layout"):
            figure = _find_figure(answer, "rec-wave")
        else:
            response_part = answer.get("response", {}) if isinstance(answer, dict) else {}
            figure = (response_part.get("rec-wave") or {}).get("figure")
            if figure is None and "_pages_content" in response_part:
                figure = _find_figure(response_part["_pages_content"].get("children"),
                                      "rec-wave")
        if not isinstance(figure, dict):
            return
        try:
            wire = response.request.sizes()["responseBodySize"]
        except Exception:  # noqa: BLE001 -- sizes unknown once the context is gone
            wire = None
        self.sizes.append(len(data))
        self.wire_sizes.append(wire)
        self.figure_sizes.append(len(json.dumps(figure, separators=(",", ":"))))


def visit(browser, url: str, timeout_ms: int = 180_000) -> tuple[float, FigureBytes, object]:
    """Time from navigation to the fully drawn record view, in a fresh context."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    sizes = FigureBytes()
    page.on("response", sizes)
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function(FULLY_DRAWN, polling="raf", timeout=timeout_ms)
    seconds = time.perf_counter() - start
    # The response handler may still be reading the first figure's body.
    deadline = time.time() + 10
    while not sizes.figure_sizes and time.time() < deadline:
        page.wait_for_timeout(20)
    return seconds, sizes, context


def revisit(context, url: str, timeout_ms: int = 180_000) -> float:
    """Time of a second visit from the same browser context (its HTTP cache is warm)."""
    page = context.pages[0]
    page.goto("about:blank")
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function(FULLY_DRAWN, polling="raf", timeout=timeout_ms)
    return time.perf_counter() - start


def drag_zoom(page, start: float, width: float) -> None:
    box = page.locator("#rec-wave .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + box["width"] * start
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * width, y, steps=8)
    page.mouse.up()


def zoom_sizes(context, sizes: FigureBytes) -> list[dict]:
    """Zoom out to the whole record, then in twice; the bytes of each update."""
    page = context.pages[0]
    out = []
    steps = [("whole record (button)", None), ("zoom box 2 % of the record", (0.4, 0.02)),
             ("zoom box 20 % of that", (0.4, 0.2))]
    for label, drag in steps:
        before = len(sizes.sizes)
        view = page.evaluate(VIEW)
        if drag is None:
            page.click("#rec-whole")
        else:
            drag_zoom(page, *drag)
        page.wait_for_function(
            f"() => {{ const v = ({VIEW})(); return v && (v[0] !== {view[0]} || "
            f"v[1] !== {view[1]}); }}", timeout=60_000)
        deadline = time.time() + 10
        while len(sizes.sizes) <= before and time.time() < deadline:
            page.wait_for_timeout(50)
        new_view = page.evaluate(VIEW)
        grew = len(sizes.sizes) > before
        out.append({"step": label, "view_s": [round(v, 2) for v in new_view],
                    "bytes": sizes.sizes[-1] if grew else None,
                    "wire_bytes": sizes.wire_sizes[-1] if grew else None})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", default="208")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium (make debian-packages)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="ecg-dash-bench-"))
    os.environ["ECG_CACHE_DIR"] = str(work / "cache-0")
    os.environ["ECG_MITDB_DIR"] = str(mitdb_dir())

    from playwright.sync_api import sync_playwright

    from dashboard.app import create_app
    from dashboard.config import Config
    from dashboard.records import RecordPreparer

    config = Config(records_dir=mitdb_dir())
    app = create_app(config)
    preload = app.server.extensions.get("ecg_preload")
    if preload is not None:
        preload.join()
    server = serve(app)
    url = f"http://127.0.0.1:{server.server_port}/record/{args.record}"

    def forget_memory() -> None:
        app.server.extensions["ecg_records"] = RecordPreparer(
            config.max_records_in_memory, config.session_ttl_s
        )

    results: dict = {"record": args.record, "runs": args.runs, "machine": machine(),
                     "targets": TARGETS, "load_average_before": list(os.getloadavg())}
    uncached, cached_disk, cached_memory, first_bytes, zooms = [], [], [], [], []
    cached_same_browser: list[float] = []
    first_response_bytes: list[int | None] = []
    first_response_wire_bytes: list[int | None] = []
    tmp = work / "chromium-tmp"
    tmp.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
        # Warm-up: the browser's first start and Dash's first request are not the record
        # view's cost.
        _, _, context = visit(browser, url)
        context.close()
        for run in range(args.runs):
            os.environ["ECG_CACHE_DIR"] = str(work / f"cache-{run + 1}")
            forget_memory()
            seconds, sizes, context = visit(browser, url)
            uncached.append(seconds)
            first_bytes.append(sizes.figure_sizes[0] if sizes.figure_sizes else None)
            first_response_bytes.append(sizes.sizes[0] if sizes.sizes else None)
            first_response_wire_bytes.append(sizes.wire_sizes[0] if sizes.wire_sizes else None)
            context.close()
            forget_memory()
            seconds, sizes, context = visit(browser, url)
            cached_disk.append(seconds)
            context.close()
            seconds, sizes, context = visit(browser, url)
            cached_memory.append(seconds)
            if run == 0:
                zooms = zoom_sizes(context, sizes)
            cached_same_browser.append(revisit(context, url))
            context.close()
        browser.close()
    server.shutdown()

    def summary(values: list[float]) -> dict:
        return {"median_s": round(statistics.median(values), 3),
                "min_s": round(min(values), 3), "max_s": round(max(values), 3),
                "all_s": [round(v, 3) for v in values]}

    zoom_bytes = [z["bytes"] for z in zooms if z["bytes"] is not None]
    results.update({
        "load_average_after": list(os.getloadavg()),
        "uncached": summary(uncached),
        "cached_disk": summary(cached_disk),
        "cached_memory": summary(cached_memory),
        "cached_same_browser": summary(cached_same_browser),
        "first_figure_bytes": first_bytes,
        "first_response_bytes": first_response_bytes,
        "first_response_wire_bytes": first_response_wire_bytes,
        "zoom_updates": zooms,
        "max_zoom_bytes": max(zoom_bytes) if zoom_bytes else None,
    })
    first_kb = max(b for b in first_bytes if b) / 1024 if any(first_bytes) else float("nan")
    zoom_kb = (max(zoom_bytes) / 1024) if zoom_bytes else float("nan")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ("uncached (analysis runs), median", f"{results['uncached']['median_s']:.2f} s",
         "<= 2.0 s", verdict(results["uncached"]["median_s"] <= TARGETS["uncached_s"])),
        ("cached, second visit from the same browser (its HTTP cache warm), median",
         f"{results['cached_same_browser']['median_s']:.2f} s", "<= 0.8 s",
         verdict(results["cached_same_browser"]["median_s"] <= TARGETS["cached_s"])),
        ("cached in server memory, new browser (cold scripts), median",
         f"{results['cached_memory']['median_s']:.2f} s", "<= 0.8 s",
         verdict(results["cached_memory"]["median_s"] <= TARGETS["cached_s"])),
        ("cached on disk (server memory empty), new browser, median",
         f"{results['cached_disk']['median_s']:.2f} s", "<= 0.8 s",
         verdict(results["cached_disk"]["median_s"] <= TARGETS["cached_s"])),
        ("first waveform figure (largest of runs)", f"{first_kb:.1f} KB", "<= 300 KB",
         verdict(first_kb <= TARGETS["first_figure_kb"])),
        ("zoom update (largest)", f"{zoom_kb:.1f} KB", "<= 150 KB",
         verdict(zoom_kb <= TARGETS["zoom_kb"])),
    ]
    markdown = "\n".join(
        [f"# Dashboard record view, record {args.record} ({args.runs} runs)", "",
         f"Measured {results['machine']['date']} on {results['machine']['cpus']} CPU(s), "
         "headless Debian chromium, a fresh browser context per visit (so Dash's scripts "
         "are fetched and compiled each time, from this machine) except for the "
         "same-browser row, which opens the view again in the context of the visit before "
         "it. Command: "
         "`.venv/bin/python bench/dashboard.py`. Load average (1 min) before/after: "
         f"{results['load_average_before'][0]:.1f} / {results['load_average_after'][0]:.1f} "
         "(other work on the machine slows the browser as much as the server).", "",
         "| measure | value | target | |", "| --- | --- | --- | --- |"]
        + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
        + ["", "First response carrying the waveform (the page's layout: both figures, "
           "summary, beat table): "
           + (f"{max(b for b in first_response_bytes if b) / 1024:.1f} KB as JSON"
              if any(first_response_bytes) else "n/a")
           + (f", {max(b for b in first_response_wire_bytes if b) / 1024:.1f} KB sent"
              if any(first_response_wire_bytes) else "") + ".",
           "", "Zoom updates (JSON / sent): " + "; ".join(
            f"{z['step']} -> {z['view_s']} s: "
            + (f"{z['bytes'] / 1024:.1f} KB" if z["bytes"] else "n/a")
            + (f" / {z['wire_bytes'] / 1024:.1f} KB" if z.get("wire_bytes") else "")
            for z in zooms), ""]
    )
    write_results("dashboard", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
