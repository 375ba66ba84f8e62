"""The one root of every exception the project raises: `except FailoverError` catches all of
them and nothing else (no OSError, no bug). Each module keeps its own subclass, named for the
outside thing or the input that failed (ProtocolError, ConfigError, ChannelError, SyncError, ...),
so a caller catches exactly what it can handle. Pure: no imports."""

from __future__ import annotations


class FailoverError(Exception):
    """Something the project detected and refused, with a message that says what and why."""
