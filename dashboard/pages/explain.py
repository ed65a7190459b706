"""Explain page ``/explain?record=<id>&beat=<n>``: why each model labelled a beat so.

Both models' probabilities, their SHAP attributions (ecgcore.explain) drawn over the beat's
waveform and as bars for the rhythm features (RR intervals, P coherence), and the beat's
neighbours in time.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, callback, dcc, html

from dashboard.components.figures import CLASS_COLOURS, format_hms, time_ticks, typed
from dashboard.records import (
    AAMI_CLASSES,
    NotAvailableError,
    PreparedRecord,
    explanation,
    get_prepared,
    record_href,
    start_long_preparation,
)
from ecgcore.errors import EcgError
from ecgcore.recording import Recording

dash.register_page(__name__, path="/explain", name="Explain", order=4)

NEIGHBOURS = 3
"""Beats shown either side of the explained beat."""
MODELS = (("aami", "AAMI five-class model"), ("binary", "binary normal/abnormal model"))


def layout(record: str | None = None, beat: str | None = None, lead: str | None = None,
           **_query) -> html.Div:
    """The chosen beat's explanation (filled in by :func:`explain`), or a chooser.

    ``lead``: the analysed lead of the record view the beat comes from (None: the default).
    """
    return html.Div([
        html.H2("Explain a beat"),
        dcc.Store(id="explain-params", data={"record": record, "beat": beat, "lead": lead}),
        dbc.Row([
            dbc.Col(dbc.Input(id="explain-record", value=record or "", placeholder="record"),
                    width=2),
            dbc.Col(dbc.Input(id="explain-beat", value=beat or "", type="number", min=0,
                              placeholder="beat #"), width=2),
            dbc.Col(dbc.Button("Explain", id="explain-go", color="primary"), width="auto"),
            dbc.Col(html.Span("Or pick a beat in a record view (click its label, or "
                              "'explain' in the beat table).", className="text-muted"),
                    className="align-self-center"),
        ], className="mb-3 g-2"),
        dcc.Loading(
            html.Div(id="explain-body"),
            type="circle",
            overlay_style={"visibility": "visible", "opacity": 0.5},
            custom_spinner=html.Div([
                dbc.Spinner(color="primary"),
                html.Div("Computing SHAP attributions for both models (a few seconds)…",
                         className="text-muted mt-2"),
            ]),
        ),
    ])


@callback(
    Output("explain-params", "data"),
    Input("explain-go", "n_clicks"),
    State("explain-record", "value"),
    State("explain-beat", "value"),
    prevent_initial_call=True,
)
def choose(_n, record, beat):
    """The chooser's values become the explained beat."""
    return {"record": (record or "").strip(), "beat": beat}


def _probability_table(prepared: PreparedRecord, index: int) -> dbc.Table | html.Div:
    beats = prepared.beats
    rows = []
    if beats["aami"][index]:
        probs = beats["aami_p"][index]
        rows.append(html.Tr([html.Td("AAMI model"), html.Td(html.B(beats["aami"][index]))]
                            + [html.Td(f"{p:.3f}") for p in probs]))
    if beats["binary"][index]:
        p = float(beats["binary_p"][index])
        rows.append(html.Tr([html.Td("binary model"), html.Td(html.B(beats["binary"][index])),
                             html.Td(f"normal {1 - p:.3f}", colSpan=2),
                             html.Td(f"abnormal {p:.3f}", colSpan=3)]))
    if beats["ref"][index]:
        rows.append(html.Tr([html.Td("reference"), html.Td(html.B(beats["ref"][index]))]
                            + [html.Td("") for _ in AAMI_CLASSES]))
    head = html.Thead(html.Tr([html.Th(""), html.Th("label")]
                              + [html.Th(f"p({c})") for c in AAMI_CLASSES]))
    table = dbc.Table([head, html.Tbody(rows)], size="sm", bordered=True,
                      className="explain-probs", style={"maxWidth": "720px"},
                      id="explain-probs")
    notes = []
    network = beats["network_aami"][index]
    if beats["morphology"][index]:
        notes.append(
            f"The AAMI network called this beat {network}; its QRS is "
            + ("shaped like the neighbouring normal beats', so it is not counted V"
               if network == "V" else "not shaped like the neighbouring normal beats', "
               "so it is counted V (a premature atrial beat is conducted like a normal one)")
            + " (the QRS shape rule).")
    if beats["rule"][index]:
        notes.append(
            ("The AAMI network called this beat S; it" if not beats["morphology"][index]
             else "It") + " is labelled N (and normal) because it lies in detected atrial "
            "fibrillation or flutter, where no beat is a premature atrial beat.")
    if not notes:
        return table
    return html.Div([table, html.P(
        " ".join(notes) + " The attributions below explain the network's own answer.",
        className="small text-muted", id="explain-rule")])


def _class_shown(result: dict[str, Any]) -> int:
    # Explain the class the model chose: its attributions say what pushed it there.
    return int(np.argmax(result["f_x"]))


def _waveform_figure(result: dict[str, Any], model: str, fs_internal: float) -> dict[str, Any]:
    k = _class_shown(result)
    cls = result["classes"][k]
    attribution = np.asarray(result["waveform"])[:, k]
    n = attribution.size
    t_ms = (np.arange(n) - int(result["r_index"])) / fs_internal * 1000.0
    beat_wave = np.asarray(result.get("beat_waveform", []))
    baseline = np.asarray(result["baseline_waveform"])
    limit = float(np.max(np.abs(attribution))) or 1.0
    data = [
        {"type": "bar", "x": typed(t_ms), "y": typed(attribution), "yaxis": "y2",
         "name": f"SHAP for {cls}", "marker": {"color": typed(attribution),
                                               "colorscale": "RdBu",
                                               "cmin": -limit, "cmax": limit},
         "opacity": 0.55, "hovertemplate": "%{x:.0f} ms: %{y:.4f}<extra></extra>"},
        {"type": "scatter", "mode": "lines", "x": typed(t_ms), "y": typed(baseline),
         "name": "patient's usual beat (baseline)",
         "line": {"color": "#888", "dash": "dot", "width": 1.5}},
    ]
    if beat_wave.size == n:
        data.append({"type": "scatter", "mode": "lines", "x": typed(t_ms), "y": typed(beat_wave),
                     "name": "this beat", "line": {"color": "#111", "width": 2}})
    return {
        "data": data,
        "layout": {
            "title": {"text": f"{model}: attributions towards {cls} over the beat "
                              "(red pushes towards it, blue away)", "font": {"size": 13}},
            "height": 330, "margin": {"l": 50, "r": 50, "t": 40, "b": 40},
            "xaxis": {"title": {"text": "ms from the R peak"}},
            "yaxis": {"title": {"text": "normalised amplitude"}},
            "yaxis2": {"overlaying": "y", "side": "right", "showgrid": False,
                       "title": {"text": "SHAP"}, "zeroline": True},
            "legend": {"orientation": "h", "y": -0.25}, "bargap": 0,
        },
    }


def _rr_figure(result: dict[str, Any], model: str) -> dict[str, Any]:
    k = _class_shown(result)
    cls = result["classes"][k]
    values = np.asarray(result["rr"])[:, k]
    names = list(result["rr_names"])
    actual = result.get("rr_values")
    labels = names if actual is None else [
        f"{n} = {float(v):.2f}" for n, v in zip(names, actual, strict=True)
    ]
    colours = ["#c62828" if v > 0 else "#1565c0" for v in values]
    return {
        "data": [{"type": "bar", "orientation": "h", "x": values.tolist(), "y": labels,
                  "marker": {"color": colours}, "name": "SHAP",
                  "hovertemplate": "%{y}: %{x:.4f}<extra></extra>"}],
        "layout": {
            "title": {"text": f"{model}: RR and P-coherence features towards {cls}",
                      "font": {"size": 13}},
            "height": 330, "margin": {"l": 230, "r": 20, "t": 40, "b": 40},
            "xaxis": {"title": {"text": "SHAP"}, "zeroline": True},
            "yaxis": {"autorange": "reversed"},
        },
    }


def _neighbours_figure(prepared: PreparedRecord, index: int) -> dict[str, Any]:
    beats = prepared.beats
    n = beats["sample"].size
    lo, hi = max(0, index - NEIGHBOURS), min(n - 1, index + NEIGHBOURS)
    fs = prepared.fs
    start = max(0, int(beats["sample"][lo] - 0.4 * fs))
    stop = min(prepared.recording.n_samples, int(beats["sample"][hi] + 0.5 * fs))
    lead = prepared.lead_used
    y = prepared.conditioned(lead)[start:stop]
    t = np.arange(start, stop) / fs
    top = float(np.max(y)) if y.size else 1.0
    shown = np.arange(lo, hi + 1)
    labels = [
        (beats["aami"][i] or beats["binary"][i][:2] or "?")
        + (f" (ref {beats['ref'][i]})" if beats["ref"][i] else "")
        for i in shown
    ]
    colours = [CLASS_COLOURS.get(beats["aami"][i], "#555") for i in shown]
    t_beat = float(beats["time_s"][index])
    return {
        "data": [
            {"type": "scatter", "mode": "lines", "x": typed(t), "y": typed(y),
             "line": {"color": "#111", "width": 1}, "name": prepared.recording.leads[lead],
             "hoverinfo": "skip"},
            {"type": "scatter", "mode": "text", "x": typed(beats["time_s"][shown]),
             "y": [top * 1.15] * shown.size, "text": labels,
             "textfont": {"color": colours, "size": 13}, "name": "labels",
             "hoverinfo": "skip"},
        ],
        "layout": {
            "title": {"text": "The beat and its neighbours", "font": {"size": 13}},
            "height": 260, "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
            "showlegend": False,
            "xaxis": {"range": [t[0], t[-1]] if t.size else None, "zeroline": False,
                      **(time_ticks(float(t[0]), float(t[-1]), 8) if t.size else {})},
            "shapes": [{"type": "rect", "xref": "x", "yref": "paper",
                        "x0": t_beat - 0.25, "x1": t_beat + 0.4, "y0": 0, "y1": 1,
                        "fillcolor": "rgba(21,101,192,0.12)", "line": {"width": 0}}],
        },
    }


@callback(
    Output("explain-body", "children"),
    Input("explain-params", "data"),
    State("session-id", "data"),
)
def explain(params, session_id):
    """Both models' probabilities and attributions for the chosen beat."""
    params = params or {}
    record, beat = params.get("record"), params.get("beat")
    if not record or beat in (None, ""):
        return html.P("Choose a record and a beat.", className="text-muted")
    try:
        index = int(beat)
    except (TypeError, ValueError):
        return dbc.Alert(f"{beat!r} is not a beat number.", color="warning")
    lead = params.get("lead") or None
    # A long recording not analysed yet: analysed in the background, as its record view
    # does, rather than for a minute inside this callback.
    started = start_long_preparation(str(record), session_id, lead)
    if isinstance(started, dict):
        return dbc.Alert(
            [f"This {started['duration_s'] / 3600.0:.1f}-hour recording is being analysed on "
             "its first opening; ",
             dcc.Link("its record view", href=record_href(str(record), lead)),
             " says how far it is. Come back to this beat when it is drawn."],
            color="info", id="explain-pending")
    try:
        prepared = get_prepared(str(record), session_id, lead,
                                started if isinstance(started, Recording) else None)
    except EcgError as error:
        return dbc.Alert(str(error), color="danger")
    if prepared.analysis is None or not prepared.beats:
        return dbc.Alert(prepared.analysis_error or "This record has no analysed beats.",
                         color="danger")
    n = prepared.beats["sample"].size
    if not 0 <= index < n:
        return dbc.Alert(f"Record {record} has beats 0 to {n - 1}; there is no beat {index}.",
                         color="warning")
    from ecgcore.signal import INTERNAL_FS

    back = record_href(str(record), params.get("lead") or None)
    header = [
        html.H4([f"Beat {index} of ", dcc.Link(prepared.title, href=back),
                 f" at {format_hms(prepared.beats['time_s'][index])}"]),
        _probability_table(prepared, index),
        dcc.Graph(figure=_neighbours_figure(prepared, index), config={"displayModeBar": False},
                  id="explain-neighbours"),
    ]
    from dashboard.records import beat_model_inputs

    if beat_model_inputs(prepared).turned_over:
        header.append(html.P(
            "This lead looks recorded upside down: the models read it turned over, and the "
            "beats drawn below are as the models saw them.",
            className="small text-muted", id="explain-turned-over"))
    sections: list[Any] = []
    for model, title in MODELS:
        try:
            result = explanation(prepared, index, model)
        except NotAvailableError as error:
            sections.append(dbc.Alert(str(error), color="secondary", id="explain-unavailable"))
            break
        except EcgError as error:
            sections.append(dbc.Alert(f"{title}: {error}", color="warning"))
            continue
        result = dict(result)
        # The beat window the models saw (normalised), for drawing under the attributions.
        result["beat_waveform"] = np.asarray(beat_model_inputs(prepared).waveforms[index, :, 0])
        sections.append(html.Div([
            html.H5(title),
            html.P(f"SHAP (permutation) against the patient's usual beat at a regular rhythm; "
                   f"completeness error {result['completeness_error']:.1e}; "
                   f"{result['seconds']:.1f} s.", className="small text-muted"),
            dbc.Row([
                dbc.Col(dcc.Graph(figure=_waveform_figure(result, model, INTERNAL_FS),
                                  config={"displayModeBar": False},
                                  id=f"explain-wave-{model}"), lg=7),
                dbc.Col(dcc.Graph(figure=_rr_figure(result, model),
                                  config={"displayModeBar": False},
                                  id=f"explain-rr-{model}"), lg=5),
            ]),
        ], className="mb-3"))
    return html.Div(header + sections)
