"""Two scans in one physical frame: what an inter-subject registration needs before any feature is computed.

Two scans a user hands over are stored differently: other axis orders and flips (one RAS, one with its first two
axes flipped), other voxel sizes, other fields of view. Padding their voxel arrays to one shape registers a
mirror image. Here both are placed in world coordinates (their affines): the fixed scan, turned to RAS axes
(no interpolation), defines the working grid; the moving scan is sampled at the world positions of that grid,
shifted by the difference of the two foregrounds' centres of mass (an initial alignment: scanners put the
origin anywhere), so its anatomy lands where the fixed scan's is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .nifti import Volume, normalize_intensity, reorient, resample

__all__ = ["Frame", "common_frame", "foreground_centre", "grid_points", "sample_grid", "sample_world", "to_frame",
           "working_spacing"]


def grid_points(shape: tuple[int, ...], affine: np.ndarray) -> torch.Tensor:
    """World positions (mm) of the voxel centres of a grid: ``(*shape, 3)``, float64."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in shape), indexing="ij")
    index = torch.stack([*axes, torch.ones(shape, dtype=torch.float64)], dim=-1)
    return index @ torch.from_numpy(np.asarray(affine, dtype=np.float64)).T[:, :3]


def sample_grid(array: torch.Tensor, affine: np.ndarray, points: torch.Tensor, nearest: bool = False,
                border: bool = False) -> torch.Tensor:
    """Channels ``(C, *shape)`` of a grid with ``affine`` at world positions ``points`` (``(*out, 3)`` mm):
    ``(C, *out)`` float, linear (or ``nearest``), 0 outside the grid (or the ``border`` value)."""
    to_index = torch.from_numpy(np.linalg.inv(np.asarray(affine, dtype=np.float64)))
    index = points @ to_index[:3, :3].T + to_index[:3, 3]
    sides = torch.tensor(array.shape[1:], dtype=torch.float64)
    # grid_sample wants (x, y, z) = (last, middle, first) axis, each scaled to [-1, 1] between the end voxels.
    normal = (2 * index / (sides - 1).clamp_min(1) - 1).flip(-1).float()
    out = F.grid_sample(array.float()[None], normal.reshape(1, 1, 1, -1, 3).to(array.device),
                        mode="nearest" if nearest else "bilinear", padding_mode="border" if border else "zeros",
                        align_corners=True)
    return out.reshape(array.shape[0], *points.shape[:-1])


def sample_world(volume: Volume, points: torch.Tensor) -> torch.Tensor:
    """``volume`` at world positions ``points`` (``(*shape, 3)`` mm): linear for images, nearest for label maps,
    0 outside its field of view. Returns ``(*shape)`` in the volume's dtype."""
    return sample_grid(volume.array[None], volume.affine, points, nearest=volume.is_label)[0].to(volume.array.dtype)


def foreground_centre(volume: Volume, level: float = 0.2) -> np.ndarray:
    """Centre of mass (world mm) of the voxels brighter than ``level`` after robust scaling to [0, 1]."""
    image = normalize_intensity(volume.array.float())
    mask = image > level
    if not mask.any():
        mask = torch.ones_like(mask)
    index = mask.nonzero().double().mean(0).numpy()
    return (np.asarray(volume.affine, dtype=np.float64) @ np.append(index, 1.0))[:3]


@dataclass(frozen=True)
class Frame:
    """The working grid (the fixed scan's field of view, RAS axes) and the moving scan's initial shift."""

    shape: tuple[int, ...]
    affine: np.ndarray
    shift: np.ndarray  # mm added to a working-grid position to find the same anatomy in the moving scan

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def working_spacing(volumes: list[Volume], size: int | None) -> float | None:
    """Isotropic voxel size (mm) that fits the longest side of any of ``volumes`` in ``size`` voxels, never finer
    than their finest voxels; None (keep the voxels) when they already fit or ``size`` is None."""
    extent = max(n * s for volume in volumes for n, s in zip(volume.array.shape, volume.spacing, strict=True))
    finest = min(min(volume.spacing) for volume in volumes)
    return max(extent / size, finest) if size is not None and extent / finest > size else None


def common_frame(fixed: Volume, moving: Volume, spacing: float | None = None, align: bool = True
                 ) -> tuple[Frame, Volume]:
    """The working grid of a pair and the fixed image on it.

    Args:
        spacing: isotropic working voxel size in mm (None: the fixed scan's own voxels).
        align: shift the moving scan by the difference of the foreground centres of mass (else use the
            affines as they are, for scans already in one scanner frame).
    Returns:
        the frame and the fixed image resampled onto it (antialiased when it is coarser).
    """
    fixed = reorient(fixed, "RAS")
    on_grid = resample(fixed, spacing) if spacing is not None else fixed
    shift = foreground_centre(moving) - foreground_centre(fixed) if align else np.zeros(3)
    return Frame(tuple(on_grid.array.shape), on_grid.affine, shift), on_grid


def to_frame(volume: Volume, frame: Frame, moving: bool = True) -> torch.Tensor:
    """``volume`` (a moving scan or its label map) sampled on the frame's grid, its shift applied; images are
    first brought to about the working voxel size, so a fine scan does not alias onto a coarse grid."""
    if moving and not volume.is_label:
        finer = min(volume.spacing) < min(frame.spacing)
        volume = resample(volume, min(frame.spacing)) if finer else volume
    points = grid_points(frame.shape, frame.affine)
    if moving:
        points = points + torch.from_numpy(frame.shift)
    return sample_world(volume, points)
