"""Tests for synthlab.losses (supcon, voco, rasd, the shared interface) and synthlab.dist."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

import synthlab.losses.supcon as supcon_module
from synthlab.dist import all_gather_grad, get_rank, is_distributed
from synthlab.losses import OBJECTIVES, build_objective
from synthlab.losses.rasd import prototypes, rasd_loss
from synthlab.losses.supcon import sample_voxels, supcon_loss
from synthlab.losses.voco import (
    VoCoConfig,
    augment_crops,
    base_regulariser,
    ema_update,
    extract_crops,
    grid_boxes,
    overlap_fractions,
    position_ce,
    random_boxes,
    voco_loss,
)
from synthlab.nets import build_unet


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blob_labels(batch: int, size: tuple[int, ...], n_labels: int, seed: int = 0) -> torch.Tensor:
    """Piecewise-constant label maps: random labels on a coarse grid, nearest-upsampled."""
    coarse = torch.randint(0, n_labels, (batch, 1, *[s // 4 for s in size]), generator=_gen(seed))
    return F.interpolate(coarse.float(), size=size, mode="nearest").long()


def _views(labels: torch.Tensor, n_views: int = 2, seed: int = 0) -> torch.Tensor:
    """Images of a label map: one random intensity per label and view, plus noise, in [0, 1]."""
    g = _gen(seed)
    batch = labels.shape[0]
    lut = torch.rand(batch, n_views, int(labels.max()) + 1, generator=g)
    images = torch.stack([torch.stack([lut[b, v][labels[b, 0]] for v in range(n_views)])
                          for b in range(batch)])
    noisy = images + 0.05 * torch.randn(images.shape, generator=g)
    return noisy.clamp(0, 1).unsqueeze(2)


def _grads_finite_and_reach(net: torch.nn.Module, names: tuple[str, ...]) -> None:
    for name, p in net.named_parameters():
        if name.startswith(names):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# --- supcon -----------------------------------------------------------------------------------------------


def _supcon_brute_force(z: torch.Tensor, y: list[int], t: float, anchors: range) -> float:
    total, counted = 0.0, 0
    for i in anchors:
        others = [a for a in range(len(y)) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        log_probs = [math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives]
        total += -sum(log_probs) / len(positives)
        counted += 1
    return total / counted


def test_supcon_matches_the_formula_by_brute_force():
    z = F.normalize(torch.randn(7, 3, generator=_gen(1)), dim=1)
    y = [0, 0, 1, 1, 1, 2, 0]  # label 2 has no positive: that anchor is skipped
    labels = torch.tensor(y)
    expected = _supcon_brute_force(z, y, 0.33, range(7))
    assert supcon_loss(z, labels, 0.33).item() == pytest.approx(expected, rel=1e-5)
    # Anchors restricted to one rank's rows still contrast against every row.
    assert supcon_loss(z, labels, 0.5, slice(2, 5)).item() == pytest.approx(
        _supcon_brute_force(z, y, 0.5, range(2, 5)), rel=1e-5)


def test_supcon_hand_computed_two_pairs():
    # Two classes, orthogonal: z0 = z1 = e1, z2 = z3 = e2. For each anchor, its one positive has logit 1/t and
    # the two negatives 0, so L = -log(e^{1/t} / (e^{1/t} + 2)).
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    t = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    assert supcon_loss(z, torch.tensor([0, 0, 1, 1]), t).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_of_several_sets_is_the_mean_of_each_alone_and_they_never_meet():
    z = F.normalize(torch.randn(3, 6, 4, generator=_gen(6)), dim=2)
    labels = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5], [5, 5, 5, 1, 1, 0]])  # set 1: no positive
    alone = [_supcon_brute_force(z[b], labels[b].tolist(), 0.33, range(6)) for b in (0, 2)]
    alone.insert(1, 0.0)  # a set without positives counts as 0, as a lone set does
    assert supcon_loss(z, labels, 0.33).item() == pytest.approx(sum(alone) / 3, rel=1e-5)
    # Equal keys in different sets are not positives of each other: relabelling one set changes nothing else.
    moved = labels.clone()
    moved[2] += 100
    assert supcon_loss(z, moved, 0.33).item() == pytest.approx(sum(alone) / 3, rel=1e-5)
    with pytest.raises(ValueError, match="features must be"):
        supcon_loss(z, labels[0])


def test_supcon_no_positive_is_zero_and_differentiable():
    z = F.normalize(torch.randn(4, 3, generator=_gen(2)), dim=1).requires_grad_()
    loss = supcon_loss(z, torch.arange(4))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(z.grad).all()


def test_supcon_aligned_features_beat_shuffled():
    labels = torch.randint(0, 4, (64,), generator=_gen(3))
    aligned = F.normalize(F.one_hot(labels, 4).float() + 0.1 * torch.randn(64, 4, generator=_gen(4)), dim=1)
    shuffled = aligned[torch.randperm(64, generator=_gen(5))]
    assert supcon_loss(aligned, labels) < supcon_loss(shuffled, labels) - 1.0


def test_sample_voxels_shares_locations_across_views_and_downsamples_labels():
    labels = _blob_labels(2, (16, 16), 5)
    coarse = F.interpolate(labels.float(), size=(8, 8), mode="nearest-exact")  # (B, 1, 8, 8)
    maps = torch.stack([coarse, coarse + 100.0], dim=1)  # (B, V=2, C=1, 8, 8): view 1 = view 0 + 100
    features, sampled = sample_voxels(maps, labels, 20, _gen(6))
    assert features.shape == (2, 2, 20, 1) and sampled.shape == (2, 20)
    assert torch.equal(features[:, 1] - features[:, 0], torch.full((2, 20, 1), 100.0))
    assert torch.equal(features[:, 0, :, 0].long(), sampled)
    # Without replacement: a map smaller than the request yields each voxel once.
    features, _ = sample_voxels(maps, labels, 1000, _gen(6))
    assert features.shape[2] == 64 and torch.equal(features[0, 0, :, 0].sort().values,
                                                   coarse[0].flatten().sort().values)


def test_supcon_objective_runs_and_reaches_the_net():
    torch.manual_seed(0)
    net = build_unet("tiny", 2)
    objective = build_objective("supcon", net, 2, samples=32, head_hidden=16, head_out=8)
    labels = _blob_labels(2, (16, 16), 4)
    out = objective(net, _views(labels), labels, _gen(7))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and len(objective.heads) == len(net.tap_channels)
    assert set(out.logs) == {"supcon", *[f"supcon_tap{k}" for k in range(len(net.tap_channels))]}
    assert out.logs["supcon"] == pytest.approx(out.loss.item())
    _grads_finite_and_reach(net, ("stem", "encoder", "bottleneck", "decoder", "head"))
    with pytest.raises(ValueError, match="labels is None"):
        objective(net, _views(labels), None, _gen(7))


def test_supcon_objective_same_generator_same_loss():
    torch.manual_seed(0)
    net = build_unet("tiny", 2)
    objective = build_objective("supcon", net, 2, samples=16, head_hidden=8, head_out=4).eval()
    labels = _blob_labels(1, (16, 16), 3)
    views = _views(labels)
    first = objective(net.eval(), views, labels, _gen(8)).loss
    assert torch.equal(first, objective(net, views, labels, _gen(8)).loss)


def test_supcon_objective_gives_one_loss_whether_pairs_share_a_product_or_not(monkeypatch: pytest.MonkeyPatch):
    # A GPU contrasts every volume pair in one batched product, a CPU one pair at a time: the same loss either way.
    torch.manual_seed(0)
    net = build_unet("tiny", 2).eval()
    objective = build_objective("supcon", net, 2, samples=16, head_hidden=8, head_out=4).eval()
    labels = _blob_labels(3, (16, 16), 3)
    views = _views(labels)
    one_at_a_time = objective(net, views, labels, _gen(9)).loss
    monkeypatch.setattr(supcon_module, "_sets_per_product", lambda device, batch: batch)
    torch.testing.assert_close(objective(net, views, labels, _gen(9)).loss, one_at_a_time)


# --- rasd -------------------------------------------------------------------------------------------------


def test_prototypes_are_region_means():
    features = torch.tensor([[[1.0, 3.0, 10.0, 20.0]]])  # (B=1, C=1, 4)
    labels = torch.tensor([[[0, 0, 2, 2]]])
    protos, present = prototypes(features, labels, 3)
    assert protos[0, :, 0].tolist() == [2.0, 0.0, 15.0] and present[0].tolist() == [True, False, True]


def test_rasd_hand_computed_case():
    # Two voxels, two labels, features e1 and e2: prototypes are e1 and e2, every logit is 1/t or 0.
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, C=2, 2 voxels)
    labels = torch.tensor([[[0, 1]]])
    t = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 1.0))
    total, proto, seg = rasd_loss(features, labels, t)
    assert proto.item() == pytest.approx(expected) and seg.item() == pytest.approx(expected)
    assert total.item() == pytest.approx(2 * expected)


def test_rasd_absent_labels_are_masked_out():
    labels = _blob_labels(2, (8, 8), 3, seed=9)
    features = torch.randn(2, 4, 8, 8, generator=_gen(10), requires_grad=True)
    gapped = torch.where(labels == 2, torch.full_like(labels, 5), labels)  # ids 2, 3, 4 absent
    compact = rasd_loss(features, labels, 0.07)
    with_gaps = rasd_loss(features, gapped, 0.07)
    for a, b in zip(compact, with_gaps, strict=True):
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
    with_gaps[0].backward()
    assert torch.isfinite(features.grad).all()
    # Permuting label ids leaves the loss unchanged.
    permuted = torch.tensor([2, 0, 1])[labels]
    assert rasd_loss(features, permuted)[0].item() == pytest.approx(compact[0].item(), rel=1e-5)


def test_rasd_single_label_is_zero_and_finite():
    features = torch.randn(1, 4, 8, 8, generator=_gen(11), requires_grad=True)
    total, _, _ = rasd_loss(features, torch.full((1, 1, 8, 8), 3))
    total.backward()
    assert total.item() == 0.0 and torch.isfinite(features.grad).all()


def test_rasd_aligned_features_beat_shuffled():
    labels = _blob_labels(1, (16, 16), 4, seed=12)
    noise = 0.1 * torch.randn(1, 4, 16, 16, generator=_gen(13))
    aligned = F.one_hot(labels[:, 0], 4).movedim(-1, 1).float() + noise
    shuffled = aligned.flatten(2)[:, :, torch.randperm(256, generator=_gen(14))].reshape(aligned.shape)
    assert rasd_loss(aligned, labels, 0.07)[0] < rasd_loss(shuffled, labels, 0.07)[0]


@pytest.mark.parametrize("head_layers", [0, 2])
def test_rasd_objective_batch_of_one_with_absent_labels(head_layers):
    torch.manual_seed(0)
    net = build_unet("tiny", 3)
    objective = build_objective("rasd", net, 3, head_layers=head_layers, head_hidden=8, head_out=4)
    labels = torch.zeros(1, 1, 16, 16, 16, dtype=torch.long)
    labels[..., 8:] = 3  # ids 1 and 2 absent
    out = objective(net, _views(labels), labels, _gen(15))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and set(out.logs) == {"rasd", "rasd_proto", "rasd_seg"}
    _grads_finite_and_reach(net, ("stem", "decoder", "head"))


# --- voco -------------------------------------------------------------------------------------------------


def test_grid_boxes_tile_the_volume():
    boxes = grid_boxes((7, 9), (3, 3))
    assert boxes.shape == (9, 2, 2)
    assert int((boxes[..., 1] - boxes[..., 0]).prod(-1).sum()) == 63
    assert boxes[0].tolist() == [[0, 2], [0, 3]] and boxes[-1].tolist() == [[5, 7], [6, 9]]


def test_overlap_fractions_hand_computed():
    base = grid_boxes((6, 6), (3, 3))  # cells of 2 x 2, row-major
    boxes = torch.tensor([[[1, 3], [1, 3]], [[3, 5], [0, 2]]])
    labels = overlap_fractions(boxes, base)
    expected = torch.zeros(2, 9)
    expected[0, [0, 1, 3, 4]] = 0.25  # straddles the corner of four cells, one voxel in each
    expected[1, [3, 6]] = 0.5  # half in cell (1, 0), half in cell (2, 0)
    assert torch.allclose(labels, expected)


@pytest.mark.parametrize("size, grid", [((32, 40), (3, 3)), ((16, 20, 24), (2, 3, 2)),
                                        ((12, 12, 12), (3, 3, 1))])
def test_random_crop_position_labels_sum_to_one(size, grid):
    boxes = random_boxes(size, grid, 50, _gen(16))
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 1] <= torch.tensor(size)).all()
    labels = overlap_fractions(boxes, grid_boxes(size, grid))
    assert torch.allclose(labels.sum(1), torch.ones(50)) and (labels >= 0).all()
    assert torch.equal(boxes, random_boxes(size, grid, 50, _gen(16)))


def test_extract_crops_cuts_the_boxes_and_resizes():
    volumes = torch.arange(2 * 8 * 10, dtype=torch.float32).reshape(2, 1, 8, 10)
    boxes = torch.tensor([[[[0, 4], [2, 7]]], [[[3, 7], [5, 10]]]])  # one 4 x 5 box per volume
    crops = extract_crops(volumes, boxes, (4, 5))
    assert torch.equal(crops[0, 0], volumes[0, 0, 0:4, 2:7])
    assert torch.equal(crops[1, 0], volumes[1, 0, 3:7, 5:10])
    # Linear resizing with aligned corners keeps the corner voxels of each box.
    resized = extract_crops(volumes, boxes, (8, 8))
    assert resized.shape == (2, 1, 8, 8) and resized[1, 0, -1, -1] == volumes[1, 0, 6, 9]


def test_position_ce_hand_computed():
    y = torch.tensor([[[0.75, 0.25, 0.0, 0.0]]])
    s = torch.tensor([[[0.5, 0.25, 0.5, 0.0]]])
    eps = 1e-6
    positive = -(0.75 * math.log(0.75 + eps) + 0.25 * math.log(1.0 + eps)) / 1.0
    negative = -(math.log(0.5 + eps) + math.log(1.0 + eps)) / 2
    assert position_ce(y, s, eps).item() == pytest.approx(positive + negative, rel=1e-6)
    assert position_ce(y, y, eps).item() == pytest.approx(0.0, abs=1e-5)


def test_base_regulariser_known_values():
    orthogonal = torch.eye(4)[None]
    assert base_regulariser(orthogonal).item() == 0.0
    assert base_regulariser(torch.ones(1, 3, 5)).item() == pytest.approx(1.0)


def _ideal_projections(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal base projections and random-crop projections mixing them by the position labels."""
    base = torch.eye(positions.shape[-1]).expand(positions.shape[0], -1, -1)
    return positions @ base, base


def test_voco_loss_aligned_beats_shuffled_and_batch_of_one():
    size, grid = (30, 30), (3, 3)
    boxes = random_boxes(size, grid, 8, _gen(17))
    positions = overlap_fractions(boxes, grid_boxes(size, grid))[None]  # (1, 8, 9)
    q, b = _ideal_projections(positions)
    aligned = voco_loss(q, b, q, b, positions)
    shuffled = voco_loss(q, b, q, b, positions[:, torch.roll(torch.arange(8), 1)])
    assert aligned["inter"].item() == 0.0  # B == 1: no partner volume
    assert aligned["regulariser"].item() == 0.0
    assert aligned["total"] < shuffled["total"] - 1.0
    # Two volumes: the inter-volume term vanishes when the student agrees with the teacher, and not otherwise.
    q2, b2, positions2 = q.repeat(2, 1, 1), b.repeat(2, 1, 1), positions.repeat(2, 1, 1)
    assert voco_loss(q2, b2, q2, b2, positions2)["inter"].item() == pytest.approx(0.0, abs=1e-5)
    noisy = q2 + 0.3 * torch.randn(q2.shape, generator=_gen(20))
    assert voco_loss(noisy, b2, q2, b2, positions2)["inter"].item() > 0.01


def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    with torch.no_grad():
        return float(torch.cat([(p - q).flatten() for p, q in pairs]).norm())


def test_ema_update_moves_teacher_towards_student():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = _distance(teacher, student)
    ema_update(teacher, student, 0.9)
    assert _distance(teacher, student) == pytest.approx(0.9 * before, rel=1e-5)


@pytest.mark.parametrize("dim, size, batch", [(2, (48, 48), 2), (2, (40, 56), 1), (3, (32, 32, 32), 2)])
def test_voco_objective_on_unlabeled_volumes(dim, size, batch):
    torch.manual_seed(0)
    net = build_unet("tiny", dim)
    objective = build_objective("voco", net, dim, grid=2 if dim == 3 else 3, head_hidden=16, head_out=8)
    views = torch.rand(batch, 1, 1, *size, generator=_gen(18))
    out = objective(net, views, None, _gen(19))
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert set(out.logs) == {"voco", "voco_prediction", "voco_inter", "voco_regulariser"}
    assert (out.logs["voco_inter"] == 0.0) == (batch == 1)
    _grads_finite_and_reach(net, ("stem", "encoder", "bottleneck"))
    assert all(p.grad is None for p in objective.teacher.parameters())
    # The teacher starts from its own initialisation (as in v2) and follows the student after each step.
    gap = _distance(objective.teacher, objective.student)
    torch.optim.SGD(objective.student.parameters(), lr=0.5).step()
    moved = _distance(objective.teacher, objective.student)
    objective.after_step()
    assert gap > 0 and moved != gap
    assert _distance(objective.teacher, objective.student) == pytest.approx(0.9 * moved, rel=1e-4)


def test_voco_crop_size_defaults_to_a_size_the_net_accepts():
    net = build_unet("tiny", 3)
    objective = build_objective("voco", net, 3, grid=(3, 3, 1))
    assert objective.crop_size_for((48, 48, 32)) == (16, 16, 32)  # native cells: no resampling
    assert objective.crop_size_for((30, 30, 30)) == (16, 16, 32)  # 10 x 10 x 30 cells misfit: rounded
    assert build_objective("voco", net, 3).grid == (3, 3, 1)  # v2's grid spans the depth
    assert build_objective("voco", build_unet("tiny", 2), 2).grid == (3, 3)
    with pytest.raises(ValueError, match="crop_size"):
        build_objective("voco", net, 3, crop_size=20)
    with pytest.raises(ValueError, match="grid"):
        build_objective("voco", net, 3, grid=(3, 3))


def test_voco_crop_augmentation_flips_rotates_and_shifts_each_crop_on_its_own():
    crops = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    config = VoCoConfig(crop_flip_p=0.0, crop_rot90_p=0.0, crop_shift_p=0.0)
    assert torch.equal(augment_crops(crops, config, _gen(0)), crops)  # all off: untouched
    rotated = augment_crops(crops, VoCoConfig(crop_flip_p=0.0, crop_rot90_p=1.0, crop_shift_p=0.0), _gen(1))
    for crop, out in zip(crops, rotated, strict=True):  # each crop turned by its own multiple of 90 degrees
        assert any(torch.equal(out, crop.rot90(k, dims=(1, 2))) for k in (1, 2, 3))
    shifted = augment_crops(crops, VoCoConfig(crop_flip_p=0.0, crop_rot90_p=0.0, crop_shift_p=1.0), _gen(2))
    offsets = (shifted - crops).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-5)
    assert bool((offsets.abs() <= 0.1).all())
    assert not torch.equal(augment_crops(crops, VoCoConfig(), _gen(3)), augment_crops(crops, VoCoConfig(), _gen(4)))


# --- every objective on awkward batches ------------------------------------------------------------------


def _single_label(size):
    return torch.full((1, 1, *size), 2, dtype=torch.long)


def _absent_ids(size):
    labels = torch.zeros((1, 1, *size), dtype=torch.long)
    labels[..., size[-1] // 2:] = 4  # ids 1-3 absent
    return labels


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("make_labels", [_single_label, _absent_ids])
def test_objectives_finite_on_single_label_absent_ids_and_batch_of_one(name, make_labels):
    torch.manual_seed(0)
    net = build_unet("tiny", 2)
    small = {"supcon": {"samples": 16, "head_hidden": 8, "head_out": 4},
             "voco": {"head_hidden": 8, "head_out": 4}, "rasd": {}, "voxnce": {"samples": 16}}[name]
    objective = build_objective(name, net, 2, **small)
    labels = make_labels((48, 48))
    out = objective(net, _views(labels), labels, _gen(21))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and all(math.isfinite(v) for v in out.logs.values())
    for p in [*net.parameters(), *objective.parameters()]:
        assert p.grad is None or torch.isfinite(p.grad).all()


# --- interface and dist -----------------------------------------------------------------------------------


def test_build_objective_rejects_unknown_names_and_settings():
    net = build_unet("tiny", 2)
    with pytest.raises(ValueError, match="rasd"):
        build_objective("mae", net, 2)
    with pytest.raises(ValueError, match="temprature"):
        build_objective("supcon", net, 2, temprature=0.1)
    with pytest.raises(ValueError, match="3D"):
        build_objective("rasd", build_unet("tiny", 3), 2)
    assert sorted(OBJECTIVES) == ["rasd", "supcon", "voco", "voxnce"]
    assert [OBJECTIVES[k][0].requires_labels for k in ("supcon", "voco", "rasd", "voxnce")] == [True, False, True,
                                                                                                False]


def test_all_gather_grad_is_identity_when_not_distributed():
    assert not is_distributed() and get_rank() == 0
    x = torch.randn(3, 2, requires_grad=True)
    y = all_gather_grad(x)
    assert y is x
    (2 * y).sum().backward()
    assert torch.equal(x.grad, torch.full((3, 2), 2.0))


def _rank_samples(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = F.normalize(torch.randn(6, 3, generator=_gen(100 + rank)), dim=1)
    # Labels 0 and 1 on both ranks, and every anchor has a positive on its own rank.
    return z, torch.tensor([0, 0, 1, 1, 2 + rank, 2 + rank])


def _gather_worker(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = torch.full((2, 3), float(rank + 1), requires_grad=True)
        gathered = all_gather_grad(x)
        # Rank r weights row block k by (r + 1) * (k + 1); d(sum over ranks)/dx_k = (k + 1) * sum_r (r + 1).
        weights = torch.arange(1, world + 1, dtype=torch.float32).repeat_interleave(2)[:, None] * (rank + 1)
        (gathered * weights).sum().backward()
        # SupCon with negatives from every rank, anchors from this rank only.
        z, labels = _rank_samples(rank)
        z.requires_grad_()
        loss = supcon_loss(all_gather_grad(z), all_gather_grad(labels), 0.33, slice(6 * rank, 6 * rank + 6))
        loss.backward()
        results[rank] = (gathered[:, 0].tolist(), x.grad[0, 0].item(), loss.item(), z.grad.tolist())
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_all_gather_grad_sums_gradients_across_gloo_ranks():
    mp = torch.multiprocessing.get_context("spawn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        procs = [mp.Process(target=_gather_worker, args=(r, 2, port, results)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs)
        results = dict(results)
    for rank in range(2):
        gathered, grad, _, _ = results[rank]
        assert gathered == [1.0, 1.0, 2.0, 2.0]
        assert grad == pytest.approx((rank + 1) * (1 + 2))
    # The ranks together compute the single-process loss on all samples, and its gradient (times world size,
    # since each rank's gradient is that of the sum of the ranks' losses).
    samples = [_rank_samples(r) for r in range(2)]
    z = torch.cat([s[0] for s in samples]).requires_grad_()
    full = supcon_loss(z, torch.cat([s[1] for s in samples]), 0.33)
    full.backward()
    assert (results[0][2] + results[1][2]) / 2 == pytest.approx(full.item(), rel=1e-5)
    rank_grads = torch.tensor([results[0][3], results[1][3]]).flatten(0, 1)
    assert torch.allclose(rank_grads, 2 * z.grad, atol=1e-5)


# --------------------------------------------------------------------------------------------------- voxnce


def test_voxnce_loss_is_log_n_for_collapsed_features_and_small_for_distinct_ones():
    from synthlab.losses.voxnce import voxnce_loss

    n = 8
    collapsed = torch.nn.functional.normalize(torch.ones(1, n, 4), dim=-1)
    assert voxnce_loss(collapsed, collapsed, 0.1).item() == pytest.approx(math.log(n), rel=1e-5)
    distinct = torch.eye(n)[None]
    assert voxnce_loss(distinct, distinct, 0.1).item() < 1e-3
    assert voxnce_loss(distinct, distinct.roll(1, dims=1), 0.1).item() > math.log(n)


def test_voxnce_locations_stay_inside_their_box_and_neighbours_near_their_parents():
    from synthlab.losses.voxnce import sample_locations

    low, high = torch.tensor([2, 3]), torch.tensor([9, 12])
    coords = sample_locations(low, high, 40, 0.5, 2, torch.Generator().manual_seed(0))
    assert coords.shape == (40, 2)
    assert bool(((coords >= low) & (coords < high)).all())


def test_voxnce_windows_differ_between_views_and_fit_the_network():
    net = build_unet("tiny", 2)  # downsample factor 8
    objective = build_objective("voxnce", net, 2)
    assert objective.crop_size((64, 40)) == (48, 24)
    with pytest.raises(ValueError, match="too small"):
        objective.crop_size((8, 8))


def test_voxnce_objective_learns_a_fixed_pair_and_refuses_a_single_view():
    torch.manual_seed(0)
    net = build_unet("tiny", 2)
    objective = build_objective("voxnce", net, 2, samples=64)
    views = torch.rand(2, 2, 1, 16, 16)
    views[:, 1] = 1 - views[:, 0]  # the same layout under an inverted contrast
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = objective(net, views, None, torch.Generator().manual_seed(1)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    with pytest.raises(ValueError, match="two aligned views"):
        objective(net, views[:, :1], None, torch.Generator())


def test_rasd_loss_does_not_depend_on_how_regions_are_numbered() -> None:
    from synthlab.losses.rasd import rasd_loss

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 6, 6, generator=generator)
    labels = torch.randint(0, 3, (2, 1, 6, 6), generator=generator)
    sparse = torch.tensor([0, 7, 100000])[labels]  # the same regions under huge, gappy ids
    for a, b in zip(rasd_loss(features, labels), rasd_loss(features, sparse), strict=True):
        torch.testing.assert_close(a, b)
