"""Tests for the reporting of few-shot studies: bootstrap intervals, the honest table, the figure, the registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from synthlab import studies  # noqa: E402
from synthlab.eval_seg import format_segmentation, paired_gain  # noqa: E402
from synthlab.metrics import bootstrap_interval, summarize  # noqa: E402
from synthlab.viz import plot_fewshot  # noqa: E402


def _arm(values: list[float]) -> dict:
    return {"1": {**summarize(values), "per_seed": values, "subjects": [[f"s{i}"] for i in range(len(values))]}}


def test_bootstrap_interval_holds_the_mean_narrows_with_seeds_and_needs_two_values() -> None:
    gen = torch.Generator().manual_seed(0)
    few = (0.05 + 0.1 * torch.randn(5, generator=gen)).tolist()
    many = (0.05 + 0.1 * torch.randn(80, generator=gen)).tolist()
    low, high = bootstrap_interval(few)
    assert low < sum(few) / len(few) < high
    wide, narrow = high - low, -(-bootstrap_interval(many)[1] + bootstrap_interval(many)[0])
    assert narrow < wide / 2  # ~1/sqrt(n): 16 times the seeds, a quarter of the width
    assert bootstrap_interval(few) == bootstrap_interval(few)  # seeded: a file does not change between writes
    assert bootstrap_interval([0.3]) is None and bootstrap_interval(few[:4]) is None
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(few, level=1.5)


def test_the_table_gives_no_spread_for_one_seed_and_names_runs_stuck_at_background() -> None:
    one = {"scratch": _arm([0.0]), "pretrained": _arm([0.15])}
    one["gain"] = paired_gain(one["pretrained"], one["scratch"])
    text = format_segmentation(one)
    rows = text.splitlines()[1:]
    assert not any("±" in row for row in rows) and "(1 seed)" in text and "1/1 bg" in text and "all background" in text
    three = {"scratch": _arm([0.6, 0.0, 0.62]), "pretrained": _arm([0.65, 0.58, 0.7])}
    three["gain"] = paired_gain(three["pretrained"], three["scratch"])
    text = format_segmentation(three)
    assert "1/3 bg" in text and f"{three['gain']['1']['mean']:+.3f} ± " in text and "[" not in text  # 3 seeds
    five = {"scratch": _arm([0.6, 0.5, 0.62, 0.55, 0.58]), "pretrained": _arm([0.65, 0.58, 0.7, 0.6, 0.57])}
    five["gain"] = paired_gain(five["pretrained"], five["scratch"])
    low, high = five["gain"]["1"]["ci95"]
    assert f"[{low:+.3f}, {high:+.3f}]" in format_segmentation(five)
    shots = {arm: {**entry, "3": entry["1"]} for arm, entry in five.items()}  # two shot counts side by side
    gain_row = format_segmentation(shots).splitlines()[3]
    assert f"{high:+.3f}]  {shots['gain']['3']['mean']:+.3f}" in gain_row  # intervals never run into the next


def test_the_figure_shows_every_seed_of_every_arm_and_the_paired_gain() -> None:
    report = {"scratch": _arm([0.5, 0.6, 0.55]), "pretrained": _arm([0.6, 0.62, 0.5]), "probe": _arm([0.3] * 3)}
    report["gain"] = paired_gain(report["pretrained"], report["scratch"])
    fig = plot_fewshot(report, "test")
    dice, gain = fig.axes
    assert sum(len(c.get_offsets()) for c in dice.collections if hasattr(c, "get_offsets")) >= 9
    assert [t.get_text() for t in dice.get_xticklabels()] == ["scratch", "pretrained", "probe"]  # report order
    assert any(line.get_ydata()[0] == 0.0 for line in gain.get_lines())  # the zero line a claim is read against


def test_the_registry_names_each_study_and_refuses_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert studies.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in studies.STUDIES)
    assert studies.main(["run", "no-such-study"]) == 2 and "no-such-study" in capsys.readouterr().err
    assert studies.main(["jump"]) == 2 and studies.main(["run", "all", "--workers", "two"]) == 2
    for name, study in studies.STUDIES.items():
        assert "--out" not in study.argv and ("--data" in study.argv or "--pair" in study.argv), name
        report = studies.load_study(name)
        if report is not None:  # a shipped results file says which command made it
            assert report["provenance"]["command"].startswith(f"python -m synthlab {study.argv[0]}")
            json.dumps(report)


def test_workers_end_when_the_study_that_started_them_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "worker.pid"
    (tmp_path / "slow_jobs.py").write_text(
        "import os, time\n"
        "def job(path, _):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    script = ("import slow_jobs\nfrom synthlab.workers import map_jobs\n"
              f"map_jobs(slow_jobs.job, [0, 1], {str(marker)!r}, 2)\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=environment)
    try:
        for _ in range(600):
            if marker.is_file() and marker.read_text():
                break
            time.sleep(0.1)
        worker = int(marker.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):  # the worker notices within about a second
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("a worker kept running after its study was killed")
    finally:
        parent.kill()


def test_a_study_runs_its_own_command_from_its_folder_so_its_file_names_no_machine_path(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[list[str], Path]] = []

    def fake_run(command: list[str], cwd: Path, check: bool) -> subprocess.CompletedProcess:
        calls.append((command, Path(cwd)))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(studies, "FOLDER", tmp_path)
    monkeypatch.setattr(studies.subprocess, "run", fake_run)
    name = next(iter(studies.STUDIES))
    assert studies.main(["run", name, "--workers", "1"]) == 0
    (command, cwd), = calls
    assert cwd == tmp_path and command[command.index("--out") + 1] == f"{name}.json"
    assert command[command.index("--workers") + 1] == "1"
    assert command[3:3 + len(studies.STUDIES[name].argv)] == list(studies.STUDIES[name].argv)


def test_a_study_on_data_synthlab_makes_writes_that_data_first_when_it_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(studies, "FOLDER", tmp_path)
    monkeypatch.setattr(studies.subprocess, "run",
                        lambda command, cwd, check: calls.append(command) or subprocess.CompletedProcess(command, 0))
    name = "registration-abdomen-anatomix"
    for present, expected in ((False, 2), (True, 1)):
        calls.clear()
        monkeypatch.setattr(studies, "_data_present", lambda study, present=present: present)
        assert studies.main(["run", name]) == 0 and len(calls) == expected
    monkeypatch.setattr(studies, "_data_present", lambda study: False)
    calls.clear()
    studies.main(["run", name])
    assert calls[0][2:] == ["synthlab.dev_pairs", "abdomen-mrct"] and "eval-reg" in calls[1]


def test_no_committed_study_file_names_a_machine_path() -> None:
    def strings(value: object) -> list[str]:
        if isinstance(value, dict):
            return [text for item in value.values() for text in strings(item)]
        if isinstance(value, list):
            return [text for item in value for text in strings(item)]
        return [value] if isinstance(value, str) else []

    files = sorted(studies.FOLDER.glob("*.json"))
    assert files
    for path in files:
        absolute = [text for text in strings(json.loads(path.read_text())) if text.startswith(("/", "~"))]
        assert not absolute, f"{path.name} names {absolute[:2]}"


def test_data_made_by_synthlab_is_named_by_its_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from synthlab.data import data_name, generated_data_folder, layouts

    monkeypatch.setattr(layouts, "_cache_dir", lambda: tmp_path)
    folder = generated_data_folder("abdomen-mrct")
    folder.mkdir()
    assert data_name(folder) == "abdomen-mrct" and data_name(tmp_path.parent / "x") == str(tmp_path.parent / "x")


def test_studies_of_different_shot_counts_join_into_one_curve_and_refuse_to_mix_networks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def study(shots: list[int], seeds: int, network: str = "net") -> dict:
        arms = {arm: {str(k): {**summarize([0.1 * k] * seeds), "per_seed": [0.1 * k] * seeds,
                               "subjects": [[f"s{i}"] for i in range(seeds)]} for k in shots}
                for arm in ("pretrained", "scratch")}
        return {**arms, "gain": paired_gain(arms["pretrained"], arms["scratch"]),
                "settings": {"checkpoint": network, "shots": shots}}

    files = {"one": study([1], 20), "more": study([5, 3], 10), "other": study([3], 10, "another"),
             "again": study([1], 5)}
    monkeypatch.setattr(studies, "load_study", lambda name: files.get(name))
    curve = studies.fewshot_curve(["more", "one"])
    assert set(curve) == {"pretrained", "scratch", "gain"} and list(curve["scratch"]) == ["1", "3", "5"]
    assert len(curve["pretrained"]["1"]["per_seed"]) == 20 and len(curve["pretrained"]["3"]["per_seed"]) == 10
    assert studies.fewshot_curve(["one", "missing"]) is None
    with pytest.raises(ValueError, match="different networks"):
        studies.fewshot_curve(["one", "other"])
    with pytest.raises(ValueError, match="shot count"):
        studies.fewshot_curve(["one", "again"])
    figure = plot_fewshot(curve, "curve")
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "scratch (n=20/10/10)" in labels  # a curve joining studies says how many seeds each point has


def test_registration_studies_of_one_protocol_render_as_one_table_once_every_file_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from synthlab.studies import render

    def study(checkpoint: str, features: list[str], scaling: str, epe: float, **settings: float) -> dict:
        stats = {"epe_before": {"mean": 2.5, "std": 0.5}, "epe": {"mean": epe, "std": 0.01},
                 "folding_percent": {"mean": 0.02, "std": 0.0}, "seconds": {"mean": 30.0, "std": 1.0}}
        return {"provenance": {"date": "2026-12-03T00:00:00", "cpus": 2, "commit": "abcdef0123",
                               "command": "python -m synthlab eval-reg --data d",
                               "machine": {"processor": "x86_64", "torch": "2.13.0", "threads": 1}},
                "data": "brain_tumor_mri/study1", "fixed": "T1prereg", "moving": "FLAIRreg", "seeds": [0, 1, 2],
                "checkpoint": checkpoint, "registration_config": {"scaling": scaling, **settings},
                "results": {name: stats | {"epe": {"mean": epe + i, "std": 0.01}} for i, name in enumerate(features)}}

    names = studies.TABLES["registration-brain"]
    files = dict(zip(names, [study("synthlab-3d", ["mind", "network+mind"], "unit", 0.5),
                             study("none", ["network+mind"], "unit", 0.6),
                             study("synthlab-3d", ["mind", "network+mind"], "raw", 0.7),
                             study("none", ["network+mind"], "raw", 0.8),
                             study("synthlab-supcon-3d", ["network+mind"], "raw", 0.65),
                             study("synthlab-3d", ["mind", "network+mind"], "raw", 0.9, search_radius=5, lambda_=2.0,
                                   network_weight=0.4)], strict=True))
    monkeypatch.setattr(render, "load_study", lambda name: files.get(name))
    table = render.render_blocks()["registration-brain"]
    assert "| synthlab | mind |  | 0.500 ± 0.010 |" in table
    assert "| anatomix | network+mind | random init | 0.800" in table
    assert "| anatomix-wide | mind |  | 0.900" in table  # the preset is read from the stored settings
    assert "| synthlab | network+mind | `synthlab-3d` | 1.500" in table and "2.50 ± 0.50 voxels before" in table
    assert all(f"`{name}`: measured 2026-12-03" in table for name in names)
    from synthlab import results

    monkeypatch.setattr(results, "load_study", lambda name: files.get(name))
    claim = next(c for c in results.CLAIMS if c.task == "registration")
    cell = results._study_cell(claim)  # the claims table reads the same files
    assert "synthlab solver: MIND 0.500; network + MIND `synthlab-3d` 1.500 (ratio 3.00); random network 0.600" in cell
    assert ("anatomix solver: MIND 0.700; network + MIND `synthlab-3d` 1.700 (ratio 2.43), `synthlab-supcon-3d` "
            "0.650 (ratio 0.93); random network 0.800") in cell
    files.pop(names[-1])  # a missing file: no table rather than a partial one
    assert "registration-brain" not in render.render_blocks()


def test_fewshot_studies_sharing_a_scratch_arm_render_as_one_table_once_every_file_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from synthlab.studies import render

    def study(checkpoint: str, pretrained: list[float], arms: tuple[str, ...] = ("pretrained", "probe")) -> dict:
        subjects = [[f"s{i}"] for i in range(len(pretrained))]
        values = {"pretrained": pretrained, "scratch": [0.5] * len(pretrained), "probe": [0.4] * len(pretrained),
                  "probe_random": [0.3] * len(pretrained)}
        report = {arm: {"1": {**summarize(values[arm]), "per_seed": values[arm], "subjects": subjects}}
                  for arm in arms}
        report["settings"] = {"checkpoint": checkpoint, "shots": [1], "dim": 2, "seeds": len(pretrained),
                              "steps": 400, "batch_size": 8, "max_test": 40, "seconds": 600.0, "freeze_fraction": 0.0,
                              "lrs": {"pretrained": 3e-3, "scratch": 1e-2, "probe": 3e-2, "probe_random": 3e-2}}
        report["provenance"] = {"date": "2026-12-04T00:00:00", "cpus": 2, "commit": "abcdef0", "command": "eval-seg",
                                "machine": {"processor": "x86_64", "torch": "2.13.0", "threads": 1}}
        report["gain"] = paired_gain(report["pretrained"], {"1": {"per_seed": values["scratch"], "subjects": subjects}})
        return report

    names = studies.TABLES["fewshot-2d-1shot-networks"]
    files = {names[0]: study("net-a", [0.6, 0.7, 0.4], ("pretrained", "scratch", "probe", "probe_random")),
             **{name: study(f"net-{i}", [0.5, 0.45, 0.55]) for i, name in enumerate(names[1:])}}
    monkeypatch.setattr(render, "load_study", lambda name: files.get(name))
    table = render.render_blocks()["fewshot-2d-1shot-networks"]
    assert "| scratch | lr 0.01 | 0.500 ± 0.000 |" in table and "0.300 ± 0.000 (the untrained levels)" in table
    assert "| fine-tuned from `net-a` | lr 0.003 | 0.567 ± 0.088 | **+0.067 ± 0.088**" in table and "2 of 3" in table
    assert table.count("| fine-tuned from") == len(names) and table.count("measured 2026-12-04") == len(names)
    assert "| arm | setting (given) |" in table and "linear probe on its levels" in table  # untuned, probed
    bare = {names[0]: study("net-a", [0.6, 0.7, 0.4], ("pretrained", "scratch")),
            **{name: study(f"net-{i}", [0.5, 0.45, 0.55], ("pretrained",)) for i, name in enumerate(names[1:])}}
    for report in bare.values():
        report["settings"]["tuning"] = {"pretrained": {}}
    text = render.render_fewshot_networks(bare)  # no probe fitted anywhere: no probe column
    assert "| arm | setting (tuned on validation) |" in text and "linear probe" not in text
    rows = text.splitlines()[:2 + len(names)]
    assert {row.count("|") for row in rows} == {rows[0].count("|")}  # every row as wide as its header
    del bare[names[0]]["settings"]["tuning"]  # one network given its setting, the others tuned: each row says which
    mixed = render.render_fewshot_networks(bare)
    assert "| arm | setting (tuned on validation, or given) |" in mixed
    assert "| fine-tuned from `net-a` | lr 0.003; given |" in mixed and "| lr 0.003; tuned |" in mixed
    last = files.pop(names[-1])  # a missing network: its row is left out and the table says how to make it
    partial = render.render_blocks()["fewshot-2d-1shot-networks"]
    assert partial.count("| fine-tuned from") == len(names) - 1
    assert f"`{names[-1]}`: not run yet: python -m synthlab.studies run {names[-1]} (" in partial
    first = files.pop(names[0])  # without the study that owns the scratch arm there is no table
    assert "fewshot-2d-1shot-networks" not in render.render_blocks()

    monkeypatch.setattr(studies, "load_study", lambda name: files.get(name))
    assert studies.networks_report(names) is None
    files[names[0]] = first
    assert list(studies.networks_report(names)["gain"]) == ["net-a", "net-0", "net-1"]
    assert last is not None
    files[names[-1]] = study("synthlab-voxnce-2d", [0.6, 0.6, 0.6])
    report = studies.networks_report(names)
    assert list(report["gain"]) == ["net-a", "net-0", "net-1", "voxnce-2d"]  # named by network, in study order
    assert report["gain"]["voxnce-2d"]["mean"] == pytest.approx(0.1) and report["scratch"]["1"]["mean"] == 0.5
    figure = plot_fewshot(report, "networks")
    ticks = [tick.get_text() for tick in figure.axes[1].get_xticklabels()]
    assert ticks == list(report["gain"])  # one column of paired gains per network
    files[names[1]] = {**files[names[1]], "settings": {**files[names[1]]["settings"], "shots": [3]}}
    with pytest.raises(ValueError, match="share their shot counts"):
        studies.networks_report(names)

    def two_counts(report: dict) -> dict:  # the same seeds measured at 3 and 5 shots
        out = {arm: {"3": entry["1"], "5": entry["1"]} for arm, entry in report.items()
               if arm not in ("settings", "provenance")}
        return {**out, "settings": {**report["settings"], "shots": [3, 5]}, "provenance": report["provenance"]}

    files.update({name: two_counts(study(f"net-{i}", [0.5, 0.45, 0.55], ("pretrained", "scratch", "probe")))
                  for i, name in enumerate(names)})
    report = studies.networks_report(names)
    assert list(report["gain"])[:3] == ["net-0, 3 shots", "net-0, 5 shots", "net-1, 3 shots"]
    assert list(report["scratch"]) == ["3", "5"] and list(report["net-1"]) == ["3", "5"]


def test_labelled_registration_studies_render_dice_per_contrast_change() -> None:
    from synthlab.studies.render import render_registration_table

    def cell(dice: float) -> dict:
        return {"dice_before": {"mean": 0.612, "std": 0.128}, "dice": {"mean": dice, "std": 0.05},
                "folding_percent": {"mean": 0.3, "std": 0.1}, "seconds": {"mean": 2.0, "std": 0.1}}

    report = {"provenance": {"date": "2026-12-03T00:00:00", "cpus": 2, "commit": None, "command": "python -m x",
                             "machine": {"processor": "x86_64", "torch": "2.13.0"}},
              "data": "hippocampus", "seeds": list(range(5)), "checkpoint": "none",
              "registration_config": {"scaling": "raw"},
              "results": {"network+mind": {"none": cell(0.73), "monotone": cell(0.74), "non-monotone": cell(0.75)}}}
    table = render_registration_table({"hip": report})
    assert "| Dice, no change | Dice, monotone change | Dice, non-monotone change |" in table
    row = "| anatomix | network+mind | random init | 0.730 ± 0.050 | 0.740 ± 0.050 | 0.750 ± 0.050 | 0.30 | 2 |"
    assert row in table
    assert "5 labelled pairs; Dice 0.612 ± 0.128 before" in table and "commit unknown" in table


def test_a_live_run_takes_the_choices_a_study_made_on_its_validation_cases() -> None:
    from synthlab.segment import FineTuneConfig

    report = studies.load_study("fewshot-2d-supcon-1shot")
    chosen = studies.tuned_budget("fewshot-2d-supcon-1shot")
    assert chosen == {"freeze_fraction": report["settings"]["freeze_fraction"],
                      "lr_scratch": report["settings"]["lrs"]["scratch"],
                      "lr_finetune": report["settings"]["lrs"]["pretrained"]}  # a study before heads were tuned
    budget = FineTuneConfig(**chosen)
    assert budget.lr("scratch") == report["settings"]["tuning"]["scratch"]["chosen"]["lr_scratch"]
    with pytest.raises(ValueError, match="unknown study"):
        studies.tuned_budget("no-such-study")


def test_the_tuning_table_lists_every_choice_and_marks_the_one_taken() -> None:
    from synthlab.tuning import format_tuning

    report = studies.load_study("fewshot-2d-supcon-3-5shot")
    text = format_tuning(report)
    tuning = report["settings"]["tuning"]
    assert text.count("*") == len(tuning) == 2
    assert len(text.splitlines()) == sum(1 + len(row["choices"]) for row in tuning.values())
    chosen = next(line for line in text.splitlines() if line.startswith("  * lr_scratch"))
    assert f"{tuning['scratch']['chosen']['val_dice']:.3f}" in chosen
    assert format_tuning({"settings": {"tuning": None}}).startswith("not tuned")


def test_a_study_that_borrows_a_scratch_arm_is_paired_with_it_seed_by_seed(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"pretrained": _arm([0.6, 0.3, 0.7]), "scratch": _arm([0.5, 0.6, 0.55]),
            "settings": {"lrs": {"pretrained": 3e-3, "scratch": 1e-2}}}
    fitted = {"pretrained": _arm([0.65, 0.62, 0.7]), "scratch": None, "gain": None,
              "settings": {"lrs": {"pretrained": 1e-3}}}
    registry = {"base": studies.Study("base", "?", ("eval-seg", "--data", "x"), "1 min"),
                "fitted": studies.Study("fitted", "?", ("eval-seg", "--data", "x"), "1 min", scratch_from="base")}
    monkeypatch.setattr(studies, "STUDIES", registry)
    monkeypatch.setattr(studies, "FOLDER", tmp_path)
    for name, report in (("base", base), ("fitted", fitted)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    joined = studies.load_study("fitted")
    assert joined["scratch"] == base["scratch"] and joined["settings"]["scratch_from"] == "base"
    assert joined["gain"]["1"]["per_seed"] == pytest.approx([0.15, 0.02, 0.15])
    assert joined["settings"]["lrs"] == {"pretrained": 1e-3, "scratch": 1e-2}
    # Made on another platform: still paired by subject and seed, with a warning that says why it is looser.
    for report, platform in ((base, "Linux-a"), (fitted, "Linux-b")):
        report["provenance"] = {"machine": {"platform": platform, "processor": "x86_64"}}
        (tmp_path / f"{'base' if report is base else 'fitted'}.json").write_text(json.dumps(report))
    with pytest.warns(UserWarning, match="another platform"):
        assert studies.load_study("fitted")["gain"]["1"]["per_seed"] == pytest.approx([0.15, 0.02, 0.15])
    fitted["pretrained"]["1"]["subjects"][0] = ["another subject"]  # trained elsewhere: no paired gain exists
    (tmp_path / "fitted.json").write_text(json.dumps(fitted))
    with pytest.raises(ValueError, match="different subjects"):
        studies.load_study("fitted")


def test_a_notebook_shows_a_study_or_says_how_to_make_it(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["fewshot-2d-supcon-1shot", "fewshot-2d-supcon-3-5shot"]
    fig = studies.show_fewshot(names, "curve")
    text = capsys.readouterr().out
    assert fig is not None and "curve" in fig.axes[0].get_title()
    assert all(f"{name}: {studies.STUDIES[name].question}" in text for name in names)
    assert format_segmentation(studies.fewshot_curve(names)) in text and "validation Dice" not in text
    studies.show_fewshot(names, "curve", tuning=True)  # each study's choices on its validation cases
    assert capsys.readouterr().out.count("scratch, validation Dice") == 2
    monkeypatch.setattr(studies, "FOLDER", tmp_path)  # no results files here
    assert studies.show_fewshot(names[:1], "missing") is None
    assert f"python -m synthlab.studies run {names[0]}" in capsys.readouterr().out


def test_a_one_seed_study_renders_without_a_spread_it_does_not_have() -> None:
    from synthlab.studies.render import render_fewshot_study

    arms = {arm: {"1": {**summarize([value]), "per_seed": [value], "subjects": [["a"]]}}
            for arm, value in (("pretrained", 0.7), ("scratch", 0.6))}
    report = {**arms, "gain": paired_gain(arms["pretrained"], arms["scratch"]),
              "settings": {"shots": [1], "lrs": {"pretrained": 3e-3, "scratch": 1e-2}, "freeze_fraction": 0.0,
                           "checkpoint": "net", "seeds": 1, "max_test": 4, "seconds": 60.0},
              "provenance": {"date": "2026-12-04T00:00:00", "cpus": 2, "command": "eval-seg", "commit": None,
                             "machine": {"processor": "x86_64", "torch": "2.13.0"}}}
    table = render_fewshot_study(report)
    assert "| pretrained | lr 0.003 | 0.700 (1 seed) |" in table and "**+0.100 (1 seed)**" in table


def test_a_study_made_on_a_gpu_names_the_gpu_and_one_made_on_a_cpu_does_not() -> None:
    def made(machine: dict[str, object]) -> dict[str, object]:
        return {"cpus": 16, "machine": {"processor": "x86_64", "torch": "2.11", "threads": 2, **machine}}

    on_gpu = studies.machine_words(made({"device": "cuda", "gpu": "NVIDIA H200"}))
    on_cpu = studies.machine_words(made({"device": "cpu"}))
    assert on_gpu.startswith("one NVIDIA H200 with 16 CPU cores (x86_64, torch 2.11, 2 thread(s))")
    assert on_cpu.startswith("16 CPU cores") and "H200" not in on_cpu
