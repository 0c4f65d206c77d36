"""Spatial toolbox shared by synthesis and registration.

One implementation of the geometric primitives every other module needs: affine matrices, dense warps,
separable Gaussian blur, resampling, corner-aligned coarse grids and Jacobian determinants (smooth random
fields built on them are in :mod:`synthlab.noise`). Everything works for ``dim`` 2 or 3,
on batched tensors shaped ``(B, C, *size)``, on whatever device the inputs live on.

Conventions
-----------
* A displacement field ``u`` has shape ``(B, dim, *size)`` in **voxel** units; channel ``k`` moves along spatial
  axis ``k`` (the axis order of the tensor, not grid_sample's reversed x-y-z order). Warping samples the moving
  image at ``x + u(x)``.
* An affine matrix has shape ``(B, dim, dim + 1)`` and maps output voxel coordinates, *centred on the volume
  centre*, to input coordinates: ``p_in = A @ (x - c) + t + c``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dims import interp_mode

__all__ = [
    "SpatialParams",
    "affine_coordinates",
    "affine_displacement",
    "affine_matrix",
    "apply_spatial",
    "flat_index",
    "gaussian_blur",
    "grid_size",
    "identity_grid",
    "jacobian_determinant",
    "rescale_field",
    "resize",
    "rotation_matrix",
    "sample_nearest",
    "to_grid",
    "warp",
]


def resize(x: torch.Tensor, size: Sequence[int], mode: str = "linear") -> torch.Tensor:
    """Resample ``x`` (B, C, *spatial) to ``size``; ``mode`` is ``"linear"`` or ``"nearest"``."""
    dim = x.ndim - 2
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest-exact")
    return F.interpolate(x, size=tuple(size), mode=interp_mode(dim), align_corners=True)


def identity_grid(size: Sequence[int], device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel coordinates ``(dim, *size)``, channel k holding the index along axis k."""
    axes = [torch.arange(s, device=device, dtype=dtype) for s in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _to_sampling_grid(coords: torch.Tensor, size_in: Sequence[int]) -> torch.Tensor:
    """Voxel coordinates (B, dim, *size) of an input of ``size_in`` -> grid_sample's grid (B, *size, dim).

    grid_sample wants coordinates normalised to [-1, 1] (align_corners=True) with the axes in x-y-z order,
    the reverse of the tensor's axis order.
    """
    dim = coords.shape[1]
    scale = torch.tensor([2.0 / max(s - 1, 1) for s in size_in], device=coords.device, dtype=coords.dtype)
    normalised = coords * scale.view(1, dim, *([1] * dim)) - 1.0
    return normalised.flip(1).movedim(1, -1)


def warp(image: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear",
         padding_mode: str = "border") -> torch.Tensor:
    """Sample ``image`` at ``x + displacement(x)``.

    Args:
        image: ``(B, C, *in_size)``; may differ in size from the displacement only if you mean to resample.
        displacement: ``(B, dim, *out_size)`` in voxel units of ``image``.
        mode: ``"bilinear"`` (linear in 3D too) or ``"nearest"`` (for label maps).
    """
    if displacement.shape[1] != image.ndim - 2:
        raise ValueError(f"displacement has {displacement.shape[1]} channels for a {image.ndim - 2}D image")
    coords = identity_grid(displacement.shape[2:], displacement.device, displacement.dtype) + displacement
    if tuple(image.shape[2:]) != tuple(displacement.shape[2:]):
        # Rescale so that corner voxels of the output grid map onto corner voxels of the input.
        pairs = zip(image.shape[2:], displacement.shape[2:], strict=True)
        ratio = torch.tensor([(si - 1) / max(so - 1, 1) for si, so in pairs], device=coords.device, dtype=coords.dtype)
        coords = coords * ratio.view(1, -1, *([1] * (coords.ndim - 2)))
    grid = _to_sampling_grid(coords, image.shape[2:])
    grid = grid.expand(image.shape[0], *grid.shape[1:]) if grid.shape[0] == 1 else grid
    out = F.grid_sample(image.to(grid.dtype) if mode != "nearest" else image.float(), grid, mode=mode,
                        padding_mode=padding_mode, align_corners=True)
    return out.to(image.dtype) if mode == "nearest" else out


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from angles in radians: ``(B, 1)`` -> ``(B, 2, 2)``; ``(B, 3)`` Euler -> ``(B, 3, 3)``."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    if angles.shape[1] == 1:
        return torch.stack([torch.stack([c[:, 0], -s[:, 0]], -1), torch.stack([s[:, 0], c[:, 0]], -1)], 1)
    if angles.shape[1] != 3:
        raise ValueError(f"angles must have 1 (2D) or 3 (3D) columns, got {angles.shape[1]}")
    rx = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, c[:, 0], -s[:, 0]], -1),
                      torch.stack([zero, s[:, 0], c[:, 0]], -1)], 1)
    ry = torch.stack([torch.stack([c[:, 1], zero, s[:, 1]], -1), torch.stack([zero, one, zero], -1),
                      torch.stack([-s[:, 1], zero, c[:, 1]], -1)], 1)
    rz = torch.stack([torch.stack([c[:, 2], -s[:, 2], zero], -1), torch.stack([s[:, 2], c[:, 2], zero], -1),
                      torch.stack([zero, zero, one], -1)], 1)
    return rz @ ry @ rx


def affine_matrix(angles: torch.Tensor, scales: torch.Tensor, shears: torch.Tensor | None = None,
                  translation: torch.Tensor | None = None, flips: torch.Tensor | None = None) -> torch.Tensor:
    """Compose ``(B, dim, dim+1)`` matrices from sampled parameters: rotate @ shear @ scale @ flip, then shift.

    Args:
        angles: ``(B, 1)`` in 2D or ``(B, 3)`` in 3D, radians.
        scales: ``(B, dim)`` per-axis zoom of the *content* (2 makes objects twice as large).
        shears: ``(B, dim, dim)`` off-diagonal shear terms (diagonal ignored), or None.
        translation: ``(B, dim)`` voxels, or None.
        flips: ``(B, dim)`` booleans, or None.
    """
    batch, dim = scales.shape
    # Output->input mapping: content zoom s means sampling the input at x / s.
    linear = torch.diag_embed(1.0 / scales)
    if flips is not None:
        linear = torch.diag_embed(1.0 - 2.0 * flips.to(scales.dtype)) @ linear
    if shears is not None:
        eye = torch.eye(dim, device=scales.device, dtype=scales.dtype)
        linear = (eye + shears * (1 - eye)) @ linear
    linear = rotation_matrix(angles) @ linear
    shift = torch.zeros(batch, dim, 1, device=scales.device, dtype=scales.dtype)
    if translation is not None:
        shift = translation.unsqueeze(-1).to(scales.dtype)
    return torch.cat([linear, shift], dim=2)


def affine_displacement(matrix: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Turn centred affine matrices ``(B, dim, dim+1)`` into a voxel displacement field ``(B, dim, *size)``.

    Expressing affines as displacements lets one :func:`warp` call apply an affine and a deformation together.
    """
    return affine_coordinates(matrix, size) - identity_grid(size, matrix.device, matrix.dtype)


def _gaussian_kernels(sigma: torch.Tensor, truncate: float = 3.0) -> torch.Tensor:
    """1D Gaussian kernels, one per row of ``sigma`` (N,), sharing the radius of the largest sigma."""
    radius = max(1, int(math.ceil(truncate * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    safe = sigma.clamp_min(1e-6).unsqueeze(1)
    kernels = torch.exp(-0.5 * (offsets / safe) ** 2)
    return kernels / kernels.sum(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample, per-axis sigma (voxels), replicate padding.

    Each axis is a weighted sum of shifted views of the padded tensor: on CPUs this beats a grouped
    convolution with a thin kernel several times over, and the weights can differ per sample for free.

    Args:
        x: ``(B, C, *size)``.
        sigma: scalar, ``(B,)`` (isotropic), or ``(B, dim)`` (anisotropic, e.g. thick slices along one axis).
    Returns:
        Blurred tensor of the same shape; an axis whose sigmas are all ~0 is skipped (no cost).
    """
    batch, channels, *size = x.shape
    dim = len(size)
    sigma_t = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sigma_t.ndim == 0:
        sigma_t = sigma_t.expand(batch)
    if sigma_t.ndim == 1:
        sigma_t = sigma_t.unsqueeze(1).expand(batch, dim)
    out = x
    for axis in range(dim):
        s = sigma_t[:, axis]
        if float(s.max()) <= 0.05:
            continue
        kernels = _gaussian_kernels(s, truncate)  # (B, L)
        length = kernels.shape[1]
        # Samples with sigma ~ 0 get a delta kernel, so their values stay exact.
        delta = torch.zeros_like(kernels)
        delta[:, length // 2] = 1.0
        kernels = torch.where((s <= 0.05).unsqueeze(1), delta, kernels)
        pad = [0, 0] * dim
        pad[2 * (dim - 1 - axis)] = pad[2 * (dim - 1 - axis) + 1] = length // 2
        padded = F.pad(out, pad, mode="replicate")
        weights = kernels.view(batch, 1, length, *([1] * dim))
        acc = padded.narrow(2 + axis, 0, size[axis]) * weights[:, :, 0]
        for k in range(1, length):
            acc = acc.add_(padded.narrow(2 + axis, k, size[axis]) * weights[:, :, k])
        out = acc
    return out


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``x + u(x)`` by central differences: ``(B, dim, *size)`` -> ``(B, *size)``.

    Values <= 0 mark folding (the map is locally not invertible).
    """
    dim = displacement.shape[1]
    grads = [torch.gradient(displacement[:, k], dim=list(range(1, dim + 1))) for k in range(dim)]
    jac = torch.stack([torch.stack(g, 1) for g in grads], 1)  # (B, dim_out, dim_in, *size)
    jac = jac + torch.eye(dim, device=displacement.device, dtype=displacement.dtype).view(
        1, dim, dim, *([1] * dim))
    return torch.linalg.det(jac.movedim(1, -1).movedim(1, -1))


def affine_coordinates(matrix: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Input voxel coordinates ``(B, dim, *size)`` that centred affines ``(B, dim, dim+1)`` assign to voxels.

    Same convention as :func:`affine_displacement` (``p_in = A @ (x - c) + t + c``), built from broadcast 1D
    ramps instead of a matrix product over a full identity grid.
    """
    dim = len(size)
    batch = matrix.shape[0]
    channels = []
    for i in range(dim):
        coord = None
        for j, n in enumerate(size):
            ramp = torch.arange(n, device=matrix.device, dtype=matrix.dtype) - (n - 1) / 2
            term = matrix[:, i, j].view(batch, 1) * ramp.view(1, n)
            term = term.view(batch, *[n if k == j else 1 for k in range(dim)])
            coord = term if coord is None else coord + term
        offset = matrix[:, i, dim] + (size[i] - 1) / 2
        channels.append(coord + offset.view(batch, *([1] * dim)))
    return torch.stack(channels, 1)


def sample_nearest(labels: torch.Tensor, coords: torch.Tensor, fill: int | None = 0) -> torch.Tensor:
    """Read ``labels (B, C, *in_size)`` at the voxels nearest to ``coords (B, dim, *out_size)``.

    Rounds the coordinates and gathers with one ``torch.take``: exact for integer maps (labels never pass
    through floating point) and several times faster than ``grid_sample`` on CPUs.

    Args:
        fill: value for coordinates outside the input, or None to repeat the border.
    """
    batch, channels, *size = labels.shape
    dim = len(size)
    if coords.shape[1] != dim:
        raise ValueError(f"coords have {coords.shape[1]} channels for a {dim}D label map")
    if fill is not None:
        # A one-voxel border of `fill` turns "outside" into "clamp to the border".
        labels = F.pad(labels, [1, 1] * dim, value=fill)
        size = [s + 2 for s in size]
    shift = 1.5 if fill is not None else 0.5  # +0.5 turns floor into rounding; +1 skips the border
    numel = math.prod(size)
    dtype = coords.dtype if numel < 2**24 else torch.float64  # the flat index is exact below 2^24 in float32
    flat, stride = None, 1
    for axis in reversed(range(dim)):
        index = (coords[:, axis].to(dtype) + shift).floor_().clamp_(0, size[axis] - 1)
        flat = index.mul_(stride) if flat is None else flat.add_(index, alpha=stride)
        stride *= size[axis]
    planes = torch.arange(batch * channels, device=labels.device).view(batch, channels, *([1] * dim)) * stride
    return torch.take(labels, flat.long().unsqueeze(1) + planes)


def flat_index(coords: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """C-order flat indices of integer voxel coordinates ``(..., dim)`` in a grid of ``size``.

    A multiply-and-sum, not a matrix product: CUDA has no integer matmul (``coords @ strides`` on int64 fails
    there with "addmv_impl_cuda not implemented for 'Long'").
    """
    strides = [math.prod(size[k + 1:]) for k in range(len(size))]
    return (coords * torch.tensor(strides, dtype=coords.dtype, device=coords.device)).sum(-1)


def grid_size(size: Sequence[int], factor: int) -> tuple[int, ...]:
    """Sides of a grid ``factor`` times coarser whose corner points coincide with the image corners."""
    return tuple(max(2, round((s - 1) / factor) + 1) for s in size)


def to_grid(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample ``(B, C, *in)`` onto the corner-aligned grid ``size``, blurring first when it is coarser."""
    factor = [(i - 1) / max(o - 1, 1) for i, o in zip(x.shape[2:], size, strict=True)]
    sigma = torch.tensor([max(0.0, (f - 1) / 2) for f in factor], dtype=x.dtype, device=x.device)
    return resize(gaussian_blur(x, sigma.expand(x.shape[0], -1)), size)


def rescale_field(u: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a voxel displacement ``(B, dim, *in)`` to grid ``size``, converting it to the new voxels."""
    ratio = [(o - 1) / max(i - 1, 1) for i, o in zip(u.shape[2:], size, strict=True)]
    scale = torch.tensor(ratio, dtype=u.dtype, device=u.device).view(1, -1, *([1] * len(size)))
    return resize(u, size) * scale


@dataclass(frozen=True)
class SpatialParams:
    """A sampled geometric transform of a batch: everything :func:`apply_spatial` needs, nothing random.

    Output voxel ``x`` of sample ``b`` reads the input, mirrored along the axes ``flips[b]`` marks, at
    ``A_b (x - c) + t_b + c + u_b(x)``. Synthesis (:func:`synthlab.synth.engine.augment_labels`) and segmentation
    augmentation (:mod:`synthlab.augment`) each sample these from their own config, then apply them here.
    """

    matrix: torch.Tensor  # (B, dim, dim + 1) centred output->input affines (the identity where none was drawn)
    flips: torch.Tensor | None = None  # (B, dim) bool: exact mirrors before the affine; None: none
    deformation: torch.Tensor | None = None  # (B, dim, *grid) smooth displacement (voxels), resized to the output
    moved: torch.Tensor | None = None  # (B,) bool: samples the affine or deformation changes; None: every sample


def apply_spatial(x: torch.Tensor, params: SpatialParams, mode: str = "linear", fill: int = 0) -> torch.Tensor:
    """Apply sampled parameters to ``x`` ``(B, C, *size)``; a pure function of both.

    ``mode="linear"`` interpolates (images; zero outside the input); ``"nearest"`` reads the nearest voxel
    exactly (label maps never pass through floating point; ``fill`` outside). Samples that ``params.moved``
    leaves out are only mirrored, never resampled.
    """
    if mode not in ("linear", "nearest"):
        raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")
    if params.matrix.shape[0] != x.shape[0] or params.matrix.shape[1] != x.ndim - 2:
        raise ValueError(f"params hold {params.matrix.shape[0]} {params.matrix.shape[1]}D transforms for a batch "
                         f"of shape {tuple(x.shape)}")
    out = x
    if params.flips is not None:
        out = x.clone()
        for b, axes in enumerate(params.flips.tolist()):
            if flipped := [2 + a for a, f in enumerate(axes) if f]:
                out[b] = x[b:b + 1].flip(flipped)[0]
    size = tuple(x.shape[2:])
    index = params.moved.nonzero().squeeze(1) if params.moved is not None else None
    if index is not None and index.numel() == 0:
        return out
    # Parameters are drawn where their generator lives (often the CPU); they follow x to its device here.
    matrix = (params.matrix if index is None else params.matrix[index]).to(x.device)
    deformation = params.deformation
    if deformation is not None:
        deformation = (deformation if index is None else deformation[index]).to(x.device)
    index = None if index is None else index.to(x.device)
    source = out if index is None else out[index]
    if mode == "nearest":
        coords = affine_coordinates(matrix, size)
        if deformation is not None:
            coords += resize(deformation.to(coords), size)
        warped = sample_nearest(source, coords, fill=fill)
    else:
        displacement = affine_displacement(matrix.to(source), size)
        if deformation is not None:
            displacement = displacement + resize(deformation.to(source), size)
        warped = warp(source, displacement, padding_mode="zeros")
    return warped if index is None else out.index_copy(0, index, warped)
