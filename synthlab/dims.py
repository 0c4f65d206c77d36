"""What "2D" and "3D" mean in synthlab, decided in this one module.

Every other module takes a ``dim`` argument (2 or 3, as MONAI's ``spatial_dims``) and asks here for what
depends on it: the check and its error message, the layer classes, the functional convolution, the linear
interpolation mode, the channels-last memory format, and how a 2D network reads a 3D volume.

How a 2D network reads a volume: as slices along the volume's coarsest-spacing axis, ties going to the last
axis (inferior-superior, axial, in a RAS-stored scan). An acquisition's slice axis is usually its coarsest, so
slices keep the in-plane resolution; for isotropic data the rule gives the axial slices radiologists read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DIMS", "Layers", "channels_last", "check_dim", "conv_fn", "from_slices", "interp_mode", "layers",
           "slice_axis", "to_slices"]

DIMS = (2, 3)  # the spatial dimensions synthlab works in: its flags' choices, and what check_dim allows


def check_dim(dim: int) -> int:
    """Return ``dim`` if it is 2 or 3, else raise the one ValueError that names the field."""
    if dim not in DIMS:
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    return dim


@dataclass(frozen=True)
class Layers:
    """The layer classes a network of one dimension is built from."""

    conv: type[nn.Module]
    batch_norm: type[nn.Module]
    instance_norm: type[nn.Module]
    max_pool: type[nn.Module]


_LAYERS = {2: Layers(nn.Conv2d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.MaxPool2d),
           3: Layers(nn.Conv3d, nn.BatchNorm3d, nn.InstanceNorm3d, nn.MaxPool3d)}


def layers(dim: int) -> Layers:
    """Conv, batch norm, instance norm and max-pool classes for ``dim`` spatial dimensions."""
    return _LAYERS[check_dim(dim)]


def conv_fn(dim: int) -> Callable[..., torch.Tensor]:
    """The functional convolution for ``dim`` spatial dimensions."""
    return F.conv2d if check_dim(dim) == 2 else F.conv3d


def interp_mode(dim: int) -> str:
    """The linear interpolation mode ``F.interpolate`` needs for ``dim`` spatial dimensions."""
    return "bilinear" if check_dim(dim) == 2 else "trilinear"


def channels_last(dim: int) -> torch.memory_format:
    """Channels-last layout for ``dim``: what tensor cores, and interpolating many channels on a CPU, prefer."""
    return torch.channels_last if check_dim(dim) == 2 else torch.channels_last_3d


def slice_axis(spacing: Sequence[float], shape: Sequence[int] | None = None) -> int:
    """The axis a 2D network slices a volume of voxel ``spacing`` along: the coarsest, ties to the last; a
    single-slice axis in ``shape`` (a 2D image stored as a volume) before any."""
    if len(spacing) != 3 or (shape is not None and len(shape) != 3):
        raise ValueError(f"spacing and shape must give three axes, got {tuple(spacing)} and {shape}")
    thin = [axis for axis in range(3) if shape is not None and shape[axis] == 1]
    return thin[-1] if thin else max(range(3), key=lambda axis: (round(float(spacing[axis]), 3), axis))


def to_slices(volume: torch.Tensor, dim: int, axis: int = -1) -> torch.Tensor:
    """A volume ``(X, Y, Z)`` as network inputs: ``(1, 1, X, Y, Z)`` in 3D, its slices along ``axis`` as a batch
    ``(S, 1, H, W)`` in 2D."""
    return volume[None, None] if check_dim(dim) == 3 else volume.movedim(axis, 0).unsqueeze(1)


def from_slices(samples: torch.Tensor, dim: int, axis: int = -1) -> torch.Tensor:
    """Inverse of :func:`to_slices` for outputs without a channel axis: ``(N, *spatial) -> (X, Y, Z)``."""
    return samples[0] if check_dim(dim) == 3 else samples.movedim(0, axis)
