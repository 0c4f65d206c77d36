"""The evaluation numbers, each defined once: Dice, endpoint error, folding, and mean/SD/SEM over seeds.

Registration and segmentation report the same Dice, so a 0.8 means the same thing in both tables. Pure functions
of tensors and lists; imports only :mod:`synthlab.spatial` (for the Jacobian).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from .spatial import jacobian_determinant

__all__ = ["bootstrap_interval", "dice_per_label", "endpoint_error", "folding_percent", "mean_dice", "summarize"]


def dice_per_label(prediction: torch.Tensor, target: torch.Tensor,
                   labels: Sequence[int] | None = None) -> dict[int, float]:
    """Hard Dice per label (default: the target's labels but 0); a label absent from both maps scores 1.

    Absent from both means nothing to disagree on; a dict keeps each score next to the label it belongs to.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"label maps differ in shape: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    if labels is None:
        labels = sorted(set(torch.unique(target).tolist()) - {0})
    scores = {}
    for label in labels:
        a, b = prediction == label, target == label
        total = int(a.sum() + b.sum())
        scores[int(label)] = 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
    return scores


def mean_dice(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean of :func:`dice_per_label` over the target's foreground labels (0 when it has none)."""
    scores = dice_per_label(prediction, target)
    return sum(scores.values()) / max(1, len(scores))


def endpoint_error(estimate: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None,
                   spacing: Sequence[float] | None = None) -> float:
    """Mean distance between two displacements ``(dim, *size)`` inside ``mask``; in mm given ``spacing``."""
    if estimate.shape != truth.shape:
        raise ValueError(f"displacements differ in shape: {tuple(estimate.shape)} vs {tuple(truth.shape)}")
    difference = estimate - truth
    if spacing is not None:
        scale = torch.tensor(spacing, dtype=difference.dtype, device=difference.device)
        difference = difference * scale.view(-1, *([1] * (difference.ndim - 1)))
    distance = difference.norm(dim=0)
    if mask is not None:
        if not mask.any():
            raise ValueError("mask selects no voxels")
        distance = distance[mask.bool()]
    return float(distance.mean())


def folding_percent(displacement: torch.Tensor) -> float:
    """Percentage of voxels where ``x + u(x)`` folds (Jacobian determinant <= 0)."""
    return 100.0 * float((jacobian_determinant(displacement[None]) <= 0).float().mean())


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and standard error of per-seed values.

    ``std`` and ``sem`` are None for a single value: one seed cannot estimate a spread, and a 0 would claim
    certainty it does not have.
    """
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std,
            "sem": std / math.sqrt(len(values)) if std is not None else None}


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-seed values (None below five values).

    It makes no normal assumption, which matters for few-shot gains: one bad seed (a run stuck on one label)
    makes their distribution lopsided. Below five values the resamples are too few and too alike to mean an
    interval (three values have ten distinct resamples). Seeded, so a results file does not change between two
    writes.
    """
    if len(values) < 5:
        return None
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    data = torch.tensor(list(values), dtype=torch.float64)
    picks = torch.randint(len(data), (resamples, len(data)), generator=torch.Generator().manual_seed(seed))
    means = data[picks].mean(1)
    low, high = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(low), float(high)
