"""The standby's side of a sync (`failover sync-commit`, issue 10): it writes or deletes a path only
when the path is under one of ITS OWN 'sync' entries and under none of its 'verify' entries, and
never through a symlink inside a synced tree, whatever the ACTIVE host's batch says."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from failover.cli import main
from failover.sync.files import TMP_PREFIX, file_hash
from tests.conftest import put
from tests.unit.test_cli import write_scripts_and_secret

CONFIG = """\
CONFIG = {{
    "MASTER_HOST": "127.0.0.1",
    "SLAVE_HOST": "127.0.0.1",
    "MONITOR_PORT": 17890,
    "MONITOR_PORT_SLAVE": 17891,
    "REMOTE_POP3_PORT": 11110,
    "SLAVE_POP3_PORT": 11111,
    "SECRET_FILE": "secret",
    "SHUTDOWN_SCRIPTS": ["./stop.sh"],
    "STARTUP_SCRIPTS": ["./start.sh"],
    "STATE_DIR": "state",
    "LOG_DIR": "log",
    "SYNC_FILES": {sync_files!r},
    "SYNC_ROOT": {{"master": {master!r}, "slave": {slave!r}}},
}}
"""

# The standby's own config: /etc/app is synced, but its secret is only compared here.
ENTRIES: list[object] = ["/etc/app", {"path": "/etc/app/secret.key", "mode": "verify"}]


def standby(tmp_path: Path, entries: list[object] = ENTRIES) -> tuple[Path, Path]:
    """A config directory for the slave and its SYNC_ROOT; returns (config file, root)."""
    conf, root = tmp_path / "conf", tmp_path / "slave-root"
    conf.mkdir()
    root.mkdir()
    write_scripts_and_secret(conf)
    text = CONFIG.format(sync_files=entries, master=str(tmp_path / "master-root"), slave=str(root))
    (conf / "failover_config.py").write_text(text)
    return conf / "failover_config.py", root


def sync_commit(config: Path, steps: Any) -> tuple[int, str]:
    data = steps if isinstance(steps, str) else json.dumps(steps)
    result = CliRunner().invoke(
        main, ["--config", str(config), "--role", "slave", "sync-commit", "--batch"], input=data
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def file_step(root: Path, rel: str, text: str, tmp_dir: str | None = None) -> dict[str, Any]:
    """A received temp file (written where the ACTIVE host's SFTP upload would put it) and its step."""
    tmp_rel = f"{tmp_dir if tmp_dir is not None else os.path.dirname(rel)}/{TMP_PREFIX}abc"
    tmp = put(root, tmp_rel, text, 0o600)
    st = os.stat(tmp)
    return {
        "tmp": tmp_rel,
        "path": rel,
        "sha256": file_hash(str(tmp)),
        "mode": 0o644,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "atime_ns": st.st_atime_ns,
        "mtime_ns": st.st_mtime_ns,
    }


def test_a_delete_under_one_of_its_verify_entries_is_refused_even_inside_a_sync_entry(tmp_path: Path) -> None:
    config, root = standby(tmp_path)
    put(root, "etc/app/secret.key", "mine\n", 0o600)
    code, out = sync_commit(config, [{"path": "etc/app/secret.key", "delete": True}])
    assert code == 1 and "/etc/app/secret.key" in out and "verify" in out
    assert (root / "etc/app/secret.key").read_text() == "mine\n"


def test_a_write_under_one_of_its_verify_entries_is_refused_even_inside_a_sync_entry(tmp_path: Path) -> None:
    config, root = standby(tmp_path)
    put(root, "etc/app/secret.key", "mine\n", 0o600)
    code, out = sync_commit(config, [file_step(root, "etc/app/secret.key", "the active's\n")])
    assert code == 1 and "/etc/app/secret.key" in out and "verify" in out
    assert (root / "etc/app/secret.key").read_text() == "mine\n"
    assert not list(root.rglob(f"{TMP_PREFIX}*"))  # the refused batch's temp file is discarded


def test_a_delete_outside_its_own_entries_is_refused_with_the_path_and_why(tmp_path: Path) -> None:
    config, root = standby(tmp_path)
    put(root, "etc/other/keep.conf", "keep\n")
    code, out = sync_commit(config, [{"path": "etc/other/keep.conf", "delete": True}])
    assert code == 1 and "/etc/other/keep.conf" in out and "none of this host's SYNC_FILES" in out
    assert (root / "etc/other/keep.conf").exists()


def test_one_refused_step_refuses_the_whole_batch_before_anything_changes(tmp_path: Path) -> None:
    config, root = standby(tmp_path)
    put(root, "etc/app/stale.conf", "stale\n")
    put(root, "etc/other/keep.conf", "keep\n")
    steps = [{"path": "etc/app/stale.conf", "delete": True}, {"path": "etc/other/keep.conf", "delete": True}]
    code, out = sync_commit(config, steps)
    assert code == 1 and "/etc/other/keep.conf" in out
    assert (root / "etc/app/stale.conf").exists() and (root / "etc/other/keep.conf").exists()


@pytest.mark.parametrize("kind", ["delete", "write"])
def test_nothing_is_written_or_deleted_through_a_symlinked_directory_inside_a_sync_entry(
    tmp_path: Path, kind: str
) -> None:
    config, root = standby(tmp_path)
    outside = tmp_path / "outside"
    put(outside, "victim", "precious\n")
    put(root, "etc/app/a.conf", "a\n")
    os.symlink(outside, root / "etc/app/link")
    if kind == "delete":
        step = {"path": "etc/app/link/victim", "delete": True}
    else:
        step = file_step(root, "etc/app/link/victim", "overwritten\n")  # the upload followed the link
    code, out = sync_commit(config, [step])
    assert code == 1 and "/etc/app/link" in out and "symlink" in out
    assert (outside / "victim").read_text() == "precious\n"


def test_deleting_a_symlink_deletes_the_link_never_its_target(tmp_path: Path) -> None:
    config, root = standby(tmp_path)
    outside = tmp_path / "outside"
    put(outside, "victim", "precious\n")
    os.makedirs(root / "etc/app")
    os.symlink(outside, root / "etc/app/link")
    code, out = sync_commit(config, [{"path": "etc/app/link", "delete": True}])
    assert code == 0, out
    assert not os.path.lexists(root / "etc/app/link") and (outside / "victim").read_text() == "precious\n"


@pytest.mark.parametrize(
    "steps",
    [
        [{"path": "etc/app/../other/keep.conf", "delete": True}],
        [{"path": "/etc/other/keep.conf", "delete": True}],
        [{"path": "etc/app/\x00", "delete": True}],
        [{"path": "etc/app/x", "delete": "yes"}],
        [{"path": "etc/app/x", "tmp": 3, "sha256": "0" * 64}],
        [{"path": "etc/app/x", "kind": "link", "target": "t", "uid": True, "gid": 0}],
        [{"path": "etc/app/\udcff\ud800", "delete": True}],
        {"path": "etc/app/x"},
        "[" * 100_000,
    ],
)
def test_a_malformed_batch_is_refused_with_a_message_not_a_traceback(tmp_path: Path, steps: Any) -> None:
    config, root = standby(tmp_path)
    put(root, "etc/other/keep.conf", "keep\n")
    code, out = sync_commit(config, steps)
    assert code == 1 and "sync-commit" in out and "Traceback" not in out
    assert (root / "etc/other/keep.conf").exists()


def test_its_own_sync_paths_are_still_written_and_deleted(tmp_path: Path) -> None:
    config, root = standby(tmp_path)
    put(root, "etc/app/stale.conf", "stale\n")
    put(root, "etc/app/a.conf", "old\n")
    code, out = sync_commit(
        config, [file_step(root, "etc/app/a.conf", "new\n"), {"path": "etc/app/stale.conf", "delete": True}]
    )
    assert code == 0, out
    assert (root / "etc/app/a.conf").read_text() == "new\n" and not (root / "etc/app/stale.conf").exists()
    assert (root / "etc/app/a.conf.failover-prev").read_text() == "old\n"
