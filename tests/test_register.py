"""Tests for synthlab.register, eval_reg and metrics: solver on known deformations, metrics, real-data protocols."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.data import find_data_root
from synthlab.eval_reg import ProtocolConfig, evaluate_registration, random_contrast, random_deformation
from synthlab.metrics import dice_per_label, endpoint_error, folding_percent
from synthlab.nets import build_unet
from synthlab.register import (
    SOLVER_PRESETS,
    RegistrationConfig,
    joint_pca,
    pair_features,
    register,
    register_features,
    registration_features,
)
from synthlab.registration_config import preset_name
from synthlab.spatial import affine_displacement, affine_matrix, gaussian_blur, warp

DATA_ROOT = find_data_root()
# Few steps keep the suite fast; the recovered fraction of the deformation is still large.
FAST = RegistrationConfig(iterations=30)


def _blob_image(size: int, dim: int = 3, seed: int = 0) -> torch.Tensor:
    """Smoothed noise scaled to [0, 1]: texture everywhere, so every displacement is observable."""
    generator = torch.Generator().manual_seed(seed)
    image = gaussian_blur(torch.rand((1, 1, *([size] * dim)), generator=generator), 1.5)[0, 0]
    return (image - image.min()) / (image.max() - image.min())


def _deformed_pair(size: int = 32, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fixed, moving, truth): fixed(x) = moving(x + truth(x)), so registration must return ``truth``."""
    moving = _blob_image(size, dim)
    truth = random_deformation((size,) * dim, (1.0,) * dim, torch.Generator().manual_seed(3),
                               ProtocolConfig(deformation_sides=(3,), deformation_std_mm=(1.5,)))
    fixed = warp(moving[None, None], truth[None])[0, 0]
    return fixed, moving, truth


# ------------------------------------------------------------------------------------------------ solver


@pytest.mark.parametrize("features", ["mind", "intensity"])
def test_recovers_known_deformation(features: str) -> None:
    fixed, moving, truth = _deformed_pair()
    before = endpoint_error(torch.zeros_like(truth), truth)
    result = register(fixed, moving, features, config=FAST)
    assert result.displacement.shape == truth.shape and result.warped.shape == moving.shape
    assert before > 1.0
    assert endpoint_error(result.displacement, truth) < 0.35 * before
    assert folding_percent(result.displacement) < 0.5
    assert (result.warped - fixed).abs().mean() < 0.5 * (moving - fixed).abs().mean()


def test_mind_registers_across_a_monotone_contrast_change() -> None:
    fixed, moving, truth = _deformed_pair()
    changed = moving.sqrt()  # monotone but not affine
    result = register(fixed, changed, "mind", config=FAST)
    assert endpoint_error(result.displacement, truth) < 0.35 * endpoint_error(torch.zeros_like(truth), truth)


def test_two_dimensional_registration() -> None:
    fixed, moving, truth = _deformed_pair(size=48, dim=2)
    result = register(fixed, moving, "mind", iterations=40)
    assert result.displacement.shape == (2, 48, 48)
    assert endpoint_error(result.displacement, truth) < 0.5 * endpoint_error(torch.zeros_like(truth), truth)


def test_the_anatomix_preset_registers_with_raw_features_and_differs_from_the_default() -> None:
    anatomix = SOLVER_PRESETS["anatomix"]
    assert (anatomix.fine_factor, anatomix.search_radius, anatomix.iterations, anatomix.lambda_) == (2, 1, 80, 0.75)
    assert anatomix.scaling == "raw" and not anatomix.normalize_cost
    assert SOLVER_PRESETS["synthlab"] == RegistrationConfig()
    fixed, moving, truth = _deformed_pair()
    result = register(fixed, moving, "mind", config=anatomix)
    assert endpoint_error(result.displacement, truth) < 0.35 * endpoint_error(torch.zeros_like(truth), truth)
    assert folding_percent(result.displacement) < 0.5
    unit = registration_features(fixed, "mind")
    raw = registration_features(fixed, "mind", config=anatomix)
    assert raw.shape == unit.shape and 0.0 <= float(raw.min()) and float(raw.max()) <= 1.0  # MIND-SSC as computed
    assert abs(float(unit.pow(2).mean()) - 1.0) < 1e-4
    with pytest.raises(ValueError, match="scaling"):
        RegistrationConfig(scaling="loud")


def test_the_affine_stage_alone_undoes_a_rotation_and_its_field_composes_with_the_rest() -> None:
    generator = torch.Generator().manual_seed(3)
    fixed = gaussian_blur(torch.randn(1, 4, 40, 40, generator=generator), 2.0)[0]
    rotation = affine_matrix(torch.tensor([[0.15]]), torch.tensor([[1.05, 1.05]]),
                             translation=torch.tensor([[2.0, -1.0]]))
    moving = warp(fixed[None], affine_displacement(rotation, (40, 40)))[0]
    inner = (slice(None), slice(8, 32), slice(8, 32))  # away from the border the rotation brings in
    before = ((moving - fixed) ** 2)[inner].mean()
    only_affine = RegistrationConfig(fine_factor=1, search_radius=0, iterations=0, field_sigma=0.0,
                                     affine_iterations=150, affine_learning_rate=0.01)
    u = register_features(fixed, moving, only_affine)
    after = ((warp(moving[None], u[None])[0] - fixed) ** 2)[inner].mean()
    assert after < 0.05 * before
    none = register_features(fixed, moving, replace(only_affine, affine_iterations=0))
    assert torch.equal(none, torch.zeros_like(none))  # without the stage, nothing moves in this configuration
    refined = register_features(fixed, moving, replace(only_affine, iterations=20))  # Adam on the affinely moved
    assert ((warp(moving[None], refined[None])[0] - fixed) ** 2)[inner].mean() < 0.05 * before


def test_later_passes_register_what_the_first_left_and_compose_with_it() -> None:
    fixed, moving, truth = _deformed_pair(size=48, dim=2)
    weak = RegistrationConfig(search_radius=0, iterations=8)  # one pass of few small steps leaves much undone
    errors = [endpoint_error(register(fixed, moving, "mind", config=replace(weak, passes=p)).displacement, truth)
              for p in (1, 2)]
    assert errors[1] < 0.9 * errors[0]  # the second pass goes on from where the first stopped


def test_joint_pca_finds_the_shared_direction_and_one_basis() -> None:
    generator = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, 4.0, 0.0, 0.0]) / 5  # the one direction along which both maps vary
    fixed_signal, moving_signal = torch.randn((2, 6, 7), generator=generator)
    fixed = direction.view(4, 1, 1) * fixed_signal + 0.01 * torch.randn((4, 6, 7), generator=generator) + 2.0
    moving = direction.view(4, 1, 1) * moving_signal + 0.01 * torch.randn((4, 6, 7), generator=generator) + 2.0
    everywhere = torch.ones(6, 7, dtype=torch.bool)
    first, second = joint_pca(fixed, moving, (everywhere, everywhere), 1)
    assert first.shape == (1, 6, 7) and second.shape == (1, 6, 7)
    pooled_mean = torch.cat([fixed_signal.flatten(), moving_signal.flatten()]).mean()
    sign = torch.sign((first[0] * fixed_signal).sum())  # an axis has no sign of its own
    torch.testing.assert_close(sign * first[0], fixed_signal - pooled_mean, atol=0.05, rtol=0)
    torch.testing.assert_close(sign * second[0], moving_signal - pooled_mean, atol=0.05, rtol=0)  # same basis
    masked = torch.zeros(6, 7, dtype=torch.bool)
    masked[:3] = True  # the basis is fitted to the masked voxels only, but every voxel is projected
    assert joint_pca(fixed, moving, (masked, masked), 2)[0].shape == (2, 6, 7)
    with pytest.raises(ValueError, match="network_pca must be in 1..4"):
        joint_pca(fixed, moving, (everywhere, everywhere), 5)


def test_pair_features_share_a_basis_and_registration_features_refuses_it() -> None:
    fixed, moving, truth = _deformed_pair(size=24)
    net = build_unet("small", 3)
    config = replace(FAST, network_pca=4)
    target, source = pair_features(fixed, moving, "network+mind", net, config)
    assert target.shape == source.shape == (4 + 12, 24, 24, 24)  # four components beside MIND's 12 channels
    with pytest.raises(ValueError, match="use pair_features"):
        registration_features(fixed, "network+mind", net, config)
    plain = pair_features(fixed, moving, "network+mind", net, FAST)  # without a basis: each image on its own
    torch.testing.assert_close(plain[0], registration_features(fixed, "network+mind", net, FAST))
    result = register(fixed, moving, "network+mind", net, config=config)
    assert endpoint_error(result.displacement, truth) < 0.6 * endpoint_error(torch.zeros_like(truth), truth)


def test_network_kept_out_of_the_adam_stage_refines_on_mind_alone() -> None:
    fixed, moving, _ = _deformed_pair(size=24)
    net = build_unet("small", 3)
    adam_only = replace(FAST, search_radius=0, network_refines=False)  # no discrete stage: Adam alone decides
    without = register(fixed, moving, "network+mind", net, config=adam_only).displacement
    torch.testing.assert_close(without, register(fixed, moving, "mind", config=adam_only).displacement)
    with_network = register(fixed, moving, "network+mind", net, config=replace(adam_only, network_refines=True))
    assert not torch.allclose(with_network.displacement, without)


def test_preset_name_reads_a_stored_config_back() -> None:
    from dataclasses import asdict

    for name, preset in SOLVER_PRESETS.items():
        stored = json.loads(json.dumps(asdict(replace(preset, iterations=7))))  # a profile's iterations aside
        assert preset_name(stored) == name
    older = json.loads(json.dumps(asdict(SOLVER_PRESETS["anatomix"])))
    del older["network_pca"]  # a file written before the setting existed
    assert preset_name(older) == "anatomix"
    assert preset_name(json.loads(json.dumps(asdict(replace(SOLVER_PRESETS["anatomix"], lambda_=9.0))))) == "custom"


def test_identical_images_give_near_zero_displacement() -> None:
    image = _blob_image(24)
    result = register(image, image, "mind", config=FAST)
    assert result.displacement.abs().max() < 0.25


def test_register_rejects_bad_inputs() -> None:
    image = _blob_image(16)
    with pytest.raises(ValueError, match="features must be one of"):
        register(image, image, "sift")
    with pytest.raises(ValueError, match="needs a network"):
        register(image, image, "network+mind")
    with pytest.raises(ValueError, match="share one"):
        register(image, image[:8], "mind")
    with pytest.raises(ValueError, match="patch"):
        RegistrationConfig(patch=0)


# ------------------------------------------------------------------------------------------------ metrics


def test_folding_of_identity_and_of_a_folded_field() -> None:
    assert folding_percent(torch.zeros(3, 8, 9, 10)) == 0.0
    folded = torch.zeros(2, 16, 16)
    folded[0] = -2.0 * torch.arange(16.0).view(16, 1)  # x -> -x along axis 0: orientation reversed
    assert folding_percent(folded) == 100.0
    half = folded.clone()
    half[:, :, :8] = 0  # only half of the columns fold
    assert 0 < folding_percent(half) < 100


def test_dice_per_label() -> None:
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[:5] = 1
    labels[5:, :5] = 2
    assert dice_per_label(labels, labels) == {1: 1.0, 2: 1.0}
    shifted = torch.roll(labels, 1, dims=0)  # label 1 keeps 4 of its 5 rows
    assert dice_per_label(shifted, labels)[1] == pytest.approx(2 * 40 / 100)
    assert dice_per_label(torch.zeros_like(labels), labels) == {1: 0.0, 2: 0.0}


def test_endpoint_error_known_values() -> None:
    truth = torch.zeros(3, 4, 4, 4)
    estimate = truth.clone()
    estimate[0], estimate[1] = 3.0, 4.0
    assert endpoint_error(estimate, truth) == pytest.approx(5.0)
    assert endpoint_error(estimate, truth, spacing=(2.0, 1.0, 1.0)) == pytest.approx(math.sqrt(36 + 16))
    mask = torch.zeros(4, 4, 4, dtype=torch.bool)
    mask[0] = True
    estimate[:, 1:] = 0
    assert endpoint_error(estimate, truth, mask) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no voxels"):
        endpoint_error(estimate, truth, torch.zeros_like(mask))


def test_random_deformation_is_seeded_and_scaled() -> None:
    config = ProtocolConfig(deformation_sides=(2, 4), deformation_std_mm=(4.0, 2.0))
    first = random_deformation((20, 20, 20), (2.0, 2.0, 2.0), torch.Generator().manual_seed(1), config)
    again = random_deformation((20, 20, 20), (2.0, 2.0, 2.0), torch.Generator().manual_seed(1), config)
    other = random_deformation((20, 20, 20), (2.0, 2.0, 2.0), torch.Generator().manual_seed(2), config)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)
    finer = random_deformation((20, 20, 20), (1.0, 1.0, 1.0), torch.Generator().manual_seed(1), config)
    torch.testing.assert_close(finer, 2 * first)  # same motion in mm is twice as many 1 mm voxels
    with pytest.raises(ValueError, match="one entry per octave"):
        ProtocolConfig(deformation_sides=(2, 4), deformation_std_mm=(1.0,))


def test_random_contrast() -> None:
    ramp = torch.linspace(0, 1, 101)
    monotone = random_contrast(ramp, torch.Generator().manual_seed(0), monotone=True)
    assert (monotone.diff() >= 0).all() and monotone[0] == 0 and monotone[-1] == pytest.approx(1.0)
    remapped = [random_contrast(ramp, torch.Generator().manual_seed(s), monotone=False) for s in range(5)]
    assert any((r.diff() < 0).any() for r in remapped), "a non-monotone curve should reorder intensities"
    torch.testing.assert_close(remapped[0], random_contrast(ramp, torch.Generator().manual_seed(0), False))


# ------------------------------------------------------------------------------------------------ protocols

needs_data = pytest.mark.skipif(DATA_ROOT is None, reason="shared data absent (set SYNTHLAB_DATA)")


@needs_data
def test_evaluate_coregistered_contrasts() -> None:
    results = evaluate_registration(DATA_ROOT / "brain_tumor_mri" / "study1", "T1prereg", "flair",
                                    features=["mind", "network"], seeds=1, size=32, device="cpu",
                                    config=RegistrationConfig(iterations=20))
    assert results["moving"] == "FLAIRreg"  # unique case-insensitive prefix
    assert max(results["shape"]) == 32 and "random initialisation" in results["network"]
    for name in ("mind", "network"):
        metrics = results["results"][name]
        assert metrics["epe_before"]["mean"] > 0.3
        assert 0 <= metrics["epe"]["mean"] < 2 * metrics["epe_before"]["mean"]
        assert 0 <= metrics["folding_percent"]["mean"] <= 100
    mind = results["results"]["mind"]
    assert mind["epe"]["mean"] < mind["epe_before"]["mean"]


@needs_data
def test_evaluate_rejects_unknown_contrast() -> None:
    with pytest.raises(ValueError, match="available: FLAIRreg, T1post, T1prereg, T2reg"):
        evaluate_registration(DATA_ROOT / "brain_tumor_mri" / "study1", "T1prereg", "PD", features=["mind"],
                              seeds=1, size=16, device="cpu")
    with pytest.raises(ValueError, match="ambiguous"):
        evaluate_registration(DATA_ROOT / "brain_tumor_mri" / "study1", "t1", "flair", features=["mind"],
                              seeds=1, size=16, device="cpu")


@needs_data
def test_evaluate_labelled_pairs() -> None:
    results = evaluate_registration(DATA_ROOT / "hippocampus", features=["mind"], seeds=1, device="cpu",
                                    config=RegistrationConfig(iterations=20))
    by_change = results["results"]["mind"]
    assert set(by_change) == {"none", "monotone", "non-monotone"}
    for metrics in by_change.values():
        assert 0 < metrics["dice_before"]["mean"] < 1 and 0 <= metrics["dice"]["mean"] <= 1
    assert by_change["none"]["dice"]["mean"] > by_change["none"]["dice_before"]["mean"]


def test_evaluate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="features"):
        evaluate_registration("anything", "a", "b", features=["sift"])
    with pytest.raises(ValueError, match="seeds"):
        evaluate_registration("anything", "a", "b", features=["mind"], seeds=0)


def test_labelled_pairs_longer_than_the_working_size_are_resampled(tmp_path: Path) -> None:
    """A pair of large 'whole-brain' scans registers on a working grid, not at full resolution."""
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    entries = []
    for case in range(2):
        image = _blob_image(48, seed=case).numpy().astype(np.float32)
        label = (image > 0.5).astype(np.int16)
        affine = np.diag([0.5, 0.5, 0.5, 1.0])  # 24 mm of 0.5 mm voxels
        nib.save(nib.Nifti1Image(image, affine), tmp_path / "imagesTr" / f"brain_{case}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), tmp_path / "labelsTr" / f"brain_{case}.nii.gz")
        entries.append({"image": f"./imagesTr/brain_{case}.nii.gz", "label": f"./labelsTr/brain_{case}.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "bright"},
                                                       "training": entries}))
    small = evaluate_registration(tmp_path, features=["mind"], seeds=1, size=16, device="cpu",
                                  config=RegistrationConfig(iterations=5), progress=False)
    assert small["per_seed"]["mind"]["none"][0]["grid"] == [16, 16, 16]  # 24 mm at 1.5 mm voxels
    native = evaluate_registration(tmp_path, features=["mind"], seeds=1, device="cpu",
                                   config=RegistrationConfig(iterations=5), progress=False)
    assert native["per_seed"]["mind"]["none"][0]["grid"] == [48, 48, 48]  # shorter than 128: kept as it is
