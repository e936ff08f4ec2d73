#!/usr/bin/env bash
# The embedded local stack, on 127.0.0.1 only: Temporal dev server (SQLite + Web UI), Redis (AOF), Mosquitto.
#   stack.sh start | stop | status
# Services already listening on their port are reused and left alone by `stop`; only what this script
# started (tracked by pid files in .data/run) is stopped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TEMPORAL_PORT="${KITE_TEMPORAL_PORT:-7233}"
UI_PORT="${KITE_UI_PORT:-8233}"
REDIS_PORT="${KITE_REDIS_PORT:-6379}"
MQTT_PORT="${KITE_MQTT_PORT:-1883}"
RUN="$DATA/run"
LOGS="$DATA/logs"

pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start_temporal() {
  if port_open "$TEMPORAL_PORT"; then say "Temporal: reusing the server on 127.0.0.1:$TEMPORAL_PORT"; return; fi
  [ -x "$TEMPORAL_BIN" ] || die "the Temporal CLI is not built yet: run 'bash scripts/setup.sh'"
  mkdir -p "$DATA/temporal"
  setsid "$TEMPORAL_BIN" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$UI_PORT" \
    --db-filename "$DATA/temporal/temporal.db" --sqlite-pragma journal_mode=WAL \
    --search-attribute KiteGroup=Keyword --search-attribute KiteSyncState=Keyword \
    --log-level warn >>"$LOGS/temporal.log" 2>&1 </dev/null &
  echo $! >"$RUN/temporal.pid"
  local i
  for ((i = 0; i < 600; i++)); do
    "$TEMPORAL_BIN" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT" >/dev/null 2>&1 && break
    pid_alive temporal || die "the Temporal server exited at start: see $LOGS/temporal.log"
    sleep 0.1
  done
  wait_port "$UI_PORT" Web-UI 30 || die "the Temporal Web UI did not open on $UI_PORT: see $LOGS/temporal.log"
  say "Temporal: 127.0.0.1:$TEMPORAL_PORT, Web UI http://127.0.0.1:$UI_PORT"
}

start_redis() {
  if port_open "$REDIS_PORT"; then say "Redis: reusing the server on 127.0.0.1:$REDIS_PORT"; return; fi
  mkdir -p "$DATA/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" --appendonly yes --appendfsync everysec \
    --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log" >/dev/null
  wait_port "$REDIS_PORT" Redis 20 || die "Redis did not start: see $LOGS/redis.log"
  say "Redis: 127.0.0.1:$REDIS_PORT (AOF in $DATA/redis)"
}

start_mosquitto() {
  if port_open "$MQTT_PORT"; then say "Mosquitto: reusing the broker on 127.0.0.1:$MQTT_PORT"; return; fi
  mkdir -p "$DATA/mosquitto"
  cat >"$DATA/mosquitto/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
# Run as the invoking user: as root, Mosquitto would switch to "mosquitto", who cannot write our data folder.
user $(id -un)
allow_anonymous true
persistence true
persistence_location $DATA/mosquitto/
pid_file $RUN/mosquitto.pid
log_dest file $LOGS/mosquitto.log
CONF
  local bin; bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  "$bin" -d -c "$DATA/mosquitto/mosquitto.conf" 2>>"$LOGS/mosquitto.log"
  wait_port "$MQTT_PORT" Mosquitto 20 || die "Mosquitto did not start: see $LOGS/mosquitto.log"
  say "Mosquitto: mqtt://127.0.0.1:$MQTT_PORT"
}

stop_one() {
  local name=$1 pid i
  pid_alive "$name" || { rm -f "$RUN/$name.pid"; return; }
  pid=$(cat "$RUN/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$RUN/$name.pid"
  say "$name stopped"
}

status_one() {
  local name=$1 port=$2
  if pid_alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"), port $port)"
  elif port_open "$port"; then echo "$name: port $port in use by a process this stack did not start"
  else echo "$name: stopped"; fi
}

mkdir -p "$RUN" "$LOGS"
case "${1:-}" in
  start) start_redis; start_mosquitto; start_temporal ;;
  stop) stop_one temporal; stop_one redis; stop_one mosquitto ;;
  status) status_one temporal "$TEMPORAL_PORT"; status_one redis "$REDIS_PORT"; status_one mosquitto "$MQTT_PORT" ;;
  *) die "usage: stack.sh start|stop|status" ;;
esac
