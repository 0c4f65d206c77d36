"""``python -m synthlab.studies list | run NAME [--force]`` (see :mod:`synthlab.studies`)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
