"""Progress output: live bars only where someone watches; plain, escape-free lines in logs."""

from __future__ import annotations

import pytest

from synthlab import progress
from synthlab.progress import LineProgress, progress_bar, progress_iter


def test_outside_a_terminal_progress_is_plain_lines_without_escapes(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(progress, "interactive", lambda: False)
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    with progress_bar(4, "eval-seg") as bar:
        assert isinstance(bar, LineProgress)
        bar.every = 0.0
        for _ in range(4):
            bar.set_postfix(loss="0.5")
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("eval-seg: 4/4 (100%)") and "loss=0.5" in lines[-1]
    assert all("\r" not in line and "\x1b" not in line for line in lines)


def test_nested_bars_are_silent_in_logs_and_tqdm_disable_silences_everything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(progress, "interactive", lambda: False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert list(progress_iter(range(3), "train", nested=True)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with progress_bar(2, "pretrain") as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""


def test_a_failed_run_prints_no_last_progress_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(progress, "interactive", lambda: False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with pytest.raises(ValueError), progress_bar(3, "eval-reg"):
        raise ValueError("bad input")
    assert capsys.readouterr().err == ""
