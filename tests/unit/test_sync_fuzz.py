"""Fuzzing what crosses SSH in a sync (issue 10): whatever the standby's inventory holds, the
ACTIVE host's parser and compare raise nothing but SyncError and plan only its own 'sync'
paths; whatever commit batch the standby receives, nothing outside its 'sync' entries is
written or deleted (through '..', absolute paths, NUL, symlinked directories or otherwise)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from failover.cli.sync import table
from failover.sync.files import PREV_SUFFIX, TMP_PREFIX, FileInfo, SyncEntry, SyncError, compare, mode_of
from failover.sync.peer import make_plan
from failover.sync.receive import apply_batch
from failover.sync.schema import FIELDS, inventory_from_json, parse_inventory

ENTRIES = (
    SyncEntry("/etc/app"),
    SyncEntry("/etc/app/secret.key", "verify"),
    SyncEntry("/etc/*.ini"),
    SyncEntry("/etc/ro", "verify"),
    SyncEntry("/srv/data"),  # its parent /srv does not exist: a step may make it (mkdir -p)
)
NEW = b"new content\n"
NEW_SHA = hashlib.sha256(NEW).hexdigest()
OUTSIDE = "{OUTSIDE}"  # replaced by the outside directory's absolute path when a batch runs

ACTIVE = {
    "etc/app": FileInfo("dir", 0, 0o755, 0, 0, 0),
    "etc/app/a.conf": FileInfo("file", 2, 0o644, 0, 0, 5, "ab" * 32),
    "etc/app/secret.key": FileInfo("file", 2, 0o600, 0, 0, 5, "cd" * 32),
    "etc/app/link": FileInfo("link", 6, 0o777, 0, 0, 5, "", "a.conf"),
    "etc/app/fifo": FileInfo("fifo", 0, 0o644, 0, 0, 0),
    "etc/x.ini": FileInfo("file", 2, 0o644, 0, 0, 5, "ef" * 32),
}


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)

# ----------------------------------------------------------------------------- the standby's inventory

NAMES = ["etc", "app", "sub", "a.conf", "secret.key", "x.ini", "other", "ro", "srv", "data", "..", ".", "", "\0"]
paths = st.lists(st.sampled_from(NAMES) | st.text(max_size=6), min_size=1, max_size=4).map("/".join)
paths = paths | paths.map(lambda p: "/" + p) | st.text(max_size=12)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from(["file", "dir", "link", "fifo", "socket", "device", "other", "pipe", ""]) | json_scalars,
    "size": st.integers(-2, 2**64) | json_scalars,
    "mode": st.sampled_from([0o644, 0o7777, 0o100644, 0o040755, 0o120777, 0o170000, 0o177777]) | st.integers(),
    "uid": st.integers(-1, 2**33) | json_scalars,
    "gid": st.integers(-1, 2**33) | json_scalars,
    "mtime_ns": st.integers(-(2**64), 2**64) | json_scalars,
    "sha256": st.sampled_from(["", "ab" * 32, "AB" * 32, "a" * 63]) | json_scalars,
    "target": st.sampled_from(["", "a.conf", "/etc/shadow", "../../..", "x\0y"]) | json_scalars,
}
infos = st.fixed_dictionaries({}, optional=field_values) | st.fixed_dictionaries(field_values) | json_values
link_texts = st.text(min_size=1, max_size=20).filter(
    lambda t: "\0" not in t and t.encode(errors="ignore") == t.encode(errors="surrogateescape")
)


@st.composite
def good_infos(draw: st.DrawFn) -> dict[str, object]:
    """A well-formed entry of any kind (then compare and plan run on it), sometimes matching ACTIVE's."""
    kind = draw(st.sampled_from(["file", "dir", "link", "fifo", "socket", "device", "other"]))
    small = st.sampled_from([0, 2, 5, 0o644, 0o755])
    return {
        "kind": kind,
        "size": draw(small | st.integers(0, 2**63 - 1)),
        "mode": draw(small | st.integers(0, 0o7777)),
        "uid": draw(small | st.integers(0, 2**32 - 1)),
        "gid": draw(small | st.integers(0, 2**32 - 1)),
        "mtime_ns": draw(small | st.integers(-(2**63), 2**63 - 1)),
        "sha256": draw(st.sampled_from(["ab" * 32, "cd" * 32, "0" * 64])) if kind == "file" else "",
        "target": draw(st.sampled_from(["a.conf", "/etc/shadow"]) | link_texts) if kind == "link" else "",
    }


# a good entry with one field (or one more field) replaced by anything: each check is reached
mutated = st.tuples(good_infos(), st.sampled_from([*FIELDS, "extra"]), json_values).map(lambda t: {**t[0], t[1]: t[2]})
inventory_paths = st.sampled_from([*ACTIVE, "etc/other/keep.conf", "etc/app/new", "etc/y.ini", "srv/data/x"])
inventories = (
    st.dictionaries(inventory_paths, good_infos(), max_size=6)
    | st.dictionaries(inventory_paths, good_infos() | mutated, max_size=4)
    | st.dictionaries(inventory_paths | paths, infos, max_size=6)
    | json_values
)


def check_plan(standby: dict[str, FileInfo]) -> None:
    """The real compare and plan over a parsed inventory: no exception, only 'sync' paths of
    the ACTIVE host's synced kinds are sent or deleted, and the table prints."""
    rows = compare(ENTRIES, ACTIVE, standby)
    for full in (False, True):
        plan = make_plan(rows, full)
        for rel in (*plan.send, *plan.delete):
            assert mode_of(ENTRIES, rel) == "sync", rel
            for side in (ACTIVE, standby):
                assert rel not in side or side[rel].kind in ("file", "dir", "link"), rel
        table(plan).encode()


@settings(max_examples=400, deadline=None)
@given(inventories)
def test_any_inventory_is_parsed_or_refused_with_a_sync_error_and_compares_safely(data: Any) -> None:
    try:
        standby = parse_inventory(data, "the slave")
    except SyncError as e:
        assert str(e).startswith("the slave's inventory")
        event("refused")
        return
    event(f"parsed, {min(len(standby), 3)} paths")
    check_plan(standby)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | json_values.map(json.dumps) | inventories.map(json.dumps))
def test_any_inventory_text_is_parsed_or_refused_with_a_sync_error(text: str) -> None:
    try:
        standby = inventory_from_json(text, "the slave")
    except SyncError:
        return
    check_plan(standby)


def test_the_fuzzed_fields_are_the_inventorys_fields() -> None:
    assert set(field_values) == set(FIELDS)  # a new field must be fuzzed too


# ----------------------------------------------------------------------------- the standby's commit

# this host's 'sync' paths (some through a symlink to outside the tree), and paths it refuses
OWN_PATHS = [
    "etc/app/a.conf",
    "etc/app/new.conf",
    "etc/app/sub",
    "etc/app/sub/b.conf",
    "etc/app/link",
    "etc/app/link/victim",
    "etc/app/rel/keep.conf",
    "etc/app/made-link",
    "etc/app/made-link/x",
    "etc/x.ini",
    "etc/new.ini/x",
    "etc/app",
    "srv/data/x",
]
NOT_OWN_PATHS = ["etc/app/secret.key", "etc/app/secret.key/x", "etc/other/keep.conf", "etc/ro/f", "etc", "srv"]
MALFORMED_PATHS = [
    "etc/app/../other/keep.conf",
    "/etc/app/a.conf",
    "etc/app/a.conf\0",
    "etc//app/a.conf",
    "etc/app/./a.conf",
]
good_paths = st.sampled_from(OWN_PATHS) | st.sampled_from(OWN_PATHS + NOT_OWN_PATHS)
any_paths = st.sampled_from(OWN_PATHS + NOT_OWN_PATHS + MALFORMED_PATHS) | paths
good_ints = st.sampled_from([0, 0o644, 0o755, 0o7777])  # as modes, owners and times
any_ints = good_ints | st.integers(-1, 2**40) | st.booleans() | json_scalars
targets = st.sampled_from([OUTSIDE, "../../outside", "../other", "a.conf", "/"]) | st.text(max_size=8)


@st.composite
def steps(draw: st.DrawFn, good: bool) -> object:
    step = draw(well_or_badly_formed_steps(good))
    if not good and isinstance(step, dict) and draw(st.booleans()):
        step[draw(st.sampled_from(["kind", "path", "tmp", "delete", "target"]))] = draw(json_values)
    return step


@st.composite
def well_or_badly_formed_steps(draw: st.DrawFn, good: bool) -> object:
    """A commit step: `good`, well-formed (then only the standby's rules decide; a batch with one
    malformed step is refused whole, so most steps must be well-formed for any to run), or anything."""
    path, ints = (draw(good_paths), good_ints) if good else (draw(any_paths), any_ints)
    kind = draw(st.sampled_from(["file", "delete", "dir", "link", "parents", *([] if good else ["junk"])]))
    if kind == "delete":
        return {"path": path, "delete": True if good else draw(st.just(True) | json_scalars)}
    if kind == "dir":
        return {"kind": "dir", "path": path, "mode": draw(ints), "uid": draw(ints), "gid": draw(ints)}
    if kind == "link":
        return {"kind": "link", "path": path, "target": draw(targets), "uid": draw(ints), "gid": draw(ints)}
    if kind == "parents":
        return {"kind": "parents", "path": path}
    if kind == "junk":
        return draw(json_values)
    here = os.path.dirname(path) if isinstance(path, str) else ""
    tmps = st.sampled_from([f"{here}/{TMP_PREFIX}t".lstrip("/")])
    if not good:
        tmps = tmps | st.sampled_from([f"etc/app/{TMP_PREFIX}t", f"etc/other/{TMP_PREFIX}t"]) | paths
    shas = st.sampled_from([NEW_SHA, NEW_SHA, "0" * 64]) | (st.nothing() if good else json_scalars)
    fields = ("mode", "uid", "gid", "atime_ns", "mtime_ns")
    return {"path": path, "tmp": draw(tmps), "sha256": draw(shas)} | {name: draw(ints) for name in fields}


batches = (
    st.lists(steps(good=True), min_size=1, max_size=6)
    | st.lists(steps(good=True) | steps(good=False), min_size=1, max_size=4)
    | json_values
)


def build(base: Path) -> Path:
    """The standby's SYNC_ROOT, with a temp file received next to each place a step may name,
    symlinks out of the synced tree, and files under no entry or a 'verify' one."""
    root, outside = base / "root", base / "outside"
    for rel, text in [
        ("root/etc/app/a.conf", b"a\n"),
        ("root/etc/app/secret.key", b"secret\n"),
        ("root/etc/app/sub/b.conf", b"b\n"),
        ("root/etc/x.ini", b"x\n"),
        ("root/etc/other/keep.conf", b"keep\n"),
        ("root/etc/ro/f", b"verified only\n"),
        ("outside/victim", b"precious\n"),
    ]:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(text)
    for directory in ("root/etc/app", "root/etc/app/sub", "root/etc", "root/etc/other", "root/etc/ro", "outside"):
        (base / directory / f"{TMP_PREFIX}t").write_bytes(NEW)
    os.symlink(outside, root / "etc/app/link")
    os.symlink("../other", root / "etc/app/rel")
    return root


def snapshot(base: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(base):  # never follows a link
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            content: object = None
            if stat.S_ISREG(st_.st_mode):
                content = Path(path).read_bytes()
            elif stat.S_ISLNK(st_.st_mode):
                content = os.readlink(path)
            found[os.path.relpath(path, base)] = (stat.S_IFMT(st_.st_mode), st_.st_mode, st_.st_uid, content)
    return found


def may_change(key: str) -> bool:
    """What a batch may touch: this host's 'sync' paths; the previous version of one
    (FILE.failover-prev, next to it: for a file entry, outside its pattern); the temp files
    received next to the entries' own paths (renamed into place: /etc holds those of
    /etc/*.ini); the directories above an entry, which a step may make (mkdir -p)."""
    if not key.startswith("root/"):
        return False
    rel = key.removeprefix("root/")
    if rel.endswith(PREV_SUFFIX):
        rel = rel.removesuffix(PREV_SUFFIX)
    return mode_of(ENTRIES, rel) == "sync" or rel in ("etc/" + TMP_PREFIX + "t", "srv")


def with_outside(value: object, outside: str) -> object:
    if isinstance(value, dict):
        return {k: with_outside(v, outside) for k, v in value.items()}
    if isinstance(value, list):
        return [with_outside(v, outside) for v in value]
    return outside if value == OUTSIDE else value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_any_commit_batch_writes_and_deletes_only_under_this_hosts_sync_entries(batch: object) -> None:
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        root = build(base)
        before = snapshot(base)
        lines: list[str] = []
        try:
            apply_batch(str(root), ENTRIES, with_outside(batch, str(base / "outside")), lines.append)
            event("applied")
        except SyncError as e:
            event("refused whole" if str(e).startswith("refused") else "failed at a step")
        event(f"steps that did something: {min(len(lines), 3)}")
        after = snapshot(base)
        changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        assert {key for key in changed if not may_change(key)} == set(), (batch, lines)
        for line in lines:
            line.encode("utf-8", "backslashreplace")
