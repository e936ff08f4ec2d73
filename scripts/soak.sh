#!/usr/bin/env bash
# The soak (test/soak/soak.test.ts) run long: several workers, groups, an evolving simulator and random SIGKILLs.
#   npm run soak                     20 minutes of evolving Kite
#   npm run soak -- --minutes 5      a quick run
# Other settings through the environment: KITE_SOAK_GROUPS, KITE_SOAK_SIMS, KITE_SOAK_WORKERS,
# KITE_SOAK_KILL_EVERY_S, KITE_SOAK_KITE_RPS (see the test's header). It runs on the test stack (jest global setup).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

minutes=20
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
    *) die "unknown option $1 (expected --minutes N)" ;;
  esac
done
cd "$ROOT"
KITE_SOAK_MINUTES="$minutes" exec npx jest test/soak/soak.test.ts
