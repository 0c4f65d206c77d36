"""The few-shot experiment behind ``synthlab eval-seg``: splits, arms, seeds, and one JSON of results.

Dice swings with the training subject, so each seed trains on different subjects against a fixed test list
(:func:`split_subjects`), and results carry standard errors and the paired per-seed gain over scratch (a gain
is judged on per-seed differences, never on two unpaired means). Training one arm is
:func:`synthlab.segment.fit_arm`.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .augment import AugmentConfig
from .checkpoint import load_backbone, random_backbone
from .data import (
    Case,
    DataWarning,
    data_name,
    declared_labels,
    label_counts,
    load_msd,
    relabel,
    resolve_data,
    warn_stray_labels,
)
from .dims import check_dim
from .dist import resolve_device
from .journal import Journal
from .metrics import bootstrap_interval, dice_per_label, summarize
from .nets import UNet
from .progress import progress_bar
from .segment import ARMS, HEAD_INITS, FineTuneConfig, PreparedCase, fit_arm, predict, prepare_cases, stable_seed
from .tuning import GRID_EXTENSIONS, grid_extension, tuning_choices
from .workers import auto_workers, map_jobs

__all__ = ["BACKGROUND_DICE", "SPLIT_SEED", "evaluate_segmentation", "format_segmentation", "paired_gain",
           "split_subjects"]

SPLIT_SEED = 0  # fixes the test list and the order training subjects are taken in, whatever `seeds` is


def _case_order(n_cases: int) -> list[int]:
    """The fixed permutation (``SPLIT_SEED``) behind the test list and the order of training subjects."""
    return torch.randperm(n_cases, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()


def split_subjects(n_cases: int, shots: int, seed: int, max_test: int | None, stride: int, val_cases: int = 0,
                   validate: bool = False) -> tuple[list[int], list[int]]:
    """Indices of the training subjects and of the cases scored, for one seed.

    With ``max_test`` the test list is the first ``max_test`` cases of a fixed order (the same for every arm
    and seed), the next ``val_cases`` are the validation list (where learning rates are chosen, never tested
    on) and the training pool is the rest; without it the pool is every case and each seed is tested on all
    cases it did not train on. Seed ``s`` trains on pool entries ``s * stride``, ``s * stride + 1``, ...
    (wrapping around): seeds use different subjects while ``seeds * stride`` fits in the pool, and with
    ``stride`` the largest shot count a seed's smaller training sets nest in its larger ones. ``validate``
    scores the validation list instead of the test list.
    """
    order = _case_order(n_cases)
    if val_cases and max_test is None:
        raise ValueError("val_cases needs max_test: validation cases must be kept apart from a fixed test list")
    held = (max_test or 0) + val_cases
    test, val, pool = order[:max_test or 0], order[max_test or 0:held], order[held:] if max_test else order
    most = len(pool) if max_test is not None else n_cases - 1
    if not 1 <= shots <= most:
        raise ValueError(f"shots must lie in 1..{most} for {n_cases} cases with max_test={max_test} and "
                         f"val_cases={val_cases}, got {shots}")
    train = [pool[(seed * stride + j) % len(pool)] for j in range(shots)]
    if validate:
        return train, val
    return train, test if max_test is not None else [i for i in order if i not in train]


def _numbered_cases(folder: Path) -> tuple[list[Case], list[int], dict[int, str] | None]:
    """The cases of an MSD folder with foreground labels numbered 1..n, the original ids and their names.

    The ids are those ``dataset.json`` declares and some map holds (undeclared values are refused by
    :func:`load_msd`; a declared id no map holds is dropped with a warning), else the values present, with a
    warning for any covering a handful of voxels.
    """
    names = declared_labels(folder / "dataset.json")
    cases = load_msd(folder)
    maps = [case.label for case in cases if case.label is not None]
    if len(maps) < len(cases):
        raise ValueError(f"data: every case in {folder / 'dataset.json'} needs a label map for segmentation")
    counts = label_counts(maps)
    ids = [i for i in names if i != 0 and counts[i]] if names is not None else sorted(i for i in counts if i != 0)
    if not ids:
        raise ValueError(f"data: {folder} holds only background labels")
    if names is not None:
        for i in sorted(set(names) - set(counts) - {0}):  # scored, it would earn Dice 1 for predicting nothing
            warnings.warn(f"label {i} ({names[i]!r}) is declared in {folder / 'dataset.json'} but occurs in no "
                          "label map; it is not scored", DataWarning, stacklevel=2)
    else:
        warn_stray_labels(counts, folder)
    return [replace(case, label=relabel(label, ids)) for case, label in zip(cases, maps, strict=True)], ids, names


def paired_gain(pretrained: dict[str, Any], scratch: dict[str, Any]) -> dict[str, Any]:
    """Per shot count, pretrained - scratch seed by seed (same subjects, same draws), with mean, SEM and a
    bootstrap 95 % interval of the mean (``ci95``)."""
    gain = {}
    for key, entry in pretrained.items():
        if entry["subjects"] != scratch[key]["subjects"]:
            raise ValueError(f"{key} shot(s): the two arms trained on different subjects; no paired gain exists")
        diffs = [p - s for p, s in zip(entry["per_seed"], scratch[key]["per_seed"], strict=True)]
        gain[key] = {**summarize(diffs), "ci95": bootstrap_interval(diffs), "per_seed": diffs}
    return gain


@dataclass(frozen=True)
class _Study:
    """What every run of one study shares; sent once to each worker process (see :mod:`synthlab.workers`)."""

    cases: list[PreparedCase]
    labels: list[int]
    template: UNet  # the arms' architecture; with ``pretrained`` also the checkpoint's weights
    pretrained: bool
    max_test: int | None
    stride: int  # the largest shot count: smaller training sets nest in larger ones
    held: int  # validation cases kept apart for tuning
    device: torch.device
    progress: bool  # per-run bars: only when the runs go one after another in this process


@dataclass(frozen=True)
class _Run:
    """One training run: a pure function of these fields and the study."""

    arm: str
    shots: int
    seed: int
    budget: FineTuneConfig
    validate: bool = False  # score the validation cases (tuning) instead of the test list


def _run_key(run: _Run) -> str:
    return json.dumps(asdict(run), sort_keys=True)


def _train_and_score(study: _Study, run: _Run) -> tuple[torch.Tensor, list[int]]:
    """Train ``run.arm`` on its seed's subjects; return its Dice ``(n_scored, n_labels)`` and the subjects.

    Everything random is keyed by ``(seed, shots)``: the scratch initialisation, the head, the batches and their
    augmentation, so each arm of a seed sees the same subjects and draws.
    """
    split = split_subjects(len(study.cases), run.shots, run.seed, study.max_test, study.stride, study.held,
                           run.validate)
    uses_checkpoint = study.pretrained and run.arm in ("pretrained", "probe")
    source = copy.deepcopy(study.template if uses_checkpoint
                           else random_backbone(study.template.config, stable_seed("init", run.seed, run.shots)))
    classes = range(1, len(study.labels) + 1)  # the cases carry labels numbered 1..n (see _numbered_cases)
    model = fit_arm(run.arm, source, study.cases, split[0], len(study.labels) + 1, (run.seed, run.shots),
                    run.budget, study.device, study.progress)
    scores = [torch.tensor(list(dice_per_label(predict(model, study.cases[i].image) * study.cases[i].valid,
                                               study.cases[i].label, classes).values()), dtype=torch.float64)
              for i in split[1]]
    return torch.stack(scores), split[0]


BACKGROUND_DICE = 0.01  # a run whose mean test Dice is below this predicts (almost) only background


def format_segmentation(report: dict[str, Any], gains: dict[str, dict[str, Any]] | None = None) -> str:
    """The arms' Dice per shot count as a plain table that says what its numbers can mean.

    Mean ± standard error over seeds, and no ± for a single seed (one run estimates no spread); the number of
    seeds stuck at all-background is named, since such a seed is a failed run, not a low score; a paired gain
    carries its bootstrap 95 % interval where it has one. ``report`` maps arm names to their entries (an
    :func:`evaluate_segmentation` report, or several objectives' arms side by side); ``gains`` names several
    paired gains (default: the report's own ``gain``).
    """
    arms = [arm for arm, entry in report.items() if arm not in ("settings", "gain", "provenance") and entry]
    if not arms:
        return "no arm was run"
    shots = list(report[arms[0]])
    gains = gains if gains is not None else ({"gain (paired)": report["gain"]} if report.get("gain") else {})

    def cell(entry: dict[str, Any], signed: bool = False) -> str:
        mean = f"{entry['mean']:+.3f}" if signed else f"{entry['mean']:.3f}"
        spread = f" ± {entry['sem']:.3f}" if entry.get("sem") is not None else " (1 seed)"
        stuck = sum(value < BACKGROUND_DICE for value in entry.get("per_seed", [])) if not signed else 0
        interval = entry.get("ci95")
        extra = (f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if signed and interval
                 else f" {stuck}/{len(entry['per_seed'])} bg" if stuck else "")
        return mean + spread + extra

    rows = [(arm, [cell(report[arm][k]) for k in shots]) for arm in arms]
    rows += [(name, [cell(gain[k], True) for k in shots]) for name, gain in gains.items()]
    width = max(26, *(len(text) + 2 for _, cells in rows for text in cells))  # columns never run together
    lines = ["Dice, mean ± SE over seeds" + "".join(f"{f'{k} shot(s)':>{width}}" for k in shots)]
    lines += [f"  {name:<24}" + "".join(f"{text:>{width}}" for text in cells) for name, cells in rows]
    if any(sum(v < BACKGROUND_DICE for v in report[arm][k].get("per_seed", [])) for arm in arms for k in shots):
        lines.append(f"  n/m bg: n of m seeds predict all background (Dice < {BACKGROUND_DICE}): failed runs")
    return "\n".join(lines)


def evaluate_segmentation(data: str | Path, checkpoint: str = "none", shots: Sequence[int] = (1, 3, 5),
                          seeds: int = 3, steps: int = FineTuneConfig.steps, dim: int = 3, preset: str | None = None,
                          max_test: int | None = None, device: str | torch.device = "auto", *,
                          lr_scratch: float = FineTuneConfig.lr_scratch,
                          lr_finetune: float = FineTuneConfig.lr_finetune,
                          lr_probe: float = FineTuneConfig.lr_probe,
                          freeze_fraction: float = FineTuneConfig.freeze_fraction,
                          head_scratch: str = FineTuneConfig.head_scratch,
                          head_finetune: str = FineTuneConfig.head_finetune, tune_heads: Sequence[str] = ("random",),
                          probe_steps: int = FineTuneConfig.probe_steps, batch_size: int | None = None,
                          augment: AugmentConfig | None = None, arms: Sequence[str] = ARMS, tune: bool = False,
                          val_cases: int = 10, tune_seeds: int = 2, hold_validation: bool = False,
                          workers: int | None = 1,
                          journal: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Few-shot Dice of every arm for every shot count, over ``seeds`` seeds, as a JSON-able dict.

    Args:
        data: MSD folder or a name under the data root (e.g. ``"hippocampus"``).
        checkpoint: pretrained checkpoint (path or shipped name), or ``"none"``: then the ``pretrained`` arm
            and ``gain`` are None (a "pretrained" arm without pretraining would only repeat ``scratch``) and
            the probe reads the random features of the scratch initialisation.
        shots: training subjects per run; seeds: runs per shot count; steps: optimiser steps per run.
        dim: 2 (train on slices, predict slice by slice) or 3 (whole padded volumes).
        preset: architecture for ``checkpoint="none"`` (default: the active profile's preset for ``dim``).
        max_test: test on a fixed list of this many cases (else on every case a seed did not train on).
        lr_scratch, lr_finetune, lr_probe, freeze_fraction, head_scratch, head_finetune, probe_steps: the
            budget (:class:`FineTuneConfig`).
        batch_size: samples per step (default 16 slices in 2D, 2 volumes in 3D); augment: its ranges.
        arms: which of :data:`ARMS` to run.
        tune: first choose the scratch arm's learning rate and the pretrained arm's learning rate and frozen
            warm-up (and each arm's head start among ``tune_heads``) from :func:`tuning_choices`, by mean Dice on
            ``val_cases``
            cases kept apart from the test list (``tune_seeds`` seeds after the evaluated ones, the smallest
            shot count); a best learning rate at the end of its grid is followed one step further out
            (:func:`grid_extension`, up to :data:`GRID_EXTENSIONS` times).
        hold_validation: keep the ``val_cases`` out of training without tuning too, so each seed trains the
            subjects it trains in a tuned study (a tuned study rerun with its chosen settings and more seeds).
        workers: processes the runs are spread over (:func:`~synthlab.workers.map_jobs`; None: every core,
            :func:`~synthlab.workers.auto_workers`). The results do not depend on it.
        journal: a file that keeps every finished run (:class:`~synthlab.journal.Journal`): a killed study called
            again with the same journal trains only the runs it had not finished, and reports what an
            uninterrupted one does.
    Returns:
        ``{"settings", <arm>..., "gain"}``. An arm maps each shot count (a string) to mean/std/sem over seeds
        of the mean test Dice, per-label means, per-seed values, and each seed's training subjects and
        ``n_test``; it is None when not run. ``gain`` holds the paired per-seed difference pretrained -
        scratch with its mean and standard error; ``settings["tuning"]`` every validation score.
    """
    started = time.perf_counter()
    dim, shots = check_dim(dim), [int(k) for k in shots]
    for name, bad in (("shots", not shots or min(shots) < 1), ("seeds", seeds < 1), ("steps", steps < 0),
                      ("max_test", max_test is not None and max_test < 1), ("val_cases", val_cases < 0),
                      ("tune_seeds", tune_seeds < 1)):
        if bad:
            raise ValueError(f"{name} is out of range: shots={shots}, seeds={seeds}, steps={steps}, "
                             f"max_test={max_test}, val_cases={val_cases}, tune_seeds={tune_seeds}")
    if unknown := set(arms) - set(ARMS):
        raise ValueError(f"arms must be among {ARMS}, got {sorted(unknown)}")
    if not tune_heads or set(tune_heads) - set(HEAD_INITS):
        raise ValueError(f"tune_heads must name some of {HEAD_INITS}, got {list(tune_heads)}")
    budget = FineTuneConfig(steps=steps, batch_size=batch_size, lr_scratch=lr_scratch, lr_finetune=lr_finetune,
                            lr_probe=lr_probe, freeze_fraction=freeze_fraction, head_scratch=head_scratch,
                            head_finetune=head_finetune, probe_steps=probe_steps, augment=augment or AugmentConfig())
    template = load_backbone(checkpoint, dim, preset)  # the arms' architecture (and, with a checkpoint, weights)
    pretrained = None if checkpoint == "none" else template
    arms = [arm for arm in arms if pretrained is not None or arm != "pretrained"]
    folder = resolve_data(data)
    cases, labels, names = _numbered_cases(folder)
    cases, grid = prepare_cases(cases, template.downsample_factor, dim)
    held = val_cases if tune or hold_validation else 0
    if max_test is not None and max_test + held >= len(cases):
        raise ValueError(f"max_test={max_test} and {held} validation cases leave no training case among the "
                         f"{len(cases)} in {folder}")
    if (tune or hold_validation) and max_test is None:
        raise ValueError("tune and hold_validation need max_test: the validation cases must be kept apart from a "
                         "fixed test list")
    for k in shots:  # fail on a bad shot count before any training
        split_subjects(len(cases), k, 0, max_test, max(shots), held)
    device = resolve_device(device)
    workers = auto_workers(device) if workers is None else workers
    study = _Study(cases, labels, template, pretrained is not None, max_test, max(shots), held, device,
                   progress and workers == 1)
    weights = float(sum(value.double().sum() for value in template.state_dict().values()
                        if value.is_floating_point()))  # the checkpoint's weights, not only its name
    record = None if journal is None else Journal(Path(journal), {
        "data": str(folder), "n_cases": len(cases), "checkpoint": checkpoint, "net_config": dict(template.config),
        "weights_sum": weights, "max_test": max_test, "held": held, "stride": max(shots)})

    def run_all(runs: list[_Run], desc: str) -> list[tuple[torch.Tensor, list[int]]]:
        """Every run's result: from the journal where it is there, else trained now (and journaled)."""
        known = record.runs if record is not None else {}
        todo = [run for run in runs if _run_key(run) not in known]
        if record is not None:
            record.resumed += len(runs) - len(todo)
        bar = progress_bar(len(runs), desc, enabled=progress, initial=len(runs) - len(todo))

        def finished(index: int, result: tuple[torch.Tensor, list[int]]) -> None:
            if record is not None:
                record.add(_run_key(todo[index]), result)
            bar.update()

        fresh = dict(zip(map(_run_key, todo), map_jobs(_train_and_score, todo, study, workers, on_done=finished),
                         strict=True))
        bar.close()
        return [known[key] if key in known else fresh[key] for key in map(_run_key, runs)]

    tuning: dict[str, Any] = {}
    if tune:
        # Seeds after the evaluated ones: other training subjects, initialisations and draws, so the choice is
        # not fitted to the very runs it is then scored on.
        tune_range = range(seeds, seeds + tune_seeds)
        grids = [(arm, tuning_choices(arm, tune_heads)) for arm in ("scratch", "pretrained") if arm in arms]
        trials = [_Run(arm, min(shots), seed, replace(budget, **choice), validate=True)
                  for arm, choices in grids for choice in choices for seed in tune_range]
        scores = iter(run_all(trials, "eval-seg tuning"))
        scored_by_arm = {arm: [{**choice, "val_dice": statistics.fmean(float(next(scores)[0].mean())
                                                                       for _ in tune_range)} for choice in choices]
                         for arm, choices in grids}
        for _ in range(GRID_EXTENSIONS):  # a best value at a grid's end: one more step out, all arms at once
            extra = {arm: choice for arm, rows in scored_by_arm.items()
                     if (choice := grid_extension(arm, rows)) is not None}
            if not extra:
                break
            trials = [_Run(arm, min(shots), seed, replace(budget, **choice), validate=True)
                      for arm, choice in extra.items() for seed in tune_range]
            scores = iter(run_all(trials, "eval-seg tuning, grid extended"))
            for arm, choice in extra.items():
                scored_by_arm[arm].append({**choice, "val_dice": statistics.fmean(float(next(scores)[0].mean())
                                                                                  for _ in tune_range)})
        for arm, _ in grids:
            scored = scored_by_arm[arm]
            best = max(scored, key=lambda row: row["val_dice"])
            budget = replace(budget, **{k: v for k, v in best.items() if k != "val_dice"})
            subjects = [[cases[i].name for i in split_subjects(len(cases), min(shots), seed, max_test, max(shots),
                                                               held, validate=True)[0]] for seed in tune_range]
            tuning[arm] = {"choices": scored, "chosen": best, "seeds": list(tune_range), "subjects": subjects}

    results: dict[str, Any] = {arm: ({} if arm in arms else None) for arm in ARMS}
    runs = [_Run(arm, k, seed, budget) for k in shots for seed in range(seeds) for arm in arms]
    done = dict(zip(runs, run_all(runs, "eval-seg"), strict=True))
    for k in shots:
        raw = {arm: {"per_seed": [], "per_seed_per_label": [], "subjects": [], "n_test": []} for arm in arms}
        for seed in range(seeds):
            for arm in arms:
                scores, train = done[_Run(arm, k, seed, budget)]
                raw[arm]["per_seed"].append(float(scores.mean()))
                raw[arm]["per_seed_per_label"].append(scores.mean(0).tolist())
                raw[arm]["subjects"].append([cases[i].name for i in train])
                raw[arm]["n_test"].append(scores.shape[0])
        for arm in arms:
            per_label = torch.tensor(raw[arm]["per_seed_per_label"]).mean(0).tolist()
            results[arm][str(k)] = {**summarize(raw[arm]["per_seed"]),
                                    "per_label": dict(zip(map(str, labels), per_label, strict=True)),
                                    **raw[arm]}
    both = results["pretrained"] is not None and results["scratch"] is not None
    results["gain"] = paired_gain(results["pretrained"], results["scratch"]) if both else None
    order = _case_order(len(cases))
    settings = {
        "data": data_name(folder), "checkpoint": checkpoint, "dim": dim, "net_config": dict(template.config),
        "shots": shots, "seeds": seeds, "steps": steps, "batch_size": budget.batch(dim),
        "device": str(device), "workers": workers, "lrs": {arm: budget.lr(arm) for arm in arms},
        "freeze_fraction": budget.freeze_fraction, "probe_steps": budget.probe_steps,
        "heads": {arm: budget.head(arm) for arm in arms if arm in ("pretrained", "scratch")},
        "tune_heads": list(tune_heads) if tune else None,
        "tuning": tuning or None,
        "augment": asdict(budget.augment), "labels": labels,
        "label_names": {str(i): names[i] for i in labels} if names is not None else None,
        "grid": list(grid), "n_cases": len(cases),
        "max_test": max_test,
        "test_cases": ([cases[i].name for i in order[:max_test]] if max_test is not None
                       else "every case the seed did not train on"),
        "validation_cases": [cases[i].name for i in order[max_test:max_test + held]] if held else None,
        "probe_backbone": "pretrained" if pretrained is not None else "random (the scratch initialisation)",
        "split_seed": SPLIT_SEED, "seconds": time.perf_counter() - started + (record.earlier if record else 0.0),
        "resumed_runs": record.resumed if record else 0,
    }
    return {"settings": settings, **results}
