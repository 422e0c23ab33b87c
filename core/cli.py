"""What every command-line entry point shares: logging set-up and the error-to-exit-code map."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable

from .errors import DeployError
from .files import NO_ROOM

# The toolkit's own loggers speak at INFO; third-party libraries only at WARNING.
_PACKAGES = ("core", "models", "export", "calibration", "runtime", "pipeline")


def parser(prog: str, description: str, *, verbose: bool = True) -> argparse.ArgumentParser:
    """An argument parser that shows defaults in ``--help``, with ``--verbose`` (without it when
    ``verbose`` is False: a parser of subcommands, which take it themselves)."""
    result = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    if verbose:
        result.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return result


def add_subcommand(subcommands: argparse._SubParsersAction, name: str, description: str) -> argparse.ArgumentParser:
    """A subcommand of a :func:`parser` (``python -m runtime predict``), with the same formatting
    and its own ``--verbose``."""
    result = subcommands.add_parser(
        name, help=description, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    result.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return result


def run(body: Callable[[], None], *, verbose: bool = False) -> int:
    """Runs a CLI body: 0 on success, 1 with a one-line message on a ``DeployError``.

    Any other exception is a bug and propagates with its traceback.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in (*_PACKAGES, "__main__"):  # a module run with -m logs as __main__
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
    # A file name that is not valid UTF-8 (decoded with surrogates) prints escaped instead of failing.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        body()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`… | head -1`): stop quietly, and keep Python from complaining again
        # when it flushes stdout at exit.
        _silence_stdout()
        return 1
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Files go through core.files, which names them (OutputError); what is left is stdout or a
        # library's own writer running out of room.
        if exc.errno not in NO_ROOM:
            raise
        _silence_stdout()
        where = exc.filename or "the output"
        print(f"error: cannot write {where}: {exc.strerror}; free space or write elsewhere", file=sys.stderr)
        return 1
    return 0


def _silence_stdout() -> None:
    """Points the process's stdout at /dev/null, so that the flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
