"""A real loopback pair for the end-to-end tests: real Dovecot, real agent processes. The pair's
timings and start are tests/harness/pair.py (bench/ uses them too)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from failover.lab.pair import LoopbackPair
from failover.lab.pop3 import dovecot_available
from tests.conftest import POP3_KIND
from tests.harness.pair import QUICK, start_pair
from tests.harness.sshd import SshdInstance


@pytest.fixture
def make_pair() -> Iterator[Callable[..., LoopbackPair]]:
    """make_pair(**config_overrides): a pair with the master's POP3 running and both agents up."""
    if POP3_KIND == "dovecot" and not dovecot_available():
        pytest.fail("Dovecot is not installed: run scripts/setup.sh (or set FAILOVER_TEST_POP3=builtin)")
    pairs: list[LoopbackPair] = []

    def make(start: bool = True, **overrides: Any) -> LoopbackPair:
        pair = LoopbackPair(pop3_kind=POP3_KIND, **{**QUICK, **overrides})
        pairs.append(pair)
        if start:
            start_pair(pair)
        return pair

    yield make
    for pair in pairs:
        pair.close()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdInstance]:
    instance = SshdInstance(str(tmp_path / "sshd"))
    instance.start()
    yield instance
    instance.stop()
