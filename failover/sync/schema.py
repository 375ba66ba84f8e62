"""What the peer sends about its files is checked before it is used: the standby's inventory
(the JSON of `failover sync-inventory`, read by the ACTIVE host) here, the ACTIVE host's commit
steps in failover.sync.receive. It comes over SSH from another machine, so nothing in it is
trusted: first the types of every field (an int is an int, and a bool is not one), then their
ranges. Anything wrong is a SyncError naming the path and the field, which the callers count and
report like any other sync failure; nothing else comes out of here (the fuzz tests hold that).
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from failover.sync.files import ID_RANGE, INT64, SPECIAL_KINDS, SYNCED_KINDS, FileInfo, SyncError, is_int

MAX_PATH = 4096  # bytes, as PATH_MAX: longer cannot name a file on Linux
SHA256 = re.compile(r"[0-9a-f]{64}")
FIELDS = ("kind", "size", "mode", "uid", "gid", "mtime_ns", "sha256", "target")
# the file type bits a 'mode' may carry besides its permission bits, by kind (0: none)
TYPE_BITS = {
    "file": (stat.S_IFREG,),
    "dir": (stat.S_IFDIR,),
    "link": (stat.S_IFLNK,),
    "fifo": (stat.S_IFIFO,),
    "socket": (stat.S_IFSOCK,),
    "device": (stat.S_IFCHR, stat.S_IFBLK),
    "other": (),
}


def shown(value: object) -> str:
    """A value in an error message: its type and the start of its repr (never a whole blob)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def path_problem(rel: object) -> str | None:
    """Why `rel` cannot name a path under SYNC_ROOT, or None: a non-empty relative path, in the
    normal form (no '', '.' or '..' component: nothing outside SYNC_ROOT or twice named), without
    NUL, and encodable as a file name."""
    if not isinstance(rel, str):
        return f"expected a string, got {shown(rel)}"
    if not rel:
        return "empty"
    if "\0" in rel:
        return "contains a NUL character"
    if rel.startswith("/"):
        return "absolute: expected a path relative to SYNC_ROOT"
    parts = rel.split("/")
    if ".." in parts:
        return "contains '..'"
    if "" in parts or "." in parts:
        return "not in normal form (an empty or '.' component)"
    try:
        size = len(os.fsencode(rel))
    except UnicodeEncodeError:
        return "not encodable as a file name"
    return f"longer than {MAX_PATH} bytes" if size > MAX_PATH else None


def inventory_from_json(text: str, who: str) -> dict[str, FileInfo]:
    """The standby's inventory from its JSON text; `who` ("the slave") names it in errors."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser goes
        raise SyncError(f"{who}'s inventory is not JSON: {str(e)[:200]}") from None
    return parse_inventory(data, who)


def parse_inventory(data: object, who: str) -> dict[str, FileInfo]:
    """{path: {kind, size, mode, uid, gid, mtime_ns, sha256, target}} checked field by field.

    Whether each path is under one of this host's entries is decided by compare, not here: a path
    only the standby's config names is a row of its own ("none": never sent or deleted), so that a
    difference between the two configs is shown by path instead of failing every sync."""
    if not isinstance(data, dict):
        raise SyncError(f"{who}'s inventory: expected a JSON object of path -> file info, got {shown(data)}")
    found: dict[str, FileInfo] = {}
    for rel, info in data.items():
        problem = path_problem(rel)
        if problem is not None:
            raise SyncError(f"{who}'s inventory: path {shown(rel)}: {problem}")
        found[rel] = _info(info, f"{who}'s inventory: /{rel}")
    return found


def _info(info: object, where: str) -> FileInfo:
    if not isinstance(info, dict):
        raise SyncError(f"{where}: expected an object of its fields, got {shown(info)}")

    def field(name: str) -> Any:
        if name not in info:
            raise SyncError(f"{where}: field {name!r}: missing")
        return info[name]

    def bad(name: str, expected: str) -> SyncError:
        return SyncError(f"{where}: field {name!r}: expected {expected}, got {shown(info[name])}")

    def integer(name: str, lo: int, hi: int) -> int:
        value = field(name)
        if not is_int(value, lo, hi):
            raise bad(name, f"an integer in [{lo}, {hi}]")
        return int(value)

    kind = field("kind")
    if kind not in (*SYNCED_KINDS, *SPECIAL_KINDS):
        raise bad("kind", f"one of {', '.join((*SYNCED_KINDS, *SPECIAL_KINDS))}")
    size = integer("size", 0, INT64[1])
    mode = integer("mode", 0, 0o177777)
    if stat.S_IFMT(mode) not in (0, *TYPE_BITS[kind]):
        raise bad("mode", f"permission bits (at most 0o7777), with no file type bits but a {kind}'s")
    uid, gid, mtime_ns = integer("uid", *ID_RANGE), integer("gid", *ID_RANGE), integer("mtime_ns", *INT64)
    sha256, target = field("sha256"), field("target")
    if kind == "file" and not (isinstance(sha256, str) and SHA256.fullmatch(sha256)):
        raise bad("sha256", "64 lowercase hex digits for a file")
    if kind != "file" and sha256 != "":
        raise bad("sha256", f"'' for a {kind}")
    if kind == "link":
        problem = _target_problem(target)
        if problem is not None:
            raise bad("target", f"a link's text ({problem})")
    elif target != "":
        raise bad("target", f"'' for a {kind}")
    unknown = sorted(str(name) for name in info if name not in FIELDS)
    if unknown:
        raise SyncError(f"{where}: unknown fields {', '.join(repr(n[:40]) for n in unknown[:5])}")
    return FileInfo(kind, size, stat.S_IMODE(mode), uid, gid, mtime_ns, sha256, target)


def _target_problem(target: object) -> str | None:
    """A symlink's text: anything a link can hold (it is copied, never followed), but not empty,
    without NUL, encodable, and at most MAX_PATH - 1 bytes."""
    if not isinstance(target, str) or not target:
        return "a non-empty string"
    if "\0" in target:
        return "no NUL character"
    try:
        size = len(os.fsencode(target))
    except UnicodeEncodeError:
        return "encodable as a file name"
    return f"at most {MAX_PATH - 1} bytes" if size >= MAX_PATH else None
