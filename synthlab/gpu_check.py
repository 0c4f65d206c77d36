"""One command for a lent GPU: every GPU figure the README reports, in one JSON, in a few minutes.

``make gpu-check`` (or ``python -m synthlab.gpu_check --out results/gpu_check.json``) runs, on ``cuda``:

1. ``synth``: two-view 128^3 samples per second (procedural source, label map included);
2. ``train_3d``: a pretraining step of the anatomix preset at 128^3 (supcon, batch 1), fp32 against bf16
   autocast, and the share of a step spent synthesising; then bf16 with channels-last convolutions
   (``train_3d_channels_last``) and, last because it compiles for a minute, with ``torch.compile``
   (``train_3d_compile``);
3. ``train_2d``: steps per second of the 2D ``small`` preset at 64^2, batch 16 (launch-bound: small kernels);
4. ``agreement``: the same network and batch on CPU and CUDA (fp32, TF32 off): largest relative difference of
   the features and of the loss.

Each part is written to the JSON as soon as it finishes, and parts that would start after ``--budget`` seconds
are skipped, so a time limit keeps what was measured. The GPU-scale weights are ``make gpu-weights``
(:mod:`synthlab.shipped`); the CUDA tests ``make gpu-test``. Never part of the tests or CI: the project builds
and passes its tests without a GPU.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from .bench import bench_synth, bench_train
from .checkpoint import random_backbone
from .cli import Parser, input_error
from .io import write_json_atomic
from .losses import build_objective
from .nets import unet_config
from .synth import SynthConfig, SynthEngine

__all__ = ["agreement", "main"]


def agreement(seed: int = 0, size: int = 64) -> dict[str, Any]:
    """Largest relative difference between CPU and CUDA for one anatomix-preset forward pass and one voxnce loss."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    net_cpu = random_backbone(unet_config("anatomix", 3), seed).eval()
    net_gpu = random_backbone(unet_config("anatomix", 3), seed).eval().cuda()
    batch = SynthEngine(SynthConfig(dim=3, size=size), seed=seed).sample(1)
    with torch.no_grad():
        cpu = net_cpu(batch.views[:, 0])
        gpu = net_gpu(batch.views[:, 0].cuda()).cpu()
        objective = build_objective("voxnce", net_cpu, 3)
        loss_cpu = objective(net_cpu, batch.views, None, torch.Generator().manual_seed(seed)).loss
        loss_gpu = objective.cuda()(net_gpu, batch.views.cuda(), None,
                                    torch.Generator("cuda").manual_seed(seed)).loss.cpu()
    scale = cpu.abs().max().clamp_min(1e-12)
    return {"features_max_rel_diff": float((cpu - gpu).abs().max() / scale),
            "loss_cpu": float(loss_cpu), "loss_cuda": float(loss_gpu),
            "note": "the loss draws its sample locations from a CPU and a CUDA generator, so the two losses "
                    "agree in size, not digit for digit"}


def _parts() -> dict[str, Callable[[], dict[str, Any]]]:
    anatomix_128 = {"objective": "supcon", "dim": 3, "size": 128, "preset": "anatomix", "batch_size": 1,
                    "steps": 10, "device": "cuda"}
    return {
        "synth": lambda: bench_synth(dim=3, size=128, n=16, device="cuda", peers=False),
        "train_3d": lambda: bench_train(**anatomix_128),
        "train_3d_channels_last": lambda: bench_train(**anatomix_128, channels_last=True, precisions=("bf16",)),
        "train_2d": lambda: bench_train("voxnce", dim=2, size=64, preset="small", batch_size=16, steps=30,
                                        device="cuda"),
        "agreement": agreement,
        "train_3d_compile": lambda: bench_train(**anatomix_128, compile=True, precisions=("bf16",)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m synthlab.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu_check.json", help="the JSON with every number")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds after which no new part starts")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return input_error("gpu_check", ValueError("CUDA is not available; this check runs on a GPU machine only"))
    started = time.perf_counter()
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "seconds": {}}
    for name, part in _parts().items():
        if time.perf_counter() - started > args.budget:
            report[name] = {"skipped": f"the {args.budget:.0f} s budget was spent"}
            continue
        start = time.perf_counter()
        try:
            report[name] = part()
        except Exception as err:  # noqa: BLE001 - a failed part is a measured outcome; the others still run
            report[name] = {"error": f"{type(err).__name__}: {err}"}
        report["seconds"][name] = time.perf_counter() - start
        write_json_atomic(args.out, report)
        print(f"{name}: done in {report['seconds'][name]:.0f} s", flush=True)
    _print_summary(report)
    print(f"wrote {args.out}")
    return 0


def _print_summary(report: dict[str, Any]) -> None:
    synth = report.get("synth", {}).get("sources", {}).get("procedural", {}).get("synthlab", {}).get("total", {})
    if synth:
        print(f"synthesis: {1 / synth['mean']:.0f} two-view 128^3 samples/s")
    for name in ("train_3d", "train_3d_channels_last", "train_3d_compile", "train_2d"):
        for precision, entry in report.get(name, {}).get("precision", {}).items():
            print(f"{name} {precision}: {entry['step']['mean'] * 1000:.1f} ms/step, {entry['steps_per_s']:.1f} "
                  f"steps/s, synthesis {100 * entry['synth_share']:.0f}%")


if __name__ == "__main__":
    sys.exit(main())
