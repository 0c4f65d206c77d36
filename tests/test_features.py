"""Tests for synthlab.features: sliding-window inference and feature normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synthlab.features import blending_weights, extract_features, normalize_features, window_starts
from synthlab.nets import build_unet


def _conv_net(dim: int, kernel: int, seed: int = 0) -> nn.Module:
    """Two convolutions: receptive field ``2 * (kernel - 1) + 1`` voxels, no pooling."""
    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global generator
        torch.manual_seed(seed)
        return nn.Sequential(conv(1, 4, kernel, padding=kernel // 2), nn.Tanh(),
                             conv(4, 3, kernel, padding=kernel // 2))


@pytest.mark.parametrize("size", [24, 23, 37])
def test_window_starts_cover_and_align(size: int) -> None:
    padded = -(-size // 4) * 4
    starts = window_starts(padded, 8, 0.5, step_multiple=4)
    assert starts[0] == 0 and starts[-1] == padded - 8
    assert all(s % 4 == 0 for s in starts)
    assert all(b - a <= 8 for a, b in zip(starts, starts[1:], strict=False)), "windows must overlap or touch"


def test_pointwise_net_windows_equal_whole_volume() -> None:
    net = _conv_net(3, kernel=1)
    volume = torch.rand(19, 14, 11)
    whole = extract_features(net, volume, progress=False)
    windowed = extract_features(net, volume, window=6, overlap=0.5, progress=False)
    assert whole.shape == (3, 19, 14, 11)
    torch.testing.assert_close(windowed, whole)
    torch.testing.assert_close(whole, net(volume[None, None])[0])


@pytest.mark.parametrize("dim", [2, 3])
def test_small_receptive_field_windows_match_whole_volume(dim: int) -> None:
    net = _conv_net(dim, kernel=3)
    size = (29, 22, 17)[:dim]
    volume = torch.rand(size, generator=torch.Generator().manual_seed(1))
    whole = extract_features(net, volume, progress=False)
    windowed = extract_features(net, volume, window=12, overlap=0.5, progress=False)
    assert windowed.shape == whole.shape == (3, *size)
    # Window borders see zero padding, but the Gaussian blend gives them ~1e-3 of the weight.
    assert (windowed - whole).abs().max() < 0.02 * whole.abs().max()
    flat = extract_features(net, volume, window=12, overlap=0.5, blend="constant", progress=False)
    assert (flat - whole).abs().max() > (windowed - whole).abs().max(), "blending should beat flat averaging"


def test_unet_odd_sizes_and_mode_restored() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_unet("tiny", 3)
    assert net.training
    volume = torch.rand(13, 21, 9)  # smaller than 2 * downsample_factor on two sides, odd everywhere
    whole = extract_features(net, volume, progress=False)
    windowed = extract_features(net, volume, window=16, overlap=0.5, batch_size=3, progress=False)
    assert whole.shape == windowed.shape == (net.out_channels, 13, 21, 9)
    assert torch.isfinite(windowed).all()
    assert net.training, "the caller's train/eval mode must be restored"


def test_channels_first_input_and_bad_shapes() -> None:
    net = _conv_net(3, kernel=1)
    volume = torch.rand(1, 8, 9, 10)
    torch.testing.assert_close(extract_features(net, volume, progress=False),
                               extract_features(net, volume[0], progress=False))
    with pytest.raises(ValueError, match="volume must be"):
        extract_features(net, torch.rand(8, 8), progress=False)
    with pytest.raises(ValueError, match="overlap"):
        extract_features(net, volume, overlap=1.0, progress=False)
    with pytest.raises(ValueError, match="window"):
        extract_features(net, volume, window=(4, 4), progress=False)


def test_blending_weights_peak_in_the_centre() -> None:
    for kind in ("gaussian", "cosine"):
        weights = blending_weights((9, 7), kind)
        assert weights.argmax() == 4 * 7 + 3
        assert weights.min() > 0
    with pytest.raises(ValueError, match="blend"):
        blending_weights((4,), "triangle")


def test_normalize_features() -> None:
    features = torch.randn(5, 6, 7, 8) * 3 + 2
    unit = normalize_features(features, "l2")
    torch.testing.assert_close(unit.norm(dim=0), torch.ones(6, 7, 8))
    scored = normalize_features(features, "zscore")
    torch.testing.assert_close(scored.mean(dim=(1, 2, 3)), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(scored.std(dim=(1, 2, 3)), torch.ones(5))
    with pytest.raises(ValueError, match="mode"):
        normalize_features(features, "minmax")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu() -> None:
    net = _conv_net(3, kernel=3)
    volume = torch.rand(20, 18, 16)
    cpu = extract_features(net, volume, window=12, progress=False)
    gpu = extract_features(net.cuda(), volume, window=12, progress=False)
    assert gpu.device == volume.device
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)


class _Offset(torch.nn.Module):
    """A network whose every feature carries one large common offset, as an untrained network's roughly do."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.downsample_factor = net, net.downsample_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + 10.0


def test_view_agreement_is_one_for_identical_views_and_prototypes_are_rowwise_distributions() -> None:
    from synthlab.features import prototype_similarity, view_agreement
    from synthlab.nets import build_unet

    torch.manual_seed(0)
    net = build_unet("tiny", 2).eval()
    image = torch.rand(1, 32, 32)
    cosine = view_agreement(net, image, image)
    assert cosine.shape == (32, 32)
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)
    assert float(view_agreement(net, image, torch.rand(1, 32, 32)).mean()) < 0.999
    # A common offset on every feature makes the plain cosine ~1 whatever the images; the centred one ignores it.
    shifted = _Offset(net).eval()
    other = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert float(view_agreement(shifted, image, other, centred=False).mean()) > 0.95
    assert float(view_agreement(shifted, image, other).mean()) == pytest.approx(
        float(view_agreement(net, image, other).mean()), abs=1e-4)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, 16:] = 2  # label 1 absent: only the two present regions get a row
    matrix = prototype_similarity(net, image, labels)
    assert matrix.shape == (2, 2)
    assert torch.allclose(matrix.sum(1), torch.ones(2))
