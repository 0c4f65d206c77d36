"""Tests for synthlab.results: the README claims table built from comparison JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthlab import results as results_module
from synthlab.eval_seg import paired_gain
from synthlab.metrics import summarize
from synthlab.results import (
    END_MARKER,
    START_MARKER,
    format_registration,
    load_runs,
    main,
    registration_summary,
    render_table,
    update_readme,
)
from synthlab.studies import render


def _fake_run(profile: str, dim: int, supcon_gain: float) -> dict:
    return {"profile": profile, "dim": dim, "date": "2026-01-02T03:04:05+00:00",
            "machine": {"platform": "Linux-test", "processor": "x86_64", "torch": "9.9", "device": "cpu"},
            "summary": {"segmentation_gain": {"supcon": {"1": {"mean": supcon_gain, "sem": 0.004},
                                                         "3": {"mean": -0.02, "sem": None}},
                                              "voco": {"1": {"mean": 0.0, "sem": 0.001}}},
                        "registration_epe": {"supcon": {"mind": {"mean": 1.234, "std": 0.0},
                                                        "network+mind": {"mean": 0.987, "std": 0.0}}}}}


@pytest.fixture()
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    results.mkdir()
    (results / "comparison_cpu_2d.json").write_text(json.dumps(_fake_run("cpu", 2, 0.0312)))
    (results / "comparison_ci_2d.json").write_text(json.dumps(_fake_run("ci", 2, 0.75)))  # a smoke run: no column
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n## Results\n\n{START_MARKER}\nold table\n{END_MARKER}\ntail\n")
    return readme, results


def test_table_shows_measured_numbers_and_missing_profiles(workspace: tuple[Path, Path]) -> None:
    _, results = workspace
    table = render_table(load_runs(results))
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ")][1:]  # skip the header
    anatomix_seg = next(r for r in rows if r[0] == "| anatomix" and "few-shot" in r[1])
    assert anatomix_seg[4] == "2D: 1-shot +0.031 ± 0.004, 3-shot -0.020"  # the cpu column
    assert anatomix_seg[5] == "not run"  # no gpu JSON
    assert "+0.750" not in table and "are not evidence, so they have no column" in table  # the ci smoke run
    anatomix_reg = next(r for r in rows if r[0] == "| anatomix" and "register" in r[1])
    assert anatomix_reg[4] == "2D: mind 1.23 vs network+mind 0.99"
    assert anatomix_reg[3].endswith("(`registration-brain`)") and "ratio" in anatomix_reg[3]  # the shipped studies
    rasd = next(r for r in rows if r[0] == "| RaSD")
    assert rasd[4] == "not run"  # the JSON has no rasd entry
    assert "2026-01-02T03:04:05+00:00 on Linux-test (x86_64), torch 9.9" in table


def test_update_replaces_only_between_markers_and_is_idempotent(workspace: tuple[Path, Path]) -> None:
    readme, results = workspace
    assert update_readme(readme, results) is True
    first = readme.read_text()
    assert first.startswith("# title\n\nintro\n\n## Results\n\n" + START_MARKER)
    assert first.endswith(END_MARKER + "\ntail\n") and "old table" not in first
    assert update_readme(readme, results) is False
    assert readme.read_text() == first
    assert main(["--update", str(readme), "--results", str(results), "--check"]) == 0


def test_check_reports_stale_readme_without_writing(workspace: tuple[Path, Path]) -> None:
    readme, results = workspace
    before = readme.read_text()
    assert main(["--update", str(readme), "--results", str(results), "--check"]) == 1
    assert readme.read_text() == before


def test_missing_markers_raise_naming_the_file(tmp_path: Path) -> None:
    readme = tmp_path / "NOMARKERS.md"
    readme.write_text(f"# nothing here\n{END_MARKER}\n{START_MARKER}\n")  # wrong order counts as missing
    with pytest.raises(ValueError, match="NOMARKERS.md"):
        update_readme(readme, tmp_path)
    assert main(["--update", str(readme), "--results", str(tmp_path)]) == 2


def test_json_without_profile_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "comparison_x.json").write_text(json.dumps({"dim": 2}))
    with pytest.raises(ValueError, match="comparison_x.json"):
        load_runs(tmp_path)


def test_feature_probe_rows_show_network_random_and_mind(tmp_path: Path) -> None:
    from synthlab.results import features_summary

    report = {"methods": {"mind": {"match_rate": 0.2}, "random": {"match_rate": 0.3},
                          "network": {"match_rate": 0.5}, "network+mind": {"match_rate": 0.6}}}
    other = {"methods": {k: {"match_rate": v["match_rate"] / 2} for k, v in report["methods"].items()}}
    match = features_summary({"voxnce": [report, other]})
    assert match["voxnce"]["network"] == pytest.approx(0.375)  # the mean over the image pairs
    run = _fake_run("cpu", 2, 0.0)
    run["summary"]["feature_match"] = match
    (tmp_path / "comparison_cpu_2d.json").write_text(json.dumps(run))
    table = render_table(load_runs(tmp_path))
    voxnce = next(line for line in table.splitlines() if line.startswith("| synthlab"))
    assert "2D: network 0.375 vs random 0.225 vs mind 0.150" in voxnce
    supcon = next(line for line in table.splitlines() if "same voxel across MR" in line)
    assert "not run" in supcon  # no supcon entry in this run's probe


def test_a_scratch_arm_trained_once_gives_each_objective_the_same_paired_gain_as_a_joint_run(
        tmp_path: Path) -> None:
    from synthlab.eval_seg import evaluate_segmentation
    from synthlab.results import segmentation_summary
    from tests.test_segment import _write_cubes

    data = _write_cubes(tmp_path / "cubes", n=4)
    common = {"shots": [1], "seeds": 2, "steps": 2, "dim": 2, "device": "cpu", "progress": False}
    joint = evaluate_segmentation(data, "synthlab-2d", arms=("pretrained", "scratch"), **common)
    control = evaluate_segmentation(data, "synthlab-2d", arms=("scratch",), **common)
    alone = evaluate_segmentation(data, "synthlab-2d", arms=("pretrained",), **common)
    assert control["scratch"]["1"]["per_seed"] == joint["scratch"]["1"]["per_seed"]
    dice, gain = segmentation_summary({"voxnce": alone}, ["voxnce"], control)
    assert gain["voxnce"]["1"]["mean"] == pytest.approx(joint["gain"]["1"]["mean"])
    assert dice["scratch"] is control["scratch"]
    other = evaluate_segmentation(data, "synthlab-supcon-2d", arms=("pretrained",), **{**common, "seeds": 1})
    with pytest.raises(ValueError, match="different subjects"):
        segmentation_summary({"supcon": other}, ["supcon"], control)


def test_each_objective_is_paired_with_the_scratch_arm_of_its_own_architecture(tmp_path: Path) -> None:
    from synthlab.eval_seg import evaluate_segmentation
    from synthlab.results import one_per_architecture, segmentation_summary
    from tests.test_segment import _write_cubes

    networks = {"rasd": "synthlab-rasd-3d", "voco": "synthlab-voco-3d", "voxnce": "synthlab-voxnce-3d"}
    assert one_per_architecture(networks, 3) == ["synthlab-rasd-3d", "synthlab-voxnce-3d"]  # small, anatomix
    data = _write_cubes(tmp_path / "cubes", n=4)
    common = {"shots": [1], "seeds": 1, "steps": 1, "dim": 3, "device": "cpu", "progress": False}
    small, large = (evaluate_segmentation(data, name, arms=("scratch",), **common)
                    for name in ("synthlab-rasd-3d", "synthlab-voxnce-3d"))
    assert small["settings"]["net_config"] != large["settings"]["net_config"]
    alone = evaluate_segmentation(data, "synthlab-voco-3d", arms=("pretrained",), **common)
    dice, gain = segmentation_summary({"voco": alone}, ["voco"], [large, small])
    assert gain["voco"]["1"]["mean"] == pytest.approx(alone["pretrained"]["1"]["mean"] - small["scratch"]["1"]["mean"])
    assert set(dice) == {"scratch (widths [16, 32, 64, 128])", "scratch (widths [8, 16, 32, 64])", "voco"}
    with pytest.raises(ValueError, match="every scratch arm"):
        segmentation_summary({"voco": alone}, ["voco"], [large])


def test_a_study_block_in_the_readme_is_rendered_from_the_study_file(workspace: tuple[Path, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    readme, results = workspace
    name = next(iter(render.STUDIES))
    start, end = results_module.study_markers(name)
    readme.write_text(readme.read_text() + f"\n{start}\nstale numbers\n{end}\n")

    def arm(values: list[float]) -> dict:
        return {"1": {**summarize(values), "per_seed": values, "subjects": [["a"], ["b"], ["c"]]}}

    study = {"scratch": arm([0.60, 0.62, 0.58]), "pretrained": arm([0.65, 0.60, 0.66]), "probe": None,
             "settings": {"shots": [1], "dim": 2, "steps": 400, "lrs": {"scratch": 0.03, "pretrained": 0.003},
                          "freeze_fraction": 0.25,
                          "checkpoint": "synthlab-supcon-2d", "seeds": 3, "max_test": 40, "seconds": 600.0},
             "provenance": {"date": "2026-12-03T17:00:00+00:00", "cpus": 2, "command": "python -m synthlab eval-seg",
                            "commit": "abcdef123", "machine": {"processor": "x86_64", "torch": "2.13.0"}}}
    study["gain"] = paired_gain(study["pretrained"], study["scratch"])
    monkeypatch.setattr(render, "load_study", lambda wanted: study if wanted == name else None)
    assert update_readme(readme, results)
    text = readme.read_text()
    assert "stale numbers" not in text and "backbone frozen for the first 25%" in text
    assert f"**{study['gain']['1']['mean']:+.3f} ± {study['gain']['1']['sem']:.3f}**" in text
    assert "2 of 3 seeds positive" in text and "commit abcdef1" in text
    assert not update_readme(readme, results)  # idempotent


def test_a_feature_study_renders_its_table_and_the_claims_cells(workspace: tuple[Path, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import nibabel as nib
    import numpy as np

    from synthlab.correspondence import CorrespondenceConfig, evaluate_feature_pairs

    folder = tmp_path / "subject"
    folder.mkdir()
    base = np.random.default_rng(0).uniform(10, 100, size=(36, 32, 5)).astype(np.float32)
    for name, array in (("T1", base), ("FLAIR", 110 - base)):
        nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 4.0, 1.0])), folder / f"{name}.nii.gz")
    report = evaluate_feature_pairs([(folder, "t1", "flair"), (folder, "flair", "t1")],
                                    ["synthlab-voxnce-2d", "synthlab-supcon-2d"],
                                    CorrespondenceConfig.for_dim(2, size=32, radius=3, queries=40))
    report["provenance"] = {"date": "2026-12-04T03:00:00+00:00", "cpus": 2, "commit": "abcdef123",
                            "command": "python -m synthlab eval-features",
                            "machine": {"processor": "x86_64", "torch": "2.13.0"}}
    table = render.render_feature_table(report)
    voxnce = report["networks"]["synthlab-voxnce-2d"]
    row = next(line for line in table.splitlines() if line.startswith("| synthlab-voxnce-2d (`synthlab-2d`)"))
    per_pair = " / ".join(f"{pair['network']['match_rate']:.2f}" for pair in voxnce["pairs"])
    assert per_pair in row and f"{voxnce['mean']['network']['match_rate']:.3f}" in row
    assert "T1 → FLAIR" in table and "commit abcdef1" in table
    # The claims table's correspondence cells read the same file: supcon's row its network, voxnce's its own.
    monkeypatch.setattr(results_module, "load_study", lambda name: report if name == "features-2d" else None)
    cells = {claim.objective: results_module._features_cell(("features-2d",), claim.objective)
             for claim in results_module.CLAIMS if claim.study == "features"}
    assert f"2D {voxnce['mean']['network']['match_rate']:.3f} vs untrained" in cells["voxnce"]
    supcon = report["networks"]["synthlab-supcon-2d"]["mean"]["network"]["match_rate"]
    assert f"2D {supcon:.3f} vs untrained" in cells["supcon"]


def test_a_claim_cell_joins_its_study_and_every_further_one_that_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    def study(shots: list[int], heads: dict | None = None, tuning: dict | None = None) -> dict:
        arms = {arm: {str(k): {**summarize(values), "per_seed": values, "subjects": [["a"], ["b"], ["c"]]}
                      for k in shots} for arm, values in (("pretrained", [0.7, 0.6, 0.8]), ("scratch", [0.6] * 3))}
        return {**arms, "gain": paired_gain(arms["pretrained"], arms["scratch"]),
                "settings": {"dim": 2, "seeds": 3, "steps": 400, "heads": heads, "tuning": tuning}}

    claim = next(c for c in results_module.CLAIMS if c.also)
    files = {claim.study: study([1], tuning={"scratch": {}}), claim.also[-1]: study([3, 5], {"pretrained": "probe"})}
    monkeypatch.setattr(results_module, "load_study", lambda name: files.get(name))
    cell = results_module._study_cell(claim)
    assert cell.count("(`") == 2  # the missing further studies are left out, not reported as empty
    assert cell.startswith("2D, 3 seeds, tuned, 400 steps: 1-shot +0.100")
    assert f"(`{claim.study}`); 2D, 3 seeds, head fitted first (LP-FT), settings of earlier studies" in cell
    assert "5-shot +0.100" in cell
    files.clear()
    assert results_module._study_cell(claim) == "no study file yet (see Measured figures)"


def test_registration_lines_give_a_spread_only_where_seeds_can_estimate_one() -> None:
    def report(seeds: int) -> dict:
        return {"seeds": list(range(seeds)), "results": {"mind": {"epe": {"mean": 0.654, "std": 0.0}},
                                                         "network+mind": {"epe": {"mean": 0.61, "std": 0.05}}}}
    one = format_registration(registration_summary({"supcon": report(1)}))
    assert "±" not in one and "0.65 (1 seed)" in one and one.startswith("supcon")
    three = format_registration(registration_summary({"supcon": report(3), "voco": report(3)}))
    assert "0.61 ± 0.05 (SD, 3 seeds)" in three and len(three.splitlines()) == 2
