#!/usr/bin/env bash
# The soak (test/soak/soak.test.ts) at issue 12's setup: 3 worker processes, 3 groups × 5,000 SIMs on one Kite
# account, Kite at 4 requests/s with 100 ms latency, the strict AWS peer over moto, MQTT and a webhook, the simulator
# evolving, one worker SIGKILLed and replaced about every 2 minutes.
#   npm run soak                     20 minutes of evolving Kite (then the settle phase)
#   npm run soak -- --minutes 5      a quick run
#   npm run soak -- --sims 1000      smaller groups
# Other settings through the environment (KITE_SOAK_GROUPS, KITE_SOAK_WORKERS, KITE_SOAK_KILL_EVERY_S,
# KITE_SOAK_KITE_RPS, KITE_SOAK_KITE_LATENCY_MS, KITE_SOAK_SPEED, KITE_SOAK_INTERVAL_S: see the test's header).
# It runs on the test stack (jest global setup) and writes its figures to .data/soak/figures-<time>.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

minutes=20
sims="${KITE_SOAK_SIMS:-5000}"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
    --sims) sims="${2:?--sims needs a number}"; shift 2 ;;
    *) die "unknown option $1 (expected --minutes N or --sims N)" ;;
  esac
done
cd "$ROOT"
mkdir -p "$DATA/soak"
export KITE_SOAK_MINUTES="$minutes" KITE_SOAK_SIMS="$sims"
export KITE_SOAK_GROUPS="${KITE_SOAK_GROUPS:-3}" KITE_SOAK_WORKERS="${KITE_SOAK_WORKERS:-3}"
export KITE_SOAK_KITE_RPS="${KITE_SOAK_KITE_RPS:-4}" KITE_SOAK_KITE_LATENCY_MS="${KITE_SOAK_KITE_LATENCY_MS:-100}"
export KITE_SOAK_KILL_EVERY_S="${KITE_SOAK_KILL_EVERY_S:-120}"
export KITE_SOAK_FIGURES_FILE="${KITE_SOAK_FIGURES_FILE:-$DATA/soak/figures-$(date -u +%Y%m%dT%H%M%SZ).json}"
echo "soak: $KITE_SOAK_GROUPS groups × $sims SIMs, $KITE_SOAK_WORKERS workers, Kite at $KITE_SOAK_KITE_RPS/s, $minutes min; figures → $KITE_SOAK_FIGURES_FILE"
exec npx jest test/soak/soak.test.ts
