"""The measured studies behind the README and the notebooks: one command each, one results file each.

A notebook's live run is a demonstration at the active profile's budget; what the project claims comes from
these files, which ship inside the package (so a Colab session without the data still shows them) and carry
their provenance (date, machine, command, commit, minutes). Nothing in the README is copied by hand from a
run: it is rendered from here.

    python -m synthlab.studies list                 # each study, whether its file exists, its cost
    python -m synthlab.studies run NAME [--force]   # run one (needs $SYNTHLAB_DATA), write NAME.json here
    python -m synthlab.studies run all              # every study whose file is missing (make studies)
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["STUDIES", "Study", "load_study", "main", "study_path"]

FOLDER = Path(__file__).parent


@dataclass(frozen=True)
class Study:
    """A named, reproducible measurement: the ``python -m synthlab`` arguments that produce its file."""

    name: str
    question: str
    argv: tuple[str, ...]  # without --out, which is always this folder's NAME.json
    cost: str  # wall time measured on the machine named in the file's provenance


# The fair few-shot protocol (docs/experiments.md): 2D hippocampus, 400 steps at batch 8, 40 fixed test volumes,
# each arm's learning rate (and the pretrained arm's frozen warm-up) tuned on 10 validation volumes with seeds
# after the evaluated ones, linear probes fitted to convergence.
_FEWSHOT_2D = ("eval-seg", "--data", "hippocampus", "--dim", "2", "--steps", "400", "--batch-size", "8",
               "--max-test", "40", "--tune")

STUDIES: dict[str, Study] = {study.name: study for study in (
    Study("fewshot-2d-supcon-1shot",
          "Does anatomix's supcon network gain over tuned scratch training with one labelled scan (20 seeds)?",
          (*_FEWSHOT_2D, "--checkpoint", "synthlab-supcon-2d", "--shots", "1", "--seeds", "20"),
          "about 80 minutes on 2 cores"),
)}


def study_path(name: str) -> Path:
    """Where the results file of study ``name`` lives (inside the package)."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    return FOLDER / f"{name}.json"


def load_study(name: str) -> dict[str, Any] | None:
    """The results of study ``name`` as written by its command, or None when it has not been run."""
    path = study_path(name)
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """``list`` or ``run NAME|all [--force]``; returns the exit code (2 for an unknown study)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["list"]:
        for study in STUDIES.values():
            state = "done" if study_path(study.name).is_file() else "missing"
            print(f"{study.name:<28} {state:<8} {study.cost}: {study.question}")
        return 0
    if len(args) in (2, 3) and args[0] == "run" and args[2:] in ([], ["--force"]):
        names = [name for name in STUDIES if not study_path(name).is_file()] if args[1] == "all" else [args[1]]
        if unknown := [name for name in names if name not in STUDIES]:
            print(f"synthlab.studies: error: unknown study {unknown[0]!r}; choose one of {sorted(STUDIES)} or all",
                  file=sys.stderr)
            return 2
        for name in names:
            path = study_path(name)
            if path.is_file() and "--force" not in args:
                print(f"{path} exists; --force runs the study again")
                continue
            # The command line runs the study, exactly as a user would type it (its file records that command).
            code = subprocess.run([sys.executable, "-m", "synthlab", *STUDIES[name].argv, "--out", str(path)],
                                  check=False).returncode
            if code:
                return code
        return 0
    print("usage: python -m synthlab.studies list | run NAME|all [--force]", file=sys.stderr)
    return 2
