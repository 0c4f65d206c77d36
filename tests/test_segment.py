"""Tests for synthlab.segment, augment, eval_seg: Dice, loss, layout, splits, augmentation, few-shot protocol."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab import augment, eval_seg, segment, tuning
from synthlab.augment import AugmentConfig
from synthlab.checkpoint import FORMAT_VERSION, save_checkpoint
from synthlab.data import Case, Volume, find_data_root
from synthlab.dims import to_slices
from synthlab.metrics import dice_per_label
from synthlab.nets import LevelFeatures, build_unet

STILL = AugmentConfig(flip_prob=0.0, affine_prob=0.0, gamma_prob=0.0, noise_prob=0.0)
FAST = {"preset": "tiny", "progress": False, "device": "cpu"}


def _write_cubes(folder: Path, n: int = 6, side: int = 16) -> Path:
    """An MSD folder of ``n`` noisy volumes, each with one bright cube (label 1) at a seeded random place."""
    rng = np.random.default_rng(0)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    entries = []
    for i in range(n):
        label = np.zeros((side, side, side - 2), np.uint8)  # one short axis: padding must be handled
        width = int(rng.integers(5, 8))
        x, y, z = (int(rng.integers(1, s - width - 1)) for s in label.shape)
        label[x:x + width, y:y + width, z:z + width] = 1
        image = (0.2 + 0.6 * label + rng.normal(0, 0.05, label.shape)).astype(np.float32)
        for kind, array in (("imagesTr", image), ("labelsTr", label)):
            nib.save(nib.Nifti1Image(array, np.eye(4)), folder / kind / f"cube_{i}.nii.gz")
        entries.append({"image": f"./imagesTr/cube_{i}.nii.gz", "label": f"./labelsTr/cube_{i}.nii.gz"})
    (folder / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "cube"},
                                                     "training": entries}))
    return folder


@pytest.fixture(scope="module")
def cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_cubes(tmp_path_factory.mktemp("cubes"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file holding a random tiny 3D UNet, standing in for pretrained weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        net = build_unet("tiny", 3)
    payload = {"format": FORMAT_VERSION, "model_config": dict(net.config), "model": net.state_dict()}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", payload)


# ------------------------------------------------------------------------------------------- metric, loss


def test_dice_per_label_hand_cases() -> None:
    target = torch.tensor([[0, 1, 1, 0], [2, 2, 0, 0]])
    assert dice_per_label(target, target, [1, 2]) == {1: 1.0, 2: 1.0}
    disjoint = torch.tensor([[1, 0, 0, 1], [0, 0, 2, 2]])
    assert dice_per_label(disjoint, target, [1, 2]) == {1: 0.0, 2: 0.0}
    half = torch.tensor([[0, 1, 0, 1], [2, 2, 2, 2]])  # 1: 1 shared of 2 + 2 voxels; 2: 2 shared of 4 + 2
    assert dice_per_label(half, target, [1, 2]) == pytest.approx({1: 0.5, 2: 2 * 2 / 6})
    # Label 3 is absent from both maps (agreement on nothing); label 2 is missing from the prediction.
    only_one = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])
    assert dice_per_label(only_one, target, [1, 2, 3]) == {1: 1.0, 2: 0.0, 3: 1.0}


def test_dice_ce_loss_is_near_zero_for_confident_correct_logits_and_large_for_wrong() -> None:
    target = torch.tensor([[[0, 1], [2, 0]]])  # (B, X, Y)
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    assert float(segment.dice_ce_loss(onehot * 50, target)) < 1e-4
    wrong = torch.nn.functional.one_hot((target + 1) % 3, 3).movedim(-1, 1).float() * 50
    assert float(segment.dice_ce_loss(wrong, target)) > 40  # CE ~ 50 plus a Dice term of ~1


# ------------------------------------------------------------------------------------------- layout, splits


def test_prepare_cases_pads_to_the_downsample_multiple_and_marks_the_original_field_of_view() -> None:
    def case(shape: tuple[int, int, int]) -> Case:
        label = torch.zeros(shape, dtype=torch.int64)
        label[1, 1, 1] = 1
        return Case(str(shape), Volume(torch.rand(shape) * 100, np.eye(4)), Volume(label, np.eye(4)))

    prepared, grid = segment.prepare_cases([case((5, 9, 7)), case((8, 3, 4))], multiple=4, dim=3)
    assert grid == (8, 12, 8)
    assert all(tuple(p.image.shape) == grid for p in prepared)
    assert int(prepared[0].valid.sum()) == 5 * 9 * 7 and int(prepared[1].label.sum()) == 1
    assert 0.0 <= float(prepared[0].image.min()) and float(prepared[0].image.max()) <= 1.0
    flat, _ = segment.prepare_cases([case((5, 9, 7))], multiple=4, dim=2)
    assert tuple(flat[0].image.shape) == (8, 12, 7)  # 2D never pads the slice axis


def test_split_subjects_fixed_test_list_distinct_nested_subjects_and_bad_shots() -> None:
    tests = {tuple(eval_seg.split_subjects(20, k, s, max_test=8, stride=3)[1])
             for k in (1, 3) for s in range(3)}
    assert tests == {tuple(eval_seg._case_order(20)[:8])}
    firsts = [eval_seg.split_subjects(20, 3, s, max_test=8, stride=3)[0] for s in range(4)]
    assert len({i for train in firsts for i in train}) == 12  # 4 seeds x 3 shots, all different subjects
    assert not set(firsts[0]) & set(tests.pop())
    assert eval_seg.split_subjects(20, 1, 2, 8, 3)[0] == firsts[2][:1]  # 1-shot set nested in the 3-shot set
    train, test = eval_seg.split_subjects(6, 2, 1, max_test=None, stride=2)
    assert sorted(train + test) == list(range(6)) and not set(train) & set(test)
    with pytest.raises(ValueError, match="shots"):
        eval_seg.split_subjects(6, 6, 0, max_test=None, stride=6)
    with pytest.raises(ValueError, match="shots"):
        eval_seg.split_subjects(6, 3, 0, max_test=4, stride=3)


# ------------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("dim", [2, 3])
def test_augment_identity_and_exact_flip(dim: int) -> None:
    image = torch.rand(2, 1, *([6] * dim))
    label = (image[:, 0] > 0.5).long()
    same_image, same_label = augment.apply_augment(image, label, augment.sample_augment(
        2, image.shape[2:], STILL, torch.Generator().manual_seed(0)))
    assert torch.allclose(same_image, image, atol=1e-5) and torch.equal(same_label, label)
    flip = AugmentConfig(flip_prob=1.0, affine_prob=0.0, gamma_prob=0.0, noise_prob=0.0)
    params = augment.sample_augment(2, image.shape[2:], flip, torch.Generator().manual_seed(0))
    flipped, flipped_label = augment.apply_augment(image, label, params)
    assert torch.allclose(flipped, image.flip(2), atol=1e-5) and torch.equal(flipped_label, label.flip(1))


def test_augment_draws_depend_only_on_the_generator_and_keep_labels_integer() -> None:
    config = AugmentConfig(flip_prob=0.5, affine_prob=1.0, gamma_prob=1.0, noise_prob=1.0)
    images, labels = torch.rand(4, 1, 8, 8, 8), torch.randint(0, 3, (4, 8, 8, 8))
    first = augment.draw_batch(images, labels, 3, config, torch.Generator().manual_seed(5))
    second = augment.draw_batch(images, labels, 3, config, torch.Generator().manual_seed(5))
    other = augment.draw_batch(images, labels, 3, config, torch.Generator().manual_seed(6))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])
    assert first[1].dtype == torch.int64 and set(first[1].unique().tolist()) <= {0, 1, 2}


# ------------------------------------------------------------------------------------------- protocol


def test_training_on_cubes_beats_the_untrained_model(cubes: Path) -> None:
    settings = {"shots": [3], "seeds": 2, "dim": 3, "arms": ["scratch"], **FAST}
    untrained = eval_seg.evaluate_segmentation(cubes, steps=0, **settings)["scratch"]["3"]["per_seed"]
    trained = eval_seg.evaluate_segmentation(cubes, steps=80, **settings)["scratch"]["3"]["per_seed"]
    assert all(after > max(0.6, before + 0.3) for before, after in zip(untrained, trained, strict=True)), (
        untrained, trained)


def test_arms_share_subjects_batches_and_augmentation(cubes: Path, tiny_checkpoint: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[float, float]] = []
    original = segment.draw_batch

    def recording(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = original(*args, **kwargs)
        seen.append((float(images.double().sum()), float(labels.double().sum())))
        return images, labels

    monkeypatch.setattr(segment, "draw_batch", recording)
    steps = 3
    result = eval_seg.evaluate_segmentation(cubes, checkpoint=str(tiny_checkpoint), shots=[2], seeds=2,
                                           steps=steps, dim=3, max_test=2, device="cpu", progress=False)
    runs = [seen[i:i + steps] for i in range(0, len(seen), steps)]  # per seed: the two fine-tuned arms
    assert len(runs) == 4  # the probes see no augmented batches: they fit every training voxel at once
    assert runs[0] == runs[1] and runs[2] == runs[3] and runs[0] != runs[2]
    subjects = [result[arm]["2"]["subjects"] for arm in segment.ARMS]
    assert all(s == subjects[0] for s in subjects) and subjects[0][0] != subjects[0][1]
    gain = result["gain"]["2"]
    pairs = zip(result["pretrained"]["2"]["per_seed"], result["scratch"]["2"]["per_seed"], strict=True)
    assert gain["per_seed"] == pytest.approx([p - s for p, s in pairs])
    assert result["settings"]["probe_backbone"] == "pretrained"


def test_2d_path_reports_every_field_and_same_seed_gives_same_result(cubes: Path) -> None:
    settings = {"shots": [1, 2], "seeds": 2, "steps": 3, "dim": 2, "max_test": 3, "probe_steps": 30, **FAST}
    result = eval_seg.evaluate_segmentation(cubes, **settings)
    again = eval_seg.evaluate_segmentation(cubes, **settings)
    json.dumps(result)  # JSON-able as it stands
    assert {arm: result[arm] for arm in segment.ARMS} == {arm: again[arm] for arm in segment.ARMS}
    assert result["pretrained"] is None and result["gain"] is None and set(result["scratch"]) == {"1", "2"}
    entry = result["probe"]["2"]
    assert len(entry["per_seed"]) == 2 and entry["n_test"] == [3, 3] and set(entry["per_label"]) == {"1"}
    assert entry["mean"] == pytest.approx(float(np.mean(entry["per_seed"])))
    assert entry["sem"] == pytest.approx(float(np.std(entry["per_seed"], ddof=1) / np.sqrt(2)))
    assert len(result["settings"]["test_cases"]) == 3


def test_bad_inputs_raise_errors_that_name_the_field(cubes: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="shots"):
        eval_seg.evaluate_segmentation(cubes, shots=[6], seeds=1, steps=1, **FAST)
    with pytest.raises(ValueError, match="max_test"):
        eval_seg.evaluate_segmentation(cubes, shots=[1], seeds=1, steps=1, max_test=6, **FAST)
    with pytest.raises(FileNotFoundError, match="no_such_data"):
        eval_seg.evaluate_segmentation("no_such_data", shots=[1], seeds=1, steps=1, **FAST)
    with pytest.raises(ValueError, match="dim"):
        eval_seg.evaluate_segmentation(cubes, checkpoint=str(tiny_checkpoint), dim=2, progress=False)
    with pytest.raises(ValueError, match="preset"):
        eval_seg.evaluate_segmentation(cubes, checkpoint=str(tiny_checkpoint), preset="tiny", progress=False)


def test_short_run_on_real_hippocampus() -> None:
    root = find_data_root()
    if root is None or not (root / "hippocampus" / "dataset.json").is_file():
        pytest.skip("real data absent: set SYNTHLAB_DATA to the shared data folder to run this test")
    result = eval_seg.evaluate_segmentation(root / "hippocampus", shots=[1], seeds=1, steps=2, dim=3,
                                           max_test=2, arms=["scratch"], **FAST)
    entry, settings = result["scratch"]["1"], result["settings"]
    assert settings["labels"] == [1, 2] and settings["n_cases"] == 130
    factor = build_unet("tiny", 3).downsample_factor  # largest crop is 43x56x47 voxels
    assert settings["grid"] == [-(-side // factor) * factor for side in (43, 56, 47)]
    assert 0.0 <= entry["mean"] <= 1.0 and entry["subjects"][0][0].startswith("hippocampus_")


def test_a_probe_trained_to_convergence_reads_what_its_features_hold(cubes: Path) -> None:
    result = eval_seg.evaluate_segmentation(cubes, shots=[2], seeds=1, steps=2, dim=2, max_test=3,
                                            arms=("probe_intensity", "probe_random"), probe_steps=300, **FAST)
    # The cube is the bright part of each image: a head on the intensity alone finds it, far from Dice 0.
    assert result["probe_intensity"]["2"]["mean"] > 0.7
    assert 0.0 <= result["probe_random"]["2"]["mean"] <= 1.0 and result["scratch"] is None


def test_tuning_chooses_on_validation_cases_apart_from_the_test_list(cubes: Path) -> None:
    many = _write_cubes(cubes.parent / "many_cubes", n=12)
    result = eval_seg.evaluate_segmentation(many, shots=[1], seeds=2, steps=2, dim=2, max_test=3, tune=True,
                                            val_cases=3, tune_seeds=1, arms=("scratch",), **FAST)
    settings = result["settings"]
    tested, validated = set(settings["test_cases"]), set(settings["validation_cases"])
    trained = {name for names in result["scratch"]["1"]["subjects"] for name in names}
    assert len(tested) == len(validated) == 3 and not tested & validated and not trained & (tested | validated)
    scored = settings["tuning"]["scratch"]["choices"]
    assert [row["lr_scratch"] for row in scored][:4] == list(tuning.SCRATCH_LRS)
    chosen = settings["tuning"]["scratch"]["chosen"]
    assert chosen["val_dice"] == max(row["val_dice"] for row in scored)
    # A choice at the end of the grid was followed further out until it lay inside, or the extensions ran out.
    extended = len(scored) - len(tuning.SCRATCH_LRS)
    assert 0 <= extended <= tuning.GRID_EXTENSIONS
    assert (tuning.grid_extension("scratch", scored) is None) or extended == tuning.GRID_EXTENSIONS
    assert settings["lrs"]["scratch"] == chosen["lr_scratch"]
    # The choice is made on seeds after the evaluated ones: other training subjects than any scored run's.
    tuned_on = {name for names in settings["tuning"]["scratch"]["subjects"] for name in names}
    assert settings["tuning"]["scratch"]["seeds"] == [2] and tuned_on and not tuned_on & (trained | tested)
    with pytest.raises(ValueError, match="max_test"):
        eval_seg.evaluate_segmentation(many, shots=[1], seeds=1, steps=1, dim=2, tune=True, **FAST)


def test_a_study_rerun_with_its_chosen_settings_trains_each_seed_on_the_subjects_of_the_tuned_one(
        cubes: Path) -> None:
    many = _write_cubes(cubes.parent / "held_cubes", n=12)
    common = {"shots": [1], "seeds": 2, "steps": 1, "dim": 2, "max_test": 3, "val_cases": 3, "tune_seeds": 1,
              "arms": ("scratch",), **FAST}
    tuned = eval_seg.evaluate_segmentation(many, tune=True, **common)
    rerun = eval_seg.evaluate_segmentation(many, hold_validation=True, **common)
    plain = eval_seg.evaluate_segmentation(many, **common)
    assert rerun["scratch"]["1"]["subjects"] == tuned["scratch"]["1"]["subjects"]
    assert rerun["settings"]["validation_cases"] == tuned["settings"]["validation_cases"]
    assert rerun["settings"]["tuning"] is None and plain["settings"]["validation_cases"] is None
    assert plain["scratch"]["1"]["subjects"] != tuned["scratch"]["1"]["subjects"]  # else the test shows nothing


def test_a_best_learning_rate_at_the_end_of_its_grid_is_followed_one_step_further_out() -> None:
    def scored(dice: dict[float, float], **others: float) -> list[dict[str, float]]:
        return [{"lr_finetune": lr, **others, "val_dice": d} for lr, d in dice.items()]

    interior = scored({1e-3: 0.5, 3e-3: 0.7, 1e-2: 0.6})
    assert tuning.grid_extension("pretrained", interior) is None
    low = scored({1e-3: 0.73, 3e-3: 0.65, 1e-2: 0.6}, freeze_fraction=0.0)
    assert tuning.grid_extension("pretrained", low) == {"lr_finetune": 3e-4, "freeze_fraction": 0.0}
    high = [{"lr_scratch": lr, "val_dice": d} for lr, d in {3e-3: 0.2, 1e-2: 0.4, 3e-2: 0.5}.items()]
    assert tuning.grid_extension("scratch", high) == {"lr_scratch": 0.1}
    # The edge is judged among the rates tried with the best's other settings: 1e-2 ends the frozen grid.
    mixed = scored({1e-3: 0.5, 1e-2: 0.6}, freeze_fraction=0.0) + scored({1e-2: 0.8, 3e-2: 0.1}, freeze_fraction=0.25)
    assert tuning.grid_extension("pretrained", mixed) == {"lr_finetune": 3e-3, "freeze_fraction": 0.25}
    # Past the limits nothing more is tried.
    top = [{"lr_scratch": lr, "val_dice": d} for lr, d in {0.3: 0.1, 1.0: 0.9}.items()]
    assert tuning.grid_extension("scratch", top) is None


def test_tuning_tries_each_head_start_per_arm_and_by_default_the_grids_it_always_tried(cubes: Path) -> None:
    assert tuning.tuning_choices("scratch") == [{"lr_scratch": lr} for lr in (3e-3, 1e-2, 3e-2, 1e-1)]
    pretrained = tuning.tuning_choices("pretrained")
    assert len(pretrained) == 8 and {row["freeze_fraction"] for row in pretrained} == {0.0, 0.25}
    both = tuning.tuning_choices("scratch", ("random", "probe"))
    assert [row["head_scratch"] for row in both] == ["random"] * 4 + ["probe"] * 4
    choices = tuning.tuning_choices("pretrained", ("random", "probe"))
    fitted = [row for row in choices if row["head_finetune"] == "probe"]
    assert len(fitted) == 4 and all(row["freeze_fraction"] == 0.0 for row in fitted)  # a fitted head needs no warm-up
    with pytest.raises(ValueError, match="tune_heads"):
        eval_seg.evaluate_segmentation(cubes, shots=[1], seeds=1, steps=1, dim=2, tune_heads=("zeros",), **FAST)


def test_a_frozen_warm_up_trains_only_the_head_first() -> None:
    backbone = build_unet("tiny", 2)
    model = segment.SegmentationNet(backbone, 2, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in backbone.parameters()]
    images, labels = torch.rand(4, 1, 16, 16), torch.randint(0, 2, (4, 16, 16))
    segment.train_model(model, images, labels, steps=2, lr=1e-2, batch_size=2, augment=STILL,
                        generator=torch.Generator().manual_seed(0), freeze_steps=2)
    assert all(torch.equal(a, b) for a, b in zip(before, backbone.parameters(), strict=True))
    segment.train_model(model, images, labels, steps=2, lr=1e-2, batch_size=2, augment=STILL,
                        generator=torch.Generator().manual_seed(0), freeze_steps=1)
    assert not all(torch.equal(a, b) for a, b in zip(before, backbone.parameters(), strict=True))


def test_a_probe_fitted_head_starts_fine_tuning_where_the_probe_ends(cubes: Path) -> None:
    cases, _ = segment.prepare_cases(eval_seg._numbered_cases(cubes)[0], 8, 2)
    backbone, cpu = build_unet("tiny", 2), torch.device("cpu")
    budget = segment.FineTuneConfig(steps=0, head_finetune="probe", head_scratch="probe", probe_steps=100,
                                    augment=STILL)
    lpft = segment.fit_arm("pretrained", copy.deepcopy(backbone), cases, [0], 2, (0, 1), budget, cpu)
    probe = segment.fit_probe(copy.deepcopy(backbone), cases, [0], 2, (0, 1), budget, cpu)
    random_head = segment.fit_arm("pretrained", copy.deepcopy(backbone), cases, [0], 2, (0, 1),
                                  replace(budget, head_finetune="random"), cpu)
    assert torch.equal(lpft.head_weight, probe.head_weight) and torch.equal(lpft.feature_std, probe.feature_std)
    assert not lpft.freeze_backbone and all(p.requires_grad for p in lpft.backbone.parameters())
    images, labels = to_slices(cases[0].image, 2), to_slices(cases[0].label, 2)[:, 0]
    with torch.no_grad():  # on the case it was fitted to, the fitted head starts far below a random one
        assert segment.dice_ce_loss(lpft.eval()(images), labels) < segment.dice_ce_loss(random_head.eval()(images),
                                                                                        labels) - 0.1
    trained = segment.fit_arm("scratch", copy.deepcopy(backbone), cases, [0], 2, (0, 1), replace(budget, steps=2),
                              cpu)  # then every layer trains, in either fine-tuned arm
    assert not all(torch.equal(a, b) for a, b in zip(backbone.parameters(), trained.backbone.parameters(),
                                                      strict=True))
    with pytest.raises(ValueError, match="head_scratch"):
        segment.FineTuneConfig(head_scratch="zeros")


def test_runs_spread_over_worker_processes_give_the_results_of_one_process(tmp_path: Path,
                                                                           tiny_checkpoint: Path) -> None:
    many = _write_cubes(tmp_path / "many_cubes", n=10)
    settings = {"checkpoint": str(tiny_checkpoint), "shots": [1], "seeds": 2, "steps": 3, "dim": 3,
                "max_test": 3, "tune": True, "val_cases": 2, "tune_seeds": 1, "probe_steps": 20,
                "progress": False, "device": "cpu"}
    alone = eval_seg.evaluate_segmentation(many, workers=1, **settings)
    spread = eval_seg.evaluate_segmentation(many, workers=2, **settings)
    assert spread["settings"]["workers"] == 2
    for report in (alone, spread):
        report["settings"].pop("seconds"), report["settings"].pop("workers")
    assert spread == alone  # exactly: each run is computed alike wherever it runs
    assert all(alone[arm] is not None for arm in segment.ARMS) and alone["settings"]["tuning"]["pretrained"]


def test_a_probe_predicts_through_the_folded_head_as_through_the_full_feature_stack() -> None:
    backbone = LevelFeatures(build_unet("tiny", 2).eval(), "all")
    model = segment.SegmentationNet(backbone, 3, torch.Generator().manual_seed(0), freeze_backbone=True)
    model.feature_mean.normal_(generator=torch.Generator().manual_seed(1))
    model.feature_std.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
    x = torch.rand(3, 1, 24, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        folded = model(x)
        features = (backbone(x) - model.feature_mean) / model.feature_std  # the stack the fold avoids building
        plain = torch.nn.functional.conv2d(features, model.head_weight, model.head_bias)
    assert folded.shape == plain.shape == (3, 3, 24, 32)
    torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="levels='all'"):
        LevelFeatures(build_unet("tiny", 2), "encoder").linear_readout(x, model.head_weight.flatten(1),
                                                                       model.head_bias)


def test_a_killed_study_resumes_from_its_journal_and_reports_what_an_uninterrupted_one_does(
        cubes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"shots": [1], "seeds": 3, "steps": 2, "dim": 2, "max_test": 3, "probe_steps": 5,
                "arms": ("scratch", "probe_intensity"), **FAST}
    whole = eval_seg.evaluate_segmentation(cubes, **settings)
    journal, original, calls = tmp_path / "study.json.partial.jsonl", eval_seg._train_and_score, []

    def dies_after_four(study: object, run: object) -> object:
        if len(calls) == 4:
            raise KeyboardInterrupt  # a kill in the middle of the fifth run
        calls.append(run)
        return original(study, run)

    monkeypatch.setattr(eval_seg, "_train_and_score", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        eval_seg.evaluate_segmentation(cubes, journal=journal, **settings)
    assert len(journal.read_text().splitlines()) == 1 + 4  # the fingerprint, then the four finished runs
    calls.clear()
    monkeypatch.setattr(eval_seg, "_train_and_score", lambda study, run: calls.append(run) or original(study, run))
    resumed = eval_seg.evaluate_segmentation(cubes, journal=journal, **settings)
    assert len(calls) == 6 - 4  # only the runs the killed study had not finished
    assert resumed["settings"]["resumed_runs"] == 4 and whole["settings"]["resumed_runs"] == 0
    lines = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert resumed["settings"]["seconds"] >= max(line["seconds"] for line in lines) > 0  # both invocations' time
    for report in (whole, resumed):
        report["settings"].pop("seconds"), report["settings"].pop("resumed_runs")
    assert resumed == whole
    with pytest.raises(ValueError, match="another study"):
        eval_seg.evaluate_segmentation(cubes, journal=journal, **{**settings, "max_test": 2})
