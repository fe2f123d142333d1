"""The state dir and the files in it are the user's alone (0700, 0600) whatever the umask
and whatever an older lmsd left; a shared directory and symlinks are not touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lmsd.sessions import private
from lmsd.sessions.private import private_database, private_dir, private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)  # everything would be created world-writable
    yield
    os.umask(old)


def test_a_new_dir_is_0700_with_its_parents_made(tmp_path, open_umask):
    leaf = tmp_path / "a" / "b" / "state"
    private_dir(leaf)
    assert leaf.is_dir() and mode(leaf) == 0o700
    private_dir(leaf)  # again: nothing to do, nothing fails
    assert mode(leaf) == 0o700


def test_an_existing_open_dir_of_ours_is_closed(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    private_dir(state)
    assert mode(state) == 0o700


def test_a_dir_of_another_user_is_left_as_it_is(tmp_path, monkeypatch):
    """A state dir set to a shared directory: not ours to close."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o775)
    monkeypatch.setattr(private.os, "geteuid", lambda: shared.stat().st_uid + 1)
    private_dir(shared)
    assert mode(shared) == 0o775


def test_a_file_is_created_0600_or_closed_keeping_its_content(tmp_path, open_umask):
    new = tmp_path / "new"
    private_file(new)
    assert new.read_bytes() == b"" and mode(new) == 0o600
    old = tmp_path / "old"
    old.write_text("kept")
    os.chmod(old, 0o644)
    private_file(old)
    assert old.read_text() == "kept" and mode(old) == 0o600


def test_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not ours to change")
    os.chmod(target, 0o644)
    link = tmp_path / "sessions.sqlite3"
    link.symlink_to(target)
    with pytest.raises(OSError):
        private_file(link)
    assert mode(target) == 0o644


def test_a_database_and_the_files_beside_it_are_closed(tmp_path):
    db = tmp_path / "sessions.sqlite3"
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    for side in (wal, shm):
        side.write_bytes(b"x")
        os.chmod(side, 0o644)
    target = tmp_path / "target"
    target.write_bytes(b"x")
    os.chmod(target, 0o644)
    Path(f"{db}-journal").symlink_to(target)  # a symlink beside it: left alone
    private_database(db)
    assert db.exists() and mode(db) == 0o600
    assert (mode(wal), mode(shm)) == (0o600, 0o600)
    assert mode(target) == 0o644
