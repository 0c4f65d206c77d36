"""Benchmarks against the peers, one sub-command each.

Examples::

    python -m synthlab.bench synth --dim 3 --size 128 --n 8 --device cpu --threads 2
    python -m synthlab.bench synth --labels ../shared/data/totalseg_ct/labels.nii.gz --json results/synth.json

``synth`` times two-view samples of :class:`~synthlab.synth.SynthEngine` (label map included) for the
procedural source and, with ``--labels``, the shape bank; then, on the very same label maps, the TorchIO
pipeline a user would otherwise write (``RandomLabelsToImage`` followed by bias, gamma, blur, noise and
anisotropy, run twice per map). TorchIO is imported here only, and reported as skipped when absent.

``register`` times one registration of a real brain (the ICBM152 T1 of the nilearn wheel, resized to a cube)
against a deformed copy under a non-monotone contrast change, split into the features of both images and the
solver::

    python -m synthlab.bench register --size 128 --features network+mind --checkpoint synthlab-3d --threads 2

``train`` times full pretraining steps (synthesis on the training device, then :func:`synthlab.train.train_step`:
forward, backward, clipping, optimiser with the run's learning-rate schedule) and
reports steps/s and the share of each step spent synthesising; on CUDA it runs fp32 and bf16 autocast side by
side::

    python -m synthlab.bench train --objective supcon --dim 3 --size 128 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .cli import USER_ERRORS, Parser, defaults_of, input_error
from .dims import DIMS
from .dist import resolve_device, start_runtime
from .io import write_json_atomic
from .losses import OBJECTIVES
from .synth import SynthConfig, SynthEngine
from .train import TrainConfig, build_run, scheduled_lr, train_step

__all__ = ["bench_register", "bench_synth", "bench_train", "build_parser", "main"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _summary(seconds: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(seconds), "std": statistics.pstdev(seconds), "min": min(seconds),
            "n": len(seconds)}


def _time_engine(engine: Any, n: int, device: torch.device) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Seconds per sample for the label map (with augmentation), the rendering and both; also the maps."""
    engine.sample(1)  # warm-up: first-call allocations and kernel selection are not what a training loop sees
    stages: dict[str, list[float]] = {"labels": [], "render": [], "total": []}
    maps = []
    for _ in range(n):
        _synchronize(device)
        start = time.perf_counter()
        labels = engine.augment(engine.sample_labels(1))
        _synchronize(device)
        middle = time.perf_counter()
        engine.render(labels)
        _synchronize(device)
        end = time.perf_counter()
        stages["labels"].append(middle - start)
        stages["render"].append(end - middle)
        stages["total"].append(end - start)
        maps.append(labels.cpu())
    return {name: _summary(values) for name, values in stages.items()}, maps


def _torchio_two_views(dim: int) -> Callable[[torch.Tensor], None] | None:
    """The TorchIO pipeline as a user would write it, or None when TorchIO is not installed."""
    try:
        import torchio as tio
    except ImportError:
        return None
    axes = (0, 1) if dim == 2 else (0, 1, 2)
    transform = tio.Compose([
        tio.RandomLabelsToImage(label_key="label", image_key="image"),
        tio.RandomBiasField(),
        tio.RandomGamma(),
        tio.RandomBlur(),
        tio.RandomNoise(),
        tio.RandomAnisotropy(axes=axes),
    ])

    def two_views(labels: torch.Tensor) -> None:
        volume = labels[0] if dim == 3 else labels[0].unsqueeze(-1)  # TorchIO wants (C, W, H, D)
        subject = tio.Subject(label=tio.LabelMap(tensor=volume))
        for _ in range(2):
            transform(subject)

    return two_views


def _time_torchio(two_views: Callable[[torch.Tensor], None], maps: list[torch.Tensor]) -> dict[str, float]:
    two_views(maps[0])  # warm-up
    seconds = []
    for labels in maps:
        start = time.perf_counter()
        two_views(labels)
        seconds.append(time.perf_counter() - start)
    return _summary(seconds)


def bench_synth(dim: int = 3, size: int = 128, n: int = 8, device: str = "cpu", labels: str | None = None,
                seed: int = 0, threads: int | None = None, peers: bool = True) -> dict[str, Any]:
    """Seconds per two-view sample for each label source, and for TorchIO on the same maps."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    results: dict[str, Any] = {
        "benchmark": "synth", "dim": dim, "size": size, "n": n, "device": str(torch_device),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "sources": {},
    }
    sources = {"procedural": "procedural"}
    if labels is not None:
        sources[f"shape bank ({Path(labels).name})"] = labels
    two_views = _torchio_two_views(dim) if peers else None
    for name, source in sources.items():
        start = time.perf_counter()
        engine = SynthEngine(SynthConfig(dim=dim, size=size, n_views=2, labels=source), torch_device, seed)
        load = time.perf_counter() - start
        stages, maps = _time_engine(engine, n, torch_device)
        entry: dict[str, Any] = {"synthlab": stages, "setup_s": load}
        if engine.bank is not None:
            entry["shapes"] = len(engine.bank)
        if two_views is not None:
            entry["torchio"] = _time_torchio(two_views, maps)
            entry["speedup_total"] = entry["torchio"]["mean"] / stages["total"]["mean"]
            entry["speedup_render"] = entry["torchio"]["mean"] / stages["render"]["mean"]
        else:
            entry["torchio"] = "skipped (pip install torchio)" if peers else "skipped (--no-peers)"
        results["sources"][name] = entry
    return results


def _print_synth(results: dict[str, Any]) -> None:
    side = "x".join([str(results["size"])] * results["dim"])
    print(f"synth: {side}, {results['n']} two-view samples, device {results['device']}, "
          f"{results['threads']} threads, torch {results['torch']}")
    print(f"{'source':34s} {'s/sample: mean ± std (min)':>28s} {'label map':>10s} {'2 views':>9s}")
    for name, entry in results["sources"].items():
        s = entry["synthlab"]
        total = f"{s['total']['mean']:.3f} ± {s['total']['std']:.3f} ({s['total']['min']:.3f})"
        print(f"{'synthlab ' + name:34s} {total:>28s} {s['labels']['mean']:10.3f} {s['render']['mean']:9.3f}"
              f"   (setup {entry['setup_s']:.1f} s)")
        peer = entry["torchio"]
        if isinstance(peer, str):
            print(f"{'torchio, same maps':34s} {peer}")
        else:
            total = f"{peer['mean']:.3f} ± {peer['std']:.3f} ({peer['min']:.3f})"
            print(f"{'torchio, same maps (2 views)':34s} {total:>28s} {'-':>10s} {peer['mean']:9.3f}"
                  f"   -> synthlab {entry['speedup_total']:.1f}x faster incl. label map, "
                  f"{entry['speedup_render']:.1f}x on rendering alone")


def bench_train(objective: str = "supcon", dim: int = 3, size: int = 128, preset: str | None = None,
                batch_size: int = 1, steps: int = 10, device: str = "cpu", threads: int | None = None,
                seed: int = 0, channels_last: bool = False, compile: bool = False,
                precisions: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Seconds per pretraining step and the synthesis share, per precision (fp32; bf16 too on CUDA).

    The run is built exactly as ``pretrain`` builds it (:func:`~synthlab.train.build_run`: network, objective,
    optimiser, and the batch source drawing only the views the objective uses) and stepped by the same
    :func:`~synthlab.train.train_step` with the run's schedule and clipping.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = start_runtime(device).device  # as pretrain sets a device up (cuDNN autotuning on GPUs)
    config = TrainConfig(objective=objective, out="", dim=dim, size=size, steps=steps + 1, preset=preset,
                         batch_size=batch_size, seed=seed, channels_last=channels_last, compile=compile)
    parts = build_run(config, dev, seed)
    model = parts.trainee(compile)
    results: dict[str, Any] = {"objective": objective, "dim": dim, "size": size, "preset": config.preset,
                               "batch_size": batch_size, "device": str(dev), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "channels_last": channels_last,
                               "compile": compile, "precision": {}}
    for precision in precisions or (["fp32", "bf16"] if dev.type == "cuda" else ["fp32"]):
        synth_s, step_s = [], []
        for i in range(steps + 1):  # the first step is a warm-up
            _synchronize(dev)
            start = time.perf_counter()
            views, labels = parts.source.sample(batch_size)
            _synchronize(dev)
            middle = time.perf_counter()
            train_step(model, parts.optimizer, (views, labels, parts.loss_generator), lr=scheduled_lr(config, i),
                       grad_clip=config.grad_clip or None, autocast=precision == "bf16",
                       after_step=parts.objective.after_step)
            _synchronize(dev)
            end = time.perf_counter()
            if i:
                synth_s.append(middle - start)
                step_s.append(end - start)
        results["precision"][precision] = {"step": _summary(step_s), "steps_per_s": 1 / statistics.fmean(step_s),
                                           "synth_share": sum(synth_s) / sum(step_s)}
    return results


def _print_train(results: dict[str, Any]) -> None:
    print(f"{results['objective']} {results['dim']}D {results['size']}^{results['dim']} preset {results['preset']} "
          f"batch {results['batch_size']} on {results['device']} ({results['threads']} threads)")
    for precision, entry in results["precision"].items():
        print(f"  {precision}: {entry['step']['mean']:.3f} s/step, {entry['steps_per_s']:.2f} steps/s, "
              f"synthesis {100 * entry['synth_share']:.1f}% of a step")
    if "bf16" in results["precision"]:
        ratio = results["precision"]["bf16"]["steps_per_s"] / results["precision"]["fp32"]["steps_per_s"]
        print(f"  bf16 / fp32 speed: {ratio:.2f}x")


def bench_register(size: int = 128, features: str = "network+mind", checkpoint: str = "synthlab-3d",
                   solver: str = "synthlab", device: str = "cpu", threads: int | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Seconds of one ``size``-cubed registration: the features of both images, the solver, and their sum.

    The pair is the ICBM152 T1 template (offline: the nilearn wheel) and the same image deformed by
    :func:`~synthlab.eval_reg.random_deformation` and remapped by a non-monotone intensity curve; loading the
    network is not timed (a user loads it once for many pairs).
    """
    from .data import load_icbm
    from .eval_reg import load_feature_net, random_contrast, random_deformation
    from .register import FEATURE_SETS, pair_features, register_features
    from .registration_config import SOLVER_PRESETS
    from .spatial import resize, warp

    if features not in FEATURE_SETS or solver not in SOLVER_PRESETS:
        raise ValueError(f"features must be one of {FEATURE_SETS} and solver one of {sorted(SOLVER_PRESETS)}, got "
                         f"{features!r} and {solver!r}")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    fixed = resize(load_icbm(resolution=1).contrasts["t1"].array[None, None].float(), (size,) * 3)[0, 0]
    moving = warp(fixed[None, None], random_deformation((size,) * 3, (1.0,) * 3, generator)[None])[0, 0]
    fixed, moving = fixed.to(dev), random_contrast(moving, generator, monotone=False).to(dev)
    net = load_feature_net(checkpoint, dev)[0] if "network" in features else None
    config = SOLVER_PRESETS[solver]
    with torch.no_grad():
        _synchronize(dev)
        start = time.perf_counter()
        pair = pair_features(fixed, moving, features, net, config)
        _synchronize(dev)
        middle = time.perf_counter()
        displacement = register_features(*pair, config)
        _synchronize(dev)
        end = time.perf_counter()
    return {"benchmark": "register", "size": size, "features": features, "checkpoint": checkpoint if net else None,
            "solver": solver, "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "channels": int(pair[0].shape[0]), "features_s": middle - start, "solver_s": end - middle,
            "total_s": end - start, "mean_displacement_voxels": float(displacement.norm(dim=0).mean())}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="synthlab.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)
    synth = sub.add_parser("synth", help="synthesis speed: synthlab vs the TorchIO pipeline")
    made = defaults_of(bench_synth)  # each flag's default is its function's, written once in the signature
    synth.add_argument("--dim", type=int, default=made["dim"], choices=DIMS)
    synth.add_argument("--size", type=int, default=made["size"], help="side of the cubic/square samples")
    synth.add_argument("--n", type=int, default=made["n"], help="timed samples per source (after one warm-up)")
    synth.add_argument("--device", default=made["device"])
    synth.add_argument("--labels", default=made["labels"], help="label-map folder or file for the shape-bank source")
    synth.add_argument("--seed", type=int, default=made["seed"])
    synth.add_argument("--threads", type=int, default=made["threads"],
                       help="torch.set_num_threads (default: torch's)")
    synth.add_argument("--no-peers", dest="peers", action="store_false", help="skip the TorchIO comparison")
    synth.add_argument("--json", default=None, help="also write the results to this JSON file")
    train = sub.add_parser("train", help="pretraining step speed and the share spent synthesising")
    timed = defaults_of(bench_train)
    train.add_argument("--objective", default=timed["objective"], choices=OBJECTIVES)
    train.add_argument("--dim", type=int, default=timed["dim"], choices=DIMS)
    train.add_argument("--size", type=int, default=timed["size"])
    train.add_argument("--preset", default=timed["preset"], help="network preset (default: the profile's)")
    train.add_argument("--batch-size", type=int, default=timed["batch_size"])
    train.add_argument("--steps", type=int, default=timed["steps"],
                       help="timed steps per precision (after one warm-up)")
    train.add_argument("--device", default=timed["device"])
    train.add_argument("--threads", type=int, default=timed["threads"])
    train.add_argument("--seed", type=int, default=timed["seed"])
    train.add_argument("--channels-last", action="store_true", help="convolutions in channels-last layout")
    train.add_argument("--compile", action="store_true", help="torch.compile the network")
    train.add_argument("--json", default=None, help="also write the results to this JSON file")
    reg = sub.add_parser("register", help="one registration of a real brain: features and solver seconds")
    timed = defaults_of(bench_register)
    reg.add_argument("--size", type=int, default=timed["size"], help="side of the cube the pair is resized to")
    reg.add_argument("--features", default=timed["features"])
    reg.add_argument("--checkpoint", default=timed["checkpoint"], help="shipped name, path, or none")
    reg.add_argument("--solver", default=timed["solver"])
    reg.add_argument("--device", default=timed["device"])
    reg.add_argument("--threads", type=int, default=timed["threads"])
    reg.add_argument("--seed", type=int, default=timed["seed"])
    reg.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark; returns the exit code (2 with one line on stderr for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.benchmark == "synth":
            results = bench_synth(dim=args.dim, size=args.size, n=args.n, device=args.device,
                                  labels=args.labels, seed=args.seed, threads=args.threads, peers=args.peers)
            _print_synth(results)
        elif args.benchmark == "train":
            results = bench_train(objective=args.objective, dim=args.dim, size=args.size, preset=args.preset,
                                  batch_size=args.batch_size, steps=args.steps, device=args.device,
                                  threads=args.threads, seed=args.seed, channels_last=args.channels_last,
                                  compile=args.compile)
            _print_train(results)
        elif args.benchmark == "register":
            results = bench_register(size=args.size, features=args.features, checkpoint=args.checkpoint,
                                     solver=args.solver, device=args.device, threads=args.threads, seed=args.seed)
            print(f"register {results['size']}^3 {results['features']} ({results['channels']} channels, "
                  f"{results['solver']} solver) on {results['device']}, {results['threads']} threads: features "
                  f"{results['features_s']:.1f} s + solver {results['solver_s']:.1f} s = {results['total_s']:.1f} s")
        else:  # pragma: no cover - argparse rejects unknown sub-commands
            raise AssertionError(args.benchmark)
    except USER_ERRORS as err:
        return input_error(f"synthlab.bench {args.benchmark}", err)
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
