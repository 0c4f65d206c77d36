"""Few-shot segmentation: fine-tune a backbone (or probe its frozen features) on a handful of labelled cases.

The arms share budget, augmentations, seeds and data order, so a difference between arms is the pretraining's, not
the draws': ``pretrained`` (checkpoint UNet + 1x1 head, all layers fine-tuned with Dice + CE, optionally after a
warm-up with the backbone frozen) and ``scratch`` (same architecture, random init). The linear probes ask how much
the features alone say: a 1x1 head on every level of the frozen network (``probe``), trained to convergence on the
features of every training voxel, beside the same head on the untrained network's levels (``probe_random``) and on
the raw intensity (``probe_intensity``). This module trains and predicts one arm; the experiment over shots and
seeds behind ``synthlab eval-seg`` is :mod:`synthlab.eval_seg`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, draw_batch
from .configs import setting
from .data import Case, crop_or_pad, normalize_intensity
from .dims import check_dim, conv_fn, from_slices, slice_axis, to_slices
from .nets import LevelFeatures, UNet
from .progress import progress_iter
from .train import lr_factor, train_step

__all__ = ["ARMS", "HEAD_INITS", "PROBE_ARMS", "FineTuneConfig", "Intensity", "PreparedCase", "SegmentationNet",
           "dice_ce_loss", "fit_arm", "fit_probe", "predict", "prepare_cases", "seeded_generator", "stable_seed",
           "train_model"]

ARMS = ("pretrained", "scratch", "probe", "probe_random", "probe_intensity")
PROBE_ARMS = ("probe", "probe_random", "probe_intensity")
# How a fine-tuned arm's 1x1 head starts: uniform random (PyTorch's default), or "probe": first fitted to
# convergence on the frozen network's output, then everything is fine-tuned (linear probing then fine-tuning,
# LP-FT; Kumar et al., ICLR 2022). A random head's first gradients are large and aimless: they push a network
# through the all-background plateau, where a pretrained one can lose a label for good (docs/experiments.md).
HEAD_INITS = ("random", "probe")


@dataclass(frozen=True)
class FineTuneConfig:
    """The budget of one training run, shared by every arm; only the learning rate depends on the arm.

    Short budgets hit a plateau where the net predicts one hippocampus label or none, and the learning rate
    decides whether a run leaves it. Tuned on hippocampus cases outside every test list (tiny 2D, 3 shots,
    600 steps, 2 seeds): scratch Dice 0.25 / 0.67 / 0.69 at 3e-3 / 1e-2 / 3e-2; fine-tuning a (60-step
    SupCon) checkpoint 0.66 and 0.26 at 3e-3, 0.68 and 0.68 at 1e-2. Retune for a much longer budget or a
    different checkpoint (anatomix fine-tunes with 2e-4 for 37,500 steps).
    """

    steps: int = setting(200, "optimiser steps of each fine-tuning run")
    batch_size: int | None = setting(None, "samples per step; unset: 16 slices in 2D, 2 whole volumes in 3D")
    lr_scratch: float = setting(1e-2, "learning rate of the scratch arm")
    lr_finetune: float = setting(1e-2, "learning rate of the fine-tuned (pretrained) arm")
    lr_probe: float = setting(3e-2, "learning rate of the linear probes (Adam, full batch, standardised features)")
    freeze_fraction: float = setting(0.0, "share of the pretrained arm's steps with its backbone frozen (the head "
                                          "warms up first)")
    head_scratch: str = setting("random", "how the scratch arm's head starts: random, or probe (fitted on the "
                                          "frozen network first)", HEAD_INITS)
    head_finetune: str = setting("random", "how the fine-tuned arm's head starts: random, or probe (LP-FT)",
                                 HEAD_INITS)
    probe_steps: int = setting(500, "full-batch steps of the linear probes (they converge; no augmentation)")
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.steps < 0:  # 0 steps is the untrained network, a baseline
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("lr_scratch", "lr_finetune", "lr_probe"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("head_scratch", "head_finetune"):
            if getattr(self, name) not in HEAD_INITS:
                raise ValueError(f"{name} must be one of {HEAD_INITS}, got {getattr(self, name)!r}")
        if not 0 <= self.freeze_fraction < 1 or self.probe_steps < 0:
            raise ValueError(f"freeze_fraction must lie in [0, 1) and probe_steps be >= 0, got "
                             f"{self.freeze_fraction!r} and {self.probe_steps!r}")

    def lr(self, arm: str) -> float:
        return self.lr_probe if arm in PROBE_ARMS else {"pretrained": self.lr_finetune, "scratch": self.lr_scratch}[arm]

    def head(self, arm: str) -> str:
        return {"pretrained": self.head_finetune, "scratch": self.head_scratch}[arm]

    def batch(self, dim: int) -> int:
        return self.batch_size if self.batch_size is not None else {2: 16, 3: 2}[check_dim(dim)]

    def arguments(self) -> dict:
        """The fields as keyword arguments of :func:`synthlab.eval_seg.evaluate_segmentation`, which takes each."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass(frozen=True)
class PreparedCase:
    """One case ready for the network: intensities in [0, 1], padded so the UNet can downsample it."""

    name: str
    image: torch.Tensor  # (X, Y, Z) float
    label: torch.Tensor  # (X, Y, Z) int64
    valid: torch.Tensor  # (X, Y, Z) bool: True inside the original field of view


def prepare_cases(cases: Sequence[Case], multiple: int, dim: int
                  ) -> tuple[list[PreparedCase], tuple[int, ...]]:
    """Normalise intensities and centre-pad every case to one grid whose sides are multiples of ``multiple``.

    Returns the cases and the grid: the largest case rounded up (at least ``2 * multiple``, two bottleneck
    voxels, which reflect padding needs), so nothing is cropped and Dice on the padded grid (predictions
    masked by ``valid``) equals Dice on the original one. In 2D each case's slice axis
    (:func:`~synthlab.dims.slice_axis`) is moved last, where :func:`~synthlab.dims.to_slices` reads it, and is
    never padded.
    """
    if any(case.label is None for case in cases):
        raise ValueError("data: every case needs a label map for segmentation")
    axes = [slice_axis(case.image.spacing, case.image.array.shape) if check_dim(dim) == 2 else 2 for case in cases]
    arrays = [(case.image.array.movedim(axis, -1), case.label.array.movedim(axis, -1))
              for case, axis in zip(cases, axes, strict=True)]
    largest = [max(int(image.shape[a]) for image, _ in arrays) for a in range(3)]
    grid = tuple(max(2, math.ceil(side / multiple)) * multiple for side in largest)
    prepared = []
    for case, (image, label) in zip(cases, arrays, strict=True):
        size = (*grid[:2], image.shape[2] if dim == 2 else grid[2])
        valid = crop_or_pad(torch.ones(image.shape), size) > 0
        prepared.append(PreparedCase(case.name, crop_or_pad(normalize_intensity(image), size),
                                     crop_or_pad(label, size), valid))
    return prepared, grid


class SegmentationNet(nn.Module):
    """A backbone UNet plus a 1x1 convolution to class logits; ``freeze_backbone`` makes it a linear probe."""

    def __init__(self, backbone: UNet, n_classes: int, generator: torch.Generator,
                 freeze_backbone: bool = False):
        super().__init__()
        self.backbone, self.dim, self.freeze_backbone = backbone, backbone.dim, freeze_backbone
        channels, ones = int(backbone.out_channels), [1] * backbone.dim
        unit = 2 * torch.rand((n_classes, channels, *ones), generator=generator) - 1
        self.head_weight = nn.Parameter(unit / math.sqrt(channels))  # PyTorch's default fan-in bound
        self.head_bias = nn.Parameter(torch.zeros(n_classes))
        # Fixed per-channel standardisation of the features: identity until standardize_features().
        self.register_buffer("feature_mean", torch.zeros(1, channels, *ones))
        self.register_buffer("feature_std", torch.ones(1, channels, *ones))
        self.freeze(freeze_backbone)

    def freeze(self, frozen: bool = True) -> None:
        """Freeze (or release) the backbone: no gradients, and its batch norms keep their statistics."""
        self.freeze_backbone = frozen
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> SegmentationNet:
        """Keep a frozen backbone in eval mode, so the probe never updates its BatchNorm statistics."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freeze_backbone and hasattr(self.backbone, "linear_readout") and self.backbone.levels == "all":
            # A probe on every level: fold the standardisation into the head and apply it level by level.
            weight = self.head_weight.flatten(1) / self.feature_std.flatten()
            bias = self.head_bias - weight @ self.feature_mean.flatten()
            return self.backbone.linear_readout(x, weight, bias)  # a frozen backbone's weights need no grad
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            features = (self.backbone(x) - self.feature_mean) / self.feature_std
        return conv_fn(self.dim)(features, self.head_weight, self.head_bias)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Cross-entropy plus (1 - soft Dice) averaged over the foreground classes, Dice pooled over the batch.

    Pooling over the batch keeps the Dice term meaningful when a 2D batch holds no voxel of some class.
    """
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs)
    axes = (0, *range(2, logits.ndim))
    dice = (2 * (probs * onehot).sum(axes) + smooth) / (probs.sum(axes) + onehot.sum(axes) + smooth)
    return F.cross_entropy(logits, target) + (1 - dice[1:].mean())


def stable_seed(*keys: object) -> int:
    """A seed from a stable hash of ``keys`` (unlike ``hash``, equal in every process and every run)."""
    return zlib.crc32(repr(keys).encode())


def seeded_generator(*keys: object) -> torch.Generator:
    """A CPU generator seeded by :func:`stable_seed`: every arm keyed alike draws alike."""
    return torch.Generator().manual_seed(stable_seed(*keys))


class _WithLoss(nn.Module):
    """A segmentation network and its loss as one module: ``(images, labels) -> (loss, logs)``, the form
    :func:`~synthlab.train.train_step` steps."""

    def __init__(self, model: SegmentationNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return dice_ce_loss(self.model(images), labels), {}


def train_model(model: SegmentationNet, images: torch.Tensor, labels: torch.Tensor, *, steps: int,
                lr: float, batch_size: int, augment: AugmentConfig, generator: torch.Generator,
                progress: bool = False, freeze_steps: int = 0) -> list[float]:
    """Adam on Dice + CE for ``steps`` augmented batches, the learning rate decaying along a cosine to zero
    (:func:`~synthlab.train.lr_factor`); each step is pretraining's :func:`~synthlab.train.train_step`. For the
    first ``freeze_steps`` only the head trains (a random head would otherwise send large gradients into
    pretrained weights). Returns each step's loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)  # frozen parameters get no gradient, so no update
    device = next(model.parameters()).device
    step_model = _WithLoss(model)
    model.train()
    model.freeze(freeze_steps > 0)
    losses = []
    for step in progress_iter(range(steps), "train", enabled=progress, nested=True):
        if step == freeze_steps and model.freeze_backbone:
            model.freeze(False)
        x, y = draw_batch(images, labels, batch_size, augment, generator)
        loss, _ = train_step(step_model, optimizer, (x.to(device), y.to(device)),
                             lr=lr * lr_factor(step, steps, warmup_fraction=0.0, min_fraction=0.0))
        losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: SegmentationNet, image: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Label map ``(X, Y, Z)`` of a prepared image; a 2D model predicts slice by slice and stacks them."""
    model.eval()
    device = next(model.parameters()).device
    samples = to_slices(image, model.dim)
    parts = [model(samples[i:i + chunk].to(device)).argmax(1).cpu()
             for i in range(0, samples.shape[0], chunk)]
    return from_slices(torch.cat(parts), model.dim)


class Intensity(nn.Module):
    """The raw image as a one-channel feature map: the floor a linear probe of any network has to beat."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim, self.in_channels, self.out_channels, self.downsample_factor = check_dim(dim), 1, 1, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _RowsWithLoss(nn.Module):
    """A segmentation head applied to rows of standardised features: ``(rows, labels) -> (loss, logs)``."""

    def __init__(self, model: SegmentationNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, rows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        weight = self.model.head_weight.flatten(1)  # (K, C)
        logits = rows @ weight.T + self.model.head_bias  # (P, K)
        return dice_ce_loss(logits.T[None], labels[None]), {}


def fit_probe(features: nn.Module, cases: list[PreparedCase], train: Sequence[int], n_classes: int,
              key: tuple[int, int], budget: FineTuneConfig, device: torch.device) -> SegmentationNet:
    """A linear (1x1) head on frozen ``features``, trained to convergence.

    The features of every voxel of the training cases (inside their original field of view) are computed
    once, standardised per channel, and the head is fitted to all of them at once by ``budget.probe_steps`` Adam
    steps on Dice + CE (no augmentation: a probe measures the features, not how well they survive
    augmentation). A probe that stops early reads "all background" as often as "nothing there".
    """
    model = SegmentationNet(features, n_classes, seeded_generator("head", *key), freeze_backbone=True).to(device)
    rows, targets = [], []
    with torch.no_grad():
        model.backbone.eval()
        for i in train:
            samples = to_slices(cases[i].image, model.dim).to(device)
            maps = torch.cat([features(samples[j:j + 16]) for j in range(0, samples.shape[0], 16)]).float()
            inside = to_slices(cases[i].valid, model.dim)[:, 0].to(device)
            rows.append(maps.movedim(1, -1)[inside])
            targets.append(to_slices(cases[i].label, model.dim)[:, 0].to(device)[inside])
    x, y = torch.cat(rows), torch.cat(targets)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    shape = (1, -1, *([1] * model.dim))
    model.feature_mean.copy_(mean.view(shape))
    model.feature_std.copy_(std.view(shape))
    x = (x - mean) / std
    optimizer = torch.optim.Adam([model.head_weight, model.head_bias], lr=budget.lr_probe)
    step_model = _RowsWithLoss(model)
    for step in range(budget.probe_steps):
        train_step(step_model, optimizer, (x, y), lr=budget.lr_probe * lr_factor(step, budget.probe_steps, 0.0, 0.0))
    return model.eval()


def fit_arm(arm: str, backbone: UNet, cases: list[PreparedCase], train: Sequence[int], n_classes: int,
            key: tuple[int, int], budget: FineTuneConfig, device: torch.device,
            progress: bool = False) -> SegmentationNet:
    """Fine-tune ``backbone`` on ``cases[train]`` (``pretrained``, ``scratch``), or fit a linear probe on its
    frozen levels (``probe``, ``probe_random``) or on the intensity (``probe_intensity``).

    Everything random is keyed by ``key = (seed, shots)``, never by the arm: all arms start from the same
    head and see the same batches and augmentation draws. A fine-tuned arm whose ``budget.head(arm)`` is
    ``"probe"`` starts from a head fitted on its own frozen output (:func:`fit_probe`); the ``pretrained`` arm
    trains its head alone for ``budget.freeze_fraction`` of the steps.
    """
    dim = backbone.dim
    if arm in PROBE_ARMS:
        features = Intensity(dim) if arm == "probe_intensity" else LevelFeatures(backbone, "all")
        return fit_probe(features, cases, train, n_classes, key, budget, device)
    if budget.head(arm) == "probe":  # LP-FT: the probe's head and feature standardisation, then all layers
        model = fit_probe(backbone, cases, train, n_classes, key, budget, device)
        model.freeze(False)
    else:
        model = SegmentationNet(backbone, n_classes, seeded_generator("head", *key)).to(device)
    images = torch.cat([to_slices(cases[i].image, dim) for i in train]).to(device)
    targets = torch.cat([to_slices(cases[i].label, dim)[:, 0] for i in train]).to(device)
    freeze = round(budget.freeze_fraction * budget.steps) if arm == "pretrained" else 0
    train_model(model, images, targets, steps=budget.steps, lr=budget.lr(arm), batch_size=budget.batch(dim),
                augment=budget.augment, generator=seeded_generator("data", *key), progress=progress,
                freeze_steps=freeze)
    return model
