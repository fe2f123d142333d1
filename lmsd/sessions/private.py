"""What lmsd keeps on disk is the user's conversations: the state dir is 0700 and the files
in it 0600, whatever the umask (issue 22: they were world-readable under umask 022)."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The files SQLite keeps beside a database (they get the database file's mode when SQLite
#: creates them; these are made private too in case an older lmsd left them readable).
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Make ``path`` (and its missing parents, as ``mkdir -p``) and leave it 0700 when it is
    ours (a state dir set to a shared directory is not changed)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o777 != DIR_MODE and info.st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` if missing, as 0600, and make it 0600 if it exists."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def private_database(path: Path) -> None:
    """A SQLite database and the files beside it, 0600 (the database is created empty
    when missing, so SQLite's own files inherit 0600 from it)."""
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        side = Path(str(path) + suffix)
        if side.exists() and not side.is_symlink():
            os.chmod(side, FILE_MODE)
