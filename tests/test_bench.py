"""The benchmark commands run end to end at tiny sizes and report consistent numbers (timings are not asserted)."""

from __future__ import annotations

import json

from synthlab.bench import bench_synth, bench_train, main


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
