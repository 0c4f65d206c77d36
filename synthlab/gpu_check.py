"""One command for a lent GPU: every GPU figure the README leaves pending, in one JSON, in about 9 minutes.

``make gpu-check`` (or ``python -m synthlab.gpu_check --out results/gpu_check.json``) runs, on ``cuda``:

1. synthesis speed: two-view 128^3 samples per second (procedural source, label map included);
2. pretraining step time of the anatomix preset at 128^3, fp32 against bf16 autocast, and the share of a step
   spent synthesising;
3. agreement: the same network and batch on CPU and CUDA (fp32, TF32 off): largest relative difference of the
   features and of the loss;
4. a short GPU pretraining of the shipped 3D recipe at GPU scale (``synthlab-voxnce-3d`` with the anatomix preset
   at 96^3), installed as the shipped weights ``synthlab-3d-gpu`` with its probe numbers.

Each part is written to the JSON as soon as it finishes, so a time-out keeps what was measured. Never part of the
tests or CI: the project builds and passes its tests without a GPU.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .bench import bench_synth, bench_train
from .checkpoint import load_checkpoint, random_backbone
from .cli import Parser
from .io import write_json_atomic
from .losses import build_objective
from .nets import build_unet
from .shipped import install, recipe
from .synth import SynthConfig, SynthEngine

__all__ = ["agreement", "main"]


def agreement(seed: int = 0, size: int = 64) -> dict[str, float]:
    """Largest relative difference between CPU and CUDA for one anatomix-preset forward pass and one voxnce loss."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    net_cpu = random_backbone(build_unet("anatomix", 3).config, seed).eval()
    net_gpu = random_backbone(build_unet("anatomix", 3).config, seed).eval().cuda()
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


def _gpu_pretraining(steps: int, runs: Path) -> dict[str, Any]:
    config = recipe("synthlab-voxnce-3d", runs / "synthlab-3d-gpu")
    config = dataclasses.replace(config, preset="anatomix", size=96, batch_size=2, steps=steps, device="cuda",
                                 probe_every=max(1, steps // 5), checkpoint_every=max(1, steps // 5))
    start = time.perf_counter()
    path = install("synthlab-3d-gpu", config, "brain_tumor_mri/study1")
    payload = load_checkpoint(path)
    return {"weights": str(path), "steps": steps, "minutes": (time.perf_counter() - start) / 60,
            "final_loss": payload["loss"], "probe": payload.get("probe")}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m synthlab.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu_check.json", help="the JSON with every number")
    parser.add_argument("--steps", type=int, default=2000, help="steps of the GPU pretraining (part 4)")
    parser.add_argument("--runs", default="runs/gpu_check", help="folder for the pretraining run")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: error: CUDA is not available; this check runs on a GPU machine only", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    parts = {
        "synth": lambda: bench_synth(dim=3, size=128, n=16, device="cuda", peers=False),
        "train": lambda: bench_train("supcon", dim=3, size=128, preset="anatomix", batch_size=1, steps=10,
                                     device="cuda"),
        "agreement": agreement,
        "pretraining": lambda: _gpu_pretraining(args.steps, Path(args.runs)),
    }
    for name, part in parts.items():
        start = time.perf_counter()
        try:
            report[name] = part()
        except Exception as err:  # a failed part is a measured outcome; the others still run
            report[name] = {"error": f"{type(err).__name__}: {err}"}
        report.setdefault("seconds", {})[name] = time.perf_counter() - start
        write_json_atomic(args.out, report)
        print(f"{name}: done in {report['seconds'][name]:.0f} s", flush=True)
    synth = report["synth"].get("sources", {}).get("procedural", {}).get("synthlab", {}).get("total", {})
    if synth:
        print(f"synthesis: {1 / synth['mean']:.0f} two-view 128^3 samples/s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
