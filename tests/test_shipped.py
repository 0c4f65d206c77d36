"""Tests for synthlab.shipped: every shipped name has a valid recipe, loads offline, and its log has probes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import synthlab
from synthlab.checkpoint import ALIASES, WEIGHTS_DIR, load_checkpoint, resolve_checkpoint
from synthlab.data import find_data_root
from synthlab.losses import OBJECTIVES
from synthlab.shipped import portable_config, read_log, recipe, recipe_names, summary, training_record
from synthlab.studies.render import render_training_table
from synthlab.train import TrainConfig

NAMES = [f"synthlab-{objective}-{dim}d" for objective in ("supcon", "voco", "rasd", "voxnce") for dim in (2, 3)]


def test_every_shipped_name_has_a_recipe_that_is_a_valid_run_on_cpu_and_gpu(tmp_path: Path) -> None:
    assert sorted(NAMES) == recipe_names()
    for name in NAMES:
        if "supcon" in name and find_data_root() is None:
            continue  # its shape bank is TotalSegmentator's, under $SYNTHLAB_DATA
        for profile in ("cpu", "gpu"):
            config = recipe(name, tmp_path / name, profile)
            assert isinstance(config, TrainConfig) and config.dim == int(name[-2]) and config.objective in name
            assert config.probe_every > 0  # every shipped run logs whether its features transfer
            assert (config.synth is None) == (config.data is not None)  # real volumes, or the synthetic engine
        assert recipe(name, tmp_path, "gpu").as_dict() != recipe(name, tmp_path).as_dict()  # the gpu run is bigger
    with pytest.raises(ValueError, match="profile"):
        recipe(NAMES[0], tmp_path, "tpu")


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_checkpoint_is_what_its_recipe_trains(name: str, tmp_path: Path) -> None:
    """The recipe is the record of how the weights were made: the checkpoint's stored config is the recipe's cpu
    or gpu run on every field that says what is computed (a recipe that drifts from its weights fails here)."""
    if "supcon" in name and find_data_root() is None:
        pytest.skip("its shape bank is TotalSegmentator's, under $SYNTHLAB_DATA")
    stored = load_checkpoint(WEIGHTS_DIR / f"{name}.pt", map_location="cpu")["config"]
    watching = ("out", "device", "resume", "checkpoint_every", "log_every", "probe_every")  # a probed run trains alike
    computed = [key for key in stored if key not in watching]
    runs = {profile: portable_config(recipe(name, tmp_path / profile, profile).as_dict()) for profile in ("cpu", "gpu")}
    matches = [profile for profile, run in runs.items() if all(run[key] == stored[key] for key in computed)]
    assert matches, {profile: [key for key in computed if run[key] != stored[key]] for profile, run in runs.items()}


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_load_offline_by_name_and_stay_small(name: str) -> None:
    path = resolve_checkpoint(name)
    assert path.parent == WEIGHTS_DIR and path.stat().st_size <= 25 * 10**6  # the project's limit per file
    net = synthlab.load_pretrained(name)
    assert net.dim == int(name[-2]) and not net.training
    x = torch.rand((1, 1) + (32,) * net.dim)
    assert net(x).shape == (1, net.out_channels) + (32,) * net.dim
    payload = load_checkpoint(name)
    assert "optimizer" not in payload and payload["config"]["out"] is None  # slim: weights and provenance
    assert "'/" not in repr(payload["config"]), "a shipped config names a folder of the machine that trained it"
    profile = payload.get("recipe", {}).get("profile", "cpu")
    assert summary(name)["device"] == ("cuda" if profile.startswith("gpu") else "cpu")  # where it was trained
    if profile in ("cpu", "gpu") and ("supcon" not in name or find_data_root() is not None):
        assert summary(name)["steps"] == recipe(name, "unused", profile).steps  # the recipe's full run


def test_aliases_name_shipped_weights_of_their_dimension() -> None:
    for alias, target in ALIASES.items():
        assert target in NAMES and alias[-2:] == target[-2:]
        assert resolve_checkpoint(alias) == resolve_checkpoint(target)


def test_shipped_logs_start_with_the_untrained_probe_and_end_at_the_last_step() -> None:
    for name in NAMES:
        rows = read_log(name)
        assert rows[0]["step"] == "0" and rows[0]["loss"] == "" and rows[0]["synth_match"] != ""
        assert int(rows[-1]["step"]) == summary(name)["steps"] and rows[-1]["synth_match"] != ""


def test_each_training_record_reads_its_objectives_own_task_from_the_first_and_last_probed_rows() -> None:
    for name in NAMES:
        record, rows = training_record(name), read_log(name)
        columns = [column for column, _ in OBJECTIVES[record["objective"]][0].own_task]
        assert columns and [entry["column"] for entry in record["own_task"]] == columns  # none silently missing
        for entry in record["own_task"]:
            column = entry["column"]
            assert entry["start"] == float(rows[0][column]) and entry["end"] == float(rows[-1][column])
        losses = [float(row["loss"]) for row in rows if row["loss"]]
        window = record["loss"]["window"]
        assert 1 <= window <= 25 and record["loss"]["last"] == pytest.approx(sum(losses[-window:]) / window)
        assert record["real_match"]["start"] == float(rows[0]["real_match"])  # step 0: the untrained network
    table = render_training_table(NAMES[:2])
    assert table.count("\n| synthlab-") == 2 and "0.08 → 0.33" in table  # supcon 2D's same-label cosine


def test_unknown_names_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="synthlab-mae-2d"):
        recipe("synthlab-mae-2d", tmp_path)
    with pytest.raises(FileNotFoundError, match="synthlab-mae-2d"):
        read_log("synthlab-mae-2d")
