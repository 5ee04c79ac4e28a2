"""``python -m wrenn`` (also the ``wrenn`` command); see :mod:`wrenn._cli.main`."""

from __future__ import annotations

import sys

from ._cli.main import main

if __name__ == "__main__":
    sys.exit(main())
