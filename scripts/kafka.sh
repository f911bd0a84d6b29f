#!/usr/bin/env bash
# The Kafka-wire broker of the tests: Tansu (no Kafka broker is packaged for
# the CI machine), built once from crates.io into the cargo bin directory
# and reused from then on. Apache-2.0; it only ever runs as a separate
# process.
#
#   scripts/kafka.sh install          build tansu once (about 12 minutes
#                                     with --debug on a clean 2-core
#                                     machine; a no-op when installed)
#   scripts/kafka.sh start [port]     install if needed, start if nothing
#                                     answers on the port (data in a
#                                     SQLite file under the cache dir);
#                                     prints the bootstrap address to
#                                     export as INTERLOCK_KAFKA_BROKERS
#   scripts/kafka.sh stop [port]      stop the broker this script started
#   scripts/kafka.sh reset [port]     stop it, delete its data, start it
#                                     afresh (CI: a broker that a long run
#                                     of tests left slow starts clean)
#
# Idempotent. Fault tests start and stop brokers of their own on other
# ports with this script. Known gaps of Tansu 0.6: no Kafka transactions
# (KIP-98); DeleteRecords crashes it. Neither is used.
set -euo pipefail

VERSION="0.6.0"
BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
TANSU="$BIN_DIR/tansu"
DIR="${INTERLOCK_KAFKA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/interlock/tansu-$VERSION}"
command="${1:-start}"
port="${2:-9092}"
pidfile="$DIR/broker-$port.pid"

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install() {
  if [ -x "$TANSU" ] && "$TANSU" --version 2>/dev/null | grep -q "$VERSION"; then
    return
  fi
  echo "building tansu $VERSION into $BIN_DIR (once; about 12 minutes)" >&2
  # --debug: half the build time of a release build; the broker is only a
  # test peer here, and its speed is not what the benchmarks measure
  # (they compare against the raw client on the same broker).
  cargo install tansu --version "$VERSION" --locked --debug \
    --no-default-features --features libsql >&2
}

stop() {
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

case "$command" in
  reset)
    stop
    rm -rf "${DIR:?}/$port"
    exec "$0" start "$port"
    ;;
  install)
    install
    ;;
  start)
    install
    mkdir -p "$DIR/$port"
    if ! listening "$port"; then
      # The storage URL must be relative: run from the data directory.
      (cd "$DIR/$port" || exit 1
        nohup "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "sqlite://tansu.db" \
        >"$DIR/broker-$port.log" 2>&1 &
        echo $! >"$pidfile")
      for _ in $(seq 1 150); do
        listening "$port" && break
        sleep 0.2
      done
      listening "$port" || { echo "the Kafka-wire broker did not start; see $DIR/broker-$port.log" >&2; exit 1; }
    fi
    echo "127.0.0.1:$port"
    ;;
  stop)
    stop
    ;;
  *)
    echo "usage: $0 install|start|stop|reset [port]" >&2
    exit 2
    ;;
esac
