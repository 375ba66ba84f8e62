"""rcmd: run a command on the master over SSH, with its host key pinned (failover.ssh).

    python -m agents.slave.rcmd --config failover_config.py -- COMMAND...

Exit status: the remote command's, 255 when SSH failed (or the command was killed by a signal),
2 when the config has problems.
"""

from __future__ import annotations

import argparse
import os
import sys

from failover.config import ConfigError, load
from failover.ssh import RcmdError, from_config


def main() -> int:
    parser = argparse.ArgumentParser(prog="rcmd", description="Run a command on the master over SSH.")
    parser.add_argument("--config", default=os.environ.get("FAILOVER_CONFIG", "failover_config.py"))
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    try:
        config = load(args.config)
        result = from_config(config, config.MASTER_HOST).run(" ".join(args.command), args.timeout)
    except ConfigError as e:
        print("\n".join(e.lines()), file=sys.stderr)
        return 2
    except RcmdError as e:
        print(f"rcmd: {e}", file=sys.stderr)
        return 255
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode if result.returncode >= 0 else 255


if __name__ == "__main__":
    sys.exit(main())
