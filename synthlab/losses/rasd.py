"""RaSD's objective: region-wise prototype disentanglement on dense output features (docs/fidelity.md sets each
choice beside the authors' code).

Each label region of a synthetic volume gets a prototype, the mean output feature over the region. Two
cross-entropies train the network: prototypes must be told apart from each other (``P^T P / t`` against the
identity: the push term) and every voxel must pick its own region's prototype (``<p_k, f(x)> / t`` against
the label map: the pull term). Label ids carry no meaning across samples; the loss is invariant to permuting
them.

Departures from the released code, all for robustness:

* Absent label ids (argmax synthesis can leave one empty) are masked out of both terms; the paper's code
  divides by a zero count there and returns NaN.
* Cross-entropies are standard ones, computed from ``log_softmax`` (mean over voxels, or over prototypes).
  The paper's ``-mean(y * log(softmax + 1e-6))`` also averages over the class axis, which only rescales both
  terms by ``1 / L``, and its ``1e-6`` silently caps each voxel's loss (and zeroes its gradient) near
  ``-log(1e-6)``.
* Dot products stay raw (unnormalised, as in the paper), so logits can be large: ``/ 0.07`` on features of
  norm 10 gives logits near 1,400. ``log_softmax`` subtracts the row maximum, so this never overflows, but
  the logits are computed in float32 even under autocast, where half precision would round them coarsely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import ProjectionHead, UNet
from ..regions import prototypes
from .base import LossOutput, Objective, OptimSettings

__all__ = ["RaSDConfig", "RaSDObjective", "prototypes", "rasd_loss"]


def rasd_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
              num_labels: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RaSD's prototype loss ``L_proto + L_seg`` on dense features.

    Args:
        features: ``(B, C, *size)`` dense features ``f``.
        labels: ``(B, 1, *size)`` integer label maps ``y``.
        temperature: the logit temperature ``t``.
        num_labels: number of label ids; by default the ids present are numbered ``0..L-1`` first, so a stray
            large id costs one prototype, not a one-hot as wide as the id (absent ids never enter the loss).
    Returns:
        ``(total, proto, seg)`` scalars: ``proto`` is the mean over present prototypes of
        ``-log softmax_k(p_j . p_k / t)[j]``, ``seg`` the mean over voxels of
        ``-log softmax_k(p_k . f(x) / t)[y(x)]``; absent ids are excluded from both softmaxes.
    """
    if num_labels is None:
        ids, labels = torch.unique(labels, return_inverse=True)
        num_labels = len(ids)
    features = features.float()
    protos, present = prototypes(features, labels, num_labels)

    proto_logits = protos @ protos.transpose(1, 2) / temperature
    proto_logits = proto_logits.masked_fill(~present[:, None, :], float("-inf"))
    own = -torch.log_softmax(proto_logits, dim=2).diagonal(dim1=1, dim2=2)  # (B, L); inf on absent rows
    proto = torch.where(present, own, torch.zeros_like(own)).sum() / present.sum()

    seg_logits = torch.einsum("blc,bcs->bls", protos, features.flatten(2)) / temperature
    seg_logits = seg_logits.masked_fill(~present[..., None], float("-inf"))
    seg = F.cross_entropy(seg_logits, labels.flatten(1))
    return proto + seg, proto, seg


@dataclass
class RaSDConfig:
    """Settings of the RaSD objective (defaults: the RaSD training script)."""

    temperature: float = 0.07  # logit temperature of both cross-entropies
    head_layers: int = 0  # 0: the raw network output, as in the paper; >0: a per-voxel MLP head first
    head_hidden: int = 256  # width of that head
    head_out: int = 32  # its output channels


class RaSDObjective(Objective):
    """RaSD: push prototypes of different regions apart, pull each voxel to its own region's prototype.

    One rendering per label map, as in RaSD (with more views, each is a separate image of its map); prototypes are
    computed per image.
    """

    name = "rasd"
    requires_labels = True
    n_views = 1  # RaSD renders each label map once: every image is a sample of its own
    # RaSD's training script: AdamW 1e-5, weight decay 0.01, no schedule, no clipping (docs/fidelity.md).
    optim = OptimSettings(lr=1e-5, weight_decay=0.01, schedule="constant")
    # Its task: regions apart in feature space, so little of the feature variance is left within a region.
    own_task = (("synth_region_variance", "within-region share of feature variance"),
                ("synth_label_retrieval", "label retrieval"), ("synth_label_retrieval_chance", "chance"))

    def __init__(self, net: UNet, dim: int, config: RaSDConfig | None = None):
        super().__init__(dim, net.dim)
        self.config = config or RaSDConfig()
        if self.config.temperature <= 0 or self.config.head_layers < 0:
            raise ValueError(f"temperature must be positive and head_layers >= 0, got {self.config}")
        cfg = self.config
        self.head = (ProjectionHead(net.out_channels, cfg.head_hidden, cfg.head_out, cfg.head_layers)
                     if cfg.head_layers > 0 else None)

    def forward(self, net: nn.Module, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> LossOutput:
        self.check_batch(views, labels)
        assert labels is not None  # check_batch enforces it; narrows the type
        if int(labels.min()) < 0:
            raise ValueError("labels must be non-negative label ids")
        n_views = views.shape[1]
        features = net(views.flatten(0, 1))
        if self.head is not None:
            per_voxel = features.movedim(1, -1)
            features = self.head(per_voxel.flatten(0, -2)).unflatten(0, per_voxel.shape[:-1]).movedim(-1, 1)
        view_labels = labels.repeat_interleave(n_views, dim=0)
        total, proto, seg = rasd_loss(features, view_labels, self.config.temperature)
        return LossOutput(total, {"rasd": float(total.detach()), "rasd_proto": float(proto.detach()),
                                  "rasd_seg": float(seg.detach())})
