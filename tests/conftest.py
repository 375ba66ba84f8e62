"""Shared fixtures: real Dovecot POP3 instances on loopback ports.

A missing Dovecot is an error, not a skip (CI installs it through scripts/setup.sh). Set
FAILOVER_TEST_POP3=builtin to run the suite against the built-in responder on purpose.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failover.lab.pop3 import Pop3Instance, dovecot_available, free_port, make_world_readable_dir

POP3_KIND = os.environ.get("FAILOVER_TEST_POP3", "dovecot")


def put(root: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    """Write a file under `root` (its directories made) with `mode`."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def pop3_factory() -> Iterator[Callable[[str], Pop3Instance]]:
    """Make POP3 instances (not started); all are stopped and removed at teardown."""
    if POP3_KIND == "dovecot" and not dovecot_available():
        pytest.fail("Dovecot is not installed: run scripts/setup.sh (or set FAILOVER_TEST_POP3=builtin)")
    base = make_world_readable_dir("failover-test-")
    made: list[Pop3Instance] = []

    def make(name: str) -> Pop3Instance:
        instance = Pop3Instance(os.path.join(base, name), free_port(), name, kind=POP3_KIND)
        os.chmod(instance.dir, 0o755)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pop3(pop3_factory: Callable[[str], Pop3Instance]) -> Pop3Instance:
    """One started POP3 server."""
    instance = pop3_factory("primary")
    instance.start()
    return instance
