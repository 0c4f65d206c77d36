"""Smooth random fields: Gaussian noise drawn on coarse grids and interpolated up.

Synthesis draws its label maps, bias fields, textures and deformations from these, and the registration
protocol its known deformations. A field's smoothness comes from the coarse grid, so the cost is one small
``randn`` and one interpolation per octave instead of a large convolution. Every draw takes a generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .spatial import resize

__all__ = ["coarse_shape", "pyramid_noise", "smooth_noise"]


def _size_tuple(size: int | Sequence[int], dim: int) -> tuple[int, ...]:
    if isinstance(size, int):
        return (size,) * dim
    size = tuple(int(s) for s in size)
    if len(size) != dim:
        raise ValueError(f"size {size} has {len(size)} entries but dim is {dim}")
    return size


def smooth_noise(
    batch: int,
    channels: int,
    size: Sequence[int],
    coarse: int | Sequence[int],
    generator: torch.Generator,
    std: torch.Tensor | float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian noise drawn on a coarse grid and upsampled linearly: a cheap smooth random field.

    Smoothness comes from the coarse grid (its side sets the correlation length, ``size / coarse``), so the cost
    is one small ``randn`` plus one interpolation, instead of a large convolution.

    Args:
        batch, channels: leading shape of the output.
        size: output spatial size.
        coarse: side(s) of the coarse grid (at least 2).
        generator: the source of randomness.
        std: scalar or per-sample ``(B,)`` / ``(B, C)`` standard deviation.
    Returns:
        ``(B, C, *size)`` field.
    """
    dim = len(size)
    coarse = _size_tuple(coarse, dim)
    device = generator.device if device is None else torch.device(device)
    noise = torch.randn((batch, channels, *[max(2, c) for c in coarse]), generator=generator,
                        device=device, dtype=dtype)
    if torch.is_tensor(std):
        noise = noise * std.to(noise).reshape(batch, -1, *([1] * dim))
    else:
        noise = noise * std
    return resize(noise, size)


def coarse_shape(size: Sequence[int], side: int) -> tuple[int, ...]:
    """A coarse grid with ``side`` points along the longest axis, proportionally fewer (>= 2) elsewhere.

    A field drawn on it and upsampled to ``size`` then has the same correlation length along every axis, even
    for non-cubic volumes.
    """
    longest = max(size)
    return tuple(max(2, round(side * s / longest)) for s in size)


def pyramid_noise(
    batch: int,
    channels: int,
    size: Sequence[int],
    coarse_sides: Sequence[int],
    generator: torch.Generator,
    std: torch.Tensor | float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Multi-octave smooth noise summed coarse to fine, with a single interpolation to the full ``size``.

    Octave ``k`` is Gaussian noise on a grid with ``coarse_sides[k]`` points along the longest axis (proportionally
    fewer elsewhere, see :func:`coarse_shape`), so a field is equally smooth along every axis of a non-cubic
    volume. Each octave is added on the next finer grid rather than at full size, so the cost is one full-size
    interpolation whatever the number of octaves (coarse octaves pass through several linear interpolations and
    come out slightly smoother). ``std`` is a scalar, ``(B,)``, ``(B, n_scales)`` (one SD per sample and
    octave) or ``(B, C, n_scales)`` (per sample, channel and octave).
    """
    device = generator.device if device is None else torch.device(device)
    if not coarse_sides:
        raise ValueError("coarse_sides must name at least one scale")
    # Octaves are visited coarse to fine; remember which column of a (B, n_scales) std belongs to each.
    order = sorted(range(len(coarse_sides)), key=lambda k: coarse_sides[k])
    field = None
    for k in order:
        grid = coarse_shape(size, coarse_sides[k]) if max(size) >= coarse_sides[k] else tuple(size)
        s = std[..., k] if torch.is_tensor(std) and std.ndim >= 2 else std
        octave = smooth_noise(batch, channels, grid, grid, generator, s, device)
        field = octave if field is None else resize(field, grid) + octave
    return resize(field, size)
