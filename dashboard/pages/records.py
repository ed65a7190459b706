"""Records page ``/records``: the catalogue in a sortable, filterable table."""

from __future__ import annotations

import dash

from dashboard.components.records_table import layout  # noqa: F401  (read by Dash pages)

dash.register_page(__name__, path="/records", name="Records", order=0)
