"""Dense features from a pretrained network, for volumes of any size: sliding-window inference.

A UNet with ``k`` poolings only accepts sides divisible by ``2**k`` and may not fit a whole volume in memory,
so the volume is reflect-padded to a multiple of the network's downsample factor, cut into overlapping windows
whose corners sit on multiples of that factor (so every window sees the pooling grid of the whole volume), and
the window outputs are blended with weights that fall off towards the window borders, where features have
seen the least context.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .dims import check_dim
from .progress import progress_iter
from .regions import prototype_softmax

__all__ = ["EvalMode", "blending_weights", "cosine_map", "extract_features", "normalize_features",
           "prototype_similarity", "view_agreement", "window_starts"]


def _first_conv(net: nn.Module) -> nn.Conv2d | nn.Conv3d:
    """The network's first convolution: its weight tells the spatial dimension and the input channels."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            return module
    raise ValueError("net has no Conv2d/Conv3d layer, so its spatial dimension is unknown")


def window_starts(length: int, window: int, overlap: float, step_multiple: int = 1) -> list[int]:
    """Start indices of windows covering ``[0, length)`` with ``overlap``, on multiples of ``step_multiple``.

    The last window ends exactly at ``length`` (``length`` and ``window`` are assumed multiples of
    ``step_multiple``, which the padding in :func:`extract_features` guarantees).
    """
    if window >= length:
        return [0]
    stride = max(step_multiple, int(window * (1 - overlap)) // step_multiple * step_multiple)
    count = math.ceil((length - window) / stride) + 1
    return sorted({min(k * stride, length - window) for k in range(count)})


def blending_weights(size: Sequence[int], kind: Literal["gaussian", "cosine", "constant"] = "gaussian",
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Weights ``(*size)`` that favour the window centre: Gaussian (sigma = side / 8), raised cosine, or flat.

    They never reach zero, so every voxel covered by at least one window gets a defined average.
    """
    profiles = []
    for side in size:
        position = torch.arange(side, device=device, dtype=torch.float32) - (side - 1) / 2
        if kind == "gaussian":
            profile = torch.exp(-0.5 * (position / max(side / 8, 1e-3)) ** 2)
        elif kind == "cosine":
            profile = 0.5 * (1 + torch.cos(math.pi * position / (side / 2 + 1)))
        elif kind == "constant":
            profile = torch.ones_like(position)
        else:
            raise ValueError(f"blend must be 'gaussian', 'cosine' or 'constant', got {kind!r}")
        profiles.append(profile.clamp_min(1e-3))
    weights = profiles[0]
    for profile in profiles[1:]:
        weights = weights.unsqueeze(-1) * profile
    return weights


class EvalMode:
    """Put a network in eval mode for the duration of a block (BatchNorm must not use window statistics)."""

    def __init__(self, net: nn.Module) -> None:
        self.net, self.was_training = net, net.training

    def __enter__(self) -> nn.Module:
        return self.net.eval()

    def __exit__(self, *exc: object) -> None:
        self.net.train(self.was_training)


def _batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def extract_features(
    net: nn.Module,
    volume: torch.Tensor,
    *,
    window: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    blend: Literal["gaussian", "cosine", "constant"] = "gaussian",
    progress: bool = True,
) -> torch.Tensor:
    """Run ``net`` over ``volume`` window by window and stitch the outputs into one feature map.

    Args:
        net: maps ``(B, C_in, *size)`` to ``(B, C, *size)``; an attribute ``downsample_factor`` (default 1)
            says which multiple the input sides must be. It runs in eval mode; its mode is restored after.
        volume: ``(*size)`` or ``(C_in, *size)`` image, any size (odd sides are fine).
        window: window side(s) in voxels, rounded up to the downsample factor; None: the whole volume at once.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.
        batch_size: windows per forward pass.
        device: where the network runs; None uses the device of the network's parameters. The result is
            returned on the volume's device.
        blend: window weighting for the overlaps.
        progress: show a tqdm progress bar over windows.
    Returns:
        ``(C, *size)`` features.
    """
    first = _first_conv(net)
    dim, in_channels = check_dim(first.weight.ndim - 2), first.in_channels
    if volume.ndim == dim:
        volume = volume.unsqueeze(0)
    if volume.ndim != dim + 1 or volume.shape[0] != in_channels:
        raise ValueError(f"volume must be (*size) or ({in_channels}, *size) with {dim} spatial axes for this "
                         f"network, got shape {tuple(volume.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(iter(net.parameters()), torch.empty(0)).device
    factor = int(getattr(net, "downsample_factor", 1))
    # A net with k poolings needs a multiple of 2**k, and at least 2 voxels at its coarsest level.
    smallest = 2 * factor if factor > 1 else 1
    size = tuple(volume.shape[1:])
    padded_size = tuple(max(smallest, math.ceil(s / factor) * factor) for s in size)
    if window is None:
        window_size = padded_size
    else:
        sides = (window,) * dim if isinstance(window, int) else tuple(window)
        if len(sides) != dim or min(sides) < 1:
            raise ValueError(f"window must be a positive int or {dim} positive ints, got {window!r}")
        window_size = tuple(min(max(smallest, math.ceil(w / factor) * factor), p)
                            for w, p in zip(sides, padded_size, strict=True))

    # Reflect needs the pad to be shorter than the side; tiny inputs fall back to replicate.
    pad = []
    for s, p in zip(reversed(size), reversed(padded_size), strict=True):
        pad += [0, p - s]
    mode = "reflect" if all(p - s < s for s, p in zip(size, padded_size, strict=True)) else "replicate"
    padded = F.pad(volume.float().unsqueeze(0), pad, mode=mode)[0] if any(pad) else volume.float()

    starts = list(itertools.product(*(window_starts(p, w, overlap, factor)
                                      for p, w in zip(padded_size, window_size, strict=True))))
    weights = blending_weights(window_size, blend, device)
    total: torch.Tensor | None = None
    norm = torch.zeros(padded_size, device=device)
    with EvalMode(net), torch.inference_mode():
        groups = list(_batched(starts, batch_size))
        for group in progress_iter(groups, "features", enabled=progress, nested=True):
            crops = []
            for corner in group:
                crop = padded
                for axis, (start, side) in enumerate(zip(corner, window_size, strict=True)):
                    crop = crop.narrow(1 + axis, start, side)
                crops.append(crop)
            outputs = net(torch.stack(crops).to(device)).float()
            if total is None:
                total = torch.zeros((outputs.shape[1], *padded_size), device=device)
            for corner, output in zip(group, outputs, strict=True):
                region = tuple(slice(start, start + side)
                               for start, side in zip(corner, window_size, strict=True))
                total[(slice(None), *region)] += output * weights
                norm[region] += weights
    assert total is not None
    crop = (slice(None), *(slice(0, s) for s in size))
    return (total / norm)[crop].to(volume.device)


def normalize_features(features: torch.Tensor, mode: Literal["l2", "zscore"] = "l2", channel_dim: int = 0,
                       eps: float = 1e-6) -> torch.Tensor:
    """Put network features on a common scale: unit L2 norm per voxel, or z-score per channel over voxels.

    Raw UNet outputs have arbitrary per-channel scales; distances between them only mean something after this.
    """
    if mode == "l2":
        return features / features.norm(dim=channel_dim, keepdim=True).clamp_min(eps)
    if mode == "zscore":
        spatial = tuple(d for d in range(features.ndim) if d != channel_dim % features.ndim)
        mean = features.mean(dim=spatial, keepdim=True)
        std = features.std(dim=spatial, keepdim=True)
        return (features - mean) / std.clamp_min(eps)
    raise ValueError(f"mode must be 'l2' or 'zscore', got {mode!r}")


def cosine_map(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per-voxel cosine similarity of two feature maps ``(C, *size)`` -> ``(*size)`` in [-1, 1]."""
    return (normalize_features(first) * normalize_features(second)).sum(0)


def view_agreement(net: nn.Module, first: torch.Tensor, second: torch.Tensor, centred: bool = True) -> torch.Tensor:
    """Per-voxel cosine similarity of ``net``'s features between two renderings of one label map.

    What anatomix-style pretraining asks for: the same anatomy gives the same feature whatever the appearance.
    ``centred`` first subtracts each channel's mean over the image: an untrained network's features share one
    large common direction, so their plain cosine is near 1 everywhere whatever the images show (0.95 between
    two renderings in notebook 02), and training that spreads features apart *lowers* it. The centred cosine
    compares how each voxel differs from the rest of its image, which is what telling anatomy apart needs.
    Inputs are ``(1, *size)`` images; the result is ``(*size)`` in [-1, 1].
    """
    maps = [extract_features(net, view, progress=False) for view in (first, second)]
    if centred:
        maps = [m - m.flatten(1).mean(1).view(-1, *([1] * (m.ndim - 1))) for m in maps]
    return cosine_map(*maps)


def prototype_similarity(net: nn.Module, image: torch.Tensor, labels: torch.Tensor,
                         temperature: float = 0.07) -> torch.Tensor:
    """RaSD's push-term matrix ``softmax_k(p_j . p_k / t)`` over the regions present in ``labels``.

    Row ``j`` says which region's prototype (mean feature) region ``j`` resembles most; a network that tells the
    regions apart gives the identity. ``image`` and ``labels`` are ``(1, *size)``.
    """
    return prototype_softmax(extract_features(net, image, progress=False), labels, temperature)
