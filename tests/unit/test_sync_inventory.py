"""The standby's inventory is checked field by field before use, and a path is only planned when
it is under one of the ACTIVE host's own 'sync' entries (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from failover.sync.files import FileInfo, SyncEntry, SyncError, compare, inventory, mode_of
from failover.sync.peer import make_plan
from failover.sync.schema import inventory_from_json, parse_inventory
from tests.conftest import put

GOOD: dict[str, Any] = {
    "kind": "file",
    "size": 3,
    "mode": 0o644,
    "uid": 0,
    "gid": 0,
    "mtime_ns": 1,
    "sha256": "ab" * 32,
    "target": "",
}


def test_an_inventory_survives_its_json_round_trip(tmp_path: Path) -> None:
    put(tmp_path, "etc/app/a.conf", "a\n", 0o600)
    put(tmp_path, "etc/app/sub/b", "")
    (tmp_path / "etc/app/link").symlink_to("a.conf")
    found = inventory(str(tmp_path), (SyncEntry("/etc/app"),), for_standby=False)
    text = json.dumps({rel: info.to_json() for rel, info in found.items()})
    assert inventory_from_json(text, "the slave") == found


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "expected a JSON object"),
        ({"/etc/a": GOOD}, "path str '/etc/a': absolute"),
        ({"etc/../a": GOOD}, "contains '..'"),
        ({"etc//a": GOOD}, "not in normal form"),
        ({"etc/a\x00": GOOD}, "NUL"),
        ({"": GOOD}, "empty"),
        ({"etc/\ud800": GOOD}, "not encodable"),
        ({"etc/a": []}, "/etc/a: expected an object"),
        ({"etc/a": {**GOOD, "kind": "pipe"}}, "/etc/a: field 'kind'"),
        ({"etc/a": {**GOOD, "size": -1}}, "/etc/a: field 'size': expected an integer in [0,"),
        ({"etc/a": {**GOOD, "size": True}}, "field 'size': expected an integer"),
        ({"etc/a": {**GOOD, "size": 3.0}}, "field 'size'"),
        ({"etc/a": {**GOOD, "mode": "0644"}}, "/etc/a: field 'mode': expected an integer"),
        ({"etc/a": {**GOOD, "mode": 0o1000000}}, "field 'mode'"),
        ({"etc/a": {**GOOD, "mode": 0o040755}}, "field 'mode': expected permission bits"),
        ({"etc/a": {**GOOD, "uid": -1}}, "field 'uid'"),
        ({"etc/a": {**GOOD, "gid": 2**32}}, "field 'gid'"),
        ({"etc/a": {**GOOD, "mtime_ns": 2**70}}, "field 'mtime_ns'"),
        ({"etc/a": {**GOOD, "sha256": "AB" * 32}}, "field 'sha256': expected 64 lowercase hex"),
        ({"etc/a": {**GOOD, "sha256": "ab" * 31}}, "field 'sha256'"),
        ({"etc/a": {**GOOD, "sha256": None}}, "field 'sha256'"),
        ({"etc/a": {**GOOD, "target": "x"}}, "field 'target': expected '' for a file"),
        ({"etc/a": {**GOOD, "kind": "dir", "sha256": "ab" * 32}}, "field 'sha256': expected '' for a dir"),
        ({"etc/a": {**GOOD, "kind": "link", "sha256": "", "target": ""}}, "field 'target'"),
        ({"etc/a": {**GOOD, "kind": "link", "sha256": "", "target": "a\x00b"}}, "field 'target'"),
        ({"etc/a": {k: v for k, v in GOOD.items() if k != "uid"}}, "/etc/a: field 'uid': missing"),
        ({"etc/a": {**GOOD, "owner": "root"}}, "/etc/a: unknown fields 'owner'"),
    ],
)
def test_a_bad_inventory_is_a_sync_error_naming_the_path_and_the_field(data: object, expected: str) -> None:
    with pytest.raises(SyncError) as info:
        parse_inventory(data, "the slave")
    assert str(info.value).startswith("the slave's inventory") and expected in str(info.value)


@pytest.mark.parametrize("text", ["", "{", "[" * 100_000, '{"a": 1' + "0" * 5000 + "}", "\ud800"])
def test_inventory_text_that_is_not_json_is_a_sync_error(text: str) -> None:
    with pytest.raises(SyncError, match="the slave's inventory"):
        inventory_from_json(text, "the slave")


def test_good_fields_with_their_type_bits_are_accepted() -> None:
    parsed = parse_inventory({"etc/a": {**GOOD, "mode": 0o100644}}, "the slave")
    assert parsed["etc/a"].mode == 0o644


ACTIVE_ENTRIES = (SyncEntry("/etc/app"), SyncEntry("/etc/app/secret.key", "verify"), SyncEntry("/etc/*.ini"))
FILE = FileInfo("file", 1, 0o644, 0, 0, 0, "ab" * 32)


def test_a_standby_path_under_none_of_the_active_hosts_entries_is_shown_but_never_planned() -> None:
    standby = {"etc/other/keep.conf": FILE, "etc/other": FileInfo("dir", 0, 0o755, 0, 0, 0)}
    rows = compare(ACTIVE_ENTRIES, {}, standby)
    assert [(r.path, r.status, r.mode) for r in rows] == [
        ("etc/other", "missing on active", "none"),
        ("etc/other/keep.conf", "missing on active", "none"),
    ]
    assert "never written or deleted" in rows[0].detail
    plan = make_plan(rows, full=True)
    assert plan.send == [] and plan.delete == []


def test_a_verify_entry_inside_a_sync_directory_stays_verify_whatever_the_order() -> None:
    for entries in (ACTIVE_ENTRIES, tuple(reversed(ACTIVE_ENTRIES))):
        rows = compare(entries, {"etc/app/secret.key": FILE}, {})
        assert rows[0].mode == "verify" and make_plan(rows, full=True).send == []
        rows = compare(entries, {}, {"etc/app/secret.key": FILE})
        assert make_plan(rows, full=True).delete == []


@pytest.mark.parametrize(
    ("rel", "mode"),
    [
        ("etc/x.ini", "sync"),
        ("etc/x.ini/inside", "sync"),  # a directory the glob names: everything under it
        ("etc/sub/x.ini", None),  # '*' never crosses a '/', as in glob
        ("etc/.hidden.ini", None),  # nor matches a hidden name, as in glob
        ("etc/app", "sync"),
        ("etc/apps", None),
        ("etc/app/secret.key", "verify"),
        ("etc/app/secret.key.failover-prev", "sync"),
        ("etc", None),
    ],
)
def test_which_entry_covers_a_path_follows_globs_rules(rel: str, mode: str | None) -> None:
    assert mode_of(ACTIVE_ENTRIES, rel) == mode


def test_the_walk_and_the_match_agree(tmp_path: Path) -> None:
    for rel in ("etc/x.ini", "etc/.hidden.ini", "etc/sub/y.ini", "etc/d.ini/z", "etc/app/a"):
        put(tmp_path, rel, "x")
    found = inventory(str(tmp_path), ACTIVE_ENTRIES, for_standby=False)
    assert sorted(found) == ["etc/app", "etc/app/a", "etc/d.ini", "etc/d.ini/z", "etc/x.ini"]
    assert all(mode_of(ACTIVE_ENTRIES, rel) for rel in found)
