"""Files: one atomic writer (results, configs, checkpoints, the README) and the training log.

A crash or kill mid-write must never leave half a file behind, and two runs writing the same path at once must
not trample each other's temporary file. So every write goes to a uniquely named temporary file in the target's
own folder (``tempfile.mkstemp``: same file system, so the final ``os.replace`` is atomic), which is removed if
anything fails. This module imports nothing from synthlab, so every layer may use it.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["CsvLog", "write_atomic", "write_json_atomic", "write_text_atomic"]


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a binary handle of a fresh temporary file, then rename it over ``path``.

    The parent folder is created if needed. On any error the temporary file is deleted and the error re-raised;
    ``path`` then still holds its previous content (or does not exist).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see :func:`write_atomic`."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON with a final newline, atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


class CsvLog:
    """A step-indexed CSV log (``log.csv``): header from the first row; a resume drops rows past its step."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path, self.fields = path, None
        rows: list[dict[str, str]] = []
        if resume_step > 0 and path.is_file():
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                rows = [row for row in reader if int(row["step"]) <= resume_step]
                self.fields = list(reader.fieldnames or [])
        with path.open("w", newline="") as handle:
            if self.fields:
                writer = csv.DictWriter(handle, self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; columns it lacks stay empty, columns the header lacks are dropped."""
        new_file = self.fields is None
        self.fields = self.fields or list(row)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, self.fields, restval="", extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
