"""Load and validate failover_config.py: one CONFIG dict, the same file on both hosts.

The file is the operator's Python (like the Perl tool's `sub CONFIG`), so it is executed in a
separate interpreter with a timeout and only its CONFIG dict comes back, as JSON. Validation is
a declarative schema: every key is checked, every problem is collected with its key, and they
are raised together (`ConfigError`). Timing rules are rejected with the inequality that fails,
never adjusted silently.

The modules, in the order a config goes through them:
  loading.py   read_raw (execute the file), load, validate
  trust.py     whether someone other than root could write the config or the secret
  schema.py    KEYS: one Key per config key, with its parser, default and doc
  values.py    the parsers of structured values (LOAD_BALANCER, SYNC_FILES, SYNC_ROOT, ...)
  rules.py     the rules between keys: timing inequalities, port clashes, warnings
  files.py     the files a config names: scripts, SSH key and known_hosts, the secret
  settings.py  Config, the validated config, and what the agents derive from it
  role.py      which host am I: find_role
  problems.py  Problem and ConfigError
"""

from __future__ import annotations

from failover.config.files import MIN_SECRET_BYTES, script_problem, secret_problem
from failover.config.loading import load, read_raw, validate
from failover.config.problems import ConfigError, Problem
from failover.config.role import find_role
from failover.config.schema import KEY_NAMES, KEYS, REQUIRED, Key, Parser
from failover.config.settings import TRIGGER_FLAGS, Config
from failover.config.values import LoadBalancerConfig

__all__ = [
    "KEYS",
    "KEY_NAMES",
    "MIN_SECRET_BYTES",
    "REQUIRED",
    "TRIGGER_FLAGS",
    "Config",
    "ConfigError",
    "Key",
    "LoadBalancerConfig",
    "Parser",
    "Problem",
    "find_role",
    "load",
    "read_raw",
    "script_problem",
    "secret_problem",
    "validate",
]
