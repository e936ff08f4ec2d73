#!/usr/bin/env bash
# The whole check, as CI runs it: install what is missing, type-check, lint, then every test on a real stack
# (Temporal dev server, Redis, Mosquitto, moto, the Azure double) that the jest global setup starts.
#   test.sh [jest args...]   e.g. test.sh test/kite
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
bash scripts/setup.sh --test-peers
if [ $# -eq 0 ]; then
  say "type-checking"
  npx tsc --noEmit -p .
  say "linting"
  npx eslint --max-warnings 0 .
  npx prettier --check --log-level warn .
fi
say "running the tests"
npx jest "$@"
