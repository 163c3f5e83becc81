"""Real file-system faults for the reliability tests: a folder that turns read-only, a disk that fills up.

`small_disk(path, size)` mounts a tmpfs of `size` bytes at `path` (root with mount rights only; the test is
skipped elsewhere) and unmounts it afterwards. `make_readonly(folder)` makes a folder and its files
unwritable: remounting that tmpfs read-only as root (chmod does not stop root), chmod otherwise.
"""

from __future__ import annotations

import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def small_disk(path: Path, size: int = 4 << 20):
    """A folder `path` on a tmpfs of `size` bytes; skips the test where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def make_readonly(folder: Path) -> None:
    """No process of this user can write in `folder` afterwards (its files stay readable)."""
    if IS_ROOT:
        done = _mount("-o", "remount,ro", str(folder))
        if done.returncode != 0:
            pytest.skip(f"cannot remount {folder} read-only: {done.stderr.strip()}")
        return
    for p in folder.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


@contextmanager
def readonly_folder(path: Path):
    """A folder to fill, then `make_readonly`: a tmpfs as root, a plain folder otherwise (chmod restored)."""
    if IS_ROOT:
        with small_disk(path) as folder:
            yield folder
        return
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        path.chmod(0o755)
        for p in path.iterdir():
            p.chmod(0o644)
