#!/bin/sh
# Set up (scripts/setup.sh), then run the demo: both agents on loopback, the master's POP3 killed.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/failover demo "$@"
