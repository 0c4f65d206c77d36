"""synthlab's own objective (a fourth arm, not from the three papers): same-voxel positives across views.

The views of a synthetic sample are renderings of one label map on one grid, so voxel ``x`` of view 1 and voxel
``x`` of view 2 show the same anatomy under two appearances. This objective asks the network's *output*
features to find that correspondence: for sampled locations, the feature of ``x`` in one view must be closer to
the feature of ``x`` in the other view than to the other view's features at every other sampled location
(InfoNCE, both directions). Where supcon asks "which label is this?", this asks "which voxel is this?", which
is what registration and the correspondence probe (:mod:`synthlab.probe`) ask of features.

Negatives near the anchor are what teach localisation: a share of the sampled locations (``local_fraction``)
are drawn as small offsets from other sampled ones, so every batch contains neighbours that must be told
apart from the true voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import UNet
from .base import LossOutput, Objective

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


def sample_locations(size: tuple[int, ...], count: int, local_fraction: float, local_radius: int,
                     generator: torch.Generator) -> torch.Tensor:
    """``count`` flat voxel indices: uniform ones, then near neighbours of them (offsets up to ``local_radius``).

    Duplicates are possible but rare; a duplicate location is an unavoidable false negative of weight 1/N.
    """
    n_local = int(round(count * local_fraction))
    n_uniform = count - n_local
    device = generator.device
    sizes = torch.tensor(size, device=device)
    coords = (torch.rand((n_uniform, len(size)), generator=generator, device=device) * sizes).long()
    if n_local:
        parents = coords[torch.randint(n_uniform, (n_local,), generator=generator, device=device)]
        offsets = torch.randint(-local_radius, local_radius + 1, parents.shape, generator=generator, device=device)
        coords = torch.cat([coords, (parents + offsets).clamp(min=torch.zeros_like(sizes), max=sizes - 1)])
    strides = torch.tensor([int(torch.tensor(size[k + 1:]).prod()) for k in range(len(size))], device=device)
    return coords @ strides


@dataclass
class VoxNCEConfig:
    """Settings of the voxel-correspondence objective."""

    temperature: float = 0.1  # softmax temperature on cosine similarities
    samples: int = 1024  # voxel locations per volume (each a positive pair and everyone's negative)
    local_fraction: float = 0.5  # share of locations drawn as near neighbours of the others
    local_radius: int = 3  # neighbour offsets in voxels (the probe's tolerance is 1)
    center: bool = True  # subtract each image's mean feature before the cosine (removes the shared component)


class VoxNCEObjective(Objective):
    """Same-voxel InfoNCE between two aligned views, on the network's output features."""

    name = "voxnce"
    requires_labels = False

    def __init__(self, net: UNet, dim: int, config: VoxNCEConfig | None = None):
        super().__init__(dim, net.dim)
        self.config = config or VoxNCEConfig()
        cfg = self.config
        if cfg.temperature <= 0 or cfg.samples < 2 or not 0 <= cfg.local_fraction < 1 or cfg.local_radius < 1:
            raise ValueError(f"need temperature > 0, samples >= 2, local_fraction in [0, 1) and local_radius "
                             f">= 1, got {cfg}")

    def forward(self, net: nn.Module, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> LossOutput:
        self.check_batch(views, labels)
        batch, n_views = views.shape[:2]
        if n_views < 2:
            raise ValueError("objective 'voxnce' needs at least two aligned views per sample (synthetic data)")
        size = tuple(views.shape[3:])
        features = net(views[:, :2].flatten(0, 1)).float().flatten(2)  # (2B, C, S)
        if self.config.center:
            features = features - features.mean(2, keepdim=True)
        flat = F.normalize(features, dim=1).unflatten(0, (batch, 2))  # (B, 2, C, S)
        index = torch.stack([sample_locations(size, self.config.samples, self.config.local_fraction,
                                              self.config.local_radius, generator) for _ in range(batch)])
        index = index.to(views.device)[:, None, None, :].expand(-1, 2, flat.shape[2], -1)
        picked = flat.gather(3, index).transpose(2, 3)  # (B, 2, N, C)
        loss = voxnce_loss(picked[:, 0], picked[:, 1], self.config.temperature)
        with torch.no_grad():
            positive = (picked[:, 0] * picked[:, 1]).sum(-1).mean()
        return LossOutput(loss, {"voxnce": float(loss.detach()), "voxnce_pos_cos": float(positive)})
