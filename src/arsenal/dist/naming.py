"""Names for local hidden nodes, from a small pool reused across runs.

A node name is an atom on every node it connects to, and atoms are never collected: a client
that named itself at random on every run would add one atom to its peers' tables each time
(a command polled every few seconds fills a million-atom table in months). So an unnamed
:class:`~arsenal.dist.LocalNode` takes one of ``arsenal-1`` … ``arsenal-64`` instead: the
lowest one no other live process on this host holds.

A name is held through an exclusive ``flock`` on a file named after it: a process cannot take
a name that another one holds (a peer would otherwise see two connections from one name, and
drop the first), and the kernel frees the lock when the holder closes it or dies, however it
dies. The files live in ``$ARSENAL_NODE_NAME_DIR``, or else in one directory shared by the
host's users (``<tmp>/arsenal-node-names``, sticky and world-writable like ``/tmp``) so two
users' processes never take the same name either; a per-user directory is the fallback
when that one cannot be used.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import weakref
from pathlib import Path

from .errors import DistError

__all__ = ["POOL_SIZE", "PREFIX", "NameLease", "NamePoolExhausted", "claim_name", "name_directory"]

PREFIX = "arsenal"
POOL_SIZE = 64
"""How many names one host uses at most: how many processes may be connected at once."""
_SHARED_DIR = "arsenal-node-names"


class NamePoolExhausted(DistError):
    """Every name of the pool is held by another live process on this host."""


class NameLease:
    """One name of the pool, held until :meth:`release` (or until the process ends)."""

    def __init__(self, alive: str, fd: int) -> None:
        self.alive = alive
        # A lease dropped without release() still frees its name when it is collected.
        self._finalizer = weakref.finalize(self, _close, fd)

    def __repr__(self) -> str:
        return f"<NameLease {self.alive}{'' if self.held else ' released'}>"

    @property
    def held(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        """Give the name back: the next process (or node) that asks may take it."""
        self._finalizer()


def claim_name(*, prefix: str = PREFIX, size: int = POOL_SIZE, directory: Path | None = None) -> NameLease:
    """Hold the lowest free name ``<prefix>-1`` … ``<prefix>-<size>`` of this host."""
    where = directory or name_directory()
    for index in range(1, size + 1):
        alive = f"{prefix}-{index}"
        fd = _try_lock(where / f"{alive}.lock")
        if fd is not None:
            return NameLease(alive, fd)
    raise NamePoolExhausted(
        f"all {size} node names {prefix}-1 … {prefix}-{size} of this host are held by other live "
        f"processes (locks in {where}); end some of them, or give this node a name of its own"
    )


def name_directory() -> Path:
    """Where the lock files are: ``$ARSENAL_NODE_NAME_DIR``, the host's shared directory, or a
    per-user one if the shared one cannot be used."""
    configured = os.environ.get("ARSENAL_NODE_NAME_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    shared = Path(tempfile.gettempdir()) / _SHARED_DIR
    if _usable_shared(shared):
        return shared
    own = Path.home() / ".cache" / "arsenal" / "node-names"
    own.mkdir(parents=True, exist_ok=True)
    return own


def _usable_shared(path: Path) -> bool:
    """Make the shared directory (sticky, world-writable) if missing; whether we may lock in it."""
    with contextlib.suppress(FileExistsError, OSError):
        path.mkdir()
        os.chmod(path, 0o1777)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):  # a symlink or a file planted there: not ours to use
        return False
    sticky_shared = info.st_mode & 0o1777 == 0o1777
    return (info.st_uid == os.getuid() or sticky_shared) and os.access(path, os.W_OK | os.X_OK)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path``, or None if another process holds it."""
    flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        try:  # another user's file opens without O_CREAT (protected_regular refuses that in /tmp)
            fd = os.open(path, flags)
        except FileNotFoundError:
            fd = os.open(path, flags | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.ELOOP, errno.EPERM):
            return None  # a file we may not use: skip that name
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
