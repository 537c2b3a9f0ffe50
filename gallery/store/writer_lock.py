"""The gallery's writer lock: one writer at a time across processes (an flock on `.lock` in the gallery
folder) and threads, re-entrant within a thread; readers never take it."""

import fcntl
import threading
from contextlib import contextmanager
from pathlib import Path

_held_locks = threading.local()  # the folders whose writer lock this thread holds


@contextmanager
def writer_lock(folder: Path, wait: bool = True):
    """The writer lock: one writer at a time, across processes and threads; readers are never blocked.
    Re-entrant within a thread (a write that repairs a Milvus collection takes it again). Yields whether it
    is held: with `wait=False`, False at once when another writer (process or thread) holds it."""
    held = _held_locks.__dict__.setdefault("folders", set())
    key = Path(folder).resolve()
    if key in held:
        yield True
        return
    with open(Path(folder) / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        held.add(key)
        try:
            yield True
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)
