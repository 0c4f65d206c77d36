"""anatomix's objective: a supervised multi-positive voxel contrastive loss over several network depths.

Both views of a synthetic label map go through the shared UNet. At each tapped layer the same voxel locations
are sampled in both views, their features pass a per-layer projection MLP and are L2-normalised, and voxels
that carry the same label are pulled together while all other voxels are pushed apart (SupCon "all" mode,
Khosla et al. 2020; docs/fidelity.md). Background is an ordinary class.

As in anatomix's code, the contrast is one volume pair at a time: a batch of B pairs is B separate losses,
averaged, so a same-label voxel of *another* volume is never a negative (in anatomix's batch of one pair it
cannot be). ``cross_volume_negatives=True`` instead contrasts every voxel of the batch (and, under DDP, of every
rank) with every other, keyed by volume and label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..dist import all_gather_grad, get_rank
from ..nets import ProjectionHead, UNet
from ..spatial import resize
from .base import LossOutput, Objective, OptimSettings

__all__ = ["SupConConfig", "SupConObjective", "sample_voxels", "supcon_loss"]

# Label ids mean nothing across volumes: the key of a voxel is (volume index << 32) + label.
_VOLUME_SHIFT = 2**32


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.33,
                anchors: slice | None = None) -> torch.Tensor:
    """Multi-positive supervised contrastive loss, of one contrast set or of B independent ones at once.

    For anchor ``i`` with positives ``P(i) = {p != i : y_p = y_i}`` and contrast set ``A(i) = {a != i}``::

        L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )

    computed as a log-softmax over masked logits (never ``exp`` then ``log``). A contrast set's loss is the mean
    of ``L_i`` over anchors that have at least one positive; it is 0 (still attached to the graph) if none has.
    B sets (one per volume pair, as anatomix contrasts them) go through one batched product rather than B small
    ones: on a GPU the small ones are launch-bound.

    Args:
        features: ``(M, D)`` L2-normalised vectors (all ranks' samples when negatives are gathered), or
            ``(B, M, D)``: B contrast sets that never meet.
        labels: ``(M,)`` or ``(B, M)`` integer class keys; equal keys are positives.
        temperature: the softmax temperature ``t``.
        anchors: the rows that act as anchors (this rank's own samples); all rows by default.
    Returns:
        Scalar loss: the mean over the B sets.
    """
    if features.ndim == 2 and labels.ndim == 1:
        features, labels = features[None], labels[None]
    if features.ndim != 3 or labels.shape != features.shape[:2]:
        raise ValueError(f"features must be (M, D) or (B, M, D) and labels (M,) or (B, M), got "
                         f"{tuple(features.shape)} and {tuple(labels.shape)}")
    everyone = torch.arange(features.shape[1], device=features.device)
    rows = everyone[anchors] if anchors is not None else everyone
    is_self = rows[:, None] == everyone[None, :]  # (R, M), shared by every set
    logits = (features[:, rows] @ features.transpose(1, 2) / temperature).masked_fill(is_self, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=2)  # (B, R, M)
    positives = (labels[:, rows, None] == labels[:, None, :]) & ~is_self
    n_positive = positives.sum(2)
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(2) / n_positive.clamp_min(1)
    has_positive = n_positive > 0
    per_set = (per_anchor * has_positive).sum(1) / has_positive.sum(1).clamp_min(1)
    return per_set.mean()


def sample_voxels(maps: torch.Tensor, labels: torch.Tensor, count: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the same voxel locations in every view of each volume.

    Locations are drawn without replacement (so no voxel is its own positive twice); at most ``count`` per
    volume, fewer when the map is smaller.

    Args:
        maps: ``(B, V, C, *size)`` feature maps of the V views.
        labels: ``(B, 1, *full_size)`` integer label maps, nearest-downsampled here to ``size``.
        count: locations per volume.
        generator: source of the locations.
    Returns:
        ``features (B, V, n, C)`` and ``labels (B, n)``.
    """
    batch, views, channels, *size = maps.shape
    grid_labels = resize(labels.float(), size, mode="nearest").round().long().flatten(1)  # (B, S)
    n_voxels = grid_labels.shape[1]
    n = min(count, n_voxels)
    index = torch.stack([torch.randperm(n_voxels, generator=generator, device=generator.device)[:n]
                         for _ in range(batch)]).to(maps.device)  # (B, n)
    flat = maps.flatten(3)  # (B, V, C, S)
    features = flat.gather(3, index[:, None, None, :].expand(batch, views, channels, n))
    return features.transpose(2, 3), grid_labels.gather(1, index)


def _sets_per_product(device: torch.device, batch: int) -> int:
    """How many volume pairs' contrasts share one batched product: all of them on a GPU, where B small products
    are launch-bound (16 pairs x 6 layers: 3,279 operator calls a step against 183 batched), one at a time on a
    CPU, where a 16-pair product spills the cache (30 % slower, measured on 2 cores). Equal chunks, so the mean of
    the chunks' means is the mean over pairs either way."""
    return 1 if device.type == "cpu" else batch


@dataclass
class SupConConfig:
    """Settings of the anatomix objective (defaults: the anatomix pretraining script, docs/fidelity.md)."""

    temperature: float = 0.33  # softmax temperature (the script overrides the model's 0.07)
    samples: int = 512  # voxel locations per tapped layer and volume, shared by the views
    head_hidden: int = 256  # projection MLP width
    head_out: int = 256  # projected dimension (anatomix: 256)
    head_layers: int = 3  # Linear layers in each projection MLP
    head_bias: bool = False  # anatomix's Linear layers have no bias (batch norms follow)
    head_final_norm: bool = True  # an affine-free BatchNorm1d ends anatomix's head: projections start centred
    cross_volume_negatives: bool = False  # anatomix contrasts one volume pair at a time


class SupConObjective(Objective):
    """anatomix: multi-positive voxel contrast at every tap of the UNet, averaged over taps."""

    name = "supcon"
    requires_labels = True
    # anatomix's pretraining script: AdamW 2e-4, weight decay 1e-5, no clipping, five per-epoch stages of the
    # learning rate, Kaiming initialisation (docs/fidelity.md).
    optim = OptimSettings(lr=2e-4, weight_decay=1e-5, schedule="steps", init="kaiming")
    # Its task: voxels of one label alike across renderings, other labels apart.
    own_task = (("synth_same_label_cos_cross", "same-label cosine across views"),
                ("synth_other_label_cos", "other labels"), ("synth_label_retrieval", "label retrieval"),
                ("synth_label_retrieval_chance", "chance"))

    def __init__(self, net: UNet, dim: int, config: SupConConfig | None = None):
        super().__init__(dim, net.dim)
        self.config = config or SupConConfig()
        if self.config.temperature <= 0 or self.config.samples < 1:
            raise ValueError(f"temperature and samples must be positive, got {self.config}")
        cfg = self.config
        self.heads = nn.ModuleList(ProjectionHead(c, cfg.head_hidden, cfg.head_out, cfg.head_layers,
                                                  bias=cfg.head_bias, final_norm=cfg.head_final_norm)
                                   for c in net.tap_channels)

    def forward(self, net: nn.Module, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> LossOutput:
        self.check_batch(views, labels)
        assert labels is not None  # check_batch enforces it; narrows the type
        batch, n_views = views.shape[:2]
        _, taps = net(views.flatten(0, 1), return_taps=True)
        rank = get_rank()
        volume_keys = (rank * batch + torch.arange(batch, device=views.device)) * _VOLUME_SHIFT
        per_tap = []
        for tap, head in zip(taps, self.heads, strict=True):
            features, tap_labels = sample_voxels(tap.unflatten(0, (batch, n_views)), labels,
                                                 self.config.samples, generator)
            z = F.normalize(head(features.flatten(0, 2)), dim=1)  # (B * V * n, D), volume-major
            keys = tap_labels[:, None].expand(-1, n_views, -1)  # (B, V, n): one label per location, every view
            if self.config.cross_volume_negatives:
                rows = z.shape[0]
                per_tap.append(supcon_loss(all_gather_grad(z), all_gather_grad((keys + volume_keys[:, None, None])
                                                                               .flatten()),
                                           self.config.temperature, slice(rank * rows, (rank + 1) * rows)))
            else:  # one contrast per volume pair, as anatomix's batch of one pair
                chunk = _sets_per_product(z.device, batch)
                chunks = zip(z.unflatten(0, (batch, -1)).split(chunk), keys.flatten(1).split(chunk), strict=True)
                per_tap.append(torch.stack([supcon_loss(sets, set_keys, self.config.temperature)
                                            for sets, set_keys in chunks]).mean())
        loss = torch.stack(per_tap).mean()
        logs = {"supcon": float(loss.detach())}
        logs.update({f"supcon_tap{k}": float(part.detach()) for k, part in enumerate(per_tap)})
        return LossOutput(loss, logs)
