"""One writer per output: a command that writes a file or folder over many minutes (`train --out`,
`distill --out`) holds a lock beside it, so a second process aimed at the same output is refused at once
instead of interleaving its lines or checkpoints with the first one's.

The lock is `flock` on `<output>.lock` (beside the output, like a results store's claims), dropped by the
kernel however the process ends, so a killed run never blocks the next. Where `fcntl` does not exist
(Windows) nothing is locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class OutputBusy(ValueError):
    """Another process is writing this output right now."""


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextmanager
def exclusive_output(output: str | Path, command: str) -> Iterator[None]:
    """Hold the output's lock for the block; `OutputBusy` naming the output and the command when another
    process holds it."""
    if fcntl is None:
        yield
        return
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusy(f"another `workbench {command}` is writing {output} right now; wait for it to finish "
                             f"(rerunning this command then resumes where it stopped) or choose another --out") from None
        yield
    finally:
        os.close(fd)  # closing drops the lock
