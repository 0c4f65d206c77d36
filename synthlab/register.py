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
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .dims import DIMS
from .features import extract_features, normalize_features
from .mind import mind_ssc, shifted_view
from .registration_config import SOLVER_PRESETS, RegistrationConfig
from .spatial import affine_displacement, gaussian_blur, grid_size, rescale_field, resize, to_grid, warp

__all__ = ["FEATURE_SETS", "SOLVER_PRESETS", "RegistrationConfig", "RegistrationResult", "joint_pca", "local_normalize",
           "pair_features", "register", "register_features", "registration_features"]

FEATURE_SETS = ("intensity", "mind", "network", "network+mind")
_ADAM_EPS = 1e-4  # above round-off gradients of a perfect match (see _adam_stage)
_COST_CHUNK = 64  # shifts whose full-grid SSD maps the discrete stage holds at once


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


def _feature_groups(image: torch.Tensor, features: str, net: nn.Module | None, config: RegistrationConfig
                    ) -> dict[str, torch.Tensor]:
    """The groups of a feature set for one image ``(*size)``, each ``(C, *size)`` as computed (not yet scaled)."""
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    if "network" in features and net is None:
        raise ValueError(f"features={features!r} needs a network (net=None)")
    x, groups = image.float()[None, None], {}
    if features == "intensity":
        groups["intensity"] = local_normalize(x, config.intensity_sigma)[0]
    if "network" in features:
        groups["network"] = extract_features(net, image.float(), window=config.window, overlap=config.overlap,
                                             progress=False)
    if "mind" in features:
        groups["mind"] = mind_ssc(x, config.mind)[0]
    return groups


def joint_pca(fixed: torch.Tensor, moving: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor],
              components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Project two feature maps ``(C, *size)`` onto the leading principal axes of their pooled masked voxels.

    Both maps share one mean and one basis (fitted on the voxels of both masks together), so a feature keeps its
    meaning across the pair; each image contributes in proportion to its foreground.
    """
    if not 0 < components <= fixed.shape[0]:
        raise ValueError(f"network_pca must be in 1..{fixed.shape[0]} (the network's channels), got {components}")
    rows = torch.cat([maps.flatten(1)[:, mask.flatten()] for maps, mask in zip((fixed, moving), masks, strict=True)],
                     dim=1).double()
    if rows.shape[1] <= components:
        raise ValueError(f"network_pca={components} needs more foreground voxels than that, got {rows.shape[1]}")
    mean = rows.mean(1, keepdim=True)
    centred = rows - mean
    _, vectors = torch.linalg.eigh(centred @ centred.T)  # ascending eigenvalues: the last columns lead
    basis = vectors[:, -components:].flip(1).T.to(fixed.dtype)  # (components, C)
    shift = mean.to(fixed.dtype)
    return tuple(torch.einsum("kc,c...->k...", basis, maps - shift.view(-1, *[1] * (maps.ndim - 1)))
                 for maps in (fixed, moving))


def _combine(groups: dict[str, torch.Tensor], config: RegistrationConfig) -> torch.Tensor:
    """One feature stack from the groups: ``scaling="unit"``: each group at unit energy (the network group
    L2-normalised per voxel first, then weighted), and the concatenation too; ``"raw"``: MIND as computed beside
    ``network_weight`` times the raw network features."""
    unit, parts = config.scaling == "unit", []
    for name, maps in groups.items():
        if name == "network":
            parts.append(config.network_weight * (_unit_energy(normalize_features(maps)) if unit else maps))
        else:
            parts.append(_unit_energy(maps) if unit and name == "mind" else maps)
    return _unit_energy(torch.cat(parts)) if unit else torch.cat(parts)


def registration_features(image: torch.Tensor, features: str, net: nn.Module | None = None,
                          config: RegistrationConfig | None = None) -> torch.Tensor:
    """Features ``(C, *size)`` of one image ``(*size)`` (intensities in [0, 1]) for a named feature set.

    ``config.scaling="unit"``: each group is scaled to unit energy (the network group then weighted), and so is
    the concatenation; ``"raw"``: MIND as computed beside ``network_weight`` times the raw network features.
    A ``network_pca`` basis needs both images: see :func:`pair_features`.
    """
    config = config or RegistrationConfig()
    if config.network_pca and "network" in features:
        raise ValueError("network_pca fits one basis to both images: use pair_features(fixed, moving, ...)")
    return _combine(_feature_groups(image, features, net, config), config)


def _pair_groups(fixed: torch.Tensor, moving: torch.Tensor, features: str, net: nn.Module | None,
                 config: RegistrationConfig, fixed_groups: dict[str, torch.Tensor] | None = None
                 ) -> list[dict[str, torch.Tensor]]:
    """Both images' feature groups (the fixed image's given when already computed), the network group of each
    projected onto one joint basis when asked."""
    if fixed_groups is None:
        fixed_groups = _feature_groups(fixed, features, net, config)
    # a copy of the fixed groups: a joint basis replaces its network group, and the caller's stays as computed
    groups = [dict(fixed_groups), _feature_groups(moving, features, net, config)]
    if config.network_pca and "network" in features:
        masks = (fixed > config.foreground, moving > config.foreground)
        projected = joint_pca(groups[0]["network"], groups[1]["network"], masks, config.network_pca)
        for group, maps in zip(groups, projected, strict=True):
            group["network"] = maps
    return groups


def pair_features(fixed: torch.Tensor, moving: torch.Tensor, features: str, net: nn.Module | None = None,
                  config: RegistrationConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature stacks of a fixed and a moving image, the network group projected onto a basis fitted to
    both (``config.network_pca``; otherwise each image's features alone, as :func:`registration_features`)."""
    config = config or RegistrationConfig()
    fixed_groups, moving_groups = _pair_groups(fixed, moving, features, net, config)
    return _combine(fixed_groups, config), _combine(moving_groups, config)


def _register_pair(fixed: torch.Tensor, fixed_groups: dict[str, torch.Tensor], moving: torch.Tensor, features: str,
                   net: nn.Module | None, config: RegistrationConfig) -> torch.Tensor:
    """One pass of the solver on a pair of images: the moving image's features, then :func:`register_features`."""
    groups = _pair_groups(fixed, moving, features, net, config, fixed_groups)
    refine = None
    if not config.network_refines and len(groups[0]) > 1:  # the Adam stage on the groups besides the network
        refine = tuple(_combine({k: v for k, v in group.items() if k != "network"}, config) for group in groups)
    return register_features(_combine(groups[0], config), _combine(groups[1], config), config, refine)


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


def register_features(fixed: torch.Tensor, moving: torch.Tensor, config: RegistrationConfig | None = None,
                      refine: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Displacement ``(dim, *size)`` aligning two feature maps ``(C, *size)``: the feature-agnostic core.

    ``refine``: another pair of feature maps (same grid) for the Adam stage alone; by default it refines on
    ``fixed`` and ``moving`` too.
    """
    config = config or RegistrationConfig()
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed and moving features differ in shape: {tuple(fixed.shape)} vs "
                         f"{tuple(moving.shape)}")
    size = tuple(fixed.shape[1:])
    pair = to_grid(torch.stack([fixed, moving]).float(), grid_size(size, config.fine_factor))
    target, source = pair[:1], pair[1:]
    if refine is not None:
        refine_pair = to_grid(torch.stack(refine).float(), grid_size(size, config.fine_factor))
        refine_target, refine_source = refine_pair[:1], refine_pair[1:]
    else:
        refine_target, refine_source = target, source
    matrix = _affine_stage(target, source, config) if config.affine_iterations > 0 else None
    if matrix is not None:
        affine = affine_displacement(matrix, tuple(target.shape[2:]))
        source = warp(source, affine)
        refine_source = warp(refine_source, affine) if refine is not None else source
    if config.search_radius > 0:
        u = _convex_stage(target, source, config)
    else:
        u = pair.new_zeros(1, len(size), *pair.shape[2:])
    u = _adam_stage(refine_target, refine_source, u, config)
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
    fixed_groups = _feature_groups(fixed, features, net, config)  # computed once for every pass
    displacement = _register_pair(fixed, fixed_groups, moving, features, net, config)
    warped = warp(moving.float()[None, None], displacement[None])[0, 0]
    for _ in range(config.passes - 1):  # the rest, on features of the moving image as warped so far
        rest = _register_pair(fixed, fixed_groups, warped, features, net, config)
        displacement = rest + warp(displacement[None], rest[None])[0]  # moving at x + r(x) + u(x + r(x))
        warped = warp(moving.float()[None, None], displacement[None])[0, 0]
    return RegistrationResult(displacement, warped, time.perf_counter() - start)
