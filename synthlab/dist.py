"""The few distributed helpers the objectives need; everything degrades to single-process behaviour.

``torch.distributed.all_gather`` returns tensors without gradient, so gathered negatives would stop the
gradient at the rank boundary (MoCo's gather is no-grad for that reason). :func:`all_gather_grad` is
differentiable: each rank's loss depends on every rank's samples, so the gradient that reaches rank ``r``'s
input is the sum over ranks of the gradients with respect to its slice of the gathered tensor.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_grad", "get_rank", "get_world_size", "is_distributed", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given, refusing CUDA where there is none.

    The one place that reads a ``--device`` flag, so every command means the same by it.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    return device


def is_distributed() -> bool:
    """True inside an initialised process group (e.g. under ``torchrun``)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


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
