#!/bin/sh
# Set up (scripts/setup.sh), then run the linters and the whole test suite.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
