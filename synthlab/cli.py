"""What every synthlab entry point shares: an argument parser whose usage errors are one line.

argparse answers a bad flag with the whole usage block and then the error; in a log or a CI transcript the one
line that matters drowns. :class:`Parser` prints just ``prog: error: ... (see prog --help)`` and exits with 2,
like every other input error of the command line.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line usage errors (sub-parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
