#!/bin/sh
# Start this host's failover daemons, as the Perl tool's start.sh did:
#   ./start.sh master [--foreground] [--config PATH]     socketserver + lhcd
#   ./start.sh slave  [--foreground] [--config PATH]     socketserver2 + rhcd
# The config is checked first; a bad config starts nothing (exit 2). A daemon that already runs
# is not started twice. Without --foreground the daemons detach and log to LOG_DIR.
set -eu
cd "$(dirname "$0")"
usage="usage: ./start.sh master|slave [--foreground] [--config PATH]"
role=${1:-}
case "$role" in master|slave) shift ;; *) echo "$usage" >&2; exit 2 ;; esac
config=failover_config.py
foreground=""
while [ $# -gt 0 ]; do
    case "$1" in
        --foreground) foreground=--foreground ;;
        --config) config=${2:?$usage}; shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done
failover=failover
[ -x .venv/bin/failover ] && failover=.venv/bin/failover
"$failover" --config "$config" --role "$role" check
exec "$failover" --config "$config" --role "$role" start "$role" $foreground
