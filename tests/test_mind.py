"""Tests for synthlab.mind: the MIND-SSC descriptor's structure and its invariances."""

from __future__ import annotations

import pytest
import torch

from synthlab.mind import MindConfig, mind_ssc, ssc_pairs


def _shapes_image(size: int = 24, dim: int = 3) -> torch.Tensor:
    """A cube and a smaller brighter cube on a zero background, well inside the borders: (1, 1, *size)."""
    image = torch.zeros((1, 1, *([size] * dim)))
    image[(..., *([slice(8, 16)] * dim))] = 1.0
    image[(..., *([slice(10, 13)] * dim))] = 2.5
    return image


@pytest.mark.parametrize(("dim", "channels"), [(2, 4), (3, 12)])
def test_pairs_are_non_opposite_neighbour_pairs(dim: int, channels: int) -> None:
    pairs = ssc_pairs(dim)
    assert len(pairs) == channels
    for p, q in pairs:
        assert sum(abs(v) for v in p) == sum(abs(v) for v in q) == 1
        assert any(a + b != 0 for a, b in zip(p, q, strict=True)), "opposite neighbours must be excluded"
    assert len({frozenset(pair) for pair in pairs}) == channels


@pytest.mark.parametrize(("dim", "channels"), [(2, 4), (3, 12)])
def test_descriptor_shape_and_range(dim: int, channels: int) -> None:
    image = _shapes_image(dim=dim) + 0.1 * torch.rand_like(_shapes_image(dim=dim))
    descriptor = mind_ssc(image)
    assert descriptor.shape == (1, channels, *image.shape[2:])
    assert descriptor.min() > 0
    # The largest channel at every voxel is exactly 1 (the normalisation of the descriptor).
    torch.testing.assert_close(descriptor.amax(1), torch.ones_like(descriptor[:, 0]))


def test_translation_equivariance() -> None:
    image = _shapes_image()
    shift = (2, -3, 1)
    shifted = torch.roll(image, shift, dims=(2, 3, 4))
    torch.testing.assert_close(mind_ssc(shifted), torch.roll(mind_ssc(image), shift, dims=(2, 3, 4)))


def test_invariance_to_affine_intensity_change() -> None:
    generator = torch.Generator().manual_seed(0)
    image = _shapes_image() + 0.2 * torch.rand(_shapes_image().shape, generator=generator)
    torch.testing.assert_close(mind_ssc(3.0 * image + 7.0), mind_ssc(image), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mind_ssc(1.0 - image), mind_ssc(image), atol=1e-4, rtol=1e-4)


def test_descriptor_distinguishes_structures() -> None:
    """Edge and flat voxels get different descriptors (a constant output would pass the tests above)."""
    descriptor = mind_ssc(_shapes_image())[0]
    flat, edge = descriptor[:, 2, 2, 2], descriptor[:, 8, 12, 12]
    assert (flat - edge).abs().max() > 0.3


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="dilation"):
        MindConfig(dilation=0)
    with pytest.raises(ValueError, match="image must be"):
        mind_ssc(torch.rand(8, 8, 8))
    with pytest.raises(ValueError, match="dim"):
        ssc_pairs(4)
