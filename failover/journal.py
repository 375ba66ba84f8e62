"""The journal's files read back: complete lines from the end, torn lines skipped, and the
sequence number the next entry continues from. The writer is StateStore (failover/state.py).

Every entry carries `seq`, its number in the host's journal: 1, 2, 3, ... across restarts and
rotations (the next number is one past the highest found at the end of the journal, or of its
rotated file when a rotation left the journal empty). Entries written before `seq` existed have
none; the numbering then starts at 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TAIL_BLOCK = 64 * 1024  # the journal is read backwards in blocks of this size ...
TAIL_ENTRY_BYTES = 64 * 1024  # ... and at most this much per entry wanted, so a line without end is no scan of the disk
MAX_SEQ = 2**53  # a JSON number every reader holds exactly; years of transitions stay far below it


def entry_of(line: bytes) -> dict[str, Any] | None:
    """One journal line as its object; None for a line that is not one (torn, edited)."""
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def lines_from_end(fd: int, limit: int) -> Iterator[bytes]:
    """The complete lines of the file open at `fd`, last first, read backwards in TAIL_BLOCK
    blocks, at most `limit` bytes from the end. What follows the file's last newline is empty or
    a torn line: it is skipped."""
    pos = os.fstat(fd).st_size
    floor = max(0, pos - limit)
    pending = b""  # the start of the earliest line seen so far: complete only once its newline is read
    torn = True  # nothing but what follows the file's last newline has been read yet
    while pos > floor:
        size = min(TAIL_BLOCK, pos - floor)
        pos -= size
        parts = (os.pread(fd, size, pos) + pending).split(b"\n")
        pending, later = parts[0], parts[1:]
        if torn and later:
            later.pop()
            torn = False
        yield from reversed(later)
    if pos == 0 and not torn:
        yield pending  # the file's first line


def seq_of(entry: dict[str, Any]) -> int | None:
    """An entry's sequence number, if it has a valid one."""
    seq = entry.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        return None
    return seq


def last_seq(entries: list[dict[str, Any]]) -> int:
    """The highest sequence number among the journal's last entries (0: none has one)."""
    return max((s for e in entries if (s := seq_of(e)) is not None), default=0)


def read_journal(path: str) -> list[dict[str, Any]]:
    """Every readable entry of one journal file, in order; a torn last line (a crash mid-append)
    is skipped. Reads the whole file: for tests and tools; status reads `journal_tail()`."""
    try:
        lines = Path(path).read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    return [entry for line in lines if (entry := entry_of(line)) is not None]
