"""Loading: execute failover_config.py in a fresh interpreter (read_raw), then check its CONFIG
dict against the schema, the rules between keys and the files it names (validate).

The file is the operator's Python, run as root: it is refused when others could write it, and
executed with a timeout in a separate interpreter so that only its CONFIG dict comes back, as
JSON. Every problem is collected with its key and they are raised together (ConfigError).
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from failover.config.files import file_problems
from failover.config.problems import ConfigError, Problem
from failover.config.rules import relations, warnings_of
from failover.config.schema import KEY_NAMES, KEYS, REQUIRED
from failover.config.settings import Config
from failover.config.trust import writable_by_others
from failover.config.values import Bad

# read_raw, load and validate, with the keys validate knows and the Config it returns
__all__ = ["KEY_NAMES", "LOAD_TIMEOUT", "Config", "load", "read_raw", "validate"]

LOAD_TIMEOUT = 10.0  # seconds the operator's file may take to execute

_RUNNER = r"""
import json, runpy, sys, traceback
path = sys.argv[1]
def dump(obj):
    def default(o):
        if isinstance(o, (set, frozenset)):
            return {"__unsupported__": type(o).__name__, "repr": repr(o)}
        return {"__unsupported__": type(o).__name__, "repr": repr(o)[:200]}
    return json.dumps(obj, default=default)
try:
    namespace = runpy.run_path(path, run_name="failover_config")
except SystemExit as e:
    print(json.dumps({"error": f"the file called exit({e.code!r})", "line": None})); sys.exit(0)
except BaseException as e:
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    print(json.dumps({"error": f"{type(e).__name__}: {e}", "line": line})); sys.exit(0)
if "CONFIG" not in namespace:
    print(json.dumps({"error": "the file must define CONFIG = {...}", "line": None, "key": "CONFIG"}))
elif not isinstance(namespace["CONFIG"], dict):
    print(json.dumps({"error": f"CONFIG must be a dict, got {type(namespace['CONFIG']).__name__}",
                      "line": None, "key": "CONFIG"}))
else:
    print(dump({"config": namespace["CONFIG"]}))
"""


def read_raw(path: Path) -> dict[str, Any]:
    """Execute the config file in a fresh interpreter and return its CONFIG dict."""
    name = path.name
    try:
        source = path.read_text()
    except OSError as e:
        raise ConfigError(name, [Problem("(file)", f"cannot read {path}: {e.strerror}")]) from None
    untrusted = writable_by_others(path)  # it is executed as root: its writers own the failover
    if untrusted:
        raise ConfigError(name, [Problem("(file)", f"not executed: {untrusted}")])
    try:
        compile(source, str(path), "exec")
    except SyntaxError as e:
        raise ConfigError(name, [Problem(f"line {e.lineno}", f"syntax error: {e.msg}")]) from None
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _RUNNER, str(path.resolve())],
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT,
            cwd=path.resolve().parent,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(name, [Problem("(file)", f"executing the file took over {LOAD_TIMEOUT:g} s")]) from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise ConfigError(name, [Problem("(file)", f"could not be executed: {done.stderr.strip()[-300:]}")]) from None
    if "error" in result:
        where = result.get("key") or (f"line {result['line']}" if result.get("line") else "(file)")
        raise ConfigError(name, [Problem(where, result["error"])])
    config: dict[str, Any] = result["config"]
    return config


def load(path: str | os.PathLike[str], check_files: bool = True) -> Config:
    """Read, execute and validate a config file. Raises ConfigError with every problem."""
    p = Path(path)
    return validate(read_raw(p), source=p.name, base_dir=str(p.resolve().parent), check_files=check_files)


def validate(
    raw: dict[str, Any], source: str = "failover_config.py", base_dir: str = ".", check_files: bool = True
) -> Config:
    problems: list[Problem] = []
    for name in raw:
        if name not in KEY_NAMES:
            close = difflib.get_close_matches(str(name), KEY_NAMES, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(KEY_NAMES)}"
            problems.append(Problem(str(name), f"unknown key{hint}"))
    values: dict[str, Any] = {}
    for key in KEYS:
        if key.name in raw:
            value = raw[key.name]
            if isinstance(value, dict) and "__unsupported__" in value:
                problems.append(
                    Problem(key.name, f"unsupported value of type {value['__unsupported__']}: {value['repr']}")
                )
                continue
            try:
                values[key.name] = key.parse(value)
            except Bad as e:
                problems.append(Problem(key.name, str(e)))
        elif key.default is REQUIRED:
            problems.append(Problem(key.name, f"missing: {key.doc}"))
    for key in KEYS:  # defaults, after parsing, so "the value of another key" is the parsed one
        if key.name in raw or key.default is REQUIRED:
            continue
        if key.same_as is None:
            values[key.name] = key.default
        elif key.same_as in values:
            values[key.name] = values[key.same_as]
        # else: that key is missing or broken, which is already reported
    if values.get("TRIGGER_COMMUNICATION_LOSS") is None and "LEASE" in values and "LOAD_BALANCER" in values:
        # the default: on exactly when the pair has a lease, which makes a partition harmless
        values["TRIGGER_COMMUNICATION_LOSS"] = bool(values["LEASE"] and values["LOAD_BALANCER"])
    for name in ("SECRET_FILE", "STATE_DIR", "LOG_DIR", "SERVICE_PIDFILE", "RLOGIN_KEY_FILE", "RLOGIN_KNOWN_HOSTS"):
        if values.get(name):
            values[name] = os.path.normpath(os.path.join(base_dir, values[name]))  # absolute stays absolute
    problems += relations(values)
    if check_files:
        problems += file_problems(values, base_dir)
    if problems:
        raise ConfigError(source, problems)
    return Config(**values, source=source, base_dir=base_dir, warnings=tuple(warnings_of(values)))
