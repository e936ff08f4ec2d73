#!/usr/bin/env bash
# The scale benchmark (issue #7): sets up, starts its own local stack on its own ports (or reuses one already
# listening there), runs bench/main.ts, and stops only what it started.
#   bench.sh [--sims N] [--small N] [--profile] [--out FILE] [--ours-only] [--groups N [--group-sims M]]
#            [--policy-day [--policy-sims N] [--policy-cycles N]]
# Ports: KITE_BENCH_TEMPORAL_PORT (27233), KITE_BENCH_UI_PORT (28233), KITE_BENCH_REDIS_PORT (26379),
# KITE_BENCH_MQTT_PORT (21883); Redis DB KITE_BENCH_REDIS_DB (9). Runs on other ports keep their stack's data, pid
# files and logs apart (.data/bench/stack-<Temporal port>), so two runs on one machine never stop each other's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export KITE_TEMPORAL_PORT="${KITE_BENCH_TEMPORAL_PORT:-27233}"
export KITE_UI_PORT="${KITE_BENCH_UI_PORT:-28233}"
export KITE_REDIS_PORT="${KITE_BENCH_REDIS_PORT:-26379}"
export KITE_MQTT_PORT="${KITE_BENCH_MQTT_PORT:-21883}"
export KITE_DATA_DIR="$ROOT/.data/bench/stack-$KITE_TEMPORAL_PORT"

bash "$ROOT/scripts/setup.sh"
started=0
if port_open "$KITE_TEMPORAL_PORT" && port_open "$KITE_REDIS_PORT"; then
  say "bench: reusing the stack on ports $KITE_TEMPORAL_PORT (Temporal) and $KITE_REDIS_PORT (Redis)"
else
  started=1
  bash "$ROOT/scripts/stack.sh" start
fi
stop_stack() { if [ "$started" = 1 ]; then bash "$ROOT/scripts/stack.sh" stop; fi; }
trap stop_stack EXIT

cd "$ROOT"
# The worker runs as in production: compiled to lib/ (BENCH_WORKER_SOURCE=1 runs the TypeScript instead).
# --policy-day runs the activities in this process: no worker, nothing to build.
if [ -z "${BENCH_WORKER_SOURCE:-}" ] && [[ " $* " != *" --policy-day "* ]]; then
  say "bench: npm run build (the worker runs from lib/, as in production)"
  npm run --silent build >/dev/null
fi
BENCH_TEMPORAL_ADDRESS="127.0.0.1:$KITE_TEMPORAL_PORT" \
  BENCH_REDIS_URL="redis://127.0.0.1:$KITE_REDIS_PORT/${KITE_BENCH_REDIS_DB:-9}" \
  node -r @swc-node/register bench/main.ts "$@"
