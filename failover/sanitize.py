"""Text from peers, operators and scripts, made safe for a log line, a terminal or an environment.

Such text is data: a reason typed by an operator, a detail in a peer's heartbeat, the output of
a script on the other host. Put as it is into a log line, a newline forges a line of its own;
an escape sequence repaints the operator's terminal; a NUL in an environment value makes
`subprocess.Popen` raise, which would stop a failover. So every such text goes through one of:

- `clean(text, limit)`: one line, every control character escaped (`\\n`, `\\x1b`, ...), at most
  `limit` characters (the cut says how much was left out). For status, env values, reasons.
- `LogFormatter`: for log files. A record may span lines (a script's output), but every line
  after the first starts with `    | `, so no text can make a line that looks like a record.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, Unicode line breaks
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_IN_LOG = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # all but \t and \n, which are split
CONTINUATION = "    | "


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def clean(text: object, limit: int = 1000) -> str:
    """`text` as one printable line of at most `limit` characters (plus the note of the cut)."""
    line = _CONTROL.sub(_escape, str(text))
    if len(line) > limit:
        return f"{line[:limit]}...({len(line) - limit} more characters)"
    return line


def clean_lines(text: str) -> str:
    """Control characters escaped except newlines, every line after the first indented."""
    escaped = _IN_LOG.sub(_escape, text)
    return escaped.replace("\r\n", "\n").replace("\n", "\n" + CONTINUATION)


class LogFormatter(logging.Formatter):
    """A logging.Formatter whose records cannot forge other records (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        return clean_lines(super().format(record))
