"""The settings ``eval-seg --tune`` tries, and how a grid grows past a best value at its end.

A fair few-shot comparison gives each arm the learning rate that suits it, chosen on validation cases
(:func:`synthlab.eval_seg.evaluate_segmentation` runs the trials); this module only says which settings to try
and prints what was tried.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["FINETUNE_LRS", "GRID_EXTENSIONS", "LR_LADDER", "SCRATCH_LRS", "format_tuning", "grid_extension",
           "tuning_choices"]


def format_tuning(report: dict[str, Any]) -> str:
    """Every setting ``tune`` tried, per arm, with its validation Dice; the chosen one marked with ``*``."""
    tuning = report["settings"].get("tuning")
    if not tuning:
        return "not tuned: the learning rates were given"
    lines = []
    for arm, row in tuning.items():
        lines.append(f"{arm}, validation Dice (mean of {len(row['seeds'])} seeds):")
        for choice in row["choices"]:
            setting = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in choice.items() if k != "val_dice")
            mark = "*" if choice == row["chosen"] else " "
            lines.append(f"  {mark} {setting:<56} {choice['val_dice']:.3f}")
    return "\n".join(lines)


# The learning rates (and, for the pretrained arm, the share of steps with its backbone frozen) that ``tune``
# tries on the validation cases; each arm gets its best, so neither arm is handicapped by the other's setting.
# Each grid reaches a step past the values chosen so far (scratch 3e-2, fine-tuning 1e-2 on 2026-11-30), so a
# choice at the edge of a grid is not taken for an optimum.
SCRATCH_LRS = (3e-3, 1e-2, 3e-2, 1e-1)
FINETUNE_LRS = (1e-3, 3e-3, 1e-2, 3e-2)


# A best value at the end of its grid is no optimum: tuning then tries one more rung of this ladder past that
# end, at most GRID_EXTENSIONS times per arm (the grids above are rungs of it; its ends bound the search).
LR_LADDER = tuple(float(f"{mantissa}e{exponent}") for exponent in range(-5, 1) for mantissa in (1, 3))[:-1]
GRID_EXTENSIONS = 2


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def grid_extension(arm: str, scored: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The setting to try next when the best of ``scored`` (choices with their ``val_dice``) has the smallest or
    largest learning rate tried with its other settings: the next rung of :data:`LR_LADDER` past it. None when
    the best lies inside its grid, at an end of the ladder, or the rung was tried."""
    field = "lr_scratch" if arm == "scratch" else "lr_finetune"
    best = max(scored, key=lambda row: row["val_dice"])
    others = _without(best, field, "val_dice")
    rates = sorted(row[field] for row in scored if _without(row, field, "val_dice") == others)
    if len(rates) < 2 or rates[0] < best[field] < rates[-1]:
        return None
    rung = min(range(len(LR_LADDER)), key=lambda i: abs(math.log(LR_LADDER[i] / best[field])))
    rung += 1 if best[field] == rates[-1] else -1
    if not 0 <= rung < len(LR_LADDER) or LR_LADDER[rung] in rates:
        return None
    return {k: LR_LADDER[rung] if k == field else v for k, v in best.items() if k != "val_dice"}


def tuning_choices(arm: str, heads: Sequence[str] = ("random",)) -> list[dict[str, Any]]:
    """The settings ``tune`` tries for ``arm`` ("scratch" or "pretrained"), for each head start in ``heads``.

    A random head also tries a frozen first quarter for the pretrained arm (a head warm-up); a fitted head
    (``"probe"``, LP-FT) needs none. With the default heads the choices name no head, as before heads were tuned.
    """
    field = "head_scratch" if arm == "scratch" else "head_finetune"
    choices: list[dict[str, Any]] = []
    for head in heads:
        named = {} if tuple(heads) == ("random",) else {field: head}
        if arm == "scratch":
            choices += [{"lr_scratch": lr, **named} for lr in SCRATCH_LRS]
        else:
            frozen = (0.0, 0.25) if head == "random" else (0.0,)
            choices += [{"lr_finetune": lr, "freeze_fraction": share, **named} for share in frozen
                        for lr in FINETUNE_LRS]
    return choices
