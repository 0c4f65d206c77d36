"""Tests for ``python -m synthlab pretrain``: every objective from the command line; user errors exit 2."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthlab.__main__ import main
from synthlab.checkpoint import load_checkpoint
from synthlab.synth import SynthConfig

TINY_FLAGS = ["--preset", "tiny", "--device", "cpu", "--batch-size", "2", "--steps", "2"]


def _pretrain(out: Path, *flags: str) -> int:
    return main(["pretrain", "--out", str(out), *TINY_FLAGS, *flags])


def _write_volume(path: Path, seed: int) -> None:
    array = np.random.default_rng(seed).normal(100.0, 20.0, size=(20, 18, 17)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def _assert_trained(out: Path, steps: int = 2) -> None:
    with (out / "log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(1, steps + 1))
    assert all(math.isfinite(float(row["loss"])) for row in rows)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == steps


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("objective", ["supcon", "voco", "rasd"])
def test_every_objective_trains_from_the_command_line(tmp_path: Path, objective: str, dim: int) -> None:
    out = tmp_path / "run"
    assert _pretrain(out, "--objective", objective, "--dim", str(dim), "--size", "16") == 0
    _assert_trained(out)
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["objective"], config["dim"], config["preset"]) == (objective, dim, "tiny")
    engine_config = SynthConfig.from_dict(load_checkpoint(out / "checkpoint.pt")["config"]["synth"])
    assert (engine_config.dim, engine_config.size) == (dim, (16,) * dim)


def test_voco_trains_on_a_folder_of_real_volumes(tmp_path: Path) -> None:
    folder = tmp_path / "volumes"
    folder.mkdir()
    for seed in range(2):
        _write_volume(folder / f"subject{seed}.nii.gz", seed)
    out = tmp_path / "run"
    assert _pretrain(out, "--objective", "voco", "--dim", "3", "--size", "16", "--data", str(folder)) == 0
    _assert_trained(out)
    assert load_checkpoint(out / "checkpoint.pt")["config"]["synth"] is None  # no engine: crops came from the volumes


def test_unknown_objective_is_an_argparse_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _pretrain(tmp_path / "run", "--objective", "simclr")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--objective" in err and "\n" not in err and err.endswith("(see synthlab pretrain --help)")
    assert not (tmp_path / "run").exists()


def _stray_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_volume(folder / "good.nii.gz", 0)
    (folder / "readme.txt").write_text("not a volume")
    return folder


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (lambda tmp: ["--objective", "supcon", "--size", "20"], "size"),
        (lambda tmp: ["--objective", "voco", "--data", str(tmp / "no_such_folder")], "no_such_folder"),
        (lambda tmp: ["--objective", "voco", "--data", str(_stray_folder(tmp))], "readme.txt"),
        (lambda tmp: ["--objective", "supcon", "--steps", "0"], "steps"),
        (lambda tmp: ["--objective", "supcon", "--resume"], "checkpoint"),
        (lambda tmp: ["--objective", "supcon", "--labels", str(tmp / "no_label_maps")], "no_label_maps"),
    ],
    ids=["size-not-divisible", "missing-data-folder", "non-nifti-in-data", "zero-steps", "resume-nothing",
         "missing-labels"],
)
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: Callable[[Path], list[str]],
        named: str) -> None:
    out = tmp_path / "run"
    assert _pretrain(out, "--dim", "3", *flags(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synthlab pretrain: error:") and "\n" not in err and named in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------- evaluation commands


def test_eval_seg_writes_results_json(tmp_path: Path) -> None:
    from tests.test_segment import _write_cubes

    data = _write_cubes(tmp_path / "cubes", n=5)
    out = tmp_path / "results" / "seg.json"
    code = main(["eval-seg", "--data", str(data), "--checkpoint", "none", "--shots", "1", "--seeds", "1",
                 "--steps", "2", "--dim", "2", "--preset", "tiny", "--lr-scratch", "0.01", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["pretrained"] is None  # no checkpoint: no pretrained arm, stated rather than faked
    assert 0.0 <= results["scratch"]["1"]["mean"] <= 1.0
    assert results["settings"]["lrs"]["scratch"] == 0.01
    assert results["provenance"]["command"].startswith("python -m synthlab eval-seg")
    assert not Path(f"{out}.partial.jsonl").exists()  # the journal goes once the results are written


def test_eval_commands_fail_cleanly_without_results_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_segment import _write_cubes

    data = _write_cubes(tmp_path / "cubes", n=4)
    out = tmp_path / "seg.json"
    assert main(["eval-seg", "--data", str(data), "--shots", "9", "--out", str(out)]) == 2
    assert "shots" in capsys.readouterr().err and not out.exists()
    out = tmp_path / "reg.json"
    assert main(["eval-reg", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing" in err and not out.exists()


# ------------------------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("flags", "named"),
    [(lambda tmp: ["--lr", "inf"], "lr"), (lambda tmp: ["--out", str(_a_file(tmp) / "run")], "is a file"),
     (lambda tmp: ["--out", str(_a_file(tmp))], "is a file")],
    ids=["lr-inf", "out-under-a-file", "out-is-a-file"],
)
def test_more_bad_pretrain_input_exits_2_before_any_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          flags: Callable[[Path], list[str]], named: str) -> None:
    args = ["pretrain", "--objective", "rasd", "--dim", "2", "--size", "16", *TINY_FLAGS]
    extra = flags(tmp_path)
    if "--out" not in extra:
        extra += ["--out", str(tmp_path / "run")]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err
    assert not (tmp_path / "run").exists()


def _a_file(tmp: Path) -> Path:
    path = tmp / "a_file"
    path.write_text("not a folder")
    return path


def test_a_second_run_into_a_busy_folder_fails_at_once_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    from synthlab.io import RunLock

    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999999\n")  # a killed run's lock: that process does not exist
    assert _pretrain(out, "--objective", "rasd", "--dim", "2", "--size", "16") == 0
    assert not (out / ".lock").exists()  # released at the end
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / ".lock").write_text("1\n")  # PID 1 is always alive: another run owns the folder
    assert _pretrain(busy, "--objective", "rasd", "--dim", "2", "--size", "16") == 2
    assert (busy / ".lock").read_text() == "1\n" and not (busy / "log.csv").exists()
    with pytest.raises(ValueError, match="in use by another run"), RunLock(busy):
        pass


def test_eval_commands_refuse_a_folder_as_results_file_before_computing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["eval-seg", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a folder" in err and "\n" not in err
    from tests.test_segment import _write_cubes

    data = _write_cubes(tmp_path / "cubes", n=4)
    for flag, value in (("--batch-size", "0"), ("--lr-scratch", "inf")):
        assert main(["eval-seg", "--data", str(data), "--shots", "1", "--seeds", "1", "--steps", "1", "--dim", "2",
                     flag, value, "--out", str(tmp_path / "r.json")]) == 2
        assert flag[2:].replace("-", "_") in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_eval_reg_and_eval_seg_end_with_a_summary_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_correspondence import _coregistered
    from tests.test_segment import _write_cubes

    data = _coregistered(tmp_path / "subject")
    assert main(["eval-reg", "--data", str(data), "--fixed", "T1", "--moving", "FLAIR", "--features", "mind",
                 "--seeds", "1", "--size", "24", "--device", "cpu", "--out", str(tmp_path / "reg.json")]) == 0
    assert "mind" in capsys.readouterr().out.split("wrote")[0]
    cubes = _write_cubes(tmp_path / "cubes", n=5)
    assert main(["eval-seg", "--data", str(cubes), "--checkpoint", "none", "--shots", "1", "--seeds", "1",
                 "--steps", "2", "--dim", "2", "--preset", "tiny", "--device", "cpu", "--workers", "1",
                 "--out", str(tmp_path / "seg.json")]) == 0
    summary = capsys.readouterr().out
    assert "Dice, mean ± SE over seeds" in summary and "scratch" in summary


def test_pretrain_probes_a_real_pair_into_the_log_and_needs_its_contrast_names(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_correspondence import _coregistered

    data = _coregistered(tmp_path / "subject")
    flags = ["--objective", "voxnce", "--dim", "2", "--size", "16", "--probe-every", "1", "--probe-data", str(data)]
    assert _pretrain(tmp_path / "bare", *flags) == 2
    assert "probe-contrasts" in capsys.readouterr().err and not (tmp_path / "bare").exists()
    assert _pretrain(tmp_path / "run", *flags, "--probe-contrasts", "t1", "flair") == 0
    with (tmp_path / "run" / "log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["0", "1", "2"]
    assert all(0.0 <= float(row["real_match"]) <= 1.0 for row in rows)


def test_evaluation_flags_default_to_the_functions_they_call() -> None:
    from synthlab.__main__ import build_parser
    from synthlab.cli import defaults_of
    from synthlab.eval_reg import evaluate_registration
    from synthlab.eval_seg import evaluate_segmentation

    seg = vars(build_parser().parse_args(["eval-seg", "--data", "d", "--out", "o.json"]))
    for name, default in defaults_of(evaluate_segmentation).items():
        if name in seg and seg[name] is not None:  # None flags: the function's own default applies
            assert seg[name] == (list(default) if isinstance(default, tuple) else default), name
    reg = vars(build_parser().parse_args(["eval-reg", "--data", "d", "--out", "o.json"]))
    expected = defaults_of(evaluate_registration)
    assert (reg["seeds"], reg["checkpoint"], reg["features"]) == (expected["seeds"], "none", list(expected["features"]))
    assert defaults_of(lambda a, b=2, *, c="x": None) == {"b": 2, "c": "x"}
