"""File helpers: atomic writes (a file is complete or absent, never half-written) and content hashes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, InputFileError, OutputError

_CHUNK = 1 << 20
# The errors of a write that ran out of room or hardware, rather than of the code writing.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _umask() -> int:
    """The process's current umask."""
    try:  # Linux: read it without changing it (changing it races with other threads)
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0)
        os.umask(umask)
    return umask


def new_folder_mode() -> int:
    """0o777 less the umask, the mode ``mkdir()`` would have given (``mkdtemp`` makes 0700)."""
    return 0o777 & ~_umask()


def check_outputs(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Iterable[str | os.PathLike | None] = (),
    *,
    force: bool,
) -> None:
    """The rule every command's outputs follow, checked before any work is done.

    An output is never one of the inputs (not even with ``force``: that would destroy the input),
    two outputs are never one file, and an existing output is replaced only with ``force``.
    ``outputs``: flag → path, None where not asked for; ``inputs``: files and folders read.

    Raises:
        ConfigError: A rule is broken; the message names the flag and what to do.
    """
    sources = [Path(path).resolve() for path in inputs if path is not None]
    # An input artifact's manifest and external data are inputs too: replacing them breaks the artifact.
    sources += [source.with_name(source.name + suffix) for source in sources for suffix in (".json", ".data")]
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        target = Path(path).resolve()
        if any(target == source or (source.is_dir() and source in target.parents) for source in sources):
            raise ConfigError(f"{flag} {path} is one of this command's inputs (or inside one); write elsewhere")
        if target in seen:
            raise ConfigError(f"{flag} and {seen[target]} both name {path}; give each output its own file")
        seen[target] = flag
        if not force and Path(path).exists():
            raise ConfigError(f"{path} ({flag}) already exists; pass --force to replace it")


# The host's name as it may appear in a file name.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"


def staging_prefix(target: Path) -> str:
    """The name prefix of this process's temporary files and folders beside ``target``: it carries
    the process id and the host, so that a later run on this host can tell a dead writer's leftovers
    from a live one's (a writer on another host sharing the folder is never judged)."""
    return f".{target.name}.{os.getpid()}@{_HOST}."


def sweep_leftovers(target: Path) -> None:
    """Removes what writers of ``target`` on this host that no longer run left beside it (a kill -9
    mid-write). Only names made by :func:`staging_prefix` for exactly ``target`` are considered."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.([0-9]{{1,9}})@{re.escape(_HOST)}\.[A-Za-z0-9_]+(\.tmp)?")
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or _alive(int(match.group(1))):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def staging_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``target`` to build it in (moved into place by the caller), removed
    afterwards; earlier runs' leftovers are swept first.

    Raises:
        ConfigError: The folder cannot be made there.
    """
    target = Path(target)
    sweep_leftovers(target)
    try:
        folder = tempfile.TemporaryDirectory(dir=target.parent, prefix=staging_prefix(target))
    except OSError as exc:
        raise ConfigError(f"cannot write next to {target}: {exc.strerror}; choose a writable folder") from exc
    with folder as name:
        yield Path(name)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = True) -> Iterator[IO[bytes]]:
    """Opens a temporary file beside ``path``; renames it onto ``path`` only on success.

    Args:
        path: Final destination.
        force: When False, an existing ``path`` is refused instead of replaced.

    Raises:
        ConfigError: ``path`` exists and ``force`` is False, or its folder is not writable.
        OutputError: Writing failed (disk full, quota, I/O error); nothing is left at ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; name a file to write")
    if not force and path.exists():
        raise ConfigError(f"{path} already exists; pass --force to replace it")
    sweep_leftovers(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=staging_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write to {path.parent}: {exc.strerror}; choose a writable folder") from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            raise OutputError(f"cannot write {path}: {exc.strerror}; free space or write elsewhere") from exc
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, force: bool = True) -> Path:
    """Writes ``data`` to ``path`` atomically; see :func:`atomic_output` for ``force``."""
    with atomic_output(path, force=force) as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, force: bool = True) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode(), force=force)


def write_json(path: str | os.PathLike, document: Any, *, force: bool = True, indent: int | None = 2) -> Path:
    """Writes ``document`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(document, indent=indent), force=force)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON document at ``path``.

    Raises:
        InputFileError: It is missing (named as ``what``) or not readable JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputFileError(f"{what} not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not readable JSON ({exc})") from exc
    except RecursionError as exc:
        raise InputFileError(f"{path}: its JSON is nested too deeply to be a file of this toolkit") from exc


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
