"""The interface every pretraining objective implements, and the input checks they share.

An objective is an ``nn.Module`` that owns its heads (projection MLPs, an EMA teacher) and is optimised
together with the backbone. The backbone is passed to every call rather than stored, so a checkpoint holds it
once and the training loop may pass a DistributedDataParallel wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["SCHEDULES", "LossOutput", "Objective", "OptimSettings"]

SCHEDULES = ("cosine", "steps", "constant")  # see synthlab.train.lr_factor

@dataclass(frozen=True)
class OptimSettings:
    """How an objective's authors optimise it: the defaults of a run's optimiser fields (``TrainConfig``).

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        amsgrad: AdamW's AMSGrad variant.
        grad_clip: global gradient-norm clip, None for none.
        schedule: ``"cosine"`` (warm-up, then cosine to ``min_lr_fraction``), ``"steps"`` (anatomix: five equal
            stages at 1.0, 0.8, 0.6, 0.4, 0.2) or ``"constant"``.
        warmup_fraction: share of the steps with a linear warm-up (cosine schedule).
        min_lr_fraction: the cosine ends at ``lr * min_lr_fraction``.
        init: ``"torch"`` (PyTorch's default initialisation) or ``"kaiming"`` (anatomix: Kaiming-normal weights,
            batch-norm scales from N(1, 0.02)).
    """

    lr: float
    weight_decay: float
    amsgrad: bool = False
    grad_clip: float | None = None
    schedule: str = "cosine"
    warmup_fraction: float = 0.0
    min_lr_fraction: float = 0.0
    init: str = "torch"


@dataclass
class LossOutput:
    """A scalar loss to backpropagate and its named parts as floats, for the CSV log."""

    loss: torch.Tensor
    logs: dict[str, float]


class Objective(nn.Module):
    """Base class of the pretraining objectives.

    Subclasses set ``name``, ``requires_labels``, ``optim`` (their authors' optimiser settings) and
    ``feature_source`` (which features of the trained network the method is meant to give) and implement
    :meth:`forward`.
    """

    name: str = "objective"
    requires_labels: bool = False
    n_views: int = 2  # renderings of each label map the objective uses; the engine draws no more than these
    optim: OptimSettings = OptimSettings(lr=2e-4, weight_decay=0.0)
    # "output": the per-voxel output features; "encoder": the encoder's levels (encoder-only pretraining)
    feature_source: str = "output"
    # The training-log columns that say whether it learns its own paper's task, each with what it measures;
    # a column ending in "_chance" or "_constant" is the level that task's guessing reaches.
    own_task: tuple[tuple[str, str], ...] = ()

    def __init__(self, dim: int, net_dim: int | None = None):
        super().__init__()
        if net_dim is not None and int(net_dim) != dim:
            raise ValueError(f"dim={dim} but the network is {net_dim}D")
        self.dim = dim

    def forward(self, net: nn.Module, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> LossOutput:
        """Loss for one batch.

        Args:
            net: the backbone (a :class:`~synthlab.nets.UNet`, possibly wrapped by DDP).
            views: ``(B, V, 1, *size)`` images in [0, 1]; the V views of a sample share one label map.
            labels: ``(B, 1, *size)`` int64 label maps, or None for real unlabeled volumes.
            generator: source of every random draw the objective makes (voxel samples, crop positions).
        """
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimiser step (e.g. to move an EMA teacher); nothing by default."""

    def probe_metrics(self, net: nn.Module, views: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """The objective's own check that it learns what its paper trains, on held-out ``views``
        ``(B, V, 1, *size)`` (the training probe's fixed batch); none by default."""
        return {}

    def check_batch(self, views: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Raise a ValueError naming the argument if the batch does not fit this objective."""
        if views.ndim != self.dim + 3 or views.shape[2] != 1:
            raise ValueError(f"views must be (B, V, 1, *size) with {self.dim} spatial axes, "
                             f"got shape {tuple(views.shape)}")
        if labels is None:
            if self.requires_labels:
                raise ValueError(f"objective {self.name!r} needs label maps, but labels is None")
            return
        expected = (views.shape[0], 1, *views.shape[3:])
        if tuple(labels.shape) != expected:
            raise ValueError(f"labels must have shape {expected} to match views, got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point:
            raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
