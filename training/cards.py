"""Model cards (JSON + Markdown) for the two classifiers."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from ecgcore.beats import AAMI_CLASSES, BINARY_CLASSES
from training.dataset import DS1, DS2, PACED

DESCRIPTIONS = {
    "binary": "Normal (AAMI N) against abnormal (S, V, F, Q) heartbeat.",
    "aami": "Five AAMI EC57 heartbeat classes: N, S, V, F, Q.",
}


def library_versions() -> dict:
    """Versions of the libraries that trained and evaluated the model."""
    import jax
    import keras
    import numpy
    import scipy

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "jax": jax.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def make_card(name: str, *, model, train_config: dict, seed: int, train_seconds: float,
              n_train_beats: dict, evaluation: dict, quick: bool) -> dict:
    """The card of one model as a dict (figures copied from ``evaluation``)."""
    from ecgcore.beats import (
        RR_FEATURE_NAMES,
        WAVEFORM_CHANNELS,
        WINDOW_AFTER,
        WINDOW_BEFORE,
    )

    channels = list(WAVEFORM_CHANNELS)[: int(model.inputs[0].shape[-1])]
    figures = {}
    for way in ("reference", "end_to_end", "intra_patient"):
        if way in evaluation and evaluation[way] is not None:
            figures[way] = evaluation[way][name]
    return {
        "model": name,
        "file": f"{name}.keras",
        "description": DESCRIPTIONS[name],
        "classes": list(BINARY_CLASSES if name == "binary" else AAMI_CLASSES),
        "quick_build": quick,
        "data": {
            "database": "MIT-BIH Arrhythmia Database 1.0.0 (PhysioNet), lead MLII",
            "aami_mapping": "N = N L R e j; S = A a J S; V = V E; F = F; Q = / f Q",
            "excluded_records": list(PACED),
            "train_records": list(evaluation.get("train_records", DS1)),
            "test_records": list(evaluation.get("test_records", DS2)),
            "split": "inter-patient (de Chazal 2004): trained on DS1, tested on DS2",
            "train_beats_per_class": n_train_beats,
            "input": {
                "rate_hz": 360,
                "window_samples": [WINDOW_BEFORE, WINDOW_AFTER],
                "waveform_channels": channels,
                "rr_features": list(RR_FEATURE_NAMES),
                # The network may read only some inputs (fixed selection layers, see
                # training.architectures.ArchConfig); the rest are given and ignored.
                "waveform_channels_read": train_config["arch"].get("waveform_used") or channels,
                "rr_features_read": train_config["arch"].get("rr_used") or list(RR_FEATURE_NAMES),
                "built_by": "ecgcore.beats.beat_inputs",
            },
        },
        "architecture": {
            "kind": "residual 1-D CNN over the beat + dense branch over the RR features",
            "seed": seed,
            "parameters": int(model.count_params()),
            "train_config": train_config,
        },
        "training_seconds": round(train_seconds, 1),
        "figures": figures,
        "ds2_reference_per_member": (evaluation.get("reference_members") or {}).get(name),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
    }


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def figures_markdown(fig: dict, title: str) -> list[str]:
    """A per-class table and the confusion matrix in counts."""
    names = fig["classes"]
    lines = [f"#### {title}", "", f"Accuracy {_pct(fig['accuracy'])} % over {fig['n_beats']} "
             "beats.", "", "| class | support | Se % | +P % | F1 |", "|---|---|---|---|---|"]
    for c in names:
        pc = fig["per_class"][c]
        f1 = "-" if pc["f1"] is None else f"{pc['f1']:.3f}"
        lines.append(f"| {c} | {pc['support']} | {_pct(pc['sensitivity'])} | "
                     f"{_pct(pc['ppv'])} | {f1} |")
    lines.append("")
    if "confusion_with_missed_extra" in fig:
        rows, cols = fig["confusion_rows"], fig["confusion_columns"]
        matrix = fig["confusion_with_missed_extra"]
    else:
        rows = cols = names
        matrix = fig["confusion"]
    lines.append("| reference \\ predicted | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for r, row in zip(rows, matrix, strict=True):
        lines.append(f"| {r} | " + " | ".join(str(v) for v in row) + " |")
    lines.append("")
    return lines


WAY_TITLES = {
    "reference": "DS2, inter-patient, at the reference beat positions",
    "end_to_end": "DS2, inter-patient, end to end on ecgcore's detected beats (150 ms match; "
                  "'missed' column and 'extra' row count detection errors)",
    "intra_patient": "Intra-patient random beat split (LEAKY, for comparison with published "
                     "intra-patient claims only)",
}


def card_markdown(card: dict) -> str:
    """The card as Markdown."""
    arch = card["architecture"]
    data = card["data"]
    lines = [
        f"# Model card: {card['model']}", "",
        card["description"], "",
        f"- File: `{card['file']}` (Keras 3, load with `safe_mode=True`)",
        f"- Date: {card['date']}" + (" (QUICK pipeline check, not a real model)"
                                     if card["quick_build"] else ""),
        f"- Data: {data['database']}; AAMI mapping {data['aami_mapping']}; paced records "
        f"{', '.join(data['excluded_records'])} left out",
        f"- Split: {data['split']}",
        f"- Training beats per class: {data['train_beats_per_class']}",
        f"- Input: {data['input']['window_samples'][0]} + {data['input']['window_samples'][1]} "
        f"samples at 360 Hz, channels {data['input']['waveform_channels']}, RR features "
        f"{data['input']['rr_features']}, built by `{data['input']['built_by']}`",
        *([f"- Read by the network: channels {data['input']['waveform_channels_read']}; RR "
           f"features {data['input']['rr_features_read']}"]
          if "waveform_channels_read" in data["input"] else []),
        f"- Architecture: {arch['kind']}; seed {arch['seed']}; {arch['parameters']} parameters",
        f"- Training settings: `{json.dumps(arch['train_config'])}`",
        f"- Training time: {card['training_seconds']} s",
        f"- Libraries: {card['library_versions']}",
        "", "## Figures", "",
    ]
    for way, fig in card["figures"].items():
        lines += figures_markdown(fig, WAY_TITLES.get(way, way))
        if card["model"] == "binary":
            lines.append(f"Abnormal Se {_pct(fig['abnormal_sensitivity'])} %, specificity "
                         f"{_pct(fig['specificity'])} %, abnormal +P "
                         f"{_pct(fig['abnormal_ppv'])} % (threshold {fig['threshold']}).")
            lines.append("")
    members = card.get("ds2_reference_per_member")
    if members:
        columns = [k for k in members[0] if k != "seed"]
        lines += ["#### The same training with other seeds (DS2, reference positions): the "
                  "seed spread", "",
                  "The served network is the first row; the others are not served.", "",
                  "| seed | " + " | ".join(columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for row in members:
            lines.append(f"| {row['seed']} | " + " | ".join(_pct(row[c]) for c in columns)
                         + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_card(out_dir: Path, card: dict) -> None:
    """Write ``<model>.json`` and ``<model>.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / f"{card['model']}.json").write_text(json.dumps(card, indent=1))
    (out_dir / f"{card['model']}.md").write_text(card_markdown(card))
