"""Upload page: Arduino/CSV/text files, EDF files and WFDB records (or a zip of them).

What was understood (format, leads, rate, duration) is shown before the analysis; when the
file cannot tell its rate, the page asks for it. Uploads are kept on the server under the
browser session's id only: another session cannot open them.
"""

from __future__ import annotations

import base64
import binascii

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, ctx, dcc, html

from dashboard import context
from dashboard.components.figures import format_hms
from dashboard.records import UPLOAD_PREFIX
from dashboard.state import new_token
from ecgcore.errors import EcgError, RateUnknownError

dash.register_page(__name__, path="/upload", name="Upload", order=2)

PENDING_KEY = "pending-upload"


def _limit_text() -> str:
    return f"{context.config().max_upload_bytes / 1024 / 1024:.0f} MB"


def layout(**_query) -> html.Div:
    """The drop zone, the rate form (hidden until needed) and the result."""
    return html.Div(
        [
            html.H2("Upload a recording"),
            html.P(
                [
                    "Arduino/AD8232 text files (ADC counts, Serial Monitor or Plotter "
                    "output), CSV or text columns (Apple Watch and Polar H10 exports "
                    "among them), an ", html.Code(".edf"), " file, or a WFDB "
                    "record: its ", html.Code(".hea"), " + ", html.Code(".dat"), " (or ",
                    html.Code(".mat"), ", as in the PhysioNet Challenges)",
                    " (+ ", html.Code(".atr"), " for reference beats) together, or a ",
                    html.Code(".zip"), " of them. Limit: ", html.Span(_limit_text()),
                    " per upload. Uploads stay on this server and are visible only to this "
                    "browser tab.",
                ],
                className="text-muted",
            ),
            dcc.Upload(
                id="up-files",
                children=html.Div(["Drag and drop files here, or ", html.A("choose files")]),
                multiple=True,
                className="upload-zone",
            ),
            dcc.Loading(html.Div(id="up-status", className="mt-3"), type="dot"),
            html.Div(
                [
                    dbc.Label("Sampling rate (Hz)", html_for="up-rate"),
                    dbc.InputGroup(
                        [
                            dbc.Input(id="up-rate", type="number", min=50, max=20000,
                                      step="any", placeholder="e.g. 54"),
                            dbc.Button("Use this rate", id="up-rate-go", color="primary"),
                        ],
                        style={"maxWidth": "380px"},
                    ),
                    dbc.FormText(
                        "Arduino sketches that print samples in a loop without timing have no "
                        "fixed rate; if the sketch did not set one, time a few seconds of "
                        "recording against the number of samples."
                    ),
                ],
                id="up-rate-form", style={"display": "none"}, className="mt-2",
            ),
        ]
    )


def _decode(contents: list[str], names: list[str], limit: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    for content, name in zip(contents, names, strict=True):
        _, _, payload = (content or "").partition(",")
        if len(payload) * 3 // 4 > limit:
            raise EcgError(
                f"{name} is too large: the limit is {limit / 1024 / 1024:.0f} MB per upload"
            )
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            raise EcgError(f"{name} could not be received (bad encoding): try again") from None
        total += len(data)
        if total > limit:
            raise EcgError(
                f"the upload is too large ({total / 1024 / 1024:.1f} MB so far): the limit "
                f"is {limit / 1024 / 1024:.0f} MB per upload"
            )
        files[name] = data
    return files


def _understood(recording, record_id: str) -> dbc.Card:
    origin = {"header": "from the file's header", "time column": "from its time column",
              "caller": "as you gave it"}.get(recording.fs_origin, recording.fs_origin)
    items = [
        ("Format", recording.format),
        ("Leads", f"{len(recording.leads)}: {', '.join(recording.leads)} "
                  f"({', '.join(sorted(set(recording.units)))})"),
        ("Sampling rate", f"{recording.fs:g} Hz, {origin}"),
        ("Duration", f"{format_hms(recording.duration_s)} ({recording.n_samples} samples)"),
        ("Reference beats", "yes (.atr)" if recording.annotations is not None else "none"),
    ]
    notes = [str(note) for note in recording.meta.get("notes", [])]
    if notes:
        items.append(("Notes", "; ".join(notes)))
    return dbc.Card(
        dbc.CardBody(
            [
                html.H5("What was understood", className="card-title"),
                html.Dl(
                    sum(([html.Dt(k, className="col-sm-3"), html.Dd(v, className="col-sm-9")]
                         for k, v in items), []),
                    className="row mb-2", id="up-understood",
                ),
                dcc.Link(dbc.Button("Open the analysis", color="primary", id="up-open"),
                         href=f"/record/{record_id}"),
            ]
        ),
        className="mt-2", style={"maxWidth": "720px"},
    )


def _error(text: str) -> dbc.Alert:
    return dbc.Alert(text, color="danger", id="up-error")


@callback(
    Output("up-status", "children"),
    Output("up-rate-form", "style"),
    Input("up-files", "contents"),
    Input("up-rate-go", "n_clicks"),
    State("up-files", "filename"),
    State("up-rate", "value"),
    State("session-id", "data"),
    prevent_initial_call=True,
)
def receive(contents, _go, names, rate, session_id):
    """Read the upload (or re-read it at the rate given) and say what was understood."""
    hidden, shown = {"display": "none"}, {"display": "block"}
    sessions = context.sessions()
    limit = context.config().max_upload_bytes
    try:
        from ecgcore.io import read_files
    except ImportError as error:
        return _error(f"reading uploads is not available yet ({error})"), hidden
    if not session_id:
        return _error("this page needs its session id: reload the page"), hidden
    fs = None
    if ctx.triggered_id == "up-rate-go":
        files = sessions.get(session_id, PENDING_KEY)
        if files is None:
            return _error("upload the file again (the previous upload has expired)"), hidden
        if rate is None or not rate > 0:
            return (dbc.Alert("Enter the sampling rate in Hz.", color="warning"), shown)
        fs = float(rate)
    else:
        if not contents:
            return dash.no_update, dash.no_update
        contents = contents if isinstance(contents, list) else [contents]
        names = names if isinstance(names, list) else [names]
        try:
            files = _decode(contents, names, limit)
        except EcgError as error:
            return _error(str(error)), hidden
        sessions.put(session_id, PENDING_KEY, files)
    try:
        recording = read_files(files, fs=fs, max_bytes=limit)
    except RateUnknownError as error:
        return (
            dbc.Alert(
                [html.Strong("The sampling rate is needed. "), str(error),
                 " Enter it below."],
                color="info", id="up-ask-rate",
            ),
            shown,
        )
    except EcgError as error:
        return _error(f"This upload cannot be read: {error}"), hidden
    except Exception as error:  # noqa: BLE001 -- a reader bug must not break the page
        return _error(f"This upload cannot be read (unexpected {type(error).__name__}: "
                      f"{error})"), hidden
    record_id = UPLOAD_PREFIX + new_token()
    recording.meta.setdefault("title", f"Upload: {', '.join(sorted(files))}")
    sessions.put(session_id, record_id, recording)
    sessions.delete(session_id, PENDING_KEY)
    return _understood(recording, record_id), hidden
