"""``python -m runtime``: see :mod:`runtime.commands`."""

from .commands import main

if __name__ == "__main__":
    raise SystemExit(main())
