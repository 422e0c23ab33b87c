"""``python -m runtime SUBCOMMAND``: the runtime's command lines, one module a subcommand.

Each module has ``configure(parser)`` (its arguments) and ``run(args)`` (the mapping onto the
library), and may have ``usage_problem(args)`` (what argparse cannot check alone, e.g. flags that
only make sense together; exit 2 like any bad usage); ``main`` dispatches. Subcommands, not
modules, so that no module shadows the ``runtime.predict`` function.
"""

from __future__ import annotations

from core import cli

from . import benchmark, bulk, predict, serve

SUBCOMMANDS = {"predict": predict, "benchmark": benchmark, "serve": serve, "bulk": bulk}


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime``: exit 0 on success, 1 on a checked failure, 2 on bad usage."""
    description = "Run deployment artifacts: predict, benchmark, serve, bulk."
    parser = cli.parser("python -m runtime", description, verbose=False)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    parsers = {}
    for name, module in SUBCOMMANDS.items():
        parsers[name] = cli.add_subcommand(subcommands, name, module.DESCRIPTION)
        module.configure(parsers[name])
    args = parser.parse_args(argv)
    module = SUBCOMMANDS[args.command]
    problem = getattr(module, "usage_problem", lambda _: None)(args)
    if problem:
        parsers[args.command].error(problem)
    return cli.run(lambda: module.run(args), verbose=args.verbose)
