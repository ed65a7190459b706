"""Record view ``/record/<name>``: waveform, beats, navigation, heart-rate trend, summary.

Catalogue records, uploads (``upload-<token>``, this session only) and, later, live
recordings share this page. The heavy part (reading, the cached analysis) runs once in
:func:`load_record`; every zoom, pan and jump afterwards only slices arrays in memory.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Input, Output, Patch, State, callback, ctx, dcc, html

from dashboard import context
from dashboard.components.figures import (
    ALL_LAYERS,
    BINARY_COLOURS,
    CLASS_COLOURS,
    DEFAULT_LAYERS,
    DISAGREE_COLOUR,
    WAVE_COLOURS,
    clamp_view,
    format_hms,
    parse_axis_value,
    trend_figure,
    view_shape,
    waveform_figure,
)
from dashboard.records import (
    PreparedRecord,
    explain_href,
    get_prepared,
    is_upload,
    preparation_status,
    record_href,
    start_long_preparation,
)
from ecgcore.analysis import ANALYSIS_STAGES, BINARY_THRESHOLD, describe_stage
from ecgcore.beats import AAMI_CLASSES
from ecgcore.errors import EcgError
from ecgcore.io import output_stem
from ecgcore.recording import Recording

dash.register_page(__name__, path_template="/record/<name>", name="Record", order=1)

LAYER_LABELS = {
    "waves": "P/QRS/T markers", "aami": "AAMI model", "binary": "binary model",
    "reference": "reference labels", "disagree": "disagreements", "rhythm": "rhythm bands",
    "raw": "raw signal", "grid": "ECG paper grid",
}
TABLE_PAGE_SIZE = 12


def _colour_key() -> html.Div:
    """What the waveform's marks mean, as plain HTML.

    Plotly's own legend cost about 0.2 s of drawing at every page load (bench/dashboard.py); the
    layers are switched by the checklist above, so the key only has to explain colours.
    """

    def mark(text: str, colour: str, title: str) -> html.Span:
        return html.Span(text, title=title, className="me-1 fw-bold", style={"color": colour})

    def group(label: str, marks: list) -> html.Span:
        return html.Span([html.Span(label + ":", className="me-1"), *marks], className="me-3")

    return html.Div(
        [
            group("waves", [
                mark("▸●◂ P", WAVE_COLOURS["P"], "P onset, peak, offset"),
                mark("▸◂ QRS", WAVE_COLOURS["QRS"], "QRS onset, offset"),
                mark("—", WAVE_COLOURS["QRS"], "R peak"),
                mark("●◂ T", WAVE_COLOURS["T"], "T peak, offset"),
            ]),
            group("AAMI model (above), reference (below, 'ref')", [
                mark(c, CLASS_COLOURS[c], f"class {c}") for c in ("N", "S", "V", "F", "Q")
            ]),
            group("binary model", [
                mark("n", BINARY_COLOURS["normal"], "normal"),
                mark("ab", BINARY_COLOURS["abnormal"], "abnormal"),
            ]),
            group("disagreement", [
                mark("□", DISAGREE_COLOUR, "the models or the reference differ"),
            ]),
        ],
        id="rec-key", className="small text-muted mb-1",
    )


def _button(label: str, id_: str) -> dbc.Button:
    return dbc.Button(label, id=id_, size="sm", color="secondary", outline=True,
                      className="me-1 mb-1")


def layout(name: str | None = None, ecg_session: str | None = None, lead: str | None = None,
           **_query) -> html.Div:
    """The record view, drawn on the server: the page arrives complete in one response.

    ``ecg_session`` is the tab's session id (the app passes it to every page's layout), so
    uploads open here too. ``lead`` (``?lead=V1``) analyses that lead instead of the
    default one. On a first visit the analysis runs before the page is sent; the app's
    page loader says so meanwhile. A long recording (:attr:`Config.background_after_s`)
    is analysed in the background instead, and the page says how far it is until it can
    be drawn.
    """
    lead = lead or None
    started = start_long_preparation(name, ecg_session, lead)
    if isinstance(started, dict):
        return _pending_page(name, started)
    recording = started if isinstance(started, Recording) else None
    return _page(name, first_view(name, ecg_session, lead=lead, recording=recording))


PROGRESS_POLL_MS = 1000
SPINNER = "spinner-border spinner-border-sm me-2"


def _pending_page(name: str | None, pending: dict[str, Any]) -> html.Div:
    leads = pending["leads"]
    return html.Div(
        [
            dcc.Store(id="rec-pending", data=pending),
            dcc.Store(id="rec-pending-ready"),
            dcc.Store(id="rec-pending-reload"),
            dcc.Interval(id="rec-progress-poll", interval=PROGRESS_POLL_MS),
            html.H2(f"Record {name}" if not is_upload(name or "") else "Uploaded recording",
                    id="rec-title"),
            html.Div(
                f"{len(leads)} lead(s): {', '.join(leads)} · {pending['fs']:g} Hz · "
                f"{format_hms(pending['duration_s'])}",
                className="text-muted",
            ),
            dbc.Alert(
                [html.Span(className=SPINNER, role="status", id="rec-progress-spinner"),
                 html.Span(_progress_text(None, pending), id="rec-progress-text")],
                id="rec-progress", color="info", className="py-2 mt-2",
            ),
        ]
    )


def _progress_text(status: dict[str, Any] | None, pending: dict[str, Any]) -> str:
    elapsed = max(0.0, time.time() - float(pending["started"]))
    hours = float(pending["duration_s"]) / 3600.0
    text = (f"Analysing this {hours:.1f}-hour recording on its first opening: {elapsed:.0f} s "
            "so far")
    if status and status.get("stage") in ANALYSIS_STAGES:
        text += f", {describe_stage(status['stage'])}"
    return text + (". The page is drawn when it is done; the analysis is kept for later "
                   "visits.")


@callback(
    Output("rec-progress-text", "children"),
    Output("rec-progress", "color"),
    Output("rec-progress-spinner", "className"),
    Output("rec-progress-poll", "disabled"),
    Output("rec-pending-ready", "data"),
    Input("rec-progress-poll", "n_intervals"),
    State("rec-pending", "data"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def poll_preparation(_n, pending, session_id):
    """Say how far the background analysis is; once it is done, the page reloads."""
    if not pending:
        return dash.no_update, dash.no_update, "d-none", True, dash.no_update
    status = preparation_status(pending, session_id)
    if status["error"]:
        return (f"The analysis failed: {status['error']}", "danger", "d-none", True,
                dash.no_update)
    if status["ready"]:
        return "Analysed: drawing the record…", "success", SPINNER, True, True
    return _progress_text(status, pending), "info", SPINNER, False, dash.no_update


# Drawn by the server as a full page: reloading asks for the page again, now ready.
dash.clientside_callback(
    "function (ready) { if (ready) { window.location.reload(); } "
    "return window.dash_clientside.no_update; }",
    Output("rec-pending-reload", "data"),
    Input("rec-pending-ready", "data"),
    prevent_initial_call=True,
)


def _page(name: str | None, first: dict[str, Any]) -> html.Div:
    return html.Div(
        [
            dcc.Store(id="rec-id", data=name),
            dcc.Store(id="rec-ready", data=first["ready"]),
            dcc.Store(id="rec-view", data=first["view"]),
            dcc.Store(id="rec-selected"),
            html.H2(first["title"], id="rec-title"),
            html.Div(first["info"], id="rec-info"),
            html.Div(first["analysed_lead"], id="rec-analysed-lead", className="small mb-1"),
            html.Div(first["alerts"], id="rec-alerts"),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            html.Span("Leads: ", className="fw-bold me-1"),
                            dcc.Checklist(id="rec-leads", options=first["lead_options"],
                                          value=first["leads"], inline=True,
                                          inputClassName="me-1", labelClassName="me-3"),
                        ],
                        md=3,
                    ),
                    dbc.Col(
                        dcc.Checklist(
                            id="rec-layers",
                            options=[{"label": LAYER_LABELS[k], "value": k} for k in ALL_LAYERS],
                            value=list(DEFAULT_LAYERS), inline=True,
                            inputClassName="me-1", labelClassName="me-3",
                        ),
                        md=9,
                    ),
                ],
                className="mb-1",
            ),
            html.Div(
                [
                    _button("◀ previous abnormal", "rec-prev-abnormal"),
                    _button("next abnormal ▶", "rec-next-abnormal"),
                    _button("next disagreement ▶", "rec-next-disagree"),
                    _button("next rhythm episode ▶", "rec-next-rhythm"),
                    _button("whole record", "rec-whole"),
                    html.Span(id="rec-nav-msg", className="ms-2 text-muted small"),
                    html.Span(_explain_link(None, None), id="rec-explain-link",
                              className="ms-3"),
                ],
                className="mb-1",
            ),
            _colour_key(),
            dcc.Loading(
                dcc.Graph(id="rec-wave", figure=first["wave"],
                          config={"displaylogo": False, "scrollZoom": False},
                          style={"minHeight": "330px"}),
                type="circle", delay_show=300,
            ),
            html.H5("Heart rate over the whole record (click to go there)", className="mt-2"),
            dcc.Graph(id="rec-trend", figure=first["trend"], config={"displayModeBar": False},
                      style={"height": "200px"}),
            dbc.Row(
                [
                    dbc.Col([html.H5("Summary"), _downloads(),
                             html.Div(first["summary"], id="rec-summary")], lg=5),
                    dbc.Col(
                        [
                            html.H5("Beats (click a row to go there)"),
                            dcc.RadioItems(
                                id="rec-table-filter",
                                options=[
                                    {"label": "all", "value": "all"},
                                    {"label": "abnormal (AAMI model)", "value": "abnormal"},
                                    {"label": "disagreements", "value": "disagree"},
                                ],
                                value="all", inline=True, inputClassName="me-1",
                                labelClassName="me-3",
                            ),
                            # A plain table, paged on the server: only 12 rows travel, and the
                            # page needs no data-grid library.
                            html.Div(first["beats"], id="rec-beats", className="beat-table"),
                            html.Div(
                                [
                                    dbc.Button("◀", id="rec-beats-prev", size="sm",
                                               color="secondary", outline=True),
                                    html.Span(first["page_label"], id="rec-beats-page-label",
                                              className="mx-2"),
                                    dbc.Button("▶", id="rec-beats-next", size="sm",
                                               color="secondary", outline=True),
                                ],
                                className="mt-1",
                            ),
                            dcc.Store(id="rec-beats-page", data=first["page"]),
                        ],
                        lg=7,
                    ),
                ],
                className="mt-3",
            ),
        ]
    )


DOWNLOADS = {
    "rec-dl-beats": "beats (CSV)",
    "rec-dl-rhythm": "rhythm episodes (CSV)",
    "rec-dl-json": "analysis (JSON, as ecg analyze)",
}


def _downloads() -> html.Div:
    """Links that save the analysis of the lead shown, for a spreadsheet or a script."""
    links = [dbc.Button(label, id=id_, color="link", size="sm", className="p-0 me-3")
             for id_, label in DOWNLOADS.items()]
    return html.Div([html.Span("Download: ", className="text-muted small me-2"), *links,
                     dcc.Download(id="rec-download")], className="mb-2")


@callback(
    Output("rec-download", "data"),
    Input("rec-dl-beats", "n_clicks"),
    Input("rec-dl-rhythm", "n_clicks"),
    Input("rec-dl-json", "n_clicks"),
    State("rec-ready", "data"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def download(_beats, _rhythm, _json, ready, session_id):
    """The analysed lead's beats, rhythm episodes or whole analysis as a file."""
    if not ready or ctx.triggered_id not in DOWNLOADS:
        return dash.no_update
    try:
        prepared = get_prepared(ready["id"], session_id, ready.get("lead"))
    except EcgError:
        return dash.no_update
    return analysis_file(prepared, ctx.triggered_id) or dash.no_update


def analysis_file(prepared: PreparedRecord, which: str) -> dict[str, Any] | None:
    """``dcc.Download`` data of one download (``which``: a key of :data:`DOWNLOADS`);
    None without an analysis. The beats carry the reference class matched to each beat
    where the record has annotations."""
    analysis = prepared.analysis
    if analysis is None:
        return None
    stem = f"{output_stem(analysis.source)}_{output_stem(analysis.lead_used)}"
    if which == "rec-dl-json":
        return dcc.send_string(json.dumps(analysis.to_dict()), f"{stem}.json",
                               type="application/json")
    if which == "rec-dl-rhythm":
        return dcc.send_data_frame(analysis.rhythm_frame().to_csv, f"{stem}_rhythm.csv",
                                   index=False)
    reference = prepared.beats["ref"] if prepared.reference is not None else None
    return dcc.send_data_frame(analysis.beats_frame(reference).to_csv, f"{stem}_beats.csv",
                               index=False)


def _alert(text: str, color: str = "warning") -> dbc.Alert:
    return dbc.Alert(text, color=color, className="py-2 mb-2")


def _info(prepared: PreparedRecord) -> html.Div:
    recording = prepared.recording
    analysis = prepared.analysis
    parts = [
        f"{recording.format} · {len(recording.leads)} lead(s): {', '.join(recording.leads)} · "
        f"{recording.fs:g} Hz ({recording.fs_origin}) · {format_hms(prepared.duration_s)}",
    ]
    if analysis is not None:
        hr = analysis.heart_rate_bpm()
        rate = f"{hr['mean']:.0f} bpm" if hr["mean"] else "n/a"
        parts.append(
            f" · {analysis.n_beats} beats on {analysis.lead_used} · mean heart rate {rate} · "
            + ("analysis read from the disk cache" if prepared.from_cache
               else "analysed on first opening, now cached")
        )
    return html.Div(parts, className="text-muted", id="rec-info-text")


def _summary(prepared: PreparedRecord) -> html.Div:
    s = prepared.summary
    if not s:
        return html.Div("No analysis.", className="text-muted")
    header = [html.Th("")] + [html.Th(c) for c in AAMI_CLASSES]
    body = []
    if s.get("reference"):
        body.append(html.Tr([html.Td("reference")] + [html.Td(s["reference"][c])
                                                     for c in AAMI_CLASSES]))
    if s.get("model"):
        body.append(html.Tr([html.Td("AAMI model")] + [html.Td(s["model"][c])
                                                      for c in AAMI_CLASSES]))
    if body:
        children = [dbc.Table([html.Thead(html.Tr(header)), html.Tbody(body)], size="sm",
                              bordered=True, className="mb-2", id="rec-summary-counts")]
    else:
        children = [html.P(f"{s['n_beats']} beats detected; no class counts (no reference "
                           "annotations and no classifier).", id="rec-summary-counts")]
    if s.get("binary"):
        children.append(html.P(
            f"Binary model: {s['binary']['normal']} normal, {s['binary']['abnormal']} abnormal."
        ))
    if s.get("rhythm_rule"):
        children.append(html.P(
            f"{s['rhythm_rule']} beat(s) the AAMI model called S are counted N (and normal): "
            "they lie in detected atrial fibrillation or flutter, where no beat is a "
            "premature atrial beat (MIT-BIH's convention). Their probabilities are the "
            "network's own.", className="small", id="rec-summary-rule"))
    if s.get("morphology_rule"):
        children.append(html.P(
            f"{s['morphology_rule']} beat(s) are not counted as the AAMI model called them: "
            "called V with a QRS shaped like the neighbouring normal beats' (they take the "
            "model's next most probable class), or called S with a QRS unlike them (they "
            "become V). Their probabilities are the network's own.",
            className="small", id="rec-summary-morphology-rule"))
    if s.get("detection"):
        d = s["detection"]
        children.append(html.P(
            f"Beat detection against the reference: sensitivity {d['sensitivity']:.2%}, "
            f"PPV {d['ppv']:.2%} ({d['missed']} missed, {d['extra']} extra; 150 ms window)."
        ))
    if s.get("per_class"):
        rows = []
        for c in AAMI_CLASSES:
            v = s["per_class"][c]
            se = "–" if v["sensitivity"] is None else f"{v['sensitivity']:.1%}"
            ppv = "–" if v["ppv"] is None else f"{v['ppv']:.1%}"
            rows.append(html.Tr([html.Td(c), html.Td(v["n_ref"]), html.Td(v["n_pred"]),
                                 html.Td(se), html.Td(ppv)]))
        children += [
            html.Div("AAMI model on this record (matched beats):", className="small"),
            dbc.Table(
                [html.Thead(html.Tr([html.Th(h) for h in
                                     ("class", "reference", "model", "Se", "PPV")])),
                 html.Tbody(rows)],
                size="sm", bordered=True, id="rec-summary-perclass",
            ),
        ]
    children.append(html.P(f"{s.get('n_disagree', 0)} beat(s) with a disagreement "
                           "(models with each other or with the reference).", className="small"))
    if prepared.analysis is not None:
        children += _rhythm_and_hrv(prepared.analysis.rhythm_summary, prepared.analysis.hrv)
    if s.get("rhythm_reference"):
        children.append(_rhythm_reference_table(s["rhythm_reference"]))
    return html.Div(children)


def _rhythm_reference_table(rows: list[dict[str, Any]]) -> html.Div:
    """The rhythm episodes found against the reference's, as the rhythm benchmark scores
    them (duration: shared time over the reference's and over ours)."""

    def seconds(total: float, n: int) -> str:
        return f"{total:.0f} s ({n})"

    body = [
        html.Tr([html.Td(r["name"]), html.Td(seconds(r["ref_s"], int(r["ref_n"]))),
                 html.Td(seconds(r["det_s"], int(r["det_n"]))),
                 html.Td(_number(r["duration_se"], ".1f")),
                 html.Td(_number(r["duration_ppv"], ".1f"))])
        for r in rows
    ]
    header = ("rhythm", "reference (episodes)", "found (episodes)", "duration Se %",
              "duration +P %")
    return html.Div([
        html.P("Rhythm against the reference annotations (time shared with the "
               "reference's episodes, over theirs: Se; over ours: +P):",
               className="small mb-1"),
        dbc.Table([html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(body)],
                  size="sm", bordered=True, id="rec-summary-rhythm-reference"),
    ])


def _number(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _rhythm_and_hrv(rhythm: dict[str, Any], hrv: dict[str, Any]) -> list[Any]:
    """AF burden, episodes per rhythm and the HRV figures, as ecgcore computed them."""
    out: list[Any] = []
    if rhythm:
        out.append(html.P(
            f"Atrial fibrillation burden {_number(rhythm.get('af_burden_pct'), '.1f')} % "
            f"({rhythm.get('af_episodes', 0)} episode(s), "
            f"{_number(rhythm.get('af_total_s'), '.0f')} s); unreadable "
            f"{_number(rhythm.get('noise_pct'), '.1f')} % of the time.",
            id="rec-summary-af",
        ))
        rows = [
            html.Tr([html.Td(v.get("name", code)), html.Td(v.get("count")),
                     html.Td(_number(v.get("total_s"), ".0f")),
                     html.Td(_number(v.get("longest_s"), ".0f"))])
            for code, v in sorted(rhythm.get("by_label", {}).items())
        ]
        if rows:
            out.append(dbc.Table(
                [html.Thead(html.Tr([html.Th(h) for h in
                                     ("rhythm found", "episodes", "total s", "longest s")])),
                 html.Tbody(rows)],
                size="sm", bordered=True, id="rec-summary-rhythm",
            ))
    if hrv and hrv.get("sdnn_ms") is not None:
        frequency = hrv.get("frequency") or {}
        parts = [
            f"mean NN {_number(hrv.get('mean_nn_ms'), '.0f')} ms",
            f"SDNN {_number(hrv.get('sdnn_ms'), '.1f')} ms",
            f"RMSSD {_number(hrv.get('rmssd_ms'), '.1f')} ms",
            f"pNN50 {_number(hrv.get('pnn50_pct'), '.1f')} %",
        ]
        if frequency.get("lf_hf") is not None:
            parts.append(f"LF/HF {_number(frequency.get('lf_hf'), '.2f')}")
        out.append(html.P(
            "HRV (NN intervals only; AF, atrial or ventricular flutter and unreadable "
            "stretches left out): " + ", ".join(parts)
            + f"; {_number(hrv.get('nn_fraction'), '.0%')} of intervals were NN.",
            id="rec-summary-hrv", className="small",
        ))
    return out


EMPTY_FIGURE: dict[str, Any] = {"data": [], "layout": {}}
FIRST_VIEW_KEYS = ("info", "alerts", "lead_options", "leads", "summary", "trend", "ready",
                   "title", "wave", "view", "beats", "page", "page_label", "analysed_lead")


def first_view(
    record_id: str | None, session_id: str | None, layers: list[str] | None = None,
    lead: str | None = None, recording: Recording | None = None,
) -> dict[str, Any]:
    """Everything the record view shows when it opens, keyed by :data:`FIRST_VIEW_KEYS`.

    Reads and analyses the record through the cache (:func:`get_prepared`); a record that
    cannot be opened gives an alert and empty figures. ``layers``: the waveform's layers
    (default :data:`DEFAULT_LAYERS`); ``lead``: the lead to analyse (None: the default);
    ``recording``: the record's recording, when already read.
    """
    empty = {"info": "", "alerts": [], "lead_options": [], "leads": [], "summary": "",
             "trend": EMPTY_FIGURE, "ready": None, "wave": EMPTY_FIGURE, "view": None,
             "beats": "", "page": 0, "page_label": "", "analysed_lead": "",
             "title": f"Record {record_id}" if record_id else "Record"}
    if not record_id:
        return {**empty, "alerts": [_alert("No record given.", "danger")]}
    try:
        prepared = get_prepared(record_id, session_id, lead, recording)
    except EcgError as error:
        return {**empty, "alerts": [_alert(str(error), "danger")]}
    alerts = [_alert(n) for n in prepared.notices]
    if prepared.analysis_error:
        alerts.append(_alert(prepared.analysis_error, "danger"))
    cfg = context.config()
    view = clamp_view(0.0, cfg.initial_span_s, prepared.duration_s)
    leads = [prepared.lead_used]
    layers = list(DEFAULT_LAYERS if layers is None else layers)
    table, page, label = _table_page(prepared, record_id, 0, "all", lead)
    return {
        "info": _info(prepared), "alerts": alerts,
        "lead_options": [{"label": name, "value": i}
                         for i, name in enumerate(prepared.recording.leads)],
        "leads": leads, "summary": _summary(prepared),
        "trend": trend_figure(prepared, view),
        "ready": {"id": record_id, "lead": lead, "duration": prepared.duration_s,
                  "n_beats": int(prepared.beats["sample"].size) if prepared.beats else 0},
        "analysed_lead": _analysed_lead(prepared, record_id),
        "title": prepared.title if is_upload(record_id) else f"Record {record_id}",
        "wave": waveform_figure(prepared, view, leads, layers, points=cfg.points_per_view,
                                detail_span_s=cfg.detail_span_s),
        "view": {"view": list(view), "leads": leads, "layers": layers, "selected": None},
        "beats": table, "page": page, "page_label": label,
    }


@callback(
    Output("rec-info", "children"),
    Output("rec-alerts", "children"),
    Output("rec-leads", "options"),
    Output("rec-leads", "value"),
    Output("rec-summary", "children"),
    Output("rec-trend", "figure"),
    Output("rec-ready", "data"),
    Output("rec-title", "children"),
    Output("rec-wave", "figure"),
    Output("rec-view", "data"),
    Output("rec-beats", "children"),
    Output("rec-beats-page", "data"),
    Output("rec-beats-page-label", "children"),
    Output("rec-analysed-lead", "children"),
    Input("rec-id", "data"),
    State("session-id", "data"),
    State("rec-layers", "value"),
    prevent_initial_call=True,
)
def load_record(record_id, session_id, layers):
    """The first view as one callback answer, for programs that drive the app over HTTP.

    The page itself arrives drawn from :func:`layout` and never calls this.
    """
    first = first_view(record_id, session_id, layers)
    return tuple(first[key] for key in FIRST_VIEW_KEYS)


def _jump(prepared: PreparedRecord, target: str, view: tuple[float, float]) -> float | None:
    """Time (s) of the next/previous item of interest from the view's centre, or None."""
    beats = prepared.beats
    centre = 0.5 * (view[0] + view[1])
    if target == "rhythm":
        starts = sorted(e["start"] / prepared.fs for e in prepared.rhythm if e["label"] != "(N")
        later = [t for t in starts if t > centre + 0.5]
        return later[0] if later else None
    if not beats:
        return None
    mask = beats["disagree"] if target == "disagree" else beats["abnormal"]
    times = beats["time_s"][mask]
    if target == "prev-abnormal":
        earlier = times[times < centre - 0.05]
        return float(earlier[-1]) if earlier.size else None
    later = times[times > centre + 0.05]
    return float(later[0]) if later.size else None


@callback(
    Output("rec-wave", "figure", allow_duplicate=True),
    Output("rec-view", "data", allow_duplicate=True),
    Output("rec-trend", "figure", allow_duplicate=True),
    Output("rec-nav-msg", "children"),
    Output("rec-selected", "data"),
    Input("rec-wave", "clickData"),
    Input("rec-prev-abnormal", "n_clicks"),
    Input("rec-next-abnormal", "n_clicks"),
    Input("rec-next-disagree", "n_clicks"),
    Input("rec-next-rhythm", "n_clicks"),
    Input("rec-whole", "n_clicks"),
    Input({"type": "beat-row", "index": ALL}, "n_clicks"),
    Input("rec-trend", "clickData"),
    Input("rec-leads", "value"),
    Input("rec-layers", "value"),
    State("rec-view", "data"),
    State("rec-selected", "data"),
    State("rec-ready", "data"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def draw(click, _p, _n, _d, _r, _w, _rows, trend_click, leads, layers,
         drawn, selected, ready, session_id):
    """Redraw the waveform after a jump, a click or a toggle (zooms: :func:`zoom`)."""
    return _redraw(None, click, trend_click, leads, layers, drawn, selected, ready,
                   session_id)


@callback(
    Output("rec-wave", "figure", allow_duplicate=True),
    Output("rec-view", "data", allow_duplicate=True),
    Output("rec-trend", "figure", allow_duplicate=True),
    Output("rec-nav-msg", "children", allow_duplicate=True),
    Output("rec-selected", "data", allow_duplicate=True),
    Input("rec-wave", "relayoutData"),
    State("rec-leads", "value"),
    State("rec-layers", "value"),
    State("rec-view", "data"),
    State("rec-selected", "data"),
    State("rec-ready", "data"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def zoom(relayout, leads, layers, drawn, selected, ready, session_id):
    """Redraw the waveform for the visible range after a zoom or pan.

    A callback of its own: the graph's resizes also report here (with no range, so they
    draw nothing), and Dash drops the answer of a callback that is asked again before it
    answers, so a resize must not share a callback with the buttons.
    """
    out = _redraw(relayout, None, None, leads, layers, drawn, selected, ready, session_id)
    # A resize must not wipe the message of a jump answered just before it.
    return out if out[3] else (*out[:3], dash.no_update, out[4])


def _redraw(relayout, click, trend_click, leads, layers, drawn, selected, ready, session_id):
    """The new waveform, view state, trend patch, message and selection for an event.

    ``rec-view`` holds what is drawn (range, leads, layers, selected beat): an event that
    would draw the same again (the graph's autosize, the lead list being filled in) sends
    nothing.
    """
    if not ready:
        return dash.no_update, dash.no_update, dash.no_update, "", dash.no_update
    try:
        prepared = get_prepared(ready["id"], session_id, ready.get("lead"))
    except EcgError as error:
        return dash.no_update, dash.no_update, dash.no_update, str(error), dash.no_update
    cfg = context.config()
    duration = prepared.duration_s
    view = (drawn or {}).get("view")
    current = tuple(view) if view else clamp_view(0.0, cfg.initial_span_s, duration)
    trigger = ctx.triggered_id
    message = ""
    target_time = None
    if isinstance(trigger, dict) and trigger.get("type") == "beat-row":
        # New rows (another page) also "trigger" with no click: only a click counts.
        if not ctx.triggered[0].get("value"):
            return dash.no_update, dash.no_update, dash.no_update, dash.no_update, dash.no_update
        selected = int(trigger["index"])
        target_time = float(prepared.beats["time_s"][selected])
    elif trigger == "rec-wave" and "relayoutData" in ctx.triggered[0]["prop_id"]:
        current = _range_from_relayout(relayout or {}, duration) or current
    elif trigger == "rec-wave":
        beat = _clicked_beat(click)
        if beat is None:
            return dash.no_update, dash.no_update, dash.no_update, dash.no_update, dash.no_update
        selected = beat
        message = f"selected beat {beat}"
    elif trigger == "rec-whole":
        current = (0.0, duration)
    elif trigger in {"rec-prev-abnormal", "rec-next-abnormal", "rec-next-disagree",
                     "rec-next-rhythm"}:
        kind = trigger.removeprefix("rec-").replace("next-", "")
        target_time = _jump(prepared, kind, current)
        if target_time is None:
            message = "nothing further in that direction"
    elif trigger == "rec-trend" and trend_click:
        t = parse_axis_value(trend_click["points"][0]["x"])
        target_time = t
    if target_time is not None:
        span = current[1] - current[0]
        if span > cfg.detail_span_s:
            span = cfg.initial_span_s
        current = clamp_view(target_time - span / 2, target_time + span / 2, duration)
        if prepared.beats and trigger != "rec-trend":
            nearest = int(np.argmin(np.abs(prepared.beats["time_s"] - target_time)))
            selected = nearest
        message = message or f"at {format_hms(target_time)}"
    leads = list(leads or [])
    layers = list(layers or [])
    state = {"view": [float(current[0]), float(current[1])], "leads": leads,
             "layers": layers, "selected": selected}
    if drawn and state == {**drawn, "view": [float(v) for v in drawn.get("view") or []]}:
        return dash.no_update, dash.no_update, dash.no_update, message, dash.no_update
    figure = waveform_figure(
        prepared, current, leads, layers,
        points=cfg.points_per_view, detail_span_s=cfg.detail_span_s,
    )
    if selected is not None and prepared.beats and 0 <= selected < prepared.beats["sample"].size:
        t_sel = float(prepared.beats["time_s"][selected])
        if current[0] <= t_sel <= current[1]:
            figure["layout"]["shapes"].append({
                "type": "line", "xref": "x", "yref": "paper", "x0": t_sel,
                "x1": t_sel, "y0": 0, "y1": 1,
                "line": {"color": "#1565c0", "width": 1, "dash": "dot"},
            })
    trend = Patch()
    trend["layout"]["shapes"][-1] = view_shape(current)
    return figure, state, trend, message, selected


def _range_from_relayout(relayout: dict, duration: float) -> tuple[float, float] | None:
    if any(k.endswith("autorange") and v for k, v in relayout.items()):
        return (0.0, duration)
    lo = hi = None
    for key, value in relayout.items():
        if not key.startswith("xaxis"):
            continue
        if key.endswith("range[0]"):
            lo = parse_axis_value(value)
        elif key.endswith("range[1]"):
            hi = parse_axis_value(value)
        elif key.endswith(".range") and isinstance(value, list) and len(value) == 2:
            lo, hi = parse_axis_value(value[0]), parse_axis_value(value[1])
    if lo is None or hi is None or hi <= lo:
        return None
    return clamp_view(lo, hi, duration, min_span=0.2)


def _clicked_beat(click) -> int | None:
    if not click or not click.get("points"):
        return None
    data = click["points"][0].get("customdata")
    if isinstance(data, list):
        data = data[0] if data else None
    return int(data) if isinstance(data, int | float) else None


@callback(
    Output("rec-explain-link", "children"),
    Input("rec-selected", "data"),
    State("rec-ready", "data"),
    prevent_initial_call=True,
)
def explain_link(selected, ready):
    """A link to explain the selected beat."""
    return _explain_link(selected, ready)


def _explain_link(selected: int | None, ready: dict | None):
    if selected is None or not ready:
        return html.Span("click a beat label to select it", className="text-muted small")
    href = explain_href(ready["id"], selected, ready.get("lead"))
    return dcc.Link(f"Explain beat {selected} →", href=href, id="rec-explain-a")


@callback(
    Output("rec-beats", "children", allow_duplicate=True),
    Output("rec-beats-page", "data", allow_duplicate=True),
    Output("rec-beats-page-label", "children", allow_duplicate=True),
    Input("rec-beats-prev", "n_clicks"),
    Input("rec-beats-next", "n_clicks"),
    Input("rec-table-filter", "value"),
    State("rec-beats-page", "data"),
    State("rec-ready", "data"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def beat_table(_prev, _next, which, page, ready, session_id):
    """Another page of the beat table (only the visible rows travel)."""
    if not ready:
        return dash.no_update, dash.no_update, dash.no_update
    try:
        prepared = get_prepared(ready["id"], session_id, ready.get("lead"))
    except EcgError as error:
        return str(error), 0, ""
    page = int(page or 0)
    if ctx.triggered_id == "rec-beats-prev":
        page -= 1
    elif ctx.triggered_id == "rec-beats-next":
        page += 1
    else:
        page = 0
    return _table_page(prepared, ready["id"], page, which, ready.get("lead"))


TABLE_COLUMNS = ("#", "time", "RR (ms)", "AAMI", "AAMI probabilities", "binary (p abnormal)",
                 "reference", "")


def _binary_cell(beats: dict[str, Any], i: int) -> str:
    """The served binary label, the network's p(abnormal), and why they seem to disagree."""
    label, p = beats["binary"][i], float(beats["binary_p"][i])
    if not label:
        return ""
    text = f"{label} ({p:.2f})"
    # The served label is both networks' word (ecgcore.analysis.served_binary_labels).
    if label == "abnormal" and p < BINARY_THRESHOLD:
        text += f" (AAMI {beats['aami'][i]})"
    elif label == "normal" and p >= BINARY_THRESHOLD:
        text += " (AF rule)" if beats["rule"][i] else " (AAMI N, binary not sure)"
    return text


def _rule_suffix(beats: dict[str, Any], i: int) -> str:
    """Why a served label is not the network's, for the beat table."""
    why = [name for name, applied in (("QRS shape rule", beats["morphology"][i]),
                                      ("AF rule", beats["rule"][i])) if applied]
    if not why:
        return ""
    return f" ({beats['network_aami'][i]} by the network; {' and '.join(why)})"


def _analysed_lead(prepared: PreparedRecord, record_id: str):
    """Which lead the beats, waves and labels come from, and links to analyse another."""
    recording, analysis = prepared.recording, prepared.analysis
    if analysis is None or len(recording.leads) < 2:
        return ""
    others = []
    for name in recording.leads:
        if name == analysis.lead_used:
            continue
        others += [" · " if others else "",
                   dcc.Link(name, href=record_href(record_id, name),
                            className="rec-analyse-lead")]
    return html.Span([
        html.Span("Analysed lead: ", className="fw-bold"), html.Span(analysis.lead_used),
        html.Span(" (the models learnt MLII; the other leads are drawn, not analysed) · "
                  "analyse instead: ", className="text-muted"),
        *others,
    ])


def _table_page(prepared: PreparedRecord, record_id: str, page: int, which: str,
                lead: str | None = None):
    """One page of the beat table: the table, the page number and its label."""
    beats = prepared.beats
    if not beats:
        return html.P("No beats.", className="text-muted"), 0, ""
    if which == "abnormal":
        index = np.flatnonzero(beats["abnormal"])
    elif which == "disagree":
        index = np.flatnonzero(beats["disagree"])
    else:
        index = np.arange(beats["sample"].size)
    pages = max(1, int(np.ceil(index.size / TABLE_PAGE_SIZE)))
    page = min(max(int(page or 0), 0), pages - 1)
    rows = []
    for i in index[page * TABLE_PAGE_SIZE:(page + 1) * TABLE_PAGE_SIZE]:
        i = int(i)
        rr = beats["rr_s"][i]
        probs = beats["aami_p"][i]
        cells = [
            str(i), format_hms(beats["time_s"][i]),
            "" if not np.isfinite(rr) else f"{rr * 1000:.0f}",
            beats["aami"][i] + _rule_suffix(beats, i),
            "" if not np.isfinite(probs).all() else " ".join(
                f"{c}:{p:.2f}" for c, p in zip(AAMI_CLASSES, probs, strict=True)),
            _binary_cell(beats, i),
            beats["ref"][i],
        ]
        link = dcc.Link("explain", href=explain_href(record_id, i, lead))
        rows.append(html.Tr(
            [html.Td(c) for c in cells] + [html.Td(link)],
            id={"type": "beat-row", "index": i}, n_clicks=0,
            className="beat-row" + (" table-danger" if beats["disagree"][i] else ""),
        ))
    table = dbc.Table(
        [html.Thead(html.Tr([html.Th(c) for c in TABLE_COLUMNS])), html.Tbody(rows)],
        size="sm", hover=True, className="mb-0",
    )
    label = f"page {page + 1} of {pages} ({index.size} beats)"
    return table, page, label
