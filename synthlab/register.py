"""Training-free deformable registration on features (ConvexAdam style), metrics, known-answer protocols.

Any feature map that makes corresponding points look alike turns registration into one small problem: find a
smooth displacement ``u`` so that the moving features sampled at ``x + u(x)`` match the fixed features at
``x``. Only the features differ between the four compared sets:

* ``"intensity"``: the image z-scored in a Gaussian window, so squared differences are ``2 (1 - local NCC)``;
* ``"mind"``: MIND-SSC (:mod:`synthlab.mind`), insensitive to contrast by construction;
* ``"network"``: a pretrained network's features with unit L2 norm per voxel;
* ``"network+mind"``: both, each group at unit energy and the network group weighted (anatomix: 16 + 12).

The solver has two stages (Siebert, Hansen & Heinrich's ConvexAdam, as anatomix uses it), both on a grid
``fine_factor`` times coarser than the image:

1. **Discrete/convex**: score every integer shift in a small window (feature SSD pooled over patches, one cost
   vector per control point), then alternate a per-point argmin of cost + coupling to a smoothed field with
   Gaussian smoothing, tightening the coupling each round. Large motions cannot trap it in a local minimum.
2. **Adam**: refine that field by gradient descent on feature SSD + ``lambda_ * |grad u|^2`` (diffusion).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import (
    Volume,
    crop_or_pad,
    load_coregistered,
    load_nifti,
    msd_entries,
    normalize_intensity,
    resample,
    resolve_data,
)
from .features import extract_features, normalize_features
from .mind import MindConfig, mind_ssc, shifted_view
from .spatial import gaussian_blur, jacobian_determinant, multiscale_noise, resize, warp

__all__ = ["FEATURE_SETS", "ProtocolConfig", "RegistrationConfig", "RegistrationResult", "dice_per_label",
           "endpoint_error", "evaluate_registration", "folding_percent", "local_normalize", "random_contrast",
           "random_deformation", "register", "register_features", "registration_features"]

FEATURE_SETS = ("intensity", "mind", "network", "network+mind")
_ADAM_EPS = 1e-4  # above round-off gradients of a perfect match (see _adam_stage)
_COST_CHUNK = 64  # shifts whose full-grid SSD maps the discrete stage holds at once


@dataclass(frozen=True)
class RegistrationConfig:
    """Settings of the two-stage solver and of the feature sets.

    Attributes:
        fine_factor: image voxels per voxel of the grid on which both stages compare features.
        search_radius: largest shift of the discrete stage, in fine voxels per axis (``(2r+1)^dim``
            candidates); 0 skips the stage.
        patch: fine voxels per control point of the discrete stage; costs are pooled over such patches.
        coupling: weights of the coupling term ``|d - v|^2`` (fine voxels^2; costs normalised to mean 1) in
            successive convex rounds; growing weights pull the discrete solution onto a smooth field.
        convex_sigma: smoothing (control points) of the field between convex rounds.
        iterations: Adam steps (cosine-decayed step size).
        learning_rate: initial Adam step, in fine voxels.
        lambda_: weight of the diffusion regulariser; features have unit energy, so one value suits all sets.
        field_sigma: smoothing (fine voxels) applied to the optimised field: a smooth parameterisation.
        intensity_sigma: window (voxels) of the local normalisation of the ``"intensity"`` set.
        network_weight: weight of the network group against MIND in ``"network+mind"``. anatomix scales raw
            features by 0.1; here both groups are at unit energy first, so the weight is relative (untuned
            for pretrained networks, see the README).
        window, overlap: sliding-window inference for network features (None: the whole volume at once).
        mind: MIND-SSC settings.
    """

    fine_factor: int = 2
    search_radius: int = 3
    patch: int = 2
    coupling: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    convex_sigma: float = 1.0
    iterations: int = 60
    learning_rate: float = 0.5
    lambda_: float = 0.3
    field_sigma: float = 1.0
    intensity_sigma: float = 2.0
    network_weight: float = 0.5
    window: int | None = 128
    overlap: float = 0.5
    mind: MindConfig = field(default_factory=MindConfig)

    def __post_init__(self) -> None:
        for name in ("fine_factor", "patch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("search_radius", "iterations", "lambda_", "network_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class RegistrationResult:
    """What :func:`register` found.

    Attributes:
        displacement: ``(dim, *size)`` in voxels; the moving image sampled at ``x + u(x)`` matches the fixed
            image at ``x``.
        warped: the moving image warped by it, ``(*size)``.
        seconds: wall-clock time, features included.
    """

    displacement: torch.Tensor
    warped: torch.Tensor
    seconds: float


# ----------------------------------------------------------------------------------------------- features


def local_normalize(image: torch.Tensor, sigma: float = 2.0, eps: float = 1e-3) -> torch.Tensor:
    """Z-score ``image`` ``(B, C, *size)`` in a Gaussian window; SSD of two outputs is ``2 (1 - local NCC)``.
    """
    mean = gaussian_blur(image, sigma)
    variance = (gaussian_blur(image * image, sigma) - mean * mean).clamp_min(0)
    return (image - mean) / (variance + eps * eps * variance.mean().clamp_min(1e-12)).sqrt()


def _unit_energy(features: torch.Tensor) -> torch.Tensor:
    """Divide by the root mean square, so SSD scales agree across feature sets and groups."""
    return features / features.pow(2).mean().sqrt().clamp_min(1e-12)


def registration_features(image: torch.Tensor, features: str, net: nn.Module | None = None,
                          config: RegistrationConfig | None = None) -> torch.Tensor:
    """Features ``(C, *size)`` of one image ``(*size)`` (intensities in [0, 1]) for a named feature set.

    Each group is scaled to unit energy (the network group then weighted), and so is the concatenation.
    """
    config = config or RegistrationConfig()
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    if "network" in features and net is None:
        raise ValueError(f"features={features!r} needs a network (net=None)")
    x = image.float()[None, None]
    groups = []
    if features == "intensity":
        groups.append(local_normalize(x, config.intensity_sigma)[0])
    if "network" in features:
        raw = extract_features(net, image.float(), window=config.window, overlap=config.overlap,
                               progress=False)
        groups.append(config.network_weight * _unit_energy(normalize_features(raw)))
    if "mind" in features:
        groups.append(_unit_energy(mind_ssc(x, config.mind)[0]))
    return _unit_energy(torch.cat(groups))


# ----------------------------------------------------------------------------------------------- grids


def _grid_size(size: Sequence[int], factor: int) -> tuple[int, ...]:
    """Sides of a grid ``factor`` times coarser whose corner points coincide with the image corners."""
    return tuple(max(2, round((s - 1) / factor) + 1) for s in size)


def _to_grid(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample ``(B, C, *in)`` onto the corner-aligned grid ``size``, blurring first when it is coarser."""
    factor = [(i - 1) / max(o - 1, 1) for i, o in zip(x.shape[2:], size, strict=True)]
    sigma = torch.tensor([max(0.0, (f - 1) / 2) for f in factor], dtype=x.dtype, device=x.device)
    return resize(gaussian_blur(x, sigma.expand(x.shape[0], -1)), size)


def _rescale_field(u: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a voxel displacement ``(B, dim, *in)`` to grid ``size``, converting it to the new voxels."""
    ratio = [(o - 1) / max(i - 1, 1) for i, o in zip(u.shape[2:], size, strict=True)]
    scale = torch.tensor(ratio, dtype=u.dtype, device=u.device).view(1, -1, *([1] * len(size)))
    return resize(u, size) * scale


# ----------------------------------------------------------------------------------------------- solver


def _convex_stage(fixed: torch.Tensor, moving: torch.Tensor, config: RegistrationConfig) -> torch.Tensor:
    """Discrete search with coupled smoothing: a ``(1, C, *g)`` feature pair -> ``(1, dim, *g)`` field."""
    dim, size, radius = fixed.ndim - 2, tuple(fixed.shape[2:]), config.search_radius
    control = _grid_size(size, config.patch)
    offsets = torch.tensor(list(itertools.product(range(-radius, radius + 1), repeat=dim)),
                           dtype=fixed.dtype, device=fixed.device)  # (D, dim)
    padded = F.pad(moving, [radius] * (2 * dim), mode="replicate")
    cost = []
    for chunk in offsets.long().split(_COST_CHUNK):
        ssd = torch.cat([((fixed - shifted_view(padded, shift, radius, size)) ** 2).mean(1, keepdim=True)
                         for shift in chunk.tolist()], dim=1)
        cost.append(_to_grid(ssd, control).flatten(2)[0])
    cost = torch.cat(cost)  # (D, control points)
    cost = cost / cost.mean().clamp_min(1e-12)
    best = offsets[cost.argmin(0)].T  # (dim, control points)
    for weight in config.coupling:
        smooth = gaussian_blur(best.reshape(1, dim, *control), config.convex_sigma).flatten(2)[0]
        penalty = sum((offsets[:, k, None] - smooth[k][None]) ** 2 for k in range(dim))
        best = offsets[(cost + weight * penalty).argmin(0)].T
    return resize(gaussian_blur(best.reshape(1, dim, *control), config.convex_sigma), size)


def _diffusion(u: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of the field over all axes: the diffusion regulariser."""
    return sum((torch.diff(u, dim=axis) ** 2).mean() for axis in range(2, u.ndim))


def _adam_stage(fixed: torch.Tensor, moving: torch.Tensor, init: torch.Tensor,
                config: RegistrationConfig) -> torch.Tensor:
    """Refine a field ``(1, dim, *g)`` by Adam on feature SSD + lambda * diffusion."""
    param = init.detach().clone().requires_grad_(True)
    # Adam divides by the gradient's size, so its eps must exceed round-off: the objective is summed over grid
    # points (per-point gradients ~0.01-1 when misaligned, ~1e-7 at a perfect match).
    optimizer = torch.optim.Adam([param], lr=config.learning_rate, eps=_ADAM_EPS)
    # Adam's steps keep their length near the optimum; a cosine decay lets the field settle instead of jitter.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, config.iterations))
    points = fixed[0, 0].numel()
    with torch.enable_grad():
        for _ in range(config.iterations):
            u = gaussian_blur(param, config.field_sigma)
            loss = points * (((warp(moving, u) - fixed) ** 2).mean() + config.lambda_ * _diffusion(u))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return gaussian_blur(param.detach(), config.field_sigma)


def register_features(fixed: torch.Tensor, moving: torch.Tensor,
                      config: RegistrationConfig | None = None) -> torch.Tensor:
    """Displacement ``(dim, *size)`` aligning two feature maps ``(C, *size)``: the feature-agnostic core."""
    config = config or RegistrationConfig()
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed and moving features differ in shape: {tuple(fixed.shape)} vs "
                         f"{tuple(moving.shape)}")
    size = tuple(fixed.shape[1:])
    pair = _to_grid(torch.stack([fixed, moving]).float(), _grid_size(size, config.fine_factor))
    if config.search_radius > 0:
        u = _convex_stage(pair[:1], pair[1:], config)
    else:
        u = pair.new_zeros(1, len(size), *pair.shape[2:])
    return _rescale_field(_adam_stage(pair[:1], pair[1:], u, config), size)[0]


def register(fixed: torch.Tensor, moving: torch.Tensor, features: str = "mind", net: nn.Module | None = None,
             *, iterations: int | None = None, lambda_: float | None = None,
             config: RegistrationConfig | None = None) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` (both ``(*size)``, 2D or 3D, intensities in [0, 1]).

    Deterministic (the solver draws nothing at random); ``iterations`` and ``lambda_`` override ``config``.

    Example:
        >>> result = register(fixed, moving, "mind")   # doctest: +SKIP
        >>> result.displacement.shape                    # (3, *fixed.shape)
    """
    config = config or RegistrationConfig()
    overrides = {k: v for k, v in (("iterations", iterations), ("lambda_", lambda_)) if v is not None}
    config = replace(config, **overrides)
    if fixed.shape != moving.shape or fixed.ndim not in (2, 3):
        raise ValueError(f"fixed and moving must share one 2D or 3D shape, got {tuple(fixed.shape)} and "
                         f"{tuple(moving.shape)}")
    start = time.perf_counter()
    displacement = register_features(registration_features(fixed, features, net, config),
                                     registration_features(moving, features, net, config), config)
    warped = warp(moving.float()[None, None], displacement[None])[0, 0]
    return RegistrationResult(displacement, warped, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------- metrics


def dice_per_label(prediction: torch.Tensor, target: torch.Tensor,
                   labels: Sequence[int] | None = None) -> dict[int, float]:
    """Dice overlap per label (default: the target's labels but 0); a label absent from both scores 1."""
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


def _mean_dice(prediction: torch.Tensor, target: torch.Tensor) -> float:
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


# ----------------------------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class ProtocolConfig:
    """Known-answer experiments on real images.

    Attributes:
        size: longest side (voxels) of the isotropic working grid when the caller gives none.
        deformation_sides: coarse-grid sides of the octaves of the synthetic deformation (2: an affine-like
            ramp; larger sides bend more locally).
        deformation_std_mm: standard deviation per octave and axis, mm. The defaults move voxels by about
            5 mm on average (13 mm at most) with Jacobian determinants in about [0.7, 1.3]: large motions, but
            strains that descriptors with fixed axes (MIND, convolutions) can follow.
        foreground: intensity (after 0.5-99.5 percentile scaling to [0, 1]) above which a voxel of the
            deformed fixed image counts for the endpoint error.
        contrast_knots: control points of the random intensity curve that simulates a contrast change.
    """

    size: int = 128
    deformation_sides: tuple[int, ...] = (2, 4, 8)
    deformation_std_mm: tuple[float, ...] = (4.0, 3.0, 1.5)
    foreground: float = 0.05
    contrast_knots: int = 6

    def __post_init__(self) -> None:
        if len(self.deformation_sides) != len(self.deformation_std_mm):
            raise ValueError(f"deformation_sides {self.deformation_sides} and deformation_std_mm "
                             f"{self.deformation_std_mm} must have one entry per octave")


def random_deformation(size: Sequence[int], spacing: Sequence[float], generator: torch.Generator,
                       config: ProtocolConfig | None = None) -> torch.Tensor:
    """A smooth random displacement ``(dim, *size)``, in voxels of ``spacing`` mm (one per axis)."""
    config = config or ProtocolConfig()
    std = torch.tensor([config.deformation_std_mm], device=generator.device)
    mm = multiscale_noise(1, len(size), size, config.deformation_sides, generator, std, generator.device)[0]
    return mm / torch.tensor(spacing, device=mm.device).view(-1, *([1] * len(size)))


def random_contrast(image: torch.Tensor, generator: torch.Generator, monotone: bool = True,
                    knots: int = 6) -> torch.Tensor:
    """Remap intensities in [0, 1] through a random piecewise-linear curve: a simulated contrast change.

    A monotone curve keeps the order of tissue intensities; a non-monotone one reorders them, as between MR
    sequences, which defeats intensity similarity but not self-similarity descriptors.
    """
    if knots < 2:
        raise ValueError(f"knots must be >= 2, got {knots}")
    values = torch.rand(knots, generator=generator, device=generator.device)
    if monotone:
        values = torch.cat([values.new_zeros(1), values[1:].cumsum(0)])
        values = values / values[-1].clamp_min(1e-6)
    values = values.to(image.device)
    position = image.clamp(0, 1) * (knots - 1)
    lower = position.floor().long().clamp_max(knots - 2)
    fraction = position - lower
    return values[lower] * (1 - fraction) + values[lower + 1] * fraction


def _pick(names: Sequence[str], wanted: str, what: str) -> str:
    """Match a name exactly, else case-insensitively, else as a unique case-insensitive prefix."""
    if wanted in names:
        return wanted
    matches = ([n for n in names if n.lower() == wanted.lower()]
               or [n for n in names if n.lower().startswith(wanted.lower())])
    if len(matches) == 1:
        return matches[0]
    reason = "is ambiguous" if matches else "is unknown"
    raise ValueError(f"{what} {wanted!r} {reason}; available: {', '.join(sorted(names))}")


def _load_net(checkpoint: str, device: torch.device) -> tuple[nn.Module, str]:
    """The 3D feature network and a sentence saying what it is (a random init is stated, never hidden)."""
    if checkpoint == "none":
        from .nets import build_unet

        with torch.random.fork_rng(devices=[]):  # a fixed init that leaves the caller's generator untouched
            torch.manual_seed(0)
            net = build_unet("small", 3)
        return net.to(device).eval(), "random initialisation of the 'small' preset (checkpoint='none')"
    from .checkpoint import load_pretrained

    net = load_pretrained(checkpoint, device=device)
    if net.dim != 3:
        raise ValueError(f"checkpoint {checkpoint!r} holds a {net.dim}D network; 3D volumes need a 3D one")
    return net, f"pretrained weights from {checkpoint}"


def _summary(rows: list[dict], skip: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of every numeric column of ``rows`` except ``skip``."""
    out = {}
    for key in (k for k in rows[0] if k not in skip):
        values = torch.tensor([row[key] for row in rows], dtype=torch.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std()) if len(rows) > 1 else 0.0}
    return out


def _working_grid(volume: Volume, size: int) -> tuple[torch.Tensor, float]:
    """Resample to isotropic voxels, the longest side ``size`` voxels; intensities scaled to [0, 1]."""
    spacing = max(n * s for n, s in zip(volume.array.shape, volume.spacing, strict=True)) / size
    return normalize_intensity(resample(volume, spacing).array), spacing


def _run_all(fixed: torch.Tensor, moving: torch.Tensor, features: Sequence[str], net: nn.Module | None,
             config: RegistrationConfig) -> dict[str, RegistrationResult]:
    return {name: register(fixed, moving, name, net if "network" in name else None, config=config)
            for name in features}


def _coregistered_protocol(folder: Path, names: tuple[str, str], features: Sequence[str],
                           net: nn.Module | None, seeds: Sequence[int], size: int, device: torch.device,
                           config: RegistrationConfig, protocol: ProtocolConfig) -> dict:
    subject = load_coregistered(folder)
    fixed, moving = (_pick(list(subject.contrasts), name, f"{role} contrast")
                     for name, role in zip(names, ("fixed", "moving"), strict=True))
    fixed_image, spacing = _working_grid(subject.contrasts[fixed], size)
    fixed_image = fixed_image.to(device)
    moving_image = _working_grid(subject.contrasts[moving], size)[0].to(device)
    label = None if subject.label is None else resample(subject.label, spacing).array[None, None].to(device)
    rows: dict[str, list[dict]] = {name: [] for name in features}
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        truth = random_deformation(fixed_image.shape, (spacing,) * 3, generator, protocol).to(device)
        deformed = warp(fixed_image[None, None], truth[None])[0, 0]
        mask = deformed > protocol.foreground
        before = endpoint_error(torch.zeros_like(truth), truth, mask)
        for name, result in _run_all(deformed, moving_image, features, net, config).items():
            row = {"seed": seed, "epe_before": before,
                   "epe": endpoint_error(result.displacement, truth, mask),
                   "folding_percent": folding_percent(result.displacement), "seconds": result.seconds}
            if label is not None:
                row["dice"] = _mean_dice(warp(label, result.displacement[None], mode="nearest")[0, 0],
                                         warp(label, truth[None], mode="nearest")[0, 0])
            rows[name].append(row)
    return {"protocol": "co-registered contrasts: the fixed contrast is deformed by a known seeded smooth "
                        "field and the undeformed moving contrast registered to it, so the estimate should "
                        "equal the field; endpoint error in voxels of the working grid, inside the deformed "
                        "fixed foreground",
            "fixed": fixed, "moving": moving, "shape": list(fixed_image.shape), "spacing_mm": spacing,
            "results": {name: _summary(runs, ("seed",)) for name, runs in rows.items()}, "per_seed": rows}


def _msd_protocol(folder: Path, names: tuple[str | None, str | None], features: Sequence[str],
                  net: nn.Module | None, seeds: Sequence[int], device: torch.device,
                  config: RegistrationConfig, protocol: ProtocolConfig) -> dict:
    cases = {image.name.split(".")[0]: (image, label) for image, label in msd_entries(folder) if label}
    if len(cases) < 2:
        raise ValueError(f"{folder} needs at least two labelled cases for inter-subject registration")
    ordered = sorted(cases)
    rows: dict[str, dict[str, list[dict]]] = {name: {} for name in features}
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randperm(len(ordered), generator=generator)[:2].tolist()
        pair = [_pick(ordered, name, f"{role} case") if name else ordered[index]
                for name, role, index in zip(names, ("fixed", "moving"), drawn, strict=True)]
        loaded = [(load_nifti(cases[n][0]), load_nifti(cases[n][1], kind="label")) for n in pair]
        shape = tuple(max(image.array.shape[k] for image, _ in loaded) for k in range(3))
        (fixed, fixed_label), (moving, moving_label) = [
            (crop_or_pad(normalize_intensity(image.array), shape).to(device),
             crop_or_pad(label.array, shape).to(device)) for image, label in loaded]
        before = _mean_dice(moving_label, fixed_label)
        changes = {"none": moving,
                   "monotone": random_contrast(moving, generator, True, protocol.contrast_knots),
                   "non-monotone": random_contrast(moving, generator, False, protocol.contrast_knots)}
        for change, image in changes.items():
            for name, result in _run_all(fixed, image, features, net, config).items():
                moved = warp(moving_label[None, None], result.displacement[None], mode="nearest")[0, 0]
                rows[name].setdefault(change, []).append({
                    "seed": seed, "fixed": pair[0], "moving": pair[1], "dice_before": before,
                    "dice": _mean_dice(moved, fixed_label),
                    "folding_percent": folding_percent(result.displacement), "seconds": result.seconds})
    skip = ("seed", "fixed", "moving")
    return {"protocol": "inter-subject pairs of labelled cases (drawn per seed unless named), centre-padded "
                        "to a common grid: mean foreground Dice of the warped moving labels before and after "
                        "registration, with the moving image unchanged or remapped by a random monotone or "
                        "non-monotone intensity curve",
            "results": {name: {change: _summary(runs, skip) for change, runs in by_change.items()}
                        for name, by_change in rows.items()}, "per_seed": rows}


def evaluate_registration(data: str | Path, fixed: str | None = None, moving: str | None = None,
                          checkpoint: str = "none", features: Sequence[str] = FEATURE_SETS, seeds: int = 3,
                          size: int | None = None, device: str | torch.device = "auto",
                          config: RegistrationConfig | None = None,
                          protocol: ProtocolConfig | None = None) -> dict:
    """Compare feature sets on real images where the right answer is known; returns a JSON-able dict.

    * Co-registered contrasts (``brain_tumor_mri/study1``): ``fixed`` / ``moving`` name contrasts (file
      stems; case-insensitive unique prefixes work). Both are resampled to isotropic voxels, at most ``size``
      per side; per seed the fixed contrast is deformed by a known smooth field that registration must
      recover (endpoint error; Dice too when the folder holds a label map).
    * An MSD folder (``hippocampus``): per seed a random pair of subjects (or the named cases); Dice before
      and after, without and with a simulated contrast change of the moving image.

    Args:
        checkpoint: weights for the network feature sets; ``"none"`` uses a fixed random initialisation of the
            ``small`` preset, which the results state.
        seeds: number of seeds, ``0 .. seeds - 1``.
        size: longest side of the working grid (default ``protocol.size``); co-registered data only.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    """
    config, protocol = config or RegistrationConfig(), protocol or ProtocolConfig()
    if not features or any(name not in FEATURE_SETS for name in features):
        raise ValueError(f"features must be a non-empty subset of {FEATURE_SETS}, got {list(features)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if size is not None and size < 8:
        raise ValueError(f"size must be at least 8 voxels, got {size}")
    folder = resolve_data(data)
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    net, network = (_load_net(checkpoint, device) if any("network" in name for name in features)
                    else (None, "not used"))
    with torch.no_grad():
        if (folder / "dataset.json").is_file():
            report = _msd_protocol(folder, (fixed, moving), features, net, range(seeds), device, config,
                                   protocol)
        elif fixed is None or moving is None:
            raise ValueError(f"{folder} holds co-registered contrasts: name the fixed and the moving one")
        else:
            report = _coregistered_protocol(folder, (fixed, moving), features, net, range(seeds),
                                            size or protocol.size, device, config, protocol)
    return {"data": str(folder), "checkpoint": checkpoint, "network": network, "features": list(features),
            "seeds": list(range(seeds)), "device": str(device), **report,
            "registration_config": asdict(config), "protocol_config": asdict(protocol)}
