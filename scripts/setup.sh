#!/usr/bin/env bash
# Installs everything the project needs, idempotently; each step is skipped when already done.
#   setup.sh                 Temporal CLI, Redis, Mosquitto, npm packages
#   setup.sh --test-peers    also moto (AWS IoT double) in a Python venv, Chromium from Debian for the Web UI
#                            browser test (driven by playwright-core, which never downloads a browser), and
#                            Temporal's time-skipping test server from Maven Central (Java) for the fast tier
set -euo pipefail
source "$(dirname "$0")/lib.sh"

want_test_peers=0
for arg in "$@"; do
  case "$arg" in
    --test-peers) want_test_peers=1 ;;
    *) die "unknown option $arg (expected --test-peers)" ;;
  esac
done

install_temporal_cli() {
  if [ -x "$TEMPORAL_BIN" ] && "$TEMPORAL_BIN" --version 2>/dev/null | grep -q "$TEMPORAL_VERSION"; then return; fi
  command -v go >/dev/null || die "Go is missing: install Go >= 1.25 (https://go.dev/dl) to build the Temporal CLI, or put a temporal $TEMPORAL_VERSION binary at $TEMPORAL_BIN"
  say "building the Temporal CLI v$TEMPORAL_VERSION from its Go module (first time only; several minutes on 2 cores)"
  mkdir -p "$CACHE/bin"
  GOBIN="$CACHE/bin" GOFLAGS=-mod=mod go install \
    -ldflags "-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_VERSION" \
    "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_VERSION"
  "$TEMPORAL_BIN" --version >&2
}

install_debian_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    die "missing ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}' (or install them from your distribution) and try again"
  fi
  say "installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start system services on their default ports; ours run on their own ports, so stop those.
  systemctl disable --now redis-server mosquitto >/dev/null 2>&1 || true
}

install_npm_packages() {
  local stamp="$ROOT/node_modules/.kite-lock-hash" hash
  # A git worktree may share another checkout's packages through a node_modules symlink. npm ci would follow it,
  # empty the shared folder under every other checkout, and replace the link with a folder of its own.
  if [ -L "$ROOT/node_modules" ]; then
    say "node_modules is a link to $(readlink "$ROOT/node_modules"): not installing npm packages here"
    return
  fi
  hash=$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then return; fi
  say "installing npm packages (npm ci)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$hash" >"$stamp"
}

install_chromium() {
  [ -x /usr/bin/chromium ] && return
  if [ "$(id -u)" -ne 0 ]; then
    die "missing chromium (the Web UI browser test drives it): run 'sudo apt-get install -y chromium' and try again"
  fi
  say "installing chromium from Debian (Web UI browser test)"
  apt-get update -qq
  # fonts-liberation is only recommended, but without a font the failure screenshots show no text.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
}

install_moto() {
  if [ -x "$VENV/bin/moto_server" ]; then return; fi
  command -v python3 >/dev/null || die "python3 is missing: it runs moto, the AWS IoT test peer"
  say "installing moto[server] (AWS IoT test peer) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.*'
}

install_time_skipping_server() {
  local pom="$ROOT/scripts/test-server/pom.xml" stamp="$TEST_SERVER_DIR/.pom-hash" hash
  hash=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -x "$TEST_SERVER_BIN" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then return; fi
  command -v java >/dev/null || die "java is missing: Temporal's time-skipping test server (fast workflow tests) is a Java 17 program"
  command -v mvn >/dev/null || die "mvn is missing: it fetches Temporal's time-skipping test server from Maven Central ('apt-get install -y maven')"
  say "fetching Temporal's time-skipping test server from Maven Central (first time only)"
  rm -rf "$TEST_SERVER_DIR"
  mvn -q -B -f "$pom" -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies -DoutputDirectory="$TEST_SERVER_DIR/lib"
  # @temporalio/testing runs it as `<executable> <port>`.
  cat >"$TEST_SERVER_BIN" <<EOT
#!/usr/bin/env bash
exec java -cp "\$(dirname "\$0")/lib/*" io.temporal.testserver.TestServer "\$@"
EOT
  chmod +x "$TEST_SERVER_BIN"
  echo "$hash" >"$stamp"
}

command -v node >/dev/null || die "Node.js >= 20.3 is missing"
install_debian_packages
install_npm_packages
install_temporal_cli
[ "$want_test_peers" = 1 ] && install_moto
[ "$want_test_peers" = 1 ] && install_chromium
[ "$want_test_peers" = 1 ] && install_time_skipping_server
say "setup complete"
