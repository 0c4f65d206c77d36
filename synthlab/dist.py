"""Where a process runs and how ranks talk: device choice, the torchrun runtime, DDP, differentiable gather.

Everything degrades to single-process behaviour, so the training loop has one code path for CPU, one GPU and
torchrun.

``torch.distributed.all_gather`` returns tensors without gradient, so gathered negatives would stop the
gradient at the rank boundary (MoCo's gather is no-grad for that reason). :func:`all_gather_grad` is
differentiable: each rank's loss depends on every rank's samples, so the gradient that reaches rank ``r``'s
input is the sum over ranks of the gradients with respect to its slice of the gathered tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Runtime", "all_gather_grad", "gather_to_main", "get_rank", "is_distributed",
           "mean_over_ranks", "resolve_device", "start_runtime", "wrap_ddp"]


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count so that a shared machine is not oversubscribed; returns the count.

    Order: ``threads``, else ``$SYNTHLAB_THREADS``, else ``$OMP_NUM_THREADS`` (which torch already read), else
    half the cores, at most 4. On a 2-core machine that is one thread: two processes with two threads each on
    two busy cores run small-tensor work 25x slower, one thread each loses almost nothing.
    """
    chosen = threads or os.environ.get("SYNTHLAB_THREADS") or os.environ.get("OMP_NUM_THREADS")
    count = int(chosen) if chosen else max(1, min(4, (os.cpu_count() or 2) // 2))
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {count} (SYNTHLAB_THREADS / OMP_NUM_THREADS)")
    torch.set_num_threads(count)
    return count


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given, refusing CUDA where there is none.

    The one place that reads a ``--device`` flag, so every command means the same by it.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: {str(device)!r} is not a device; use cpu, cuda, cuda:N or auto") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: synthlab runs on cpu or cuda, got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    return device


def is_distributed() -> bool:
    """True inside an initialised process group (e.g. under ``torchrun``)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


class _AllGatherGrad(torch.autograd.Function):
    """Concatenate the ranks' tensors along dim 0; backward sums gradients over ranks, keeps own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.narrow(0, dist.get_rank() * ctx.rows, ctx.rows)


def all_gather_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather: ``(N, ...)`` per rank -> ``(world_size * N, ...)``, rank order.

    Every rank must pass the same shape. Returns ``x`` itself when not distributed. Tensors that do not need a
    gradient (e.g. integer labels) go through a plain gather.
    """
    if not is_distributed():
        return x
    if not x.requires_grad:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)
    return _AllGatherGrad.apply(x)


@dataclass(frozen=True)
class Runtime:
    """Where this process sits: rank, world size, device, and whether it started the process group."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and logs."""
        return self.rank == 0


def start_runtime(device_flag: str) -> Runtime:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA) when launched by torchrun."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if launched else 0
    cuda = resolve_device(device_flag).type == "cuda"
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # a run's input sizes are fixed: pick the fastest kernels once
    owns = launched and not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return Runtime(dist.get_rank(), dist.get_world_size(), device, owns)
    return Runtime(0, 1, device, False)


def wrap_ddp(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` under DDP when there are several ranks (synchronised BatchNorm on CUDA), else unchanged."""
    if runtime.world_size == 1:
        return model
    cuda = runtime.device.type == "cuda"
    if cuda:  # the converted layers keep the same parameters, so the optimiser and `net` stay valid
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # static_graph: VoCo uses the encoder only, so the decoder's parameters never get gradients
    device_ids = [runtime.device.index] if cuda else None  # none on CPU (gloo)
    return DistributedDataParallel(model, device_ids=device_ids, static_graph=True)


def gather_to_main(runtime: Runtime, state: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every rank's ``state`` (e.g. random state), on rank 0 (None elsewhere): a resume replays every stream."""
    if runtime.world_size == 1:
        return [state]
    gathered: list[Any] | None = [None] * runtime.world_size if runtime.is_main else None
    dist.gather_object(state, gathered, dst=0)
    return gathered


def mean_over_ranks(values: dict[str, float], runtime: Runtime) -> dict[str, float]:
    """Loss and logs averaged over ranks in one all-reduce: every rank logs and stops on the same value."""
    if runtime.world_size == 1:
        return values
    packed = torch.tensor(list(values.values()), dtype=torch.float64, device=runtime.device)
    dist.all_reduce(packed)
    return dict(zip(values, (packed / runtime.world_size).tolist(), strict=True))
