"""MIND-SSC: a modality-independent neighbourhood descriptor (self-similarity context).

Heinrich et al. describe a voxel by how similar small patches *around it* are to each other, not by its
intensity. Two images of the same anatomy in different contrasts (T1 and FLAIR, MR and CT) then get similar
descriptors wherever the same structures meet, so a plain sum of squared differences can compare them.

Self-similarity context (SSC): take the ``2 * dim`` neighbours at distance ``dilation`` along each axis (the
6-neighbourhood in 3D). For every pair of neighbours that are *not* opposite each other (12 pairs in 3D, 4 in
2D), compare the patch around one neighbour with the patch around the other:

    D_pq(x) = sum_y w(y) (I(x + p + y) - I(x + q + y))^2        (w: Gaussian patch weights)
    V(x)    = mean_pq D_pq(x)                                     (local noise/contrast estimate)
    MIND_pq(x) = exp(-D_pq(x) / V(x)),  rescaled so that the largest channel at each voxel is 1.

Dividing by ``V`` cancels any affine intensity change ``a * I + b`` exactly, and the descriptor moves with the
image under translations (away from the borders).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dims import check_dim
from .spatial import gaussian_blur

__all__ = ["MindConfig", "mind_ssc", "shifted_view", "ssc_pairs"]


@dataclass(frozen=True)
class MindConfig:
    """Settings of the MIND-SSC descriptor.

    Attributes:
        dilation: distance (voxels) of the neighbours from the centre voxel; 2 is the usual choice.
        sigma: standard deviation (voxels) of the Gaussian patch weights; 0.8 covers about a 3-voxel patch.
        variance_clamp: ``V`` is clamped to ``[mean(V) / c, mean(V) * c]`` so flat regions and strong edges do
            not produce 0/0 or all-zero descriptors. Relative bounds keep the intensity-affine invariance.
    """

    dilation: int = 2
    sigma: float = 0.8
    variance_clamp: float = 1000.0

    def __post_init__(self) -> None:
        if self.dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {self.dilation}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        if self.variance_clamp <= 1:
            raise ValueError(f"variance_clamp must exceed 1, got {self.variance_clamp}")


def ssc_pairs(dim: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unit-offset pairs of the self-similarity context: neighbours along the axes that are not opposite.

    3D gives the 12 edges of the octahedron spanned by the 6-neighbourhood; 2D the 4 edges of the diamond.
    """
    check_dim(dim)
    neighbours = []
    for axis, sign in itertools.product(range(dim), (-1, 1)):
        offset = [0] * dim
        offset[axis] = sign
        neighbours.append(tuple(offset))
    return [(p, q) for p, q in itertools.combinations(neighbours, 2)
            if any(a + b != 0 for a, b in zip(p, q, strict=True))]


def shifted_view(padded: torch.Tensor, offset: Sequence[int], pad: int, size: Sequence[int]) -> torch.Tensor:
    """The values ``I(x + offset)`` on the original grid, as a view of the padded image (no copy).

    Args:
        padded: ``(B, C, *size)`` image padded by ``pad`` voxels on every side (``|offset| <= pad``).
    Looping over many offsets (a neighbourhood, a search window) therefore costs no memory.
    """
    out = padded
    for axis, (shift, length) in enumerate(zip(offset, size, strict=True)):
        out = out.narrow(2 + axis, pad + shift, length)
    return out


def mind_ssc(image: torch.Tensor, config: MindConfig | None = None) -> torch.Tensor:
    """MIND-SSC descriptor of a batch of images.

    Args:
        image: ``(B, 1, *size)`` with 2 or 3 spatial axes (a multi-channel input is averaged first).
        config: descriptor settings; defaults to :class:`MindConfig`.
    Returns:
        ``(B, n_pairs, *size)`` in ``(0, 1]``: 12 channels in 3D, 4 in 2D.

    Example:
        >>> mind_ssc(torch.rand(1, 1, 16, 16, 16)).shape
        torch.Size([1, 12, 16, 16, 16])
    """
    config = config or MindConfig()
    if image.ndim not in (4, 5):
        raise ValueError(f"image must be (B, C, *size) with 2 or 3 spatial axes, got {tuple(image.shape)}")
    dim = image.ndim - 2
    x = image.float().mean(1, keepdim=True)
    size = tuple(x.shape[2:])
    pad = config.dilation
    padded = F.pad(x, [pad] * (2 * dim), mode="replicate")

    def neighbour(unit: tuple[int, ...]) -> torch.Tensor:
        return shifted_view(padded, tuple(k * config.dilation for k in unit), pad, size)

    squared = torch.cat([(neighbour(p) - neighbour(q)) ** 2 for p, q in ssc_pairs(dim)], dim=1)
    distance = gaussian_blur(squared, config.sigma)
    variance = distance.mean(1, keepdim=True)
    typical = variance.mean(dim=tuple(range(1, dim + 2)), keepdim=True)
    floor = typical / config.variance_clamp + torch.finfo(x.dtype).tiny
    variance = torch.clamp(variance, min=floor, max=typical * config.variance_clamp + floor)
    # exp(-(D - min D) / V) is exp(-D / V) divided by its largest channel, computed without underflow.
    return torch.exp(-(distance - distance.amin(1, keepdim=True)) / variance)
