"""One process decodes a run at a time: cross-process claims on the runs of a results store.

`workbench.results.evaluate.evaluate` claims a run (by its key) before it looks at what is left to decode and holds
the claim until the run's last sample is stored. A second `run` or `ablate` of the same configuration on the
same store then either waits for the first (`wait=True`: it says so on stderr, then reuses the samples) or
hears `RunBusy` at once (`wait=False`: `ablate` decodes its other cells first and comes back), so no sample is
decoded twice and no process dies on a sample the other has stored.

A claim is a POSIX record lock (`fcntl.lockf`) on one byte of a lock file beside the store
(`<store>.lock`), at an offset taken from the run key. The kernel drops it when its process ends, however it
ends (`kill -9` included), so a crashed run never blocks the next one. POSIX locks belong to a process: two
`RunLocks` of one store inside one process do not exclude each other, and closing one drops the other's
claims (a process claims through one `RunLocks` per store; `evaluate` does). Where `fcntl` does not exist
(Windows) claims always succeed and the store's own "already stored" error is the last line of defence.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no POSIX record locks
    fcntl = None

from workbench.results.store import StoreError

__all__ = ["RunBusy", "RunLocks"]

# Offsets span 2**48 bytes of a sparse, empty file: distinct runs get distinct bytes in practice.
_KEY_DIGITS = 12


class RunBusy(StoreError):
    """Another process is decoding this run right now (raised only by a claim with `wait=False`)."""


class RunLocks:
    """The claims one process holds on the runs of the store at `store_path`; close() releases them all."""

    def __init__(self, store_path: str | PathLike[str]):
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def _file(self) -> int | None:
        if fcntl is None:
            return None
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the lock file that keeps two processes from "
                                 f"decoding the same run ({exc.strerror}); the folder of --store must be "
                                 f"writable") from exc
        return self._fd

    @contextmanager
    def claim(self, key: str, *, wait: bool = True, what: str = "",
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold run `key` for the duration of the block.

        When another process holds it: `wait=False` raises `RunBusy`; `wait=True` calls `on_wait(message)`
        (a sentence for the user) and blocks until the other process finishes or dies.
        """
        fd = self._file()
        if fd is None:
            yield
            return
        offset = int(key[:_KEY_DIGITS], 16)
        message = (f"another process is decoding run {what or key[:12]} in {str(self.path)[:-len('.lock')]}")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise StoreError(f"{self.path}: cannot lock ({exc.strerror})") from exc
            if not wait:
                raise RunBusy(message) from None
            if on_wait is not None:
                on_wait(f"{message}; waiting for it to finish, then its samples are reused (Ctrl-C stops)")
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLocks:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
