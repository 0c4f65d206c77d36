"""Tests for synthlab.train: schedule, validation, exact resume, DDP on two CPU processes, real volumes."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.checkpoint import load_checkpoint, load_pretrained
from synthlab.data import load_unlabeled, unlabeled_files
from synthlab.losses.supcon import SupConConfig
from synthlab.profiles import get_profile
from synthlab.synth import SynthConfig
from synthlab.train import StepReport, TrainConfig, lr_factor, pretrain

REPO = Path(__file__).resolve().parents[1]
TINY = {"dim": 2, "size": 16, "preset": "tiny", "batch_size": 2, "device": "cpu", "lr": 1e-3}


class Killed(Exception):
    """Raised from a callback to stop a run the way a kill would."""


def _config(out: Path, objective: str = "supcon", **overrides: object) -> TrainConfig:
    settings = {**TINY, "steps": 6, "checkpoint_every": 3, **overrides}
    return TrainConfig(objective=objective, out=out, **settings)


def _log_rows(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _without_seconds(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _assert_states_equal(first: dict, second: dict, where: str) -> None:
    assert first.keys() == second.keys(), where
    for key in first:
        a, b = first[key], second[key]
        if isinstance(a, dict):
            _assert_states_equal(a, b, f"{where}.{key}")
        elif isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f"{where}.{key} differs"
        else:
            assert a == b, f"{where}.{key} differs"


# ----------------------------------------------------------------------------------------------- schedule


def test_lr_factor_warms_up_linearly_then_follows_a_cosine_to_the_floor() -> None:
    total, warmup_fraction, floor = 105, 0.05, 0.1  # round(5.25) = 5 warm-up steps, then 100 cosine steps
    warm = [lr_factor(s, total, warmup_fraction, floor) for s in range(5)]
    assert warm == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lr_factor(5, total, warmup_fraction, floor) == pytest.approx(1.0)
    assert lr_factor(55, total, warmup_fraction, floor) == pytest.approx(0.55)  # half-way: cos = 0
    assert lr_factor(total, total, warmup_fraction, floor) == pytest.approx(floor)
    after = [lr_factor(s, total, warmup_fraction, floor) for s in range(5, total)]
    assert all(a > b for a, b in zip(after, after[1:], strict=False))


# ----------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"objective": "simclr"}, "objective"), ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"),
     ({"dim": 4}, "dim"), ({"lr": 0.0}, "lr"), ({"device": "tpu"}, "device")],
    ids=["objective", "steps", "batch", "dim", "lr", "device"],
)
def test_config_rejects_bad_fields_naming_them(tmp_path: Path, overrides: dict, field: str) -> None:
    kwargs = {"objective": "supcon", "out": tmp_path / "run", **overrides}
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_preset_defaults_to_the_active_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHLAB_PROFILE", "cpu")
    config = TrainConfig(objective="voco", out=tmp_path, dim=3)
    assert config.preset == get_profile("cpu").preset(3)
    assert config.as_dict()["out"] == str(tmp_path)


def test_settings_are_resolved_once_into_typed_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "maps").mkdir()
    config = TrainConfig(objective="supcon", out="run", dim=2, size=32, labels="maps",
                         synth={"appearance.noise_p": 0.25}, objective_config={"temperature": 0.5})
    assert isinstance(config.synth, SynthConfig) and isinstance(config.objective_config, SupConConfig)
    assert config.labels == str(tmp_path / "maps") == config.synth.labels  # absolute, in both places
    assert (config.synth.dim, config.synth.size, config.synth.n_views) == (2, (32, 32), 2)
    assert config.synth.appearance.noise_p == 0.25 and config.objective_config.temperature == 0.5
    again = TrainConfig(**config.as_dict())  # what a checkpoint stores rebuilds the same run
    assert again == config and again.as_dict() == config.as_dict()
    assert dataclasses.replace(config, steps=7).synth is config.synth  # a copy converts nothing again
    assert TrainConfig(objective="voco", out="run", dim=2).synth.n_views == 1  # the views the objective uses


def test_size_that_does_not_fit_the_network_fails_before_any_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="size 20"):
        pretrain(_config(out, size=20))  # tiny preset pools 3 times: sides must be multiples of 8
    assert not out.exists()


def test_labelled_objective_refuses_real_unlabeled_data(tmp_path: Path) -> None:
    folder = tmp_path / "volumes"
    folder.mkdir()
    _write_volume(folder / "a.nii.gz", seed=0)
    with pytest.raises(ValueError, match="data"):
        pretrain(_config(tmp_path / "run", objective="rasd", data=folder))
    assert not (tmp_path / "run").exists()


def test_fresh_run_refuses_an_old_checkpoint_and_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pretrain(_config(out, steps=2))
    with pytest.raises(ValueError, match="resume"):
        pretrain(_config(out, steps=2))
    with pytest.raises(ValueError, match="lr"):
        pretrain(_config(out, steps=2, lr=5e-4, resume=True))
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        pretrain(_config(tmp_path / "never_run", resume=True))


def test_log_every_keeps_every_nth_step_and_the_last(tmp_path: Path) -> None:
    pretrain(_config(tmp_path / "run", "rasd", steps=5, log_every=2))
    rows = _log_rows(tmp_path / "run")
    assert [int(row["step"]) for row in rows] == [2, 4, 5]
    assert {"step", "loss", "seconds"} < set(rows[0])  # plus the objective's own logs
    assert float(rows[-1]["seconds"]) >= float(rows[0]["seconds"]) > 0


# ----------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("objective", ["supcon", "voco", "rasd"])
def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path: Path, objective: str) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    summary = pretrain(_config(straight, objective))

    def kill_after_step_4(report: StepReport) -> None:
        if report.step == 4:  # one step past the checkpoint at 3: that step must be replayed
            raise Killed

    with pytest.raises(Killed):
        pretrain(_config(broken, objective), callback=kill_after_step_4)
    assert load_checkpoint(broken / "checkpoint.pt")["step"] == 3
    assert len(_log_rows(broken)) == 4
    resumed = pretrain(_config(broken, objective, resume=True))

    assert resumed["steps"] == summary["steps"] == 6
    assert _without_seconds(_log_rows(broken)) == _without_seconds(_log_rows(straight))
    assert resumed["final_loss"] == summary["final_loss"]
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(broken / "checkpoint.pt")
    for part in ("model", "objective", "optimizer"):
        _assert_states_equal(a[part], b[part], part)


# ----------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_rebuilds_the_trained_network_in_a_fresh_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained: dict[str, torch.nn.Module] = {}
    pretrain(_config(out, steps=2), callback=lambda report: trained.update(net=report.net))
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.save(image, tmp_path / "image.pt")
    with torch.no_grad():
        expected = trained["net"].eval()(image)
    script = ("import sys, torch; from synthlab.checkpoint import load_pretrained; "
              "net = load_pretrained(sys.argv[1]); assert not net.training; "
              "torch.save(net(torch.load(sys.argv[2])).detach(), sys.argv[3])")
    subprocess.run([sys.executable, "-c", script, str(out / "checkpoint.pt"), str(tmp_path / "image.pt"),
                    str(tmp_path / "features.pt")], check=True, cwd=REPO,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert torch.equal(torch.load(tmp_path / "features.pt"), expected)
    assert torch.equal(load_pretrained(out / "checkpoint.pt")(image).detach(), expected)


# ----------------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _snapshot(report: StepReport) -> dict[str, dict[str, torch.Tensor]]:
    return {"params": {name: p.detach().clone() for name, p in report.net.named_parameters()},
            "heads": {name: p.detach().clone() for name, p in report.objective.named_parameters()}}


def _ddp_worker(rank: int, world_size: int, ports: tuple[int, int], tmp: str) -> None:
    """Two runs per rank: one under the torchrun environment (pretrain starts the process group itself), then,
    in a group this worker starts, a run killed after step 3 and resumed from its checkpoint at step 2."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    settings = {**TINY, "steps": 4, "checkpoint_every": 2}
    seen: dict[str, object] = {}

    def record(report: StepReport) -> None:
        seen.setdefault("first_views", report.views.clone())
        seen["straight"] = _snapshot(report)

    pretrain(TrainConfig(objective="supcon", out=Path(tmp) / "straight", **settings), callback=record)
    assert not torch.distributed.is_initialized()  # pretrain closed the group it opened

    def kill_after_step_3(report: StepReport) -> None:
        if report.step == 3:
            raise Killed

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{ports[1]}", rank=rank,
                                         world_size=world_size)
    broken = TrainConfig(objective="supcon", out=Path(tmp) / "broken", **settings)
    try:
        pretrain(broken, callback=kill_after_step_3)
    except Killed:
        pass
    pretrain(dataclasses.replace(broken, resume=True),
             callback=lambda report: seen.update(resumed=_snapshot(report)))
    torch.distributed.destroy_process_group()
    torch.save(seen, Path(tmp) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_cpu_processes_keep_identical_weights_draw_different_samples_and_resume_exactly(
        tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_ddp_worker, args=(2, (_free_port(), _free_port()), str(tmp_path)), nprocs=2,
                                join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert not torch.equal(rank0["first_views"], rank1["first_views"])  # seed + rank
    for group in ("params", "heads"):
        names = rank0["straight"][group].keys()
        assert names and names == rank1["straight"][group].keys()
        for name in names:
            reference = rank0["straight"][group][name]
            assert torch.equal(rank1["straight"][group][name], reference), f"{group} {name} differs by rank"
            for rank in (rank0, rank1):  # the resumed run replays both ranks' streams
                assert torch.equal(rank["resumed"][group][name], reference), f"resumed {group} {name} differs"
    logs = [_without_seconds(_log_rows(tmp_path / run)) for run in ("straight", "broken")]
    assert logs[0] == logs[1] and len(logs[0]) == 4
    saved = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert len(saved["rng"]) == 2  # both ranks' random streams
    for name, value in rank0["straight"]["params"].items():
        assert torch.equal(saved["model"][name], value)


# ----------------------------------------------------------------------------------------------- real volumes


def _write_volume(path: Path, seed: int, shape: tuple[int, int, int] = (20, 18, 12)) -> Path:
    array = np.random.default_rng(seed).normal(100.0, 20.0, size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return path


def test_data_folder_listing_names_stray_files_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent"):
        unlabeled_files(tmp_path / "absent")
    _write_volume(tmp_path / "b.nii.gz", seed=1)
    _write_volume(tmp_path / "a.nii", seed=0)
    (tmp_path / "more").mkdir()
    _write_volume(tmp_path / "more" / "c.nii.gz", seed=2)
    (tmp_path / ".hidden").write_text("skipped")
    assert [p.name for p in unlabeled_files(tmp_path)] == ["a.nii", "b.nii.gz", "c.nii.gz"]  # sub-folders too
    assert unlabeled_files(tmp_path / "a.nii") == [tmp_path / "a.nii"]  # one file
    (tmp_path / "more" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        unlabeled_files(tmp_path)


def test_an_msd_folder_given_as_data_feeds_its_images(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    for seed in range(2):
        _write_volume(tmp_path / "imagesTr" / f"case_{seed}.nii.gz", seed)
    entries = [{"image": f"./imagesTr/case_{seed}.nii.gz"} for seed in range(2)]
    (tmp_path / "dataset.json").write_text(json.dumps({"training": entries}))
    assert [p.name for p in unlabeled_files(tmp_path)] == ["case_0.nii.gz", "case_1.nii.gz"]  # not the JSON


def test_a_single_slice_is_refused_for_3d_pretraining(tmp_path: Path) -> None:
    files = [_write_volume(tmp_path / "slice.nii.gz", seed=0, shape=(20, 18, 1))]
    with pytest.raises(ValueError, match="slice.nii.gz is a single slice"):
        load_unlabeled(files, dim=3, size=16)
    (flat,) = load_unlabeled(files, dim=2, size=16)  # a 2D image is what 2D pretraining reads
    assert tuple(flat.shape) == (20, 18, 1)


def test_unlabeled_volumes_are_normalised_and_padded_to_fit_a_crop(tmp_path: Path) -> None:
    files = [_write_volume(tmp_path / "a.nii.gz", seed=0, shape=(20, 10, 6))]
    (volume,) = load_unlabeled(files, dim=3, size=16)
    assert tuple(volume.shape) == (20, 16, 16)  # padded where smaller than the crop, never cropped
    assert float(volume.min()) == 0.0 and float(volume.max()) == 1.0
    (flat,) = load_unlabeled(files, dim=2, size=16)
    assert tuple(flat.shape) == (20, 16, 6)  # 2D: only the in-plane axes must fit; slices run along the last


@pytest.mark.parametrize("dim", [2, 3])
def test_real_volume_training_feeds_single_view_crops(tmp_path: Path, dim: int) -> None:
    folder = tmp_path / "volumes"
    folder.mkdir()
    for seed in range(2):
        _write_volume(folder / f"v{seed}.nii.gz", seed)
    crops: list[torch.Tensor] = []
    summary = pretrain(_config(tmp_path / "run", "voco", dim=dim, steps=2, data=folder),
                       callback=lambda report: crops.append(report.views))
    assert math.isfinite(summary["final_loss"])
    assert tuple(crops[0].shape) == (2, 1, 1, *(16,) * dim)
    assert 0.0 <= float(crops[0].min()) and float(crops[0].max()) <= 1.0
    assert not torch.equal(crops[0], crops[1])


# ----------------------------------------------------------------------------------------------- configs and probes


def test_synth_and_objective_settings_reach_the_engine_the_objective_and_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _config(out, steps=2, synth={"appearance.noise_p": 0.0, "procedural": {"n_labels": [3, 3]}},
                     objective_config={"temperature": 0.5})
    seen = []
    pretrain(config, callback=lambda report: seen.append(report.objective.config.temperature))
    assert seen == [0.5, 0.5]
    saved = load_checkpoint(out / "checkpoint.pt")["config"]
    assert saved["synth"]["appearance"]["noise_p"] == 0.0 and saved["synth"]["procedural"]["n_labels"] == [3, 3]
    assert saved["synth"]["appearance"]["gamma_p"] == 0.5  # a partial group keeps its other defaults
    assert saved["objective_config"]["temperature"] == 0.5
    with pytest.raises(ValueError, match="synth"):  # a resume must train the same data
        pretrain(dataclasses.replace(config, steps=3, resume=True, synth={"appearance.noise_p": 0.5}))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"synth": {"appearance.nosie_p": 0.1}}, "nosie_p"), ({"synth": {"size": 32}}, "size"),
     ({"synth": {"appearance.gamma_p": 2.0}}, "gamma_p"), ({"objective_config": {"temprature": 0.1}}, "temprature")],
    ids=["unknown-synth-field", "run-owned-field", "bad-probability", "unknown-objective-field"],
)
def test_bad_synth_or_objective_settings_are_named_before_any_file(tmp_path: Path, overrides: dict,
                                                                  named: str) -> None:
    with pytest.raises(ValueError, match=named):
        _config(tmp_path / "run", **overrides)
    assert not (tmp_path / "run").exists()


def test_voco_renders_only_the_view_it_uses(tmp_path: Path) -> None:
    shapes = []
    pretrain(_config(tmp_path / "run", "voco", steps=1, size=32),
             callback=lambda report: shapes.append(tuple(report.views.shape)))
    assert shapes[0][1] == 1


def test_probes_join_the_log_at_step_0_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    calls = []

    def probe(net: torch.nn.Module, objective: torch.nn.Module) -> dict[str, float]:
        calls.append(objective.name)
        return {"probe_a": float(len(calls))}

    straight = pretrain(_config(tmp_path / "probed", "rasd", steps=5, probe_every=2), probe=probe)
    rows = _log_rows(tmp_path / "probed")
    assert [row["step"] for row in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [row["probe_a"] for row in rows] == ["1.0", "", "2.0", "", "3.0", "4.0"]
    assert rows[0]["loss"] == "" and straight["probe"] == {"probe_a": 4.0} and set(calls) == {"rasd"}
    unprobed = pretrain(_config(tmp_path / "plain", "rasd", steps=5))
    assert unprobed["final_loss"] == straight["final_loss"]  # probing does not change the training


def test_thread_count_follows_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from synthlab.dist import configure_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SYNTHLAB_THREADS", "1")
        assert configure_threads() == 1 and torch.get_num_threads() == 1
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("SYNTHLAB_THREADS", "0")
        with pytest.raises(ValueError, match="threads"):
            configure_threads()
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------- the run folder


def test_resume_compares_data_paths_after_resolving_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "volumes"
    folder.mkdir()
    for seed in range(2):
        _write_volume(folder / f"v{seed}.nii.gz", seed)
    monkeypatch.chdir(tmp_path)

    def kill_at_2(report: StepReport) -> None:
        if report.step == 2:
            raise Killed

    with pytest.raises(Killed):
        pretrain(_config(tmp_path / "run", "voco", dim=3, steps=4, checkpoint_every=2, data="volumes"),
                 callback=kill_at_2)
    stored = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["data"]
    assert stored == str(folder.resolve())  # absolute, whatever the folder was called on the command line
    other = tmp_path / "copy"
    other.mkdir()
    _write_volume(other / "v0.nii.gz", 0)
    with pytest.raises(ValueError, match="resume: data"):
        pretrain(_config(tmp_path / "run", "voco", dim=3, steps=4, checkpoint_every=2, data=other, resume=True))
    monkeypatch.chdir(folder)  # the same folder spelled differently from elsewhere
    summary = pretrain(_config(tmp_path / "run", "voco", dim=3, steps=4, checkpoint_every=2, data="../volumes/",
                               resume=True))
    assert summary["steps"] == 4


def test_a_foreign_log_is_kept_aside_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("someone,else\n1,2\n")
    with pytest.warns(UserWarning, match="held a log.csv but no checkpoint"):
        pretrain(_config(out, steps=2))
    assert (out / "log.csv.old").read_text() == "someone,else\n1,2\n"
    assert [row["step"] for row in _log_rows(out)] == ["1", "2"]


def test_a_run_whose_checkpoints_would_not_fit_on_the_disk_stops_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    steps: list[int] = []
    with pytest.raises(ValueError, match="only 0.0 MiB free"):
        pretrain(_config(tmp_path / "run", steps=2), callback=lambda report: steps.append(report.step))
    assert steps == [] and not (tmp_path / "run").exists()


def test_a_resume_removes_the_temporary_file_of_a_save_that_was_killed(tmp_path: Path) -> None:
    out = tmp_path / "run"

    def kill_at_3(report: StepReport) -> None:
        if report.step == 3:
            raise Killed

    with pytest.raises(Killed):
        pretrain(_config(out), callback=kill_at_3)
    stale = out / ".checkpoint.pt.k1ll3d.tmp"  # what a SIGKILL during torch.save leaves
    stale.write_bytes(b"half a checkpoint")
    pretrain(_config(out, resume=True))
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "log.csv"]
