"""The synthlab command line: ``python -m synthlab pretrain | eval-seg | eval-reg | eval-features | register | bench``.

Every sub-command turns its flags into keyword arguments of one package function, so the notebooks and the
command line run the same code. User errors (``ValueError``, ``FileNotFoundError``) become one line on stderr and
exit code 2; results files are written only after a command has succeeded, atomically.

Examples::

    python -m synthlab pretrain --objective supcon --dim 3 --size 64 --steps 200 --out runs/supcon3d
    torchrun --standalone --nproc_per_node=2 -m synthlab pretrain --objective rasd --dim 2 --size 64 \\
        --steps 100 --out runs/rasd2d
    python -m synthlab eval-reg --data brain_tumor_mri/study1 --fixed T1prereg --moving FLAIRreg --checkpoint none \\
        --features intensity mind --seeds 3 --out results/reg.json
    python -m synthlab eval-seg --data hippocampus --checkpoint runs/supcon3d/checkpoint.pt --shots 1 3 5 --seeds 3 \\
        --steps 200 --out results/seg.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from .bench import main as bench_main
from .cli import USER_ERRORS, Parser, add_config_flags, config_values, defaults_of, input_error
from .correspondence import STANDARD_SIZE, CorrespondenceConfig, TrainingProbe, evaluate_feature_pairs
from .dims import DIMS
from .dist import configure_threads
from .eval_reg import CONTRAST_CHANGES, ProtocolConfig, evaluate_registration
from .eval_seg import evaluate_segmentation, format_segmentation
from .io import check_free_space, check_output_file, write_json_atomic
from .nets import RANDOM_PRESET
from .profiles import PROFILES, get_profile
from .register import FEATURE_SETS
from .register_files import register_files
from .registration_config import SOLVER_PRESETS
from .results import provenance
from .segment import ARMS, HEAD_INITS, FineTuneConfig
from .synth import SynthConfig
from .train import TrainConfig, pretrain

__all__ = ["build_parser", "main", "parse_args"]

_DEFAULTS = argparse.ArgumentDefaultsHelpFormatter  # every --help line shows its default
_TRAIN_SKIP = ("synth", "objective_config")  # TrainConfig fields filled from --synth/--synth-set/--objective-set


# What --profile NAME configures for each command: the profile's overrides of these become the flags' defaults,
# so a flag given still wins (eval-reg also takes the profile's solver iterations, which have no flag).
_PROFILE_TARGETS: dict[str, tuple[Any, ...]] = {
    "pretrain": (TrainConfig,),
    "eval-seg": (FineTuneConfig, evaluate_segmentation),
    "eval-reg": (evaluate_registration,),
    "eval-features": (CorrespondenceConfig,),
}


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="take the budgets of a notebook profile (ci, cpu, gpu) as the defaults of these flags")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line parsed in layers: each flag's default, then ``--profile``'s overrides, then the flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "profile", None) is None:
        return args
    profile, command = get_profile(args.profile), parser.commands[args.command]
    dim = getattr(args, "dim", 3)
    overrides = {}
    for target in _PROFILE_TARGETS[args.command]:
        overrides.update(profile.overrides_for(target, dim))
    if args.command == "eval-seg":  # --checkpoint none builds the profile's network, as the notebooks do
        overrides["preset"] = profile.preset(dim)
    command.set_defaults(**{key: list(v) if isinstance(v, tuple) else v for key, v in overrides.items()})
    return parser.parse_args(argv)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain", formatter_class=_DEFAULTS,
        help="pretrain a backbone with one objective on synthetic (or real unlabeled) data")
    _add_profile(p)
    add_config_flags(p, TrainConfig, skip=_TRAIN_SKIP)  # every other TrainConfig field, with its default
    p.add_argument("--synth", default=None, metavar="FILE.json",
                   help="synthetic-engine settings (a SynthConfig dict, e.g. saved by notebook 01), laid over the "
                        "defaults")
    p.add_argument("--synth-set", action="append", default=[], metavar="KEY=VALUE",
                   help="one synthetic-engine setting, e.g. appearance.noise_p=0.1 (JSON value; repeatable; "
                        "applied after --synth)")
    p.add_argument("--objective-set", action="append", default=[], metavar="KEY=VALUE",
                   help="one field of the objective's config, e.g. temperature=0.2 (JSON value; repeatable)")
    p.add_argument("--probe-data", default=None,
                   help="co-registered folder (or name under $SYNTHLAB_DATA) for a real-image match rate in the "
                        "probes; without it the probes are synthetic only")
    p.add_argument("--probe-contrasts", nargs=2, default=None, metavar=("FIXED", "MOVING"),
                   help="contrast names (or unique prefixes) of --probe-data, e.g. T1prereg FLAIRreg; required "
                        "with --probe-data")


def _add_eval_reg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-reg", formatter_class=_DEFAULTS,
        help="register real images with several feature sets and report the metrics")
    _add_profile(p)
    p.add_argument("--data", required=True, help="folder of co-registered contrasts (or a name under $SYNTHLAB_DATA)")
    p.add_argument("--fixed", default=None, help="contrast of the fixed image (file stem or unique prefix)")
    p.add_argument("--moving", default=None, help="contrast of the moving image; for an MSD folder (labels, "
                   "inter-subject pairs) leave both out")
    reg = defaults_of(evaluate_registration)
    p.add_argument("--checkpoint", default=reg["checkpoint"],
                   help="checkpoint path, a shipped name, or 'none' (random init)")
    p.add_argument("--features", nargs="+", default=list(reg["features"]), choices=FEATURE_SETS)
    p.add_argument("--seeds", type=int, default=reg["seeds"], help="number of seeded synthetic deformations")
    p.add_argument("--size", type=int, default=None, help="resample to at most this many voxels per side")
    p.add_argument("--solver", default="synthlab", choices=sorted(SOLVER_PRESETS),
                   help="solver settings: synthlab's, or anatomix's published ones (docs/fidelity.md)")
    p.add_argument("--changes", nargs="+", default=list(ProtocolConfig.contrast_changes), choices=CONTRAST_CHANGES,
                   help="MSD pairs: register the moving image as stored and/or after a simulated contrast change")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="results.json")


def _add_eval_seg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-seg", formatter_class=_DEFAULTS,
        help="few-shot segmentation: fine-tune pretrained vs scratch on an MSD data set")
    _add_profile(p)
    p.add_argument("--data", required=True, help="MSD folder (dataset.json, imagesTr/, labelsTr/) or a name")
    seg = defaults_of(evaluate_segmentation)  # each default written once, in the function's signature
    p.add_argument("--checkpoint", default=seg["checkpoint"], help="checkpoint path, a shipped name, or 'none'")
    p.add_argument("--shots", type=int, nargs="+", default=list(seg["shots"]))
    p.add_argument("--seeds", type=int, default=seg["seeds"])
    p.add_argument("--dim", type=int, default=seg["dim"], choices=DIMS)
    p.add_argument("--preset", default=None, help="network preset for --checkpoint none")
    p.add_argument("--max-test", type=int, default=seg["max_test"],
                   help="evaluate on at most this many held-out volumes")
    add_config_flags(p, FineTuneConfig, skip=("augment",))  # the run's budget, each default in the dataclass
    p.add_argument("--tune-heads", nargs="+", choices=HEAD_INITS, default=list(seg["tune_heads"]),
                   help="head starts --tune tries for each fine-tuned arm")
    p.add_argument("--tune", action=argparse.BooleanOptionalAction, default=seg["tune"],
                   help="choose each arm's learning rate (and the pretrained arm's frozen warm-up) on validation "
                        "cases kept apart from the test list (needs --max-test)")
    p.add_argument("--val-cases", type=int, default=seg["val_cases"], help="validation cases for --tune")
    p.add_argument("--hold-validation", action="store_true",
                   help="keep the validation cases out of training without --tune, so each seed trains the "
                        "subjects it trains in a tuned study (to rerun one with its chosen settings)")
    p.add_argument("--tune-seeds", type=int, default=seg["tune_seeds"], help="seeds per choice for --tune")
    p.add_argument("--arms", nargs="+", default=list(seg["arms"]), choices=ARMS, help="arms to run")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None,
                   help="processes the runs are spread over (default: every core on a CPU, one on a GPU); "
                        "the results do not depend on it")
    p.add_argument("--out", required=True, help="results.json")


def _add_eval_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-features", formatter_class=_DEFAULTS,
        help="do a network's features find the same voxel in another contrast?")
    _add_profile(p)
    p.add_argument("--data", help="folder of co-registered contrasts (or a name under $SYNTHLAB_DATA)")
    p.add_argument("--fixed", help="contrast of the query image (file stem or unique prefix)")
    p.add_argument("--moving", help="contrast searched for the match")
    p.add_argument("--pair", nargs=3, action="append", metavar=("DATA", "FIXED", "MOVING"),
                   help="a pair as --data/--fixed/--moving give one; repeat it to probe several, averaged alike")
    p.add_argument("--checkpoint", nargs="+", default=["none"],
                   help="checkpoint paths or shipped names, or 'none' (then only mind and random are probed)")
    probe = CorrespondenceConfig()  # each default written once, in the dataclass
    p.add_argument("--dim", type=int, default=probe.dim, choices=DIMS, help="2: slice by slice; 3: isotropic volume")
    p.add_argument("--size", type=int, default=None,
                   help=f"working side in voxels (default {STANDARD_SIZE[2]} in 2D, the longest in-plane side; "
                        f"{STANDARD_SIZE[3]} in 3D)")
    p.add_argument("--radius", type=int, default=probe.radius, help="half-side of the search cube in working voxels")
    p.add_argument("--queries", type=int, default=probe.queries, help="query voxels in the fixed image's foreground")
    p.add_argument("--seed", type=int, default=probe.seed, help="seeds the queries and the random baseline")
    p.add_argument("--preset", default=RANDOM_PRESET, help="architecture of the random baseline without a checkpoint")
    p.add_argument("--out", required=True, help="results.json")


def _add_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "register", formatter_class=_DEFAULTS,
        help="register two scans as they are stored and write the moved scan, labels and field as NIfTI")
    p.add_argument("fixed", help="NIfTI file of the fixed scan (its grid and affine are the output's)")
    p.add_argument("moving", help="NIfTI file of the moving scan (any orientation, voxel size or field of view)")
    given = defaults_of(register_files)  # each default written once, in the function's signature
    p.add_argument("--features", default=given["features"], choices=FEATURE_SETS)
    p.add_argument("--checkpoint", default="synthlab-3d",  # the command uses the shipped network, the function none
                   help="3D network for the network feature sets: a shipped name, a path, or 'none' (random)")
    p.add_argument("--moving-labels", default=None, help="label map of the moving scan, moved with it")
    p.add_argument("--fixed-labels", default=None, help="label map of the fixed scan: report Dice before/after")
    p.add_argument("--size", type=int, default=given["size"],
                   help="longest side of the isotropic working grid, in voxels")
    p.add_argument("--solver", default="synthlab", choices=sorted(SOLVER_PRESETS),
                   help="solver settings: synthlab's, or anatomix's published ones (docs/fidelity.md)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output folder (new or empty)")


def _key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["a.b=0.1", "c=[1, 2]"]`` -> ``{"a.b": 0.1, "c": [1, 2]}``; values are JSON, else plain strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _synth_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``--synth FILE`` (its run fields aside: the run sets them) with every ``--synth-set`` laid over it."""
    settings: dict[str, Any] = {}
    if args.synth is not None:
        path = Path(args.synth)
        try:
            settings = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"synth: cannot read {path} as JSON ({err})") from err
        if not isinstance(settings, dict):
            raise ValueError(f"synth: {path} must hold a JSON object of SynthConfig settings")
        settings = {k: v for k, v in settings.items() if k not in SynthConfig.RUN_FIELDS}
    return {**settings, **_key_values(args.synth_set, "--synth-set")}


def _print_registration(results: dict[str, Any]) -> None:
    """Mean ± SD over seeds of each metric, per feature set (and per contrast change for an MSD folder)."""
    print(f"{results.get('network', '')}; mean ± SD over seeds:")

    def cells(row: dict[str, Any]) -> str:
        return ", ".join(f"{metric} {v['mean']:.3f} ± {v['std']:.3f}" for metric, v in row.items()
                         if isinstance(v, dict) and "mean" in v)

    for name, row in results["results"].items():
        nested = all(isinstance(v, dict) and "mean" not in v for v in row.values())
        for change, by_change in (row.items() if nested else [("", row)]):
            label = f"{name} ({change})" if change else name
            print(f"  {label:<28} {cells(by_change)}")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings as one line each on stderr, without the source line Python would quote under them."""
    print(f"synthlab: warning: {message}", file=sys.stderr)


def _out_of_memory(err: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError (OutOfMemoryError on CUDA)."""
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="synthlab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices  # each command's parser, for --profile
    _add_pretrain(sub)
    _add_eval_reg(sub)
    _add_eval_seg(sub)
    _add_eval_features(sub)
    _add_register(sub)
    bench = sub.add_parser(
        "bench", help="benchmarks (same as python -m synthlab.bench)", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "pretrain":
        config = TrainConfig(**config_values(args, TrainConfig, _TRAIN_SKIP), synth=_synth_settings(args),
                             objective_config=_key_values(args.objective_set, "--objective-set"))
        if args.probe_data is not None and args.probe_contrasts is None:
            raise ValueError("probe-contrasts: --probe-data needs the two contrasts to compare, e.g. "
                             "--probe-contrasts T1prereg FLAIRreg")
        probe = None
        if config.probe_every:
            probe = TrainingProbe.for_run(config, args.probe_data, args.probe_contrasts)
        summary = pretrain(config, probe=probe)
        print(f"checkpoint {summary['checkpoint']}: {summary['steps']} steps, final loss "
              f"{summary['final_loss']:.4f}, {summary['seconds'] / 60:.1f} min")
        return 0
    if args.command == "eval-reg":
        solver = SOLVER_PRESETS[args.solver]
        if args.profile is not None:
            solver = get_profile(args.profile).configure(solver, 3)
        results = evaluate_registration(data=args.data, fixed=args.fixed, moving=args.moving,
                                        checkpoint=args.checkpoint, features=args.features, seeds=args.seeds,
                                        size=args.size, device=args.device, config=solver,
                                        protocol=ProtocolConfig(contrast_changes=tuple(args.changes)))
        write_json_atomic(args.out, {"provenance": provenance(args.command_line), **results})
        _print_registration(results)
        print(f"wrote {args.out}")
        return 0
    if args.command == "eval-seg":
        # Every finished run is kept beside the output until the results are written: run the same command again
        # after a kill and only the missing runs train.
        journal = Path(f"{args.out}.partial.jsonl")
        if journal.is_file():
            print(f"resuming from {journal}", file=sys.stderr)
        results = evaluate_segmentation(data=args.data, checkpoint=args.checkpoint, shots=args.shots,
                                        seeds=args.seeds, dim=args.dim, preset=args.preset,
                                        max_test=args.max_test, device=args.device,
                                        arms=args.arms, tune=args.tune, val_cases=args.val_cases,
                                        hold_validation=args.hold_validation,
                                        tune_seeds=args.tune_seeds, tune_heads=args.tune_heads,
                                        workers=args.workers, journal=journal,
                                        **config_values(args, FineTuneConfig, ("augment",)))
        write_json_atomic(args.out, {"provenance": provenance(args.command_line), **results})
        journal.unlink()  # the results are written: nothing left to resume
        print(format_segmentation(results))
        print(f"wrote {args.out}")
        return 0
    if args.command == "register":
        summary = register_files(args.fixed, args.moving, args.out, args.features, args.checkpoint,
                                 args.moving_labels, args.fixed_labels, args.size, config=SOLVER_PRESETS[args.solver],
                                 device=args.device)
        dice = (f", Dice {summary['dice_before']:.3f} -> {summary['dice']:.3f}" if "dice" in summary else "")
        print(f"registered {args.moving} onto {args.fixed} with {args.features} features on a "
              f"{'x'.join(map(str, summary['working_grid']))} grid in {summary['seconds']:.1f} s (initial shift "
              f"{summary['initial_shift_mm']} mm, folding {summary['folding_percent']:.2f} %{dice}); wrote "
              f"{', '.join(summary['files'])} to {args.out}")
        return 0
    if args.command == "eval-features":
        config = CorrespondenceConfig.for_dim(args.dim, radius=args.radius, queries=args.queries, seed=args.seed,
                                     **({"size": args.size} if args.size else {}))
        one = (args.data, args.fixed, args.moving)
        if args.pair and any(one) or not args.pair and not all(one):
            raise ValueError("eval-features: give --data, --fixed and --moving for one pair, or --pair for each")
        results = evaluate_feature_pairs(args.pair or [one], args.checkpoint, config, args.preset)
        write_json_atomic(args.out, {"provenance": provenance(args.command_line), **results})
        print(f"match rate (chance {results['settings']['chance_rate']:.3f}) per pair, then the mean; "
              "pair cosine of the mean:")
        for name, report in results["networks"].items():
            for method, mean in report["mean"].items():
                cells = " ".join(f"{row[method]['match_rate']:.3f}" for row in report["pairs"])
                print(f"  {name:<22} {method:<13} {cells}  mean {mean['match_rate']:.3f}  {mean['pair_cosine']:.3f}")
        print(f"wrote {args.out}")
        return 0
    if args.command == "bench":
        return bench_main(args.rest)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input, with one line on stderr)."""
    args = parse_args(argv)
    args.command_line = ["python -m synthlab", *(sys.argv[1:] if argv is None else argv)]  # results record it
    warnings.showwarning = _show_warning
    try:
        configure_threads()  # SYNTHLAB_THREADS=N overrides; see dist.configure_threads
        if args.command.startswith("eval-"):
            check_output_file(args.out)  # before any compute
            check_free_space(args.out, 2**20)
        return _run(args)
    except (*USER_ERRORS, FloatingPointError) as err:  # a diverged run is the user's budget to change
        return input_error(f"synthlab {args.command}", err)
    except (OSError, MemoryError) as err:  # a full disk, no memory: one line too; a bug keeps its traceback
        return input_error(f"synthlab {args.command}", err, kind=True)
    except RuntimeError as err:
        if not _out_of_memory(err):
            raise
        wanted = re.search(r"allocate (\d+) bytes", str(err))
        size = f" (an allocation of {int(wanted.group(1)) / 2**30:.1f} GiB failed)" if wanted else ""
        return input_error(f"synthlab {args.command}",
                           MemoryError(f"out of memory{size}; lower --batch-size or --size"))


if __name__ == "__main__":
    sys.exit(main())
