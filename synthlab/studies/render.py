"""Study results files as the README's markdown: one block per few-shot study, one table per group of
registration studies. ``make results`` writes them between ``<!-- study:NAME:start/end -->`` markers."""

from __future__ import annotations

from typing import Any

from ..checkpoint import ALIASES
from ..registration_config import preset_name
from ..shipped import recipe_names, training_record
from . import STUDIES, TABLES, how_to_make, load_study, machine_words

__all__ = ["render_blocks", "render_feature_table", "render_fewshot_networks", "render_fewshot_study",
           "render_registration_table", "render_training_table"]


def _resumed(settings: dict[str, Any]) -> str:
    """What a study's minutes cover when it was resumed from its journal."""
    runs = settings.get("resumed_runs", 0)
    return f" (resumed: {runs} runs came from an interrupted invocation)" if runs else ""


def _mean_sem(entry: dict[str, Any]) -> str:
    """A Dice summary: mean ± standard error, or the one seed's value said as such."""
    return (f"{entry['mean']:.3f} ± {entry['sem']:.3f}" if entry.get("sem") is not None
            else f"{entry['mean']:.3f} (1 seed)")


def _gain(gain: dict[str, Any], interval_label: str = "") -> str:
    """A paired gain in bold with its standard error (none for one seed), then its bootstrap interval."""
    spread = f" ± {gain['sem']:.3f}" if gain.get("sem") is not None else " (1 seed)"
    interval = (f"{interval_label} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain.get("ci95") else "")
    return f"**{gain['mean']:+.3f}{spread}**{interval}"


def _setting(report: dict[str, Any], arm: str) -> str:
    """The learning rate (and frozen warm-up, and fitted head) a few-shot study chose for ``arm``."""
    settings = report["settings"]
    text = f"lr {settings['lrs'][arm]:g}"
    if arm == "pretrained" and settings.get("freeze_fraction"):
        text += f", backbone frozen for the first {settings['freeze_fraction']:.0%}"
    if (settings.get("heads") or {}).get(arm) == "probe":
        text += ", head fitted on the frozen network first (LP-FT)"
    return text


def render_fewshot_study(report: dict[str, Any]) -> str:
    """A few-shot study as a markdown table: each arm's chosen setting, Dice, paired gain and interval."""
    settings, made = report["settings"], report["provenance"]
    shots = [str(k) for k in settings["shots"]]
    how = "tuned" if settings.get("tuning") else "given"
    rows = [f"| arm | setting ({how}) | " + " | ".join(f"{k}-shot Dice, mean ± SE" for k in shots) + " |",
            "|---|---|" + "---|" * len(shots)]
    for arm in ("pretrained", "scratch", "probe", "probe_random", "probe_intensity"):
        if not report.get(arm):
            continue
        setting = _setting(report, arm)
        if arm == "scratch" and settings.get("scratch_from"):
            setting += f" (the arm of `{settings['scratch_from']}`: same seeds, subjects and draws)"
        cells = [_mean_sem(report[arm][k]) for k in shots]
        rows.append(f"| {arm} | {setting} | " + " | ".join(cells) + " |")
    if report.get("gain"):
        cells = []
        for k in shots:
            gain = report["gain"][k]
            positive = sum(d > 0 for d in gain["per_seed"])
            cells.append(f"{_gain(gain, ', 95 % interval')}; {positive} of {len(gain['per_seed'])} seeds positive")
        rows.append("| paired gain, pretrained − scratch | same subject, initialisation and draws | "
                    + " | ".join(cells) + " |")
    return "\n".join([*rows, "", f"{settings['checkpoint']}, {settings['seeds']} seeds, {settings['max_test']} test "
                       f"volumes; measured {made['date'][:10]} on {machine_words(made)} in "
                       f"{settings['seconds'] / 60:.0f} min{_resumed(settings)} by `{made['command']}` at commit "
                       f"{(made['commit'] or 'unknown')[:7]}."])


def render_fewshot_networks(reports: dict[str, dict[str, Any] | None]) -> str:
    """Several few-shot studies that share one scratch arm (the first study's, borrowed by the others) as one
    table: per pretrained network its setting (tuned, or given), Dice, paired gain over that scratch arm with its
    interval and count of positive seeds, and the linear probe on its frozen levels where a study fitted one;
    then each study's provenance, and for a study not run yet (None) the command that makes it."""
    missing = [name for name, report in reports.items() if report is None]
    reports = {name: report for name, report in reports.items() if report is not None}
    first = next(iter(reports.values()))
    shots = [str(k) for k in first["settings"]["shots"]]
    untrained = first.get("probe_random") or {}
    probed = bool(untrained) or any(report.get("probe") for report in reports.values())  # else no probe column
    how = {bool(report["settings"].get("tuning")) for report in reports.values()}
    mixed = len(how) > 1  # then each pretrained row says how its setting was chosen
    heading = "tuned on validation, or given" if mixed else "tuned on validation" if how == {True} else "given"
    rows = [f"| arm | setting ({heading}) | " + " | ".join(
        f"{k}-shot Dice | paired gain over scratch [95 % interval] | seeds positive" for k in shots)
        + (" | linear probe on its levels |" if probed else " |"),
        "|---|---|" + "---|---|---|" * len(shots) + ("---|" if probed else "")]
    probe_cell = (lambda text: f" {text} |") if probed else (lambda text: "")
    rows.append(f"| scratch | {_setting(first, 'scratch')} | "
                + " | ".join(f"{_mean_sem(first['scratch'][k])} | | " for k in shots) + " |"
                + probe_cell(f"{_mean_sem(untrained[shots[0]])} (the untrained levels)" if untrained else ""))
    for report in reports.values():
        cells = []
        for k in shots:
            gain = report["gain"][k]
            cells.append(f"{_mean_sem(report['pretrained'][k])} | {_gain(gain)} | "
                         f"{sum(d > 0 for d in gain['per_seed'])} of {len(gain['per_seed'])}")
        probe = report.get("probe") or {}
        setting = _setting(report, "pretrained")
        if mixed:
            setting += "; tuned" if report["settings"].get("tuning") else "; given"
        rows.append(f"| fine-tuned from `{report['settings']['checkpoint']}` | {setting} | "
                    + " | ".join(cells) + " |" + probe_cell(_mean_sem(probe[shots[0]]) if probe else ""))
    settings = first["settings"]
    lines = [*rows, "", f"Hippocampus, {settings['dim']}D, {settings['seeds']} seeds (each its own subject, the same "
             f"for every arm), {settings['steps']} steps at batch {settings['batch_size']}, {settings['max_test']} "
             "test volumes" + ("; the probes read the first shot count." if probed and len(shots) > 1 else ".")]
    lines += [f"`{name}`: measured {_made(report)} in {report['settings']['seconds'] / 60:.0f} min"
              f"{_resumed(report['settings'])}." for name, report in reports.items()]
    lines += [f"`{name}`: not run yet: {how_to_make(name)}." for name in missing]
    return "\n".join(lines)


def _made(report: dict[str, Any]) -> str:
    """When, where and by which command a results file was made."""
    made = report["provenance"]
    return (f"{made['date'][:10]} on {machine_words(made)} by `{made['command']}` at commit "
            f"{(made['commit'] or 'unknown')[:7]}")


def _network(report: dict[str, Any], features: str) -> str:
    if "network" not in features:
        return ""
    return "random init" if report["checkpoint"] == "none" else f"`{report['checkpoint']}`"


def render_registration_table(reports: dict[str, dict[str, Any]]) -> str:
    """Several ``eval-reg`` studies of one protocol as one table, then where each study came from.

    Known-answer studies (co-registered contrasts): a row per solver, feature set and network with the endpoint
    error (voxels, mean ± SD over seeds), folding and seconds. Labelled pairs (an MSD folder): Dice after
    registration per simulated contrast change of the moving image, folding and seconds.
    """
    first = next(iter(reports.values()))
    sample = first["results"][next(iter(first["results"]))]
    labelled = "epe" not in sample
    changes = list(sample) if labelled else []
    if labelled:
        rows = ["| solver | features | network | " + " | ".join("Dice after registration" if changes == ["none"] else
                                                               f"Dice, {'no' if c == 'none' else c} change"
                                                               for c in changes)
                + " | folding % | seconds |", "|---|---|---|" + "---|" * (len(changes) + 2)]
    else:
        rows = ["| solver | features | network | endpoint error (voxels) | folding % | seconds |",
                "|---|---|---|---|---|---|"]
    for report in reports.values():
        for features, row in report["results"].items():
            head = f"| {preset_name(report['registration_config'])} | {features} | {_network(report, features)} | "
            if labelled:
                cells = [f"{row[c]['dice']['mean']:.3f} ± {row[c]['dice']['std']:.3f}" for c in changes]
                folding = max(row[c]["folding_percent"]["mean"] for c in changes)
                seconds = max(row[c]["seconds"]["mean"] for c in changes)
                rows.append(head + " | ".join(cells) + f" | {folding:.2f} | {seconds:.0f} |")
            else:
                rows.append(head + f"{row['epe']['mean']:.3f} ± {row['epe']['std']:.3f} | "
                            f"{row['folding_percent']['mean']:.2f} | {row['seconds']['mean']:.0f} |")
    if labelled:
        before = sample[changes[0]]["dice_before"]
        summary = (f"{first['data']}, {len(first['seeds'])} labelled pairs; Dice {before['mean']:.3f} ± "
                   f"{before['std']:.3f} before registration; folding and seconds: the largest over the changes.")
    else:
        before = sample["epe_before"]
        summary = (f"{first['data']}, {first['fixed']} fixed, {first['moving']} moving, {len(first['seeds'])} seeds; "
                   f"{before['mean']:.2f} ± {before['std']:.2f} voxels before registration.")
    lines = [*rows, "", summary]
    lines += [f"`{name}`: measured {_made(report)}." for name, report in reports.items()]
    return "\n".join(lines)


def render_feature_table(report: dict[str, Any]) -> str:
    """An ``eval-features`` study as the README's table: per network, the match rate of its features, of the
    untrained network, of MIND-SSC and of both joined on each pair, their means over the pairs, the ratios of
    the means, and the range of the network's pair cosine (near 1 is collapse)."""
    pairs = report["settings"]["pairs"]
    rows = ["| shipped weights | network | random | MIND | network+MIND | mean: network | random | MIND | net+MIND "
            "| ÷ random / ÷ MIND | pair cos |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    methods = ("network", "random", "mind", "network+mind")
    for name, entry in report["networks"].items():
        if "network" not in entry["mean"]:
            continue
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        label = f"{name}{' (encoder)' if entry['feature_source'] == 'encoder' else ''}" + (
            f" (`{aliases[0]}`)" if aliases else "")
        per_pair = [" / ".join(f"{row[m]['match_rate']:.2f}" for row in entry["pairs"]) for m in methods]
        mean = {m: entry["mean"][m]["match_rate"] for m in methods}
        cosines = [row["network"]["pair_cosine"] for row in entry["pairs"]]
        rows.append(f"| {label} | " + " | ".join(per_pair) + " | " + " | ".join(f"{mean[m]:.3f}" for m in methods)
                    + f" | {mean['network'] / mean['random']:.2f}× / {mean['network'] / mean['mind']:.2f}× | "
                    f"{min(cosines):.2f}-{max(cosines):.2f} |")
    settings = report["settings"]
    described = ", ".join(f"{p['data']} {p['fixed']} → {p['moving']}" for p in pairs)
    return "\n".join([*rows, "", f"Pairs, in the order of each cell: {described}. {settings['dim']}D, working side "
                       f"{settings['size']}, search radius {settings['radius']} (chance "
                       f"{settings['chance_rate']:.3f}), {settings['queries']} queries a pair; measured "
                       f"{_made(report)}" + (f" in {settings['seconds'] / 60:.0f} min." if "seconds" in settings
                                             else ".")])


def _own_task(entry: dict[str, Any]) -> str:
    """One objective's own-task columns as "what: start → end"; a guessing level (chance, constant) once."""
    parts = []
    for column in entry["own_task"]:
        if column["column"].endswith(("_chance", "_constant")):
            parts.append(f"{column['measures']} {column['end']:.2f}")
        else:
            parts.append(f"{column['measures']} {column['start']:.2f} → {column['end']:.2f}")
    return "; ".join(parts) or "not logged"


def render_training_table(names: list[str] | None = None) -> str:
    """How each shipped network trained, from its committed log (``synthlab/weights/NAME.log.csv``): the loss,
    whether it learned its own paper's task (start → end), and whether that moved the real-image match."""
    rows = ["| shipped weights | trained | loss, first → last logged | its own task, untrained → end | real match, "
            "untrained → end |", "|---|---|---|---|---|"]
    for name in names or recipe_names():
        entry = training_record(name)
        loss, real = entry["loss"], entry["real_match"]
        where = "CPU" if entry["device"] == "cpu" else "GPU"
        if entry["profile"] not in ("cpu", "gpu"):
            where += f" ({entry['profile']})"
        trained = f"{entry['steps']:,} steps, {entry['minutes']:.1f} min, {where}"
        rows.append(f"| {name} | {trained} | {loss['first']:.2f} → {loss['last']:.2f} (means of {loss['window']} "
                    f"rows) | {_own_task(entry)} | "
                    + (f"{real['start']:.2f} → {real['end']:.2f}" if real else "not probed") + " |")
    return "\n".join([*rows, "", "Read from each network's committed training log and checkpoint (`python -c 'from "
                       "synthlab import shipped; print(shipped.training_record(NAME))'`). Own task: on one fixed "
                       "synthetic batch of two renderings per label map, at step 0 and at the end; the real match: "
                       "brain_tumor_mri/study1 T1 → FLAIR, 500 queries (2D 256 px, chance 0.053; 3D 96³, chance "
                       "0.012; `voco` reads its encoder)."])


def render_blocks() -> dict[str, str]:
    """The markdown of every study block whose results files exist, keyed by the name its markers carry."""
    renderers = {"eval-seg": render_fewshot_study, "eval-features": render_feature_table}
    blocks = {name: renderers[STUDIES[name].argv[0]](report) for name in STUDIES
              if STUDIES[name].argv[0] in renderers and (report := load_study(name)) is not None}
    blocks["shipped-training"] = render_training_table()
    for table, names in TABLES.items():
        reports = {name: load_study(name) for name in names}
        kind = STUDIES[names[0]].argv[0]
        if kind == "eval-reg" and all(report is not None for report in reports.values()):
            blocks[table] = render_registration_table(reports)
        elif kind == "eval-seg" and sum(report is not None for report in reports.values()) > 1 and reports[names[0]]:
            # The first study owns the scratch arm; a network whose study is missing says how to make it.
            blocks[table] = render_fewshot_networks(reports)
    return blocks
