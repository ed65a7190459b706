"""The README's Python example runs as written, on a fresh clone's shipped samples."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_python_example_runs_and_says_what_it_shows():
    blocks = _python_blocks("From Python")
    assert len(blocks) == 1
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md (From Python)", "exec"), namespace)
    printed = out.getvalue()
    assert re.search(r"^\d{4} beats on MLII$", printed, flags=re.M), printed
    # 208: hundreds of V beats, a QRS detector close to the reference.
    assert namespace["match"].sensitivity > 0.98
    assert (namespace["labels"] == "V").sum() > 500
    explanation = namespace["explanation"]
    assert explanation["classes"] == ["N", "S", "V", "F", "Q"]
    assert explanation["completeness_error"] < 1e-3


def _figures_cells(what: str) -> list[str]:
    """The cells of the README's "Measured figures" row whose first cell starts so."""
    text = README.read_text()
    start = text.index("## Measured figures\n")
    for line in text[start:].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith(what):
            return cells
    raise AssertionError(f"no row starting {what!r} in the README's Measured figures")


def _figures_row(what: str) -> str:
    """The figure cell of that row."""
    return _figures_cells(what)[1]


def _figures_row_first(what: str) -> str:
    """The first cell (what was measured) of that row."""
    return _figures_cells(what)[0]


def test_the_readme_accuracy_figures_are_the_ones_the_scripts_wrote():
    """The deterministic figures of the README's table, against the files the bench
    scripts and ``ecg evaluate`` wrote (timings vary from run to run and are left out):
    rerunning a script that changes a figure fails here until the README says it."""
    import json

    root = README.parent
    qrs = json.loads((root / "bench/results/qrs_detection.json").read_text())["mitdb"]
    row = _figures_row("QRS detection")
    ours = qrs["ecgcore"]["gross"]
    assert f"Se {ours['se']:.3f} %, +P {ours['ppv']:.3f} %" in row
    for name, label in (("neurokit2 default", "NeuroKit2"),
                        ("neurokit2 pantompkins1985", "its Pan-Tompkins"), ("wfdb xqrs", "XQRS")):
        g = qrs[name]["gross"]
        assert f"{label} {g['se']:.2f}/{g['ppv']:.2f}" in row

    evaluation = json.loads((root / "ecgcore/models/evaluation.json").read_text())
    e2e = evaluation["end_to_end"]
    row = _figures_row("five-class CNN, DS2")
    classes = e2e["aami"]["per_class"]

    def pct(v: float) -> str:
        return f"{100 * v:.1f}"

    assert f"accuracy {pct(e2e['aami']['accuracy'])} %" in row
    for c in ("N", "V", "S", "F"):
        assert f"{c} Se {pct(classes[c]['sensitivity'])} / +P {pct(classes[c]['ppv'])}" in row
    alone = e2e["without_rhythm_rule"]["aami"]
    assert f"network alone: accuracy {pct(alone['accuracy'])}" in row
    for c in ("S", "V"):
        p = alone["per_class"][c]
        assert f"{c} {pct(p['sensitivity'])} / {pct(p['ppv'])}" in row
    row = _figures_row("binary label, DS2")
    b = e2e["binary"]
    assert (f"abnormal Se {pct(b['abnormal_sensitivity'])} % at specificity "
            f"{pct(b['specificity'])} %") in row

    rhythm = json.loads((root / "bench/results/rhythm.json").read_text())["results"]
    row = _figures_row("rhythm, 48 records")
    af, vt = rhythm["cnn"]["AFIB"]["all"], rhythm["cnn"]["VT"]["all"]
    assert (f"AF duration Se {af['duration_se']:.1f} % / +P {af['duration_ppv']:.1f} %, "
            f"VT episode Se {vt['episode_se']:.1f} % / +P {vt['episode_ppv']:.1f} %") in row

    def both(setting: str, group: str) -> str:
        a, v = rhythm[setting]["AFIB"][group], rhythm[setting]["VT"][group]
        return (f"AF {a['duration_se']:.1f} / {a['duration_ppv']:.1f}, "
                f"VT {v['episode_se']:.1f} / {v['episode_ppv']:.1f}")

    assert f"(setting `cnn_cv`), {both('cnn_cv', 'all')}" in row
    assert f"DS2 alone, as served: {both('cnn', 'DS2')}" in row
    assert f"with the reference beats and classes: {both('ref_beats', 'all')}" in row

    other = json.loads((root / "bench/results/other_databases.json").read_text())
    row = _figures_row("patients of other databases")
    assert f"{len(other['records'])} QT Database records" in _figures_row_first("patients of")
    assert f"accuracy {pct(other['aami']['accuracy'])} %" in row
    for c in ("N", "V"):
        p = other["aami"]["per_class"][c]
        assert f"{c} Se {pct(p['sensitivity'])} / +P {pct(p['ppv'])}" in row
    n_to_v = sum(r["confusion"][0][2] for r in other["per_record"].values())
    assert f"({n_to_v:,} of {other['aami']['per_class']['N']['support']:,} N beats called V" in row
