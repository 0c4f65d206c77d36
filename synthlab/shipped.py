"""The weights synthlab ships: each one rebuilt from scratch by ``make weights`` from its committed recipe.

For every shipped name ``synthlab/weights/`` holds three files:

* ``NAME.json`` — the recipe: :class:`~synthlab.train.TrainConfig` fields (``out`` aside), so the run that made
  the weights is one command away (``python -m synthlab.shipped build NAME``);
* ``NAME.pt`` — a slim checkpoint (network, its config, the run config and synthetic settings, the final loss
  and probe numbers; no optimiser or random state), loaded by ``synthlab.load_pretrained(NAME)``;
* ``NAME.log.csv`` — the run's loss and probe log, for the curves in notebook 02.

``synthlab-2d`` and ``synthlab-3d`` are aliases for the best network of each dimension (:data:`ALIASES`), chosen by
the correspondence probe in the experiment log (docs/experiments.md).

Usage::

    python -m synthlab.shipped list
    python -m synthlab.shipped build synthlab-voxnce-2d [--runs runs/weights]   # or: make weights
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import ALIASES, WEIGHTS_DIR, load_checkpoint, save_checkpoint
from .cli import USER_ERRORS, Parser, input_error
from .correspondence import TrainingProbe
from .data.layouts import data_name
from .io import read_csv_log
from .losses import OBJECTIVES
from .runs import CHECKPOINT_NAME, LOG_NAME
from .train import TrainConfig, pretrain

__all__ = ["build", "install", "portable_config", "read_log", "recipe", "recipe_names", "summary", "training_record"]

# The real-image probe logged while the shipped weights train, when the data is at hand (numbers only; the
# recipe is fixed beforehand and never picked by these two images).
PROBE_DATA = "brain_tumor_mri/study1"
PROBE_CONTRASTS = ("T1prereg", "FLAIRreg")


def recipe_names() -> list[str]:
    """Every shipped name that has a committed recipe."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def recipe(name: str, out: str | Path, profile: str = "cpu") -> TrainConfig:
    """The committed training config of shipped weights ``name`` for ``profile``, writing its run into ``out``.

    A recipe file holds the ``cpu`` run (what ``make weights`` trains) and, under ``"profiles"``, the settings
    each other profile changes (``gpu``: the paper-scale run of ``make gpu-weights``).
    """
    name = ALIASES.get(name, name)
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no recipe {path.name} in {WEIGHTS_DIR}; known: {', '.join(recipe_names())}")
    fields: dict[str, Any] = json.loads(path.read_text())
    profiles = fields.pop("profiles", {})
    if profile != "cpu":
        if profile not in profiles:
            raise ValueError(f"profile: recipe {path.name} has no {profile!r} settings (it has: cpu"
                             f"{''.join(', ' + p for p in profiles)})")
        fields.update(profiles[profile])
    return TrainConfig(**{**fields, "out": Path(out)})


def read_log(name: str) -> list[dict[str, str]]:
    """The training log (loss and probe columns) of shipped weights ``name``, as rows of strings."""
    name = ALIASES.get(name, name)
    path = WEIGHTS_DIR / f"{name}.log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no training log {path.name} in {WEIGHTS_DIR}; build it with "
                                f"`python -m synthlab.shipped build {name}`")
    return read_csv_log(path)


def summary(name: str) -> dict[str, Any]:
    """What :func:`~synthlab.train.pretrain` returned when the shipped weights ``name`` were trained: the name to
    load them by, final loss, steps, seconds, the device they were trained on and the last probe's numbers."""
    payload = load_checkpoint(name)
    return {"checkpoint": name, "final_loss": payload["loss"], "steps": payload["step"],
            "seconds": payload["seconds"], "device": _trained_on(payload), "probe": payload.get("probe")}


def _trained_on(payload: dict[str, Any]) -> str:
    """The kind of device a checkpoint was trained on (``cpu``, ``cuda``): runs record ``cuda:0`` or ``cuda``."""
    return torch.device(payload.get("recipe", {}).get("device", "cpu")).type


def training_record(name: str) -> dict[str, Any]:
    """How shipped weights ``name`` trained, read from their committed log and checkpoint: steps, minutes and
    device; the loss over the first and last logged quarter (at most 25 rows each); each column of the
    objective's own task (:attr:`~synthlab.losses.base.Objective.own_task`) and the real-image match rate at the
    first and last probed step (the first is the untrained network)."""
    name = ALIASES.get(name, name)
    payload, rows = load_checkpoint(name), read_log(name)
    objective = payload["config"]["objective"]
    losses = [float(row["loss"]) for row in rows if row.get("loss")]
    if not losses:
        raise ValueError(f"{name}: its training log holds no loss")
    window = max(1, min(25, len(losses) // 4))
    probed = [row for row in rows if row.get("synth_match")]
    first, last = (probed[0], probed[-1]) if probed else ({}, {})
    own_task = [{"column": column, "measures": measures, "start": float(first[column]), "end": float(last[column])}
                for column, measures in OBJECTIVES[objective][0].own_task if first.get(column) and last.get(column)]
    real = ({"start": float(first["real_match"]), "end": float(last["real_match"])}
            if first.get("real_match") and last.get("real_match") else None)
    recipe_made = payload.get("recipe", {})
    return {"name": name, "objective": objective, "dim": payload["config"]["dim"], "steps": payload["step"],
            "minutes": payload["seconds"] / 60, "device": _trained_on(payload),
            "profile": recipe_made.get("profile", "cpu"),
            "loss": {"first": sum(losses[:window]) / window, "last": sum(losses[-window:]) / window,
                     "window": window},
            "probed_steps": [int(float(first.get("step", 0))), int(float(last.get("step", 0)))] if probed else [],
            "own_task": own_task, "real_match": real}


def build(name: str, runs: str | Path = "runs/weights", resume: bool = False, probe_data: str | None = None,
          profile: str = "cpu") -> Path:
    """Train ``name`` from its recipe for ``profile`` (resuming a killed run with ``resume``) and install the slim
    checkpoint."""
    name = ALIASES.get(name, name)
    config = recipe(name, Path(runs) / f"{name}-{profile}", profile)
    return install(name, dataclasses.replace(config, resume=resume), probe_data, profile)


def install(name: str, config: TrainConfig, probe_data: str | None = None, profile: str = "cpu") -> Path:
    """Run ``config`` (probed against ``probe_data`` when it is at hand) and install its network as ``name``.

    Without ``config.resume`` the run folder is emptied first (it holds only this run, never the weights).
    """
    if not config.resume:
        shutil.rmtree(config.out, ignore_errors=True)
    probe = None
    if config.probe_every:
        try:
            probe = TrainingProbe.for_run(config, probe_data, PROBE_CONTRASTS)
        except FileNotFoundError:
            probe = TrainingProbe.for_run(config)
    summary = pretrain(config, probe=probe)
    full = load_checkpoint(Path(config.out) / CHECKPOINT_NAME)
    slim = {key: full[key] for key in ("format", "config", "model_config", "model", "feature_source", "step",
                                       "seconds", "loss")}
    slim["config"] = portable_config(slim["config"])
    # Half precision halves the file (the anatomix preset: 12 MB, not 24); loading casts back to float32.
    slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in slim["model"].items()}
    slim["probe"] = summary["probe"]
    slim["recipe"] = {"name": name, "profile": profile, "device": summary["device"], "torch": str(torch.__version__)}
    target = save_checkpoint(WEIGHTS_DIR / f"{name}.pt", slim)
    shutil.copyfile(Path(config.out) / LOG_NAME, WEIGHTS_DIR / f"{name}.log.csv")
    return target


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run config as shipped: no run folder, and data sets named as a recipe names them (relative to the data
    root or synthlab's cache, ``icbm152/t1.nii.gz``), so no checkpoint carries the folders of the machine that
    trained it."""
    portable = {**config, "out": None, "resume": False}
    for key in ("data", "labels"):
        if portable.get(key):
            portable[key] = data_name(portable[key])
    if isinstance(portable.get("synth"), dict) and portable["synth"].get("labels"):
        portable["synth"] = {**portable["synth"], "labels": data_name(portable["synth"]["labels"])}
    return portable


def _build_all(names: list[str], args: argparse.Namespace) -> int:
    """Build several recipes side by side, ``args.jobs`` at a time, each in its own process (a GPU runs a few
    small trainings at once faster than one after another); each run's output goes to ``RUNS/NAME-PROFILE.out``."""
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    pending, running, failed = list(names), {}, []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            command = [sys.executable, "-m", "synthlab.shipped", "build", name, "--runs", str(runs), "--profile",
                       args.profile, "--probe-data", args.probe_data, *(["--resume"] if args.resume else [])]
            handle = (runs / f"{name}-{args.profile}.out").open("w")
            running[name] = (subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT), handle)
        time.sleep(1)
        for name, (process, handle) in list(running.items()):
            if process.poll() is None:
                continue
            handle.close()
            del running[name]
            if process.returncode:
                failed.append(name)
            else:
                print(f"built {name} ({args.profile})", flush=True)
    print(f"\n{'name':<22}{'profile':>8}{'steps':>7}{'minutes':>9}{'loss':>9}{'real_match':>12}")
    for name in names:
        if name in failed:
            print(f"{name:<22} FAILED: see {runs / (name + '-' + args.profile + '.out')}")
            continue
        done = summary(name)
        probe = done["probe"] or {}
        print(f"{name:<22}{args.profile:>8}{done['steps']:>7}{done['seconds'] / 60:>9.1f}{done['final_loss']:>9.3f}"
              f"{probe.get('real_match', float('nan')):>12.3f}")
    built = [n for n in names if n not in failed]
    print("\nto commit: git add " + " ".join(f"synthlab/weights/{n}.pt synthlab/weights/{n}.log.csv" for n in built))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m synthlab.shipped", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="shipped names, their aliases and whether the weights are installed")
    b = sub.add_parser("build", help="train shipped weights from their committed recipe")
    b.add_argument("names", nargs="+", help="shipped names (or 'all')")
    b.add_argument("--runs", default="runs/weights", help="folder for the full training runs")
    b.add_argument("--resume", action="store_true", help="continue killed runs exactly")
    b.add_argument("--profile", default="cpu", choices=("cpu", "gpu"),
                   help="the recipe's cpu run (make weights) or its paper-scale gpu run (make gpu-weights)")
    b.add_argument("--jobs", type=int, default=1, help="recipes trained side by side, each in its own process")
    b.add_argument("--probe-data", default=PROBE_DATA,
                   help="co-registered folder for the real-image probe column of the log (skipped if absent)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in recipe_names():
                state = "installed" if (WEIGHTS_DIR / f"{name}.pt").is_file() else "not built"
                aliases = [a for a, target in ALIASES.items() if target == name]
                print(f"{name:<22} {state}{'  (= ' + ', '.join(aliases) + ')' if aliases else ''}")
            return 0
        names = recipe_names() if args.names == ["all"] else [ALIASES.get(n, n) for n in args.names]
        for name in names:  # every recipe must build before anything trains
            recipe(name, Path(args.runs) / name, args.profile)
        if args.jobs > 1:
            return _build_all(names, args)
        for name in names:
            print(f"built {build(name, args.runs, args.resume, args.probe_data, args.profile)}")
        return 0
    except USER_ERRORS as err:
        return input_error("synthlab.shipped", err)


if __name__ == "__main__":
    sys.exit(main())
