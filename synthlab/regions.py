"""Label-region statistics of dense features: prototypes and how well they tell regions apart.

RaSD trains on these (:mod:`synthlab.losses.rasd`) and :mod:`synthlab.features` shows them for a trained
network; both read them from here, so evaluation never depends on a training loss. Pure tensor functions: no
network, no randomness; imports nothing from synthlab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["label_contrast", "prototype_softmax", "prototypes", "region_variance_share"]


def prototypes(features: torch.Tensor, labels: torch.Tensor,
               num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of each label region, per sample.

    Args:
        features: ``(B, C, *size)``.
        labels: ``(B, 1, *size)`` integer ids in ``[0, num_labels)``.
        num_labels: number of label ids L.
    Returns:
        ``prototypes (B, L, C)`` (zero for absent ids) and ``present (B, L)`` booleans.
    """
    one_hot = F.one_hot(labels.flatten(1), num_labels).to(features.dtype)  # (B, S, L)
    counts = one_hot.sum(1)  # (B, L)
    sums = one_hot.transpose(1, 2) @ features.flatten(2).transpose(1, 2)  # (B, L, C)
    # Dividing by max(count, 1) is the exact mean where the label is present and 0 where it is absent.
    return sums / counts.clamp_min(1)[..., None], counts > 0


def prototype_softmax(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """RaSD's push-term matrix ``softmax_k(p_j . p_k / t)`` over the regions present in ``labels``.

    Args:
        features: ``(C, *size)`` features of one image.
        labels: ``(1, *size)`` its integer label map.
    Returns:
        ``(R, R)`` for the R present regions in id order; row ``j`` says which prototype region ``j``
        resembles most, so a network that tells the regions apart gives the identity.
    """
    ids, numbered = torch.unique(labels, return_inverse=True)  # ids present, as 0..R-1 in id order
    protos, present = prototypes(features[None], numbered[None], len(ids))
    protos = protos[0, present[0]]
    return torch.softmax(protos @ protos.T / temperature, dim=1)


def region_variance_share(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of the feature variance that lies *within* label regions: 0 when every region is one constant
    feature (what RaSD's pull term asks for), near 1 when features ignore the regions.

    Features are taken as they are (RaSD's loss uses raw dot products, so their size counts); the share is a
    ratio, so a global scale does not. On images whose regions are flat (RaSD's renderings), a network that
    passes the intensity through already scores low: read it against the untrained network's share.

    Args:
        features: ``(C, *size)``.
        labels: ``(*size)`` integer label map.
    """
    flat = features.flatten(1).float()  # (C, N)
    ids, numbered = torch.unique(labels.flatten(), return_inverse=True)
    protos, _ = prototypes(flat[None], numbered.view(1, 1, -1), len(ids))  # (1, L, C)
    within = (flat - protos[0][numbered].T).pow(2).sum()
    total = (flat - flat.mean(1, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return float(within / total)


def label_contrast(first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor, count: int,
                   generator: torch.Generator) -> dict[str, float]:
    """Do features group voxels by label *across* renderings (anatomix's aim), not only within one image?

    ``count`` voxels are sampled once; their features in view 1 are compared (cosine) with the features of the
    same voxels in view 2. Returns the mean cosine of same-label pairs across the views (other locations only),
    of same-label pairs within view 1, and of different-label pairs across the views; and the cross-view label
    retrieval rate (is the most similar other voxel of view 2 of the same label?) with its chance level.

    Args:
        first, second: ``(C, *size)`` features of two renderings of one label map.
        labels: ``(*size)`` the label map.
    """
    flat = labels.flatten()
    pick = torch.randperm(flat.numel(), generator=generator)[:count].to(flat.device)
    a = F.normalize(first.flatten(1)[:, pick].float(), dim=0)
    b = F.normalize(second.flatten(1)[:, pick].float(), dim=0)
    key = flat[pick]
    same = key[:, None] == key[None, :]
    other_place = ~torch.eye(len(pick), dtype=torch.bool, device=same.device)
    cross, within = a.T @ b, a.T @ a  # (n, n) cosines
    nearest = cross.masked_fill(~other_place, float("-inf")).argmax(1)
    frequency = torch.unique(key, return_counts=True)[1].double() / len(key)
    return {"same_label_cos_cross": float(cross[same & other_place].mean()),
            "same_label_cos_within": float(within[same & other_place].mean()),
            "other_label_cos": float(cross[~same].mean()) if bool((~same).any()) else float("nan"),
            "label_retrieval": float((key[nearest] == key).float().mean()),
            "label_retrieval_chance": float(frequency.pow(2).sum())}
