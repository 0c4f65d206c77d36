"""Few-shot segmentation: does a pretrained backbone beat the same network trained from scratch?

The anatomix protocol (REFERENCE §1.5) scaled down to CPU budgets, with three arms that share budget,
augmentations, seeds and data order: ``pretrained`` (checkpoint UNet + 1x1 head, all layers fine-tuned with
Dice + CE), ``scratch`` (same architecture, random init) and ``probe`` (frozen backbone, only the 1x1 head
trains: how linearly readable the features are; with ``checkpoint="none"`` it probes random features).
Dice swings with the training subject, so each seed trains on different subjects against a fixed test list
(:func:`split_subjects`), and results carry standard errors and the paired per-seed gain over scratch.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import Case, crop_or_pad, load_msd, normalize_intensity, resolve_data
from .nets import UNet, build_unet
from .spatial import affine_displacement, affine_matrix, check_dim, conv_fn, warp

__all__ = ["ARMS", "AugmentConfig", "AugmentParams", "FineTuneConfig", "PreparedCase", "SegmentationNet",
           "apply_augment", "dice_ce_loss", "dice_per_label", "draw_batch", "evaluate_segmentation", "fit_arm",
           "load_backbone",
           "from_samples", "predict", "prepare_cases", "sample_augment", "split_subjects", "to_samples",
           "train_model"]

ARMS = ("pretrained", "scratch", "probe")
SPLIT_SEED = 0  # fixes the test list and the order training subjects are taken in, whatever `seeds` is


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations, identical for every arm (the anatomix recipe, milder for small 1 mm crops).

    Only axis 0 (left-right in RAS data) is mirrored by default: mirroring along anterior-posterior or
    inferior-superior would swap the meaning of labels such as "anterior hippocampus".
    """

    flip_prob: float = 0.5  # chance of mirroring along each axis in flip_axes
    flip_axes: tuple[int, ...] = (0,)
    affine_prob: float = 0.8  # chance of rotation/zoom/shift (anatomix: 0.98, +-45 deg on 128^3 crops)
    max_rotation_deg: float = 15.0  # per rotation plane, uniform in +-this
    max_zoom: float = 0.1  # per-axis zoom uniform in 1 +- this
    max_shift: float = 2.0  # per-axis translation in voxels, uniform in +-this
    gamma_prob: float = 0.33  # anatomix applies its intensity transforms at p 0.33
    max_log_gamma: float = 0.3  # gamma = exp(u), u uniform in +-this
    noise_prob: float = 0.33
    noise_std: float = 0.03  # additive Gaussian noise on [0, 1] intensities


@dataclass(frozen=True)
class FineTuneConfig:
    """The budget of one training run, shared by every arm; only the learning rate depends on the arm.

    Short budgets hit a plateau where the net predicts one hippocampus label or none, and the learning rate
    decides whether a run leaves it. Tuned on hippocampus cases outside every test list (tiny 2D, 3 shots,
    600 steps, 2 seeds): scratch Dice 0.25 / 0.67 / 0.69 at 3e-3 / 1e-2 / 3e-2; fine-tuning a (60-step
    SupCon) checkpoint 0.66 and 0.26 at 3e-3, 0.68 and 0.68 at 1e-2. Retune for a much longer budget or a
    different checkpoint (anatomix fine-tunes with 2e-4 for 37,500 steps).
    """

    steps: int = 200
    batch_size: int | None = None  # None: 16 slices in 2D, 2 whole volumes in 3D
    lr_scratch: float = 1e-2
    lr_finetune: float = 1e-2
    lr_probe: float = 1e-2  # only a 1x1 head on standardised features trains
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def lr(self, arm: str) -> float:
        return {"pretrained": self.lr_finetune, "scratch": self.lr_scratch, "probe": self.lr_probe}[arm]

    def batch(self, dim: int) -> int:
        return self.batch_size or {2: 16, 3: 2}[check_dim(dim)]


@dataclass(frozen=True)
class AugmentParams:
    """Sampled augmentation parameters for a batch: everything :func:`apply_augment` needs, nothing random."""

    matrix: torch.Tensor  # (B, dim, dim + 1) centred output->input affine, flips included
    gamma: torch.Tensor  # (B,)
    noise_std: torch.Tensor  # (B,)
    noise: torch.Tensor  # (B, 1, *size) unit Gaussian


@dataclass(frozen=True)
class PreparedCase:
    """One case ready for the network: intensities in [0, 1], padded so the UNet can downsample it."""

    name: str
    image: torch.Tensor  # (X, Y, Z) float
    label: torch.Tensor  # (X, Y, Z) int64
    valid: torch.Tensor  # (X, Y, Z) bool: True inside the original field of view


# ------------------------------------------------------------------------------------------- layout, split


def to_samples(volume: torch.Tensor, dim: int) -> torch.Tensor:
    """A volume ``(X, Y, Z)`` as network inputs: ``(1, 1, X, Y, Z)`` in 3D, Z slices ``(Z, 1, X, Y)`` in 2D.

    The one place that decides how 2D networks see volumes, so training, prediction and stacking agree.
    """
    return volume[None, None] if check_dim(dim) == 3 else volume.movedim(-1, 0).unsqueeze(1)


def from_samples(samples: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`to_samples` for outputs without a channel axis: ``(N, *spatial) -> (X, Y, Z)``."""
    return samples[0] if check_dim(dim) == 3 else samples.movedim(0, -1)


def prepare_cases(cases: Sequence[Case], multiple: int, dim: int
                  ) -> tuple[list[PreparedCase], tuple[int, ...]]:
    """Normalise intensities and centre-pad every case to one grid whose sides are multiples of ``multiple``.

    Returns the cases and the grid: the largest case rounded up (at least ``2 * multiple``, two bottleneck
    voxels, which reflect padding needs), so nothing is cropped and Dice on the padded grid (predictions
    masked by ``valid``) equals Dice on the original one. In 2D the slice axis is never padded.
    """
    if any(case.label is None for case in cases):
        raise ValueError("data: every case needs a label map for segmentation")
    largest = [max(int(case.image.array.shape[a]) for case in cases) for a in range(3)]
    grid = tuple(max(2, math.ceil(side / multiple)) * multiple for side in largest)
    prepared = []
    for case in cases:
        size = (*grid[:2], case.image.array.shape[2] if dim == 2 else grid[2])
        valid = crop_or_pad(torch.ones(case.image.array.shape), size) > 0
        prepared.append(PreparedCase(case.name, crop_or_pad(normalize_intensity(case.image.array), size),
                                     crop_or_pad(case.label.array, size), valid))
    return prepared, grid


def _case_order(n_cases: int) -> list[int]:
    """The fixed permutation (``SPLIT_SEED``) behind the test list and the order of training subjects."""
    return torch.randperm(n_cases, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()


def split_subjects(n_cases: int, shots: int, seed: int, max_test: int | None, stride: int
                   ) -> tuple[list[int], list[int]]:
    """Indices of the training subjects and of the test cases for one seed.

    With ``max_test`` the test list is the first ``max_test`` cases of a fixed order (the same for every arm
    and seed) and the training pool is the rest; without it the pool is every case and each seed is tested
    on all cases it did not train on. Seed ``s`` trains on pool entries ``s * stride``, ``s * stride + 1``,
    ... (wrapping around): seeds use different subjects while ``seeds * stride`` fits in the pool, and with
    ``stride`` the largest shot count a seed's smaller training sets nest in its larger ones.
    """
    order = _case_order(n_cases)
    test, pool = (order[:max_test], order[max_test:]) if max_test is not None else ([], order)
    most = len(pool) if max_test is not None else n_cases - 1
    if not 1 <= shots <= most:
        raise ValueError(f"shots must lie in 1..{most} for {n_cases} cases with max_test={max_test}, "
                         f"got {shots}")
    train = [pool[(seed * stride + j) % len(pool)] for j in range(shots)]
    return train, test if max_test is not None else [i for i in order if i not in train]


# ------------------------------------------------------------------------------------------- augmentation


def sample_augment(batch: int, size: Sequence[int], config: AugmentConfig, generator: torch.Generator
                   ) -> AugmentParams:
    """Draw augmentation parameters for ``batch`` samples of spatial ``size`` from ``generator``.

    The number of draws does not depend on the probabilities, so equal generators give equal batches.
    """
    dim = check_dim(len(size))
    if any(not 0 <= axis < dim for axis in config.flip_axes):
        raise ValueError(f"flip_axes must name axes below dim={dim}, got {config.flip_axes}")

    def draw(*shape: int) -> torch.Tensor:  # uniform in [0, 1): compare with a probability
        return torch.rand(shape, generator=generator, device=generator.device)

    def symmetric(*shape: int) -> torch.Tensor:  # uniform in [-1, 1): scale by a range
        return 2 * draw(*shape) - 1

    may_flip = torch.zeros(dim, dtype=torch.bool, device=generator.device)
    may_flip[list(config.flip_axes)] = True
    flips = (draw(batch, dim) < config.flip_prob) & may_flip
    on = (draw(batch, 1) < config.affine_prob).float()
    angles = symmetric(batch, dim * (dim - 1) // 2) * math.radians(config.max_rotation_deg) * on
    zooms = 1 + symmetric(batch, dim) * config.max_zoom * on
    shifts = symmetric(batch, dim) * config.max_shift * on
    log_gamma = symmetric(batch) * config.max_log_gamma
    gamma = torch.where(draw(batch) < config.gamma_prob, log_gamma.exp(), torch.ones(()))
    noise_std = torch.where(draw(batch) < config.noise_prob, config.noise_std, 0.0)
    noise = torch.randn((batch, 1, *size), generator=generator, device=generator.device)
    matrix = affine_matrix(angles, zooms, translation=shifts, flips=flips)
    return AugmentParams(matrix, gamma, noise_std, noise)


def apply_augment(image: torch.Tensor, label: torch.Tensor, params: AugmentParams
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply sampled parameters: one warp (affine and flips; nearest for labels), then gamma and noise.

    Args:
        image: ``(B, 1, *size)`` in [0, 1]; label: ``(B, *size)`` integer. Outputs follow ``image``'s device.
    """
    per_sample = (-1, *([1] * (image.ndim - 1)))
    displacement = affine_displacement(params.matrix.to(image), image.shape[2:])
    image = warp(image, displacement, padding_mode="zeros")
    label = warp(label.unsqueeze(1), displacement, mode="nearest", padding_mode="zeros").squeeze(1)
    image = image.clamp(0.0, 1.0) ** params.gamma.to(image).view(per_sample)
    return image + params.noise.to(image) * params.noise_std.to(image).view(per_sample), label


def draw_batch(images: torch.Tensor, labels: torch.Tensor, batch: int, config: AugmentConfig,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``batch`` samples of a pool (``(M, 1, *size)`` images, ``(M, *size)`` labels), augment them."""
    index = torch.randint(images.shape[0], (batch,), generator=generator, device=generator.device)
    params = sample_augment(batch, images.shape[2:], config, generator)
    return apply_augment(images[index.to(images.device)], labels[index.to(labels.device)], params)


# ------------------------------------------------------------------------------------------- model, loss


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
        backbone.requires_grad_(not freeze_backbone)

    def train(self, mode: bool = True) -> SegmentationNet:
        """Keep a frozen backbone in eval mode, so the probe never updates its BatchNorm statistics."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    @torch.no_grad()
    def standardize_features(self, images: torch.Tensor, chunk: int = 16) -> None:
        """Fix the per-channel feature mean and std to their values on ``images`` (the probe's pool).

        Frozen features can have any scale (a random UNet in eval mode gives ~1e-4) that a linear head would
        need thousands of steps to undo; a fixed affine map keeps the probe linear in the features.
        """
        self.backbone.eval()
        features = torch.cat([self.backbone(images[i:i + chunk]) for i in range(0, images.shape[0], chunk)])
        axes = (0, *range(2, features.ndim))
        self.feature_mean.copy_(features.mean(axes, keepdim=True))
        self.feature_std.copy_(features.std(axes, keepdim=True).clamp_min(1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


def dice_per_label(prediction: torch.Tensor, target: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """Hard Dice of each of ``labels``; 1.0 for a label absent from both maps (nothing to disagree on)."""
    scores = []
    for label in labels:
        pred, true = prediction == label, target == label
        total = int(pred.sum()) + int(true.sum())
        scores.append(1.0 if total == 0 else 2.0 * int((pred & true).sum()) / total)
    return torch.tensor(scores, dtype=torch.float64)


def _seeded_generator(*keys: object) -> torch.Generator:
    """A CPU generator seeded by a stable hash of ``keys`` (unlike ``hash``, equal in every process)."""
    return torch.Generator().manual_seed(zlib.crc32(repr(keys).encode()))


def _random_backbone(config: dict[str, Any], *keys: object) -> UNet:
    """A freshly initialised UNet; module initialisers read the global RNG, so it is forked and restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(repr(keys).encode()))
        return UNet(**config)


def train_model(model: SegmentationNet, images: torch.Tensor, labels: torch.Tensor, *, steps: int,
                lr: float, batch_size: int, augment: AugmentConfig, generator: torch.Generator,
                progress: bool = False) -> list[float]:
    """Adam with a cosine schedule on Dice + CE for ``steps`` augmented batches; returns each step's loss."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    device = next(model.parameters()).device
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="train", leave=False, disable=not progress):
        x, y = draw_batch(images, labels, batch_size, augment, generator)
        loss = dice_ce_loss(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: SegmentationNet, image: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Label map ``(X, Y, Z)`` of a prepared image; a 2D model predicts slice by slice and stacks them."""
    model.eval()
    device = next(model.parameters()).device
    samples = to_samples(image, model.dim)
    parts = [model(samples[i:i + chunk].to(device)).argmax(1).cpu()
             for i in range(0, samples.shape[0], chunk)]
    return from_samples(torch.cat(parts), model.dim)


# ------------------------------------------------------------------------------------------- protocol


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample std and standard error (None when a single value cannot estimate a spread)."""
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std,
            "sem": std / math.sqrt(len(values)) if std is not None else None}


def _paired_gain(pretrained: dict[str, Any], scratch: dict[str, Any]) -> dict[str, Any]:
    """Per shot count, pretrained - scratch seed by seed (same subjects, same draws), with mean and SEM."""
    gain = {}
    for key, entry in pretrained.items():
        diffs = [p - s for p, s in zip(entry["per_seed"], scratch[key]["per_seed"], strict=True)]
        gain[key] = {**_spread(diffs), "per_seed": diffs}
    return gain


def load_backbone(checkpoint: str, preset: str | None, dim: int) -> tuple[UNet | None, UNet]:
    """The pretrained network (None for ``checkpoint="none"``) and a network of the arms' architecture."""
    if checkpoint == "none":
        from .profiles import get_profile

        return None, build_unet(preset or str(get_profile().for_dim("preset", dim)), dim)
    if preset is not None:
        raise ValueError("preset applies only to checkpoint='none'; a checkpoint fixes its architecture")
    from .checkpoint import load_pretrained

    net = load_pretrained(checkpoint, device="cpu")
    if net.dim != dim:
        raise ValueError(f"dim={dim} but checkpoint {checkpoint!r} holds a {net.dim}D network")
    return net, net


def fit_arm(arm: str, backbone: UNet, cases: list[PreparedCase], train: Sequence[int], n_classes: int,
            key: tuple[int, int], budget: FineTuneConfig, device: torch.device,
            progress: bool = False) -> SegmentationNet:
    """Fine-tune (or, for ``arm="probe"``, fit a head on frozen features of) ``backbone`` on ``cases[train]``.

    Everything random is keyed by ``key = (seed, shots)``, never by the arm: all arms start from the same
    head and see the same batches and augmentation draws.
    """
    dim = backbone.dim
    model = SegmentationNet(backbone, n_classes, _seeded_generator("head", *key),
                            freeze_backbone=arm == "probe").to(device)
    images = torch.cat([to_samples(cases[i].image, dim) for i in train]).to(device)
    targets = torch.cat([to_samples(cases[i].label, dim)[:, 0] for i in train]).to(device)
    if arm == "probe":
        model.standardize_features(images)
    train_model(model, images, targets, steps=budget.steps, lr=budget.lr(arm), batch_size=budget.batch(dim),
                augment=budget.augment, generator=_seeded_generator("data", *key), progress=progress)
    return model


def _run_arm(arm: str, backbone: UNet, cases: list[PreparedCase], split: tuple[list[int], list[int]],
             labels: list[int], key: tuple[int, int], budget: FineTuneConfig, device: torch.device,
             progress: bool) -> torch.Tensor:
    """Train one arm on the cases ``split[0]``; return its Dice ``(n_test, n_labels)`` on ``split[1]``."""
    model = fit_arm(arm, backbone, cases, split[0], len(labels) + 1, key, budget, device, progress)
    scores = [dice_per_label(predict(model, cases[i].image) * cases[i].valid, cases[i].label, labels)
              for i in split[1]]
    return torch.stack(scores)


def evaluate_segmentation(data: str | Path, checkpoint: str = "none", shots: Sequence[int] = (1, 3, 5),
                          seeds: int = 3, steps: int = 200, dim: int = 3, preset: str | None = None,
                          max_test: int | None = None, device: str | torch.device = "auto", *,
                          lr_scratch: float = FineTuneConfig.lr_scratch,
                          lr_finetune: float = FineTuneConfig.lr_finetune,
                          lr_probe: float = FineTuneConfig.lr_probe, batch_size: int | None = None,
                          augment: AugmentConfig | None = None, arms: Sequence[str] = ARMS,
                          progress: bool = True) -> dict[str, Any]:
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
        lr_scratch, lr_finetune, lr_probe: Adam learning rates of the arms (see :class:`FineTuneConfig`).
        batch_size: samples per step (default 16 slices in 2D, 2 volumes in 3D); augment: its ranges.
        arms: which of :data:`ARMS` to run.
    Returns:
        ``{"settings", "pretrained", "scratch", "probe", "gain"}``. An arm maps each shot count (a string) to
        mean/std/sem over seeds of the mean test Dice, per-label means, per-seed values, and each seed's
        training subjects and ``n_test``; it is None when not run. ``gain`` holds the paired per-seed
        difference pretrained - scratch with its mean and standard error.
    """
    started = time.perf_counter()
    dim, shots = check_dim(dim), [int(k) for k in shots]
    for name, bad in (("shots", not shots or min(shots) < 1), ("seeds", seeds < 1), ("steps", steps < 0),
                      ("max_test", max_test is not None and max_test < 1)):
        if bad:
            raise ValueError(f"{name} is out of range: shots={shots}, seeds={seeds}, steps={steps}, "
                             f"max_test={max_test}")
    if unknown := set(arms) - set(ARMS):
        raise ValueError(f"arms must be among {ARMS}, got {sorted(unknown)}")
    budget = FineTuneConfig(steps=steps, batch_size=batch_size, lr_scratch=lr_scratch,
                            lr_finetune=lr_finetune, lr_probe=lr_probe, augment=augment or AugmentConfig())
    pretrained, template = load_backbone(checkpoint, preset, dim)
    arms = [arm for arm in arms if pretrained is not None or arm != "pretrained"]
    folder = resolve_data(data)
    cases, grid = prepare_cases(load_msd(folder), template.downsample_factor, dim)
    if max_test is not None and max_test >= len(cases):
        raise ValueError(f"max_test={max_test} leaves no training case among the {len(cases)} in {folder}")
    for k in shots:  # fail on a bad shot count before any training
        split_subjects(len(cases), k, 0, max_test, stride=max(shots))
    labels = list(range(1, int(max(case.label.max() for case in cases)) + 1))
    if not labels:
        raise ValueError(f"data: {folder} holds only background labels")
    device = _resolve_device(device)
    results: dict[str, Any] = {arm: ({} if arm in arms else None) for arm in ARMS}
    bar = tqdm(total=len(shots) * seeds * len(arms), desc="eval-seg", disable=not progress)
    for k in shots:
        raw = {arm: {"per_seed": [], "per_seed_per_label": [], "subjects": [], "n_test": []} for arm in arms}
        for seed in range(seeds):
            split = split_subjects(len(cases), k, seed, max_test, stride=max(shots))
            scratch = _random_backbone(template.config, "init", seed, k)
            for arm in arms:
                source = pretrained if pretrained is not None and arm != "scratch" else scratch
                scores = _run_arm(arm, copy.deepcopy(source), cases, split, labels, (seed, k), budget, device,
                                  progress)
                raw[arm]["per_seed"].append(float(scores.mean()))
                raw[arm]["per_seed_per_label"].append(scores.mean(0).tolist())
                raw[arm]["subjects"].append([cases[i].name for i in split[0]])
                raw[arm]["n_test"].append(len(split[1]))
                bar.update()
        for arm in arms:
            per_label = torch.tensor(raw[arm]["per_seed_per_label"]).mean(0).tolist()
            results[arm][str(k)] = {**_spread(raw[arm]["per_seed"]),
                                    "per_label": dict(zip(map(str, labels), per_label, strict=True)),
                                    **raw[arm]}
    bar.close()
    both = results["pretrained"] is not None and results["scratch"] is not None
    results["gain"] = _paired_gain(results["pretrained"], results["scratch"]) if both else None
    settings = {
        "data": str(folder), "checkpoint": checkpoint, "dim": dim, "net_config": dict(template.config),
        "shots": shots, "seeds": seeds, "steps": steps, "batch_size": budget.batch(dim),
        "device": str(device), "lrs": {arm: budget.lr(arm) for arm in arms},
        "augment": asdict(budget.augment), "labels": labels, "grid": list(grid), "n_cases": len(cases),
        "max_test": max_test,
        "test_cases": ([cases[i].name for i in _case_order(len(cases))[:max_test]] if max_test is not None
                       else "every case the seed did not train on"),
        "probe_backbone": "pretrained" if pretrained is not None else "random (the scratch initialisation)",
        "split_seed": SPLIT_SEED, "seconds": time.perf_counter() - started,
    }
    return {"settings": settings, **results}
