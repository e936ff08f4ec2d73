#!/usr/bin/env bash
# The main job on the embedded local stack: Temporal + Redis + Mosquitto, the Kite simulator, the worker, and a
# demo monitoring group whose records appear on the local MQTT broker. Ctrl-C, or SIGINT/SIGTERM to the
# `npm start` process (package.json execs this script, so npm's forwarded signal reaches it), stops everything it
# started. Every long wait runs in the background and is awaited with `wait`, which a trapped signal interrupts
# at once. scripts/check-start-stop.sh checks that nothing is left behind.
#   start.sh [--seconds N]    stop by itself after N seconds (for scripted checks)
# Ports: KITE_TEMPORAL_PORT, KITE_UI_PORT, KITE_REDIS_PORT, KITE_MQTT_PORT (defaults 7233, 8233, 6379, 1883).
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
# The worker and the CLI reach the stack on the ports stack.sh used.
export KITE_TEMPORAL_ADDRESS="127.0.0.1:${KITE_TEMPORAL_PORT:-7233}"
export KITE_REDIS_URL="redis://127.0.0.1:${KITE_REDIS_PORT:-6379}"
export KITE_WEB_UI_URL="$UI"
children=() # long-running: simulator, worker
current=""  # the command `run` is waiting for
stack_started=0

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  say "stopping the worker, the simulator and the stack"
  for pid in $current "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $current "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "$stack_started" -eq 0 ] || bash scripts/stack.sh stop
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background and waits for it, so that a signal interrupts the wait at once (and cleanup
# stops the command). Returns the command's exit status.
run() {
  local rc=0
  "$@" &
  current=$!
  wait "$current" || rc=$?
  current=""
  return "$rc"
}

# wait_for_line FILE OFFSET PATTERN SECONDS WHAT PID: waits until PATTERN appears in FILE after byte OFFSET (a log
# appended across runs holds the previous runs' lines). Dies with the process's own error lines if PID exits.
wait_for_line() {
  local file=$1 offset=$2 pattern=$3 seconds=$4 what=$5 pid=$6 i code errors
  for ((i = 0; i < seconds * 10; i++)); do
    tail -c +"$((offset + 1))" "$file" 2>/dev/null | grep -q "$pattern" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" && code=0 || code=$?
      # Its own words: the JSON error lines it wrote this run, else the last lines (a crash's stack).
      errors=$(tail -c +"$((offset + 1))" "$file" | grep '"level":"error"' || tail -c +"$((offset + 1))" "$file" | tail -n 5)
      die "$what exited with code $code before it was ready:"$'\n'"$errors"$'\n'"(full log: $file)"
    fi
    run sleep 0.1
  done
  die "$what did not start in $seconds s: see $file"
}

log_size() { [ -f "$1" ] && stat -c %s "$1" || echo 0; }

run bash scripts/setup.sh
stack_started=1
run bash scripts/stack.sh start
mkdir -p "$RUN" "$LOGS"

say "starting the Kite simulator (groups $GROUP and field-ops, 250 SIMs each, clock at 60x)"
: >"$RUN/simulator.json"
"${TS_NODE[@]}" simulator/cli.ts --groups "$GROUP,field-ops" --sims 250 --ungrouped 100 --port 0 \
  --tick 5s --speed 60 --cert-dir "$DATA/kite-simulator/certs" >"$RUN/simulator.json" 2>>"$LOGS/simulator.log" &
children+=($!)
simulator=$!
wait_for_line "$RUN/simulator.json" 0 baseUrl 60 "the Kite simulator" "$simulator"
sim() { node -e "process.stdout.write(String(JSON.parse(require('fs').readFileSync('$RUN/simulator.json','utf8'))['$1']))"; }

say "starting the worker (logs: $LOGS/worker.log)"
worker_log_offset=$(log_size "$LOGS/worker.log")
KITE_API_URL="$(sim baseUrl)" KITE_CA_FILE="$(sim ca)" KITE_CERT_FILE="$(sim clientCert)" KITE_KEY_FILE="$(sim clientKey)" \
  KITE_REQUESTS_PER_SECOND="${KITE_REQUESTS_PER_SECOND:-100}" KITE_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" \
  "${TS_NODE[@]}" worker/main.ts 2>>"$LOGS/worker.log" &
children+=($!)
wait_for_line "$LOGS/worker.log" "$worker_log_offset" '"worker started"' 120 "the worker" "${children[-1]}"

say "starting the workflow of group $GROUP (publishing to MQTT every 30 s)"
run "${TS_NODE[@]}" cli/cli.ts start "$GROUP" --target mqtt --interval 30s
say "waiting for the first records on mqtt://127.0.0.1:$MQTT_PORT, topic kite/$GROUP/+/reported"
run mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "kite/$GROUP/+/reported" -v -C 2 -W 120 ||
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
if [ "$seconds" -gt 0 ]; then run sleep "$seconds"; else wait -n "${children[@]}"; fi
