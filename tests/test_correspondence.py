"""Tests for synthlab.correspondence: the correspondence probe finds true matches, misses shifted ones, and says so."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.__main__ import main
from synthlab.correspondence import CorrespondenceConfig, CorrespondenceProbe, TrainingProbe, probe_features
from synthlab.data import Volume
from synthlab.losses import build_objective
from synthlab.nets import LevelFeatures, build_unet
from synthlab.synth import SynthConfig


def _texture(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A random image with structure at every scale, so no query sits in a flat region."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator)


def test_chance_rate_is_the_share_of_the_cube_inside_the_tolerance_block() -> None:
    assert CorrespondenceConfig(dim=2, radius=6).chance_rate == pytest.approx(9 / 169)
    assert CorrespondenceConfig(dim=3, radius=2).chance_rate == pytest.approx(27 / 125)


def test_identical_features_always_match_and_shifted_ones_never_do() -> None:
    image = _texture((3, 40, 40), 0)
    config = CorrespondenceConfig(dim=2, radius=6, queries=200, foreground=0.0)
    probe = CorrespondenceProbe(image, image, config)
    features = torch.stack([image, image.roll(1, dims=2), image.roll(1, dims=1)])  # a local descriptor
    same = probe.score(features, features)
    assert same["match_rate"] == 1.0 and same["median_error_vox"] == 0.0
    shifted = probe.score(features, features.roll(4, dims=3))  # the match now sits 4 voxels away
    assert shifted["match_rate"] == 0.0 and shifted["median_error_vox"] == pytest.approx(4.0)


def test_collapsed_features_have_pair_cosine_one_and_match_no_better_than_a_tie() -> None:
    image = _texture((2, 32, 32), 1)
    probe = CorrespondenceProbe(image, image, CorrespondenceConfig(dim=2, radius=4, queries=100, foreground=0.0))
    constant = torch.ones(4, 2, 32, 32)
    scores = probe.score(constant, constant)
    assert scores["pair_cosine"] == pytest.approx(1.0)
    assert scores["match_rate"] == 0.0  # every candidate ties; the first (a corner) is never in the block


def test_queries_stay_inside_the_foreground_and_away_from_the_border() -> None:
    image = torch.zeros(16, 24, 24)
    image[4:12, 5:20, 5:20] = 1.0
    probe = CorrespondenceProbe(image, image, CorrespondenceConfig(dim=3, radius=3, queries=50, foreground=0.5))
    assert bool((image[tuple(probe.queries.T)] > 0.5).all())
    with pytest.raises(ValueError, match="no foreground"):
        CorrespondenceProbe(torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), CorrespondenceConfig(dim=3, radius=2))


def _volume(array: torch.Tensor, spacing: tuple[float, float, float]) -> Volume:
    return Volume(array, np.diag([*spacing, 1.0]))


def test_probe_features_reports_every_method_in_the_documented_schema() -> None:
    base = _texture((40, 36, 6), 2) * 100
    fixed, moving = _volume(base, (1.0, 1.0, 4.0)), _volume(100 - base, (1.0, 1.0, 4.0))  # inverted contrast
    config = CorrespondenceConfig(dim=2, size=32, radius=3, queries=100)
    net = build_unet("tiny", 2)
    results = probe_features(fixed, moving, config, net=net)
    assert set(results["methods"]) == {"mind", "random", "network", "network+mind"}
    assert results["settings"]["chance_rate"] == pytest.approx(9 / 49)
    assert results["settings"]["grid"] == [6, 32, 29]  # slices along the coarse axis, 32 along the longest side
    for row in results["methods"].values():
        assert 0.0 <= row["match_rate"] <= 1.0 and math.isfinite(row["median_error_vox"])
        assert -1.0 <= row["pair_cosine"] <= 1.0
    assert set(probe_features(fixed, moving, config)["methods"]) == {"mind", "random"}
    with pytest.raises(ValueError, match="3D"):
        probe_features(fixed, moving, CorrespondenceConfig(dim=3, size=16), net=net)


def test_training_probe_reads_a_network_without_touching_the_global_random_state() -> None:
    probe = TrainingProbe(2, SynthConfig(dim=2, size=32))
    net = build_unet("tiny", 2)
    net.train()
    before = torch.get_rng_state()
    scores = probe(net)
    assert torch.equal(before, torch.get_rng_state())
    assert {"synth_match", "synth_agreement", "synth_pair_cosine", "synth_label_retrieval",
            "synth_label_retrieval_chance", "synth_same_label_cos_cross", "synth_same_label_cos_within",
            "synth_other_label_cos", "synth_region_variance"} == set(scores)
    assert all(math.isfinite(v) for v in scores.values())
    assert net.training  # the probe restores the mode it found


def test_training_probe_reads_what_an_objective_is_meant_to_give_and_asks_its_own_question() -> None:
    probe = TrainingProbe(2, SynthConfig(dim=2, size=48), feature_source="encoder")
    net = build_unet("tiny", 2)
    objective = build_objective("voco", net, 2, head_hidden=16, head_out=8)
    scores = probe(net, objective)
    assert 0.0 <= scores["voco_position_acc"] <= 1.0
    assert scores["voco_position_acc_constant"] == pytest.approx(0.25, abs=0.1)  # 3 x 3 grid: the centre wins 1/4
    encoder, everything = LevelFeatures(net, "encoder"), LevelFeatures(net, "all")
    assert encoder.out_channels == sum(net.encoder_channels) < everything.out_channels == sum(net.level_channels)
    for features in (encoder, everything):
        assert features(torch.rand(2, 1, 48, 48)).shape == (2, features.out_channels, 48, 48)


def _coregistered(folder: Path, seed: int = 0) -> Path:
    folder.mkdir()
    base = np.random.default_rng(seed).uniform(10, 100, size=(36, 32, 5)).astype(np.float32)
    for name, array in (("T1", base), ("FLAIR", 110 - base)):
        nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 4.0, 1.0])), folder / f"{name}.nii.gz")
    return folder


def test_eval_features_command_writes_the_documented_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _coregistered(tmp_path / "subject")
    out = tmp_path / "features.json"
    code = main(["eval-features", "--data", str(data), "--fixed", "t1", "--moving", "flair", "--size", "32",
                 "--radius", "3", "--queries", "50", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    [pair] = results["settings"]["pairs"]
    assert pair["fixed"] == "T1" and pair["moving"] == "FLAIR" and results["provenance"]["command"]
    report = results["networks"]["none"]
    assert set(report["mean"]) == {"mind", "random"} and len(report["pairs"]) == 1
    assert report["mean"]["mind"] == report["pairs"][0]["mind"]  # the mean of one pair is that pair
    assert {"match_rate", "median_error_vox", "pair_cosine"} <= set(report["mean"]["mind"])
    assert "mind" in capsys.readouterr().out


def test_eval_features_averages_several_pairs_and_checkpoints_alike(tmp_path: Path) -> None:
    from synthlab.correspondence import evaluate_feature_pairs, evaluate_features

    first, second = _coregistered(tmp_path / "first"), _coregistered(tmp_path / "second", seed=1)
    config = CorrespondenceConfig.for_dim(2, size=32, radius=3, queries=40)  # what the command's flags below give
    out = tmp_path / "features.json"
    assert main(["eval-features", "--pair", str(first), "t1", "flair", "--pair", str(second), "flair", "t1",
                 "--checkpoint", "synthlab-voxnce-2d", "none", "--size", "32", "--radius", "3", "--queries", "40",
                 "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [pair["fixed"] for pair in results["settings"]["pairs"]] == ["T1", "FLAIR"]
    network = results["networks"]["synthlab-voxnce-2d"]
    alone = [evaluate_features(folder, fixed, moving, "synthlab-voxnce-2d", config)["methods"]
             for folder, fixed, moving in ((first, "t1", "flair"), (second, "flair", "t1"))]
    assert network["pairs"] == json.loads(json.dumps(alone))  # each pair as a command of its own gives it
    rates = [row["network"]["match_rate"] for row in alone]
    assert network["mean"]["network"]["match_rate"] == pytest.approx(sum(rates) / 2)
    assert results["networks"]["none"]["pairs"][0]["mind"] == network["pairs"][0]["mind"]
    with pytest.raises(ValueError, match="pair"):
        evaluate_feature_pairs([], ["none"], config)
    assert main(["eval-features", "--data", str(first), "--pair", str(first), "t1", "flair",
                 "--out", str(tmp_path / "both.json")]) == 2
    assert not (tmp_path / "both.json").exists()


def test_eval_features_names_an_unknown_contrast_and_writes_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    data = _coregistered(tmp_path / "subject")
    out = tmp_path / "features.json"
    assert main(["eval-features", "--data", str(data), "--fixed", "T2", "--moving", "FLAIR", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "T2" in err and "\n" not in err and not out.exists()


def test_comparing_checkpoints_at_once_equals_probing_each_alone(tmp_path: Path) -> None:
    from synthlab.correspondence import compare_features, evaluate_features

    folder = _coregistered(tmp_path / "subject")
    config = CorrespondenceConfig(dim=2, size=32, radius=3, queries=60, pairs=60)
    checkpoints = {"voxnce": "synthlab-voxnce-2d", "rasd": "synthlab-rasd-2d"}
    together = compare_features(folder, "t1", "flair", checkpoints, config)
    for name, checkpoint in checkpoints.items():
        assert together[name] == evaluate_features(folder, "t1", "flair", checkpoint, config)
