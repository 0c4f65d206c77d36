"""synthlab's own objective (a fourth arm, not from the three papers): same-voxel positives across views.

The views of a synthetic sample are renderings of one label map on one grid, so voxel ``x`` of view 1 and voxel
``x`` of view 2 show the same anatomy under two appearances. This objective asks the network's *output*
features to find that correspondence: for sampled locations, the feature of ``x`` in one view must be closer to
the feature of ``x`` in the other view than to the other view's features at every other sampled location
(InfoNCE, both directions). Where supcon asks "which label is this?", this asks "which voxel is this?", which
is what registration and the correspondence probe (:mod:`synthlab.correspondence`) ask of features.

Negatives near the anchor are what teach localisation: a share of the sampled locations (``local_fraction``)
are drawn as small offsets from other sampled ones, so every batch contains neighbours that must be told
apart from the true voxel. Each view is seen through its own random window (``crop_fraction``), so the
matching voxel sits at a different place in each input: the network cannot answer with "where in the
window am I", a shortcut it otherwise learns within a thousand steps (docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import UNet
from ..spatial import flat_index
from .base import LossOutput, Objective, OptimSettings

__all__ = ["VoxNCEConfig", "VoxNCEObjective", "sample_locations", "voxnce_loss"]


def voxnce_loss(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``first`` must pick row ``i`` of ``second`` and vice versa.

    Args:
        first, second: ``(B, N, C)`` L2-normalised features of the same N locations in two views.
        temperature: softmax temperature.
    Returns:
        Scalar loss (mean over volumes, locations and both directions).
    """
    logits = first @ second.transpose(1, 2) / temperature  # (B, N, N)
    target = torch.arange(first.shape[1], device=first.device).expand(first.shape[0], -1)
    return 0.5 * (F.cross_entropy(logits.transpose(1, 2), target) + F.cross_entropy(logits, target))


def sample_locations(low: torch.Tensor, high: torch.Tensor, count: int, local_fraction: float, local_radius: int,
                     generator: torch.Generator) -> torch.Tensor:
    """``(count, dim)`` voxel coordinates in the box ``[low, high)``: uniform ones, then near neighbours of them
    (offsets of up to ``local_radius`` voxels, kept inside the box).

    Duplicates are possible but rare; a duplicate location is an unavoidable false negative of weight 1/N.
    """
    n_local = int(round(count * local_fraction))
    n_uniform = count - n_local
    device = generator.device
    low, high = low.to(device), high.to(device)
    coords = low + (torch.rand((n_uniform, low.numel()), generator=generator, device=device)
                    * (high - low)).long().clamp_max(high - low - 1)
    if n_local:
        parents = coords[torch.randint(n_uniform, (n_local,), generator=generator, device=device)]
        offsets = torch.randint(-local_radius, local_radius + 1, parents.shape, generator=generator, device=device)
        coords = torch.cat([coords, (parents + offsets).clamp(min=low, max=high - 1)])
    return coords


@dataclass
class VoxNCEConfig:
    """Settings of the voxel-correspondence objective."""

    temperature: float = 0.2  # softmax temperature on cosine similarities
    samples: int = 1024  # voxel locations per volume (each a positive pair and everyone's negative)
    local_fraction: float = 0.25  # share of locations drawn as near neighbours of the others
    local_radius: int = 4  # neighbour offsets in voxels (the probe's tolerance is 1)
    center: bool = True  # subtract each image's mean feature before the cosine (removes the shared component)
    # Each view is cut from its own random window of this fraction of the side (rounded down to the network's
    # downsample factor). Without it the views share one grid and "where in the crop am I" (readable from the
    # zero padding) solves the task: a shortcut that transfers to nothing (docs/experiments.md).
    crop_fraction: float = 0.75


class VoxNCEObjective(Objective):
    """Same-voxel InfoNCE between two differently cropped views, on the network's output features."""

    name = "voxnce"
    requires_labels = False
    # synthlab's own settings (docs/experiments.md): 5 % warm-up, cosine to a tenth, clipping at 1.
    optim = OptimSettings(lr=1e-3, weight_decay=1e-5, grad_clip=1.0, warmup_fraction=0.05, min_lr_fraction=0.1)
    own_task = (("synth_match", "same voxel found across renderings"), ("synth_agreement", "same-voxel cosine"))

    def __init__(self, net: UNet, dim: int, config: VoxNCEConfig | None = None):
        super().__init__(dim, net.dim)
        self.config = config or VoxNCEConfig()
        self.factor = net.downsample_factor
        cfg = self.config
        if cfg.temperature <= 0 or cfg.samples < 2 or not 0 <= cfg.local_fraction < 1 or cfg.local_radius < 1:
            raise ValueError(f"need temperature > 0, samples >= 2, local_fraction in [0, 1) and local_radius "
                             f">= 1, got {cfg}")
        if not 0 < cfg.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must lie in (0, 1], got {cfg.crop_fraction}")

    def crop_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """The side of each view's window: ``crop_fraction`` of the view, a multiple of the downsample factor."""
        f = self.factor
        crop = tuple(max(2 * f, int(s * self.config.crop_fraction) // f * f) for s in size)
        if any(c > s for c, s in zip(crop, size, strict=True)):
            raise ValueError(f"views of size {size} are too small for the network (sides of at least {2 * f})")
        return crop

    def forward(self, net: nn.Module, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> LossOutput:
        self.check_batch(views, labels)
        batch, n_views = views.shape[:2]
        if n_views < 2:
            raise ValueError("objective 'voxnce' needs at least two aligned views per sample (synthetic data)")
        size = tuple(views.shape[3:])
        crop = self.crop_size(size)
        room = torch.tensor(size) - torch.tensor(crop)  # window corners lie in [0, room]
        corners = (torch.rand((batch, 2, len(size)), generator=generator, device=generator.device).cpu()
                   * (room + 1)).long().clamp_max(room)
        crops = [views[(b, v, slice(None), *(slice(int(c), int(c) + w)
                                             for c, w in zip(corners[b, v], crop, strict=True)))]
                 for b in range(batch) for v in range(2)]
        features = net(torch.stack(crops)).float().flatten(2)  # (2B, C, prod(crop))
        if self.config.center:
            features = features - features.mean(2, keepdim=True)
        flat = F.normalize(features, dim=1).unflatten(0, (batch, 2))  # (B, 2, C, S)
        cfg, window = self.config, torch.tensor(crop)
        first, second = [], []
        for b in range(batch):
            shift = corners[b, 0] - corners[b, 1]  # voxel x of window 1 is voxel x + shift of window 2
            low, high = (-shift).clamp_min(0), torch.minimum(window, window - shift)
            coords = sample_locations(low, high, cfg.samples, cfg.local_fraction, cfg.local_radius, generator)
            coords = coords.to(views.device)
            first.append(flat[b, 0][:, flat_index(coords, crop)].T)
            second.append(flat[b, 1][:, flat_index(coords + shift.to(views.device), crop)].T)
        picked_first, picked_second = torch.stack(first), torch.stack(second)  # (B, N, C)
        loss = voxnce_loss(picked_first, picked_second, cfg.temperature)
        with torch.no_grad():
            positive = (picked_first * picked_second).sum(-1).mean()
        return LossOutput(loss, {"voxnce": float(loss.detach()), "voxnce_pos_cos": float(positive)})
