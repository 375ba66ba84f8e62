"""What is wrong with a config: one Problem per key, all of them raised together as ConfigError."""

from __future__ import annotations

from dataclasses import dataclass

from failover.errors import FailoverError


@dataclass(frozen=True)
class Problem:
    key: str
    message: str


class ConfigError(FailoverError):
    """Every problem found in a config file, one line each: `file: KEY: problem`."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source, self.problems = source, problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {p.key}: {p.message}" for p in self.problems]
