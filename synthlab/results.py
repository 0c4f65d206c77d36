"""The comparison record (its schema defined here, written by notebook 05) and the README's claims table built
from it.

Each seed paper makes one central claim; the table sets the number measured here (per profile) beside the
published one, so a reader sees at a glance how far a small reproduction is from the paper's setting. The
table lives between two markers in the README and is rewritten whole, so running the command twice changes
nothing (``--check`` tells CI whether the README is stale).

Usage: ``python -m synthlab.results --update README.md [--results results] [--check]``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_backbone
from .cli import USER_ERRORS, Parser, input_error
from .eval_seg import paired_gain
from .io import write_text_atomic
from .profiles import Profile
from .registration_config import preset_name
from .studies import STUDIES, TABLES, load_study
from .studies.render import render_blocks

__all__ = ["CLAIMS", "END_MARKER", "SMOKE_PROFILES", "START_MARKER", "TABLE_PROFILES", "Claim", "comparison_record",
           "comparison_summary", "features_summary", "format_registration", "load_runs", "machine_info", "main",
           "one_per_architecture", "provenance", "registration_summary", "render_table", "replace_between_markers",
           "segmentation_summary", "study_markers", "update_readme"]

START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"
TABLE_PROFILES = ("cpu", "gpu")  # notebook-05 runs whose numbers get a column; the others are listed under it
SMOKE_PROFILES = ("ci",)  # budgets that show the code runs end to end, not evidence: never a column of numbers


@dataclass(frozen=True)
class Claim:
    """One paper's central claim and where its measured number sits in a comparison JSON."""

    paper: str
    claim: str
    protocol: str
    published: str
    task: str  # "segmentation": few-shot Dice gain; "registration": EPE by feature set; "features": match rate
    objective: str
    study: str | None = None  # the synthlab.studies results file (or table of files) that measures the claim
    also: tuple[str, ...] = ()  # further few-shot studies of the claim (other shot counts, heads), after it


CLAIMS: tuple[Claim, ...] = (
    Claim("anatomix", "pretraining on synthetic label maps raises few-shot Dice over random init",
          "hippocampus (MSD), fine-tune all layers vs scratch, same subjects/draws; Dice gain ± SE per shots",
          "+0.01 to +0.05 Dice on 6 datasets (e.g. PROMISE12 .85 vs .80)", "segmentation", "supcon",
          "fewshot-2d-supcon-1shot", also=("fewshot-2d-supcon-3-5shot", "fewshot-2d-supcon-1shot-lpft",
                                           "fewshot-2d-supcon-3-5shot-lpft", "fewshot-2d-supcon-1shot-lpft-40seeds",
                                           "fewshot-2d-supcon-3-5shot-lpft-20seeds",
                                           "fewshot-3d-supcon-1shot")),
    Claim("anatomix", "network features + MIND register better than MIND alone, without training",
          "brain_tumor_mri/study1, known smooth deformation; endpoint error (voxels, lower is better)",
          "ConvexAdam Dice .84 (+anatomix) vs .73 (MIND) on AbdomenMRCT", "registration", "supcon",
          "registration-brain"),
    Claim("anatomix", "its features find the same voxel across MR contrasts (the basis of its registration)",
          "eval-features: brain_tumor_mri T1 -> FLAIR and T2 (study1), T1post -> FLAIR and T2 (study2); mean match "
          "rate of network vs untrained vs MIND (chance 0.053 in 2D, 0.012 in 3D)",
          "not reported as such; registration above", "features", "supcon", "features"),
    Claim("synthlab", "same-voxel contrast across renderings (own fourth arm) transfers to real contrasts",
          "as the row above, voxnce objective", "none: not from the papers", "features", "voxnce", "features"),
    Claim("VoCo", "crop-position pretraining beats training from scratch",
          "as row 1, VoCo objective on the same backbone and budget",
          "BTCV 86.64 vs 82.79 Dice % (baseline)", "segmentation", "voco", "fewshot-2d-voco-1shot",
          also=("fewshot-2d-voco-3-5shot", "fewshot-2d-voco-3-5shot-20seeds",
                "fewshot-2d-voco-3-5shot-lpft-20seeds")),
    Claim("RaSD", "random-field synthetic pretraining beats scratch consistently",
          "as row 1, RaSD objective on the same backbone and budget",
          "beats scratch consistently (abstract; 56 tasks, 6 modalities)", "segmentation", "rasd",
          "fewshot-2d-rasd-1shot", also=("fewshot-2d-rasd-3-5shot", "fewshot-2d-rasd-3-5shot-20seeds",
                "fewshot-2d-rasd-3-5shot-lpft-20seeds")),
)


def segmentation_summary(segmentation: dict[str, dict[str, Any]] | None, objectives: Sequence[str],
                         scratch: dict[str, Any] | Sequence[dict[str, Any]] | None = None
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """From ``evaluate_segmentation`` reports per objective: Dice per arm and the paired gain per objective.

    Objectives whose networks share one architecture share one scratch arm (same subjects and draws), so it
    appears once: taken from ``scratch`` (reports run with ``arms=("scratch",)``, one per architecture, see
    :func:`one_per_architecture`) or else from the first objective's report. With several architectures each
    scratch arm is listed as ``scratch (widths ...)``, and each objective is paired with its own.
    """
    dice: dict[str, Any] = {}
    gain: dict[str, Any] = {}
    if segmentation is None:
        return dice, gain
    if scratch is None:
        controls = [segmentation[objectives[0]]]
    else:
        controls = [scratch] if isinstance(scratch, dict) else list(scratch)
    for control in controls:
        widths = control["settings"]["net_config"].get("widths")
        dice["scratch" if len(controls) == 1 else f"scratch (widths {widths})"] = control["scratch"]
    for objective in objectives:
        report = segmentation[objective]
        control = next((c for c in controls if c["settings"]["net_config"] == report["settings"]["net_config"]),
                       None)
        if control is None:
            raise ValueError(f"{objective}: its network differs from every scratch arm's, so no paired gain exists")
        dice[objective] = report["pretrained"]
        paired = report["gain"] or paired_gain(report["pretrained"], control["scratch"])
        gain[objective] = {k: {"mean": g["mean"], "sem": g["sem"]} for k, g in paired.items()}
    return dice, gain


def one_per_architecture(checkpoints: dict[str, str], dim: int) -> list[str]:
    """One checkpoint of each distinct network architecture among ``checkpoints`` (name -> path or shipped
    name), in order: the scratch arm a few-shot comparison needs is trained once per architecture."""
    seen: dict[str, str] = {}
    for spec in checkpoints.values():
        seen.setdefault(json.dumps(load_backbone(spec, dim).config, sort_keys=True), spec)
    return list(seen.values())


def registration_summary(registration: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """From ``evaluate_registration`` reports per network: endpoint error mean and SD per feature set, and the
    number of seeds behind them."""
    if registration is None:
        return {}
    return {name: {feature: {"mean": r["epe"]["mean"], "std": r["epe"]["std"], "seeds": len(report["seeds"])}
                   for feature, r in report["results"].items()} for name, report in registration.items()}


def format_registration(reg_epe: dict[str, Any]) -> str:
    """One line per network: each feature set's endpoint error, with its SD only where seeds can give one (a
    single seed prints no "± 0.00", which would claim a certainty one run cannot have)."""
    def cell(v: dict[str, Any]) -> str:
        seeds = v["seeds"]
        return f"{v['mean']:.2f} ± {v['std']:.2f} (SD, {seeds} seeds)" if seeds > 1 else f"{v['mean']:.2f} (1 seed)"
    return "\n".join(f"{name:12s}" + "".join(f"{feature:>14s} {cell(v)}" for feature, v in by_feature.items())
                     for name, by_feature in reg_epe.items())


def features_summary(features: dict[str, list[dict[str, Any]]] | None) -> dict[str, Any]:
    """From ``evaluate_features`` reports per objective (one per image pair): mean match rate per method."""
    if not features:
        return {}
    return {objective: {method: sum(r["methods"][method]["match_rate"] for r in reports) / len(reports)
                        for method in reports[0]["methods"]}
            for objective, reports in features.items()}


def comparison_summary(pretraining: dict[str, dict[str, Any]], seg_dice: dict[str, Any],
                       seg_gain: dict[str, Any], reg_epe: dict[str, Any],
                       feature_match: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compact ``summary`` of a comparison JSON: the one schema notebook 05 writes and :func:`_measure` reads."""
    return {"pretrain_loss": {o: r["final_loss"] for o, r in pretraining.items()},
            "segmentation_dice": seg_dice and {arm: {k: {"mean": v["mean"], "sem": v["sem"]} for k, v in d.items()}
                                               for arm, d in seg_dice.items()},
            "segmentation_gain": seg_gain, "registration_epe": reg_epe, "feature_match": feature_match or {}}


def machine_info() -> dict[str, Any]:
    """Where a comparison ran: platform, processor, Python, torch, device (and the GPU's name) and CPU threads."""
    gpu = {"gpu": torch.cuda.get_device_name()} if torch.cuda.is_available() else {}
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu", **gpu, "threads": torch.get_num_threads()}


def provenance(command: Sequence[str]) -> dict[str, Any]:
    """What a results file needs to be traced: when, on what, by which command, from which commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None  # an installed wheel has no repository
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(command), "commit": commit, "machine": machine_info(),
            "cpus": os.cpu_count()}


def comparison_record(profile: Profile, dim: int, seed: int, weights: str, pretraining: dict[str, dict[str, Any]],
                      features: dict[str, list[dict[str, Any]]] | None, segmentation: dict[str, Any] | None,
                      scratch: dict[str, Any] | Sequence[dict[str, Any]] | None,
                      registration: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The whole comparison as one JSON-able record: the full reports, the compact ``summary`` the claims table
    reads (:func:`comparison_summary`), the date and the machine. ``segmentation`` maps each objective to its
    ``evaluate_segmentation`` report (pretrained arm), ``scratch`` the scratch arm's report (one per architecture)."""
    objectives = list(pretraining)
    seg_dice, seg_gain = segmentation_summary(segmentation, objectives, scratch)
    summary = comparison_summary(pretraining, seg_dice, seg_gain, registration_summary(registration),
                                 features_summary(features))
    return {"profile": profile.name, "dim": dim, "seed": seed, "objectives": objectives, "weights": weights,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "settings": profile.as_dict(), "pretraining": pretraining,
            "summary": summary, "features": features, "segmentation": segmentation, "scratch": scratch,
            "registration": registration}


def load_runs(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Every ``comparison_*.json`` under ``folder``, grouped by profile and sorted by dimension."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(folder).glob("comparison_*.json")):
        try:
            run = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        if "profile" not in run:
            raise ValueError(f"{path} has no 'profile' field; is it a comparison record (comparison_record)?")
        runs.setdefault(run["profile"], []).append(run)
    for group in runs.values():
        group.sort(key=lambda run: run.get("dim", 0))
    return runs


def _signed(mean: float, sem: float | None) -> str:
    return f"{mean:+.3f}" + (f" ± {sem:.3f}" if sem is not None else "")


def _measure(claim: Claim, run: dict[str, Any]) -> str | None:
    """The claim's number in one run as a short string, or None when that part was skipped."""
    summary = run.get("summary") or {}
    if claim.task == "segmentation":
        gains = (summary.get("segmentation_gain") or {}).get(claim.objective)
        if not gains:
            return None
        return ", ".join(f"{shots}-shot {_signed(g['mean'], g.get('sem'))}" for shots, g in gains.items())
    if claim.task == "features":
        match = (summary.get("feature_match") or {}).get(claim.objective)
        if not match:
            return None
        return " vs ".join(f"{name} {match[name]:.3f}" for name in ("network", "random", "mind") if name in match)
    errors = (summary.get("registration_epe") or {}).get(claim.objective)
    if not errors:
        return None
    return " vs ".join(f"{name} {value['mean']:.2f}" for name, value in errors.items())


def _registration_cell(names: tuple[str, ...]) -> str:
    """Per solver: MIND, each trained network's network + MIND (and its ratio to MIND), and a random network's."""
    reports = [load_study(name) for name in names]
    if any(report is None for report in reports):
        return "no study file yet (see Measured figures)"
    epe: dict[str, dict[str, float]] = {}  # solver -> "mind" | "random" | a trained network -> EPE
    for report in reports:
        solver = preset_name(report["registration_config"])
        for features, row in report["results"].items():
            if features in ("mind", "network+mind"):
                key = "mind" if features == "mind" else "random" if report["checkpoint"] == "none" else \
                    report["checkpoint"]
                epe.setdefault(solver, {})[key] = row["epe"]["mean"]
    parts = []
    for solver, values in epe.items():
        mind, random = values.pop("mind", None), values.pop("random", None)
        if mind is None:
            continue
        trained = ", ".join(f"`{net}` {value:.3f} (ratio {value / mind:.2f})" for net, value in values.items())
        parts.append(f"{solver} solver: MIND {mind:.3f}; network + MIND {trained}"
                     + (f"; random network {random:.3f}" if random is not None else ""))
    return f"3D, {len(reports[0]['seeds'])} seeds, EPE: " + "; ".join(parts) + " (`registration-brain`)"


def _features_cell(names: tuple[str, ...], objective: str) -> str:
    """The objective's mean match rate against its untrained network and MIND-SSC, per dimension studied."""
    reports = [load_study(name) for name in names]
    if any(report is None for report in reports):
        return "no study file yet (see Measured figures)"
    parts = []
    for name, report in zip(names, reports, strict=True):
        dim = report["settings"]["dim"]
        mean = report["networks"][f"synthlab-{objective}-{dim}d"]["mean"]
        parts.append(f"{dim}D {mean['network']['match_rate']:.3f} vs untrained {mean['random']['match_rate']:.3f}, "
                     f"MIND {mean['mind']['match_rate']:.3f} (`{name}`)")
    return "mean match rate over 4 pairs: " + "; ".join(parts)


def _study_cell(claim: Claim) -> str:
    """The claim's paired gain as its study measured it, or where the README's hand-run figures stand instead."""
    if claim.study in TABLES and STUDIES[TABLES[claim.study][0]].argv[0] == "eval-features":
        return _features_cell(TABLES[claim.study], claim.objective)
    if claim.study in TABLES:
        return _registration_cell(TABLES[claim.study])
    cells = [cell for name in (claim.study, *claim.also) if name and (cell := _fewshot_cell(name))]
    return "; ".join(cells) if cells else "no study file yet (see Measured figures)"


def _fewshot_cell(name: str) -> str | None:
    """A few-shot study's paired gains with their intervals, or None when its file is missing."""
    study = load_study(name)
    if study is None or not study.get("gain"):
        return None
    settings = study["settings"]
    parts = []
    for shots, gain in study["gain"].items():
        interval = f" [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain.get("ci95") else ""
        parts.append(f"{shots}-shot {_signed(gain['mean'], gain.get('sem'))}{interval}")
    head = "head fitted first (LP-FT), " if "probe" in (settings.get("heads") or {}).values() else ""
    tuned = "tuned" if settings.get("tuning") else "settings of earlier studies"
    return (f"{settings['dim']}D, {settings['seeds']} seeds, {head}{tuned}, {settings['steps']} steps: "
            + ", ".join(parts) + f" (`{name}`)")


def _cell(claim: Claim, runs: list[dict[str, Any]]) -> str:
    parts = [f"{run.get('dim', '?')}D: {value}" for run in runs if (value := _measure(claim, run)) is not None]
    return "<br>".join(parts) if parts else "not run"


def _provenance(profile: str, runs: list[dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        machine = run.get("machine") or {}
        lines.append(f"- `{profile}` {run.get('dim', '?')}D: {run.get('date', 'date unknown')} on "
                     f"{machine.get('platform', 'unknown platform')} ({machine.get('processor') or 'cpu n/a'}), "
                     f"torch {machine.get('torch', '?')}, device {machine.get('device', '?')}")
    return "\n".join(lines)


def render_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The markdown claims table plus one provenance line per run (no markers)."""
    header = ["paper", "central claim", "protocol here", "measured in a study (paired gain ± SE [95 % interval])",
              *(f"notebook 05, `{p}` profile" for p in TABLE_PROFILES), "published (reference)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for claim in CLAIMS:
        measured = [_study_cell(claim), *(_cell(claim, runs.get(profile, [])) for profile in TABLE_PROFILES)]
        lines.append("| " + " | ".join([claim.paper, claim.claim, claim.protocol, *measured, claim.published])
                     + " |")
    provenance = [_provenance(profile, runs[profile]) for profile in TABLE_PROFILES if profile in runs]
    smoke = sorted(profile for profile in runs if profile in SMOKE_PROFILES)
    notes = ("Gains are pretrained minus scratch mean Dice (paired seeds) ± standard error, with a bootstrap 95 % "
             "interval; registration cells give endpoint errors of the feature sets with that objective's network. "
             "The study column comes from the results files of `synthlab/studies` (their provenance is in each file "
             "and under Measured figures). "
             + (f"Runs at the {', '.join(f'`{p}`' for p in smoke)} budget (one seed, minutes of CPU) show that the "
                "pipeline runs end to end and are not evidence, so they have no column." if smoke else ""))
    return "\n".join([*lines, "", notes.strip(), "", "Runs:" if provenance else "Runs of notebook 05 at the `cpu` "
                      "or `gpu` budget: none yet.", *provenance])


def replace_between_markers(text: str, body: str, name: str = "README", start_marker: str = START_MARKER,
                            end_marker: str = END_MARKER) -> str:
    """``text`` with everything between the markers replaced by ``body``; ValueError naming ``name``."""
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"{name}: needs the markers {start_marker} and then {end_marker}")
    return text[:start + len(start_marker)] + "\n" + body.strip() + "\n" + text[end:]


def study_markers(name: str) -> tuple[str, str]:
    """The pair of markers around the README block rendered from study ``name``."""
    return f"<!-- study:{name}:start -->", f"<!-- study:{name}:end -->"


def update_readme(readme: str | Path, results: str | Path = "results", check: bool = False) -> bool:
    """Regenerate the claims table and every study block in ``readme``; returns True when the file was
    (``check``: would be) changed."""
    readme = Path(readme)
    if not readme.is_file():
        raise FileNotFoundError(f"{readme}: README not found")
    text = readme.read_text()
    updated = replace_between_markers(text, render_table(load_runs(results)), str(readme))
    for name, body in render_blocks().items():  # each study block the README holds, from its results files
        start, end = study_markers(name)
        if start in updated:
            updated = replace_between_markers(updated, body, str(readme), start, end)
    if updated != text and not check:
        write_text_atomic(readme, updated)
    return updated != text


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m synthlab.results", description=__doc__.splitlines()[0])
    parser.add_argument("--update", required=True, metavar="README", help="markdown file holding the markers")
    parser.add_argument("--results", default="results", help="folder of comparison_*.json (default: results)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the table is stale")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(args.update, args.results, check=args.check)
    except USER_ERRORS as err:
        return input_error("synthlab.results", err)
    if args.check and changed:
        print(f"{args.update} is stale: run `make results`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
