"""Training-free deformable registration on features (ConvexAdam style): the solver and its feature sets.

Any feature map that makes corresponding points look alike turns registration into one small problem: find a
smooth displacement ``u`` so that the moving features sampled at ``x + u(x)`` match the fixed features at
``x``. Only the features differ between the four compared sets:

* ``"intensity"``: the image z-scored in a Gaussian window, so squared differences are ``2 (1 - local NCC)``;
* ``"mind"``: MIND-SSC (:mod:`synthlab.mind`), insensitive to contrast by construction;
* ``"network"``: a pretrained network's features with unit L2 norm per voxel;
* ``"network+mind"``: both, each group at unit energy and the network group weighted (anatomix: 16 + 12).

The solver has two stages (Siebert, Hansen & Heinrich's ConvexAdam, as anatomix uses it), both on a grid
``fine_factor`` times coarser than the image, optionally after an affine one:

0. **Affine** (``affine_iterations > 0``): Adam on the 12 (2D: 6) parameters of one affine map, feature SSD, so
   a rotation or a change of size larger than the discrete window does not leave the later stages stranded.
1. **Discrete/convex**: score every integer shift in a small window (feature SSD pooled over patches, one cost
   vector per control point), then alternate a per-point argmin of cost + coupling to a smoothed field with
   Gaussian smoothing, tightening the coupling each round. Large motions cannot trap it in a local minimum.
2. **Adam**: refine that field by gradient descent on feature SSD + ``lambda_ * |grad u|^2`` (diffusion).

The metrics live in :mod:`synthlab.metrics`, the known-answer experiments of ``eval-reg`` in
:mod:`synthlab.eval_reg`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from .dims import DIMS
from .features import extract_features, normalize_features
from .mind import MindConfig, mind_ssc, shifted_view
from .spatial import affine_displacement, gaussian_blur, grid_size, rescale_field, resize, to_grid, warp

__all__ = ["FEATURE_SETS", "SOLVER_PRESETS", "RegistrationConfig", "RegistrationResult", "local_normalize", "register",
           "register_features", "registration_features"]

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
        network_weight: weight of the network group against MIND in ``"network+mind"``: relative to MIND after
            both are at unit energy (``scaling="unit"``), or the factor on the raw features (``"raw"``,
            anatomix's 0.1).
        scaling: ``"unit"`` (each group, then the concatenation, at unit energy: one ``lambda_`` suits every
            set) or ``"raw"`` (MIND as computed, ``network_weight`` times the raw network features, as
            anatomix concatenates them).
        normalize_cost: divide the discrete stage's costs (mean over channels) by their mean, so ``coupling``
            is in units of a typical cost; False sums over channels unnormalised (ConvexAdam, anatomix).
        cost_sigma: Gaussian smoothing (control points) of each shift's cost map before the search; anatomix
            smooths with two 3x3x3 boxes (sigma about 1.15).
        data_weight: factor on the Adam stage's feature term (anatomix: 12 times the channel mean).
        cosine_decay: decay the Adam step along a cosine; False keeps it constant (anatomix).
        window, overlap: sliding-window inference for network features (None: the whole volume at once).
        passes: how many times the whole solver runs; each later pass computes the features of the moving image
            as the earlier passes warped it (SAMConvex and IMPACT re-extract so), registers the rest, and the
            fields are composed.
        affine_iterations: Adam steps of the affine stage before the others (0: no affine stage).
        affine_learning_rate: its Adam step on the matrix's linear entries; the translation steps that times
            the grid's longest side (see :func:`_affine_stage`).
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
    scaling: str = "unit"
    normalize_cost: bool = True
    cost_sigma: float = 0.0
    data_weight: float = 1.0
    cosine_decay: bool = True
    window: int | None = 128
    overlap: float = 0.5
    passes: int = 1
    affine_iterations: int = 0
    affine_learning_rate: float = 0.01
    mind: MindConfig = field(default_factory=MindConfig)

    def __post_init__(self) -> None:
        for name in ("fine_factor", "patch", "passes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("search_radius", "iterations", "lambda_", "network_weight", "affine_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "affine_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("cost_sigma", "data_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.scaling not in ("unit", "raw"):
            raise ValueError(f"scaling must be 'unit' or 'raw', got {self.scaling!r}")


# anatomix's published solver (neel-dey/anatomix, anatomix/registration/, read at commit a29b8a8; file and line
# of each value in docs/fidelity.md), mapped onto this solver: grids of 2 voxels for both stages, a search of one
# grid voxel, 28 channels (MIND-SSC + 0.1 x the raw network features) in both stages, summed unnormalised costs
# smoothed by two 3^3 boxes, six coupling rounds (their in-place update makes each round's penalty the sum of
# the earlier coefficients: given here as those sums), a 3^3 box between rounds (sigma 0.82), 80 Adam steps of
# one grid voxel at a constant rate on 12 x the channel mean, three 3^3 boxes on the field (sigma 1.41), diffusion
# weight 0.75. Not reproduced: their inverse-consistency pass after the discrete stage.
SOLVER_PRESETS: dict[str, RegistrationConfig] = {
    "synthlab": RegistrationConfig(),
    "anatomix": RegistrationConfig(
        fine_factor=2, search_radius=1, patch=1, coupling=(0.003, 0.013, 0.043, 0.143, 0.443, 1.443),
        convex_sigma=0.82, iterations=80, learning_rate=1.0, lambda_=0.75, field_sigma=1.41, network_weight=0.1,
        scaling="raw", normalize_cost=False, cost_sigma=1.15, data_weight=12.0, cosine_decay=False),
}


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

    ``config.scaling="unit"``: each group is scaled to unit energy (the network group then weighted), and so is
    the concatenation; ``"raw"``: MIND as computed beside ``network_weight`` times the raw network features.
    """
    config = config or RegistrationConfig()
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    if "network" in features and net is None:
        raise ValueError(f"features={features!r} needs a network (net=None)")
    x, unit = image.float()[None, None], config.scaling == "unit"
    groups = []
    if features == "intensity":
        groups.append(local_normalize(x, config.intensity_sigma)[0])
    if "network" in features:
        raw = extract_features(net, image.float(), window=config.window, overlap=config.overlap,
                               progress=False)
        groups.append(config.network_weight * (_unit_energy(normalize_features(raw)) if unit else raw))
    if "mind" in features:
        mind = mind_ssc(x, config.mind)[0]
        groups.append(_unit_energy(mind) if unit else mind)
    return _unit_energy(torch.cat(groups)) if unit else torch.cat(groups)


# ----------------------------------------------------------------------------------------------- solver


def _convex_stage(fixed: torch.Tensor, moving: torch.Tensor, config: RegistrationConfig) -> torch.Tensor:
    """Discrete search with coupled smoothing: a ``(1, C, *g)`` feature pair -> ``(1, dim, *g)`` field."""
    dim, size, radius = fixed.ndim - 2, tuple(fixed.shape[2:]), config.search_radius
    control = grid_size(size, config.patch)
    offsets = torch.tensor(list(itertools.product(range(-radius, radius + 1), repeat=dim)),
                           dtype=fixed.dtype, device=fixed.device)  # (D, dim)
    padded = F.pad(moving, [radius] * (2 * dim), mode="replicate")
    cost = []
    for chunk in offsets.long().split(_COST_CHUNK):
        ssd = torch.cat([((fixed - shifted_view(padded, shift, radius, size)) ** 2).sum(1, keepdim=True)
                         for shift in chunk.tolist()], dim=1)
        ssd = to_grid(ssd, control)
        cost.append((gaussian_blur(ssd, config.cost_sigma) if config.cost_sigma > 0 else ssd).flatten(2)[0])
    cost = torch.cat(cost)  # (D, control points)
    if config.normalize_cost:  # a channel mean relative to its mean is a channel sum relative to its mean
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
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, config.iterations))
                if config.cosine_decay else None)
    points = fixed[0, 0].numel()
    with torch.enable_grad():
        for _ in range(config.iterations):
            u = gaussian_blur(param, config.field_sigma)
            data = config.data_weight * ((warp(moving, u) - fixed) ** 2).mean()
            loss = points * (data + config.lambda_ * _diffusion(u))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    return gaussian_blur(param.detach(), config.field_sigma)


def _affine_stage(fixed: torch.Tensor, moving: torch.Tensor, config: RegistrationConfig) -> torch.Tensor:
    """An affine map fitted by Adam on feature SSD: ``(1, C, *g)`` pair -> its centred matrix ``(1, dim, dim+1)``.

    The matrix is centred on the grid (:func:`~synthlab.spatial.affine_coordinates`) and starts at the identity;
    its linear part steps by ``affine_learning_rate`` and its translation by that times the grid's longest side
    (a rotation of 0.01 rad moves the far edge by about as much as a translation of 0.01 x side).
    """
    dim, size = fixed.ndim - 2, tuple(fixed.shape[2:])
    linear = torch.zeros(1, dim, dim, device=fixed.device, requires_grad=True)
    shift = torch.zeros(1, dim, 1, device=fixed.device, requires_grad=True)
    eye = torch.eye(dim, device=fixed.device)[None]
    optimizer = torch.optim.Adam([{"params": [linear]}, {"params": [shift], "lr": config.affine_learning_rate
                                                         * max(size)}], lr=config.affine_learning_rate,
                                 eps=_ADAM_EPS)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, config.affine_iterations))

    with torch.enable_grad():
        for _ in range(config.affine_iterations):
            matrix = torch.cat([eye + linear, shift], 2)
            loss = ((warp(moving, affine_displacement(matrix, size)) - fixed) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return torch.cat([eye + linear, shift], 2).detach()


def register_features(fixed: torch.Tensor, moving: torch.Tensor,
                      config: RegistrationConfig | None = None) -> torch.Tensor:
    """Displacement ``(dim, *size)`` aligning two feature maps ``(C, *size)``: the feature-agnostic core."""
    config = config or RegistrationConfig()
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed and moving features differ in shape: {tuple(fixed.shape)} vs "
                         f"{tuple(moving.shape)}")
    size = tuple(fixed.shape[1:])
    pair = to_grid(torch.stack([fixed, moving]).float(), grid_size(size, config.fine_factor))
    target, source = pair[:1], pair[1:]
    matrix = _affine_stage(target, source, config) if config.affine_iterations > 0 else None
    if matrix is not None:
        source = warp(source, affine_displacement(matrix, tuple(target.shape[2:])))
    if config.search_radius > 0:
        u = _convex_stage(target, source, config)
    else:
        u = pair.new_zeros(1, len(size), *pair.shape[2:])
    u = _adam_stage(target, source, u, config)
    if matrix is not None:  # moving at x + u + a(x + u) = x + a(x) + M u: the deformation, then the affine
        linear = matrix[0, :, :-1]
        u = affine_displacement(matrix, tuple(u.shape[2:])) + torch.einsum("ij,bj...->bi...", linear, u)
    return rescale_field(u, size)[0]


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
    if fixed.shape != moving.shape or fixed.ndim not in DIMS:
        raise ValueError(f"fixed and moving must share one 2D or 3D shape, got {tuple(fixed.shape)} and "
                         f"{tuple(moving.shape)}")
    start = time.perf_counter()
    target = registration_features(fixed, features, net, config)
    displacement = register_features(target, registration_features(moving, features, net, config), config)
    warped = warp(moving.float()[None, None], displacement[None])[0, 0]
    for _ in range(config.passes - 1):  # the rest, on features of the moving image as warped so far
        rest = register_features(target, registration_features(warped, features, net, config), config)
        displacement = rest + warp(displacement[None], rest[None])[0]  # moving at x + r(x) + u(x + r(x))
        warped = warp(moving.float()[None, None], displacement[None])[0, 0]
    return RegistrationResult(displacement, warped, time.perf_counter() - start)
