"""``python -m ivagate_kit emulate|stand-in ...``: the same as ``ivagate-kit``."""

import sys

from ivagate_kit.cli import run

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(run())
