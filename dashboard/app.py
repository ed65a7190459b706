"""The dashboard application: ``create_app()`` builds a Dash app served by ``ecg serve``."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.config import Config
from dashboard.records import RecordPreparer
from dashboard.state import new_token, open_session_store

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
PAGES_DIR = Path(__file__).resolve().parent / "pages"

NAV_LINKS = (
    ("Records", "/records"),
    ("Upload", "/upload"),
    ("Live", "/live"),
    ("Models", "/models"),
    ("Explain", "/explain"),
)


def _navbar() -> dbc.Navbar:
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("ECG workbench", href="/records"),
                dbc.Nav(
                    [dbc.NavItem(dbc.NavLink(name, href=href, id=f"nav-{name.lower()}"))
                     for name, href in NAV_LINKS],
                    navbar=True,
                ),
            ],
            fluid=True,
        ),
        color="dark", dark=True, className="mb-3",
    )


def _layout() -> html.Div:
    # A fresh id for a new tab; a tab that already has one keeps it (the session Store's
    # saved value wins over the layout's), so uploads survive reloads within the tab.
    return html.Div(
        [
            dcc.Store(id="session-id", storage_type="session", data=new_token()),
            _navbar(),
            dbc.Container(dash.page_container, fluid=True, className="pb-4"),
        ]
    )


def _preload_models() -> None:
    # The first analysis should not pay for importing keras/jax and loading the weights.
    try:
        from ecgcore.inference import load_classifiers

        load_classifiers()
    except Exception:  # noqa: BLE001 -- missing models are reported by the record view
        return


def create_app(config: Config | None = None) -> dash.Dash:
    """Build the dashboard.

    Parameters
    ----------
    config : Config or None
        Settings (defaults: :class:`dashboard.config.Config`).

    Returns
    -------
    dash.Dash
        Call ``app.run(...)`` or serve ``app.server`` (a Flask app) with any WSGI server.
    """
    config = config or Config()
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        # Everything from this server: Dash's own scripts too, never a CDN.
        serve_locally=True,
        suppress_callback_exceptions=True,
        title="ECG workbench",
        update_title=None,
    )
    app.server.config["ECG_CONFIG"] = config
    # Uploads arrive base64-encoded in the callback's JSON (4/3 of their size): refuse
    # bigger requests before reading them; the upload page gives the clear message.
    app.server.config["MAX_CONTENT_LENGTH"] = int(config.max_upload_bytes * 3) + 1_000_000
    # On disk, so every worker process of the server sees every session's uploads.
    app.server.extensions["ecg_sessions"] = open_session_store(
        config.max_sessions, config.session_ttl_s
    )
    app.server.extensions["ecg_records"] = RecordPreparer(
        config.max_records_in_memory, config.session_ttl_s
    )
    app.layout = _layout
    # Plotly's JSON encoder imports pandas on first use; importing it here, before any
    # thread, avoids a half-imported module when two threads import it at once.
    import pandas  # noqa: F401
    import plotly.io.json  # noqa: F401

    # The same for PIL: keras imports it in the preload thread, and plotly's encoder
    # uses whatever PIL.Image is in sys.modules, even half-imported (a 500 under load).
    with contextlib.suppress(ImportError):
        import PIL.Image  # noqa: F401

    if config.preload_models:
        thread = threading.Thread(target=_preload_models, name="preload-models", daemon=True)
        thread.start()
        app.server.extensions["ecg_preload"] = thread
    return app
