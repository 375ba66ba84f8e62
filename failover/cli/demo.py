"""`failover demo`: both agents on loopback, a client polling, then the master's POP3 service is
killed (the lab's demo, failover.lab.demo)."""

from __future__ import annotations

import sys

import click

from failover.lab.demo import run_demo


@click.command()
@click.option(
    "--profile",
    type=click.Choice(["fast", "default"]),
    default="fast",
    show_default=True,
    help="Timing profile of the pair.",
)
@click.option("--builtin", is_flag=True, help="Use the built-in POP3 responder even if Dovecot is installed.")
@click.option("--keep", is_flag=True, help="Leave the agents, servers and files in place afterwards.")
def demo(profile: str, builtin: bool, keep: bool) -> None:
    """Both agents on loopback, a client polling, then the master's POP3 service is killed."""
    sys.exit(run_demo(profile, "builtin" if builtin else None, keep))
