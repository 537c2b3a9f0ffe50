"""Atomic file writes (a reader sees the old file or the new one, never a half-written one) and file checksums."""

import contextlib
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path


def fsync_directory(folder: str | Path) -> None:
    """Make a rename inside `folder` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


READ_CHUNK = 1 << 24
_UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it, for the whole process


@contextlib.contextmanager
def atomic_write(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` in one step.

        with atomic_write("model.pt") as temporary:
            torch.save(state, temporary)

    The temporary file keeps `path`'s suffix (so writers that choose a format by suffix work) and is
    removed if the block raises. `durable=True` fsyncs the file and its directory, for data that must
    survive a power cut (gallery indexes), at the cost of a disk flush.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(descriptor)
    temporary = Path(name)
    os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file what open() would
    try:
        yield temporary
        if durable:
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def file_checksum(path: str | Path) -> int:
    """The CRC-32 of the file at `path`, read in chunks."""
    checksum = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            checksum = zlib.crc32(chunk, checksum)
    return checksum
