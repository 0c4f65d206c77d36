"""The measured studies behind the README and the notebooks: one command each, one results file each.

A notebook's live run is a demonstration at the active profile's budget; what the project claims comes from
these files, which ship inside the package (so a Colab session without the data still shows them) and carry
their provenance (date, machine, command, commit, minutes). Nothing in the README is copied by hand from a
run: it is rendered from here.

    python -m synthlab.studies list                 # each study, whether its file exists, its cost
    python -m synthlab.studies run NAME [--force] [--workers N]  # run one (needs $SYNTHLAB_DATA)
    python -m synthlab.studies run all              # every study whose file is missing (make studies)
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cli import Parser, input_error
from ..data import resolve_data
from ..eval_seg import paired_gain
from ..segment import ARMS
from .catalog import STUDIES, TABLES, Study

__all__ = ["STUDIES", "TABLES", "Study", "fewshot_curve", "how_to_make", "load_study", "machine_words", "main",
           "networks_report", "not_run", "show_fewshot", "study_path", "tuned_budget"]

FOLDER = Path(__file__).parent  # the results files ship here, beside the code that makes them


def study_path(name: str) -> Path:
    """Where the results file of study ``name`` lives (inside the package)."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    return FOLDER / f"{name}.json"


def load_study(name: str) -> dict[str, Any] | None:
    """The results of study ``name`` as written by its command, or None when it has not been run.

    A study that borrows its scratch arm (``scratch_from``) gets that arm and the paired gain against it, which
    :func:`~synthlab.eval_seg.paired_gain` computes only where both trained the same subjects.
    """
    path = study_path(name)
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    source = STUDIES[name].scratch_from
    if source is not None and (other := load_study(source)) is not None:
        report["scratch"] = other["scratch"]
        report["gain"] = paired_gain(report["pretrained"], report["scratch"])
        here, there = (_platform(r) for r in (report, other))
        if here and there and here != there:
            warnings.warn(f"study {name} borrows the scratch arm of {source}, made on another platform ({here} vs "
                          f"{there}): a run from scratch moves with the processor's arithmetic (per seed by up to "
                          "0.2 Dice, docs/experiments.md), so the pairing holds by subject and seed only",
                          stacklevel=2)
        report["settings"]["lrs"]["scratch"] = other["settings"]["lrs"]["scratch"]
        report["settings"]["scratch_from"] = source
    return report


def _platform(report: dict[str, Any]) -> str | None:
    """Where a results file was made (operating system build and processor), when it says."""
    machine = (report.get("provenance") or {}).get("machine") or {}
    return " ".join(filter(None, (machine.get("platform"), machine.get("processor")))) or None


def not_run(names: Sequence[str]) -> str:
    """What a reader without some of these studies' files should do: the command and cost of each missing one."""
    return "\n".join(f"{name} has not been run: {how_to_make(name)}" for name in names if load_study(name) is None)


def machine_words(made: dict[str, Any]) -> str:
    """The machine of a provenance record in words: its GPU when it used one, its CPU cores, torch and threads."""
    machine = made["machine"]
    gpu = f"one {machine['gpu']} with " if machine.get("device") == "cuda" and "gpu" in machine else ""
    return (f"{gpu}{made['cpus']} CPU cores ({machine['processor']}, torch {machine['torch']}, "
            f"{machine.get('threads', '?')} thread(s))")


def how_to_make(name: str) -> str:
    """The command that makes study ``name``'s results file, and what it costs."""
    return f"python -m synthlab.studies run {name} ({STUDIES[name].cost})"


def tuned_budget(name: str) -> dict[str, Any]:
    """What few-shot study ``name`` chose on its validation cases, as :class:`~synthlab.segment.FineTuneConfig`
    fields (learning rates, frozen warm-up, head starts), so a live run at another budget takes the study's
    choices; empty when the study has not been run."""
    report = load_study(name)
    if report is None:
        return {}
    settings, lrs = report["settings"], report["settings"]["lrs"]
    chosen: dict[str, Any] = {"freeze_fraction": settings["freeze_fraction"]}
    for arm, suffix in (("scratch", "scratch"), ("pretrained", "finetune")):
        if arm in lrs:
            chosen[f"lr_{suffix}"] = lrs[arm]
        if arm in (settings.get("heads") or {}):  # studies before 2026-12-04 had random heads only
            chosen[f"head_{suffix}"] = settings["heads"][arm]
    return chosen


def fewshot_curve(names: Sequence[str]) -> dict[str, Any] | None:
    """Several few-shot studies of one network, each with its own shot counts, as one report: each arm's Dice
    and the paired gain against the shot count (what :func:`synthlab.viz.plot_fewshot` draws as a curve).

    Each shot count keeps its own study's tuning, seeds and subjects; only arms present in every study appear.
    None when a study has not been run. Raises ValueError when the studies pretrain different networks or two
    measure the same shot count.
    """
    reports = [load_study(name) for name in names]
    if any(report is None for report in reports):
        return None
    networks = {report["settings"]["checkpoint"] for report in reports}
    if len(networks) != 1:
        raise ValueError(f"the studies {list(names)} pretrain different networks: {sorted(networks)}")
    arms = [arm for arm in (*ARMS, "gain") if all(report.get(arm) for report in reports)]
    curve: dict[str, Any] = {arm: {} for arm in arms}
    for name, report in zip(names, reports, strict=True):
        for arm in arms:
            if overlap := set(curve[arm]) & set(report[arm]):
                raise ValueError(f"study {name} measures shot count(s) {sorted(overlap)} another study measured")
            curve[arm].update(report[arm])
    return {arm: dict(sorted(entries.items(), key=lambda item: int(item[0]))) for arm, entries in curve.items()}


def networks_report(names: Sequence[str]) -> dict[str, Any] | None:
    """Few-shot studies of several networks that share one scratch arm (the first study's, borrowed by the
    others) at the same shot counts, as one report: scratch and each network's fine-tuned Dice, named by network,
    and the paired gain per network (per network and shot count when there are several), which
    :func:`synthlab.viz.plot_fewshot` draws side by side. Studies not run yet are left out (:func:`not_run`
    says how to make them); None when the first, which owns the scratch arm, or every other is missing;
    ValueError when they measure different shot counts."""
    reports = [report for name in names if (report := load_study(name)) is not None]
    if load_study(names[0]) is None or len(reports) < 2:
        return None
    shots = {tuple(report["settings"]["shots"]) for report in reports}
    if len(shots) != 1:
        raise ValueError(f"the studies {list(names)} must share their shot counts, got {sorted(shots)}")
    keys = [str(k) for k in next(iter(shots))]
    combined: dict[str, Any] = {"scratch": {k: reports[0]["scratch"][k] for k in keys}, "gain": {}}
    for report in reports:
        label = report["settings"]["checkpoint"].removeprefix("synthlab-")
        combined[label] = {k: report["pretrained"][k] for k in keys}
        for k in keys:
            combined["gain"][label if len(keys) == 1 else f"{label}, {k} shots"] = report["gain"][k]
    return combined


def show_fewshot(names: Sequence[str], title: str, tuning: bool = False) -> Any:
    """A few-shot study (several: joined into a shot curve) as the notebooks show it: each study's question and
    provenance, the table (and with ``tuning`` every choice tried on the validation cases) printed, the figure
    returned; for a missing file, how to make it, and None."""
    from ..eval_seg import format_segmentation
    from ..tuning import format_tuning
    from ..viz import plot_fewshot  # matplotlib only where a figure is drawn

    report = load_study(names[0]) if len(names) == 1 else fewshot_curve(names)
    if report is None:
        print(not_run(names))
        return None
    for name in names:
        study = load_study(name)
        settings, made = study["settings"], study["provenance"]
        print(f"{name}: {STUDIES[name].question}\n  {made['date'][:10]}, {machine_words(made)}, "
              f"{settings['seconds'] / 60:.0f} min; {made['command']}")
        if tuning:
            print(format_tuning(study))  # the chosen setting of each arm marked with *
    print(format_segmentation(report))
    return plot_fewshot(report, f"{settings['checkpoint']}, hippocampus {settings['dim']}D, {title}")


def _data_present(study: Study) -> bool:
    """Whether the data set a study names with ``--data`` can be found."""
    try:
        resolve_data(study.argv[study.argv.index("--data") + 1])
    except FileNotFoundError:
        return False
    return True


def _parser() -> Parser:
    parser = Parser(prog="python -m synthlab.studies", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="each study, whether its file exists, its cost")
    run = sub.add_parser("run", help="run one study (or all whose file is missing) and write its results file")
    run.add_argument("name", help="a study's name, or all")
    run.add_argument("--force", action="store_true", help="run again even when the results file exists")
    run.add_argument("--workers", type=int, default=None,
                     help="processes for a few-shot study's runs (default: every core); the results do not depend "
                          "on it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``list`` or ``run NAME|all [--force] [--workers N]``; returns the exit code (2 for bad arguments)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # argparse has printed its one line
        return int(stop.code or 0)
    if args.command == "list":
        for study in STUDIES.values():
            state = "done" if study_path(study.name).is_file() else "missing"
            print(f"{study.name:<40} {state:<8} {study.cost}: {study.question}")
        return 0
    names = [name for name in STUDIES if not study_path(name).is_file()] if args.name == "all" else [args.name]
    if unknown := [name for name in names if name not in STUDIES]:
        return input_error("synthlab.studies", ValueError(f"unknown study {unknown[0]!r}; choose one of "
                                                          f"{sorted(STUDIES)} or all"))
    for name in names:
        path = study_path(name)
        if path.is_file() and not args.force:
            print(f"{path} exists; --force runs the study again")
            continue
        # The command line runs the study exactly as a user would type it, from this folder, so the command its
        # file records names no machine's paths.
        study = STUDIES[name]
        if study.makes_data and not _data_present(study):
            code = subprocess.run([sys.executable, "-m", *study.makes_data], cwd=FOLDER, check=False).returncode
            if code:
                return code
        spread = args.workers is not None and STUDIES[name].argv[0] == "eval-seg"  # the others run in one process
        extra = ["--workers", str(args.workers)] if spread else []
        code = subprocess.run([sys.executable, "-m", "synthlab", *STUDIES[name].argv, *extra, "--out", path.name],
                              cwd=FOLDER, check=False).returncode
        if code:
            return code
    return 0
