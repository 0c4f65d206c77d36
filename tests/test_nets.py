"""Tests for synthlab.nets: presets, shapes, taps, input checks, heads and the crop encoder."""

from __future__ import annotations

import pytest
import torch

from synthlab.nets import PRESETS, ProjectionHead, UNet, build_unet, crop_embedding


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_anatomix_preset_has_the_released_parameter_count():
    net = build_unet("anatomix", 3)
    assert _n_params(net) == 5_899_344
    assert net.tap_channels == [128, 256, 128, 64, 32, 16]
    assert net.downsample_factor == 16


def test_instance_norm_adds_conv_biases_only():
    batch, instance = build_unet("tiny", 2), build_unet("tiny", 2, norm="instance")
    convs = [m for m in instance.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in batch.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Instance norm drops BatchNorm's (weight, bias) and gives every convolution a bias instead.
    expected = _n_params(batch) - sum(2 * m.num_features for m in norms) + sum(c.out_channels for c in convs)
    assert _n_params(instance) == expected


@pytest.mark.parametrize("dim, size", [(2, (32, 48)), (3, (16, 16, 24))])
def test_forward_shapes_taps_and_encoder(dim, size):
    torch.manual_seed(0)
    net = build_unet("tiny", dim)
    x = torch.rand(2, 1, *size)
    out, taps = net(x, return_taps=True)
    assert out.shape == (2, 8, *size)
    assert torch.equal(out, taps[-1])
    depth = net.depth
    strides = [2 ** (depth - 1), 2 ** depth, *[2 ** k for k in range(depth - 1, 0, -1)], 1]
    assert len(taps) == len(net.tap_channels) == len(strides)
    for tap, channels, stride in zip(taps, net.tap_channels, strides, strict=True):
        assert tap.shape == (2, channels, *[s // stride for s in size])
    levels = net.encode(x)
    assert [m.shape[1] for m in levels] == net.encoder_channels
    expected_sizes = [torch.Size([s // 2**k for s in size]) for k in range(depth + 1)]
    assert [m.shape[2:] for m in levels] == expected_sizes
    assert torch.allclose(net(x), out)


def test_bad_inputs_raise_value_errors_naming_the_size():
    net = build_unet("tiny", 2)
    with pytest.raises(ValueError, match=r"\(20, 32\)"):
        net(torch.rand(1, 1, 20, 32))
    with pytest.raises(ValueError, match="at least 16"):
        net(torch.rand(1, 1, 8, 32))
    with pytest.raises(ValueError, match="spatial axes"):
        net(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match="anatomix"):
        build_unet("huge", 2)
    with pytest.raises(ValueError, match="depth"):
        build_unet("tiny", 2, depth=5)
    with pytest.raises(ValueError, match="norm"):
        UNet(2, norm="group")
    with pytest.raises(ValueError, match="dim"):
        UNet(4)


def test_config_rebuilds_the_same_network():
    net = build_unet("tiny", 3, out_channels=5).eval()
    clone = UNet(**net.config)
    clone.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 16, 16, 16)
    assert torch.equal(clone.eval()(x), net(x))
    assert net.config["out_channels"] == 5 and net.config["widths"] == list(PRESETS["tiny"]["widths"])


def test_instance_norm_samples_are_independent():
    net = build_unet("tiny", 2, norm="instance").eval()
    a, b = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    together = net(torch.cat([a, b]))
    assert torch.allclose(together[:1], net(a), atol=1e-4)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = build_unet("tiny", 2)
    out, taps = net(torch.rand(2, 1, 16, 16), return_taps=True)
    (out.square().mean() + sum(t.mean() for t in taps)).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_projection_head_and_dropout_keys():
    head = ProjectionHead(10, hidden=16, out=4, layers=3, dropout=0.5)
    plain = ProjectionHead(10, hidden=16, out=4, layers=3)
    assert head(torch.rand(6, 10)).shape == (6, 4)
    plain.load_state_dict(head.state_dict())  # same keys: an EMA teacher can mirror a student with dropout
    # Plain element-wise dropout: no whole row is zeroed (Dropout1d would drop whole crop embeddings).
    torch.manual_seed(0)
    dropped = head.dropout(torch.ones(200, 64))
    assert 0.3 < float((dropped == 0).float().mean()) < 0.7
    assert bool((dropped != 0).any(1).all())
    assert len(ProjectionHead(10, out=3, layers=1).mlp) == 1
    with pytest.raises(ValueError, match="layers"):
        ProjectionHead(10, layers=0)


def test_crop_encoder_pools_every_encoder_level():
    net = build_unet("tiny", 3)
    crops = torch.rand(3, 1, 16, 16, 16)
    embedding = crop_embedding(net(crops, encoder_only=True))
    out_features = sum(net.encoder_channels)
    assert embedding.shape == (3, out_features) and out_features == 4 + 8 + 16 + 32
    maps = net.encode(crops)
    assert torch.allclose(embedding[:, :4], maps[0].mean((2, 3, 4)))
    assert torch.allclose(crop_embedding([torch.ones(2, 3, 4, 4) * 2]), torch.full((2, 3), 2.0))
