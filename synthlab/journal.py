"""A study's journal: every finished run as one JSON line, so that a killed study resumes where it stopped.

Long studies (tens of minutes to hours on a CPU) are killed: by a timeout, a reboot, a user who needs the cores.
A journal written beside the results file lets the same command, run again, train only what is missing and
report exactly what an uninterrupted run would have (see :func:`synthlab.eval_seg.evaluate_segmentation`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["Journal"]


class Journal:
    """Each finished run of a study, one JSON line each, so that a killed study resumes where it stopped.

    The first line holds the study's fingerprint (data, network and protocol); a journal written by another study
    is refused rather than mixed in. Scores are stored as float64 lists, which JSON round-trips exactly, so a
    resumed study reports what an uninterrupted one does. Each line also holds the study's wall time so far,
    summed over the invocations, so a resumed study reports its whole cost (``earlier``: the invocations before).
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path, self.runs, self.earlier, self.started = path, {}, 0.0, time.perf_counter()
        header = json.dumps({"fingerprint": fingerprint}, sort_keys=True)
        if path.is_file() and path.stat().st_size:
            lines = path.read_text().splitlines()
            if lines[0] != header:
                raise ValueError(f"journal {path} belongs to another study (other data, network or settings); "
                                 "delete it to start afresh")
            for line in lines[1:]:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed write
                    continue
                self.runs[entry["run"]] = (torch.tensor(entry["scores"], dtype=torch.float64), entry["train"])
                self.earlier = max(self.earlier, entry.get("seconds", 0.0))  # lines before 2026-12-03 lack it
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(header + "\n")
        self.resumed = 0  # runs a study took from the journal (counted by the study as it asks for them)

    def add(self, key: str, result: tuple[torch.Tensor, list[int]]) -> None:
        self.runs[key] = result
        with self.path.open("a") as handle:
            handle.write(json.dumps({"run": key, "scores": result[0].tolist(), "train": result[1],
                                     "seconds": self.earlier + time.perf_counter() - self.started}) + "\n")
