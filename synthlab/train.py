"""The pretraining loop: one code path for CPU, one GPU and N GPUs (torchrun), with exact resume.

Launch (the command line only turns flags into a :class:`TrainConfig`)::

    python -m synthlab pretrain --objective supcon --dim 3 --size 32 --steps 30 --out runs/supcon3d
    torchrun --standalone --nproc_per_node=2 -m synthlab pretrain --objective rasd --dim 2 --size 64 \\
        --steps 100 --out runs/rasd2d            # gloo on CPU, nccl on GPUs
    python -m synthlab pretrain ... --resume     # continue OUT/checkpoint.pt exactly

Under torchrun (found through ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) each rank draws its own batches
with seed ``seed + rank``; DDP averages the gradients of the network *and* of the objective's heads, so all
ranks hold the same weights, and rank 0 alone logs and saves. A resume restores model, objective, optimiser,
step and every random stream of every rank, so a killed and resumed run reproduces the uninterrupted loss
curve and weights bit for bit on CPU. The learning rate is a pure function of the step (:func:`lr_factor`),
so the step is the whole schedule state. Dropout in some heads draws from torch's global generator, so the
loop seeds it (``seed + rank``) and checkpoints it; every other draw goes through an explicit generator.

Files in ``OUT``: ``config.json`` (the resolved config), ``log.csv`` (step, loss, the objective's logs,
seconds) and ``checkpoint.pt`` (see :mod:`synthlab.checkpoint`).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import FORMAT_VERSION, capture_rng, restore_rng, save_checkpoint
from .data import RealCropSource, load_unlabeled, unlabeled_files
from .dims import channels_last
from .dist import Runtime, gather_to_main, mean_over_ranks, start_runtime, wrap_ddp
from .io import CsvLog, RunLock, check_free_space, check_output_folder, write_json_atomic
from .losses import Objective, build_objective
from .nets import UNet, kaiming_init, seeded, unet_config
from .progress import progress_bar
from .run_config import ADAMW_BETAS, TrainConfig
from .runs import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    LOG_NAME,
    checked_resume,
    discard_unfinished,
    remove_stale_temporaries,
    set_aside_foreign_log,
)
from .synth import SynthConfig, SynthEngine

__all__ = ["RunParts", "StepReport", "TrainConfig", "Trainee", "build_run", "lr_factor", "pretrain", "scheduled_lr",
           "train_step"]



@dataclass(frozen=True)
class StepReport:
    """What a ``callback`` sees after each step on every rank (live plots in notebooks, checks in tests)."""

    step: int
    loss: float
    logs: dict[str, float]
    seconds: float
    net: nn.Module
    objective: nn.Module
    views: torch.Tensor


def lr_factor(step: int, total: int, warmup_fraction: float = 0.05, min_fraction: float = 0.1,
              schedule: str = "cosine") -> float:
    """Factor on the peak lr at 0-based ``step`` of ``total``: a linear warm-up, then the ``schedule``.

    ``"cosine"`` falls to ``min_fraction`` along half a cosine (VoCo, and synthlab's own arm); ``"steps"`` holds
    five equal stages at 1.0, 0.8, 0.6, 0.4 and 0.2 (anatomix's per-epoch decay over its five epochs);
    ``"constant"`` stays at 1 (RaSD).
    """
    warmup = max(1, round(warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "steps":
        return 1.0 - min(4, 5 * step // max(1, total)) / 5
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------- batches


Probe = Callable[[nn.Module, nn.Module], dict[str, float]]  # (network, objective) -> numbers for log.csv


class BatchSource(Protocol):
    """A batch stream: ``sample`` gives views ``(B, V, 1, *size)`` and labels ``(B, 1, *size)`` or None."""

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]: ...
    def generators(self) -> dict[str, torch.Generator]: ...


class SynthSource:
    """The synthetic engine as a batch stream: label maps and their views, drawn on ``device``."""

    def __init__(self, config: SynthConfig, device: torch.device, seed: int) -> None:
        self.engine = SynthEngine(config, device=device, seed=seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self.engine.sample(batch_size)
        return batch.views, batch.labels

    def generators(self) -> dict[str, torch.Generator]:
        return {"synth": self.engine.generator}


def batch_source(config: TrainConfig, device: torch.device, seed: int,
                 volumes: list[torch.Tensor] | None = None) -> BatchSource:
    """Where a run's batches come from: crops of real ``volumes``, else the synthetic engine of ``config.synth``."""
    if volumes is not None:
        return RealCropSource(volumes, config.dim, config.size, device, seed)
    assert config.synth is not None  # TrainConfig builds it for every synthetic run
    return SynthSource(config.synth, device, seed)


# ----------------------------------------------------------------------------------------------- set-up


@dataclass
class RunParts:
    """What a run trains with, built from its config alone: the seeded network and objective, AdamW over both, the
    batch source and the generator of the objective's own draws. The benchmark builds the same parts."""

    net: UNet
    objective: Objective
    optimizer: torch.optim.Optimizer
    source: BatchSource
    loss_generator: torch.Generator

    @property
    def generators(self) -> dict[str, torch.Generator]:
        """Every explicit random stream of the run (a checkpoint saves them all)."""
        return {**self.source.generators(), "loss": self.loss_generator}

    def trainee(self, compile_net: bool = False) -> Trainee:
        """Network (``torch.compile``d on request) and objective as the one module a step trains."""
        return Trainee(torch.compile(self.net) if compile_net else self.net, self.objective)


def build_run(config: TrainConfig, device: torch.device, seed: int,
              volumes: list[torch.Tensor] | None = None) -> RunParts:
    """Network and objective initialised from ``config.seed``, the optimiser, and the batch source and loss
    generator seeded with ``seed`` (the rank's); raises if ``size`` misfits the network or ``data`` the objective."""
    with seeded(config.seed):
        net = UNet(**unet_config(config.preset, config.dim))
        objective = build_objective(config.objective, net, config.dim, config.objective_config)
        if config.init == "kaiming":
            kaiming_init(net)
            kaiming_init(objective)
    try:  # a shape-only check on the meta device: no memory, no compute
        net.check_input(torch.empty((1, net.in_channels) + (config.size,) * config.dim, device="meta"))
    except ValueError as err:
        raise ValueError(f"size {config.size} does not fit preset {config.preset!r}: {err}") from err
    if config.data is not None and objective.requires_labels:
        raise ValueError(f"data: objective {config.objective!r} needs label maps, so it trains on synthetic "
                         "data only; real unlabeled volumes (--data) suit 'voco'")
    layout = channels_last(config.dim) if config.channels_last else torch.contiguous_format
    net, objective = net.to(device, memory_format=layout), objective.to(device)
    params = [p for p in (*net.parameters(), *objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=ADAMW_BETAS, weight_decay=config.weight_decay,
                                  amsgrad=config.amsgrad, fused=device.type == "cuda")  # one kernel on GPUs
    return RunParts(net, objective, optimizer, batch_source(config, device, seed, volumes),
                    torch.Generator(device=device).manual_seed(seed))


def scheduled_lr(config: TrainConfig, step: int) -> float:
    """The learning rate of 0-based ``step``: the schedule is a pure function of the step."""
    return config.lr * lr_factor(step, config.steps, config.warmup_fraction, config.min_lr_fraction, config.schedule)


class Trainee(nn.Module):
    """Network and objective as one module, so that DDP all-reduces the gradients of the heads too."""

    def __init__(self, net: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.net, self.objective = net, objective

    def forward(self, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.objective(self.net, views, labels, generator)
        return out.loss, out.logs


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: tuple[Any, ...], *, lr: float,
               grad_clip: float | None = None, autocast: bool = False,
               after_step: Callable[[], None] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step, read top-down; the one step of pretraining, fine-tuning and the benchmark.

    Set the scheduled ``lr`` -> ``loss, logs = model(*inputs)`` under (bf16) ``autocast`` -> backward -> clip the
    global gradient norm -> step -> ``after_step`` (e.g. VoCo's EMA teacher). ``model`` returns the loss and its
    named parts: a :class:`Trainee` (possibly under DDP) in pretraining, a loss-wrapped segmentation network in
    fine-tuning. The inputs come in already drawn, so a benchmark can time synthesis apart.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    device_type = next((x.device.type for x in inputs if isinstance(x, torch.Tensor)), "cpu")
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        loss, logs = model(*inputs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    optimizer.step()
    if after_step is not None:
        after_step()
    return loss, logs


# ----------------------------------------------------------------------------------------------- loop


def pretrain(config: TrainConfig, callback: Callable[[StepReport], None] | None = None,
             probe: Probe | None = None) -> dict[str, Any]:
    """Train ``config.steps`` steps (the remaining ones with ``resume``) and return a summary.

    Everything a user can get wrong is checked before the run folder or any file is created.

    Args:
        config: the run.
        callback: called on every rank after each step (after logging and checkpointing) with a
            :class:`StepReport`; an exception it raises stops the run as a kill would.
        probe: measures the network and objective (e.g. :class:`synthlab.correspondence.TrainingProbe`) on rank 0 every
            ``config.probe_every`` steps and at the end; its numbers join that step's ``log.csv`` row (the
            columns are blank in between) and its time is not counted in ``seconds``. It must not touch the
            training random streams, so a probed run trains exactly like an unprobed one.
    Returns:
        ``{"final_loss", "steps", "seconds", "checkpoint", "log", "world_size", "device", "probe"}``
        (``probe``: the last probe's numbers, or None).
    """
    check_output_folder(config.out)
    volumes = load_unlabeled(unlabeled_files(config.data), config.dim, config.size) if config.data else None
    checkpoint = checked_resume(config.as_dict(), config.out, config.resume)
    runtime = start_runtime(config.device)
    try:  # rank 0 holds OUT/.lock: a second run into the same folder fails at once
        with RunLock(config.out) if runtime.is_main else contextlib.nullcontext():
            try:
                return _run(config, runtime, volumes, checkpoint, callback, probe if config.probe_every else None)
            except BaseException:  # a run that dies before its first checkpoint leaves nothing behind
                if runtime.is_main and checkpoint is None:
                    discard_unfinished(config.out)
                raise
    finally:
        if runtime.owns_group:
            dist.destroy_process_group()


def _run(config: TrainConfig, runtime: Runtime, volumes: list[torch.Tensor] | None,
         checkpoint: dict[str, Any] | None, callback: Callable[[StepReport], None] | None,
         probe: Probe | None) -> dict[str, Any]:
    device, out, rank_seed = runtime.device, Path(config.out), config.seed + runtime.rank
    parts = build_run(config, device, rank_seed, volumes)
    net, objective, optimizer, source, generators = (parts.net, parts.objective, parts.optimizer, parts.source,
                                                     parts.generators)
    torch.manual_seed(rank_seed)  # dropout's stream, per rank like every other stream
    step, seconds, loss_value = 0, 0.0, float("nan")
    if checkpoint is not None:
        net.load_state_dict(checkpoint["model"])
        objective.load_state_dict(checkpoint["objective"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, seconds, loss_value = checkpoint["step"], checkpoint["seconds"], checkpoint["loss"]
        if len(checkpoint["rng"]) == runtime.world_size:
            restore_rng(checkpoint["rng"][runtime.rank], generators, device)
        elif runtime.is_main:
            warnings.warn(f"resume: the checkpoint came from {len(checkpoint['rng'])} processes, this run "
                          f"has {runtime.world_size}; random streams restart (no exact replay)", stacklevel=2)
    model = wrap_ddp(parts.trainee(config.compile), runtime)

    log = None
    if runtime.is_main:  # the first write of the run: every check has passed
        # A checkpoint holds the weights, AdamW's two moments and the objective; saving writes a second copy.
        state_bytes = sum(p.numel() * p.element_size() for p in (*net.parameters(), *objective.parameters()))
        check_free_space(out, 2 * 3 * state_bytes + 2**20)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # a save killed mid-write; this run holds the lock, so none is live
        if checkpoint is None:
            set_aside_foreign_log(out)
        write_json_atomic(out / CONFIG_NAME, {"config": config.as_dict(), "model_config": net.config,
                                              "world_size": runtime.world_size, "torch": torch.__version__})
        log = CsvLog(out / LOG_NAME, step)

    # The probe at the start: the untrained baseline of a new run (logged as step 0 with the first row), and
    # the columns of the log either way.
    probed = probe(net, objective) if probe is not None and runtime.is_main else None
    baseline = probed if step == 0 else None
    probe_columns = dict.fromkeys(sorted(probed), "") if probed else {}
    model.train()
    with progress_bar(config.steps, f"pretrain {config.objective}", enabled=runtime.is_main, initial=step) as bar:
        while step < config.steps:
            started = time.perf_counter()
            views, labels = source.sample(config.batch_size)
            loss, logs = train_step(model, optimizer, (views, labels, parts.loss_generator),
                                    lr=scheduled_lr(config, step), grad_clip=config.grad_clip or None,
                                    autocast=device.type == "cuda", after_step=objective.after_step)
            step += 1
            logs = mean_over_ranks({"loss": float(loss.detach()), **logs}, runtime)
            loss_value = logs.pop("loss")
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {step}; try a lower --lr")
            seconds += time.perf_counter() - started
            measured: dict[str, float] = {}
            if probed is not None and (step % config.probe_every == 0 or step == config.steps):
                probed = measured = probe(net, objective)  # type: ignore[misc]
                net.train()
            if log is not None and (measured or step % config.log_every == 0 or step == config.steps):
                if baseline is not None:  # step 0 under the same columns as every later row
                    log.append({"step": 0, "loss": "", **dict.fromkeys(logs, ""), "seconds": 0.0, **baseline})
                    baseline = None
                log.append({"step": step, "loss": loss_value, **logs, "seconds": round(seconds, 3),
                            **probe_columns, **measured})
                bar.set_postfix(loss=f"{loss_value:.4f}")
            bar.update(1)
            if step % config.checkpoint_every == 0 or step == config.steps:
                states = gather_to_main(runtime, capture_rng(generators, device))
                if runtime.is_main:
                    save_checkpoint(out / CHECKPOINT_NAME, {
                        "format": FORMAT_VERSION, "config": config.as_dict(), "model_config": net.config,
                        "model": net.state_dict(), "objective": objective.state_dict(),
                        "optimizer": optimizer.state_dict(), "step": step, "rng": states,
                        "feature_source": objective.feature_source, "seconds": seconds, "loss": loss_value})
            if callback is not None:
                callback(StepReport(step, loss_value, dict(logs), seconds, net, objective, views))
    return {"final_loss": loss_value, "steps": step, "seconds": seconds,
            "checkpoint": str(out / CHECKPOINT_NAME), "log": str(out / LOG_NAME),
            "world_size": runtime.world_size, "device": str(device), "probe": probed}
