"""Regenerate the README's claims table from the comparison notebook's ``results/comparison_*.json``.

Each seed paper makes one central claim; the table sets the number measured here (per profile) beside the
published one, so a reader sees at a glance how far a small reproduction is from the paper's setting. The
table lives between two markers in the README and is rewritten whole, so running the command twice changes
nothing (``--check`` tells CI whether the README is stale).

Usage: ``python -m synthlab.results --update README.md [--results results] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import write_text_atomic

__all__ = ["CLAIMS", "END_MARKER", "START_MARKER", "TABLE_PROFILES", "Claim", "load_runs", "main",
           "render_table", "replace_between_markers", "update_readme"]

START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"
TABLE_PROFILES = ("ci", "gpu")  # the columns of measured numbers; other profiles are listed under the table


@dataclass(frozen=True)
class Claim:
    """One paper's central claim and where its measured number sits in a comparison JSON."""

    paper: str
    claim: str
    protocol: str
    published: str
    task: str  # "segmentation": few-shot Dice gain of ``objective``; "registration": EPE by feature set
    objective: str


CLAIMS: tuple[Claim, ...] = (
    Claim("anatomix", "pretraining on synthetic label maps raises few-shot Dice over random init",
          "hippocampus (MSD), fine-tune all layers vs scratch, same subjects/draws; Dice gain ± SE per shots",
          "+0.01 to +0.05 Dice on 6 datasets (e.g. PROMISE12 .85 vs .80)", "segmentation", "supcon"),
    Claim("anatomix", "network features + MIND register better than MIND alone, without training",
          "brain_tumor_mri/study1, known smooth deformation; endpoint error (voxels, lower is better)",
          "ConvexAdam Dice .84 (+anatomix) vs .73 (MIND) on AbdomenMRCT", "registration", "supcon"),
    Claim("VoCo", "crop-position pretraining beats training from scratch",
          "as row 1, VoCo objective on the same backbone and budget",
          "BTCV 86.64 vs 82.79 Dice % (baseline)", "segmentation", "voco"),
    Claim("RaSD", "random-field synthetic pretraining beats scratch consistently",
          "as row 1, RaSD objective on the same backbone and budget",
          "beats scratch consistently (abstract; 56 tasks, 6 modalities)", "segmentation", "rasd"),
)


def load_runs(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Every ``comparison_*.json`` under ``folder``, grouped by profile and sorted by dimension."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(folder).glob("comparison_*.json")):
        try:
            run = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        if "profile" not in run:
            raise ValueError(f"{path} has no 'profile' field; was it written by notebooks/05_comparison?")
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
    errors = (summary.get("registration_epe") or {}).get(claim.objective)
    if not errors:
        return None
    return " vs ".join(f"{name} {value['mean']:.2f}" for name, value in errors.items())


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
    header = ["paper", "central claim", "protocol here", *(f"measured `{p}`" for p in TABLE_PROFILES),
              "published (reference)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for claim in CLAIMS:
        measured = [_cell(claim, runs.get(profile, [])) for profile in TABLE_PROFILES]
        lines.append("| " + " | ".join([claim.paper, claim.claim, claim.protocol, *measured, claim.published])
                     + " |")
    provenance = [_provenance(profile, group) for profile, group in sorted(runs.items())]
    notes = ("Gains are pretrained minus scratch mean Dice (paired seeds) ± standard error; registration cells "
             "give endpoint errors of the feature sets with that objective's network. Tiny budgets give "
             "differences at the level of seed noise: read the `ci` column as a smoke test, not evidence.")
    return "\n".join([*lines, "", notes, "", "Runs:" if provenance else "Runs: none yet (run "
                      "notebooks/05_comparison).", *provenance])


def replace_between_markers(text: str, body: str, name: str = "README") -> str:
    """``text`` with everything between the markers replaced by ``body``; ValueError naming ``name``."""
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"{name}: needs the markers {START_MARKER} and then {END_MARKER}")
    return text[:start + len(START_MARKER)] + "\n" + body.strip() + "\n" + text[end:]


def update_readme(readme: str | Path, results: str | Path = "results", check: bool = False) -> bool:
    """Regenerate the table in ``readme``; returns True when the file was (``check``: would be) changed."""
    readme = Path(readme)
    if not readme.is_file():
        raise FileNotFoundError(f"{readme}: README not found")
    text = readme.read_text()
    updated = replace_between_markers(text, render_table(load_runs(results)), str(readme))
    if updated != text and not check:
        write_text_atomic(readme, updated)
    return updated != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthlab.results", description=__doc__.splitlines()[0])
    parser.add_argument("--update", required=True, metavar="README", help="markdown file holding the markers")
    parser.add_argument("--results", default="results", help="folder of comparison_*.json (default: results)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the table is stale")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(args.update, args.results, check=args.check)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check and changed:
        print(f"{args.update} is stale: run `make results`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
