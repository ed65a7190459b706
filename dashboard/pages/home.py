"""``/``: the records page (a redirect would clash with Dash's own ``/`` route)."""

from __future__ import annotations

import dash

from dashboard.components.records_table import layout  # noqa: F401  (Dash pages reads `layout`)

dash.register_page(__name__, path="/", name="Home", order=-1, title="ECG workbench")
