"""``python -m runtime``: see :mod:`runtime.commands`."""

from .commands import main

raise SystemExit(main())
