"""The records table of pages `/records` and `/`: sortable, filterable; a click opens a record."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dash_table, dcc, html

from dashboard import context

CLASS_COLUMNS = ("N", "S", "V", "F", "Q")


def _rows() -> tuple[list[dict], str]:
    from ecgcore.catalog import catalog, records_dir
    from ecgcore.rhythm import rhythm_name

    folder = context.config().records_dir or records_dir()
    rows = []
    for record in catalog(folder):
        row = {
            "id": record["name"],
            "name": f"[{record['name']}](/record/{record['name']})",
            "age": record["age"],
            "sex": record["sex"] or "",
            "medications": record["medications"] or "",
            "duration_min": round(record["duration_s"] / 60.0, 1)
            if record["duration_s"] else None,
            "rhythms": ", ".join(rhythm_name(code) for code in record["rhythms"]),
        }
        # Blank, not 0, where the reference marks no beats (no .atr, or a rhythm-only one).
        for c in CLASS_COLUMNS:
            row[c] = record["beats"][c] if record["n_beats"] else None
        rows.append(row)
    return rows, str(folder)


PAGE_SIZE = 100
"""Rows drawn per page of the records table (MIT-BIH's 48 fit on one)."""


def layout(**_query) -> html.Div:
    """The records table (built per visit: the catalogue comes from the disk cache)."""
    try:
        rows, folder = _rows()
    except Exception as error:  # noqa: BLE001 -- an unreadable folder must not crash the page
        return dbc.Alert(f"The record catalogue cannot be read: {error}", color="danger")
    columns = [
        {"id": "name", "name": "record", "presentation": "markdown"},
        {"id": "age", "name": "age", "type": "numeric"},
        {"id": "sex", "name": "sex"},
        {"id": "medications", "name": "medications"},
        {"id": "duration_min", "name": "duration (min)", "type": "numeric"},
    ] + [{"id": c, "name": f"{c} beats", "type": "numeric"} for c in CLASS_COLUMNS] + [
        {"id": "rhythms", "name": "rhythms present"},
    ]
    return html.Div(
        [
            dcc.Location(id="records-nav", refresh="callback-nav"),
            html.H2("Records"),
            html.P(
                [
                    f"{len(rows)} record(s) from {folder}. Beats per AAMI class and rhythms "
                    "come from the reference annotations (.atr). Click a row to open it; "
                    "sort with the arrows, filter by typing in the second header row "
                    "(e.g. ",
                    html.Code(">100"),
                    " under V beats).",
                ],
                className="text-muted",
            ),
            dash_table.DataTable(
                id="records-table",
                data=rows,
                columns=columns,
                sort_action="native",
                filter_action="native",
                # Case-blind, as a clinician types: "m" finds "M", "Atrial" finds "atrial".
                filter_options={"case": "insensitive", "placeholder_text": "filter"},
                # Paged in the browser: sorting and filtering still see every row, but a
                # folder of thousands of records (a PhysioNet Challenge set has 8,528)
                # draws one page, not all of them (25 s before).
                page_action="native",
                page_size=PAGE_SIZE,
                markdown_options={"link_target": "_self"},
                style_table={"overflowX": "auto"},
                style_cell={"fontSize": 14, "padding": "4px 8px", "textAlign": "left",
                            "whiteSpace": "normal", "height": "auto"},
                style_header={"fontWeight": "bold"},
                css=[{"selector": "tr:hover td", "rule": "background-color: #eef3fb;"}],
            ),
        ]
    )


@callback(
    Output("records-nav", "href"),
    Input("records-table", "active_cell"),
    State("records-table", "derived_viewport_data"),
    prevent_initial_call=True,
)
def open_record(active_cell, _viewport):
    """A click anywhere on a row opens that record."""
    if not active_cell or not active_cell.get("row_id"):
        return dash.no_update
    return f"/record/{active_cell['row_id']}"
