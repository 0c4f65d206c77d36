"""Known-answer checks of the geometric toolbox (tiny tensors, 2D and 3D)."""

from __future__ import annotations

import math

import pytest
import torch

from synthlab.noise import coarse_shape, pyramid_noise, smooth_noise
from synthlab.spatial import (
    SpatialParams,
    affine_coordinates,
    affine_displacement,
    affine_matrix,
    apply_spatial,
    gaussian_blur,
    identity_grid,
    jacobian_determinant,
    resize,
    sample_nearest,
    warp,
)

SIZES = {2: (12, 10), 3: (9, 8, 7)}


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor, fill: int | None = 0) -> torch.Tensor:
    """Nearest-neighbour warp through sample_nearest: ``labels`` read at ``x + u(x)``."""
    coords = identity_grid(displacement.shape[2:], displacement.device, displacement.dtype) + displacement
    return sample_nearest(labels, coords, fill)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("dim", [2, 3])
def test_warp_with_zero_displacement_is_identity(dim: int) -> None:
    image = torch.rand(2, 3, *SIZES[dim])
    zero = torch.zeros(2, dim, *SIZES[dim])
    assert torch.allclose(warp(image, zero), image, atol=1e-6)
    labels = torch.randint(0, 5, (2, 1, *SIZES[dim]))
    assert torch.equal(warp(labels, zero, mode="nearest"), labels)
    assert torch.equal(warp_labels(labels, zero), labels)


@pytest.mark.parametrize("dim", [2, 3])
def test_integer_shift_moves_content(dim: int) -> None:
    size = SIZES[dim]
    image = torch.rand(1, 1, *size)
    displacement = torch.zeros(1, dim, *size)
    displacement[:, 0] = 2.0  # sample at x + 2 along axis 0
    shifted = warp(image, displacement)
    assert torch.allclose(shifted[:, :, :-2], image[:, :, 2:], atol=1e-6)
    labels = torch.randint(0, 9, (1, 1, *size))
    moved = warp_labels(labels, displacement, fill=0)
    assert torch.equal(moved[:, :, :-2], labels[:, :, 2:])
    assert bool((moved[:, :, -2:] == 0).all())  # outside the volume -> fill
    border = warp_labels(labels, displacement, fill=None)
    assert torch.equal(border[:, :, -1], labels[:, :, -1])  # border repeated


@pytest.mark.parametrize("dim", [2, 3])
def test_affine_flip_matches_torch_flip(dim: int) -> None:
    size = SIZES[dim]
    image = torch.rand(1, 1, *size)
    angles = torch.zeros(1, 1 if dim == 2 else 3)
    flips = torch.zeros(1, dim, dtype=torch.bool)
    flips[0, 0] = True
    matrix = affine_matrix(angles, torch.ones(1, dim), flips=flips)
    flipped = warp(image, affine_displacement(matrix, size))
    assert torch.allclose(flipped, image.flip(2), atol=1e-5)
    labels = torch.randint(0, 9, (1, 1, *size))
    coords = affine_coordinates(matrix, size)
    assert torch.equal(sample_nearest(labels, coords), labels.flip(2))


def test_affine_coordinates_agree_with_displacement() -> None:
    matrix = torch.randn(2, 3, 4)
    size = SIZES[3]
    expected = affine_displacement(matrix, size) + identity_grid(size)
    assert torch.allclose(affine_coordinates(matrix, size), expected, atol=1e-4)


def test_rotation_by_quarter_turn_2d() -> None:
    image = torch.rand(1, 1, 9, 9)
    matrix = affine_matrix(torch.tensor([[math.pi / 2]]), torch.ones(1, 2))
    turned = warp(image, affine_displacement(matrix, (9, 9)))
    # out[i, j] = in[R (x - c) + c] = in[n - 1 - j, i], which is rot90 with k = -1.
    assert torch.allclose(turned, torch.rot90(image, -1, dims=(2, 3)), atol=1e-4)


def test_warp_labels_matches_grid_sample_nearest(generator: torch.Generator) -> None:
    labels = torch.randint(0, 6, (2, 1, *SIZES[3]), generator=generator)
    displacement = torch.randn(2, 3, *SIZES[3], generator=generator) * 1.7
    for fill, padding in ((0, "zeros"), (None, "border")):
        reference = warp(labels, displacement, mode="nearest", padding_mode=padding)
        assert torch.equal(warp_labels(labels, displacement, fill=fill), reference)


def test_blur_preserves_mean_and_delta_variance() -> None:
    constant = torch.full((1, 1, 16, 16, 16), 0.7)
    assert torch.allclose(gaussian_blur(constant, 1.5), constant, atol=1e-6)
    delta = torch.zeros(1, 1, 41, 41)
    delta[0, 0, 20, 20] = 1.0
    sigma = 2.0
    blurred = gaussian_blur(delta, sigma)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(41.0) - 20
    profile = blurred[0, 0].sum(1)
    assert (profile * offsets**2).sum().item() == pytest.approx(sigma**2, rel=0.02)
    random = torch.rand(1, 1, 20, 20)
    assert blurred.shape == delta.shape and gaussian_blur(random, 1.0).mean().item() == pytest.approx(
        random.mean().item(), abs=0.02)


@pytest.mark.parametrize("dim", [2, 3])
def test_jacobian_of_identity_is_one(dim: int) -> None:
    det = jacobian_determinant(torch.zeros(1, dim, *SIZES[dim]))
    assert torch.allclose(det, torch.ones_like(det))


def test_jacobian_detects_folding() -> None:
    size = (10, 10)
    grid = identity_grid(size).unsqueeze(0)
    folded = torch.zeros(1, 2, *size)
    folded[:, 0] = -2 * grid[:, 0]  # x + u = -x along axis 0: a mirror, locally not orientation-preserving
    assert bool((jacobian_determinant(folded) < 0).all())
    stretch = torch.zeros(1, 2, *size)
    stretch[:, 1] = 0.5 * grid[:, 1]  # x + u = 1.5 x: no folding, det 1.5
    assert torch.allclose(jacobian_determinant(stretch), torch.full((1, *size), 1.5))


def test_smooth_noise_std_and_smoothness(generator: torch.Generator) -> None:
    field = smooth_noise(64, 1, (4, 4), 4, generator, std=torch.full((64,), 0.5))
    assert field.std().item() == pytest.approx(0.5, rel=0.15)
    fine = smooth_noise(1, 1, (64, 64), 4, generator)
    assert fine.diff(dim=2).abs().max() < fine.abs().max() / 5  # neighbours differ little: smooth


def test_coarse_shape_keeps_correlation_isotropic() -> None:
    assert coarse_shape((128, 64, 32), 8) == (8, 4, 2)
    assert coarse_shape((10, 10), 4) == (4, 4)


def test_pyramid_noise_shapes_stds_and_determinism() -> None:
    size = (20, 16, 12)
    std = torch.rand(2, 3, 2)  # (B, C, n_scales)
    a = pyramid_noise(2, 3, size, [8, 4], torch.Generator().manual_seed(1), std)
    b = pyramid_noise(2, 3, size, [8, 4], torch.Generator().manual_seed(1), std)
    assert a.shape == (2, 3, *size) and torch.equal(a, b)
    zero = pyramid_noise(2, 1, size, [4, 2], torch.Generator().manual_seed(1), torch.zeros(2, 2))
    assert bool((zero == 0).all())


def test_pyramid_noise_is_as_smooth_along_a_short_axis_as_along_the_long_ones() -> None:
    field = pyramid_noise(8, 1, (64, 64, 32), [8], torch.Generator().manual_seed(0))  # grid 8 x 8 x 4
    roughness = [float(field.diff(dim=axis).pow(2).mean()) for axis in (2, 3, 4)]
    assert max(roughness) / min(roughness) < 1.5  # a cubic 8^3 grid would make the short axis ~4x rougher


def test_resize_nearest_keeps_integer_values() -> None:
    labels = torch.randint(0, 4, (1, 1, 6, 6)).float()
    up = resize(labels, (12, 12), mode="nearest")
    assert set(up.unique().tolist()) <= set(labels.unique().tolist())


@pytest.mark.parametrize("dim", [2, 3])
def test_apply_spatial_mirrors_exactly_moves_only_the_marked_samples_and_reads_labels_exactly(dim: int) -> None:
    size = (12, 10, 8)[:dim]
    labels = torch.randint(0, 5, (3, 1, *size), generator=torch.Generator().manual_seed(0))
    identity = torch.eye(dim, dim + 1).expand(3, dim, dim + 1)
    assert torch.equal(apply_spatial(labels, SpatialParams(identity), "nearest"), labels)
    flips = torch.zeros(3, dim, dtype=torch.bool)
    flips[1, 0] = True
    shift = identity.clone()
    shift[:, 0, dim] = 2.0  # read two voxels further along axis 0
    moved = torch.tensor([False, True, True])
    out = apply_spatial(labels, SpatialParams(shift, flips, moved=moved), "nearest", fill=7)
    assert torch.equal(out[0], labels[0])  # not moved, not mirrored
    assert torch.equal(out[1, :, :-2], labels[1:2].flip(2)[0, :, 2:]) and bool((out[1, :, -2:] == 7).all())
    assert torch.equal(out[2, :, :-2], labels[2, :, 2:]) and out.dtype == labels.dtype
    image = torch.rand(3, 1, *size, generator=torch.Generator().manual_seed(1))
    moved_image = apply_spatial(image, SpatialParams(shift), "linear")
    assert torch.allclose(moved_image[:, :, :-2], image[:, :, 2:], atol=1e-5)
    assert float(moved_image[:, :, -1].abs().max()) == 0  # zero outside the input
    with pytest.raises(ValueError, match="mode"):
        apply_spatial(image, SpatialParams(shift), "cubic")
    with pytest.raises(ValueError, match="transforms for a batch"):
        apply_spatial(image[:2], SpatialParams(shift), "linear")
