"""The dashboard application: ``create_app()`` builds a Dash app served by ``ecg serve``."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import dash
import dash_bootstrap_components as dbc
from dash import State, dcc, html

from dashboard.config import Config
from dashboard.records import RecordPreparer, is_upload
from dashboard.state import new_token, open_session_store

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
PAGES_DIR = Path(__file__).resolve().parent / "pages"
VENDOR_DIR = "vendor"
"""Folder of ``assets/`` served but not put in every page by Dash (see :class:`EcgDash`)."""
REGENERATOR = "regenerator-runtime-0.13.11.js"
POLYFILL_TAG = re.compile(r'<script src="[^"]*/deps/polyfill@[^"]*"></script>')
DCC_BUNDLE_TAG = re.compile(
    r'<script src="([^"]*/dash/dcc/)dash_core_components(\.v[^"/]*)?\.js"></script>')
GRAPH_CHUNK = "async-graph"
"""dcc's lazily loaded chunk of ``dcc.Graph``: every record view needs it at once."""

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


SESSION_ARG = "ecg_session"
"""Keyword argument that carries the tab's session id to every page's ``layout()``."""


def _page_loader(container: html.Div) -> dcc.Loading:
    # Pages are drawn on the server (the record view with its figures), so a page may take
    # a while: the first opening of a record analyses it. Said only when it is slow.
    return dcc.Loading(
        container,
        target_components={"_pages_content": "children"},
        delay_show=400,
        overlay_style={"visibility": "visible", "opacity": 0.5},
        custom_spinner=html.Div(
            [html.Span(className="spinner-border spinner-border-sm me-2", role="status"),
             LOADING_TEXT],
            className="text-muted", id="page-loading",
        ),
    )


LOADING_TEXT = "Loading… (the first opening of a record analyses it: a few seconds)"
RECORD_TEMPLATE = "/record/<name>"
_log = logging.getLogger(__name__)


def _record_named_by_referrer(app: dash.Dash) -> tuple[str, Any] | None:
    """The record name and URL parts when this request is a record view's ``/_dash-layout``.

    The browser asks for the app's layout from the page it opened, so the ``Referer``
    names that page. None for any other request, and for uploads (their page needs the
    tab's session id, which only the browser knows).
    """
    from flask import request

    if not request.path.endswith("/_dash-layout") or not request.referrer:
        return None
    url = urlsplit(request.referrer)
    if url.netloc != request.host:
        return None
    path = app.strip_relative_path(url.path) or ""
    parts = path.split("/")
    if len(parts) != 2 or parts[0] != "record" or not parts[1]:
        return None
    name = unquote(parts[1])
    return (None if is_upload(name) else (name, url))


def _page_container(app: dash.Dash) -> html.Div:
    """Dash's page container; for a record view opened by its address, with the page in it.

    Dash pages fill the container in a second request, once the app's layout is drawn
    (the routing callback, fired when ``dcc.Location`` reports the address). A record
    view opened directly comes drawn with the layout instead: the location is filled in
    too, so the routing callback does not fire, and the page's first view costs one
    request less and one drawing less. Client-side navigation works as usual.
    """
    found = _record_named_by_referrer(app)
    page = next((p for p in dash.page_registry.values()
                 if p.get("path_template") == RECORD_TEMPLATE), None)
    if found is None or page is None:
        return dash.page_container
    name, url = found
    query = dict(parse_qsl(url.query))
    try:
        content = page["layout"](**{**query, "name": name, SESSION_ARG: None})
    except Exception:  # noqa: BLE001 -- the routing callback then tries, and reports it
        _log.exception("drawing the record view of %s with the layout failed", name)
        return dash.page_container
    title = page["title"](name=name) if callable(page["title"]) else page["title"]
    from dash.dash import _ID_CONTENT, _ID_DUMMY, _ID_LOCATION, _ID_STORE

    return html.Div(
        [
            dcc.Location(id=_ID_LOCATION, refresh="callback-nav", pathname=url.path,
                         search=f"?{url.query}" if url.query else "", hash="",
                         href=request_url(url)),
            html.Div(content, id=_ID_CONTENT, disable_n_clicks=True),
            dcc.Store(id=_ID_STORE, data={"title": title}),
            html.Div(id=_ID_DUMMY, disable_n_clicks=True),
        ]
    )


def request_url(url) -> str:
    """The address as ``window.location.href`` gives it (no fragment: never sent)."""
    return url._replace(fragment="").geturl()


def _layout(app: dash.Dash) -> html.Div:
    # A fresh id for a new tab; a tab that already has one keeps it (the session Store's
    # saved value wins over the layout's), so uploads survive reloads within the tab.
    return html.Div(
        [
            dcc.Store(id="session-id", storage_type="session", data=new_token()),
            _navbar(),
            dbc.Container(_page_loader(_page_container(app)), fluid=True, className="pb-4"),
        ]
    )


class EcgDash(dash.Dash):
    """Dash with a lighter start in the browser.

    Dash puts ``@babel/polyfill`` (core-js 2 and regenerator) before its own scripts, for
    old browsers. Every browser Dash 4 supports has the language features natively; what
    its bundles still need is the ``regeneratorRuntime`` global. core-js also replaces
    the native ``String.prototype.trim`` with a slow one that plotly.js calls all the time
    while drawing. So the polyfill's tag is swapped for regenerator-runtime alone
    (vendored in ``assets/vendor/``): about 100 KB less to run at every page load.

    ``dcc.Graph``'s code is a chunk that dcc fetches only when a graph first renders, that
    is after the layout has arrived: one more round trip, in series, before any figure is
    drawn. Its tag is put after dcc's bundle instead, so it comes with the other scripts
    and registers itself with dcc's chunk loader (which then does not fetch it again).
    """

    def interpolate_index(self, **kwargs) -> str:
        scripts = kwargs.get("scripts", "")
        path = ASSETS_DIR / VENDOR_DIR / REGENERATOR
        if path.is_file():
            url = self.get_asset_url(f"{VENDOR_DIR}/{REGENERATOR}")
            tag = f'<script src="{url}?m={int(path.stat().st_mtime)}"></script>'
            scripts = POLYFILL_TAG.sub(lambda _: tag, scripts, count=1)
        kwargs["scripts"] = DCC_BUNDLE_TAG.sub(
            # With the bundle's version in the name, as Dash serves it (cacheable).
            lambda m: (f'{m.group(0)}<script src="{m.group(1)}{GRAPH_CHUNK}'
                       f'{m.group(2) or ""}.js"></script>'),
            scripts, count=1)
        # What shows until the layout arrives (a record's first analysis, when opened by
        # its address: see _page_container).
        kwargs["app_entry"] = kwargs.get("app_entry", "").replace("Loading...", LOADING_TEXT)
        return super().interpolate_index(**kwargs)


IMMUTABLE_PREFIXES = ("/_dash-component-suites/", "/assets/")
"""URLs whose content never changes: Dash puts a version or a file time in them."""
NOT_CACHED = "not-cached"


class _StaticCompressionCache:
    """flask-compress's cache, holding only the compressed scripts and styles.

    The same few megabytes of JavaScript go out on every first visit: compressed once per
    process, not per request. Everything else (callback answers) is compressed afresh.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._data: dict[str, bytes] = {}
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        if key.endswith(NOT_CACHED):
            return
        with self._lock:
            if key not in self._data and self._bytes + len(value) <= self._max_bytes:
                self._data[key] = value
                self._bytes += len(value)


def _compression_key(request) -> str:
    if request.method == "GET" and request.path.startswith(IMMUTABLE_PREFIXES) and (
        request.path.startswith(IMMUTABLE_PREFIXES[0]) or request.args.get("m")
    ):
        return request.full_path
    return NOT_CACHED


def _serve_compressed_and_cacheable(server) -> None:
    """Compressed responses (zstd, brotli or gzip, as the browser accepts) and long-lived
    caching of versioned assets.

    Dash already marks its component bundles cacheable for a year; files of ``assets/``
    come with ``?m=<file time>`` in their URL, so they can be cached as long.
    """
    from flask import request
    from flask_compress import Compress

    server.config.update(
        COMPRESS_MIMETYPES=["text/html", "text/css", "text/javascript",
                            "application/javascript", "application/json"],
        COMPRESS_CACHE_BACKEND=_StaticCompressionCache,
        COMPRESS_CACHE_KEY=_compression_key,
        # Scripts are compressed once (cached above): the best ratio is worth it there.
        COMPRESS_BR_LEVEL=6,
    )
    Compress(server)

    # Registered after Compress, so it runs before it (Flask runs these last first).
    @server.after_request
    def _cache_versioned_assets(response):
        if (request.path.startswith(IMMUTABLE_PREFIXES[1]) and request.args.get("m")
                and response.status_code == 200):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            if response.is_streamed:
                # A file is sent as a stream, which flask-compress would compress again
                # on every request; as plain bytes it is compressed once (the cache).
                response.direct_passthrough = False
                response.set_data(response.get_data())
        return response


def _preload_models() -> None:
    # The first analysis should not pay for importing keras/jax, loading the weights and
    # compiling them, nor the first explanation for importing and compiling shap.
    try:
        from ecgcore.explain import warm_up
        from ecgcore.inference import load_classifiers

        classifiers = load_classifiers()
        for model in (classifiers.aami, classifiers.binary):
            model.compile_all()
        warm_up(classifiers)
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
    app = EcgDash(
        __name__,
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        assets_path_ignore=[VENDOR_DIR],
        # Everything from this server: Dash's own scripts too, never a CDN.
        serve_locally=True,
        suppress_callback_exceptions=True,
        title="ECG workbench",
        update_title=None,
        # Pages draw themselves on the server in the one routing request, and need the
        # tab's session id for uploads.
        routing_callback_inputs={SESSION_ARG: State("session-id", "data")},
    )
    app.server.config["ECG_CONFIG"] = config
    _serve_compressed_and_cacheable(app.server)
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
    app.layout = lambda: _layout(app)
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
