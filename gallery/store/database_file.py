"""Checks on a gallery.db file before SQLite opens it: a missing, empty, foreign or truncated file is
refused with a message naming it and saying how to recover, instead of an sqlite3 traceback; SQLite's own
report of a damaged file (`damage_reported`) likewise."""

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from faceid.gallery.records import GalleryError

RECOVER = ("restore gallery.db from a backup, or create a new gallery and `faceid gallery import` an export "
           "of this one")

def inspect_database_file(path: Path) -> None:
    """Refuse, naming the file and what to do, a gallery.db that is missing, empty, not SQLite, or truncated
    (shorter than its header says, with no write-ahead log that could hold the rest)."""
    if not path.is_file():
        raise GalleryError(f"{path.parent} is not a gallery: it has no gallery.db (create one with `faceid enroll "
                           f"{path.parent} --model MODEL ...`)")
    size = path.stat().st_size
    if size == 0:
        raise GalleryError(f"{path} is empty (0 bytes): no gallery is stored there (it was never written, or was "
                           f"truncated); {RECOVER}")
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header.startswith(b"SQLite format 3\x00"):
        raise GalleryError(f"{path} is not a SQLite database (damaged or overwritten); {RECOVER}")
    page_size = int.from_bytes(header[16:18], "big") if len(header) == 100 else 0
    page_size = 65536 if page_size == 1 else page_size
    pages_valid = len(header) == 100 and header[24:28] == header[92:96]
    wal = path.with_name(path.name + "-wal")
    expected = int.from_bytes(header[28:32], "big") * page_size if pages_valid else 0
    if len(header) < 100 or (size < expected and not (wal.exists() and wal.stat().st_size)):
        raise GalleryError(f"{path} is truncated ({size} of {max(expected, 100)} bytes); {RECOVER}")


@contextmanager
def damage_reported(path: Path):
    """SQLite's 'file is not a database' or 'database disk image is malformed' -> a GalleryError naming
    the file and what to do (lock timeouts and I/O errors, sqlite3.OperationalError, pass through)."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        if type(error) is not sqlite3.DatabaseError:
            raise
        raise GalleryError(f"{path} is damaged (SQLite: {error}); {RECOVER}") from None
