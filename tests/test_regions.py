"""Tests for synthlab.regions: region prototypes and how features group voxels by label."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synthlab.regions import label_contrast, prototypes, region_variance_share


def _labels() -> torch.Tensor:
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[:8] = 1
    labels[:, 10:] = 2
    return labels


def test_features_that_name_the_label_have_no_within_region_variance_and_retrieve_labels_across_views() -> None:
    labels = _labels()
    one_hot = F.one_hot(labels, 3).movedim(-1, 0).float()  # (3, 16, 16): the ideal supervised feature
    assert region_variance_share(one_hot, labels) < 1e-6
    scores = label_contrast(one_hot, one_hot + 0.01 * torch.randn_like(one_hot), labels, 200,
                            torch.Generator().manual_seed(0))
    assert scores["label_retrieval"] == 1.0 and scores["same_label_cos_cross"] > 0.99
    assert abs(scores["other_label_cos"]) < 0.05
    assert 0.3 < scores["label_retrieval_chance"] < 0.5  # areas 64/256, 112/256, 80/256: sum of squares


def test_features_blind_to_the_labels_keep_their_variance_within_regions() -> None:
    labels = _labels()
    noise = torch.randn(8, 16, 16, generator=torch.Generator().manual_seed(1))
    assert region_variance_share(noise, labels) > 0.9
    scores = label_contrast(noise, torch.randn(8, 16, 16, generator=torch.Generator().manual_seed(2)), labels, 200,
                            torch.Generator().manual_seed(0))
    assert abs(scores["same_label_cos_cross"] - scores["other_label_cos"]) < 0.05


def test_prototypes_are_the_region_means_and_absent_ids_are_marked() -> None:
    features = torch.arange(4.0).view(1, 1, 4)
    labels = torch.tensor([[[0, 0, 2, 2]]])
    protos, present = prototypes(features, labels, 3)
    assert protos[0, :, 0].tolist() == [0.5, 0.0, 2.5] and present[0].tolist() == [True, False, True]
