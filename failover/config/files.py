"""The files a config names: its scripts can be started, the SSH key and known_hosts exist, and
the secret is private, trusted (trust.py) and long enough."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

from failover.config.problems import Problem
from failover.config.schema import KEYS
from failover.config.trust import writable_by_others

MIN_SECRET_BYTES = 16


def file_problems(v: dict[str, Any], base_dir: str) -> list[Problem]:
    """Every problem with the files the valid values `v` name (scripts relative to `base_dir`)."""
    problems = []
    for key in [k.name for k in KEYS if k.name.endswith("_SCRIPTS")]:
        if key == "RESTART_SCRIPTS" and v.get(key) == v.get("STARTUP_SCRIPTS"):
            continue  # the default: already checked
        for command in v.get(key, ()):
            problem = script_problem(command, base_dir)
            if problem:
                problems.append(Problem(key, problem))
    for key in ("RLOGIN_KEY_FILE", "RLOGIN_KNOWN_HOSTS"):
        if v.get(key) and not os.path.isfile(v[key]):
            problems.append(Problem(key, f"{v[key]}: no such file"))
    secret = v.get("SECRET_FILE")
    if secret:
        problem = secret_problem(secret)
        if problem:
            problems.append(Problem("SECRET_FILE", problem))
    return problems


def script_problem(command: str, base_dir: str) -> str | None:
    """Whether the program a command line starts exists and is executable."""
    program = shlex.split(command)[0]
    if "/" in program:
        path = Path(base_dir, program) if not os.path.isabs(program) else Path(program)
        if not path.is_file():
            return f"{program}: no such file (looked for {path})"
        if not os.access(path, os.X_OK):
            return f"{program}: not executable (chmod +x {path})"
        return None
    if shutil.which(program) is None:
        return f"{program}: not found on PATH"
    return None


def secret_problem(path: str) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}: no such file; create it on both hosts with `failover keygen {path}`"
    except OSError as e:
        return f"{path}: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file"
    if st.st_mode & 0o077:
        return f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; expected 0600 (chmod 600 {path})"
    untrusted = writable_by_others(path)
    if untrusted:
        return f"{path}: {untrusted}"
    try:
        size = len(Path(path).read_bytes().strip())
    except OSError as e:
        return f"{path}: cannot read: {e.strerror}"
    if size < MIN_SECRET_BYTES:
        return f"{path}: {size} bytes; expected at least {MIN_SECRET_BYTES} random bytes (failover keygen)"
    return None
