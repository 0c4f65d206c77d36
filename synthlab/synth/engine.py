"""The synthesis engine: label map -> shared geometric augmentation -> independent renderings.

Example::

    engine = SynthEngine(SynthConfig(dim=3, size=64, n_views=2), device="cpu", seed=0)
    batch = engine.sample(4)          # batch.labels (4, 1, 64, 64, 64), batch.views (4, 2, 1, 64, 64, 64)

    labels = engine.sample_labels(1)  # the stages one by one, for teaching
    labels = engine.augment(labels)
    params = engine.sample_appearance(labels)
    views = engine.render(labels, params)

Every draw comes from ``engine.generator`` (on the engine's device), so a seed fixes the batches; on CPU the
same seed gives bit-identical batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..draw import bernoulli, sample_affine, uniform
from ..noise import pyramid_noise
from ..spatial import SpatialParams, affine_matrix, apply_spatial
from .appearance import AppearanceParams, render, sample_appearance
from .config import SpatialAugConfig, SynthConfig
from .labels import ShapeBank, apply_foreground, procedural_labels, sample_foreground

__all__ = ["SynthBatch", "SynthEngine", "augment_labels"]


@dataclass
class SynthBatch:
    """One batch of synthetic data.

    Attributes:
        labels: ``(B, 1, *size)`` int64, shared by every view.
        views: ``(B, n_views, 1, *size)`` float32 in [0, 1], independent renderings of ``labels``.
    """

    labels: torch.Tensor
    views: torch.Tensor


def augment_labels(labels: torch.Tensor, cfg: SpatialAugConfig, generator: torch.Generator,
                   fill: int | Literal["fresh"] = 0) -> torch.Tensor:
    """Random flips, affine and smooth deformation of label maps, nearest-neighbour.

    Every parameter is drawn for every sample (so the random stream does not depend on which effects fire);
    only the samples that drew an affine or a deformation are resampled.

    Args:
        fill: label of voxels that come from outside the map: 0 (background), or ``"fresh"`` for one label
            above each map's maximum (for space-filling maps, where 0 is an ordinary region).
    """
    batch, _, *size = labels.shape
    dim = len(size)
    flips = bernoulli(generator, (batch, dim), cfg.flip_p)
    affine_on = bernoulli(generator, (batch,), cfg.affine_p)
    angles, scales, shears = sample_affine(generator, batch, dim, cfg.rotation, cfg.scale, cfg.shear)
    extent = torch.tensor(size, device=labels.device, dtype=torch.float32)
    shifts = uniform(generator, (batch, dim), (-cfg.translation, cfg.translation)) * extent
    deform_on = bernoulli(generator, (batch,), cfg.deform_p)
    deform_std = uniform(generator, (batch, len(cfg.deform_grids)), cfg.deform_std) * max(size)
    work = tuple(max(2, -(-s // 4)) for s in size)
    deformation = pyramid_noise(batch, dim, work, [min(g, max(work)) for g in cfg.deform_grids], generator,
                                deform_std)

    identity = torch.eye(dim, dim + 1, device=labels.device).expand(batch, dim, dim + 1)
    matrix = torch.where(affine_on.view(batch, 1, 1), affine_matrix(angles, scales, shears, shifts), identity)
    on = deform_on.view(-1, *([1] * (dim + 1)))
    params = SpatialParams(matrix, flips, deformation * on if bool(deform_on.any()) else None, affine_on | deform_on)
    out = apply_spatial(labels, params, "nearest", fill=-1 if fill == "fresh" else fill)
    if fill == "fresh":  # voxels from outside a space-filling map: one new label above the map's own
        fresh = labels.flatten(1).amax(1).view(-1, *([1] * (dim + 1))) + 1
        out = torch.where(out < 0, fresh, out)
    return out


class SynthEngine:
    """Draws :class:`SynthBatch` es: label maps (procedural or shape bank), shared augmentation, N renderings.

    Args:
        config: what to draw (validated here again, since dataclasses stay mutable).
        device: where every tensor, the generator and the shape bank live.
        seed: seeds the engine's own ``torch.Generator``.
    """

    def __init__(self, config: SynthConfig | None = None, device: torch.device | str = "cpu", seed: int = 0):
        self.config = config if config is not None else SynthConfig()
        self.config.validate()
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.bank: ShapeBank | None = None
        if self.config.uses_shape_bank:
            max_side, span = self.config.shape_bank_sides()
            self.bank = ShapeBank.from_path(self.config.labels, dim=self.config.dim, max_side=max_side,
                                            span=span, min_voxels=self.config.shape_bank.min_voxels,
                                            device=self.device)

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(self.config.size)

    def sample_labels(self, batch_size: int) -> torch.Tensor:
        """``(B, 1, *size)`` int64 maps from the configured source, foreground mask and envelope included."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.bank is not None:
            labels = self.bank.sample(batch_size, self.size, self.config.shape_bank, self.generator)
            foreground = self.config.shape_bank.foreground
        else:
            labels = procedural_labels(batch_size, self.size, self.config.procedural, self.generator)
            foreground = self.config.procedural.foreground
        return apply_foreground(labels, sample_foreground(batch_size, self.size, foreground, self.generator))

    def augment(self, labels: torch.Tensor) -> torch.Tensor:
        """Shared geometric augmentation of the label maps (before any view is rendered).

        Voxels moved in from outside become background (0) for shape-bank maps and a fresh label for
        procedural maps, whose label 0 is an ordinary region.
        """
        fill = 0 if self.bank is not None else "fresh"
        return augment_labels(labels, self.config.spatial, self.generator, fill)

    def sample_appearance(self, labels: torch.Tensor) -> AppearanceParams:
        """Appearance parameters for ``n_views`` renderings of every map in ``labels``."""
        return sample_appearance(self.config.appearance, labels, self.generator, self.config.n_views)

    def render(self, labels: torch.Tensor, params: AppearanceParams | None = None) -> torch.Tensor:
        """``(B, n_views, 1, *size)`` views of ``labels``; fresh parameters unless ``params`` is given."""
        params = self.sample_appearance(labels) if params is None else params
        views = render(labels, params)
        return views.view(labels.shape[0], -1, *views.shape[1:])

    def sample(self, batch_size: int) -> SynthBatch:
        """Label maps, augmented once, rendered ``n_views`` times."""
        labels = self.augment(self.sample_labels(batch_size))
        return SynthBatch(labels=labels, views=self.render(labels))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state, so a resumed run continues the same stream of batches."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
