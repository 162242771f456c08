"""The user's files: what trainguard reads from and writes to disk, with one-line errors.

- ``write_text_atomic``: every report is written to a temporary file in the target's directory, then renamed
  over the target (``os.replace``), so a full disk or a crash leaves the old file whole, never a partial page.
- ``check_output_path``: an output path that is one of the inputs is refused before anything is read, so a
  report never replaces the log it reports on.
- ``local_copy``: a pipe, FIFO or device (``<(cat log.csv)``, ``mkfifo``, ``/dev/zero``) is read once, as a
  stream, into a temporary file, up to ``MAX_STREAM_BYTES``; readers then see a regular file they may open as
  often as they like. A regular file is used in place.
"""
from __future__ import annotations

import contextlib
import os
import select
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["InputError", "MAX_STREAM_BYTES", "STREAM_WAIT_S", "is_special", "local_copy", "check_output_path",
           "write_text_atomic"]

MAX_STREAM_BYTES = 256 << 20  # a million-step CSV is ~20 MB; an endless device stops here
STREAM_WAIT_S = 30.0  # a named pipe that receives nothing for this long is given up on, not waited on forever
_CHUNK = 1 << 20


class InputError(ValueError):
    """A path trainguard cannot read from or write to; the message is one line, fit for the user."""


def is_special(path: str | os.PathLike[str]) -> bool:
    """True for a path that exists and is neither a regular file nor a directory (pipe, FIFO, device, socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def local_copy(path: str | os.PathLike[str], *, limit: int | None = None,
               wait_s: float | None = None) -> Iterator[Path]:
    """``path`` itself when it is a regular file (or missing: the reader then says so); otherwise its content,
    read once, in a temporary regular file removed on exit. Raises :class:`InputError` for a stream longer than
    ``limit`` bytes or one that sends nothing for ``wait_s`` seconds."""
    path = Path(path)
    if not is_special(path):
        yield path
        return
    limit = MAX_STREAM_BYTES if limit is None else limit
    wait_s = STREAM_WAIT_S if wait_s is None else wait_s
    with tempfile.TemporaryDirectory(prefix="trainguard-") as folder:
        copy = Path(folder) / (path.name or "stream")
        _copy_stream(path, copy, limit, wait_s)
        yield copy


def _copy_stream(source: Path, target: Path, limit: int, wait_s: float) -> None:
    # O_NONBLOCK: opening a FIFO that no one writes to would otherwise block forever; poll() then waits with a
    # deadline for each chunk.
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise InputError(f"{source}: cannot read ({e.strerror or e})") from None
    written = 0
    try:
        with open(target, "wb") as out:
            while True:
                ready, _, _ = select.select([fd], [], [], wait_s)
                if not ready:
                    raise InputError(f"{source}: a pipe that sent nothing for {wait_s:g} s; is anything writing "
                                     f"to it?")
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError as e:
                    raise InputError(f"{source}: cannot read ({e.strerror or e})") from None
                if not chunk:
                    return
                written += len(chunk)
                if written > limit:
                    raise InputError(f"{source}: a stream longer than {limit >> 20} MiB; save it to a file and "
                                     f"pass that file")
                out.write(chunk)
    finally:
        os.close(fd)


def check_output_path(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Raises :class:`InputError` when ``output`` is (by resolved path, or the same file through a link) one of
    ``inputs``, or a directory."""
    out = Path(output)
    if out.is_dir():
        raise InputError(f"{out}: is a directory; name a file to write the report to")
    for source in inputs:
        source = Path(source)
        same = out.resolve() == source.resolve()
        if not same and out.exists() and source.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, source)
        if same:
            raise InputError(f"{out}: is one of the inputs ({source}); refusing to overwrite it, choose another "
                             f"output path")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` all or nothing: a temporary file in the same directory, flushed to
    disk, then renamed over ``path``. A file already at ``path`` keeps its permissions; a symbolic link keeps
    pointing to the (new) file."""
    path = Path(os.path.realpath(path))
    folder = path.parent if str(path.parent) else Path(".")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
