#!/usr/bin/env bash
# The main job on the embedded local stack: Temporal + Redis + Mosquitto, the Kite simulator, the worker, and a
# demo monitoring group whose records appear on the local MQTT broker. Ctrl-C stops everything it started.
#   start.sh [--seconds N]    stop by itself after N seconds (for scripted checks)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

seconds=0
case "${1:-}" in
  --seconds) seconds="${2:?--seconds needs a number}" ;;
  "") ;;
  *) die "usage: start.sh [--seconds N]" ;;
esac

GROUP="${KITE_DEMO_GROUP:-demo-fleet}"
MQTT_PORT="${KITE_MQTT_PORT:-1883}"
UI="http://127.0.0.1:${KITE_UI_PORT:-8233}"
RUN="$DATA/run"
LOGS="$DATA/logs"
TS_NODE=(node -r @swc-node/register)
children=()

cleanup() {
  trap - EXIT INT TERM
  say "stopping the worker, the simulator and the stack"
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash scripts/stack.sh stop
}

wait_for_line() { # FILE PATTERN SECONDS WHAT
  local i
  for ((i = 0; i < $3 * 10; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "$4 did not start in $3 s: see $1"
}

bash scripts/setup.sh
bash scripts/stack.sh start
trap cleanup EXIT INT TERM
mkdir -p "$RUN" "$LOGS"

say "starting the Kite simulator (groups $GROUP and field-ops, 250 SIMs each, clock at 60x)"
: >"$RUN/simulator.json"
"${TS_NODE[@]}" simulator/cli.ts --groups "$GROUP,field-ops" --sims 250 --ungrouped 100 --port 0 \
  --tick 5s --speed 60 --cert-dir "$DATA/kite-simulator/certs" >"$RUN/simulator.json" 2>>"$LOGS/simulator.log" &
children+=($!)
wait_for_line "$RUN/simulator.json" baseUrl 60 "the Kite simulator"
sim() { node -e "process.stdout.write(String(JSON.parse(require('fs').readFileSync('$RUN/simulator.json','utf8'))['$1']))"; }

say "starting the worker (logs: $LOGS/worker.log)"
KITE_API_URL="$(sim baseUrl)" KITE_CA_FILE="$(sim ca)" KITE_CERT_FILE="$(sim clientCert)" KITE_KEY_FILE="$(sim clientKey)" \
  KITE_REQUESTS_PER_SECOND="${KITE_REQUESTS_PER_SECOND:-100}" KITE_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" \
  "${TS_NODE[@]}" worker/main.ts 2>>"$LOGS/worker.log" &
children+=($!)
wait_for_line "$LOGS/worker.log" '"worker started"' 120 "the worker"

say "starting the workflow of group $GROUP (publishing to MQTT every 30 s)"
"${TS_NODE[@]}" cli/cli.ts start "$GROUP" --target mqtt --interval 30s
say "waiting for the first records on mqtt://127.0.0.1:$MQTT_PORT, topic kite/$GROUP/+/reported"
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "kite/$GROUP/+/reported" -v -C 2 -W 120 ||
  die "no record reached the broker in 120 s: see $LOGS/worker.log"

cat >&2 <<TXT

The connector is running.
  Web UI        $UI/namespaces/default/workflows?query=KiteGroup%3D%22$GROUP%22
  Status        npm run cli -- status $GROUP
  Watch a sync  npm run cli -- sync $GROUP --wait
  Switch OFF    npm run cli -- disable $GROUP      (and enable to switch it ON again)
  Records       mosquitto_sub -p $MQTT_PORT -t 'kite/$GROUP/#' -v
  Logs          $LOGS/
Press Ctrl-C to stop.
TXT
if [ "$seconds" -gt 0 ]; then sleep "$seconds"; else wait "${children[0]}"; fi
