# Shared helpers for the scripts. Sourced, not run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
DATA="${KITE_DATA_DIR:-$ROOT/.data}"
TEMPORAL_VERSION=1.5.1
TEMPORAL_BIN="$CACHE/bin/temporal"
VENV="$CACHE/venv"
# Temporal's time-skipping test server (a Java program from Maven Central, see scripts/test-server/pom.xml).
TEST_SERVER_DIR="$CACHE/temporal-test-server"
TEST_SERVER_BIN="$TEST_SERVER_DIR/temporal-test-server"

say() { printf '\033[1m[kite]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[kite] error:\033[0m %s\n' "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT NAME SECONDS
wait_port() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  return 1
}
