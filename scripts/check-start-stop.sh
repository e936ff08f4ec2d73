#!/usr/bin/env bash
# Checks that `npm start` stops everything it started when its npm process gets a signal. For each signal: runs
# `npm start` on free ports with a fresh data folder and a marker in its environment, waits until the demo group
# publishes, signals npm's PID (not a process group: as `kill` or a process manager would), waits for npm to
# exit, and fails if any process still carries the marker (every process the start spawned inherits it, also
# the daemonized Mosquitto and the setsid'd Temporal server) or any of the stack's ports still accepts
# connections (Redis rewrites its environment for its process title).
# Then it restarts on the last data folder (whose worker.log holds a "worker started" line) with a bad target
# configuration: `npm start` must exit with the worker's own configuration error and leave nothing behind.
# CI runs it after the tests.
#   check-start-stop.sh [SIGNAL...]   default: INT TERM
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

READY_SECONDS="${KITE_CHECK_READY_SECONDS:-600}"
STOP_SECONDS=120
signals=("$@")
[ ${#signals[@]} -gt 0 ] || signals=(INT TERM)

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# PIDs of the processes whose environment holds KITE_STOP_CHECK=MARKER.
marked() {
  local proc
  for proc in /proc/[0-9]*; do
    grep -qzx "KITE_STOP_CHECK=$1" "$proc/environ" 2>/dev/null && echo "${proc#/proc/}"
  done
  return 0
}

# PID of the process listening on 127.0.0.1:PORT.
listener() { ss -Htlnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2; }

# start_npm MARKER DATA_DIR LOG [VAR=VALUE...]: `npm start` in the background on four free ports (in $ports).
start_npm() {
  local marker=$1 data=$2 log=$3
  shift 3
  ports=("$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)")
  : >"$log"
  env "$@" KITE_STOP_CHECK="$marker" KITE_DATA_DIR="$data" KITE_METRICS_ADDRESS=off \
    KITE_TEMPORAL_PORT="${ports[0]}" KITE_UI_PORT="${ports[1]}" KITE_REDIS_PORT="${ports[2]}" \
    KITE_MQTT_PORT="${ports[3]}" npm start >"$log" 2>&1 &
  npm_pid=$!
}

# nothing_left MARKER LOG WHAT: waits until no process carries MARKER and none of $ports is open; else kills
# what is left and fails.
nothing_left() {
  local marker=$1 log=$2 what=$3 left open_ports port i
  for ((i = 0; i < STOP_SECONDS; i++)); do
    left=$(marked "$marker")
    open_ports=""
    for port in "${ports[@]}"; do ! port_open "$port" || open_ports+=" $port"; done
    for port in $open_ports; do left+=$'\n'"$(listener "$port")"; done
    left=$(echo "$left" | sed '/^$/d' | sort -u)
    [ -z "$left" ] && [ -z "$open_ports" ] && return 0
    sleep 1
  done
  say "check: still listening on port(s)${open_ports:- none}"
  [ -z "$left" ] || ps -o pid,ppid,stat,args -p "$(echo "$left" | paste -sd,)" >&2 || true
  echo "$left" | xargs -r kill -KILL 2>/dev/null || true
  tail -n 20 "$log" >&2
  die "$what left these processes behind"
}

check_signal() {
  local sig=$1 marker="$1-$$-$RANDOM" log i running
  work=$(mktemp -d)
  log="$work/start.log"
  say "check: npm start, then SIG$sig to npm's PID (data in $work)"
  start_npm "$marker" "$work/data" "$log"
  for ((i = 0; i < READY_SECONDS; i++)); do
    grep -q 'The connector is running' "$log" && break
    kill -0 "$npm_pid" 2>/dev/null || { cat "$log" >&2; die "npm start exited before it was ready"; }
    sleep 1
  done
  grep -q 'The connector is running' "$log" || { cat "$log" >&2; die "npm start was not ready in $READY_SECONDS s"; }
  running=$(marked "$marker" | wc -l)
  say "check: ready with $running processes: $(marked "$marker" | xargs -r ps -o comm= -p | paste -sd" ")"
  [ "$running" -ge 6 ] || die "expected npm, the script, Temporal, Mosquitto, the simulator and the worker; found $running"
  say "check: sending SIG$sig to npm ($npm_pid)"
  kill -"$sig" "$npm_pid"
  for ((i = 0; i < STOP_SECONDS; i++)); do kill -0 "$npm_pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$npm_pid" 2>/dev/null && { cat "$log" >&2; die "npm start did not exit within $STOP_SECONDS s of SIG$sig"; }
  # npm may exit before its child has finished stopping the stack: nothing_left gives the stop its time.
  nothing_left "$marker" "$log" "SIG$sig to npm start"
  say "check: SIG$sig stopped everything npm start had started"
}

check_bad_config_restart() {
  local marker="config-$$-$RANDOM" log="$work/restart.log" code=0
  say "check: npm start again on $work/data (its worker.log says \"worker started\") with a bad target setting"
  start_npm "$marker" "$work/data" "$log" KITE_TARGETS='{"mqtt":{"type":"carrier-pigeon"}}'
  wait "$npm_pid" || code=$?
  [ "$code" -ne 0 ] || { cat "$log" >&2; die "npm start with a bad configuration exited with 0"; }
  grep -q 'no worker answered' "$log" && { cat "$log" >&2; die "npm start blamed a missing worker"; }
  grep -q 'invalid configuration' "$log" || { cat "$log" >&2; die "npm start did not show the worker's error"; }
  nothing_left "$marker" "$log" "npm start with a bad configuration"
  say "check: a bad configuration stops npm start with the worker's own error:"
  grep 'invalid configuration' "$log" | head -n 1 >&2
}

for sig in "${signals[@]}"; do
  check_signal "$sig"
  [ "$sig" = "${signals[-1]}" ] || rm -rf "$work"
done
check_bad_config_restart
rm -rf "$work"
say "check: npm start stops cleanly on ${signals[*]} and on a bad configuration"
