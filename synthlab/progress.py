"""Progress that reads well wherever it lands: a live bar in a terminal or notebook, plain lines in a log file.

A tqdm bar redrawn into a file (``make test > log``, a batch job, CI) leaves carriage returns and cursor-up escapes
behind, one screenful per nested bar. So bars are drawn only where someone watches them live; elsewhere a run
prints a short plain line now and then (``eval-seg: 4/12 (33%), 1.5 min``), and nested bars stay silent.
``TQDM_DISABLE=1`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["LINE_SECONDS", "LineProgress", "ProgressLike", "interactive", "progress_bar", "progress_iter"]

LINE_SECONDS = 30.0  # at most one plain progress line per this many seconds (plus one at the end)
T = TypeVar("T")


def interactive() -> bool:
    """True when a person can watch a bar redraw: stderr is a terminal, or this runs in a Jupyter kernel."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return hasattr(shell, "kernel") or bool(getattr(sys.stderr, "isatty", lambda: False)())


def _disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


class LineProgress:
    """The non-interactive stand-in for a tqdm bar: same ``update`` / ``set_postfix`` / ``close`` calls."""

    def __init__(self, total: int, desc: str, initial: int = 0, enabled: bool = True,
                 every: float = LINE_SECONDS) -> None:
        self.total, self.desc, self.n, self.enabled, self.every = total, desc, initial, enabled, every
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *rest: object) -> None:
        if error_type is not None:  # a failed run reports its error, not a last progress line
            self.closed = True
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.enabled and time.monotonic() - self.last >= self.every and self.n < self.total:
            self._print()

    def close(self) -> None:
        if self.enabled and not self.closed:
            self._print()
        self.closed = True

    def _print(self) -> None:
        self.last = time.monotonic()
        minutes = (self.last - self.started) / 60
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total}{share}, {minutes:.1f} min{extra}", file=sys.stderr, flush=True)


ProgressLike = tqdm | LineProgress  # what progress_bar returns: update(n), set_postfix(**values), close()


def progress_bar(total: int, desc: str, *, enabled: bool = True, initial: int = 0,
                 nested: bool = False) -> ProgressLike:
    """A tqdm bar when :func:`interactive`, else a :class:`LineProgress` (silent when ``nested``).

    ``enabled=False`` (or ``TQDM_DISABLE=1``) gives a silent one either way; use it as a context manager or close it.
    """
    on = enabled and not _disabled_by_env()
    if on and interactive():
        return tqdm(total=total, desc=desc, initial=initial, leave=not nested)
    return LineProgress(total, desc, initial, enabled=on and not nested)


def progress_iter(items: Iterable[T], desc: str, *, enabled: bool = True, nested: bool = False) -> Iterator[T]:
    """Iterate ``items`` under :func:`progress_bar` (``len(items)`` sets the total when it has one)."""
    items = list(items)
    with progress_bar(len(items), desc, enabled=enabled, nested=nested) as bar:
        for item in items:
            yield item
            bar.update(1)
