"""Symlinks are synced as symlinks (their target text, never followed) and special files are
reported per path and skipped (issue 10): neither makes an inventory fail."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from failover.sync.files import TMP_PREFIX, Attributes, SyncEntry, SyncError, clean_temp, compare, inventory
from failover.sync.peer import make_plan
from failover.sync.receive import Receiver
from tests.conftest import put

ENTRY = (SyncEntry("/etc/app"),)
OWNER = Attributes(0o777, os.getuid(), os.getgid(), 0, 0)


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A synced tree with links of every sort and special files, and a directory outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    put(outside, "secret", "never read\n", 0o600)
    os.mkfifo(outside / "fifo")  # reading it would block: a followed link would hang the test
    put(root, "etc/app/a.conf", "a\n")
    os.symlink("a.conf", root / "etc/app/relative")
    os.symlink(outside / "secret", root / "etc/app/absolute")
    os.symlink(outside, root / "etc/app/linked-dir")
    os.symlink(outside / "fifo", root / "etc/app/to-fifo")
    os.symlink("nowhere", root / "etc/app/dangling")
    os.mkfifo(root / "etc/app/fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "etc/app/socket"))
    return root, outside


def test_links_are_inventoried_as_their_target_text_and_special_files_by_kind(tmp_path: Path) -> None:
    root, outside = tree(tmp_path)
    found = inventory(str(root), ENTRY, for_standby=True)
    links = {rel: info.target for rel, info in found.items() if info.kind == "link"}
    assert links == {
        "etc/app/relative": "a.conf",
        "etc/app/absolute": str(outside / "secret"),
        "etc/app/linked-dir": str(outside),
        "etc/app/to-fifo": str(outside / "fifo"),
        "etc/app/dangling": "nowhere",
    }
    assert all(found[rel].sha256 == "" for rel in links)  # no link's target is ever read
    assert not any(rel.startswith("etc/app/linked-dir/") for rel in found)  # nor walked into
    assert found["etc/app/fifo"].kind == "fifo" and found["etc/app/socket"].kind == "socket"


def test_compare_tells_links_by_target_and_skips_special_files(tmp_path: Path) -> None:
    root, _ = tree(tmp_path)
    other = tmp_path / "standby"
    put(other, "etc/app/a.conf", "a\n")
    os.symlink("a.conf", other / "etc/app/relative")
    os.symlink("b.conf", other / "etc/app/dangling")
    put(other, "etc/app/absolute", "a file where the active host has a link\n")
    os.mkfifo(other / "etc/app/only-standby-fifo")
    active, standby = inventory(str(root), ENTRY, True), inventory(str(other), ENTRY, False)
    rows = {r.path: r for r in compare(ENTRY, active, standby)}
    assert rows["etc/app/relative"].status == "equal"
    assert rows["etc/app/dangling"].detail == "link target differs"
    assert rows["etc/app/absolute"].detail.startswith("kind link != file")
    assert rows["etc/app/fifo"].status == "skipped" and "a fifo on the active host" in rows["etc/app/fifo"].detail
    assert rows["etc/app/only-standby-fifo"].status == "skipped"
    plan = make_plan(list(rows.values()), full=True)
    assert not {"etc/app/fifo", "etc/app/socket", "etc/app/only-standby-fifo"} & {*plan.send, *plan.delete}
    assert {"etc/app/absolute", "etc/app/dangling", "etc/app/linked-dir"} <= set(plan.send)


def test_an_entry_that_is_itself_a_link_is_a_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    put(outside, "x", "x\n")
    os.makedirs(root / "etc")
    os.symlink(outside, root / "etc/app")
    assert {rel: info.kind for rel, info in inventory(str(root), ENTRY, True).items()} == {"etc/app": "link"}


def test_the_standby_recreates_a_link_in_place_of_a_file_an_empty_directory_or_a_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put(root, "etc/app/was-file", "old\n")
    os.makedirs(root / "etc/app/was-dir")
    os.symlink("old", root / "etc/app/was-link")
    put(root, "etc/app/full-dir/f", "f\n")
    receiver = Receiver(str(root), ENTRY)
    try:
        for name in ("was-file", "was-dir", "was-link", "new"):
            receiver.make_link(f"etc/app/{name}", "../target", OWNER)
            assert os.readlink(root / "etc/app" / name) == "../target"
        with pytest.raises(SyncError, match="a directory with files"):
            receiver.make_link("etc/app/full-dir", "x", OWNER)
    finally:
        receiver.close()
    assert (root / "etc/app/was-file.failover-prev").read_text() == "old\n"
    assert not list(root.rglob(f"{TMP_PREFIX}*"))


def test_clean_temp_never_cleans_through_a_linked_entry(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    put(outside, f"{TMP_PREFIX}not-ours", "someone else's\n")
    put(root, f"etc/app/sub/{TMP_PREFIX}ours", "half\n")
    os.symlink(outside, root / "etc/linked")
    assert clean_temp(str(root), (SyncEntry("/etc/app"), SyncEntry("/etc/linked"))) == 1
    assert (outside / f"{TMP_PREFIX}not-ours").exists() and not (root / f"etc/app/sub/{TMP_PREFIX}ours").exists()
