"""`failover install-units`: this host's systemd units (failover.units), written where systemd
reads them, with the interpreter, the config and its directory as absolute paths.

A file that exists with other content is not replaced without --force (local changes belong in
drop-ins, which this never writes). STATE_DIR and LOG_DIR are created, since the sandboxed
control server can write only where they already exist. `systemctl daemon-reload` and
`enable` run only with --enable, and only where systemd runs; nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from failover.cli.context import CommandError, Context, pass_context
from failover.daemon import DAEMONS
from failover.machine import Role
from failover.state import atomic_write, ensure_private_dir
from failover.units import TARGETS, UnitError, loop_budget, render, watchdog_sec

SYSTEMD_DIR = "/etc/systemd/system"
SYSTEMCTL_TIMEOUT = 60.0


def systemd_running() -> bool:
    """Whether this host was booted with systemd (sd_booted(3): the directory it creates)."""
    return os.path.isdir("/run/systemd/system")


def _systemctl(*args: str) -> None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise CommandError("systemctl not found")
    try:
        done = subprocess.run([systemctl, *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CommandError(f"systemctl {' '.join(args)} did not finish within {SYSTEMCTL_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise CommandError(f"systemctl {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    click.echo(f"ran systemctl {' '.join(args)}")


@click.command("install-units")
@click.option("--role", "role_name", type=click.Choice([r.value for r in Role]), help="Default: this host's role.")
@click.option(
    "--dir",
    "directory",
    default=SYSTEMD_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the units.",
)
@click.option("--force", is_flag=True, help="Replace unit files whose content differs.")
@click.option("--enable", is_flag=True, help="Then systemctl daemon-reload and enable the role's target.")
@pass_context
def install_units(ctx: Context, role_name: str | None, directory: str, force: bool, enable: bool) -> None:
    """Write this host's systemd units (a target and a service per daemon), with the paths of
    this interpreter and this config. Prints what it wrote; starts nothing."""
    config = ctx.config
    role = Role(role_name) if role_name else ctx.role()
    try:
        units = render(config, role, os.path.abspath(sys.executable), str(Path(ctx.config_path).resolve()))
    except UnitError as e:
        raise CommandError(str(e)) from None
    os.makedirs(directory, exist_ok=True)
    changed = []
    for name, text in units.items():
        path = os.path.join(directory, name)
        try:
            current: str | None = Path(path).read_text()
        except FileNotFoundError:
            current = None
        if current is not None and current != text:
            changed.append(path)
    if changed and not force:
        raise CommandError(
            f"not replaced, their content differs: {', '.join(changed)}; --force replaces them "
            "(keep local changes in drop-ins: systemctl edit UNIT)"
        )
    for name, text in units.items():
        path = os.path.join(directory, name)
        if os.path.exists(path) and path not in changed:
            click.echo(f"unchanged {path}")
            continue
        atomic_write(path, text.encode())
        os.chmod(path, 0o644)
        click.echo(f"{'replaced' if path in changed else 'wrote'} {path}")
    click.echo(
        f"{DAEMONS[role][-1]}: WatchdogSec={watchdog_sec(config)}, twice the longest pass of its decision loop "
        f"that this config allows ({loop_budget(config):g} s)"
    )
    ensure_private_dir(config.STATE_DIR)
    os.makedirs(config.LOG_DIR, mode=0o755, exist_ok=True)
    target = TARGETS[role]
    if not enable:
        click.echo(f"next: systemctl daemon-reload && systemctl enable {target} && systemctl start {target}")
        return
    if not systemd_running():
        raise CommandError(f"systemd does not run on this host: the units are written, {target} is not enabled")
    _systemctl("daemon-reload")
    _systemctl("enable", target)
    click.echo(f"next: systemctl start {target} (stop daemons started by start.sh first: failover stop {role})")
