#!/usr/bin/env bash
# The MongoDB-wire server of the tests: SecantusDB from PyPI (no MongoDB
# server is packaged for the CI machine). GPL-licensed: it only ever runs
# as a separate process, never linked or vendored.
#
#   scripts/mongodb.sh start [port [storage]]
#                                     install once, start if not running
#                                     (data in memory, or in the file
#                                     `storage`); prints the URI to export
#                                     as INTERLOCK_MONGODB_URI
#   scripts/mongodb.sh stop [port]    stop the server this script started
#
# Idempotent: the virtualenv is reused, a server already answering on the
# port is left alone. Fault tests start and stop servers of their own on
# other ports with this script.
set -euo pipefail

VERSION="0.7.0b3"
DIR="${INTERLOCK_MONGODB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/interlock/secantusdb-$VERSION}"
command="${1:-start}"
port="${2:-27017}"
storage="${3:-:memory:}"
pidfile="$DIR/server-$port.pid"

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

case "$command" in
  start)
    if [ ! -x "$DIR/bin/secantusd-py" ]; then
      echo "installing secantusdb $VERSION into $DIR" >&2
      python3 -m venv "$DIR"
      "$DIR/bin/pip" install -q "secantusdb==$VERSION" >&2
    fi
    if ! listening "$port"; then
      nohup "$DIR/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$storage" \
        >"$DIR/server-$port.log" 2>&1 &
      echo $! >"$pidfile"
      for _ in $(seq 1 150); do
        listening "$port" && break
        sleep 0.2
      done
      listening "$port" || { echo "the MongoDB-wire server did not start; see $DIR/server-$port.log" >&2; exit 1; }
    fi
    echo "mongodb://127.0.0.1:$port/?directConnection=true"
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      # Gone (and its files unlocked) before a restart may begin.
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  *)
    echo "usage: $0 start|stop [port]" >&2
    exit 2
    ;;
esac
