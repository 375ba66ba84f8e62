"""Whether a file that the agents trust as root could have been written by someone else.

failover_config.py is executed (as root, by every daemon and command) and SECRET_FILE is the
key to every control message: if another user can write either, or can replace it because
they can write a directory on its path, that user owns the failover. So both must belong to
root or to the user the agents run as, and neither they nor any directory above them may be
writable by anyone else (a world-writable directory with the sticky bit, like /tmp, lets
others create files there but not replace ours, so it is allowed). Read-only checks; no I/O
beyond lstat/stat.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _trusted_group(gid: int) -> bool:
    return gid in (0, os.getegid())


def _problem(path: Path, st: os.stat_result, what: str) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    if not _trusted_owner(st.st_uid):
        return f"{what} {path} belongs to uid {st.st_uid}, not root or the agents' user (chown root {path})"
    if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return None  # sticky: others may add files here but not rename or remove ours
    if mode & 0o002:
        return f"{what} {path} is writable by everyone (mode {mode:04o}; chmod o-w {path})"
    if mode & 0o020 and not _trusted_group(st.st_gid):
        return f"{what} {path} is writable by group {st.st_gid} (mode {mode:04o}; chmod g-w {path})"
    return None


def _links_on_the_way(path: str | os.PathLike[str]) -> str | None:
    """A symlink on the way to `path` that someone else owns (they could point it elsewhere
    between our check and our use), or that sits in a directory someone else can write."""
    current = Path(os.path.abspath(path))
    for prefix in [*reversed(current.parents), current]:
        try:
            st = os.lstat(prefix)
        except OSError:
            continue  # resolved below, where a missing file is reported
        if not stat.S_ISLNK(st.st_mode):
            continue
        if not _trusted_owner(st.st_uid):
            return f"symlink {prefix} belongs to uid {st.st_uid}, not root or the agents' user"
        parent = Path(os.path.realpath(prefix.parent))
        problem = _directories(parent)
        if problem:
            return f"{problem} (it holds the symlink {prefix})"
    return None


def _directories(start: Path) -> str | None:
    """The first of `start` and the directories above it that someone else could change."""
    for directory in [start, *start.parents]:
        try:
            st = os.stat(directory)
        except OSError as e:
            return f"{directory}: {e.strerror}"
        problem = _problem(directory, st, "directory")
        if problem:
            return problem
    return None


def writable_by_others(path: str | os.PathLike[str]) -> str | None:
    """Why someone other than root or this user could change `path`, or None when no one can.
    Checks every symlink on the way, the file itself (after symlinks) and every directory from
    it up to /."""
    problem = _links_on_the_way(path)
    if problem:
        return problem
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except OSError as e:
        return f"{real}: {e.strerror}"
    return _problem(real, st, "file") or _directories(real.parent)
