"""failover.sync.files: inventory, comparison and putting a received file in place (local disk)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest

from failover.sync.files import (
    TMP_PREFIX,
    Attributes,
    SyncEntry,
    SyncError,
    compare,
    file_hash,
    inventory,
)
from failover.sync.receive import commit, remove
from tests.conftest import put


def test_inventory_walks_directories_globs_and_skips_its_own_temp_and_prev_files(tmp_path: Path) -> None:
    put(tmp_path, "etc/app/a.conf", "a")
    put(tmp_path, "etc/app/sub/b.conf", "b")
    put(tmp_path, f"etc/app/{TMP_PREFIX}123", "half")
    put(tmp_path, "etc/app/a.conf.failover-prev", "old")
    put(tmp_path, "etc/x.ini", "x")
    put(tmp_path, "etc/y.txt", "y")
    found = inventory(str(tmp_path), (SyncEntry("/etc/app"), SyncEntry("/etc/*.ini")), for_standby=False)
    assert sorted(found) == ["etc/app", "etc/app/a.conf", "etc/app/sub", "etc/app/sub/b.conf", "etc/x.ini"]
    assert found["etc/app/a.conf"].sha256 == file_hash(str(tmp_path / "etc/app/a.conf"))
    assert found["etc/app"].kind == "dir"


def test_the_standby_view_applies_substitutions(tmp_path: Path) -> None:
    put(tmp_path, "etc/l.conf", "listen 10.0.0.1\n")
    entry = SyncEntry("/etc/l.conf", substitute=(("10.0.0.1", "10.0.0.2"),))
    as_standby = inventory(str(tmp_path), (entry,), for_standby=True)["etc/l.conf"]
    other = tmp_path / "other"
    put(other, "etc/l.conf", "listen 10.0.0.2\n")
    assert as_standby.sha256 == inventory(str(other), (entry,), for_standby=False)["etc/l.conf"].sha256


def test_compare_names_every_difference_but_never_content(tmp_path: Path) -> None:
    a, s = tmp_path / "a", tmp_path / "s"
    put(a, "f/same", "1")
    put(s, "f/same", "1")
    put(a, "f/mode", "1", 0o600)
    put(s, "f/mode", "1", 0o644)
    put(a, "f/content", "secret-one")
    put(s, "f/content", "secret-two")
    put(a, "f/only-a", "x")
    put(s, "f/only-s", "x")
    entries = (SyncEntry("/f"),)
    rows = {r.path: r for r in compare(entries, inventory(str(a), entries, True), inventory(str(s), entries, False))}
    assert rows["f/same"].status == "equal"
    assert rows["f/mode"].status == "different" and "mode 0600 != 0644" in rows["f/mode"].detail
    assert rows["f/content"].detail == "content (SHA-256) differs"
    assert rows["f/only-a"].status == "missing on standby" and rows["f/only-s"].status == "missing on active"
    assert not any("secret" in r.detail for r in rows.values())


ATTRIBUTES = Attributes(
    mode=0o640, uid=65534, gid=65534, atime_ns=1_600_000_000_123_456_789, mtime_ns=1_500_000_000_555_555_555
)


def test_commit_verifies_keeps_the_previous_version_sets_the_attributes_and_renames(tmp_path: Path) -> None:
    put(tmp_path, "d/f", "old")
    tmp = put(tmp_path, f"d/{TMP_PREFIX}1", "new")
    commit(str(tmp_path), f"d/{TMP_PREFIX}1", "d/f", file_hash(str(tmp)), ATTRIBUTES)
    assert Attributes.of(os.stat(tmp_path / "d/f")) == ATTRIBUTES  # before a read updates the atime
    assert (tmp_path / "d/f").read_text() == "new" and (tmp_path / "d/f.failover-prev").read_text() == "old"
    assert not tmp.exists()


@pytest.mark.parametrize(
    "item",
    [
        {},
        {**asdict(ATTRIBUTES), "mode": "0644"},
        {**asdict(ATTRIBUTES), "mode": 0o17777},
        {**asdict(ATTRIBUTES), "uid": True},
        {**asdict(ATTRIBUTES), "mtime_ns": 1.5},
    ],
)
def test_bad_attributes_in_a_commit_step_are_refused(item: dict[str, object]) -> None:
    with pytest.raises(SyncError, match="bad attributes"):
        Attributes.parse(item)


def test_commit_refuses_a_file_whose_content_changed_and_leaves_the_old_one(tmp_path: Path) -> None:
    put(tmp_path, "d/f", "old")
    put(tmp_path, f"d/{TMP_PREFIX}2", "torn")
    with pytest.raises(SyncError, match="discarded"):
        commit(str(tmp_path), f"d/{TMP_PREFIX}2", "d/f", "0" * 64, ATTRIBUTES)
    assert (tmp_path / "d/f").read_text() == "old" and not (tmp_path / f"d/{TMP_PREFIX}2").exists()


def test_commit_only_takes_a_temp_file_next_to_its_target(tmp_path: Path) -> None:
    put(tmp_path, "elsewhere/x", "x")
    with pytest.raises(SyncError, match="not a temp file"):
        commit(str(tmp_path), "elsewhere/x", "d/f", "0" * 64, ATTRIBUTES)


def test_remove_deletes_files_and_empty_directories(tmp_path: Path) -> None:
    put(tmp_path, "d/sub/f", "x")
    remove(str(tmp_path), "d/sub/f")
    remove(str(tmp_path), "d/sub")
    assert not (tmp_path / "d/sub").exists()
