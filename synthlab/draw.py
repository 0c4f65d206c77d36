"""Drawing from configured ranges: the few random primitives that synthesis and augmentation are built from.

Every draw goes through the caller's ``torch.Generator`` on its device (never torch's global state), and the
number of draws never depends on the drawn values, so equal seeds give equal batches. Sampling lives here, apart
from the pure functions that apply the sampled parameters; the synthetic engine and segmentation's
augmentation both draw through it, so a rotation range or a probability means the same in both.
"""

from __future__ import annotations

import math

import torch

__all__ = ["bernoulli", "log_uniform", "randint", "sample_affine", "uniform"]


def uniform(generator: torch.Generator, shape: tuple[int, ...], bounds: tuple[float, float],
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform draws in ``[low, high]``; ``low == high`` gives a constant (and still consumes the draws)."""
    low, high = float(bounds[0]), float(bounds[1])
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)


def log_uniform(generator: torch.Generator, shape: tuple[int, ...],
                bounds: tuple[float, float]) -> torch.Tensor:
    """Draws whose logarithm is uniform: gamma 0.5 and 2 are equally likely."""
    return uniform(generator, shape, (math.log(bounds[0]), math.log(bounds[1]))).exp()


def bernoulli(generator: torch.Generator, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Boolean coin flips that come up True with probability ``p``."""
    return torch.rand(shape, generator=generator, device=generator.device) < p


def randint(generator: torch.Generator, shape: tuple[int, ...], bounds: tuple[int, int]) -> torch.Tensor:
    """Integers in ``[low, high]``, both ends included."""
    low, high = int(bounds[0]), int(bounds[1])
    return torch.randint(low, high + 1, shape, generator=generator, device=generator.device)


def sample_affine(generator: torch.Generator, rows: int, dim: int, rotation: float,
                  scale: tuple[float, float], shear: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotation angles (radians; uniform in +-``rotation`` degrees per plane), per-axis scales and shears.

    Returns ``angles (rows, 1 | 3)``, ``scales (rows, dim)`` and ``shears (rows, dim, dim)``, drawn in that
    order, ready for :func:`synthlab.spatial.affine_matrix`. Label augmentation and the shape bank share it, so
    both mean the same by a rotation range.
    """
    n_angles = dim * (dim - 1) // 2  # one rotation per plane of axes
    angles = uniform(generator, (rows, n_angles), (-rotation, rotation)) * (math.pi / 180)
    scales = uniform(generator, (rows, dim), scale)
    shears = uniform(generator, (rows, dim, dim), (-shear, shear))
    return angles, scales, shears
