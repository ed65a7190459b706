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
