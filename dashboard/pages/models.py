"""Models page: what ``ecg evaluate`` and ``ecg train`` wrote, drawn, never typed in.

Reads ``ecgcore/models/``: ``evaluation.json`` (confusion matrices and per-class figures for
the DS2 inter-patient test, end to end, and the leaky intra-patient split), the model
cards (``binary.md``/``aami.md``) and the training histories (``*_history.json``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

dash.register_page(__name__, path="/models", name="Models", order=3)

MODELS_DIR = Path(__file__).resolve().parents[2] / "ecgcore" / "models"
MODEL_NAMES = {"aami": "AAMI five-class model", "binary": "binary normal/abnormal model"}
WAYS = (
    ("reference", "DS2 inter-patient test, at the reference beat positions", "primary"),
    ("end_to_end", "DS2 inter-patient test, end to end on ecgcore's detected beats "
                   "(missed and extra beats count as errors)", "primary"),
    ("intra_patient", "INTRA-PATIENT random beat split — leaky (the same patients in "
                      "training and test); shown only to compare with published "
                      "intra-patient claims, not a measure of performance on new patients",
     "warning"),
)


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _heatmap(matrix: list[list[float]], classes: list[str], title: str, normalised: bool,
             id_: str) -> dcc.Graph:
    text = [[(f"{v:.2f}" if normalised else f"{int(v)}") for v in row] for row in matrix]
    # Counts span four decades (N against Q): colour by their logarithm, print them as is.
    colour = matrix if normalised else [[math.log10(1 + v) for v in row] for row in matrix]
    figure = {
        "data": [{
            "type": "heatmap", "z": colour, "x": classes, "y": classes, "text": text,
            "texttemplate": "%{text}", "colorscale": "Blues", "reversescale": True,
            "showscale": False,
            "hovertemplate": "reference %{y}, predicted %{x}: %{text}<extra></extra>",
        }],
        "layout": {
            "title": {"text": title, "font": {"size": 13}}, "height": 300, "width": 330,
            "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
            "xaxis": {"title": {"text": "predicted"}, "side": "bottom"},
            "yaxis": {"title": {"text": "reference"}, "autorange": "reversed"},
        },
    }
    return dcc.Graph(figure=figure, config={"displayModeBar": False}, id=id_)


def _figures_block(way: str, name: str, figures: dict) -> html.Div:
    classes = list(figures.get("classes") or [])
    matrix = figures.get("confusion")
    children: list[Any] = [html.H6(MODEL_NAMES.get(name, name))]
    if matrix and classes:
        normalised = []
        for row in matrix:
            total = sum(row)
            normalised.append([v / total if total else 0.0 for v in row])
        children.append(dbc.Row([
            dbc.Col(_heatmap(matrix, classes, "counts", False, f"cm-{way}-{name}-counts"),
                    width="auto"),
            dbc.Col(_heatmap(normalised, classes, "row-normalised (recall)", True,
                             f"cm-{way}-{name}-norm"), width="auto"),
        ]))
    per_class = figures.get("per_class") or {}
    if per_class:
        rows = [
            html.Tr([html.Td(c), html.Td(v.get("support")), html.Td(v.get("predicted")),
                     html.Td(_pct(v.get("sensitivity"))), html.Td(_pct(v.get("ppv"))),
                     html.Td(_pct(v.get("f1")))])
            for c, v in per_class.items()
        ]
        children.append(dbc.Table(
            [html.Thead(html.Tr([html.Th(h) for h in
                                 ("class", "reference beats", "predicted", "Se %", "+P %",
                                  "F1 %")])),
             html.Tbody(rows)],
            size="sm", bordered=True, style={"maxWidth": "560px"},
            id=f"pc-{way}-{name}",
        ))
    extra = []
    if figures.get("accuracy") is not None:
        extra.append(f"accuracy {_pct(figures['accuracy'])} %")
    if figures.get("n_beats") is not None:
        extra.append(f"{figures['n_beats']} beats")
    if name == "binary" and figures.get("specificity") is not None:
        extra.append(f"abnormal Se {_pct(figures.get('abnormal_sensitivity'))} %, "
                     f"specificity {_pct(figures.get('specificity'))} %, abnormal +P "
                     f"{_pct(figures.get('abnormal_ppv'))} %")
    if extra:
        children.append(html.P(" · ".join(extra), className="small text-muted"))
    return html.Div(children, className="mb-3")


def _evaluation_section(folder: Path) -> list[Any]:
    evaluation = _read_json(folder / "evaluation.json")
    if not isinstance(evaluation, dict):
        return [dbc.Alert(
            f"No evaluation yet: {folder / 'evaluation.json'} is missing or unreadable. "
            "`ecg evaluate` (or `ecg train`) writes it.", color="secondary",
            id="models-no-evaluation")]
    out: list[Any] = []
    for way, title, colour in WAYS:
        result = evaluation.get(way)
        if not isinstance(result, dict):
            note = evaluation.get(f"{way}_note")
            if note:
                out.append(html.P(f"{title}: not run ({note}).", className="text-muted"))
            continue
        blocks = [_figures_block(way, name, result[name])
                  for name in ("binary", "aami") if isinstance(result.get(name), dict)]
        detection = result.get("detection")
        if isinstance(detection, dict) and "reference_beats" in detection:
            blocks.append(html.P(
                f"Detection: {detection['reference_beats']} reference beats, "
                f"{detection.get('missed')} missed, {detection.get('extra')} extra.",
                className="small"))
        rule = _rhythm_rule_block(result)
        if rule is not None:
            blocks.append(rule)
        out.append(dbc.Card(
            [dbc.CardHeader(title, className=f"text-bg-{colour}" if colour == "warning"
                            else "fw-bold"),
             dbc.CardBody(blocks)],
            className="mb-3", id=f"models-{way}",
        ))
    if evaluation.get("card_differences"):
        out.append(dbc.Alert("The cards differ from this evaluation: "
                             + "; ".join(evaluation["card_differences"]), color="warning"))
    return out


def _rhythm_rule_block(result: dict[str, Any]) -> html.Div | None:
    """The end-to-end figures without the rules beside the served ones."""
    rule, without = result.get("rhythm_rule"), result.get("without_rhythm_rule")
    if not isinstance(rule, dict) or not isinstance(without, dict):
        return None
    rows = []
    variants = [("served (with the rules)", result),
                ("the networks alone (no rule)", without)]
    ceiling = result.get("with_reference_rhythm")
    if isinstance(ceiling, dict):
        variants.append(("not served: the rule on the reference's AF/AFL episodes", ceiling))
    for label, figures in variants:
        aami, binary = figures.get("aami") or {}, figures.get("binary") or {}
        per = aami.get("per_class") or {}
        cells = [_pct(aami.get("accuracy"))]
        for c in ("N", "S", "V"):
            v = per.get(c) or {}
            cells.append(f"{_pct(v.get('sensitivity'))} / {_pct(v.get('ppv'))}")
        cells.append(f"{_pct(binary.get('abnormal_sensitivity'))} / "
                     f"{_pct(binary.get('specificity'))}")
        rows.append(html.Tr([html.Td(label)] + [html.Td(c) for c in cells]))
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "labels", "accuracy", "N Se / +P", "S Se / +P", "V Se / +P",
        "binary abnormal Se / Sp")]))
    morphology = result.get("morphology_rule")
    rules = [f"Rhythm rule: {rule.get('rule', '')} ({rule.get('relabelled_beats', '?')} beats "
             "relabelled)."]
    if isinstance(morphology, dict):
        rules.insert(0, f"Morphology rule: {morphology.get('rule', '')} "
                        f"({morphology.get('relabelled_beats', '?')} beats relabelled).")
    return html.Div([
        html.Div(" ".join(rules) + " The figures above are the served labels; beside them:",
                 className="small"),
        dbc.Table([head, html.Tbody(rows)], size="sm", bordered=True,
                  style={"maxWidth": "760px"}, id="models-rhythm-rule"),
    ], className="mb-3")


def _history_figure(history: dict, name: str) -> dcc.Graph | None:
    histories = history.get("histories") or []
    seeds = history.get("seeds") or list(range(len(histories)))
    served = history.get("served_seed")
    data = []
    palette = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a")
    for k, (seed, rows) in enumerate(zip(seeds, histories, strict=False)):
        if not isinstance(rows, list) or not rows:
            continue
        colour = palette[k % len(palette)]
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
        for key, dash_style, axis in (("loss", "solid", "y"), ("val_loss", "dot", "y"),
                                      ("accuracy", "dash", "y2"),
                                      ("val_accuracy", "dashdot", "y2")):
            values = [r.get(key) for r in rows]
            if any(v is not None for v in values):
                data.append({
                    "type": "scatter", "mode": "lines+markers", "x": epochs, "y": values,
                    "name": f"seed {seed}{' (served)' if seed == served else ''} {key}",
                    "yaxis": axis,
                    "line": {"color": colour, "dash": dash_style},
                })
    if not data:
        return None
    return dcc.Graph(
        figure={"data": data, "layout": {
            "title": {"text": f"{name}: training curves per seed (loss left, accuracy "
                              "right)", "font": {"size": 13}},
            "height": 300, "margin": {"l": 50, "r": 60, "t": 40, "b": 40},
            "xaxis": {"title": {"text": "epoch"}, "dtick": 1},
            "yaxis": {"title": {"text": "loss"}},
            "yaxis2": {"title": {"text": "accuracy"}, "overlaying": "y", "side": "right",
                       "range": [0, 1], "showgrid": False},
        }},
        config={"displayModeBar": False}, id=f"history-{name}",
    )


def _cards_and_curves(folder: Path) -> list[Any]:
    out: list[Any] = []
    for name in ("binary", "aami"):
        card = folder / f"{name}.md"
        history = _read_json(folder / f"{name}_history.json")
        items: list[Any] = [html.H4(MODEL_NAMES[name])]
        graph = _history_figure(history, name) if isinstance(history, dict) else None
        items.append(graph if graph is not None else html.P(
            f"No training history ({name}_history.json) yet.", className="text-muted"))
        if card.is_file():
            items.append(html.Details([
                html.Summary("Model card"),
                dcc.Markdown(card.read_text(), className="model-card mt-2",
                             id=f"card-{name}"),
            ], open=False))
        else:
            items.append(html.P(f"No model card ({name}.md) yet: `ecg train` writes it.",
                                className="text-muted"))
        out.append(html.Div(items, className="mb-4"))
    return out


def layout(**_query) -> html.Div:
    """Both models' figures, cards and training curves, from ``ecgcore/models/``."""
    from dashboard import context

    folder = Path(context.config().models_dir or MODELS_DIR)
    return html.Div([
        html.H2("Models"),
        html.P(f"Everything on this page is read from {folder}, as written by `ecg train` "
               "and `ecg evaluate`.", className="text-muted"),
        html.H3("Evaluation"),
        *_evaluation_section(folder),
        html.H3("Model cards and training"),
        *_cards_and_curves(folder),
    ])
