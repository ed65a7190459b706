"""Plotly figures of the record view, built for the visible range only.

The waveform of a 30-minute record is 650,000 samples per lead; only the visible range
is sent, down-sampled to a few thousand points with MinMaxLTTB (tsdownsample), and the
per-beat markers and labels are drawn only for beats in view (all of them below
``detail_span_s``, only the non-normal ones above).

Time is in seconds on a linear axis whose tick labels read h:mm:ss.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from dashboard.records import PreparedRecord

CLASS_COLOURS = {
    "N": "#2e7d32", "S": "#1565c0", "V": "#c62828", "F": "#ef6c00", "Q": "#6a1b9a", "": "#555",
}
BINARY_COLOURS = {"normal": "#2e7d32", "abnormal": "#c62828", "": "#555"}
DISAGREE_COLOUR = "#d50000"
WAVE_COLOURS = {"P": "#1e88e5", "QRS": "#8e24aa", "T": "#00897b"}
WAVE_POINTS = {
    "P": (("p_onset", "triangle-right"), ("p_peak", "circle"), ("p_offset", "triangle-left")),
    "QRS": (("qrs_onset", "triangle-right"), ("qrs_offset", "triangle-left")),
    "T": (("t_peak", "circle"), ("t_offset", "triangle-left")),
}
RHYTHM_COLOURS = {
    "(AFIB": "rgba(255,152,0,0.18)", "(AFL": "rgba(255,193,7,0.22)",
    "(B": "rgba(229,57,53,0.14)", "(T": "rgba(244,143,177,0.22)",
    "(VT": "rgba(198,40,40,0.25)", "(SVTA": "rgba(30,136,229,0.18)",
    "(NOD": "rgba(0,172,193,0.18)", "(SBR": "rgba(121,134,203,0.18)",
    "(IVR": "rgba(142,36,170,0.18)", "(VFL": "rgba(183,28,28,0.30)",
    "(P": "rgba(120,144,156,0.18)", "(AB": "rgba(3,155,229,0.18)",
    "(BII": "rgba(109,76,65,0.18)", "(PREX": "rgba(0,137,123,0.18)",
}
DEFAULT_RHYTHM_COLOUR = "rgba(158,158,158,0.18)"
ALL_LAYERS = ("waves", "aami", "binary", "reference", "disagree", "rhythm", "raw", "grid")
DEFAULT_LAYERS = ["waves", "aami", "binary", "reference", "disagree", "rhythm"]


def parse_axis_value(value: Any) -> float | None:
    """Seconds from an axis value of a relayout or click event (None if not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


TICK_STEPS_S = (0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def time_ticks(start_s: float, end_s: float, target: int = 10) -> dict[str, Any]:
    """Tick positions (seconds) and ``h:mm:ss`` labels for a visible range.

    Plotly has no duration axis, and its date axis reads small millisecond numbers as
    years, so the axis is in seconds and the labels are written here.
    """
    span = max(end_s - start_s, 1e-3)
    step = next((s for s in TICK_STEPS_S if span / s <= target), TICK_STEPS_S[-1])
    first = np.ceil(start_s / step) * step
    values = np.arange(first, end_s + 1e-9, step)
    decimals = step < 1
    return {
        "tickmode": "array",
        "tickvals": [round(float(v), 3) for v in values],
        "ticktext": [format_hms(v, decimals=1 if decimals else 0) for v in values],
    }


def format_hms(seconds: float, decimals: int = 1) -> str:
    """``h:mm:ss.s`` (or ``h:mm:ss`` with ``decimals=0``) of a time in seconds."""
    seconds = max(0.0, round(float(seconds), decimals))
    h, rest = divmod(seconds, 3600.0)
    m, s = divmod(rest, 60.0)
    if decimals:
        return f"{int(h)}:{int(m):02d}:{s:0{3 + decimals}.{decimals}f}"
    return f"{int(h)}:{int(m):02d}:{int(s):02d}"


def _ms(seconds: np.ndarray) -> np.ndarray:
    # float32 seconds: 0.12 ms resolution at 30 minutes, half the bytes of float64.
    return np.asarray(seconds, dtype=np.float32)


def downsample(y: np.ndarray, start: int, stop: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices and values of ``y[start:stop]``, at most about ``n_out`` points."""
    segment = np.ascontiguousarray(y[start:stop])
    if segment.size <= n_out:
        index = np.arange(start, stop)
        return index, segment
    from tsdownsample import MinMaxLTTBDownsampler

    picked = MinMaxLTTBDownsampler().downsample(segment, n_out=n_out).astype(np.int64)
    return picked + start, segment[picked]


def clamp_view(
    start: float, end: float, duration: float, min_span: float = 0.5
) -> tuple[float, float]:
    """A valid visible range inside the record."""
    span = max(min_span, min(end - start, duration))
    start = min(max(0.0, start), max(0.0, duration - span))
    return start, start + span


def typed(values: np.ndarray, dtype: str = "f4") -> dict[str, str]:
    """A numpy array as plotly.js's base64 typed-array form (compact, no float text)."""
    array = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "bdata": base64.b64encode(array.tobytes()).decode("ascii")}


def _x_of(index: np.ndarray, fs: float) -> dict[str, Any]:
    # Every sample of the range drawn: x0 and dx say it exactly, with no x array at all.
    if index.size > 1 and index[-1] - index[0] == index.size - 1:
        return {"x0": float(index[0]) / fs, "dx": 1.0 / fs}
    return {"x": typed(_ms(index / fs))}


def _yaxis_name(row: int) -> str:
    return "y" if row == 1 else f"y{row}"


def waveform_figure(
    prepared: PreparedRecord,
    view: tuple[float, float],
    leads: list[int],
    layers: list[str],
    *,
    points: int = 3000,
    detail_span_s: float = 40.0,
) -> dict[str, Any]:
    """The record's waveform over ``view`` (seconds), with the chosen layers.

    A plain figure dict (plotly's object layer costs a few hundred milliseconds per zoom
    for validation alone); one lead per row, all sharing the time axis.
    """
    fs = prepared.fs
    start_s, end_s = view
    i0 = max(0, int(np.floor(start_s * fs)))
    i1 = min(prepared.recording.n_samples, int(np.ceil(end_s * fs)) + 1)
    leads = [i for i in leads if 0 <= i < len(prepared.recording.leads)] or [prepared.lead_used]
    rows = len(leads)
    # A budget of points per figure, not per trace: two leads with their raw traces
    # share it, so a zoom update stays small whatever is shown.
    points = min(points, max(1000, 2 * points // (rows * (2 if "raw" in layers else 1))))
    detail = (end_s - start_s) <= detail_span_s
    lead_names = prepared.recording.leads
    units = prepared.recording.units
    data: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    gap = 0.04
    height = (1.0 - gap * (rows - 1)) / rows
    for row, lead in enumerate(leads, start=1):
        yaxis = _yaxis_name(row)
        top = 1.0 - (row - 1) * (height + gap)
        layout["yaxis" if row == 1 else f"yaxis{row}"] = {
            "domain": [max(0.0, top - height), top], "fixedrange": True,
            "title": {"text": f"{lead_names[lead]} "
                              f"({units[lead] if lead < len(units) else ''})"},
            "zeroline": False,
        }
        if "raw" in layers:
            idx, y = downsample(prepared.raw(lead), i0, i1, points)
            data.append({
                "type": "scatter", **_x_of(idx, fs), "y": typed(y), "mode": "lines",
                "line": {"color": "rgba(120,120,120,0.6)", "width": 1},
                "name": f"{lead_names[lead]} raw", "hoverinfo": "skip", "yaxis": yaxis,
            })
        idx, y = downsample(prepared.conditioned(lead), i0, i1, points)
        data.append({
            "type": "scatter", **_x_of(idx, fs), "y": typed(y), "mode": "lines",
            "line": {"color": "#111", "width": 1}, "name": lead_names[lead],
            "hoverinfo": "skip", "yaxis": yaxis,
        })
        if lead == prepared.lead_used and prepared.analysis is not None and prepared.beats:
            ylo, yhi = (float(np.min(y)), float(np.max(y))) if y.size else (-1.0, 1.0)
            data += _beat_layers(prepared, yaxis, i0, i1, lead, layers, detail, (ylo, yhi))
    if "rhythm" in layers:
        shapes, annotations, _ = _rhythm_bands(prepared, start_s, end_s)
    layout.update({
        "xaxis": {
            "range": [start_s, end_s], "showgrid": True, "zeroline": False,
            "anchor": _yaxis_name(rows), "title": {"text": "time (h:mm:ss)"},
            **time_ticks(start_s, end_s),
        },
        "height": max(320, 230 * rows + 90),
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
        "showlegend": False,
        "dragmode": "zoom", "hovermode": "closest", "plot_bgcolor": "white",
        "shapes": shapes, "annotations": annotations,
        "meta": {"detail": detail, "view": [start_s, end_s]},
    })
    if "grid" in layers:
        _paper_grid(layout, rows, end_s - start_s)
    return {"data": data, "layout": layout}


def _beat_layers(
    prepared: PreparedRecord, yaxis: str, i0: int, i1: int, lead: int,
    layers: list[str], detail: bool, yrange: tuple[float, float],
) -> list[dict[str, Any]]:
    beats = prepared.beats
    fs = prepared.fs
    x = prepared.conditioned(lead)
    sample = beats["sample"]
    in_view = np.flatnonzero((sample >= i0) & (sample < i1))
    ylo, yhi = yrange
    pad = max(0.1, 0.12 * (yhi - ylo))
    traces: list[dict[str, Any]] = []
    if detail and "waves" in layers:
        points = prepared.analysis.points
        for wave, members in WAVE_POINTS.items():
            xs, symbols, texts = [], [], []
            for name, symbol in members:
                values = points.get(name)
                if values is None:
                    continue
                pos = values[in_view]
                pos = pos[np.isfinite(pos)].astype(np.int64)
                pos = pos[(pos >= 0) & (pos < x.size)]
                xs.append(pos)
                symbols += [symbol] * pos.size
                texts += [name] * pos.size
            if not xs:
                continue
            pos = np.concatenate(xs)
            traces.append({
                "type": "scatter", "x": typed(_ms(pos / fs)), "y": typed(x[pos]),
                "mode": "markers", "yaxis": yaxis, "name": f"{wave} waves",
                "marker": {"symbol": symbols, "size": 7, "color": WAVE_COLOURS[wave]},
                "text": texts, "hovertemplate": "%{text}<extra></extra>",
            })
        pos = sample[in_view]
        traces.append({
            "type": "scatter", "x": typed(_ms(pos / fs)), "y": typed(x[pos]), "mode": "markers",
            "marker": {"symbol": "line-ew-open", "size": 9, "color": WAVE_COLOURS["QRS"]},
            "name": "R peaks", "hoverinfo": "skip", "yaxis": yaxis,
        })
    shown = in_view
    if not detail:
        # Zoomed out: only beats that something calls non-normal, or where views differ.
        interesting = beats["abnormal"] | beats["disagree"] | (
            (beats["ref"] != "") & (beats["ref"] != "N")
        )
        shown = in_view[interesting[in_view]]
    if shown.size == 0:
        return traces
    t = typed(_ms(beats["time_s"][shown]))
    hover = [_beat_hover(beats, i) for i in shown] if detail else None
    if "aami" in layers and beats["aami"].any():
        labels = beats["aami"][shown].tolist()
        if detail:
            colours = [CLASS_COLOURS.get(c, "#555") for c in labels]
            traces.append({
                "type": "scatter", "x": t, "y": typed(np.full(shown.size, yhi + pad)),
                "mode": "text", "text": labels, "textfont": {"color": colours, "size": 14},
                "name": "AAMI model", "customdata": shown.tolist(), "hovertext": hover,
                "hovertemplate": "%{hovertext}<extra></extra>", "yaxis": yaxis,
            })
        else:
            # One trace per class: a colour and a name per trace instead of per beat keeps
            # the whole-record figure small (208 has about 1,400 non-normal beats).
            classes = beats["aami"][shown]
            for name in sorted(set(labels)):
                members = shown[classes == name]
                traces.append({
                    "type": "scatter", "x": typed(_ms(beats["time_s"][members])),
                    "y": typed(x[sample[members]]), "mode": "markers",
                    "marker": {"color": CLASS_COLOURS.get(name, "#555"), "size": 6},
                    "name": f"AAMI model: {name}", "customdata": typed(members, "i4"),
                    "hovertemplate": f"beat %{{customdata}}: {name}<extra></extra>",
                    "yaxis": yaxis,
                })
    if detail and "binary" in layers and beats["binary"].any():
        labels = beats["binary"][shown].tolist()
        traces.append({
            "type": "scatter", "x": t, "y": typed(np.full(shown.size, yhi + 2 * pad)),
            "mode": "text", "text": ["ab" if b == "abnormal" else "n" for b in labels],
            "textfont": {"color": [BINARY_COLOURS.get(b, "#555") for b in labels], "size": 11},
            "name": "binary model", "customdata": shown.tolist(), "hovertext": hover,
            "hovertemplate": "%{hovertext}<extra></extra>", "yaxis": yaxis,
        })
    if detail and "reference" in layers and prepared.reference is not None:
        labels = beats["ref"][shown]
        has = labels != ""
        if has.any():
            traces.append({
                "type": "scatter", "x": typed(_ms(beats["time_s"][shown[has]])),
                "y": typed(np.full(int(has.sum()), ylo - pad)), "mode": "text",
                "text": ["ref " + c for c in labels[has]],
                "textfont": {"color": [CLASS_COLOURS.get(c, "#555") for c in labels[has]],
                             "size": 11},
                "name": "reference", "customdata": shown[has].tolist(),
                "hovertemplate": "reference of beat %{customdata}<extra></extra>",
                "yaxis": yaxis,
            })
    if "disagree" in layers:
        flagged = shown[beats["disagree"][shown]]
        if flagged.size:
            traces.append({
                "type": "scatter", "x": typed(_ms(beats["time_s"][flagged])),
                "y": typed(np.full(flagged.size, yhi + pad)) if detail
                else typed(x[sample[flagged]]),
                "mode": "markers", "yaxis": yaxis, "name": "disagreement",
                "marker": {"symbol": "square-open", "size": 22 if detail else 11,
                           "color": DISAGREE_COLOUR, "line": {"width": 2}},
                "customdata": flagged.tolist(), "hoverinfo": "skip",
            })
    return traces


def _beat_hover(beats: dict[str, np.ndarray], i: int) -> str:
    parts = [f"beat {i} at {format_hms(beats['time_s'][i])}"]
    rr = beats["rr_s"][i]
    if np.isfinite(rr):
        parts.append(f"RR {rr * 1000:.0f} ms")
    if beats["aami"][i]:
        probs = beats["aami_p"][i]
        parts.append(
            "AAMI " + beats["aami"][i] + " ("
            + ", ".join(f"{c} {p:.2f}" for c, p in zip("NSVFQ", probs, strict=True)) + ")"
        )
        if beats["rule"][i]:
            parts.append("network said S; N inside atrial fibrillation/flutter")
    if beats["binary"][i]:
        parts.append(f"binary {beats['binary'][i]} (p={beats['binary_p'][i]:.2f})")
    if beats["ref"][i]:
        parts.append(f"reference {beats['ref'][i]}")
    return "<br>".join(parts)


LABEL_CHAR_PX = 6.0
"""About how wide a character of a rhythm label (10 px font) is drawn."""
HOVER_SPACING = 1.0 / 150.0
"""Hover points along a rhythm band, as a share of the visible span (a few pixels apart)."""
LABEL_PLOT_PX = 900.0
"""The plot width assumed when deciding whether a rhythm label fits (a narrow window's;
wider screens leave more room, never less)."""


def _rhythm_bands(
    prepared: PreparedRecord, start_s: float, end_s: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Coloured bands, labels and hover points of the rhythm episodes in view.

    A label is drawn only where it fits and does not run into the previous label of its
    row; every band gets hover points along it naming it, so a band too narrow for its
    label is still named.
    """
    from ecgcore.rhythm import rhythm_name

    # Reference episodes (from the .atr) fill the upper half when the analysis found
    # episodes too, which then fill the lower half: the two are never confused.
    fs = prepared.fs
    sources = {e.get("source", "analysis") for e in prepared.rhythm}
    both = len(sources) > 1
    span = max(end_s - start_s, 1e-9)
    seconds_per_char = span * LABEL_CHAR_PX / LABEL_PLOT_PX
    label_end: dict[float, float] = {}
    shapes, annotations, hover = [], [], []
    for episode in sorted(prepared.rhythm, key=lambda e: e["start"]):
        a, b = episode["start"] / fs, episode["end"] / fs
        if b < start_s or a > end_s or episode["label"] == "(N":
            continue
        reference = episode.get("source") == "reference"
        y0, y1 = ((0.5, 1.0) if reference else (0.0, 0.5)) if both else (0.0, 1.0)
        x0, x1 = max(a, start_s), min(b, end_s)
        shapes.append({
            "type": "rect", "xref": "x", "yref": "paper", "x0": x0,
            "x1": x1, "y0": y0, "y1": y1, "line": {"width": 0},
            # Reference labels keep MIT-BIH's "(" ("(AFIB"), detected ones do not ("AFIB"):
            # the same rhythm gets the same colour.
            "fillcolor": RHYTHM_COLOURS.get("(" + episode["label"].lstrip("("),
                                            DEFAULT_RHYTHM_COLOUR),
            "layer": "below",
        })
        name = rhythm_name(episode["label"])
        text = (f"ref {name}" if reference else f"{name} (detected)") if both else name
        # Points along the band, so the pointer finds one wherever it is on a wide band.
        spacing = span * HOVER_SPACING
        hover.append({
            "x": sorted({0.5 * (x0 + x1), *np.arange(x0, x1, spacing).tolist()}),
            "y": 0.5 * (y0 + y1),
            "text": f"{text}<br>{format_hms(a)} - {format_hms(b)} ({b - a:.0f} s)",
        })
        needed = len(text) * seconds_per_char
        if x1 - x0 < 0.5 * needed or x0 < label_end.get(y1, -np.inf):
            continue  # no room at this zoom: the band and its hover points are enough
        label_end[y1] = x0 + needed
        annotations.append({
            "x": x0, "xref": "x", "y": y1, "yref": "paper", "yanchor": "top",
            "xanchor": "left", "showarrow": False, "font": {"size": 10}, "text": text,
        })
    return shapes, annotations, hover


def _paper_grid(layout: dict[str, Any], rows: int, span_s: float) -> None:
    # ECG paper: 1 mm = 40 ms and 0.1 mV, 5 mm = 200 ms and 0.5 mV. Drawn only when zoomed
    # in enough that the lines are millimetres apart, not a solid pink sheet.
    if span_s > 30:
        return
    grid = {"showgrid": True, "gridcolor": "rgba(229,115,115,0.55)", "gridwidth": 1}
    minor = {"showgrid": True, "gridcolor": "rgba(239,154,154,0.3)"}
    # Major lines every 0.2 s, labelled every second; minor lines every 0.04 s.
    start, end = layout["xaxis"]["range"]
    values = np.arange(np.ceil(start / 0.2) * 0.2, end + 1e-9, 0.2)
    layout["xaxis"].update(
        tickmode="array", tickvals=[round(float(v), 3) for v in values],
        ticktext=[format_hms(v, 0) if abs(v - round(v)) < 1e-6 else "" for v in values],
        minor={**minor, "tickmode": "linear", "tick0": 0, "dtick": 0.04}, **grid,
    )
    for row in range(1, rows + 1):
        layout["yaxis" if row == 1 else f"yaxis{row}"].update(
            dtick=0.5, minor={**minor, "dtick": 0.1}, **grid
        )
    layout["plot_bgcolor"] = "#fff8f8"


def trend_figure(prepared: PreparedRecord, view: tuple[float, float]) -> dict[str, Any]:
    """Beat-to-beat heart rate over the whole record, rhythm episodes as bands.

    The last shape is the visible range of the waveform (moved with a ``Patch``).
    """
    beats = prepared.beats
    data = []
    if beats:
        data.append({
            # Plain lists, not typed arrays: the view rectangle is later moved with a Patch,
            # and a patched figure whose data were typed arrays is redrawn wrongly.
            "type": "scatter", "x": np.round(beats["time_s"], 2).tolist(),
            "y": [None if not np.isfinite(v) else round(float(v), 1) for v in beats["hr_bpm"]],
            "mode": "lines", "line": {"color": "#c62828", "width": 1}, "name": "heart rate",
            "hovertemplate": "%{y:.0f} bpm<extra></extra>", "connectgaps": False,
        })
    duration = prepared.duration_s
    shapes, annotations, hover = _rhythm_bands(prepared, 0.0, duration)
    # The heart rate goes on an overlaying axis so that it is drawn above the bands.
    for trace in data:
        trace["yaxis"] = "y2"
    # Last, so a click on the trend reports the heart-rate point first; one trace per row
    # (reference, detected), so that hovering shows both rows' rhythms at that time.
    for row in sorted({h["y"] for h in hover}, reverse=True):
        mine = [h for h in hover if h["y"] == row]
        data.append({
            "type": "scatter", "x": [round(x, 2) for h in mine for x in h["x"]],
            "y": [row for h in mine for _ in h["x"]],
            "text": [h["text"] for h in mine for _ in h["x"]],
            "mode": "markers", "marker": {"size": 12, "opacity": 0}, "yaxis": "y",
            "name": "rhythm episodes", "hovertemplate": "%{text}<extra></extra>",
        })
    return {
        "data": _bands_as_traces(shapes) + data,
        "layout": {
            "shapes": [_view_shape(view)], "annotations": annotations,
            "height": 200, "margin": {"l": 60, "r": 20, "t": 20, "b": 35},
            "showlegend": False, "plot_bgcolor": "white", "clickmode": "event",
            "hovermode": "x",
            "xaxis": {"range": [0, duration], "fixedrange": True, "zeroline": False,
                      **time_ticks(0.0, duration, target=8)},
            # The bands' axis: the plot's height as 0..1, like the shapes' paper y.
            "yaxis": {"range": [0, 1], "visible": False, "fixedrange": True},
            "yaxis2": {"title": {"text": "bpm"}, "fixedrange": True, "overlaying": "y",
                       "side": "left"},
        },
    }


def _bands_as_traces(shapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rectangles as one filled trace per colour and row, instead of one shape each.

    A whole record has about a hundred episodes; plotly draws a hundred shapes much more
    slowly than a few polygons, at every page load.
    """
    groups: dict[tuple, tuple[list, list]] = {}
    for shape in shapes:
        xs, ys = groups.setdefault((shape["fillcolor"], shape["y0"], shape["y1"]), ([], []))
        x0, x1, y0, y1 = shape["x0"], shape["x1"], shape["y0"], shape["y1"]
        xs += [x0, x1, x1, x0, x0, None]
        ys += [y0, y0, y1, y1, y0, None]
    return [
        {"type": "scatter", "x": xs, "y": ys, "mode": "lines", "fill": "toself",
         "fillcolor": colour, "line": {"width": 0}, "hoverinfo": "skip", "yaxis": "y",
         "name": "rhythm"}
        for (colour, _, _), (xs, ys) in groups.items()
    ]


def _view_shape(view: tuple[float, float]) -> dict[str, Any]:
    return {
        "type": "rect", "xref": "x", "yref": "paper", "x0": view[0],
        "x1": max(view[1], view[0] + 1.0), "y0": 0, "y1": 1,
        "line": {"color": "#1565c0", "width": 1}, "fillcolor": "rgba(21,101,192,0.15)",
        "name": "view",
    }


def view_shape(view: tuple[float, float]) -> dict[str, Any]:
    """The rectangle marking the visible range on the trend (for a Patch update)."""
    return _view_shape(view)
