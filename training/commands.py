"""``ecg train`` and ``ecg evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ecgcore.errors import EcgError

QUICK_TRAIN_RECORDS = ("101", "106", "118", "119", "208", "209", "223")
QUICK_TEST_RECORDS = ("100", "232")
SERVED_SEED = 0
"""Seed of the network that is saved and served (one network per model: inference speed)."""
SPREAD_SEEDS = (1, 2)
"""The same training with other seeds, saved beside it as ``<model>_seed<k>.keras`` only to
report how much a result depends on the seed (the served network is not picked among them)."""
INTRA_SEEDS = (0,)


def _models_dir_default() -> Path:
    from ecgcore.inference import MODELS_DIR

    return MODELS_DIR


def _pct(v) -> str:
    return "  -  " if v is None else f"{100 * v:5.1f}"


def print_figures(title: str, fig: dict, file=None) -> None:
    """One evaluation table and its confusion matrix, as plain text (stdout by default)."""
    # Looked up at call time: a default bound at import would keep a stream that a test
    # harness (or anything else redirecting sys.stdout) has since closed.
    file = sys.stdout if file is None else file
    print(f"\n{title}", file=file)
    print(f"  accuracy {_pct(fig['accuracy'])} % over {fig['n_beats']} beats", file=file)
    print("  class    support   Se %   +P %    F1", file=file)
    for c in fig["classes"]:
        pc = fig["per_class"][c]
        f1 = "  -  " if pc["f1"] is None else f"{pc['f1']:.3f}"
        print(f"  {c:8s} {pc['support']:7d}  {_pct(pc['sensitivity'])}  {_pct(pc['ppv'])}  {f1}",
              file=file)
    if "confusion_with_missed_extra" in fig:
        rows, cols = fig["confusion_rows"], fig["confusion_columns"]
        matrix = fig["confusion_with_missed_extra"]
    else:
        rows = cols = fig["classes"]
        matrix = fig["confusion"]
    print("  confusion (rows reference, columns predicted):", file=file)
    print("  " + " " * 9 + "".join(f"{c:>9s}" for c in cols), file=file)
    for r, row in zip(rows, matrix, strict=True):
        print(f"  {r:9s}" + "".join(f"{v:9d}" for v in row), file=file)


def ecgcore_digest(models_dir: Path) -> str:
    """A digest of ecgcore's code and the two served weight files.

    Saved with the figures: the end-to-end ones depend on the detector and the rhythm
    stage as much as on the weights, so it says which code produced them.
    """
    from ecgcore.cache import code_digest

    return code_digest([models_dir / "binary.keras", models_dir / "aami.keras"])


def run_evaluation(models_dir: Path, data_dir: Path, *, quick: bool = False,
                   progress=None) -> dict:
    """All evaluations of the models in ``models_dir`` (the ``ecg evaluate`` figures)."""
    from ecgcore.inference import Classifiers, JittedModel, load_classifiers, load_model_file
    from training.dataset import DS1, DS2
    from training.evaluate import (
        detector_available,
        evaluate_end_to_end,
        evaluate_intra,
        evaluate_reference,
        member_spread,
    )

    test_records = list(QUICK_TEST_RECORDS if quick else DS2)
    train_records = list(QUICK_TRAIN_RECORDS if quick else DS1)
    classifiers = load_classifiers(models_dir)
    result = {"models_dir": str(models_dir), "quick": quick,
              "train_records": train_records, "test_records": test_records,
              "ecgcore_digest": ecgcore_digest(models_dir)}
    result["reference"] = evaluate_reference(classifiers, data_dir, test_records)
    result["reference_members"] = member_spread(classifiers, data_dir, test_records)
    if detector_available():
        result["end_to_end"] = evaluate_end_to_end(classifiers, data_dir, test_records,
                                                   progress=progress)
        if not quick:
            # In-sample (the networks were trained on these records): only to see what
            # the rhythm rule does on DS1's AF records (201, 203), never a performance.
            result["end_to_end_train"] = evaluate_end_to_end(classifiers, data_dir,
                                                             train_records)
            result["end_to_end_train"]["note"] = (
                "IN-SAMPLE: the training records (DS1), analysed end to end; for the rhythm "
                "rule's effect only, not a measure of performance")
    else:
        result["end_to_end"] = None
        result["end_to_end_note"] = "ecgcore.detect.ecg_rpeaks is not available"
    intra_files = [models_dir / "intra_binary.keras", models_dir / "intra_aami.keras"]
    if all(f.is_file() for f in intra_files):
        intra = Classifiers(JittedModel(load_model_file(intra_files[0]), "binary"),
                            JittedModel(load_model_file(intra_files[1]), "aami"),
                            {}, models_dir)
        result["intra_patient"] = evaluate_intra(intra, data_dir, train_records + test_records)
    else:
        result["intra_patient"] = None
    return result


def _card_check(models_dir: Path, evaluation: dict) -> list[str]:
    """Differences between freshly computed figures and those in the cards."""
    problems = []
    for name in ("binary", "aami"):
        card_file = models_dir / f"{name}.json"
        if not card_file.is_file():
            problems.append(f"no card {card_file}")
            continue
        card = json.loads(card_file.read_text())
        for way, fig in card.get("figures", {}).items():
            new = (evaluation.get(way) or {}).get(name)
            if new is None:
                problems.append(f"{name}/{way}: not recomputed")
            elif new["confusion"] != fig["confusion"]:
                problems.append(f"{name}/{way}: confusion matrix differs from the card")
    return problems


def rhythm_rule_markdown(evaluation: dict, name: str) -> list[str]:
    """Card lines on the rhythm rule: what it does and the end-to-end figures without it."""
    from training.cards import figures_markdown

    e2e = evaluation.get("end_to_end") or {}
    rule = e2e.get("rhythm_rule")
    if not rule:
        return []
    lines = []
    morphology = e2e.get("morphology_rule")
    if morphology and name == "aami":
        lines += ["## The morphology rule", "",
                  f"Served five-class labels apply a rule to the network's: {morphology['rule']} "
                  f"(QRS correlation with the median QRS of the nearby beats the network calls "
                  f"N: V overruled at >= {morphology['v_threshold']}, S overruled under "
                  f"{morphology['s_threshold']}; `ecgcore.analysis.morphology_rule_mask`; "
                  "thresholds chosen by patient-wise CV inside DS1, `python -m "
                  "training.experiments --morphology-grid`). It applies both ways, at the "
                  "reference positions and end to end.", "",
                  f"End to end on the test records it relabelled {morphology['relabelled_beats']}"
                  " beats; their reference classes (matched beats): "
                  f"{morphology['relabelled_by_reference_class']}.", ""]
        reference = (evaluation.get("reference") or {}).get("aami_network")
        if reference:
            lines += figures_markdown(reference, "DS2, reference positions, the network's own "
                                                 "labels (without the morphology rule)")
    variants = e2e.get("binary_variants") or {}
    served = variants.get(e2e.get("rhythm_rule", {}).get("binary_variant_served", ""))
    if served and name == "binary":
        lines += ["## The served binary label", "",
                  f"Served: {served['description']}. Threshold and union chosen by "
                  "patient-wise CV inside DS1 (`python -m training.experiments "
                  "--binary-grid`). It applies both ways, at the reference positions and end "
                  "to end; `p_abnormal` stays the network's own.", ""]
        reference = (evaluation.get("reference") or {}).get("binary_network")
        if reference:
            lines += figures_markdown(reference, "DS2, reference positions, the binary "
                                                 "network alone (threshold 0.5)")
            lines += [f"Abnormal Se {_pct(reference['abnormal_sensitivity']).strip()} %, "
                      f"specificity {_pct(reference['specificity']).strip()} %.", ""]
    lines += ["## The rhythm rule (end to end only)", "",
             f"Served labels apply one rule after the rhythm is known: {rule['rule']} "
             f"(episodes {', '.join(rule['rhythms'])} found by `ecgcore.rhythm.ecg_rhythm`). "
             "MIT-BIH labels no beat S during atrial fibrillation or flutter. The binary label "
             "of the same beats goes abnormal -> normal (the only abnormality claimed was "
             "supraventricular prematurity). The probabilities are the networks' own. The "
             "end-to-end figures above are the served labels; at the reference positions the "
             "rule does not apply (it needs the detected rhythm of the whole record).", "",
             f"On the test records it relabelled {rule['relabelled_beats']} beats; their "
             "reference classes: "
             f"{rule['relabelled_by_reference_class']}. The convention has exceptions: the "
             f"reference labels {rule.get('reference_s_inside_reference_af_afl')} of these "
             "records' beats S (aberrated, 'a') inside its own AF/AFL episodes.", ""]
    wide = (e2e.get("binary_variants") or {}).get("rule_in_af_unless_five_class_vfq")
    if wide and name == "binary":
        lines += [f"Not served, for comparison: abnormal -> normal on every beat inside "
                  f"detected AF/AFL that the five-class network calls N or S gives abnormal Se "
                  f"{_pct(wide['abnormal_sensitivity']).strip()} %, specificity "
                  f"{_pct(wide['specificity']).strip()} %, abnormal +P "
                  f"{_pct(wide['abnormal_ppv']).strip()} %.", ""]
    oracle = e2e.get("with_reference_rhythm")
    if oracle and name == "aami":
        pc = oracle["aami"]["per_class"]
        lines += [f"Not served, for comparison: with the reference's AF/AFL episodes instead of "
                  f"the detected ones the rule would give accuracy "
                  f"{_pct(oracle['aami']['accuracy']).strip()} %, S Se/+P "
                  f"{_pct(pc['S']['sensitivity']).strip()}/{_pct(pc['S']['ppv']).strip()} %.",
                  ""]
    without = (e2e.get("without_rhythm_rule") or {}).get(name)
    if without:
        lines += figures_markdown(without, "DS2, end to end, the network's own labels "
                                           "(without the morphology and rhythm rules)")
        if name == "binary":
            lines += [f"Abnormal Se {_pct(without['abnormal_sensitivity']).strip()} %, "
                      f"specificity {_pct(without['specificity']).strip()} %, abnormal +P "
                      f"{_pct(without['abnormal_ppv']).strip()} %.", ""]
    return lines


def refresh_cards(models_dir: Path, evaluation: dict) -> list[Path]:
    """Rewrite the figures of the existing cards from ``evaluation``; the rest stays.

    The training fields (settings, time, parameters, training date) come from ``ecg train``
    and are kept; ``figures``, the seed spread and the rhythm-rule section are replaced,
    so the cards are reproducible from the committed weights by ``ecg evaluate --cards``.
    """
    from datetime import UTC, datetime

    written = []
    for name in ("binary", "aami"):
        card_file = models_dir / f"{name}.json"
        if not card_file.is_file():
            continue
        card = json.loads(card_file.read_text())
        card["figures"] = {way: evaluation[way][name]
                           for way in ("reference", "end_to_end", "intra_patient")
                           if evaluation.get(way)}
        card["ds2_reference_per_member"] = (evaluation.get("reference_members") or {}).get(name)
        card.setdefault("data", {})["test_records"] = list(evaluation["test_records"])
        add_rule_fields(card, evaluation, name)
        card["figures_date"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_card_files(models_dir, card, evaluation)
        written += [card_file, models_dir / f"{name}.md"]
    return written


def add_rule_fields(card: dict, evaluation: dict, name: str) -> None:
    """The rhythm rule's description and the end-to-end figures without it, in a card."""
    e2e = evaluation.get("end_to_end") or {}
    card["rhythm_rule"] = e2e.get("rhythm_rule")
    card["end_to_end_without_rhythm_rule"] = (e2e.get("without_rhythm_rule") or {}).get(name)


def write_card_files(out_dir: Path, card: dict, evaluation: dict) -> None:
    """``<model>.json`` and ``<model>.md``: the card and its rhythm-rule section."""
    from training.cards import card_markdown

    (out_dir / f"{card['model']}.json").write_text(json.dumps(card, indent=1))
    text = card_markdown(card) + "\n".join(rhythm_rule_markdown(evaluation, card["model"]))
    (out_dir / f"{card['model']}.md").write_text(text.rstrip("\n") + "\n")


def evaluate_main(argv: list[str]) -> int:
    """``ecg evaluate``: DS2 figures (reference positions, end to end) and the leaky split."""
    from training.dataset import check_data_dir

    parser = argparse.ArgumentParser(
        prog="ecg evaluate",
        description="Evaluate the beat classifiers on MIT-BIH DS2 (inter-patient): at the "
                    "reference beat positions and end to end exactly as `ecg analyze` serves "
                    "them (with and without the rhythm rule: S -> N inside detected AF/AFL); "
                    "plus DS1 end to end (in-sample, for the rule's effect) and the leaky "
                    "intra-patient split for comparison.",
    )
    parser.add_argument("--data", help="MIT-BIH folder (default $ECG_MITDB_DIR or "
                                       "../shared/data/mitdb)")
    parser.add_argument("--models", help="folder with binary.keras and aami.keras "
                                         "(default: the packaged ecgcore/models/)")
    parser.add_argument("--json", help="write the figures here (default: "
                                       "<models>/evaluation.json)")
    parser.add_argument("--quick", action="store_true",
                        help="evaluate on two records only (for models built with --quick)")
    parser.add_argument("--cards", action="store_true",
                        help="rewrite the figures of the model cards (<model>.json/.md) from "
                             "this evaluation; their training fields are kept")
    args = parser.parse_args(argv)
    try:
        data_dir = check_data_dir(args.data)
        models_dir = Path(args.models) if args.models else _models_dir_default()
        t0 = time.perf_counter()
        evaluation = run_evaluation(models_dir, data_dir, quick=args.quick)
        evaluation["evaluation_seconds"] = round(time.perf_counter() - t0, 1)
    except EcgError as exc:
        print(f"ecg evaluate: {exc}", file=sys.stderr)
        return 1
    report(evaluation)
    if args.cards:
        for path in refresh_cards(models_dir, evaluation):
            print(f"card written: {path}")
    problems = _card_check(models_dir, evaluation)
    evaluation["matches_cards"] = not problems
    evaluation["card_differences"] = problems
    out = Path(args.json) if args.json else models_dir / "evaluation.json"
    # The training times are ecg train's, not this evaluation's: keep them.
    try:
        before = json.loads(out.read_text()) if out.exists() else {}
    except (OSError, ValueError):
        before = {}
    if isinstance(before, dict):
        for key in ("training_seconds", "training_seconds_all_networks"):
            if key in before:
                evaluation[key] = before[key]
    out.write_text(json.dumps(evaluation, indent=1))
    print(f"\nfigures written to {out}")
    print("cards reproduced exactly" if not problems else
          "DIFFERENT from the cards: " + "; ".join(problems))
    return 0


def report(evaluation: dict) -> None:
    """Print every table of an evaluation."""
    from training.cards import WAY_TITLES

    for way in ("reference", "end_to_end", "intra_patient"):
        result = evaluation.get(way)
        if not result:
            if way == "end_to_end":
                print(f"\n{WAY_TITLES[way]}: not run ({evaluation.get('end_to_end_note')})")
            continue
        for name in ("aami", "binary"):
            print_figures(f"{WAY_TITLES[way]}: {name}", result[name])
            if name == "binary":
                b = result[name]
                print(f"  abnormal Se {_pct(b['abnormal_sensitivity'])} %  specificity "
                      f"{_pct(b['specificity'])} %  abnormal +P {_pct(b['abnormal_ppv'])} %")
        if way == "reference" and evaluation.get("reference_members"):
            for name, rows in evaluation["reference_members"].items():
                print(f"  {name}: the served network and the same training with other "
                      "seeds, on DS2 (the seed spread):")
                for row in rows:
                    row = dict(row)
                    print(f"    seed {row.pop('seed')}: " + "  ".join(
                        f"{key} {_pct(v).strip()}" for key, v in row.items()))
        if way == "end_to_end":
            d = result["detection"]
            print(f"  detection: {d['reference_beats']} reference beats, {d['missed']} missed, "
                  f"{d['extra']} extra (match within {d['tolerance_s'] * 1000:.0f} ms)")
            report_rhythm_rule(result, "DS2")
    train = evaluation.get("end_to_end_train")
    if train:
        print(f"\n{train['note']}")
        report_rhythm_rule(train, "DS1", tables=False)
    if "evaluation_seconds" in evaluation:
        print(f"\nevaluation took {evaluation['evaluation_seconds']} s")


def report_rhythm_rule(result: dict, name: str, *, tables: bool = True) -> None:
    """Print what the rhythm rule changed end to end (figures without it, binary variants)."""
    from ecgcore.beats import AAMI_CLASSES

    rule = result.get("rhythm_rule")
    if not rule:
        return
    print(f"\n{name} end to end, rhythm rule ({rule['rule']}): {rule['relabelled_beats']} "
          f"beats relabelled, reference classes {rule['relabelled_by_reference_class']}; "
          f"the reference itself has {rule.get('reference_s_inside_reference_af_afl')} S "
          "beats inside its AF/AFL episodes (aberrated 'a'), beats the rule cannot get right")
    morphology = result.get("morphology_rule")
    if morphology:
        print(f"{name} end to end, morphology rule ({morphology['rule']}; V at >= "
              f"{morphology['v_threshold']}, S under {morphology['s_threshold']}): "
              f"{morphology['relabelled_beats']} beats relabelled, "
              f"reference classes {morphology['relabelled_by_reference_class']}")
    if tables:
        without = result["without_rhythm_rule"]
        print_figures(f"{name} end to end WITHOUT the rules (the network alone): aami",
                      without["aami"])
    before, after = result["without_rhythm_rule"]["aami"], result["aami"]

    def se_ppv(fig: dict, c: str) -> str:
        pc = fig["per_class"][c]
        return f"{_pct(pc['sensitivity']).strip()}/{_pct(pc['ppv']).strip()}"

    print(f"  five-class network alone -> served: accuracy {_pct(before['accuracy']).strip()} "
          f"-> {_pct(after['accuracy']).strip()} %; " + "; ".join(
              f"{c} Se/+P {se_ppv(before, c)} -> {se_ppv(after, c)}" for c in AAMI_CLASSES))
    oracle = result.get("with_reference_rhythm")
    if oracle:
        print("  five-class with the rule on the REFERENCE AF/AFL episodes (not served): "
              f"accuracy {_pct(oracle['aami']['accuracy']).strip()} %; " + "; ".join(
                  f"{c} Se/+P {se_ppv(oracle['aami'], c)}" for c in ("N", "S")))
    for variant, b in result["binary_variants"].items():
        print(f"  binary {variant:34s} abnormal Se {_pct(b['abnormal_sensitivity'])} %  "
              f"specificity {_pct(b['specificity'])} %  abnormal +P {_pct(b['abnormal_ppv'])} %"
              f"  acc {_pct(b['accuracy'])} %")
    rows = [(r, v) for r, v in result["per_record"].items()
            if v["relabelled_by_rhythm_rule"] or v["beats_in_af_afl"]]
    for record, v in sorted(rows):
        print(f"  record {record}: {v['beats_in_af_afl']} beats in AF/AFL, "
              f"{v['relabelled_by_rhythm_rule']} relabelled (reference "
              f"{_counts(v['relabelled_by_reference_class'])}; "
              f"{v['relabelled_inside_reference_af_afl']} inside reference AF/AFL; reference "
              f"S inside reference AF/AFL {v['reference_s_inside_reference_af_afl']}), errors "
              f"{v['errors_without_rhythm_rule']} -> {v['errors']} (with the reference "
              f"rhythm {v['errors_with_reference_rhythm']})")


def _counts(by_class: dict) -> str:
    return " ".join(f"{c} {k}" for c, k in by_class.items() if k) or "none"


def train_main(argv: list[str]) -> int:
    """``ecg train``: rebuild both classifiers, their cards and their evaluation."""
    from training.dataset import check_data_dir

    parser = argparse.ArgumentParser(
        prog="ecg train",
        description="Rebuild both beat classifiers from MIT-BIH DS1 (inter-patient split), "
                    "evaluate them on DS2 and write weights, model cards, training curves "
                    "and evaluation.json.",
    )
    parser.add_argument("--data", help="MIT-BIH folder (default $ECG_MITDB_DIR or "
                                       "../shared/data/mitdb)")
    parser.add_argument("--out", help="output folder (default: the packaged ecgcore/models/)")
    parser.add_argument("--quick", action="store_true",
                        help="a few records, one epoch, one seed: checks the pipeline only")
    parser.add_argument("--no-intra", action="store_true",
                        help="skip the leaky intra-patient comparison models")
    args = parser.parse_args(argv)
    try:
        data_dir = check_data_dir(args.data)
        out = Path(args.out) if args.out else _models_dir_default()
        out.mkdir(parents=True, exist_ok=True)
        run_training(data_dir, out, quick=args.quick, intra=not args.no_intra)
    except EcgError as exc:
        print(f"ecg train: {exc}", file=sys.stderr)
        return 1
    return 0


def run_training(data_dir: Path, out: Path, *, quick: bool, intra: bool = True) -> dict:
    """Train, save, evaluate and write the cards (the whole of ``ecg train``)."""
    from dataclasses import replace

    import numpy as np
    from tqdm import tqdm

    from ecgcore.beats import AAMI_CLASSES
    from ecgcore.inference import clear_cache
    from training.cards import make_card
    from training.dataset import DS1, DS2, build_dataset
    from training.evaluate import intra_patient_split
    from training.train import SERVED_CONFIGS, train_one

    configs = dict(SERVED_CONFIGS)
    seeds = [SERVED_SEED, *SPREAD_SEEDS]
    train_records = list(DS1)
    all_records = list(DS1 + DS2)
    if quick:
        configs = {t: replace(c, epochs=1, normal_fraction=0.2) for t, c in configs.items()}
        seeds = [SERVED_SEED]
        train_records = list(QUICK_TRAIN_RECORDS)
        all_records = list(QUICK_TRAIN_RECORDS + QUICK_TEST_RECORDS)

    with tqdm(total=len(all_records), desc="beats", unit="record") as bar:
        beats_all = build_dataset(data_dir, all_records, progress=lambda r: bar.update())
    train = beats_all.of_records(train_records)
    jobs = [("binary", train, seeds, ""), ("aami", train, seeds, "")]
    if intra:
        tr_idx, _ = intra_patient_split(len(beats_all))
        intra_train = beats_all.take(tr_idx)
        jobs += [("binary", intra_train, list(INTRA_SEEDS), "intra_"),
                 ("aami", intra_train, list(INTRA_SEEDS), "intra_")]
    for stale in out.glob("*_seed*.keras"):
        stale.unlink()
    total_epochs = sum(len(s) * configs[t].epochs for t, _, s, _ in jobs)
    summary = {}
    t_all = time.perf_counter()
    with tqdm(total=total_epochs, desc="training", unit="epoch") as bar:
        for task, data, job_seeds, prefix in jobs:
            histories = []
            for k, seed in enumerate(job_seeds):
                t0 = time.perf_counter()

                def on_epoch(epoch, row, task=task, prefix=prefix, seed=seed):
                    bar.set_postfix_str(f"{prefix}{task} seed {seed} loss {row['loss']:.3f}")
                    bar.update()

                model, history = train_one(data, task, configs[task], seed, on_epoch=on_epoch)
                histories.append(history)
                if k == 0:
                    model.save(out / f"{prefix}{task}.keras")
                    summary[prefix + task] = {
                        "model": model, "seconds": time.perf_counter() - t0, "seed": seed,
                        "counts": {c: int(n) for c, n in zip(
                            AAMI_CLASSES, np.bincount(data.labels, minlength=5), strict=True)},
                    }
                else:
                    model.save(out / f"{prefix}{task}_seed{seed}.keras")
            (out / f"{prefix}{task}_history.json").write_text(json.dumps(
                {"model": f"{prefix}{task}", "seeds": job_seeds, "served_seed": job_seeds[0],
                 "histories": histories},
                indent=1))
    training_all_s = time.perf_counter() - t_all
    clear_cache()
    with tqdm(total=len(DS2 if not quick else QUICK_TEST_RECORDS), desc="evaluating",
              unit="record") as bar:
        evaluation = run_evaluation(out, data_dir, quick=quick, progress=lambda r: bar.update())
    evaluation["training_seconds"] = {k: round(v["seconds"], 1) for k, v in summary.items()}
    evaluation["training_seconds_all_networks"] = round(training_all_s, 1)
    for task in ("binary", "aami"):
        s = summary[task]
        card = make_card(task, model=s["model"], train_config=configs[task].to_dict(),
                         seed=s["seed"],
                         train_seconds=s["seconds"], n_train_beats=s["counts"],
                         evaluation=evaluation, quick=quick)
        add_rule_fields(card, evaluation, task)
        write_card_files(out, card, evaluation)
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    report(evaluation)
    print(f"\nweights, cards and evaluation written to {out}")
    return evaluation
