"""Real unlabeled volumes for pretraining (VoCo's setting): list, load, and draw random crops.

The training loop takes batches from a source; :class:`RealCropSource` is the one for real volumes, next to the
synthetic engine. Draws go through its own generator, so a resumed run replays them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..dims import slice_axis
from .layouts import list_volumes
from .nifti import crop_or_pad, load_nifti, normalize_intensity

__all__ = ["RealCropSource", "load_unlabeled", "unlabeled_files"]


def unlabeled_files(path: str | Path) -> list[Path]:
    """The volumes a ``--data`` argument names (a file, a folder searched recursively, an MSD folder's images);
    a stray file in a folder is a ValueError naming it (see :func:`~synthlab.data.layouts.list_volumes`)."""
    return list_volumes(path, "data", kind="image")


def load_unlabeled(files: list[Path], dim: int, size: int) -> list[torch.Tensor]:
    """Load, normalise to [0, 1] and zero-pad (never crop) each volume so that a ``size`` crop always fits.

    In 2D the slice axis (:func:`~synthlab.dims.slice_axis`) is moved last and never padded. In 3D a single slice
    (a 2D image stored as ``X x Y x 1``) is refused: padding it would train on a volume of zeros.
    """
    volumes = []
    for path in files:
        loaded = load_nifti(path)
        if dim == 3 and min(loaded.array.shape) == 1:
            raise ValueError(f"data: {path} is a single slice (shape {tuple(loaded.array.shape)}); 3D pretraining "
                             "needs volumes (use --dim 2 for 2D images)")
        array = normalize_intensity(loaded.array)
        if dim == 2:  # the slice axis last, where RealCropSource takes its slices
            array = array.movedim(slice_axis(loaded.spacing, array.shape), -1)
        padded = tuple(max(side, size) for side in array.shape[:dim]) + tuple(array.shape[dim:])
        volumes.append(crop_or_pad(array, padded))
    return volumes


class RealCropSource:
    """Random ``size`` crops of real volumes (of random axial slices in 2D): one view, no labels."""

    def __init__(self, volumes: list[torch.Tensor], dim: int, size: int, device: torch.device, seed: int):
        self.volumes, self.dim, self.size, self.device = volumes, dim, size, device
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        crops = []
        for _ in range(batch_size):
            array = self.volumes[self._draw(len(self.volumes))]
            if self.dim == 2:  # a slice: load_unlabeled put each volume's slice axis last
                array = array[..., self._draw(array.shape[-1])]
            starts = [self._draw(side - self.size + 1) for side in array.shape]
            crops.append(array[tuple(slice(s, s + self.size) for s in starts)])
        return torch.stack(crops)[:, None, None].to(self.device), None

    def generators(self) -> dict[str, torch.Generator]:
        return {"crops": self.generator}
