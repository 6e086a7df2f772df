"""``python -m ivagate.emulator [emulate args]`` or ``python -m ivagate.emulator stand-in ...``."""

import sys

from ivagate.emulator.cli import main, stand_in_main

__all__: list[str] = []

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(stand_in_main(args[1:]) if args[:1] == ["stand-in"] else main(args))
