"""The benchmark commands run end to end at tiny sizes and report consistent numbers (timings are not asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from synthlab.bench import bench_register, bench_synth, bench_train, main
from synthlab.gpu_check import main as gpu_check_main


def test_bench_synth_reports_every_stage() -> None:
    results = bench_synth(dim=2, size=32, n=2, device="cpu", peers=False)
    text = json.dumps(results)
    assert "procedural" in text
    assert "NaN" not in text


def test_bench_train_shares_are_fractions() -> None:
    results = bench_train(objective="rasd", dim=2, size=32, preset="tiny", steps=2)
    entry = results["precision"]["fp32"]
    assert set(results["precision"]) == {"fp32"}  # bf16 is measured on CUDA only
    assert 0.0 < entry["synth_share"] < 1.0
    assert entry["steps_per_s"] > 0


def test_bench_cli_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "train.json"
    assert main(["train", "--objective", "voco", "--dim", "2", "--size", "64", "--preset", "tiny", "--steps", "1",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["objective"] == "voco"
    assert "steps/s" in capsys.readouterr().out


def test_bench_cli_bad_size_exits_2(capsys) -> None:
    assert main(["train", "--objective", "rasd", "--dim", "2", "--size", "30", "--preset", "tiny", "--steps", "1"]) == 2
    assert "size" in capsys.readouterr().err.lower()


def test_bench_register_times_features_and_solver_of_a_pair_that_needs_moving(capsys) -> None:
    results = bench_register(size=24, features="network+mind", checkpoint="none", threads=1)
    assert results["total_s"] == pytest.approx(results["features_s"] + results["solver_s"])
    assert results["channels"] > 12 and results["mean_displacement_voxels"] > 0.1  # MIND's 12 plus the network's
    assert main(["register", "--size", "24", "--features", "sift"]) == 2
    assert "features must be one of" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check's refusal is what a machine without CUDA sees")
def test_gpu_check_refuses_a_machine_without_cuda_in_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "gpu_check.json"
    assert gpu_check_main(["--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == ("gpu_check: error: CUDA is not available; this check runs on a GPU "
                                               "machine only")
    assert not out.exists()
