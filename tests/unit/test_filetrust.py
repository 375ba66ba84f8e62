"""failover_config.py runs as root and SECRET_FILE signs every message: no one else may write them.

Uses a real second user (nobody, uid 65534) as the owner, as a careless `chown` would leave it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from failover.config import ConfigError, load
from failover.config.trust import writable_by_others
from tests.unit.test_config import confdir  # noqa: F401 (a fixture)

NOBODY = 65534


def _group_writable(path: Path, gid: int) -> None:
    path.chmod(0o664)
    os.chown(path, 0, gid)


def test_a_private_file_in_private_directories_is_trusted(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    assert writable_by_others(path) is None  # /tmp above is sticky: allowed


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (lambda p: p.chmod(0o666), "writable by everyone"),
        (lambda p: _group_writable(p, NOBODY), "writable by group 65534"),
        (lambda p: os.chown(p, NOBODY, 0), "belongs to uid 65534"),
        (lambda p: p.parent.chmod(0o777), "directory .* is writable by everyone"),
        (lambda p: os.chown(p.parent, NOBODY, 0), "directory .* belongs to uid 65534"),
    ],
)
def test_a_file_others_can_change_is_named(tmp_path: Path, setup: object, problem: str) -> None:
    directory = tmp_path / "etc"
    directory.mkdir(mode=0o755)
    path = directory / "failover_config.py"
    path.write_text("CONFIG = {}\n")
    path.chmod(0o644)
    setup(path)  # type: ignore[operator]
    found = writable_by_others(path)
    assert found is not None
    assert re.search(problem, found), found


def test_a_symlink_is_judged_by_what_it_points_to(tmp_path: Path) -> None:
    target = tmp_path / "real.py"
    target.write_text("x")
    target.chmod(0o666)
    (tmp_path / "link.py").symlink_to(target)
    assert "writable by everyone" in (writable_by_others(tmp_path / "link.py") or "")


def test_a_config_others_can_write_is_not_executed(confdir: Path) -> None:  # noqa: F811
    marker = confdir / "executed"
    config = confdir / "failover_config.py"
    config.write_text(f"open({str(marker)!r}, 'w').close()\n" + config.read_text())
    config.chmod(0o666)
    with pytest.raises(ConfigError) as e:
        load(config)
    assert "not executed" in "\n".join(e.value.lines()) and "writable by everyone" in "\n".join(e.value.lines())
    assert not marker.exists()
    config.chmod(0o644)
    load(config)
    assert marker.exists()


def test_a_secret_owned_by_another_user_is_refused(confdir: Path) -> None:  # noqa: F811
    os.chown(confdir / "secret", NOBODY, 0)
    with pytest.raises(ConfigError) as e:
        load(confdir / "failover_config.py")
    assert "SECRET_FILE" in "\n".join(e.value.lines()) and "belongs to uid 65534" in "\n".join(e.value.lines())


def test_a_symlink_someone_else_owns_on_the_way_is_named(tmp_path: Path) -> None:
    target = tmp_path / "real.py"
    target.write_text("x")
    target.chmod(0o644)
    link = tmp_path / "link.py"
    link.symlink_to(target)
    assert writable_by_others(link) is None
    os.lchown(link, NOBODY, 0)  # they could point it at their own file between check and use
    assert "symlink" in (writable_by_others(link) or "") and "uid 65534" in (writable_by_others(link) or "")


def test_a_symlink_in_a_directory_others_can_write_is_named(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "real.py"
    target.parent.mkdir()
    target.write_text("x")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "link.py").symlink_to(target)
    shared.chmod(0o777)  # anyone may replace the link
    found = writable_by_others(shared / "link.py") or ""
    assert "writable by everyone" in found and "it holds the symlink" in found
