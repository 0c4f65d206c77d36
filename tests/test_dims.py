"""Tests for synthlab.dims: the one place that decides what 2D and 3D mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from synthlab import dims
from synthlab.data import Case, Volume
from synthlab.segment import prepare_cases


@pytest.mark.parametrize("bad", [1, 4, 0, "2"])
def test_a_dimension_other_than_2_or_3_is_refused_with_the_field_named(bad: object) -> None:
    with pytest.raises(ValueError, match="dim must be 2 or 3"):
        dims.check_dim(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be 2 or 3"):
        dims.layers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dim", dims.DIMS)
def test_layers_convolution_and_interpolation_agree_with_the_dimension(dim: int) -> None:
    kit = dims.layers(dim)
    x = torch.randn(1, 2, *([8] * dim))
    conv = kit.conv(2, 3, 3, padding=1)
    assert conv(x).shape == (1, 3, *([8] * dim))
    assert torch.allclose(dims.conv_fn(dim)(x, conv.weight, conv.bias, padding=1), conv(x))
    assert isinstance(kit.batch_norm(3), nn.modules.batchnorm._BatchNorm)
    assert kit.max_pool(2)(x).shape[2:] == (4,) * dim
    assert nn.functional.interpolate(x, scale_factor=2, mode=dims.interp_mode(dim)).shape[2:] == (16,) * dim
    assert x.contiguous(memory_format=dims.channels_last(dim)).is_contiguous(memory_format=dims.channels_last(dim))


def test_the_slice_axis_is_the_coarsest_ties_go_last_and_a_single_slice_wins() -> None:
    assert dims.slice_axis((1.0, 1.0, 1.0)) == 2  # isotropic: axial in a RAS-stored volume
    assert dims.slice_axis((0.9, 0.9, 3.0)) == 2
    assert dims.slice_axis((5.0, 0.8, 0.8)) == 0  # a sagittal acquisition stays sagittal
    assert dims.slice_axis((1.0, 1.0, 1.0004)) == 2 and dims.slice_axis((1.0004, 1.0, 1.0)) == 2  # rounding ties
    assert dims.slice_axis((1.0, 1.0, 0.5), shape=(64, 64, 1)) == 2  # a 2D image stored as X x Y x 1
    with pytest.raises(ValueError, match="three axes"):
        dims.slice_axis((1.0, 1.0))


@pytest.mark.parametrize("dim", dims.DIMS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_round_trip_along_any_axis(dim: int, axis: int) -> None:
    volume = torch.arange(4 * 5 * 6).reshape(4, 5, 6)
    samples = dims.to_slices(volume, dim, axis)
    if dim == 3:
        assert samples.shape == (1, 1, 4, 5, 6)
    else:
        assert samples.shape[:2] == (volume.shape[axis], 1)
        assert torch.equal(samples[3, 0], volume.select(axis, 3))
    assert torch.equal(dims.from_slices(samples[:, 0], dim, axis), volume)


def test_segmentation_slices_an_anisotropic_case_along_its_coarse_axis() -> None:
    image = torch.rand(5, 16, 16)  # five thick sagittal slices
    label = (image > 0.5).long()
    case = Case("thick", Volume(image, np.diag([4.0, 1.0, 1.0, 1.0])),
                Volume(label, np.diag([4.0, 1.0, 1.0, 1.0])))
    (prepared,), grid = prepare_cases([case], 8, dim=2)
    assert prepared.image.shape == (16, 16, 5) and grid[:2] == (16, 16)  # the coarse axis last, unpadded
    assert torch.equal(prepared.label, label.movedim(0, -1))
    (volume,), _ = prepare_cases([case], 8, dim=3)
    assert volume.image.shape == (16, 16, 16)  # 3D keeps the stored axes, padded to two bottleneck voxels
