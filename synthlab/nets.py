"""Backbones and heads: an anatomix-style UNet for 2D or 3D, its presets, projection heads and crop embeddings.

The UNet follows anatomix (itself adapted from CUT): a stem convolution, then per level two 3x3(x3)
convolutions with reflect padding, normalisation and ReLU, max-pooling down, nearest upsampling, concatenated
skips and a final 3x3(x3) convolution without activation. With the ``"anatomix"`` preset in 3D it has exactly
the 5,899,344 parameters of the released network.

Shapes, for a ``depth``-level net (``depth = len(widths)``)::

    x            (B, in_channels, *size)          every side a multiple of 2**depth, at least 2 * 2**depth
    net(x)       (B, out_channels, *size)         per-voxel features
    net.encode   [(B, widths[k], *size / 2**k) for k < depth] + [(B, bottleneck, *size / 2**depth)]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dims import check_dim, interp_mode, layers

__all__ = ["FEATURE_SOURCES", "PRESETS", "RANDOM_PRESET", "LevelFeatures", "ProjectionHead", "UNet", "build_unet",
           "crop_embedding", "feature_network", "kaiming_init", "seeded", "unet_config"]

NORMS = ("batch", "instance")


class ConvUnit(nn.Module):
    """3x3(x3) reflect-padded convolution -> norm -> ReLU.

    ``forward`` returns both the raw convolution output (anatomix taps its contrastive layers there, before
    the norm) and the activated output that feeds the next layer. The convolution has a bias only under
    instance norm: batch norm's shift makes a bias redundant, affine-free instance norm does not.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        ops = layers(dim)
        self.conv = ops.conv(in_channels, out_channels, 3, padding=1, padding_mode="reflect",
                             bias=norm == "instance")
        self.norm = ops.batch_norm(out_channels) if norm == "batch" else ops.instance_norm(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.conv(x)
        return raw, F.relu(self.norm(raw))


def _double(dim: int, in_channels: int, out_channels: int, norm: str) -> nn.ModuleList:
    return nn.ModuleList([ConvUnit(dim, in_channels, out_channels, norm),
                          ConvUnit(dim, out_channels, out_channels, norm)])


class UNet(nn.Module):
    """anatomix-style UNet for ``dim`` 2 or 3.

    Args:
        dim: number of spatial dimensions (2 or 3).
        in_channels: image channels.
        out_channels: per-voxel feature channels of the output.
        widths: channels of the encoder levels, finest first; ``len(widths)`` is the number of poolings.
        bottleneck: channels at the coarsest resolution.
        norm: ``"batch"`` (anatomix) or ``"instance"`` (per-sample statistics: preferable under DDP and for
            batch size 1 at inference, where batch statistics of one sample are noise).

    Attributes:
        config: the constructor arguments; ``UNet(**net.config)`` rebuilds the architecture (checkpoints
            store it).
        downsample_factor: ``2 ** len(widths)``; every input side must be a multiple of it.
        tap_channels: channels of the maps returned by ``forward(x, return_taps=True)``, in order.
        encoder_channels: channels of the maps returned by :meth:`encode`, in order.
        level_channels: channels of the maps returned by ``forward(x, return_levels=True)``, in order.
    """

    feature_source = "output"  # its forward gives the features (see feature_network)

    def __init__(self, dim: int, in_channels: int = 1, out_channels: int = 16,
                 widths: tuple[int, ...] | list[int] = (16, 32, 64, 128), bottleneck: int = 256,
                 norm: str = "batch"):
        super().__init__()
        check_dim(dim)
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        for field, value in (("in_channels", in_channels), ("out_channels", out_channels),
                             ("bottleneck", bottleneck)):
            if int(value) < 1:
                raise ValueError(f"{field} must be a positive int, got {value!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.config: dict[str, Any] = {"dim": dim, "in_channels": int(in_channels),
                                       "out_channels": int(out_channels), "widths": list(widths),
                                       "bottleneck": int(bottleneck), "norm": norm}
        self.dim, self.in_channels, self.out_channels = dim, int(in_channels), int(out_channels)
        self.depth = len(widths)
        self.downsample_factor = 2 ** self.depth

        ops = layers(dim)
        self.stem = ConvUnit(dim, in_channels, widths[0], norm)
        self.encoder = nn.ModuleList(_double(dim, c_in, c_out, norm)
                                     for c_in, c_out in zip((widths[0], *widths[:-1]), widths, strict=True))
        self.pool = ops.max_pool(2)
        self.bottleneck = _double(dim, widths[-1], bottleneck, norm)
        coarser = (bottleneck, *reversed(widths[1:]))  # channels arriving from below at each decoder level
        self.decoder = nn.ModuleList(_double(dim, below + skip, skip, norm)
                                     for below, skip in zip(coarser, reversed(widths), strict=True))
        self.head = ops.conv(widths[0], out_channels, 3, padding=1, padding_mode="reflect",
                             bias=norm == "instance")

        self.encoder_channels = [*widths, int(bottleneck)]
        self.level_channels = [*self.encoder_channels, *reversed(widths), int(out_channels)]
        # Taps as in anatomix: last encoder level, bottleneck, every decoder level but the full-resolution one
        # (it sits at the output's resolution, which the output tap already covers), output.
        self.tap_channels = [widths[-1], int(bottleneck), *list(reversed(widths))[:-1], int(out_channels)]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the shape if ``x`` cannot go through the network."""
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"input must be (B, {self.in_channels}, *size) with {self.dim} spatial axes, "
                             f"got shape {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        factor = self.downsample_factor
        if any(s % factor for s in size):
            raise ValueError(f"input size {size} is not divisible by the downsample factor {factor} "
                             f"(2**{self.depth} poolings); pad or crop each side to a multiple of {factor}")
        if min(size) < 2 * factor:
            raise ValueError(f"input size {size} leaves a 1-voxel bottleneck, too small for reflect padding; "
                             f"use sides of at least {2 * factor}")

    def forward(self, x: torch.Tensor, return_taps: bool = False, encoder_only: bool = False,
                return_levels: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """Per-voxel features ``(B, out_channels, *size)``.

        Args:
            x: ``(B, in_channels, *size)``.
            return_taps: also return the multi-scale maps listed in ``tap_channels`` (raw convolution outputs,
                before the norm, as anatomix taps them); the result is then ``(features, taps)``.
            encoder_only: return :meth:`encode`'s list instead. It is a flag of ``forward`` (not only a
                method) so that objectives can reach the encoder through a DistributedDataParallel wrapper.
            return_levels: return every level's activations instead, coarse and fine: the encoder's (as
                :meth:`encode`), each decoder level's, then the output (channels ``level_channels``).
        """
        self.check_input(x)
        taps, skips = [], []
        h = self.stem(x)[1]
        for first, second in self.encoder:
            raw, h = second(first(h)[1])
            skips.append(h)
            h = self.pool(h)
        taps.append(raw)  # second convolution of the last encoder level
        raw, h = self.bottleneck[0](h)
        taps.append(raw)
        h = self.bottleneck[1](h)[1]
        if encoder_only:
            return [*skips, h]
        levels = [*skips, h]
        for level, (first, second) in enumerate(self.decoder):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            raw, h = first(torch.cat([skips[-1 - level], h], dim=1))
            if level < self.depth - 1:
                taps.append(raw)
            h = second(h)[1]
            levels.append(h)
        out = self.head(h)
        if return_levels:
            return [*levels, out]
        return (out, [*taps, out]) if return_taps else out

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps, finest first, ending with the bottleneck (channels ``encoder_channels``)."""
        return self(x, encoder_only=True)


PRESETS: dict[str, dict[str, Any]] = {
    # The ICLR'25 anatomix network: 5,899,344 parameters in 3D; inputs of 32^3 or more (128^3 in the paper).
    "anatomix": {"widths": (16, 32, 64, 128), "bottleneck": 256, "out_channels": 16, "norm": "batch"},
    # Half width, same depth: CPU pretraining at 64^3.
    "small": {"widths": (8, 16, 32, 64), "bottleneck": 128, "out_channels": 16, "norm": "batch"},
    # Three poolings, a few thousand parameters: CI and tests (sides of 16 or more).
    "tiny": {"widths": (4, 8, 16), "bottleneck": 32, "out_channels": 8, "norm": "batch"},
}
# The architecture of every random-network baseline (a checkpoint of "none" in the evaluations): fixed, so a
# baseline does not change with the active profile.
RANDOM_PRESET = "small"


def unet_config(preset: str, dim: int, **overrides: Any) -> dict[str, Any]:
    """The :class:`UNet` arguments of a named preset; ``overrides`` replace any of them."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    allowed = {"in_channels", "out_channels", "widths", "bottleneck", "norm"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown UNet override(s) {unknown}; allowed: {sorted(allowed)}")
    return {"dim": dim, **PRESETS[preset], **overrides}


def build_unet(preset: str, dim: int, **overrides: Any) -> UNet:
    """A :class:`UNet` from a named preset; ``overrides`` replace any of its constructor arguments."""
    return UNet(**unet_config(preset, dim, **overrides))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Initialise modules inside the block from ``seed``, leaving torch's global generator as it was.

    Module initialisers draw from the global generator; forking it makes "a fresh network of seed s" the same
    network wherever it is built (training, a random baseline, a notebook) without changing what the caller
    draws next.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class ProjectionHead(nn.Module):
    """MLP on feature vectors ``(N, in_channels)``: ``layers - 1`` x (Linear, BatchNorm, ReLU), then Linear.

    It works on sampled vectors rather than whole maps (the contrastive loss samples voxels first and VoCo
    pools crops first), so one class serves 2D and 3D. Heads are discarded after pretraining.

    Args:
        in_channels, hidden, out: widths.
        layers: number of Linear layers (1 is a plain linear map).
        norm_affine: learn BatchNorm's scale and shift (VoCo's head uses affine-free BatchNorm).
        dropout: probability of plain element-wise dropout on the input (VoCo's student head uses 0.2).
        bias: Linear layers with a bias (anatomix's head has none: the batch norms shift).
        final_norm: an affine-free BatchNorm after the last Linear (anatomix), so projections start centred.
        running_stats: batch norms keep running statistics for eval mode; VoCo's always normalise by the batch.
    """

    def __init__(self, in_channels: int, hidden: int = 256, out: int = 128, layers: int = 3,
                 norm_affine: bool = True, dropout: float = 0.0, bias: bool = True, final_norm: bool = False,
                 running_stats: bool = True):
        super().__init__()
        if layers < 1:
            raise ValueError(f"head_layers must be >= 1, got {layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        # Dropout sits outside the MLP so that heads with and without it share state-dict keys (EMA teachers).
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        blocks: list[nn.Module] = []
        width = in_channels
        for _ in range(layers - 1):
            blocks += [nn.Linear(width, hidden, bias=bias),
                       nn.BatchNorm1d(hidden, affine=norm_affine, track_running_stats=running_stats),
                       nn.ReLU(inplace=True)]
            width = hidden
        blocks.append(nn.Linear(width, out, bias=bias))
        if final_norm:
            blocks.append(nn.BatchNorm1d(out, affine=False, track_running_stats=running_stats))
        self.mlp = nn.Sequential(*blocks)
        self.out_features = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.dropout(x))


class LevelFeatures(nn.Module):
    """Several levels of a UNet brought back to the input grid (linear interpolation) and set side by side.

    ``levels="encoder"`` is what an encoder-only pretraining (VoCo) gives: it stands in for the network wherever
    features are read (probes, registration), since a decoder that pretraining never trained says nothing about
    what pretraining learned; each level is at unit norm per voxel so that none dominates a cosine.
    ``levels="all"`` (every encoder and decoder level and the output) is what a linear probe reads: everything
    the network has, for a head that standardises each channel itself.
    """

    def __init__(self, net: UNet, levels: str = "encoder") -> None:
        super().__init__()
        if levels not in ("encoder", "all"):
            raise ValueError(f"levels must be 'encoder' or 'all', got {levels!r}")
        self.net, self.levels = net, levels
        self.feature_source = levels
        self.dim, self.in_channels, self.config = net.dim, net.in_channels, net.config
        self.downsample_factor = net.downsample_factor
        self.out_channels = sum(net.encoder_channels if levels == "encoder" else net.level_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[2:])
        maps = self.net(x, encoder_only=True) if self.levels == "encoder" else self.net(x, return_levels=True)
        upsampled = [F.interpolate(level, size=size, mode=interp_mode(self.dim), align_corners=False)
                     if tuple(level.shape[2:]) != size else level for level in maps]
        if self.levels == "encoder":
            upsampled = [F.normalize(level, dim=1) for level in upsampled]
        return torch.cat(upsampled, dim=1)

    def linear_readout(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``conv1x1(self(x), weight, bias)`` without building the full-resolution stack of every level.

        A 1x1 head and linear interpolation are both linear and commute, so each level's share of the head is
        applied at that level's own resolution and only ``K`` channels are upsampled: a linear probe predicts
        a volume at the cost of one network pass (the stack of ``levels="all"`` holds hundreds of channels per
        voxel). Only ``levels="all"``: the per-level unit norm of ``"encoder"`` does not commute.

        Args:
            x: ``(B, in_channels, *size)``; weight: ``(K, out_channels)``; bias: ``(K,)``.
        Returns:
            ``(B, K, *size)`` logits, equal to the plain path up to float rounding.
        """
        if self.levels != "all":
            raise ValueError("linear_readout needs levels='all' (the encoder levels are normalised per voxel)")
        size, ones = tuple(x.shape[2:]), [1] * self.dim
        logits = bias.view(1, -1, *ones).to(x.dtype)
        for level, part in zip(self.net(x, return_levels=True), weight.split(self.net.level_channels, dim=1),
                               strict=True):
            share = torch.einsum("bc...,kc->bk...", level, part)
            if tuple(share.shape[2:]) != size:
                share = F.interpolate(share, size=size, mode=interp_mode(self.dim), align_corners=False)
            logits = logits + share
        return logits


FEATURE_SOURCES = ("output", "encoder", "all")


def feature_network(net: UNet, source: str = "output") -> nn.Module:
    """The module whose outputs are ``net``'s features of kind ``source``: the network itself (``"output"``), its
    encoder levels (``"encoder"``) or every level (``"all"``), see :class:`LevelFeatures`."""
    if source not in FEATURE_SOURCES:
        raise ValueError(f"feature source must be one of {FEATURE_SOURCES}, got {source!r}")
    return net if source == "output" else LevelFeatures(net, source)


def kaiming_init(module: nn.Module, gain_std: float = 0.02) -> None:
    """anatomix's initialisation: Kaiming-normal (fan-in) weights and zero biases for convolutions and linear
    layers; spatial batch norms get scales from N(1, ``gain_std``) and zero shifts (1D batch norms keep
    PyTorch's defaults, as in anatomix)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.normal_(layer.weight, 1.0, gain_std)
            nn.init.zeros_(layer.bias)


def crop_embedding(maps: list[torch.Tensor]) -> torch.Tensor:
    """VoCo's crop embedding: average each map ``(M, C_k, *size_k)`` globally and concatenate.

    Returns ``(M, sum C_k)``.
    """
    return torch.cat([m.flatten(2).mean(2) for m in maps], dim=1)
