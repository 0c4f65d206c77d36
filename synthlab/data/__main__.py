"""``python -m synthlab.data download NAME`` (see :mod:`synthlab.data.download`)."""

import sys

from .download import main

if __name__ == "__main__":
    sys.exit(main())
