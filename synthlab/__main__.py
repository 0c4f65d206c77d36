"""The synthlab command line: ``python -m synthlab pretrain | eval-seg | eval-reg | bench``.

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
import sys

from .bench import main as bench_main
from .eval_reg import evaluate_registration
from .eval_seg import evaluate_segmentation
from .io import write_json_atomic
from .train import TrainConfig, pretrain

__all__ = ["build_parser", "main"]

OBJECTIVES = ("supcon", "voco", "rasd")
FEATURE_SETS = ("intensity", "mind", "network", "network+mind")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a backbone with one objective on synthetic (or real unlabeled) data")
    p.add_argument("--objective", required=True, choices=OBJECTIVES)
    p.add_argument("--dim", type=int, default=3, choices=(2, 3))
    p.add_argument("--size", type=int, default=64, help="side of the (cubic/square) training volumes in voxels")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", required=True, help="run folder; holds checkpoint.pt and the loss log")
    p.add_argument("--data", default=None, help="folder of real unlabeled NIfTI volumes (VoCo's setting)")
    p.add_argument("--labels", default=None, help="folder (or file) of integer label maps for the shape bank")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--preset", default=None, help="network preset (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--log-every", type=int, default=1)


def _add_eval_reg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-reg", help="register real images with several feature sets and report the metrics")
    p.add_argument("--data", required=True, help="folder of co-registered contrasts (or a name under $SYNTHLAB_DATA)")
    p.add_argument("--fixed", default=None, help="contrast of the fixed image (file stem or unique prefix)")
    p.add_argument("--moving", default=None, help="contrast of the moving image; for an MSD folder (labels, "
                   "inter-subject pairs) leave both out")
    p.add_argument("--checkpoint", default="none", help="checkpoint path, a shipped name, or 'none' (random init)")
    p.add_argument("--features", nargs="+", default=list(FEATURE_SETS), choices=FEATURE_SETS)
    p.add_argument("--seeds", type=int, default=3, help="number of seeded synthetic deformations")
    p.add_argument("--size", type=int, default=None, help="resample to at most this many voxels per side")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="results.json")


def _add_eval_seg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-seg", help="few-shot segmentation: fine-tune pretrained vs scratch on an MSD data set")
    p.add_argument("--data", required=True, help="MSD folder (dataset.json, imagesTr/, labelsTr/) or a name")
    p.add_argument("--checkpoint", default="none", help="checkpoint path, a shipped name, or 'none'")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dim", type=int, default=3, choices=(2, 3))
    p.add_argument("--preset", default=None, help="network preset for --checkpoint none")
    p.add_argument("--max-test", type=int, default=None, help="evaluate on at most this many held-out volumes")
    p.add_argument("--lr-scratch", type=float, default=None, help="learning rate of the scratch arm")
    p.add_argument("--lr-finetune", type=float, default=None, help="learning rate of the fine-tuned arm")
    p.add_argument("--lr-probe", type=float, default=None, help="learning rate of the linear probe")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="results.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthlab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pretrain(sub)
    _add_eval_reg(sub)
    _add_eval_seg(sub)
    bench = sub.add_parser("bench", help="benchmarks (same as python -m synthlab.bench)", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "pretrain":
        options = {k: v for k, v in vars(args).items() if k != "command"}
        pretrain(TrainConfig(**options))
        return 0
    if args.command == "eval-reg":
        results = evaluate_registration(data=args.data, fixed=args.fixed, moving=args.moving,
                                        checkpoint=args.checkpoint, features=args.features, seeds=args.seeds,
                                        size=args.size, device=args.device)
        write_json_atomic(args.out, results)
        print(f"wrote {args.out}")
        return 0
    if args.command == "eval-seg":
        results = evaluate_segmentation(data=args.data, checkpoint=args.checkpoint, shots=args.shots,
                                        seeds=args.seeds, steps=args.steps, dim=args.dim, preset=args.preset,
                                        max_test=args.max_test, device=args.device, batch_size=args.batch_size,
                                        **{k: v for k, v in (("lr_scratch", args.lr_scratch),
                                                             ("lr_finetune", args.lr_finetune),
                                                             ("lr_probe", args.lr_probe)) if v is not None})
        write_json_atomic(args.out, results)
        print(f"wrote {args.out}")
        return 0
    if args.command == "bench":
        return bench_main(args.rest)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input, with one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"synthlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
