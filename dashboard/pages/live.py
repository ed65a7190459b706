"""Live page ``/live``: record a board (or the simulator) and watch beats labelled as they come.

The stream, its ring buffer and the beat-by-beat analysis run on the server in a
:class:`dashboard.live.LiveSession`, in the worker process that received Start; that
process publishes the stream's state to the session store every worker shares
(:class:`dashboard.live.LiveHub`), so whichever worker answers a poll reads it there. The
page polls every :data:`POLL_MS` and receives only the visible 10 s (down-sampled, as
typed arrays) and the beats in view, applied to the graph with a ``Patch``. Stop (from
any worker) saves the recording: the owner registers it like an upload (visible only to
this browser session) and it opens in the record view.
"""

from __future__ import annotations

import math
import os
import threading
from datetime import datetime
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, Patch, State, callback, ctx, dcc, html
from flask import current_app

from acquisition.protocol import BAUD_CHOICES, DEFAULT_BAUD, PLAIN_RATE_AUTO
from dashboard import context
from dashboard.components.figures import (
    BINARY_COLOURS,
    CLASS_COLOURS,
    format_hms,
    time_ticks,
)
from dashboard.live import (
    V_RUN_MIN,
    LiveError,
    LiveHub,
    LiveSession,
    LiveSettings,
    plain_rate,
    rhythm_lines,
)
from dashboard.records import UPLOAD_PREFIX
from dashboard.state import SessionStore, new_token
from ecgcore.analysis import BINARY_THRESHOLD
from ecgcore.errors import EcgError

dash.register_page(__name__, path="/live", name="Live", order=3)

POLL_MS = 300
SIMULATOR = "simulator"
DEFAULT_SIM_RECORD = "119"
"""Clean beats with V beats among them; 210 from 413 s shows a run of V beats."""
MAX_POINTS = 1200
"""Points of the visible 10 s sent per poll (about 13 kB as base64 float32)."""
RECENT_BEATS = 10
FAULTS = {
    "leads_off": "leads-off episodes (2 per minute)",
    "drops": "1 % dropped lines",
    "noise": "noise (0.05 mV)",
}

LIVE_PORTS_ENV = "ECG_LIVE_PORTS"
"""Extra serial ports offered (paths separated by ``os.pathsep``): links the port listing
does not show, such as ``/dev/serial/by-id/...``, a socat pty or ``ecg simulate``'s link."""
RECONNECT_ENV = "ECG_LIVE_RECONNECT_S"
"""Seconds the recorder waits for a vanished board to come back (default 30)."""

_hub_lock = threading.Lock()


def hub() -> LiveHub:
    """This worker's side of the server's live streams (created on first use)."""
    found = current_app.extensions.get("ecg_live")
    if found is None:
        with _hub_lock:
            found = current_app.extensions.get("ecg_live")
            if found is None:
                from ecgcore.cache import cache_dir

                store = context.sessions()
                settings = LiveSettings()
                reconnect = os.environ.get(RECONNECT_ENV)
                if reconnect:
                    settings = LiveSettings(reconnect_s=max(0.0, float(reconnect)))

                def register(session_id: str, path: Path, started: str, source: str) -> str:
                    return _register(store, session_id, path, started, source)

                found = LiveHub(cache_dir() / "live", store, settings=settings,
                                register=register, max_points=MAX_POINTS,
                                recent_beats=RECENT_BEATS)
                current_app.extensions["ecg_live"] = found
    return found


def _record_options() -> tuple[list[dict], str | None]:
    from ecgcore.catalog import record_names

    names = record_names(context.config().records_dir)
    default = DEFAULT_SIM_RECORD if DEFAULT_SIM_RECORD in names else (names[0] if names else None)
    return [{"label": f"MIT-BIH {n}", "value": n} for n in names], default


def _empty_figure() -> dict:
    return {
        "data": [
            {"type": "scatter", "mode": "lines", "name": "ECG", "x": [], "y": [],
             "line": {"color": "#222", "width": 1.2}, "connectgaps": False,
             "hoverinfo": "skip"},
            {"type": "scatter", "mode": "markers+text", "name": "AAMI model", "x": [], "y": [],
             "text": [], "textposition": "top center", "cliponaxis": False,
             "marker": {"size": 7, "color": []}, "textfont": {"size": 14, "color": []},
             "hovertext": [], "hoverinfo": "text"},
            {"type": "scatter", "mode": "markers", "name": "binary model", "x": [], "y": [],
             "yaxis": "y2", "marker": {"size": 11, "symbol": "square", "color": []},
             "hovertext": [], "hoverinfo": "text"},
        ],
        "layout": {
            "height": 380, "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
            "showlegend": False, "uirevision": "live",
            "xaxis": {"range": [0, 10], "title": {"text": "time since start (h:mm:ss)"},
                      "showgrid": True},
            "yaxis": {"domain": [0.12, 1.0], "title": {"text": "ECG (ADC counts, filtered)"},
                      "zeroline": False},
            "yaxis2": {"domain": [0.0, 0.08], "range": [-1, 1], "showticklabels": False,
                       "showgrid": False, "zeroline": False, "title": {"text": "bin."}},
            "annotations": [],
        },
    }


def layout(**_query) -> html.Div:
    """Source choice, Start/Stop, readouts, the scrolling graph and the recent beats."""
    options, default = _record_options()
    return html.Div(
        [
            html.H2("Live"),
            html.P(
                "Record an Arduino + AD8232 board (acquisition/arduino/README.md; a sketch "
                "printing bare values works too, at the rate you give or measured) or play an "
                "MIT-BIH record through the simulated board. Beats are detected and "
                "labelled by both models as they arrive; Stop saves the recording and "
                "opens it in the record view (visible only to this browser tab).",
                className="text-muted",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Source", html_for="live-source"),
                            dbc.InputGroup(
                                [
                                    dcc.Dropdown(id="live-source", value=SIMULATOR,
                                                 options=_source_options(), clearable=False,
                                                 style={"minWidth": "320px"}),
                                    dbc.Button("↻", id="live-refresh", color="secondary",
                                               outline=True, title="list the serial ports again"),
                                ],
                                className="flex-nowrap",
                            ),
                        ],
                        md=5,
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Record played by the simulator", html_for="live-record"),
                            dcc.Dropdown(id="live-record", options=options, value=default,
                                         clearable=False),
                        ],
                        md=2, id="live-record-col",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("from (s)", html_for="live-start-s"),
                            dbc.Input(id="live-start-s", type="number", min=0, step="any",
                                      value=0),
                        ],
                        md=1, id="live-start-col",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Simulated faults"),
                            dcc.Checklist(id="live-faults",
                                          options=[{"label": v, "value": k}
                                                   for k, v in FAULTS.items()],
                                          value=[], inputClassName="me-1",
                                          labelClassName="me-3 small"),
                        ],
                        md=4, id="live-faults-col",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Speed (baud)", html_for="live-baud"),
                            dcc.Dropdown(id="live-baud", value=DEFAULT_BAUD, clearable=False,
                                         options=[{"label": f"{b}" + (" (ecg_ad8232 sketch)"
                                                                      if b == DEFAULT_BAUD
                                                                      else ""), "value": b}
                                                  for b in BAUD_CHOICES]),
                        ],
                        md=2, id="live-baud-col", style={"display": "none"},
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Plain stream rate (Hz)", html_for="live-plain-fs"),
                            dbc.Input(id="live-plain-fs", type="text",
                                      placeholder="ecg_ad8232 protocol"),
                            dbc.FormText("only for a sketch that prints bare values, one "
                                         "per line (the AD8232 examples): their rate, or "
                                         f"'{PLAIN_RATE_AUTO}' to measure it over the "
                                         "first 5 s"),
                        ],
                        md=3, id="live-plain-col", style={"display": "none"},
                    ),
                ],
                className="mb-2",
            ),
            html.Div(
                [
                    dbc.Button("Start", id="live-start", color="success", className="me-2"),
                    dbc.Button("Stop", id="live-stop", color="danger", outline=True,
                               className="me-3"),
                    dcc.Loading(html.Span(id="live-control"), type="dot",
                                parent_style={"display": "inline-block"}),
                ],
                className="mb-2",
            ),
            html.Div(
                [
                    dbc.Badge("idle", id="live-state", color="secondary", className="me-2 p-2"),
                    dbc.Badge("leads: –", id="live-leads", color="secondary",
                              className="me-2 p-2"),
                    html.Span("heart rate –", id="live-hr", className="me-3 fw-bold"),
                    html.Span("0 beats", id="live-nbeats", className="me-3"),
                    html.Span("label latency –", id="live-latency", className="me-3"),
                    html.Span(id="live-counts", className="me-3 small"),
                ],
                className="mb-2",
            ),
            html.Div(id="live-alert"),
            html.Div(id="live-saved"),
            dcc.Graph(id="live-graph", figure=_empty_figure(),
                      config={"displaylogo": False, "displayModeBar": False}),
            dbc.Row(
                [
                    dbc.Col([html.H5("Latest beats"), html.Div(id="live-beats")], lg=7),
                    dbc.Col([html.H5("Messages"),
                             html.Ul(id="live-messages", className="small text-muted")], lg=5),
                ]
            ),
            dcc.Interval(id="live-interval", interval=POLL_MS, disabled=False),
        ]
    )


@callback(
    Output("live-source", "options"),
    Input("live-refresh", "n_clicks"),
    prevent_initial_call=True,
)
def list_sources(_n):
    """List the serial ports again (a board plugged in after the page was opened)."""
    return _source_options()


def _source_options() -> list[dict]:
    """The simulator, then the serial ports present."""
    from acquisition.recorder import list_ports

    options = [{"label": "Simulator (plays an MIT-BIH record through a fake board)",
                "value": SIMULATOR}]
    try:
        ports = list_ports()
    except Exception:  # noqa: BLE001 -- no port listing (e.g. a container): simulator only
        ports = []
    options += [{"label": f"{device} — {text}" if text else device, "value": device}
                for device, text in ports]
    listed = {device for device, _ in ports}
    for extra in os.environ.get(LIVE_PORTS_ENV, "").split(os.pathsep):
        if extra and extra not in listed and Path(extra).exists():
            options.append({"label": f"{extra} (from {LIVE_PORTS_ENV})", "value": extra})
    return options


@callback(
    Output("live-record-col", "style"),
    Output("live-start-col", "style"),
    Output("live-faults-col", "style"),
    Output("live-baud-col", "style"),
    Output("live-plain-col", "style"),
    Input("live-source", "value"),
)
def source_options(source):
    """The record, start and faults choices only matter to the simulator; the speed and
    the plain stream's rate only to a serial port."""
    shown, hidden = {}, {"display": "none"}
    simulator = source == SIMULATOR
    return (*[shown if simulator else hidden] * 3, *[hidden if simulator else shown] * 2)


@callback(
    Output("live-control", "children"),
    Output("live-interval", "disabled"),
    Input("live-start", "n_clicks"),
    Input("live-stop", "n_clicks"),
    State("live-source", "value"),
    State("live-record", "value"),
    State("live-start-s", "value"),
    State("live-faults", "value"),
    State("live-baud", "value"),
    State("live-plain-fs", "value"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def start_stop(_start, _stop, source, record, start_s, faults, baud, plain_fs, session_id):
    """Start a stream (replacing this session's previous one) or stop it."""
    live_hub = hub()
    if ctx.triggered_id == "live-stop":
        if not live_hub.request_stop(session_id):
            return "Nothing is running.", dash.no_update
        # The polls that follow show the final state and the link to the saved record.
        return "", False
    if not source:
        return _danger("Choose a source."), dash.no_update

    def begin(live: LiveSession) -> None:
        if source == SIMULATOR:
            from ecgcore.catalog import record_path

            if not record:
                raise LiveError("choose a record for the simulator")
            chosen = set(faults or [])
            live.start_simulator(
                record_path(record, context.config().records_dir),
                start_s=max(0.0, float(start_s or 0.0)), speed=1.0,
                leads_off_per_min=2.0 if "leads_off" in chosen else 0.0,
                drop_rate=0.01 if "drops" in chosen else 0.0,
                noise_mv=0.05 if "noise" in chosen else 0.0,
            )
        else:
            # Only a port the server itself lists: the browser's choice is not a path to open.
            if source not in {option["value"] for option in _source_options()}:
                raise LiveError(f"{source} is not a serial port of this computer (any more): "
                                "list the ports again")
            if baud not in BAUD_CHOICES:
                speeds = ", ".join(map(str, BAUD_CHOICES))
                raise LiveError(f"choose a serial speed among {speeds}")
            live.start_port(str(source), baud=int(baud), plain_fs=plain_rate(plain_fs))

    try:
        live_hub.start(session_id, begin)
    except EcgError as error:
        return _danger(str(error)), False
    except Exception as error:  # noqa: BLE001 -- the page must keep working
        return _danger(f"the stream could not start ({type(error).__name__}: {error})"), False
    return "", False


def _danger(text: str) -> dbc.Alert:
    return dbc.Alert(text, color="danger", className="d-inline-block py-1 px-2 mb-0",
                     id="live-error")


def _register(store: SessionStore, session_id: str, path: Path, started: str,
              source: str) -> str:
    """Make a saved live file a record of this browser session; its record id."""
    from ecgcore.io import read

    recording = read(str(path))
    when = datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M:%S UTC")
    recording.meta["title"] = f"Live recording of {when} ({source})"
    record_id = UPLOAD_PREFIX + new_token()
    store.put(session_id, record_id, recording)
    return record_id


def _saved(state: dict):
    if state.get("saved_error"):
        return dbc.Alert(f"The recording was saved to {state['path']} but cannot be opened: "
                         f"{state['saved_error']}", color="warning")
    record_id = state.get("record_id")
    if record_id is None:
        return dbc.Alert("Nothing was recorded.", color="secondary", id="live-nothing")
    stats = state["stats"]
    return dbc.Alert(
        [
            f"Recording saved ({format_hms(stats['signal_s'])}, {stats['n_beats']} beats). ",
            dcc.Link("Open it in the record view", href=f"/record/{record_id}",
                     id="live-open", className="alert-link"),
        ],
        color="success",
    )


def _badge_state(stats: dict) -> tuple[str, str]:
    state = stats["state"]
    colour = {"recording": "success", "waiting": "info", "starting": "info",
              "reconnecting": "warning", "stopping": "info", "stopped": "secondary",
              "failed": "danger"}.get(state, "secondary")
    text = {"waiting": "waiting for the device", "recording": "● recording",
            "reconnecting": "device lost: reconnecting…"}.get(state, state)
    return text, colour


def _ms(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value * 1000:.0f} ms"


def _beats_table(beats: list[dict]) -> dbc.Table:
    rows = []
    for beat in reversed(beats[-RECENT_BEATS:]):
        aami, binary = beat["aami"], beat["binary"]
        rows.append(html.Tr([
            html.Td(format_hms(beat["time_s"], 2)),
            html.Td(f"{aami} ({beat['aami_p']:.0%})" if aami else "–",
                    style={"color": CLASS_COLOURS.get(aami, "#555"), "fontWeight": 600}),
            html.Td(f"{binary} ({beat['binary_p']:.0%})"
                    # The network is not sure of the served label: the AAMI label decided.
                    + (f" (AAMI {aami})" if beat["binary_p"] < BINARY_THRESHOLD else "")
                    if binary else "–",
                    style={"color": BINARY_COLOURS.get(binary, "#555")}),
            html.Td(_ms(beat["latency_s"])),
            html.Td("yes" if beat["next_rr_known"] else "local mean"),
        ], className="live-beat-row"))
    header = html.Thead(html.Tr([html.Th(h) for h in
                                 ("R peak", "AAMI model", "binary model", "latency",
                                  "next RR")]))
    return dbc.Table([header, html.Tbody(rows)], size="sm", bordered=True,
                     id="live-beats-table")


def _figure_patch(view: dict | None) -> Patch:
    patch = Patch()
    if view is None:
        return patch
    beats = view["beats"]
    # Already plotly.js typed arrays: the owner encoded them once for every poller.
    patch["data"][0]["x"] = view["t"]
    patch["data"][0]["y"] = view["y"]
    hover = [f"{format_hms(t, 2)}<br>AAMI {a} ({pa:.0%})<br>binary {b} ({pb:.0%})"
             if a else format_hms(t, 2)
             for t, a, b, pa, pb in zip(beats["time_s"], beats["aami"], beats["binary"],
                                        beats["aami_p"], beats["binary_p"], strict=True)]
    patch["data"][1]["x"] = beats["time_s"]
    patch["data"][1]["y"] = beats["y"]
    patch["data"][1]["text"] = [a or "·" for a in beats["aami"]]
    colours = [CLASS_COLOURS.get(a, "#555") for a in beats["aami"]]
    patch["data"][1]["marker"]["color"] = colours
    patch["data"][1]["textfont"]["color"] = colours
    patch["data"][1]["hovertext"] = hover
    patch["data"][2]["x"] = beats["time_s"]
    patch["data"][2]["y"] = [0.0] * len(beats["time_s"])
    patch["data"][2]["marker"]["color"] = [BINARY_COLOURS.get(b, "#555")
                                          for b in beats["binary"]]
    patch["data"][2]["hovertext"] = hover
    start, end = view["start_s"], view["end_s"]
    patch["layout"]["xaxis"]["range"] = [start, end]
    patch["layout"]["xaxis"].update(time_ticks(start, end))
    return patch


def _rhythm_alert(stats: dict) -> dbc.Alert | None:
    """The rhythm episodes found so far (:func:`dashboard.live.rhythm_lines`)."""
    lines, urgent = rhythm_lines(stats.get("rhythm") or [])
    if not lines:
        return None
    span = stats.get("rhythm_span_s")
    return dbc.Alert(
        [html.Strong("Rhythm"),
         html.Span(f" (each finding from the record view's analysis of the {span / 60:.0f} "
                   "minutes of signal before it)" if span else "", className="small"),
         html.Ul([html.Li(line) for line in lines], className="mb-0")],
        color="warning" if urgent else "info", id="live-rhythm", className="py-2")


@callback(
    Output("live-graph", "figure"),
    Output("live-state", "children"),
    Output("live-state", "color"),
    Output("live-leads", "children"),
    Output("live-leads", "color"),
    Output("live-hr", "children"),
    Output("live-nbeats", "children"),
    Output("live-latency", "children"),
    Output("live-counts", "children"),
    Output("live-alert", "children"),
    Output("live-beats", "children"),
    Output("live-messages", "children"),
    Output("live-saved", "children"),
    Output("live-interval", "disabled", allow_duplicate=True),
    Input("live-interval", "n_intervals"),
    State("session-id", "data"),
    prevent_initial_call="initial_duplicate",
)
def poll(_n, session_id):
    """Show this session's live stream as its owner last published it (any worker answers)."""
    state = hub().read(session_id)
    if state is None:
        # Nothing to show: stop polling until Start.
        return (dash.no_update,) * 13 + (True,)
    stats = state["stats"]
    state_text, state_colour = _badge_state({"state": state["state"]})
    if stats["n_samples"] == 0:
        leads_text, leads_colour = "leads: –", "secondary"
    elif stats["leads_off"]:
        leads_text, leads_colour = "LEADS OFF", "danger"
    else:
        leads_text, leads_colour = "leads on", "success"
    hr = stats["heart_rate_bpm"]
    hr_text = f"heart rate {hr:.0f} bpm" if hr else "heart rate –"
    what = "label latency" if stats["classified"] else "detection latency (no classifiers)"
    latency = (f"{what}: median {_ms(stats['latency_median_s'])}, "
               f"p95 {_ms(stats['latency_p95_s'])} ({stats['n_latency']} beats)")
    counts = " · ".join(f"{c} {n}" for c, n in stats["counts"].items() if n)
    alert = None
    if stats["runs"]:
        run = stats["runs"][-1]
        ongoing = stats["v_streak"] >= V_RUN_MIN
        alert = dbc.Alert(
            [html.Strong(f"Run of {run['n_beats']} consecutive V beats"),
             f" at {format_hms(run['start_s'])}–{format_hms(run['end_s'])}"
             + (" (ongoing)" if ongoing else "")
             + (f"; {len(stats['runs'])} runs so far" if len(stats["runs"]) > 1 else "")],
            color="danger", id="live-v-alert", className="py-2",
        )
    rhythm = _rhythm_alert(stats)
    if rhythm is not None:
        alert = [a for a in (alert, rhythm) if a is not None]
    messages = [html.Li(text) for text in stats["notices"] + stats["messages"]]
    if stats["error"]:
        messages.insert(0, html.Li(stats["error"], className="text-danger fw-bold"))
    saved = []
    if stats["error"]:
        saved.append(dbc.Alert(stats["error"], color="danger", id="live-failed"))
    if stats.get("vanished"):
        saved.append(dbc.Alert(stats["vanished"], color="warning", id="live-vanished"))
    finished = bool(state["finished"])
    if finished:
        saved.append(_saved(state))
    return (
        _figure_patch(state["view"]), state_text, state_colour, leads_text, leads_colour,
        hr_text, f"{stats['n_beats']} beats", latency, counts, alert,
        _beats_table(state["beats"]), messages, saved, finished,
    )
