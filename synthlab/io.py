"""Files: one atomic writer (results, configs, checkpoints, the README) and the training log.

A crash or kill mid-write must never leave half a file behind, and two runs writing the same path at once must
not trample each other's temporary file. So every write goes to a uniquely named temporary file in the target's
own folder (``tempfile.mkstemp``: same file system, so the final ``os.replace`` is atomic), which is removed if
anything fails. This module imports nothing from synthlab, so every layer may use it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["CsvLog", "RunLock", "check_free_space", "check_output_file", "check_output_folder", "read_csv_log",
           "write_atomic", "write_json_atomic", "write_text_atomic"]


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


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest existing ancestor (what a write would have to go through)."""
    while not path.exists():
        path = path.parent
    return path


def _writable_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder (so the folders can be created)."""
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise ValueError(f"{flag}: {path} lies under {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: cannot write under {parent} (permission denied)")


def check_free_space(path: str | Path, needed: int, flag: str = "out") -> None:
    """Refuse, before any compute, to start work whose results would not fit on the disk holding ``path``."""
    existing = _nearest_existing(Path(path))
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ValueError(f"{flag}: only {free / 2**20:.1f} MiB free on the disk holding {existing}; the results "
                         f"need about {needed / 2**20:.1f} MiB")


def check_output_file(path: str | Path, flag: str = "out") -> Path:
    """Refuse, before any compute, a results path that is a folder, lies under a file or cannot be written."""
    if not str(path).strip():
        raise ValueError(f"{flag}: the path is empty")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag}: {path} is a folder; give the path of a results file such as {path}/results.json")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag}: {path} exists and is not writable")
    _writable_parent(path, flag)
    return path


def check_output_folder(path: str | Path, flag: str = "out") -> Path:
    """Refuse, before any compute, a run folder that is a file, lies under a file or cannot be written."""
    if not str(path).strip():
        raise ValueError(f"{flag}: the path is empty")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag}: {path} is a file; a run needs a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: cannot write into {path} (permission denied)")
    _writable_parent(path, flag)
    return path


class RunLock:
    """``FOLDER/.lock`` holding the owner's PID, so that two runs never share one run folder.

    A second run fails at once naming the first one's PID; a lock whose process is gone (a killed run) is stale
    and taken over. Released when the ``with`` block ends, however it ends.
    """

    NAME = ".lock"

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / self.NAME
        self.created = False

    def __enter__(self) -> RunLock:
        self.created = not self.path.parent.exists()  # a run that fails before writing leaves no empty folder
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner != os.getpid() and _alive(owner):
                    raise ValueError(f"out: {self.path.parent} is in use by another run (PID {owner}); wait for "
                                     "it or choose another folder") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(handle, "w") as stream:
                stream.write(f"{os.getpid()}\n")
            return self
        raise ValueError(f"out: could not take the lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        if self.created and self.path.parent.is_dir() and not any(self.path.parent.iterdir()):
            self.path.parent.rmdir()

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or -1)
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_csv_log(path: str | Path) -> list[dict[str, str]]:
    """The rows of a :class:`CsvLog` (a run's ``log.csv``) as dicts of strings; probe columns are blank between
    probes."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


class CsvLog:
    """A step-indexed CSV log (``log.csv``): header from the first row; a resume drops rows past its step.

    Rows are only ever appended; the one rewrite (a resume dropping rows logged after its checkpoint) replaces the
    file atomically, so a kill at any moment leaves a complete log.
    """

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path, self.fields = path, None
        rows: list[dict[str, str]] = []
        if resume_step > 0 and path.is_file():
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                rows = [row for row in reader if int(row["step"]) <= resume_step]
                self.fields = list(reader.fieldnames or [])
        kept = io.StringIO(newline="")
        if self.fields:
            writer = csv.DictWriter(kept, self.fields)
            writer.writeheader()
            writer.writerows(rows)
        write_text_atomic(path, kept.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; columns it lacks stay empty, columns the header lacks are dropped."""
        new_file = self.fields is None
        self.fields = self.fields or list(row)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, self.fields, restval="", extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
