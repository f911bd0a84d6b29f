#!/usr/bin/env bash
# The MongoDB-wire server of the tests: SecantusDB from PyPI (no MongoDB
# server is packaged for the CI machine). GPL-licensed: it only ever runs
# as a separate process, never linked or vendored.
#
#   scripts/mongodb.sh start [port]   install once, start if not running;
#                                     prints the URI to export as
#                                     INTERLOCK_MONGODB_URI
#   scripts/mongodb.sh stop [port]    stop the server this script started
#
# Idempotent: the virtualenv is reused, a server already answering on the
# port is left alone. Data is kept in memory (a restart starts empty).
set -euo pipefail

VERSION="0.7.0b3"
DIR="${INTERLOCK_MONGODB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/interlock/secantusdb-$VERSION}"
command="${1:-start}"
port="${2:-27017}"
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
      nohup "$DIR/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path :memory: \
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
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  *)
    echo "usage: $0 start|stop [port]" >&2
    exit 2
    ;;
esac
