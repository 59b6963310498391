"""``python -m <this package>`` runs the router (the zip archive's own ``__main__`` does the same)."""

from __future__ import annotations

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
