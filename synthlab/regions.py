"""Label-region statistics of dense features: prototypes and how well they tell regions apart.

RaSD trains on these (:mod:`synthlab.losses.rasd`) and :mod:`synthlab.features` shows them for a trained
network; both read them from here, so evaluation never depends on a training loss. Pure tensor functions: no
network, no randomness; imports nothing from synthlab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["prototype_softmax", "prototypes"]


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
