"""`failover history`: both hosts' journals merged in time order. This host's journal is read
from its files; the other host's comes over the authenticated control channel (JOURNAL), every
field checked (failover/history.py). When the other host does not answer, or answers something
that cannot be read, this host's history is shown and a warning says what is missing and why:
exit 4."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from failover.channel import ChannelError, request
from failover.cli.context import CommandError, Context, pass_context
from failover.config import Config
from failover.history import HistoryError, as_json, from_reply, merge, parse_since, readable, render
from failover.machine import Role
from failover.protocol import JournalReply, JournalRequest, ProtocolError, Refused
from failover.sanitize import clean
from failover.state import StateStore


class PeerMissing(CommandError):
    """This host's history was shown; the other host's is missing (the message says why)."""

    exit_code = 4


def fetch_journal(config: Config, role: Role, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The newest `limit` entries of `role`'s journal, asked over the control channel and every
    field checked, and how many its host left out; CommandError says why there are none."""
    host, port = config.host_of(role), config.monitor_port_of(role)
    where = f"the {role} at {host}:{port}"
    try:
        answer = request(host, port, config.read_secret(), JournalRequest(limit), config.CONTROL_TIMEOUT)
    except (ChannelError, ProtocolError, OSError) as e:
        hint = ""
        if "closed the connection" in str(e):
            hint = " (another SECRET_FILE there, or a failover without `failover history`: upgrade both hosts)"
        raise CommandError(f"{where}: {e}{hint}") from None
    if isinstance(answer, Refused):
        raise CommandError(f"{where} refused: {clean(answer.reason, 500)}")
    if not isinstance(answer, JournalReply):
        raise CommandError(f"{where} answered {answer.TYPE} to JOURNAL")
    try:
        return from_reply(answer, role, limit), answer.omitted
    except HistoryError as e:
        raise CommandError(f"{where} sent a journal that cannot be read: {e}") from None


@click.command()
@click.option(
    "--since",
    "since_text",
    metavar="DURATION|ISO-TIME",
    help="Only entries since then: 90s, 15m, 2h, 1d, 1h30m back, or an ISO time (UTC without an offset).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, JournalRequest.MAX),
    default=50,
    show_default=True,
    help="At most this many entries, the newest (each host is asked for as many).",
)
@click.option("--json", "as_json_output", is_flag=True, help="A JSON list of entries, each with a schema_version.")
@pass_context
def history(ctx: Context, since_text: str | None, limit: int, as_json_output: bool) -> None:
    """Both hosts' transitions and notes (scripts' results) in time order, with their reasons."""
    try:
        since = parse_since(since_text, datetime.now(UTC)) if since_text is not None else None
    except HistoryError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    config, role = ctx.config, ctx.role()
    try:
        own, unreadable = readable(StateStore(config.STATE_DIR, role, config.host_of(role)).journal_tail(limit))
    except OSError as e:
        raise CommandError(f"this host's journal cannot be read: {e}") from None
    missing = None
    try:
        theirs, omitted = fetch_journal(config, role.peer, limit)
    except CommandError as e:
        theirs, omitted, missing = [], 0, e.message
    story = merge(own, theirs, since=since, limit=limit)
    if as_json_output:
        click.echo(json.dumps(as_json(story), indent=1))
    elif story:
        click.echo(render(story))
    else:
        click.echo("no journal entries" + (f" since {since_text}" if since_text else ""))
    if unreadable:
        click.echo(f"note: {unreadable} unreadable line(s) of this host's journal ({role}) left out", err=True)
    if omitted:
        shown = f"note: the {role.peer} left out {omitted} older entries (unreadable, or past its 63 KiB reply cap)"
        click.echo(shown, err=True)
    if missing is not None:
        raise PeerMissing(f"WARNING: the {role.peer}'s history is missing, only the {role}'s is shown: {missing}")
