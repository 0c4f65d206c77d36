"""The run folder of ``pretrain``: its file names, the checks before a run starts, the clean-up after one fails.

A run folder holds ``config.json``, ``log.csv`` and ``checkpoint.pt`` (and ``.lock`` while a run owns it, see
:class:`synthlab.io.RunLock`). The checks here only read the folder; the one write before a run is moving a
stranger's ``log.csv`` aside (never deleting it), and a run that never reached its first checkpoint has what it
wrote removed, so a failed start leaves the folder as it found it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checkpoint import check_same_run, load_checkpoint

__all__ = ["CHECKPOINT_NAME", "CONFIG_NAME", "FREE_ON_RESUME", "LOG_NAME", "PATH_FIELDS", "absolute_path",
           "checked_resume", "discard_unfinished", "remove_stale_temporaries", "set_aside_foreign_log"]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
CONFIG_NAME = "config.json"
# Fields a --resume may change: where and how the run executes, not what it computes.
FREE_ON_RESUME = frozenset({"out", "resume", "device", "compile", "checkpoint_every", "log_every"})
PATH_FIELDS = ("data", "labels")  # compared as absolute paths: `--data vols` and `--data ./vols/` are one folder


def absolute_path(path: str | Path) -> str:
    """``path`` made absolute (``~`` expanded, ``..`` and links resolved) as a string for configs."""
    return str(Path(path).expanduser().resolve())


def checked_resume(config: Mapping[str, Any], out: str | Path, resume: bool) -> dict[str, Any] | None:
    """Validate the run folder without writing anything; returns the checkpoint to resume from, if any.

    ``config`` is the run's config as a dict with absolute :data:`PATH_FIELDS`; a checkpoint's relative paths
    (older runs stored them as typed) are resolved against the current folder before comparing.
    """
    path = Path(out) / CHECKPOINT_NAME
    if not resume:
        if path.exists():
            raise ValueError(f"out: {out} already holds {CHECKPOINT_NAME}; pass --resume to continue "
                             "it or choose another folder")
        return None
    if not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    saved = dict(checkpoint["config"])
    for key in PATH_FIELDS:
        if saved.get(key):
            saved[key] = absolute_path(saved[key])
    check_same_run(saved, config, FREE_ON_RESUME, path)
    return checkpoint


def set_aside_foreign_log(out: str | Path) -> None:
    """A new run into a folder holding a ``log.csv`` but no checkpoint keeps that log as ``log.csv.old``."""
    log = Path(out) / LOG_NAME
    if log.is_file() and not (Path(out) / CHECKPOINT_NAME).exists():
        kept = log.with_name(LOG_NAME + ".old")
        log.replace(kept)
        warnings.warn(f"out: {out} held a {LOG_NAME} but no checkpoint (another run's?); it is kept as {kept}",
                      stacklevel=2)


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left (``.checkpoint.pt.<random>.tmp``, see
    :func:`synthlab.io.write_atomic`); call it holding the run's lock, when no other writer can be at work."""
    removed = []
    for name in (CHECKPOINT_NAME, CONFIG_NAME, LOG_NAME):
        for stale in Path(out).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def discard_unfinished(out: str | Path) -> None:
    """Remove ``config.json`` and ``log.csv`` of a run that failed before saving its first checkpoint."""
    if not (Path(out) / CHECKPOINT_NAME).exists():
        for name in (CONFIG_NAME, LOG_NAME):
            (Path(out) / name).unlink(missing_ok=True)
