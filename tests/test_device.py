"""Every code path that can run on a GPU, on the device ``pytest --device`` names (the CPU by default).

CI runs these on the CPU; on a lent GPU machine ``pytest tests/test_device.py --device cuda`` runs the same
tests on CUDA, where integer matrix products, CPU generators handed CUDA tensors and ``.numpy()`` on CUDA tensors
fail. Where a CPU result exists, the device's result is compared with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.bench import bench_train
from synthlab.checkpoint import load_backbone, random_backbone
from synthlab.correspondence import CorrespondenceConfig, CorrespondenceProbe, TrainingProbe
from synthlab.data import load_msd
from synthlab.features import extract_features
from synthlab.losses import OBJECTIVES
from synthlab.nets import feature_network, unet_config
from synthlab.register import register
from synthlab.segment import FineTuneConfig, fit_arm, predict, prepare_cases
from synthlab.synth import SynthConfig, SynthEngine
from synthlab.train import TrainConfig, Trainee, build_run, pretrain, scheduled_lr, train_step
from tests.test_segment import _write_cubes


def _autocast(device: torch.device) -> bool:
    return device.type == "cuda"


@pytest.mark.parametrize("labels", ["procedural", "bank"])
@pytest.mark.parametrize("dim", [2, 3])
def test_synthesis_on_the_device(device: torch.device, tmp_path: Path, dim: int, labels: str) -> None:
    source = "procedural"
    if labels == "bank":
        label = np.zeros((20, 20, 20), np.int16)
        label[3:9, 4:12, 5:15], label[10:18, 8:16, 2:9] = 1, 2
        source = str(tmp_path / "map.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), source)
    engine = SynthEngine(SynthConfig(dim=dim, size=24, n_views=2, labels=source), device=device, seed=0)
    batch = engine.sample(2)
    assert batch.views.device.type == device.type and batch.labels.device.type == device.type
    assert bool(torch.isfinite(batch.views).all()) and 0.0 <= float(batch.views.min()) <= float(batch.views.max()) <= 1


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_every_objective_takes_a_training_step_on_the_device(device: torch.device, tmp_path: Path, objective: str,
                                                              dim: int) -> None:
    config = TrainConfig(objective=objective, out=tmp_path, dim=dim, size=48 if objective == "voco" else 16,
                         preset="tiny", batch_size=2, steps=2)
    parts = build_run(config, device, seed=0)
    before = [p.detach().clone() for p in parts.net.parameters()]
    views, labels = parts.source.sample(config.batch_size)
    loss, logs = train_step(Trainee(parts.net, parts.objective), parts.optimizer, (views, labels, parts.loss_generator),
                            lr=scheduled_lr(config, 0), grad_clip=config.grad_clip or None,
                            autocast=_autocast(device), after_step=parts.objective.after_step)
    assert math.isfinite(float(loss.detach())) and all(math.isfinite(v) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, parts.net.parameters(), strict=True))


@pytest.mark.parametrize("objective", ["voco", "supcon"])
def test_a_probed_pretraining_run_on_the_device(device: torch.device, tmp_path: Path, objective: str) -> None:
    config = TrainConfig(objective=objective, out=tmp_path / "run", dim=2, size=48, preset="tiny", batch_size=2,
                         steps=2, probe_every=1, device=device.type)
    summary = pretrain(config, probe=TrainingProbe.for_run(config))
    assert summary["device"].startswith(device.type) and math.isfinite(summary["final_loss"])
    assert all(math.isfinite(v) for k, v in summary["probe"].items() if "other_label" not in k)
    net = load_backbone(summary["checkpoint"], 2, features=True)
    assert getattr(net, "feature_source", "output") == OBJECTIVES[objective][0].feature_source


@pytest.mark.parametrize("source", ["output", "encoder"])
def test_features_and_the_probe_on_the_device_agree_with_the_cpu(device: torch.device, source: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # cuDNN convolutions default to TF32 (a 10-bit mantissa) on Ampere and later: features then differ by ~1e-2
    # through the encoder (H200, 2026-12-04). The question here is whether the code path is the same, so full fp32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    volume = torch.rand(20, 18, 22, generator=torch.Generator().manual_seed(0))
    net = feature_network(random_backbone(unet_config("tiny", 3), seed=0), source).eval()
    on_cpu = extract_features(net, volume, window=16, progress=False)
    on_device = extract_features(net.to(device), volume, window=16, progress=False)
    assert on_device.device == volume.device
    torch.testing.assert_close(on_device, on_cpu, atol=1e-4, rtol=1e-4)
    # The probe's draws live on the CPU, so the same features score the same on any device (up to the order of
    # a float sum); features computed on a GPU differ slightly (cuDNN), so both sides score the CPU's features.
    config = CorrespondenceConfig(dim=3, size=22, radius=3, queries=50, window=16)
    probe = CorrespondenceProbe(volume, volume.flip(0), config)
    there, here = probe.score(on_cpu.to(device), on_cpu.to(device)), probe.score(on_cpu, on_cpu)
    assert (there["match_rate"], there["median_error_vox"]) == (here["match_rate"], here["median_error_vox"])
    assert there["pair_cosine"] == pytest.approx(here["pair_cosine"], abs=1e-5)


def test_registration_on_the_device(device: torch.device) -> None:
    fixed = torch.rand(20, 20, 20, generator=torch.Generator().manual_seed(1))
    moving = fixed.roll(1, dims=0)
    net = random_backbone(unet_config("tiny", 3), seed=0).eval().to(device)
    result = register(fixed.to(device), moving.to(device), "network+mind", net, iterations=5)
    assert result.displacement.device.type == device.type and bool(torch.isfinite(result.displacement).all())


def test_fine_tuning_and_prediction_on_the_device(device: torch.device, tmp_path: Path) -> None:
    cases, _ = prepare_cases(load_msd(_write_cubes(tmp_path / "cubes", n=3)), multiple=8, dim=2)
    backbone = random_backbone(unet_config("tiny", 2), seed=0)
    for arm in ("scratch", "probe"):
        model = fit_arm(arm, backbone, cases, [0, 1], 2, (0, 2), FineTuneConfig(steps=3, batch_size=4), device)
        prediction = predict(model, cases[2].image)
        assert prediction.shape == cases[2].image.shape and prediction.device.type == "cpu"


def test_the_training_benchmark_on_the_device(device: torch.device) -> None:
    results = bench_train("voxnce", dim=2, size=32, preset="tiny", batch_size=2, steps=2, device=device.type)
    assert set(results["precision"]) == ({"fp32", "bf16"} if device.type == "cuda" else {"fp32"})
    assert all(entry["steps_per_s"] > 0 for entry in results["precision"].values())
