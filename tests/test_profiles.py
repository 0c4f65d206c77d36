"""Tests for the profiles: overrides layered over the configs' defaults, each budget stated once."""

from __future__ import annotations

import pytest

from synthlab.__main__ import parse_args
from synthlab.correspondence import CorrespondenceConfig
from synthlab.eval_reg import evaluate_registration
from synthlab.eval_seg import evaluate_segmentation
from synthlab.profiles import PROFILES, PerDim, Profile, get_profile
from synthlab.register import SOLVER_PRESETS, RegistrationConfig
from synthlab.segment import FineTuneConfig
from synthlab.train import TrainConfig

TARGETS = {target.__name__: target for target in (TrainConfig, FineTuneConfig, evaluate_segmentation,
                                                   RegistrationConfig, evaluate_registration, CorrespondenceConfig)}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_profile_states_only_settings_it_changes(name: str) -> None:
    profile = PROFILES[name]
    assert set(profile.overrides) <= set(TARGETS), "a profile configures something no command takes"
    for key, values in profile.overrides.items():
        target = TARGETS[key]
        for field, value in values.items():
            if key == "TrainConfig" and field == "preset":
                continue  # TrainConfig has no preset of its own: the profile's is its default
            bases = [CorrespondenceConfig.for_dim(dim) if key == "CorrespondenceConfig" else target for dim in (2, 3)]
            defaults = [_default(base, field, dim) for base, dim in zip(bases, (2, 3), strict=True)]
            given = [value.pick(dim) if isinstance(value, PerDim) else value for dim in (2, 3)]
            assert given != defaults, f"{name}: {key}.{field} restates its default {defaults}"


def _default(target: object, field: str, dim: int) -> object:
    """The value ``target`` gives ``field`` without a profile, read through a profile that overrides nothing."""
    empty = Profile(name="empty", description="", overrides={}, example_size=PerDim(1, 1), compare_shots=(1,),
                    compare_seeds=0)
    return empty.setting(target, field, dim)


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("dim", [2, 3])
def test_every_profile_builds_every_config(name: str, dim: int, tmp_path) -> None:
    profile = PROFILES[name]
    train = profile.configure(TrainConfig, dim, objective="supcon", out=tmp_path)
    assert (train.dim, train.preset) == (dim, profile.preset(dim))
    assert profile.configure(FineTuneConfig, dim).batch(dim) >= 1
    assert profile.configure(CorrespondenceConfig.for_dim(dim), dim).dim == dim
    for solver in SOLVER_PRESETS.values():
        profile.configure(solver, 3)
    assert set(profile.arguments(evaluate_segmentation, dim)).isdisjoint(
        field for field in FineTuneConfig.__dataclass_fields__)  # a notebook passes both: no key twice


def test_layers_apply_in_order_defaults_profile_explicit() -> None:
    ci = get_profile("ci")
    budget = ci.configure(FineTuneConfig, 2, steps=7)
    assert (budget.steps, budget.batch_size, budget.probe_steps) == (7, 8, 150)  # explicit, profile, profile
    assert budget.lr_scratch == FineTuneConfig().lr_scratch  # default
    assert ci.configure(FineTuneConfig, 3).batch(3) == 2  # PerDim(8, None): FineTuneConfig's own 3D default
    anatomix = ci.configure(SOLVER_PRESETS["anatomix"], 3)
    assert anatomix.iterations == 40 and anatomix.network_weight == SOLVER_PRESETS["anatomix"].network_weight
    assert ci.setting(evaluate_segmentation, "seeds", 2) == 3  # the function's default: ci does not restate it
    assert ci.arguments(evaluate_segmentation, 2)["dim"] == 2


def test_the_ci_profile_keeps_the_budgets_the_notebooks_ran_before_the_layers() -> None:
    ci = get_profile("ci")
    assert [ci.setting(TrainConfig, k, 2) for k in ("size", "steps", "batch_size")] == [64, 30, 2]
    assert ci.setting(TrainConfig, "size", 3) == 32 and ci.preset(3) == "tiny"
    seg = [ci.setting(evaluate_segmentation, k, 2) for k in ("shots", "seeds", "max_test", "tune")]
    assert seg == [(1,), 3, 8, False]
    probe = ci.configure(CorrespondenceConfig.for_dim(3), 3)
    assert (probe.queries, probe.size) == (500, 64)
    assert ci.configure(CorrespondenceConfig.for_dim(2), 2).size == 128


def test_a_wrong_setting_or_value_names_the_field(tmp_path) -> None:
    with pytest.raises(ValueError, match="no setting 'stepz'"):
        get_profile("ci").setting(FineTuneConfig, "stepz", 2)
    with pytest.raises(ValueError, match="steps"):
        get_profile("ci").configure(FineTuneConfig, 2, steps="many")
    with pytest.raises(ValueError, match="evaluate_segmentation takes no epochs"):
        get_profile("ci").arguments(evaluate_segmentation, 2, epochs=3)
    with pytest.raises(ValueError, match="iterations"):
        get_profile("ci").configure(SOLVER_PRESETS["synthlab"], 3, iterations=1.5)


def test_the_command_line_takes_a_profile_and_a_flag_still_wins() -> None:
    plain = parse_args(["eval-seg", "--data", "d", "--out", "o.json"])
    assert (plain.steps, plain.batch_size, plain.shots, plain.tune) == (FineTuneConfig.steps, None, [1, 3, 5], False)
    ci = parse_args(["eval-seg", "--data", "d", "--out", "o.json", "--profile", "ci", "--dim", "2", "--steps", "9"])
    assert (ci.steps, ci.batch_size, ci.probe_steps, ci.shots, ci.max_test) == (9, 8, 150, [1], 8)
    assert ci.preset == "tiny"  # --checkpoint none builds the profile's network
    cpu = parse_args(["eval-seg", "--data", "d", "--out", "o.json", "--profile", "cpu", "--no-tune"])
    assert (cpu.seeds, cpu.max_test, cpu.tune) == (10, 40, False)
    gpu = parse_args(["pretrain", "--objective", "supcon", "--out", "r", "--profile", "gpu", "--dim", "3"])
    assert (gpu.size, gpu.steps, gpu.batch_size, gpu.preset) == (128, 20000, 4, "anatomix")
    probe = parse_args(["eval-features", "--out", "o.json", "--profile", "ci", "--dim", "3"])
    assert (probe.size, probe.queries) == (64, 500)
